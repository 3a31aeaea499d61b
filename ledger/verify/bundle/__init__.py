"""The offline export bundle (``phi-ledger-export/v1``): pure, streaming file I/O.

Owns the bundle format: ``layout`` (file names, record heads, manifest logs, index
cells), ``writer`` (``BundleWriter``, ``LogWriter``: a faithful, unjudged copy, the
manifest written last), ``reader`` (``BundleReader``: records back in file order, in
bounded memory) and ``files`` (owner-only directories and files: a bundle is PHI at rest).
May import ``ledger.audit``, ``ledger.log`` and ``ledger.errors``; never a database or a
socket. The format itself: docs/bundle-format.md.
"""

from ledger.verify.bundle.files import check_target
from ledger.verify.bundle.layout import (
    BUNDLE_FORMAT,
    INDEX_COLUMNS,
    TILE_BYTES,
    BundleLog,
    index_row,
)
from ledger.verify.bundle.reader import BundleReader
from ledger.verify.bundle.writer import BundleWriter, LogWriter, SchemaRecord

__all__ = [
    "BUNDLE_FORMAT",
    "INDEX_COLUMNS",
    "TILE_BYTES",
    "BundleLog",
    "BundleReader",
    "BundleWriter",
    "LogWriter",
    "SchemaRecord",
    "check_target",
    "index_row",
]
