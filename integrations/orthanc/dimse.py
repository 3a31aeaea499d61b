"""The C-FIND SCP callback the plugin registers (``orthanc.RegisterFindCallback``).

Invariant: the callback answers every C-FIND as Orthanc's own handler would
(``dimse_find.FindEngine``) and records it (``dimse_audit.DimseRecorder``) before any
answer is sent; it never lets an exception of the plugin's own reach Orthanc except to
fail a C-FIND that Orthanc itself would fail, or, with ``FailClosed``, one that cannot be
queued for audit (the SCU gets 0xC000 Unable to process, no answers). With the audit
hand-off full and ``FailClosed`` false, the answers are sent and the miss is counted.
Logs name exception types only, never PHI.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from integrations.orthanc.audit import Auditor
from integrations.orthanc.config import PluginConfig
from integrations.orthanc.delivery import Counters
from integrations.orthanc.dimse_audit import DimseQuery, DimseRecorder, now
from integrations.orthanc.dimse_find import (
    FindEngine,
    FindOutcome,
    FindRefused,
    FindSettings,
    rest_json,
)
from integrations.orthanc.dimse_tags import tag_key, vr_of
from integrations.orthanc.transport import dicom_transport
from producers import Facility

logger = logging.getLogger(__name__)


class NotAudited(Exception):
    """FailClosed: the C-FIND could not be queued for audit, so it is refused."""


class HandlerError(Exception):
    """The handler failed (its message is the original exception's type only)."""


def read_query(query: Any) -> list[tuple[str, str, str]]:
    """(tag, keyword, value) of every key of an ``orthanc.FindQuery``, in Orthanc's order."""
    items = []
    for i in range(query.GetFindQuerySize()):
        tag = tag_key(query.GetFindQueryTagGroup(i), query.GetFindQueryTagElement(i))
        items.append((tag, str(query.GetFindQueryTagName(i)), str(query.GetFindQueryValue(i))))
    return items


class FindCallback:
    """``__call__(answers, query, issuer_aet, called_aet)``, as orthanc-python calls it."""

    def __init__(
        self,
        orthanc: Any,
        engine: FindEngine,
        recorder: DimseRecorder,
        counters: Counters,
        *,
        fail_closed: bool,
    ) -> None:
        self._orthanc = orthanc
        self._engine = engine
        self._recorder = recorder
        self._counters = counters
        self._fail_closed = fail_closed

    def __call__(self, answers: Any, query: Any, issuer_aet: str, called_aet: str) -> None:
        try:
            self._handle(answers, query, issuer_aet, called_aet)
        except (FindRefused, NotAudited):
            raise
        except Exception as exc:
            # Orthanc's own handler is replaced: the C-FIND can only fail (0xC000). The
            # exception Orthanc logs names nothing but its type.
            self._counters.errors += 1
            logger.error("C-FIND handler error (%s); the C-FIND failed", type(exc).__name__)
            raise HandlerError(type(exc).__name__) from None

    def _handle(self, answers: Any, query: Any, issuer_aet: str, called_aet: str) -> None:
        at = now()
        items = read_query(query)
        names = {tag: name for tag, name, _ in items}
        try:
            outcome = self._engine.answer([(tag, value) for tag, _, value in items])
        except Exception:
            self._record(issuer_aet, called_aet, items, None, at)
            raise
        criteria = tuple((names.get(t) or t, v) for t, v in outcome.criteria)
        if not self._record(issuer_aet, called_aet, items, outcome, at, criteria):
            self._counters.unaudited += 1
            logger.error("C-FIND not queued for audit (queue full)")
            if self._fail_closed:
                raise NotAudited("the C-FIND could not be queued for audit")
        for answer in outcome.answers:
            answers.FindAddAnswer(self._dicom(answer.tags))
        if not outcome.complete:
            answers.FindMarkIncomplete()

    def _record(
        self,
        calling: str,
        called: str,
        items: list[tuple[str, str, str]],
        outcome: FindOutcome | None,
        at: Any,
        criteria: tuple[tuple[str, str], ...] | None = None,
    ) -> bool:
        try:
            if criteria is None:
                criteria = tuple((name or tag, value) for tag, name, value in items if value)
            return self._recorder.query(
                DimseQuery(
                    calling_aet=calling,
                    called_aet=called,
                    level=outcome.level if outcome else _level(items),
                    criteria=criteria,
                    answers=len(outcome.answers) if outcome else 0,
                    subjects=tuple(a.subject for a in outcome.answers) if outcome else (),
                    complete=outcome.complete if outcome else True,
                    refused=outcome is None,
                    at=at,
                )
            )
        except Exception as exc:
            logger.error("C-FIND audit error (%s)", type(exc).__name__)
            return False

    def _dicom(self, tags: Mapping[str, object]) -> bytes:
        """The answer as a DICOM buffer (Orthanc re-encodes it in its DefaultEncoding).

        Orthanc builds its own answers permissively (a value its VR refuses is dropped);
        so does this: a refused tag is left out and the rest kept.
        """
        try:
            return bytes(self._orthanc.CreateDicom(json.dumps(tags), None, 0))
        except Exception:
            kept: dict[str, object] = {}
            for tag, value in tags.items():
                try:
                    self._orthanc.CreateDicom(json.dumps({tag: value}), None, 0)
                    kept[tag] = value
                except Exception:  # noqa: S112 (dropped as Orthanc drops it)
                    continue
            return bytes(self._orthanc.CreateDicom(json.dumps(kept), None, 0))


def _level(items: list[tuple[str, str, str]]) -> str:
    raw = next((v for t, _, v in items if t == "0008,0052"), "").strip().upper()
    return {"PATIENT": "Patient", "STUDY": "Study", "SERIES": "Series"}.get(raw, "Instance")


def install_find(orthanc: Any, auditor: Auditor, config: PluginConfig) -> FindCallback | None:
    """Replace Orthanc's C-FIND SCP with the audited one (same answers).

    Without the DICOM dictionary (pydicom) the answers could differ (PersonName keys
    match without case): Orthanc's own handler is then kept, unaudited, with an error in
    its log. Never raises.
    """
    try:
        if vr_of("0010,0010") != "PN":
            orthanc.LogError(
                "PhiLedger: pydicom is not importable (PythonPath): C-FIND is answered by "
                "Orthanc and NOT audited"
            )
            return None
        settings = FindSettings.from_orthanc(json.loads(orthanc.GetConfiguration()))
        get, post = rest_json(orthanc.RestApiGet), rest_json(orthanc.RestApiPost)
        recorder = DimseRecorder(
            submit=auditor.submit,
            delivery=auditor.delivery,
            resolver=auditor.resolver,
            facility=Facility(id=config.facility_id, name=config.facility_name),
            purpose_of_use=config.purpose_of_use,
            default_issuer=config.default_issuer,
            transport=dicom_transport(config),
        )
        callback = FindCallback(orthanc, FindEngine(get, post, settings), recorder,
                                auditor.counters, fail_closed=config.fail_closed)  # fmt: skip
        orthanc.RegisterFindCallback(callback)
    except Exception as exc:
        orthanc.LogError(
            f"PhiLedger: the C-FIND handler was not installed ({type(exc).__name__}); "
            "C-FIND is answered by Orthanc and NOT audited"
        )
        return None
    return callback
