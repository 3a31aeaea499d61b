"""The watch list and the session-4 settings: a good file parses, a hostile one is refused
whole naming every bad line; bad settings are refused naming the key; the rules command
reads the list the configuration names, relative to the configuration file."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ledger.audit.rules import RulesConfig, parse_config
from ledger.audit.rules.model import Severity
from ledger.audit.rules.watchlist import (
    MAX_FILE_BYTES,
    WatchKind,
    WatchListError,
    parse_watchlist,
)
from ledger.errors import MalformedInputError
from ledgerctl.rules import load_rules_config

HEADER = "list,patient_id,issuer,user_id,note\n"


def parse(text: str) -> object:
    return parse_watchlist("w.csv", text.encode())


def test_a_good_file_parses_every_line_with_any_column_order_bom_and_quoted_notes() -> None:
    data = (
        "\ufeffnote,user_id,issuer,patient_id,list\n"
        '"her own chart, see HR",anna,MRN,EMP-1,workforce\n'
        "\n"
        '"multi\nline note",,,VIP-1,vip\n'
        ",bob,,EMP-2,workforce\n"
    ).encode()
    w = parse_watchlist("w.csv", data)
    assert [(e.kind, e.patient_id, e.issuer, e.user_id, e.line) for e in w.entries] == [
        (WatchKind.WORKFORCE, "EMP-1", "MRN", "anna", 2),
        (WatchKind.VIP, "VIP-1", None, None, 4),
        (WatchKind.WORKFORCE, "EMP-2", None, "bob", 6),
    ]
    assert [e.line for e in w.matching("EMP-1", "MRN")] == [2]
    assert w.matching("EMP-1", "OTHER") == ()
    assert [e.line for e in w.matching("EMP-2", "ANY")] == [6]
    assert len(w.sha256) == 64
    assert parse_watchlist("w.csv", HEADER.encode()).entries == ()  # header only: empty list


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ("workforce,=HYPERLINK(1),MRN,anna,\n", "patient_id", "formula"),
        ("workforce,EMP-1,+MRN,anna,\n", "issuer", "formula"),
        ("workforce,EMP-1,MRN,@anna,\n", "user_id", "formula"),
        ("vip,VIP-1,MRN,,-2+3\n", "note", "formula"),
        ("vip,VIP-1,MRN,,\tx\n", "note", "formula"),
        ("=vip,VIP-1,MRN,,\n", "list", "formula"),
        ("staff,EMP-1,MRN,anna,\n", "list", "not workforce or vip"),
        ("Workforce,EMP-1,MRN,anna,\n", "list", "not workforce or vip"),
        ("workforce,EMP-1,MRN,,\n", "user_id", "names the member"),
        ("vip,VIP-1,MRN,anna,\n", "user_id", "must be empty on a vip line"),
        ("vip,,MRN,,\n", "patient_id", "is empty"),
        ("vip, VIP-1,MRN,,\n", "patient_id", "spaces"),
        ("vip,VIP\x01,MRN,,\n", "patient_id", "control character"),
        (f"vip,{'X' * 129},MRN,,\n", "patient_id", "at most 128"),
        (f"vip,VIP-1,MRN,,{'n' * 501}\n", "note", "at most 500"),
        ("vip,VIP-1,MRN\n", "<line>", "has 3 fields"),
        ("vip,VIP-1,MRN,,,extra\n", "<line>", "has 6 fields"),
        ("vip,VIP-1,MRN,,\nvip,VIP-1,MRN,,again\n", "patient_id", "repeats line 3"),
        (
            "workforce,EMP-1,MRN,anna,\nworkforce,EMP-1,MRN,bob,\n",
            "patient_id",
            "another member's",
        ),
        ('vip,"VIP-1,MRN,,\n', "<file>", "not valid CSV"),
        ("vip,VIP\x00,MRN,,\n", "patient_id", "control character"),
        ("vip,VIP-1,MRN,,a\x1b[31mred\n", "note", "control character"),
    ],
)
def test_a_hostile_line_refuses_the_whole_file_naming_it(
    body: str, field: str, reason: str
) -> None:
    with pytest.raises(WatchListError) as refused:
        parse(HEADER + "vip,GOOD-1,MRN,,\n" + body)
    assert any(p.field == field and reason in p.reason for p in refused.value.problems), (
        refused.value.problems
    )
    assert "w.csv" in str(refused.value)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "no header"),
        (b"list,patient_id,issuer,user_id\nvip,V,,\n", "missing ['note']"),
        (b"list,patient_id,issuer,user_id,note,extra\n", "unknown ['extra']"),
        (b"list,list,patient_id,issuer,user_id,note\n", "unknown"),
        (b"\xff\xfel\x00i\x00", "UTF-16"),
        (HEADER.encode() + b"vip,\xc3(,,,\n", "not UTF-8"),
        (HEADER.encode() + b"v" * MAX_FILE_BYTES, "larger than"),
    ],
)
def test_a_hostile_file_is_refused_as_a_whole(data: bytes, reason: str) -> None:
    with pytest.raises(WatchListError, match="problem") as refused:
        parse_watchlist("w.csv", data)
    assert any(reason in p.reason for p in refused.value.problems), refused.value.problems


def test_every_bad_line_is_named_in_line_order_and_nothing_is_returned() -> None:
    text = (
        HEADER
        + "vip,V1,,,\n"
        + "vip,=cmd,,,\n"  # line 3
        + "workforce,E1,,,\n"  # line 4
        + "vip,V2,,,\n"
        + "boss,V3,,,\n"  # line 6
    )
    with pytest.raises(WatchListError) as refused:
        parse(text)
    assert [(p.line, p.field) for p in refused.value.problems] == [
        (3, "patient_id"),
        (4, "user_id"),
        (6, "list"),
    ]
    assert isinstance(refused.value, MalformedInputError)


# ------------------------------------------------------------------ settings


def test_the_new_settings_parse_and_default() -> None:
    config = parse_config(
        'timezone = "Europe/Berlin"\n'
        "[privacy_lists]\n"
        'file = "lists/watch.csv"\n'
        'vip_record_severity = "critical"\n'
        "[access_unusual_hours]\n"
        "baseline_days = 14\nmin_events = 20\nmin_days = 5\nmin_share = 0.02\n"
        "[relay_overdue]\nseverity = 'high'\n"
        "[relay_no_readback]\nseverity = 'medium'\n"
    )
    assert config.timezone == ZoneInfo("Europe/Berlin")
    assert (config.privacy.file, config.privacy.watchlist) == ("lists/watch.csv", None)
    assert config.privacy.vip_record_severity is Severity.CRITICAL
    assert config.privacy.own_record_severity is Severity.HIGH
    assert (config.unusual_hours.baseline.days, config.unusual_hours.min_share) == (14, 0.02)
    assert config.relay_overdue.severity is Severity.HIGH
    assert config.relay_no_readback.severity is Severity.MEDIUM
    default = RulesConfig()
    assert default.timezone.key == "UTC"
    assert default.privacy.file is None
    assert parse_config("[access_unusual_hours]\nmin_share = 1\n").unusual_hours.min_share == 1.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('timezone = "Mars/Olympus_Mons"\n', "not a known IANA time zone"),
        ('timezone = "../../etc/passwd"\n', "not a known IANA time zone"),
        ("timezone = 5\n", "timezone must be"),
        ('timezone = ""\n', "timezone must be"),
        ("[timezone]\n", "timezone must be"),
        ("[privacy_lists]\nfile = ''\n", "file must be"),
        ("[privacy_lists]\nfile = 3\n", "file must be"),
        ("[privacy_lists]\nfiles = 'x.csv'\n", "unknown key"),
        ("[privacy_lists]\nvip_record_severity = 'urgent'\n", "severity"),
        ("[access_unusual_hours]\nmin_share = 0\n", "min_share"),
        ("[access_unusual_hours]\nmin_share = 1.5\n", "min_share"),
        ("[access_unusual_hours]\nmin_share = '1%'\n", "min_share"),
        ("[access_unusual_hours]\nmin_share = true\n", "min_share"),
        ("[access_unusual_hours]\nbaseline_days = 0\n", "baseline_days"),
        ("[access_unusual_hours]\nbaseline_days = 400\n", "baseline_days"),
        ("[access_unusual_hours]\nmin_days = 8\nbaseline_days = 7\n", "at most baseline_days"),
        ("[access_unusual_hours]\nmin_event = 5\n", "unknown key"),
        ("[relay_overdue]\ncat1_minutes = 5\n", "unknown key"),
        ("[relay_no_readback]\nseverity = 'urgent'\n", "severity"),
        ("privacy_lists = 'x.csv'\n", "must be a table"),
    ],
)
def test_a_bad_new_setting_is_refused_naming_it(text: str, message: str) -> None:
    with pytest.raises(MalformedInputError, match=message):
        parse_config(text)


# ------------------------------------------------------- the rules command's loading


def test_the_watch_list_is_read_relative_to_the_configuration_file(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "watch.csv").write_text(HEADER + "vip,VIP-1,,,\n")
    config_file = tmp_path / "rules.toml"
    config_file.write_text('[privacy_lists]\nfile = "lists/watch.csv"\n')
    config = load_rules_config(str(config_file))
    assert config.privacy.watchlist is not None
    assert config.privacy.watchlist.name == str(tmp_path / "lists" / "watch.csv")
    assert [e.patient_id for e in config.privacy.watchlist.entries] == ["VIP-1"]
    absolute = tmp_path / "abs.toml"
    absolute.write_text(f'[privacy_lists]\nfile = "{tmp_path / "lists" / "watch.csv"}"\n')
    assert load_rules_config(str(absolute)).privacy.watchlist == config.privacy.watchlist
    assert load_rules_config(None).privacy.watchlist is None


def test_a_missing_or_hostile_watch_list_stops_the_rules_command(tmp_path: Path) -> None:
    config_file = tmp_path / "rules.toml"
    config_file.write_text('[privacy_lists]\nfile = "watch.csv"\n')
    with pytest.raises(MalformedInputError, match="cannot read the watch list"):
        load_rules_config(str(config_file))
    (tmp_path / "watch.csv").write_text(HEADER + "vip,=1+1,,,\n")
    with pytest.raises(WatchListError, match="formula"):
        load_rules_config(str(config_file))


def test_a_file_with_more_lines_than_allowed_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import ledger.audit.rules.watchlist as module

    monkeypatch.setattr(module, "MAX_LINES", 3)
    parse(HEADER + "".join(f"vip,V{i},,,\n" for i in range(3)))
    with pytest.raises(WatchListError, match="more than 3 lines"):
        parse(HEADER + "".join(f"vip,V{i},,,\n" for i in range(4)))
