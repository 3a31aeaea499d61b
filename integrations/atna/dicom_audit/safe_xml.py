"""The XML hardening: the standard library's C ElementTree parser, refusing any DTD.

Invariant: a document with a document type declaration is refused before anything is
expanded or fetched; without a DTD no entity can be declared, so billion-laughs and XXE
payloads cannot work (docs/atna.md has the measurements against ``defusedxml``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET


class ForbiddenXml(Exception):
    """The document declares a DTD (the only place entities can be declared)."""


class NoDoctype(ET.TreeBuilder):
    """ElementTree's C tree builder, refusing any ``<!DOCTYPE``.

    The C parser calls ``doctype`` as the declaration starts, before its internal subset
    (entity declarations) is read. Without a DTD no entity can be declared, so a
    reference other than the five predefined ones is a well-formedness error, and
    ElementTree never fetches anything external. Subclassing keeps expat's C callbacks
    (about twice as fast as ``defusedxml``'s pure-Python ones, see docs/atna.md).
    """

    def doctype(self, name: str, pubid: str | None, system: str | None) -> None:
        raise ForbiddenXml(f"a document type declaration ({name[:40]!r})")


def _declares_doctype(payload: bytes) -> bool:
    """A quick look before expat starts (which, once started, reads on to the end even
    after the guard refused): ASCII-compatible encodings and UTF-16, the only other one
    expat detects by itself. Anything this misses, the guard refuses."""
    if b"<!DOCTYPE" in payload:
        return True
    head = payload[:4]
    if b"\x00" not in head and head[:2] not in (b"\xff\xfe", b"\xfe\xff"):
        return False
    big_endian = head[:2] == b"\xfe\xff" or head[:1] == b"\x00"
    text = payload.decode("utf-16-be" if big_endian else "utf-16-le", errors="replace")
    return "<!DOCTYPE" in text


def parse_xml(payload: bytes) -> ET.Element:
    if _declares_doctype(payload):
        raise ForbiddenXml("a document type declaration")
    # S314: the guard refuses DTDs, hence every entity and external-reference attack
    # defusedxml exists for (tests/unit/test_atna_parsing.py, the hostile XML cases).
    parser = ET.XMLParser(target=NoDoctype())  # noqa: S314
    parser.feed(payload)
    root: ET.Element = parser.close()
    return root
