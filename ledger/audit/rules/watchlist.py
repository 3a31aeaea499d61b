"""The privacy watch list (CSV ``list,patient_id,issuer,user_id,note``) -> ``WatchList``.

Invariant: ``parse_watchlist`` either returns every line of the file, each valid, or
raises ``WatchListError`` naming every bad line (line, field, reason); nothing of a bad
file is used. Pure: bytes in, values out (the caller reads the file, at most
``MAX_FILE_BYTES`` + 1 bytes). A ``workforce`` line is a workforce member's own patient
record (``user_id`` = that member); a ``vip`` line names no user. A blank issuer matches
the patient id under any issuer. Text a spreadsheet would run as a formula is refused.
Format and refusals: docs/design/compliance.md ("More rules (session 4)").
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from ledger.errors import MalformedInputError

#: Largest watch-list file, in bytes.
MAX_FILE_BYTES: Final = 8 * 1024 * 1024
#: Most entries one file may hold.
MAX_LINES: Final = 200_000
#: Longest id (patient, issuer, user) and note, in characters.
MAX_ID_CHARS: Final = 128
MAX_NOTE_CHARS: Final = 500
#: The columns, exactly these (any order).
COLUMNS: Final = ("list", "patient_id", "issuer", "user_id", "note")
#: First characters that make a spreadsheet evaluate a cell (CSV/formula injection).
FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")
_BOMS: Final = ((b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))


class WatchKind(StrEnum):
    WORKFORCE = "workforce"
    VIP = "vip"


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchEntry:
    kind: WatchKind
    patient_id: str
    #: None: the patient id under any issuer.
    issuer: str | None
    #: The workforce member whose own record this is (None on a vip line).
    user_id: str | None
    line: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchProblem:
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.reason}"


class WatchListError(MalformedInputError):
    """A watch-list file refused whole; ``problems`` names every bad line, in order."""

    def __init__(self, name: str, problems: tuple[WatchProblem, ...]) -> None:
        lines = "\n".join(f"  {name}: {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in the watch list {name}:\n{lines}")
        self.problems = problems


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchList:
    """The entries of one file, indexed by patient id, and the file's SHA-256 (recorded
    in every alert the lists raise, so an alert says which list it was raised under)."""

    name: str
    sha256: str
    entries: tuple[WatchEntry, ...]
    _by_patient: Mapping[str, tuple[WatchEntry, ...]] = field(repr=False, compare=False)

    def lists_id(self, patient_id: object) -> bool:
        """Whether any entry names this patient id (under any issuer)."""
        return isinstance(patient_id, str) and patient_id in self._by_patient

    def matching(self, patient_id: str, issuer: str | None) -> tuple[WatchEntry, ...]:
        """The entries for this patient: same id, and the same issuer or none listed."""
        return tuple(
            e
            for e in self._by_patient.get(patient_id, ())
            if e.issuer is None or e.issuer == issuer
        )


def parse_watchlist(name: str, data: bytes) -> WatchList:
    """The watch list in ``data`` (a CSV file's bytes; ``name`` is only for messages)."""
    if len(data) > MAX_FILE_BYTES:
        raise WatchListError(name, (_file(f"is larger than {MAX_FILE_BYTES} bytes"),))
    text = _text(data)
    if isinstance(text, WatchProblem):
        raise WatchListError(name, (text,))
    entries: list[WatchEntry] = []
    problems: list[WatchProblem] = []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    count = 0
    try:
        for line, cells in _lines(reader):
            if header is None:
                header = [c.strip() for c in cells]
                if sorted(header) != sorted(COLUMNS):
                    problems.append(_bad_header(line, header))
                    break
                continue
            count += 1
            if count > MAX_LINES:
                problems.append(_file(f"has more than {MAX_LINES} lines", line))
                break
            if len(cells) != len(header):
                reason = f"has {len(cells)} fields; the header has {len(header)}"
                problems.append(WatchProblem(line=line, field="<line>", reason=reason))
                continue
            got = _entry(line, dict(zip(header, cells, strict=True)))
            if isinstance(got, WatchEntry):
                entries.append(got)
            else:
                problems += got
    except csv.Error as exc:  # a bad quote, a NUL, a field over the csv module's limit
        problems.append(_file(f"is not valid CSV: {exc}", reader.line_num))
    if header is None:
        problems.append(_file("is empty: no header line"))
    problems += _conflicts(entries)
    if problems:
        raise WatchListError(name, tuple(sorted(problems, key=lambda p: p.line)))
    return _index(name, data, entries)


def _text(data: bytes) -> str | WatchProblem:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _file(f"is {encoding} text: save it as UTF-8")
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return _file(f"is not UTF-8 (byte {exc.start} is not valid UTF-8)", line)


def _lines(reader: Iterator[list[str]]) -> Iterator[tuple[int, list[str]]]:
    """Each non-blank record with the line it starts on (a quoted cell may span lines)."""
    line_num = 0
    for cells in reader:
        start = line_num + 1
        line_num = getattr(reader, "line_num", start)
        if any(c.strip() for c in cells):
            yield start, cells


def _bad_header(line: int, header: list[str]) -> WatchProblem:
    missing = sorted(set(COLUMNS) - set(header))
    unknown = sorted({h[:40] for h in header} - set(COLUMNS))[:10]
    twice = len(set(header)) != len(header)
    reason = (
        f"the header must be {','.join(COLUMNS)}: missing {missing or 'none'}, "
        f"unknown {unknown or 'none'}{', a column named twice' if twice else ''}"
    )
    return WatchProblem(line=line, field="<header>", reason=reason)


def _entry(line: int, raw: Mapping[str, str]) -> WatchEntry | list[WatchProblem]:
    problems: list[WatchProblem] = []

    def problem(column: str, reason: str) -> None:
        problems.append(WatchProblem(line=line, field=column, reason=reason))

    for column in COLUMNS:
        reason = _cell_problem(column, raw[column])
        if reason is not None:
            problem(column, reason)
    if problems:
        return problems
    kind, patient, issuer, user = (raw[c] for c in ("list", "patient_id", "issuer", "user_id"))
    if kind not in {k.value for k in WatchKind}:
        problem("list", f"{_shown(kind)} is not workforce or vip")
    if not patient:
        problem("patient_id", "is empty")
    if kind == WatchKind.WORKFORCE and not user:
        problem("user_id", "is empty: a workforce line names the member whose record it is")
    if kind == WatchKind.VIP and user:
        problem("user_id", "must be empty on a vip line")
    if problems:
        return problems
    return WatchEntry(
        kind=WatchKind(kind), patient_id=patient, issuer=issuer or None, user_id=user or None,
        line=line,
    )  # fmt: skip


def _cell_problem(column: str, value: str) -> str | None:
    most = MAX_NOTE_CHARS if column == "note" else MAX_ID_CHARS
    if len(value) > most:
        return f"is {len(value)} characters long; at most {most}"
    if value.startswith(FORMULA_STARTS):
        return f"starts with {value[0]!r}: a spreadsheet would run it as a formula"
    allowed = "\r\n" if column == "note" else ""  # a quoted note may span lines
    if any((ord(c) < 32 or ord(c) == 127) and c not in allowed for c in value):
        return "holds a control character"
    if column != "note" and value.strip() != value:
        return "has spaces around it"
    return None


def _conflicts(entries: list[WatchEntry]) -> list[WatchProblem]:
    """A line repeating an earlier one, or a record claimed by two members."""
    problems: list[WatchProblem] = []
    seen: dict[tuple[WatchKind, str, str | None], WatchEntry] = {}
    for e in entries:
        key = (e.kind, e.patient_id, e.issuer)
        first = seen.setdefault(key, e)
        if first is e:
            continue
        if first.user_id == e.user_id:
            reason = f"repeats line {first.line}"
        else:
            reason = f"line {first.line} lists this record as another member's"
        problems.append(WatchProblem(line=e.line, field="patient_id", reason=reason))
    return problems


def _index(name: str, data: bytes, entries: list[WatchEntry]) -> WatchList:
    by_patient: dict[str, list[WatchEntry]] = {}
    for e in entries:
        by_patient.setdefault(e.patient_id, []).append(e)
    return WatchList(
        name=name,
        sha256=hashlib.sha256(data).hexdigest(),
        entries=tuple(entries),
        _by_patient={k: tuple(v) for k, v in by_patient.items()},
    )


def _file(reason: str, line: int = 0) -> WatchProblem:
    return WatchProblem(line=line, field="<file>", reason=reason)


def _shown(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
