"""The script Orthanc's ``PythonScript`` option points at: loads the PHI audit plugin.

Orthanc's Python plugin (Debian's ``orthanc-python``) runs this file in the system
interpreter (``/usr/bin/python3.11``), not in a virtualenv. Before importing
``producers``, the script therefore puts on ``sys.path``:

* the directory that holds the ``producers`` package (two levels above this file), and
* every directory of ``PhiLedger.PythonPath`` in Orthanc's configuration: where
  ``aiokafka`` and ``fastavro`` are installed for the same CPython minor version (the
  project's ``.venv/lib/python3.11/site-packages``, or a dedicated
  ``pip install --target`` directory),

ahead of the system's ``dist-packages`` (so the pinned versions win) but behind the
standard library. It also removes its own directory, which Orthanc put first on
``sys.path``, so the plugin's modules are importable only as ``integrations.orthanc.*``.

Invariant: importing this file never raises into Orthanc: any failure is one error line
in Orthanc's log and Orthanc runs on without auditing. Outside Orthanc (no ``orthanc``
module) it does nothing.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Any


def _insert_paths(paths: list[str]) -> None:
    """Put ``paths`` before the first site-packages / dist-packages entry of sys.path."""
    wanted = [p for p in paths if os.path.isdir(p) and p not in sys.path]
    at = next(
        (i for i, p in enumerate(sys.path) if p.rstrip("/").endswith(("-packages",))),
        len(sys.path),
    )
    sys.path[at:at] = wanted


def _version_mismatch(paths: list[str]) -> str | None:
    running = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for p in paths:
        for part in p.split(os.sep):
            if part.startswith("python3.") and part != running:
                return f"{p} is for {part}, Orthanc runs {running}"
    return None


def _load(orthanc: Any) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    section = json.loads(orthanc.GetConfiguration()).get("PhiLedger")
    extra = section.get("PythonPath", []) if isinstance(section, dict) else []
    paths = [root, *[p for p in extra if isinstance(p, str)]]
    problem = _version_mismatch(paths)
    if problem:
        orthanc.LogWarning(f"PhiLedger: {problem}; compiled dependencies may not import")
    _insert_paths(paths)
    plugin = importlib.import_module("integrations.orthanc.plugin")
    plugin.install(orthanc)


def _main() -> None:
    try:
        orthanc = importlib.import_module("orthanc")
    except ImportError:
        return  # not inside Orthanc
    try:
        _load(orthanc)
    except BaseException as exc:  # never let the plugin stop Orthanc from starting
        orthanc.LogError(
            f"PhiLedger: the PHI audit plugin failed to load ({type(exc).__name__}: {exc}); "
            "PHI auditing is DISABLED"
        )


_main()
