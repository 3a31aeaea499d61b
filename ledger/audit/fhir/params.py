"""The checks every FHIR search parameter value passes, and the error that names it.

Invariant: a value that reaches a search is non-empty, bounded in length, free of control
characters and of leading or trailing white space; every refusal is a
``MalformedInputError`` that names the parameter.
"""

from __future__ import annotations

import re
from typing import Final

from ledger.errors import MalformedInputError

__all__ = ["MAX_VALUE_CHARS", "bad_parameter", "parameter_text"]

#: Longest value of any search parameter, in characters.
MAX_VALUE_CHARS: Final = 256
_TEXT = re.compile(r"[^\x00-\x1f\x7f]+")


def bad_parameter(name: str, problem: str) -> MalformedInputError:
    return MalformedInputError(f"search parameter {name}: {problem}")


def parameter_text(name: str, value: str, limit: int = MAX_VALUE_CHARS) -> str:
    if not value:
        raise bad_parameter(name, "must not be empty")
    if len(value) > limit:
        raise bad_parameter(name, f"is {len(value)} characters long; at most {limit}")
    if not _TEXT.fullmatch(value):
        raise bad_parameter(name, "must not contain control characters")
    if value != value.strip():
        raise bad_parameter(name, "must not start or end with white space")
    return value
