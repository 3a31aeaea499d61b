"""Run HAPI FHIR's offline R4 instance validator (``tests/interop/fhir``) on our resources.

The Java program (``fhir/src/main/java/.../Validate.java``) validates JSON resources against
the R4 core definitions with in-memory terminology only: no terminology server, no network.
It is built with Maven once into ``<repo>/.local/interop/fhir`` (compiled classes plus every
runtime jar) and rebuilt only when ``pom.xml`` or a Java source changes; Maven caches the
jars in ``~/.m2`` like ``deploy/local/kafka.sh`` does, so only the very first build needs
Maven Central. A missing JDK (``java`` and ``javac``) or ``mvn`` is an error, never a skip:
an interoperability check that silently does not run proves nothing. (``deploy/local/kafka.sh``
installs Maven, and a Java runtime when none is there; compiling also needs ``javac``, which
this machine image ships with its JDK.)

Validate many resources per call: one JVM start and HAPI's definition loading cost seconds.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CACHE_DIR",
    "SOURCE_DIR",
    "FhirValidatorError",
    "ValidationReport",
    "build_fhir_validator",
    "build_maven_project",
    "run_fhir_validator",
    "tools_available",
    "validate_resources",
]

REPO = Path(__file__).resolve().parents[2]
SOURCE_DIR = Path(__file__).resolve().parent / "fhir"
CACHE_DIR = REPO / ".local" / "interop" / "fhir"
MAIN_CLASS = "local.philedger.interop.fhir.Validate"
STAMP_NAME = ".source-sha256"
BUILD_TIMEOUT_S = 900  # the first build downloads HAPI FHIR and its dependencies (~200 MB)
RUN_TIMEOUT_S = 300
#: Short-lived JVM: C1 only and a small serial heap start fastest on a 2-core machine.
JVM_OPTIONS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xss4m", "-Xmx1g")


class FhirValidatorError(RuntimeError):
    """The validator could not be built or run, or refused its input as unusable."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidationReport:
    """The validator's verdict on one resource: ``issues`` are its error/fatal messages
    (every severity when run with ``all_severities``)."""

    source: str
    resource_type: str
    resource_id: str
    valid: bool
    issues: tuple[Mapping[str, str], ...]

    def explain(self) -> str:
        lines = [f"{self.source} {self.resource_type}/{self.resource_id}: valid={self.valid}"]
        lines += [f"  {i['severity']} at {i['location']}: {i['message']}" for i in self.issues]
        return "\n".join(lines)


def tools_available() -> bool:
    """True iff ``java``, ``javac`` (a JDK, not only a JRE) and ``mvn`` are on ``PATH``."""
    return all(shutil.which(tool) is not None for tool in ("java", "javac", "mvn"))


def _source_digest(source_dir: Path = SOURCE_DIR) -> str:
    digest = hashlib.sha256()
    files = [source_dir / "pom.xml", *sorted((source_dir / "src").rglob("*.java"))]
    for path in files:
        digest.update(str(path.relative_to(source_dir)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _is_built(directory: Path, digest: str, ready_jar: str) -> bool:
    stamp = directory / STAMP_NAME
    return (
        stamp.is_file()
        and stamp.read_text(encoding="ascii").strip() == digest
        and (directory / "classes").is_dir()
        and any((directory / "lib").glob(ready_jar))
    )


def build_maven_project(source_dir: Path, cache_dir: Path, ready_jar: str) -> Path:
    """Build the Maven project ``source_dir`` into ``cache_dir`` unless an up-to-date build
    is there (``ready_jar``: a glob of a jar in ``lib/`` that a complete build has)."""
    mvn = shutil.which("mvn")
    if mvn is None or not tools_available():
        raise FhirValidatorError(
            "a JDK 17+ (`java` and `javac`, e.g. Debian's openjdk-17-jdk-headless) and `mvn` "
            "must be on PATH for the FHIR interoperability tests; install them, do not skip "
            "these tests"
        )
    digest = _source_digest(source_dir)
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = cache_dir.parent / f".{cache_dir.name}-build.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time across test processes
        if _is_built(cache_dir, digest, ready_jar):
            return cache_dir
        # Build beside the target, then swap it in: nobody runs a half-built program.
        staging = Path(tempfile.mkdtemp(prefix=f".{cache_dir.name}-build.", dir=cache_dir.parent))
        try:
            proc = subprocess.run(
                [
                    mvn,
                    "-B",
                    "-q",
                    "-f",
                    str(source_dir / "pom.xml"),
                    "package",
                    f"-Dinterop.out={staging}",
                ],
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT_S,
                check=False,
            )
            if proc.returncode != 0:
                output = (proc.stdout + proc.stderr).strip().splitlines()
                raise FhirValidatorError(
                    f"`mvn package` of {source_dir} failed (exit {proc.returncode}):\n"
                    + "\n".join(output[-40:])
                )
            (staging / STAMP_NAME).write_text(digest + "\n", encoding="ascii")
            if cache_dir.exists():
                shutil.rmtree(cache_dir)
            staging.rename(cache_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return cache_dir


@functools.cache
def build_fhir_validator() -> Path:
    """Build the validator unless an up-to-date build exists; return its directory."""
    return build_maven_project(SOURCE_DIR, CACHE_DIR, "hapi-fhir-validation-*.jar")


def run_fhir_validator(
    raw_input: str, *args: str, timeout: float = RUN_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """Run the validator on ``raw_input`` (its stdin) as is and return the finished process."""
    built = build_fhir_validator()
    java = shutil.which("java") or "java"
    classpath = os.pathsep.join([str(built / "classes"), str(built / "lib" / "*")])
    return subprocess.run(
        [java, *JVM_OPTIONS, "-cp", classpath, MAIN_CLASS, *args],
        input=raw_input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def validate_resources(
    resources: Sequence[Mapping[str, object]], *, all_severities: bool = False
) -> list[ValidationReport]:
    """Validate every resource in one JVM; one report per resource, in order."""
    if not resources:
        return []
    proc = run_fhir_validator(json.dumps(list(resources)), *(["--all"] if all_severities else []))
    if proc.returncode not in (0, 1):
        raise FhirValidatorError(
            f"the FHIR validator refused its input (exit {proc.returncode}): "
            f"{proc.stderr.strip()[-2000:]}"
        )
    try:
        results = json.loads(proc.stdout)["results"]
    except (ValueError, KeyError) as exc:
        raise FhirValidatorError(
            f"the FHIR validator printed no report: {proc.stdout[-500:]!r} {proc.stderr[-2000:]}"
        ) from exc
    reports = [
        ValidationReport(
            source=r["source"],
            resource_type=r["resourceType"],
            resource_id=r["id"],
            valid=r["valid"],
            issues=tuple(r["issues"]),
        )
        for r in results
    ]
    if len(reports) != len(resources):
        raise FhirValidatorError(f"{len(resources)} resources in, {len(reports)} reports out")
    if (proc.returncode == 0) != all(r.valid for r in reports):
        raise FhirValidatorError("the validator's exit status contradicts its report")
    return reports
