"""The rules' thresholds: one TOML file, every value defaulted.

Invariant: a configuration either parses whole or is refused naming the bad key; unknown
tables and keys are refused (a misspelt threshold must not silently keep its default).
Parsing is pure (text in, values out); reading the file is the caller's. The defaults and
their meaning are in deploy/compliance-rules.toml.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ledger.audit.reports.relays import DEFAULT_RELAY_DEADLINES
from ledger.audit.rules.model import Severity
from ledger.audit.rules.registryconfig import RegistryConfig, parse_registry
from ledger.audit.rules.watchlist import WatchList
from ledger.errors import MalformedInputError

DEFAULT_BREAKGLASS_PURPOSES: Final = ("BTG", "ETREAT")
#: The tables of the configuration file, one per rule.
RULE_TABLES: Final = frozenset(
    {"access_bulk", "breakglass_unjustified", "relay_late", "transport_unencrypted", "registry"}
) | frozenset({"privacy_lists", "access_unusual_hours", "relay_overdue", "relay_no_readback"})
#: Keys of the file outside any table: settings every rule shares.
TOP_LEVEL_KEYS: Final = frozenset({"timezone"})
DEFAULT_TIMEZONE: Final = "UTC"
DEFAULT_RELAY_GRACE_SECONDS: Final = 60


@dataclass(frozen=True, slots=True, kw_only=True)
class BulkAccessConfig:
    """``access.bulk``: more than ``max_patients`` distinct patients in ``window``."""

    max_patients: int = 50
    window: timedelta = timedelta(minutes=60)
    severity: Severity = Severity.HIGH


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakGlassConfig:
    """``breakglass.unjustified``: an override with no justification within ``within``."""

    purposes: tuple[str, ...] = DEFAULT_BREAKGLASS_PURPOSES
    within: timedelta = timedelta(minutes=60)
    severity: Severity = Severity.HIGH


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayLateConfig:
    """``relay.late``: communicated more than the category's deadline after identified."""

    deadlines: Mapping[str, timedelta] = field(
        default_factory=lambda: dict(DEFAULT_RELAY_DEADLINES)
    )
    severity: Severity = Severity.HIGH


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportConfig:
    """``transport.unencrypted``: an access recorded as not encrypted; with
    ``alert_on_unknown``, also the first access of a day per (facility, channel) whose
    encryption was not recorded."""

    alert_on_unknown: bool = False
    severity: Severity = Severity.HIGH


@dataclass(frozen=True, slots=True, kw_only=True)
class PrivacyListsConfig:
    """``privacy.own_record``, ``privacy.coworker_record``, ``privacy.vip_record``: the
    watch-list file as the configuration names it (None: the three rules are inert) and,
    once the caller has read and parsed it, the list (``watchlist``)."""

    file: str | None = None
    watchlist: WatchList | None = None
    own_record_severity: Severity = Severity.HIGH
    coworker_record_severity: Severity = Severity.MEDIUM
    vip_record_severity: Severity = Severity.HIGH


@dataclass(frozen=True, slots=True, kw_only=True)
class UnusualHoursConfig:
    """``access.unusual_hours``: an access in an hour of the day holding less than
    ``min_share`` of the user's accesses over ``baseline``, once the baseline has
    ``min_events`` accesses on ``min_days`` days."""

    baseline: timedelta = timedelta(days=28)
    min_events: int = 50
    min_days: int = 7
    min_share: float = 0.01
    severity: Severity = Severity.MEDIUM


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayOverdueConfig:
    """``relay.overdue``: not communicated by the category's deadline (``relay_late``'s)."""

    severity: Severity = Severity.CRITICAL
    #: How long after a deadline the evaluator's wall clock waits, in a log with no later
    #: record, before raising (a record made in time but sent late still settles it).
    grace: timedelta = timedelta(seconds=DEFAULT_RELAY_GRACE_SECONDS)


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayNoReadbackConfig:
    """``relay.no_readback``: communicated without read-back (electronic: without
    acknowledgement), not added by the category's deadline (``relay_late``'s)."""

    severity: Severity = Severity.HIGH
    grace: timedelta = timedelta(seconds=DEFAULT_RELAY_GRACE_SECONDS)


