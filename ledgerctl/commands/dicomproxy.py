"""``ledger dicom-proxy serve``: the DICOM audit proxy as a service (docs/dicom-proxy.md).

Invariant: the proxy refuses to start without a valid configuration file with a
``[ledger]`` section; a refusal exits 1 with the key or file at fault, never PHI.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ledgerctl.commands.common import configure_logging, fail

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

    configure_logging(verbose)
    try:
        stats = run_dicom_proxy(config, stats_every=stats_every)
    except DicomProxyError as exc:
        raise fail(f"{config}: {exc}") from exc
    except (ProducerError, OSError, TimeoutError) as exc:
        raise fail(f"the DICOM proxy could not start: {exc}") from exc
    print(f"DICOM proxy exited: {stats_json(stats)}", file=sys.stderr, flush=True)
