"""``ledger dicom-proxy serve``: the DICOM audit proxy as a service (docs/dicom-proxy.md).

Invariant: the proxy refuses to start without a valid configuration file with a
``[ledger]`` section; a refusal exits 1 with the key or file at fault, never PHI.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ledgerctl.commands.common import configure_logging, fail, ops_config
from ledgerctl.settings import Settings

dicomproxy_app = typer.Typer(
    help="DICOM audit proxy: DIMSE in front of any PACS, every operation in the ledger.",
    no_args_is_help=True,
)


@dicomproxy_app.command("serve")
def dicomproxy_serve(
    config: Annotated[
        Path,
        typer.Option(help="The proxy's TOML file: listen, upstream, ledger, ... sections."),
    ],
    stats_every: Annotated[
        float, typer.Option(min=0.1, help="Log the counters every N seconds.")
    ] = 60.0,
    verbose: bool = False,
) -> None:
    """Run the DICOM audit proxy until SIGTERM."""
    from integrations.dicomproxy import DicomProxyError
    from ledgerctl.dicomproxy import run_dicom_proxy, stats_json
    from producers import ProducerError

    settings = Settings.load()
    configure_logging(verbose, service="dicom-proxy", fmt=settings.log_format)
    try:
        stats = run_dicom_proxy(
            config, stats_every=stats_every, ops=ops_config(settings, "dicom-proxy")
        )
    except DicomProxyError as exc:
        raise fail(f"{config}: {exc}") from exc
    except (ProducerError, OSError, TimeoutError) as exc:
        raise fail(f"the DICOM proxy could not start: {exc}") from exc
    print(f"DICOM proxy exited: {stats_json(stats)}", file=sys.stderr, flush=True)


@dicomproxy_app.command("demo")
def dicomproxy_demo(
    address: Annotated[
        str | None,
        typer.Option(help="The proxy's host:port [LEDGER_DICOMPROXY_ADDRESS, .local/env]."),
    ] = None,
    aet: Annotated[
        str | None, typer.Option(help="The proxy's AE title [LEDGER_DICOMPROXY_AET].")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for ingestion.")] = 90.0,
) -> None:
    """A workstation's DICOM session through the proxy, made with DCMTK, and where each
    operation lands in the ledger (with its proof)."""
    import asyncio
    import shutil

    from ledger.errors import LedgerError
    from ledgerctl.commands.common import load_verifiers
    from ledgerctl.dicomdemo import ProxyUnreachable, run_dicom_demo
    from ledgerctl.settings import Settings
    from ledgerctl.tables import prove_entries, render_history, render_proofs, report_console

    if shutil.which("findscu") is None:
        raise fail("DCMTK is not installed (apt-get install dcmtk, or make up)")
    settings = Settings.load()
    address = address or settings.dicomproxy_address
    aet = aet or settings.dicomproxy_aet
    try:
        demo = asyncio.run(run_dicom_demo(settings, address, aet, timeout))
    except (TimeoutError, ProxyUnreachable) as exc:
        raise fail(str(exc)) from exc
    out = report_console()
    out.print(f"DCMTK through the DICOM audit proxy {aet} at {address}:")
    for step in demo.steps:
        out.print(f"  {'ok ' if step.ok else 'FAILED'} {step.command:24s} {step.what}: {step.note}")
    for patient in demo.patients:
        render_history(out, patient, demo.histories[patient])
    verifiers = load_verifiers(settings)
    entries = [entry for history in demo.histories.values() for entry in history]
    try:
        proven = asyncio.run(prove_entries(settings.api(), entries, verifiers))
    except LedgerError as exc:
        raise fail(f"VERIFICATION FAILED: {exc}") from exc
    render_proofs(out, proven, verifiers)
    if not all(step.ok for step in demo.steps):
        raise fail("a DCMTK command failed: see above")
