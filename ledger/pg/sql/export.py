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

#: Where each log lies in its partition's chain of periods (migration 0017).
EXPORT_LOG_CHAIN: Final = "SELECT log_id, topic, kafka_partition, period, first_offset FROM logs"

#: Every stored seal, with its successor's origin.
EXPORT_SEALS: Final = """
SELECT s.log_id, s.size, s.note, s.next_log_id, s.next_first_offset, n.origin AS next_origin
FROM log_seals s JOIN logs n ON n.log_id = s.next_log_id
"""
