"""`ledger rules demo --prepare`: the files the stack's evaluator starts with."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.audit.rules import parse_config
from ledger.errors import MalformedInputError
from ledgerctl.compliancedemo import prepare
from ledgerctl.rules import load_rules_config
from tests.support import ROOT

TEMPLATE = ROOT / "deploy" / "compliance-rules.toml"


def test_prepare_writes_a_configuration_that_names_the_demo_watch_list(tmp_path: Path) -> None:
    rules = prepare(tmp_path, TEMPLATE)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"watchlist.csv", "compliance-rules.toml", "members.csv", "baas.csv"} <= names
    config = load_rules_config(str(rules))
    assert config.privacy.watchlist is not None
    assert len(config.privacy.watchlist.entries) > 0
    # Every other threshold is the shipped file's.
    shipped = parse_config(TEMPLATE.read_text(encoding="utf-8"))
    assert config.bulk == shipped.bulk
    assert config.registry == shipped.registry
    # The same seed writes the same files: a second `make up` changes nothing.
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    prepare(tmp_path, TEMPLATE)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_prepare_refuses_a_template_without_the_watch_list_line(tmp_path: Path) -> None:
    template = tmp_path / "rules.toml"
    template.write_text('timezone = "UTC"\n', encoding="utf-8")
    with pytest.raises(MalformedInputError, match="file ="):
        prepare(tmp_path / "demo", template)
