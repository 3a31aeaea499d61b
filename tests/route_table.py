"""The route table of docs/api.md, parsed: the one place that says who may read what."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tests.support import ROOT

API_DOC = ROOT / "docs" / "api.md"


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One line of the documented route table."""

    method: str
    path: str
    permission: str
    roles: frozenset[str]
    phi: bool
    recorded: bool


def canonical(path: str) -> str:
    """``{level:\\d+}`` -> ``{level}``: a route's path as documented."""
    return re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)


def documented_table(text: str | None = None) -> list[Row]:
    text = API_DOC.read_text() if text is None else text
    begin, end = text.index("<!-- route-table:begin -->"), text.index("<!-- route-table:end -->")
    lines = [line for line in text[begin:end].splitlines() if line.startswith("|")]
    assert lines[0].split("|")[1:-1] == [
        " method ", " path ", " permission ", " roles ", " PHI ", " recorded ",
    ]  # fmt: skip
    rows = []
    for line in lines[2:]:
        method, path, permission, roles, phi, recorded = (
            cell.strip() for cell in line.split("|")[1:-1]
        )
        assert phi in ("yes", "no"), line
        assert recorded in ("yes", "no"), line
        rows.append(
            Row(
                method=method,
                path=path.strip("`"),
                permission=permission,
                roles=frozenset(r.strip() for r in roles.split(",")),
                phi=phi == "yes",
                recorded=recorded == "yes",
            )
        )
    return rows
