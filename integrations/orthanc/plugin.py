"""Glue between Orthanc's ``orthanc`` module (orthanc-python 4.0) and the ``Auditor``.

Invariant: nothing registered here lets an exception reach Orthanc: each callback is
wrapped, logs the exception's type only (never PHI) through Orthanc's log, and answers
as if the plugin were absent (the HTTP filter lets the request through, unless
``FailClosed``). A missing or invalid ``PhiLedger`` section, or an emitter that cannot
start, disables the plugin with one error in Orthanc's log; Orthanc keeps running.

The ``orthanc`` module exists only inside Orthanc, so it is passed in (``install``) and
typed as ``Any``: this module is type-checked and importable without it.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final, Protocol

from integrations.orthanc.audit import Auditor, Sink
from integrations.orthanc.config import ConfigError, PluginConfig, parse_config
from integrations.orthanc.dimse import install_find
from integrations.orthanc.rest_wrappers import install_wrappers
from integrations.orthanc.routes import Level
from producers import PIPE_MAX_PENDING, EmitterHealth, PipeEmitter, SyncEmitter

#: The directory holding ``producers`` (what the loader script put on ``sys.path``).
_PACKAGE_ROOT: Final = str(Path(__file__).resolve().parents[2])

logger = logging.getLogger(__name__)

METHODS: Final[Mapping[int, str]] = {1: "GET", 2: "POST", 3: "PUT", 4: "DELETE"}
_LEVELS: Final[Mapping[str, Level]] = {
    "PATIENT": Level.PATIENT,
    "STUDY": Level.STUDY,
    "SERIES": Level.SERIES,
    "INSTANCE": Level.INSTANCE,
}
#: aiokafka logs every failed connection attempt as an error; the emitter already reports
#: Kafka being away (once, then when it is back), so aiokafka's own lines are muted.
_LOGGERS: Final = (
    ("producers", logging.INFO),
    ("integrations", logging.INFO),
    ("aiokafka", logging.CRITICAL),
)


def _names(enum: Any) -> dict[int, str]:
    """value -> name of one of orthanc-python's generated enumeration classes."""
    return {
        value: name
        for name, value in vars(enum).items()
        if name.isupper() and isinstance(value, int)
    }