@dataclass(frozen=True, slots=True, kw_only=True)
class RulesConfig:
    bulk: BulkAccessConfig = field(default_factory=BulkAccessConfig)
    breakglass: BreakGlassConfig = field(default_factory=BreakGlassConfig)
    relay_late: RelayLateConfig = field(default_factory=RelayLateConfig)
    transport: TransportConfig = field(default_factory=TransportConfig)
    #: The time zone of calendar days and hours of the day, for every rule that counts
    #: them (IANA name, top-level ``timezone`` of the file).
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo(DEFAULT_TIMEZONE))
    privacy: PrivacyListsConfig = field(default_factory=PrivacyListsConfig)
    unusual_hours: UnusualHoursConfig = field(default_factory=UnusualHoursConfig)
    relay_overdue: RelayOverdueConfig = field(default_factory=RelayOverdueConfig)
    relay_no_readback: RelayNoReadbackConfig = field(default_factory=RelayNoReadbackConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)


def _table(doc: Mapping[str, Any], name: str, allowed: frozenset[str]) -> dict[str, Any]:
    raw = doc.get(name, {})
    if not isinstance(raw, dict):
        raise MalformedInputError(f"[{name}] must be a table")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise MalformedInputError(f"[{name}] has unknown key(s): {', '.join(unknown)}")
    return raw


def _positive(table: str, key: str, value: object, *, most: int = 10_000_000) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise MalformedInputError(f"[{table}] {key} must be a whole number from 1 to {most}")
    return value


def _severity(table: str, value: object) -> Severity:
    try:
        return Severity(str(value))
    except ValueError as exc:
        choices = ", ".join(s.value for s in Severity)
        raise MalformedInputError(f"[{table}] severity must be one of {choices}") from exc


def _bulk(doc: Mapping[str, Any]) -> BulkAccessConfig:
    t = _table(doc, "access_bulk", frozenset({"max_patients", "window_minutes", "severity"}))
    d = BulkAccessConfig()
    return BulkAccessConfig(
        max_patients=_positive("access_bulk", "max_patients", t.get("max_patients", 50)),
        window=timedelta(
            minutes=_positive("access_bulk", "window_minutes", t.get("window_minutes", 60))
        ),
        severity=_severity("access_bulk", t.get("severity", d.severity.value)),
    )


def _breakglass(doc: Mapping[str, Any]) -> BreakGlassConfig:
    name = "breakglass_unjustified"
    t = _table(doc, name, frozenset({"purposes", "justify_within_minutes", "severity"}))
    purposes = t.get("purposes", list(DEFAULT_BREAKGLASS_PURPOSES))
    if (
        not isinstance(purposes, list)
        or not purposes
        or not all(isinstance(p, str) and p.strip() for p in purposes)
    ):
        raise MalformedInputError(f"[{name}] purposes must be a non-empty list of codes")
    within = _positive(name, "justify_within_minutes", t.get("justify_within_minutes", 60))
    return BreakGlassConfig(
        purposes=tuple(sorted({p.strip() for p in purposes})),
        within=timedelta(minutes=within),
        severity=_severity(name, t.get("severity", Severity.HIGH.value)),
    )


def _relay_late(doc: Mapping[str, Any]) -> RelayLateConfig:
    keys = {f"{c.lower()}_minutes": c for c in DEFAULT_RELAY_DEADLINES}
    t = _table(doc, "relay_late", frozenset({*keys, "severity"}))
    deadlines = dict(DEFAULT_RELAY_DEADLINES)
    for key, category in keys.items():
        if key in t:
            deadlines[category] = timedelta(minutes=_positive("relay_late", key, t[key]))
    return RelayLateConfig(
        deadlines=deadlines,
        severity=_severity("relay_late", t.get("severity", Severity.HIGH.value)),
    )


def _transport(doc: Mapping[str, Any]) -> TransportConfig:
    name = "transport_unencrypted"
    t = _table(doc, name, frozenset({"alert_on_unknown", "severity"}))
    on_unknown = t.get("alert_on_unknown", False)
    if not isinstance(on_unknown, bool):
        raise MalformedInputError(f"[{name}] alert_on_unknown must be true or false")
    return TransportConfig(
        alert_on_unknown=on_unknown,
        severity=_severity(name, t.get("severity", Severity.HIGH.value)),
    )


