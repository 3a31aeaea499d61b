"""Limits and vocabularies that the event rules enforce (one home for each number).

Invariant: every bound here is checked by ``validation`` on both sides of Kafka (the
producer before encoding, the consumer after decoding); changing one changes what the
ledger accepts.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Final

from schemas import dicom

#: DICOM PS3.15 A.5 EventIDs (code system DCM) that a PHI access event may carry.
DICOM_EVENT_IDS: Final[Mapping[str, str]] = dicom.EVENT_IDS
#: The EventIDs a ``SecurityEvent`` may carry: Application Activity (110100), Network Entry
#: (110108), Security Alert (110113) and User Authentication (110114).
SECURITY_EVENT_IDS: Final[frozenset[str]] = dicom.SECURITY_EVENT_IDS

#: HL7 v3 PurposeOfUse codes accepted in ``purpose_of_use``.
PURPOSES_OF_USE: Final[frozenset[str]] = frozenset(
    {
        "TREAT",
        "ETREAT",
        "HPAYMT",
        "HOPERAT",
        "PUBHLTH",
        "HRESCH",
        "LEGAL",
        "PATRQT",
        "FAMRQT",
        "PWATRNY",
        "SYSADMN",
        "HSYSADMIN",
        "COC",
        "HMARKT",
        "OVERSIGHT",
        "DISASTER",
        "THREAT",
        "CLINTRCH",
        "HQUALIMP",
        "HPRGRP",
        "BTG",
    }
)
#: Longest string accepted in any identifier field, in characters.
MAX_ID_CHARS: Final = 256
#: Longest free-text field, in characters.
MAX_TEXT_CHARS: Final = 1024
#: Most entries in ``details``.
MAX_DETAILS: Final = 64
#: How far in the future an event time may be, to tolerate clock skew.
MAX_FUTURE_SKEW: Final = timedelta(minutes=5)
#: Oldest event time accepted (no PACS predates this).
MIN_EVENT_TIME: Final = datetime(1990, 1, 1, tzinfo=UTC)
#: Most disclosed ranges one AuditLogUsed event may carry.
MAX_DISCLOSED_RANGES: Final = 1000
#: Largest ``end`` of a disclosed range (leaf indexes fit in a signed 64-bit integer).
MAX_LEAF_END: Final = 1 << 62
#: Most patients one PhiAccessEvent (v2) may list in ``disclosed``; an answer with more
#: is recorded truncated (``disclosed_truncated``, ``disclosed_total``).
MAX_DISCLOSED_PATIENTS: Final = 1000
#: Most study UIDs all ``disclosed`` patients of one event may list together.
MAX_DISCLOSED_STUDIES: Final = 1000
#: The DICOM EventID of a Query (110112): the only PHI access that may name no patient
#: and disclose none (a search that matched nothing).
QUERY_EVENT_ID: Final = "110112"
