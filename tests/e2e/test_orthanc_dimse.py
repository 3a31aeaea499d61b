"""A C-FIND that DCMTK's findscu sends to Orthanc, in the ledger (issue #14, item 3).

A real Orthanc with the plugin feeds the real pipeline (consumer, API): three patients
are uploaded, a workstation searches them by C-FIND with a wildcard, and the Query is in
each of the three patients' histories, marked disclosed, with a proof, and in the calling
AE's own history; a C-FIND that matched nobody is in the AE's history too.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import Pipeline, wait_for_events
from tests.e2e.test_orthanc import (
    ROLES,
    OrthancServer,
    ensure_orthanc,
    launch,
    make_study,
    stop,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def orthanc(
    pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OrthancServer]:
    ensure_orthanc()
    server = launch(
        pipeline,
        tmp_path_factory.mktemp("orthanc-dimse"),
        bootstrap=pipeline.stack.kafka_bootstrap,
        users={u: secrets.token_urlsafe(12) for u in ROLES},
        producer_id=f"orthanc-dimse-e2e-{uuid.uuid4().hex[:6]}",
    )
    try:
        yield server
    finally:
        stop(server, pipeline, wait=False)


def findscu(orthanc: OrthancServer, out: Path, *keys: str) -> subprocess.CompletedProcess[str]:
    """findscu as the AE Orthanc knows (its ``mirror`` modality), study root."""
    port = _dicom_port(orthanc)
    args = ["findscu", "-aet", orthanc.aet, "-aec", orthanc.aet, "-S", "-X", "-od", str(out)]
    for key in keys:
        args += ["-k", key]
    return subprocess.run([*args, "127.0.0.1", str(port)], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip


def _dicom_port(orthanc: OrthancServer) -> int:
    import json

    return int(json.loads((orthanc.log.parent / "orthanc.json").read_text())["DicomPort"])


def search(orthanc: OrthancServer, out: Path, run: str) -> tuple[int, int]:
    """Two C-FINDs: this run's patients by a PatientID wildcard, and a name nobody has;
    how many answers each got."""
    counts = []
    for name, keys in (
        ("three", ("QueryRetrieveLevel=STUDY", f"PatientID=FIND{run}*", "StudyInstanceUID",
                   "PatientName")),
        ("nobody", ("QueryRetrieveLevel=PATIENT", f"PatientName=NOBODY{run}*")),
    ):  # fmt: skip
        (out / name).mkdir()
        found = findscu(orthanc, out / name, *keys)
        assert found.returncode == 0, found.stderr
        counts.append(len(list((out / name).iterdir())))
    return counts[0], counts[1]


async def _history(
    http: aiohttp.ClientSession, pipeline: Pipeline, path: str, **params: str
) -> list[dict[str, Any]]:
    async with http.get(f"{pipeline.api_url}/v1/{path}/accesses", params={"limit": "1000",
                        **params}) as resp:  # fmt: skip
        assert resp.status == 200, await resp.text()
        return list((await resp.json())["accesses"])


async def _queries(
    http: aiohttp.ClientSession, pipeline: Pipeline, path: str, want: int, **params: str
) -> list[dict[str, Any]]:
    """The C-FIND Queries of a history, once ``want`` of them are there (or 60 s)."""
    deadline = time.monotonic() + 60
    while True:
        found = [e for e in await _history(http, pipeline, path, **params)
                 if e["event"]["dicom_event_id"] == "110112"]  # fmt: skip
        if len(found) >= want or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.3)


async def test_a_c_find_is_in_every_returned_patients_history(
    orthanc: OrthancServer, pipeline: Pipeline, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    issuer = "e2e-issuer"
    patients = [f"FIND{run}{n}" for n in range(3)]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(20)) as rest:
        for pid in patients:
            for data in make_study(pid, issuer, f"A{pid[-6:]}", 1)[1]:
                async with rest.post(f"{orthanc.url}/instances", data=data,
                                     headers=orthanc.auth("tech.carol")) as resp:  # fmt: skip
                    assert resp.status == 200, await resp.text()

    answers = await asyncio.to_thread(search, orthanc, tmp_path, run)
    assert answers == (3, 0)

    events = set()
    for pid in patients:
        (entry,) = await _queries(http, pipeline, f"patients/{pid}", 1, issuer=issuer)
        assert entry["attribution"] == "disclosed"
        assert entry["user"] == {**entry["user"], "id": orthanc.aet,
                                 "role": "dicom-application-entity"}  # fmt: skip
        assert entry["action"] == "E"
        events.add(entry["event_id"])
    assert len(events) == 1  # one Query, in all three histories
    await wait_for_events(http, pipeline, list(events))

    # The AE's own history: the search that found three, and the one that found nobody.
    by_ae = {e["event_id"] for e in await _queries(http, pipeline, f"users/{orthanc.aet}", 2)}
    assert len(by_ae) == 2
    assert events < by_ae
