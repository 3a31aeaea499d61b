"""The registry rules' settings: the ``[registry]`` table of the rules' configuration.

Invariant: parses whole or is refused naming the bad key, like every other table; the
defaults are spec15's (docs/design/compliance.md, deploy/compliance-rules.toml).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

from ledger.audit.rules.model import Severity
from ledger.errors import MalformedInputError

#: Every registry rule id and its default severity.
REGISTRY_SEVERITIES: Final[Mapping[str, Severity]] = {
    "registry.baa_missing": Severity.CRITICAL,
    "registry.license_missing": Severity.CRITICAL,
    "registry.credential_missing": Severity.HIGH,
    "account.shared": Severity.HIGH,
    "account.unknown": Severity.HIGH,
    "account.ended": Severity.CRITICAL,
}
TABLE: Final = "registry"
_KEYS: Final = frozenset(
    {"settle_seconds", "lookback_days", "licensed_roles", "credentialed_roles",
     "ignore_users", "severity"}
)  # fmt: skip


def _key(rule_id: str) -> str:
    """A rule's key in ``[registry.severity]``: ``registry.baa_missing`` -> ``baa_missing``,
    ``account.shared`` -> ``account_shared``."""
    return rule_id.removeprefix("registry.").replace(".", "_")


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryConfig:
    """``settle``: how long an access waits for registry changes of its time still in
    flight; ``lookback``: how far back a registry change known later is attached to the
    alerts it would have prevented."""

    settle: timedelta = timedelta(seconds=1)
    lookback: timedelta = timedelta(days=90)
    licensed_roles: tuple[str, ...] = ("radiologist",)
    credentialed_roles: tuple[str, ...] = ("radiologist",)
    ignore_users: tuple[str, ...] = ()
    severities: Mapping[str, Severity] = field(default_factory=lambda: dict(REGISTRY_SEVERITIES))


def _names(key: str, value: object, *, empty: bool) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise MalformedInputError(f"[{TABLE}] {key} must be a list of names")
    if not value and not empty:
        raise MalformedInputError(f"[{TABLE}] {key} must name at least one role")
    return tuple(sorted({v.strip() for v in value}))


def _severities(raw: object) -> dict[str, Severity]:
    if not isinstance(raw, dict):
        raise MalformedInputError(f"[{TABLE}.severity] must be a table")
    by_key = {_key(r): r for r in REGISTRY_SEVERITIES}
    unknown = sorted(set(raw) - set(by_key))
    if unknown:
        raise MalformedInputError(f"[{TABLE}.severity] has unknown key(s): {', '.join(unknown)}")
    found = dict(REGISTRY_SEVERITIES)
    for key, value in raw.items():
        try:
            found[by_key[key]] = Severity(str(value))
        except ValueError as exc:
            choices = ", ".join(s.value for s in Severity)
            raise MalformedInputError(f"[{TABLE}.severity] {key} must be one of {choices}") from exc
    return found


def parse_registry(doc: Mapping[str, Any]) -> RegistryConfig:
    """The ``[registry]`` table of a parsed configuration (absent: every default)."""
    t = doc.get(TABLE, {})
    if not isinstance(t, dict):
        raise MalformedInputError(f"[{TABLE}] must be a table")
    unknown = sorted(set(t) - _KEYS)
    if unknown:
        raise MalformedInputError(f"[{TABLE}] has unknown key(s): {', '.join(unknown)}")
    d = RegistryConfig()
    settle = t.get("settle_seconds", 1)
    if isinstance(settle, bool) or not isinstance(settle, int | float) or not 0 <= settle <= 3600:
        raise MalformedInputError(f"[{TABLE}] settle_seconds must be a number from 0 to 3600")
    days = t.get("lookback_days", 90)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3660:
        raise MalformedInputError(f"[{TABLE}] lookback_days must be a whole number from 1 to 3660")
    return RegistryConfig(
        settle=timedelta(seconds=settle),
        lookback=timedelta(days=days),
        licensed_roles=_names("licensed_roles", t.get("licensed_roles", list(d.licensed_roles)),
                              empty=False),
        credentialed_roles=_names("credentialed_roles",
                                  t.get("credentialed_roles", list(d.credentialed_roles)),
                                  empty=False),
        ignore_users=_names("ignore_users", t.get("ignore_users", []), empty=True),
        severities=_severities(t.get("severity", {})),
    )  # fmt: skip
