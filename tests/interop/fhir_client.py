"""Run HAPI FHIR's generic client (``tests/interop/fhirclient``) against a running API.

The Java program (``fhirclient/src/main/java/.../Probe.java``) reads the CapabilityStatement,
searches with every parameter it lists, pages, reads and posts a batch, and prints every HTTP
exchange as the server sent it. It is built with Maven like the validator
(``fhir_validator.build_maven_project``) into ``<repo>/.local/interop/fhirclient``; a missing
JDK or Maven is an error, never a skip.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.interop.fhir_validator import JVM_OPTIONS, REPO, build_maven_project

__all__ = ["build_fhir_client", "run_fhir_client"]

SOURCE_DIR = Path(__file__).resolve().parent / "fhirclient"
CACHE_DIR = REPO / ".local" / "interop" / "fhirclient"
MAIN_CLASS = "local.philedger.interop.fhirclient.Probe"
RUN_TIMEOUT_S = 300


@functools.cache
def build_fhir_client() -> Path:
    return build_maven_project(SOURCE_DIR, CACHE_DIR, "hapi-fhir-client-*.jar")


def run_fhir_client(
    *, base: str, token: str, event: str, values: Mapping[str, str]
) -> tuple[int, dict[str, Any], str]:
    """Run the walk; (exit status, its JSON report, its standard error)."""
    built = build_fhir_client()
    java = shutil.which("java") or "java"
    classpath = os.pathsep.join([str(built / "classes"), str(built / "lib" / "*")])
    proc = subprocess.run(
        [java, *JVM_OPTIONS, "-cp", classpath, MAIN_CLASS],
        input=json.dumps({"base": base, "token": token, "event": event, "values": dict(values)}),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    try:
        report: dict[str, Any] = json.loads(proc.stdout)
    except ValueError:
        report = {"error": f"no report: {proc.stdout[-500:]!r}"}
    return proc.returncode, report, proc.stderr[-4000:]
