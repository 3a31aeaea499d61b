"""The SOP classes the proxy serves besides storage (PS3.4 Annex A, C, K; PS3.6 A.1),
as UIDs: pynetdicom builds its ``sop_class`` names at import time, out of mypy's sight.

Invariant: the C-MOVE models map to the C-GET model of the same root, which the proxy
uses to fetch from the PACS.
"""

from __future__ import annotations

from typing import Final

VERIFICATION: Final = "1.2.840.10008.1.1"
PATIENT_ROOT_FIND: Final = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_ROOT_MOVE: Final = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_ROOT_GET: Final = "1.2.840.10008.5.1.4.1.2.1.3"
STUDY_ROOT_FIND: Final = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE: Final = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET: Final = "1.2.840.10008.5.1.4.1.2.2.3"
MODALITY_WORKLIST_FIND: Final = "1.2.840.10008.5.1.4.31"

QUERY_RETRIEVE: Final = (
    VERIFICATION,
    PATIENT_ROOT_FIND,
    PATIENT_ROOT_MOVE,
    PATIENT_ROOT_GET,
    STUDY_ROOT_FIND,
    STUDY_ROOT_MOVE,
    STUDY_ROOT_GET,
    MODALITY_WORKLIST_FIND,
)
MOVE_TO_GET: Final = {PATIENT_ROOT_MOVE: PATIENT_ROOT_GET, STUDY_ROOT_MOVE: STUDY_ROOT_GET}