def _timezone(doc: Mapping[str, Any]) -> ZoneInfo:
    name = doc.get("timezone", DEFAULT_TIMEZONE)
    if not isinstance(name, str) or not name.strip():
        raise MalformedInputError('timezone must be an IANA time zone name, e.g. "UTC"')
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise MalformedInputError(f"timezone {name[:60]!r} is not a known IANA time zone") from exc


def _privacy(doc: Mapping[str, Any]) -> PrivacyListsConfig:
    name = "privacy_lists"
    keys = ("own_record_severity", "coworker_record_severity", "vip_record_severity")
    t = _table(doc, name, frozenset({"file", *keys}))
    file = t.get("file")
    if file is not None and (not isinstance(file, str) or not file.strip()):
        raise MalformedInputError(f"[{name}] file must be the path of the watch-list CSV")
    d = PrivacyListsConfig()
    s = {k: _severity(name, t.get(k, getattr(d, k).value)) for k in keys}
    return PrivacyListsConfig(
        file=file,
        own_record_severity=s["own_record_severity"],
        coworker_record_severity=s["coworker_record_severity"],
        vip_record_severity=s["vip_record_severity"],
    )


def _fraction(table: str, key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise MalformedInputError(f"[{table}] {key} must be a number above 0 and at most 1")
    return float(value)


def _unusual_hours(doc: Mapping[str, Any]) -> UnusualHoursConfig:
    name = "access_unusual_hours"
    keys = {"baseline_days", "min_events", "min_days", "min_share", "severity"}
    t = _table(doc, name, frozenset(keys))
    d = UnusualHoursConfig()
    days = _positive(name, "baseline_days", t.get("baseline_days", d.baseline.days), most=366)
    min_days = _positive(name, "min_days", t.get("min_days", d.min_days), most=366)
    if min_days > days:
        raise MalformedInputError(f"[{name}] min_days must be at most baseline_days ({days})")
    return UnusualHoursConfig(
        baseline=timedelta(days=days),
        min_events=_positive(name, "min_events", t.get("min_events", d.min_events)),
        min_days=min_days,
        min_share=_fraction(name, "min_share", t.get("min_share", d.min_share)),
        severity=_severity(name, t.get("severity", d.severity.value)),
    )


def _deadline_rule(doc: Mapping[str, Any], name: str) -> tuple[Severity, timedelta]:
    """``severity`` and ``grace_seconds`` of relay.overdue / relay.no_readback."""
    t = _table(doc, name, frozenset({"severity", "grace_seconds"}))
    default = {"relay_overdue": Severity.CRITICAL, "relay_no_readback": Severity.HIGH}[name]
    grace = t.get("grace_seconds", DEFAULT_RELAY_GRACE_SECONDS)
    if isinstance(grace, bool) or not isinstance(grace, int) or not 0 <= grace <= 86_400:
        raise MalformedInputError(f"[{name}] grace_seconds must be an integer from 0 to 86400")
    return _severity(name, t.get("severity", default.value)), timedelta(seconds=grace)


def _relay_overdue(doc: Mapping[str, Any]) -> RelayOverdueConfig:
    severity, grace = _deadline_rule(doc, "relay_overdue")
    return RelayOverdueConfig(severity=severity, grace=grace)


def _relay_no_readback(doc: Mapping[str, Any]) -> RelayNoReadbackConfig:
    severity, grace = _deadline_rule(doc, "relay_no_readback")
    return RelayNoReadbackConfig(severity=severity, grace=grace)


def parse_config(text: str) -> RulesConfig:
    """The rules' configuration from TOML text (empty text: every default)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MalformedInputError(f"rules configuration is not TOML: {exc}") from exc
    unknown = sorted(set(doc) - RULE_TABLES - TOP_LEVEL_KEYS)
    if unknown:
        raise MalformedInputError(f"unknown rule table(s): {', '.join(unknown)}")
    return RulesConfig(
        bulk=_bulk(doc),
        breakglass=_breakglass(doc),
        relay_late=_relay_late(doc),
        transport=_transport(doc),
        timezone=_timezone(doc),
        privacy=_privacy(doc),
        unusual_hours=_unusual_hours(doc),
        relay_overdue=_relay_overdue(doc),
        relay_no_readback=_relay_no_readback(doc),
        registry=parse_registry(doc),
    )
