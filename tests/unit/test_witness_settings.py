"""LEDGER_WITNESSES and LEDGER_WITNESS_THRESHOLD: parsed, defaulted, and refused when wrong."""

from __future__ import annotations

import os

import pytest

from ledger.log.cosignature import WitnessKey
from ledger.log.note import Signer
from ledger.log.witness import parse_witness
from ledgerctl.settings import Settings
from ledgerctl.witnesses import WitnessSettingsError, configured_witnesses, witness_policy


def vkey(name: str) -> str:
    return WitnessKey.from_public_key(name, Signer.from_seed("x", os.urandom(32)).public_key).key


def settings(**values: object) -> Settings:
    return Settings.model_validate(values)


def test_off_by_default() -> None:
    assert configured_witnesses(settings()) == ()
    assert witness_policy(settings()) is None


def test_list_and_default_threshold_is_all() -> None:
    a, b = vkey("w1.example"), vkey("w2.example")
    s = settings(witnesses=f"http://127.0.0.1:7380/ {a},\nhttps://w2.example {b}")
    ws = configured_witnesses(s)
    assert [w.url for w in ws] == ["http://127.0.0.1:7380", "https://w2.example"]
    policy = witness_policy(s)
    assert policy is not None
    assert policy.threshold == 2
    one = witness_policy(settings(witnesses=f"http://a {a}, http://b {b}", witness_threshold=1))
    assert one is not None
    assert one.threshold == 1


def test_command_line_keys_override_the_setting() -> None:
    a = vkey("w1.example")
    policy = witness_policy(settings(), keys=[a], threshold=1)
    assert policy is not None
    assert [w.name for w in policy.witnesses] == ["w1.example"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"witnesses": "not-a-url key"}, "LEDGER_WITNESSES"),
        ({"witnesses": "http://a nonsense"}, "LEDGER_WITNESSES"),
        ({"witness_threshold": 1}, "no witness is named"),
        ({"witnesses": "http://a KEY", "witness_threshold": 2}, "LEDGER_WITNESS_THRESHOLD"),
    ],
)
def test_refusals(values: dict[str, object], message: str) -> None:
    if "KEY" in str(values.get("witnesses", "")):
        values = {**values, "witnesses": str(values["witnesses"]).replace("KEY", vkey("w1"))}
    with pytest.raises(WitnessSettingsError, match=message):
        witness_policy(settings(**values))


def test_parse_witness_refuses_a_missing_key() -> None:
    with pytest.raises(Exception, match="URL"):
        parse_witness("http://only-a-url")
