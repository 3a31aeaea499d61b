"""Helpers that read the vector files under tests/vectors/data/ (see data/README.md)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).parent / "data"
MERKLE_DIR = DATA_DIR / "transparency-dev_merkle"
GOLANG_MOD_DIR = DATA_DIR / "golang_mod"


def load_json(path: Path) -> Any:
    """Parse one JSON vector file."""
    return json.loads(path.read_text(encoding="utf-8"))


def go_bytes(value: str | None) -> bytes:
    """Decode a Go ``[]byte`` JSON field (standard base64; ``null`` and ``""`` are empty)."""
    return base64.b64decode(value, validate=True) if value else b""


def go_proof(value: list[str] | None) -> list[bytes]:
    """Decode a Go ``[][]byte`` JSON field (``null`` is an empty proof)."""
    return [go_bytes(item) for item in value or []]
