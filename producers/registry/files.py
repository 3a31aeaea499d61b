"""Registry files (CSV or JSON) -> registry changes, all of them or none.

Invariant: ``load_registry_files`` either returns a change for every line of every file,
each one valid, or raises ``RegistryFileError`` naming every bad line (file, line, field,
reason); a file is read only up to ``MAX_FILE_BYTES`` and must be UTF-8. Pure but for
reading the named files. Formats and refusals: docs/design/compliance-registry.md.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Final

from producers.errors import RegistryFileError, RegistryProblem
from producers.events.model import utc_now
from producers.registry.crosscheck import KnownRegistryIds, cross_check
from producers.registry.model import Author, RegistryChange, RegistryKind, kind_of
from producers.registry.rows import ENVELOPE_COLUMNS, RegistryRow, columns_of, kind_named, parse_row

#: Largest registry file read, in bytes (a registry of a large health system is a few MB).
MAX_FILE_BYTES: Final = 8 * 1024 * 1024
#: Most lines (CSV rows or JSON objects) one file may hold.
MAX_LINES: Final = 50_000
#: The order changes are applied in: what a line names is defined before it.
APPLY_ORDER: Final = (
    RegistryKind.ORGANIZATION,
    RegistryKind.MEMBER,
    RegistryKind.BAA,
    RegistryKind.LICENSE,
    RegistryKind.CREDENTIAL,
)
_BOMS: Final = ((b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"), (b"\x00\x00\xfe\xff", "UTF-32"))

Lines = tuple[list[RegistryRow], list[RegistryProblem]]


def load_registry_files(
    paths: Sequence[Path],
    *,
    author: Author,
    known: KnownRegistryIds | None = None,
    now: datetime | None = None,
) -> tuple[RegistryChange, ...]:
    """The changes the files make (one instant, ``now``, for all), in ``APPLY_ORDER``;
    raises ``RegistryFileError`` listing every problem if any line is bad."""
    return _changes(
        [read_registry_file(path) for path in paths],
        [str(path) for path in paths],
        author=author,
        known=known,
        now=now,
    )


def load_registry_bytes(
    name: str,
    data: bytes,
    *,
    author: Author,
    known: KnownRegistryIds | None = None,
    now: datetime | None = None,
) -> tuple[RegistryChange, ...]:
    """``load_registry_files`` for one file's bytes (an upload): ``name``'s suffix
    (``.csv`` or ``.json``) says the format, and problems name it as their file."""
    return _changes([parse_registry_bytes(name, data)], [name], author=author, known=known, now=now)


def _changes(
    files: Sequence[Lines],
    names: Sequence[str],
    *,
    author: Author,
    known: KnownRegistryIds | None,
    now: datetime | None,
) -> tuple[RegistryChange, ...]:
    rows: list[RegistryRow] = []
    problems: list[RegistryProblem] = []
    for got, bad in files:
        rows += got
        problems += bad
    problems += cross_check(rows, known or KnownRegistryIds())
    if problems:
        order = {n: i for i, n in enumerate(names)}
        problems.sort(key=lambda p: (order.get(p.file, len(order)), p.line))
        raise RegistryFileError(tuple(problems))
    when = now or utc_now()
    rank = {kind: i for i, kind in enumerate(APPLY_ORDER)}
    ordered = sorted(rows, key=lambda r: rank[kind_of(r.record)])  # stable: file order kept
    return tuple(
        RegistryChange(author=author, record=r.record, operation=r.operation, event_time=when)
        for r in ordered
    )


def read_registry_file(path: Path) -> Lines:
    """The valid rows of one file and the problems of its bad lines."""
    name = str(path)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return [], [_whole(name, f"cannot be read: {exc.strerror or exc}")]
    return parse_registry_bytes(name, data)


def parse_registry_bytes(name: str, data: bytes) -> Lines:
    """The rows of a file's bytes; its suffix (``.csv`` or ``.json``) says the format."""
    if len(data) > MAX_FILE_BYTES:
        return [], [_whole(name, f"is larger than {MAX_FILE_BYTES} bytes")]
    suffix = Path(name).suffix.lower()
    if suffix not in (".csv", ".json"):
        return [], [_whole(name, f"has suffix {suffix!r}: a registry file is .csv or .json")]
    text = _text(name, data)
    if isinstance(text, RegistryProblem):
        return [], [text]
    return _csv(name, text) if suffix == ".csv" else _json(name, text)


def _whole(name: str, reason: str, line: int = 0) -> RegistryProblem:
    return RegistryProblem(file=name, line=line, field="<file>", reason=reason)


