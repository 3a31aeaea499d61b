"""The DIMSE statuses the proxy answers of its own (everything else it answers is the
PACS's, relayed), in one place; docs/dicom-proxy.md, "Statuses", explains each choice.

Invariant: a refusal because the operation cannot be recorded is "Refused: Out of
Resources" (A700, transient: the SCU may retry); a PACS that cannot be reached or fails
mid-operation is the "unable to process" failure pynetdicom itself sends when a handler
fails (Cx11), so an SCU can tell the two apart.
"""

from __future__ import annotations

from typing import Final

from integrations.dicomproxy.operations import OperationKind
from integrations.dicomproxy.upstream import UpstreamUnavailable

PENDING: Final = frozenset({0xFF00, 0xFF01})
SUCCESS: Final = 0x0000
CANCEL: Final = 0xFE00
#: C-FIND and C-STORE that the recorder refused in fail-closed mode.
REFUSED_UNRECORDED: Final = 0xA700
#: A C-FIND, C-GET or C-MOVE identifier that cannot be decoded: "Identifier does not
#: match SOP Class" (C-FIND; C-GET and C-MOVE get pynetdicom's Cx11 instead).
BAD_IDENTIFIER: Final = 0xA900
#: A C-STORE data set that cannot be decoded: "Error: Cannot understand" (not forwarded).
BAD_DATASET: Final = 0xC000
#: pynetdicom's C-GET/C-MOVE status when all sub-operations failed, and when some did.
ALL_SUB_OPERATIONS_FAILED: Final = 0xA702
SUB_OPERATIONS_WARNING: Final = 0xB000
UPSTREAM_FAILED: Final = {
    OperationKind.FIND: 0xC311,
    OperationKind.STORE: 0xC211,
    OperationKind.GET: 0xC411,
    OperationKind.MOVE: 0xC511,
}
#: What a failing PACS association raises (pynetdicom raises ValueError and
#: RuntimeError for a context the PACS did not accept or an association it dropped).
UPSTREAM_ERRORS: Final = (UpstreamUnavailable, ValueError, RuntimeError, OSError)