class OrthancLogHandler(logging.Handler):
    """Python logging into Orthanc's own log (LogError / LogWarning / LogInfo)."""

    def __init__(self, orthanc: Any) -> None:
        super().__init__()
        self._orthanc = orthanc
        self.setFormatter(logging.Formatter("PhiLedger %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if record.levelno >= logging.ERROR:
                self._orthanc.LogError(text)
            elif record.levelno >= logging.WARNING:
                self._orthanc.LogWarning(text)
            else:
                self._orthanc.LogInfo(text)
        except Exception:  # logging must never break a callback
            self.handleError(record)


class HostEmitter(Sink, Protocol):
    """What the plugin emits through: ``PipeEmitter`` (default) or ``SyncEmitter``; the
    auditor's ``Sink``, and what the plugin starts, stops and reports."""

    def start(self, timeout: float = ...) -> None: ...

    def stop(self, timeout: float = ...) -> bool: ...

    def health(self) -> EmitterHealth | dict[str, object]: ...

    @property
    def counts(self) -> dict[str, int]: ...


class OrthancHost:
    """The ``Host`` the auditor needs, on top of the ``orthanc`` module."""

    def __init__(self, orthanc: Any) -> None:
        self._orthanc = orthanc

    def rest_get(self, uri: str) -> bytes:
        return bytes(self._orthanc.RestApiGet(uri))

    def rest_get_after_plugins(self, uri: str) -> bytes:
        """A GET that plugins answer too (the DICOMweb plugin's QIDO-RS)."""
        return bytes(self._orthanc.RestApiGetAfterPlugins(uri))

    def lookup_study(self, study_uid: str) -> str | None:
        try:
            found = self._orthanc.LookupStudy(study_uid)
        except Exception:
            return None
        return str(found) if found else None


class Plugin:
    """What ``install`` registered: the auditor, its emitter and the callbacks."""

    def __init__(self, orthanc: Any, config: PluginConfig, emitter: HostEmitter) -> None:
        self.orthanc = orthanc
        self.config = config
        self.emitter = emitter
        self.auditor = Auditor(config, emitter, OrthancHost(orthanc))
        self._changes = _names(orthanc.ChangeType)
        self._levels = _names(orthanc.ResourceType)
        self._origins = _names(orthanc.InstanceOrigin)
        self._stopped = threading.Event()

    # Every callback below is what Orthanc calls; none may raise.

    def http_filter(self, uri: str, **request: Any) -> bool:
        try:
            method = METHODS.get(request.get("method", 0), "OTHER")
            return self.auditor.on_http_request(
                method,
                uri,
                request.get("ip"),
                request.get("headers") or {},
                request.get("get") or {},
            )
        except BaseException as exc:
            logger.error("HTTP filter error (%s); the request was not audited", type(exc).__name__)
            return not self.config.fail_closed

    def stored_instance(self, dicom: Any, instance_id: str) -> None:
        try:
            tags = json.loads(dicom.GetInstanceSimplifiedJson())
            origin = self._origins.get(dicom.GetInstanceOrigin(), "UNKNOWN")
            aet = dicom.GetInstanceRemoteAet() if origin == "DICOM_PROTOCOL" else None
            self.auditor.on_stored_instance(tags, instance_id, origin, aet or None)
        except BaseException as exc:
            logger.error("stored-instance hook error (%s); an import was not audited",
                         type(exc).__name__)  # fmt: skip

    def change(self, change_type: int, level: int, resource: str) -> None:
        try:
            name = self._changes.get(change_type, "")
            if name == "ORTHANC_STARTED":
                self._detect_dicomweb()
            elif name == "ORTHANC_STOPPED":
                self.stop()
            else:
                self.auditor.on_change(
                    name, _LEVELS.get(self._levels.get(level, ""), None), resource
                )
        except BaseException as exc:
            logger.error("change hook error (%s)", type(exc).__name__)

    def health(self, output: Any, uri: str, **request: Any) -> None:
        """GET /phi-ledger/health: the emitter's health and the plugin's counters (JSON)."""
        try:
            if request.get("method") not in ("GET", 1):
                output.SendMethodNotAllowed("GET")
                return
            health = self.emitter.health()
            body = {
                "emitter": health
                if isinstance(health, dict)
                else {
                    k: (v.value if hasattr(v, "value") else v) for k, v in asdict(health).items()
                },
                "handoff": self.emitter.counts,
                "audit": self.auditor.counters.snapshot(),
            }
            output.AnswerBuffer(json.dumps(body), "application/json")
        except BaseException as exc:
            logger.error("health route error (%s)", type(exc).__name__)
            output.SendHttpStatusCode(500)

    def _detect_dicomweb(self) -> None:
        try:
            plugins = json.loads(self.orthanc.RestApiGet("/plugins"))
        except Exception:
            return
        if isinstance(plugins, list) and "dicom-web" in plugins:
            self.auditor.dicomweb = True
            logger.info("DICOMweb plugin found: QIDO-RS and WADO-RS requests are audited")

    def stop(self) -> None:
        """Flush and stop (Orthanc is stopping); idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.auditor.stop(timeout=self.config.stop_timeout_seconds)
        self.emitter.stop()
        logger.info("stopped; counters %s", self.auditor.counters.snapshot())


def _bridge_logging(orthanc: Any) -> None:
    handler = OrthancLogHandler(orthanc)
    for name, level in _LOGGERS:
        log = logging.getLogger(name)
        log.handlers = [h for h in log.handlers if not isinstance(h, OrthancLogHandler)]
        log.addHandler(handler)
        log.setLevel(level)
        log.propagate = False


def install(orthanc: Any) -> Plugin | None:
    """Read the ``PhiLedger`` section, start the emitter, register the callbacks.

    Returns None (after one error in Orthanc's log) when the plugin is disabled.
    orthanc-python keeps one callback of each kind per script: a site whose own
    ``PythonScript`` already registers an HTTP filter or change callback calls the
    returned plugin's ``http_filter`` / ``change`` / ``stored_instance`` from its own.
    """
    _bridge_logging(orthanc)
    try:
        config = parse_config(json.loads(orthanc.GetConfiguration()))
    except (ConfigError, ValueError) as exc:
        orthanc.LogError(f"PhiLedger: {exc}; PHI auditing is DISABLED")
        return None
    if not config.enabled:
        orthanc.LogWarning("PhiLedger: Enabled is false; PHI auditing is disabled")
        return None
    if config.spool_dir is None:
        orthanc.LogWarning(
            "PhiLedger: no SpoolDirectory: audit events are lost while Kafka is unreachable"
        )
    # Orthanc threads entering a callback must not wait long for the plugin's own threads.
    sys.setswitchinterval(config.gil_switch_seconds)
    emitter: HostEmitter
    for old, new in config.deprecated_keys:
        orthanc.LogWarning(f"PhiLedger: {old} is deprecated; rename it to {new}")
    if config.pipe:
        emitter = PipeEmitter(
            config.emitter_config(),
            # The pipe bounds its hand-off below half a block of sequence numbers.
            max_pending=min(config.max_pending, PIPE_MAX_PENDING),
            block_seconds=config.block_seconds,
            python=config.pipe_python,
            pythonpath=(_PACKAGE_ROOT, *config.python_path),
            nice=config.pipe_nice,
            idle=config.pipe_idle,
        )
    else:
        emitter = SyncEmitter(
            config.emitter_config(),
            max_pending=config.max_pending,
            block_seconds=config.block_seconds,
        )
    try:
        emitter.start()
    except Exception as exc:
        orthanc.LogError(
            f"PhiLedger: the emitter did not start ({type(exc).__name__}: {exc}); "
            "PHI auditing is DISABLED"
        )
        return None
    plugin = Plugin(orthanc, config, emitter)
    plugin.auditor.start()
    orthanc.RegisterIncomingHttpRequestFilter(plugin.http_filter)
    orthanc.RegisterOnStoredInstanceCallback(plugin.stored_instance)
    orthanc.RegisterOnChangeCallback(plugin.change)
    orthanc.RegisterRestCallback("/phi-ledger/health", plugin.health)
    if config.audit_dicom_find:
        install_find(orthanc, plugin.auditor, config)
    install_wrappers(orthanc, plugin.auditor, fail_closed=config.fail_closed,
                     archive_max_bytes=config.archive_max_bytes,
                     wrap_move=config.wrap_rest_move)  # fmt: skip
    orthanc.LogWarning(
        f"PhiLedger: auditing PHI access to Kafka {config.bootstrap_servers} "
        f"(topic {config.access_topic}, producer {config.producer_id}, "
        f"facility {config.facility_id})"
    )
    return plugin
