"""One line of a registry file (a CSV row or a JSON object) -> one ``RegistryRow``.

Invariant: ``parse_row`` returns a row whose record passed every field rule of
``validation`` (the rules a ``RegistryChange`` is encoded under), or the list of every bad
field of the line, never both; text that a spreadsheet would run as a formula is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Final

from producers.errors import RegistryProblem, RegistryValidationError
from producers.events.limits import MAX_TEXT_CHARS
from producers.registry.model import (
    Baa,
    Credential,
    Organization,
    OrganizationKind,
    RegistryKind,
    RegistryOperation,
    RegistryRecord,
    StateLicense,
    WorkforceMember,
)
from producers.registry.validation import KIND_COLUMNS, check_subject, check_value

#: The first characters that make a spreadsheet evaluate a cell (CSV/formula injection):
#: a value starting with one is refused, never stored to be exported again.
FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")
#: Columns every line may have besides its kind's: ``kind`` (required), ``operation``.
ENVELOPE_COLUMNS: Final = ("kind", "operation")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryRow:
    """A valid line of a registry file and where it was."""

    file: str
    line: int
    operation: RegistryOperation
    record: RegistryRecord


def columns_of(kind: RegistryKind) -> tuple[str, ...]:
    """The columns of a kind's lines, after ``kind`` and ``operation``."""
    return tuple(name for name, _ in KIND_COLUMNS[kind])


def kind_named(value: object) -> RegistryKind | None:
    """The kind a ``kind`` cell names (``organization``, ``baa``, ...), any case."""
    if isinstance(value, str) and value.upper() in RegistryKind.__members__:
        return RegistryKind[value.upper()]
    return None


def parse_row(
    file: str, line: int, kind: RegistryKind, raw: Mapping[str, object]
) -> RegistryRow | list[RegistryProblem]:
    """The row of one line whose ``kind`` is known: its operation and record, or problems."""
    problems: list[RegistryProblem] = []

    def problem(field: str, reason: str) -> None:
        problems.append(RegistryProblem(file=file, line=line, field=field, reason=reason))

    operation = _operation(raw.get("operation"), problem)
    subject: dict[str, object] = {}
    for column, what in KIND_COLUMNS[kind]:
        try:
            value = _convert(column, what, raw.get(column))
            check_value(column, what, value)
        except RegistryValidationError as exc:
            problem(column, _reason(exc))
            continue
        subject[column] = value
    if not problems:
        try:
            check_subject("", kind, subject)
        except RegistryValidationError as exc:
            problem(exc.field.lstrip("."), _reason(exc))
    if problems or operation is None:
        return problems
    return RegistryRow(file=file, line=line, operation=operation, record=_record(kind, subject))


def _reason(exc: RegistryValidationError) -> str:
    """The message without its leading ``field:`` (the problem names the field)."""
    text = str(exc)
    head = f"{exc.field}: "
    return text[len(head) :] if text.startswith(head) else text


def _operation(value: object, problem: Callable[[str, str], None]) -> RegistryOperation | None:
    if value is None or value == "":
        return RegistryOperation.UPSERT
    if isinstance(value, str) and value.upper() in RegistryOperation.__members__:
        return RegistryOperation[value.upper()]
    problem("operation", f"must be upsert or retire, not {_shown(value)}")
    return None


def _convert(column: str, what: str, value: object) -> object:
    """A file's value as the record holds it (text stays text; days, booleans, enums)."""
    if isinstance(value, str):
        if len(value) > MAX_TEXT_CHARS:
            raise _bad(column, f"is {len(value)} characters long; at most {MAX_TEXT_CHARS}")
        if value.startswith(FORMULA_STARTS):
            raise _bad(
                column,
                f"starts with {value[0]!r}: a spreadsheet would run it as a formula",
            )
    if what in ("day", "open_day"):
        return _day(column, value)
    if what == "bool":
        return _boolean(column, value)
    if what == "org_kind" and isinstance(value, str):
        return value.upper() if value.upper() in OrganizationKind.__members__ else value
    if value is not None and not isinstance(value, str):
        raise _bad(column, f"must be text, not {type(value).__name__}")
    return value


def _day(column: str, value: object) -> date | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _DAY.fullmatch(value):
        raise _bad(column, f"{_shown(value)} is not a date (YYYY-MM-DD)")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _bad(column, f"{value!r} is not a calendar date") from None


def _boolean(column: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _bad(column, f"must be true or false, not {_shown(value)}")


def _bad(column: str, reason: str) -> RegistryValidationError:
    return RegistryValidationError(f"{column}: {reason}", field=column)


def _shown(value: object) -> str:
    """A value in a message, cut to 40 characters (a hostile file's cell can be huge)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _record(kind: RegistryKind, subject: dict[str, object]) -> RegistryRecord:
    if kind is RegistryKind.ORGANIZATION:
        return Organization(
            organization_id=str(subject["organization_id"]),
            name=str(subject["name"]),
            organization_kind=OrganizationKind(str(subject["organization_kind"])),
        )
    factory: type[Baa | WorkforceMember | StateLicense | Credential] = {
        RegistryKind.BAA: Baa,
        RegistryKind.MEMBER: WorkforceMember,
        RegistryKind.LICENSE: StateLicense,
        RegistryKind.CREDENTIAL: Credential,
    }[kind]
    return factory(**subject)  # type: ignore[arg-type]  # fields checked by check_subject
