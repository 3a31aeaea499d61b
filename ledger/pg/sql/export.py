"""What ``ledger export`` streams into a bundle, one log at a time, in leaf order.

Invariant: rows are copied verbatim, ordered by their position in the tree.
"""

from __future__ import annotations

from typing import Final

from ledger.pg.sql.cosignatures import COSIGNED_NOTE
from ledger.pg.sql.reads import INDEX_COLUMNS_SQL

EXPORT_LEAVES: Final = "SELECT leaf_index, leaf FROM leaves WHERE log_id = $1 ORDER BY leaf_index"
EXPORT_TILES: Final = (
    "SELECT level, tile_index, hashes FROM tiles WHERE log_id = $1 ORDER BY level, tile_index"
)
EXPORT_CHECKPOINTS: Final = (
    f"SELECT c.size, {COSIGNED_NOTE} AS note FROM checkpoints c WHERE c.log_id = $1 ORDER BY c.size"
)
EXPORT_INDEX: Final = (
    f"SELECT {INDEX_COLUMNS_SQL} FROM events e WHERE e.log_id = $1 ORDER BY e.leaf_index"
)