def _text(name: str, data: bytes) -> str | RegistryProblem:
    """UTF-8 text without its BOM (spreadsheets write one); any other encoding is refused."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _whole(name, f"is {encoding} text: save it as UTF-8")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return _whole(name, f"is not UTF-8 (byte {exc.start} is not valid UTF-8)", line)
    return text.removeprefix("\ufeff")


def _csv(name: str, text: str) -> Lines:
    """A CSV file: a header naming ``kind``, optionally ``operation``, and the columns of
    exactly one kind; every row of that kind."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[RegistryRow] = []
    problems: list[RegistryProblem] = []
    header: list[str] | None = None
    kind: RegistryKind | None = None
    count = 0
    try:
        for line, cells in _csv_lines(reader):
            if header is None:
                header, kind, bad = _csv_header(name, line, cells)
                if bad is not None:
                    return [], [bad]
                continue
            count += 1
            if count > MAX_LINES:
                problems.append(_whole(name, f"has more than {MAX_LINES} lines", line))
                break
            if len(cells) != len(header):
                reason = f"has {len(cells)} fields; the header has {len(header)}"
                problems.append(_whole(name, reason, line))
                continue
            _take(name, line, kind, dict(zip(header, cells, strict=True)), rows, problems)
    except csv.Error as exc:  # a field over the csv module's limit, a bad quote, a NUL
        problems.append(_whole(name, f"is not valid CSV: {exc}", reader.line_num))
    if header is None:
        problems.append(_whole(name, "is empty: no header line"))
    return rows, problems


def _csv_lines(reader: Iterator[list[str]]) -> Iterator[tuple[int, list[str]]]:
    """Each non-blank record with the line it starts on (a quoted cell may span lines)."""
    line_num = 0
    for cells in reader:
        start = line_num + 1
        line_num = getattr(reader, "line_num", start)
        if cells:
            yield start, cells


def _csv_header(
    name: str, line: int, cells: list[str]
) -> tuple[list[str], RegistryKind | None, RegistryProblem | None]:
    names = [c.strip() for c in cells]
    if len(set(names)) != len(names):
        return names, None, _whole(name, "the header names a column twice", line)
    given = set(names) - set(ENVELOPE_COLUMNS)
    if "kind" not in names:
        return names, None, _whole(name, "the header has no 'kind' column", line)
    for kind in RegistryKind:
        if given == set(columns_of(kind)):
            return names, kind, None
    closest = max(RegistryKind, key=lambda k: len(given & set(columns_of(k))))
    missing = sorted(set(columns_of(closest)) - given)
    unknown = sorted(given - set(columns_of(closest)))
    reason = (
        f"the columns are no kind's: for {closest.value.lower()}, "
        f"missing {missing or 'none'}, unknown {[u[:40] for u in unknown[:10]] or 'none'}"
    )
    return names, None, _whole(name, reason, line)


def _take(
    name: str,
    line: int,
    file_kind: RegistryKind | None,
    raw: Mapping[str, object],
    rows: list[RegistryRow],
    problems: list[RegistryProblem],
) -> None:
    """Parse one line into ``rows``, or its problems into ``problems``. ``file_kind`` is
    a CSV file's kind (its header's columns); a JSON object names its own."""

    def problem(field: str, reason: str) -> None:
        problems.append(RegistryProblem(file=name, line=line, field=field, reason=reason))

    kind = kind_named(raw.get("kind"))
    if kind is None:
        names = ", ".join(k.value.lower() for k in RegistryKind)
        problem("kind", f"{repr(raw.get('kind'))[:40]} is not one of {names}")
        return
    if file_kind is not None and kind is not file_kind:
        problem(
            "kind", f"this file holds {file_kind.value.lower()} lines, not {kind.value.lower()}"
        )
        return
    unknown = sorted(set(raw) - set(ENVELOPE_COLUMNS) - set(columns_of(kind)))
    for key in unknown:  # a JSON object's misspelt key (a CSV header was checked whole)
        problem(key[:40], f"is not a field of a {kind.value.lower()}")
    parsed = parse_row(name, line, kind, raw)
    if not isinstance(parsed, RegistryRow):
        problems.extend(parsed)
    elif not unknown:
        rows.append(parsed)


def _json(name: str, text: str) -> Lines:
    """A JSON file: one array of objects, each with its ``kind``; a line number is where
    the object starts."""
    decoder = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    rows: list[RegistryRow] = []
    problems: list[RegistryProblem] = []
    pos = _skip(text, 0)
    if not text.startswith("[", pos):
        return [], [_whole(name, "must be a JSON array of objects", _line(text, pos))]
    pos = _skip(text, pos + 1)
    count = 0
    while not text.startswith("]", pos):
        line = _line(text, pos)
        if count >= MAX_LINES:
            return rows, [*problems, _whole(name, f"has more than {MAX_LINES} objects", line)]
        try:
            item, pos = decoder.raw_decode(text, pos)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
            return rows, [*problems, _whole(name, f"is not valid JSON: {exc}"[:300], line)]
        count += 1
        if isinstance(item, dict):
            _take(name, line, None, item, rows, problems)
        else:
            problems.append(_whole(name, f"holds a {type(item).__name__}, not an object", line))
        pos = _skip(text, pos)
        if text.startswith(",", pos):
            pos = _skip(text, pos + 1)
        elif not text.startswith("]", pos):
            return rows, [*problems, _whole(name, "expected ',' or ']'", _line(text, pos))]
    rest = _skip(text, pos + 1)
    if rest != len(text):
        problems.append(_whole(name, "has text after the array", _line(text, rest)))
    return rows, problems


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key[:40]!r} appears twice in one object")
        out[key] = value
    return out


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON value")
