"""The rules of an access answer's result set (PhiAccessEvent v2 ``disclosed``).

Invariant: a valid result set is canonical -- patients sorted by (issuer, absent first;
then id), each once, their study UIDs sorted and unique -- bounded by
``MAX_DISCLOSED_PATIENTS`` and ``MAX_DISCLOSED_STUDIES``, and its total agrees with its
truncation flag; so the ledger's ``event_patients`` rows are exactly what the leaf says
(docs/design/multi-patient-events.md). Applied by ``validation`` on both sides of Kafka.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from producers.events.fields import check_patient, check_study, fail
from producers.events.limits import MAX_DISCLOSED_PATIENTS, MAX_DISCLOSED_STUDIES


def check_disclosed_patients(raw: object, truncated: object, total: object) -> int:
    """Schema v2's result set (absent in v1): canonical, so that the ledger's projection
    (``event_patients``) is exactly what the event says. Returns how many it lists."""
    if truncated is not None and type(truncated) is not bool:
        raise fail("disclosed_truncated", "must be a boolean")
    patients = [] if raw is None else raw
    if not isinstance(patients, list):
        raise fail("disclosed", "must be a list")
    if len(patients) > MAX_DISCLOSED_PATIENTS:
        raise fail("disclosed", f"has {len(patients)} patients; at most {MAX_DISCLOSED_PATIENTS}")
    studies, previous = 0, None
    for i, p in enumerate(patients):
        if not isinstance(p, Mapping):
            raise fail(f"disclosed[{i}]", "must be a record")
        check_patient(p, path=f"disclosed[{i}]")
        key = (cast("str | None", p.get("issuer")) or "", cast(str, p.get("id")))
        if previous is not None and not previous < key:
            raise fail(f"disclosed[{i}]", "patients must be sorted by (issuer, id), each once")
        previous = key
        studies += _disclosed_studies(i, p.get("studies"))
        if studies > MAX_DISCLOSED_STUDIES:
            raise fail("disclosed", f"has more than {MAX_DISCLOSED_STUDIES} studies")
    _disclosed_total(len(patients), truncated is True, total)
    return len(patients)


def _disclosed_studies(i: int, raw: object) -> int:
    """One disclosed patient's study UIDs: DICOM UIDs, sorted, each once."""
    uids = [] if raw is None else raw
    if not isinstance(uids, list):
        raise fail(f"disclosed[{i}].studies", "must be a list")
    previous: str | None = None
    for j, uid in enumerate(uids):
        check_study(f"disclosed[{i}].studies[{j}]", {"uid": uid}, uid_path="")
        if previous is not None and not previous < uid:
            raise fail(f"disclosed[{i}].studies[{j}]", "study UIDs must be sorted, each once")
        previous = uid
    return len(uids)


def _disclosed_total(listed: int, truncated: bool, total: object) -> None:
    """Untruncated, the total is the number listed; truncated, it is larger."""
    if total is None:
        total = listed  # a record built without the field (v1) lists nobody
    if type(total) is not int or not 0 <= total < 2**31:
        raise fail("disclosed_total", "must be between 0 and 2^31-1")
    if truncated and not (listed > 0 and total > listed):
        raise fail("disclosed_total", "a truncated answer lists some patients and counts more")
    if not truncated and total != listed:
        raise fail("disclosed_total", f"is {total} but {listed} patients are listed")
