"""The witnesses and the k-of-n cosignature policy this environment configures
(LEDGER_WITNESSES, LEDGER_WITNESS_THRESHOLD; docs/design/witnesses.md).

Invariant: no witness configured means no policy (None) and nothing submitted; a
configured list that does not parse, or a threshold above the number of witnesses, is
refused with a message naming the setting.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ledger.errors import LedgerError
from ledger.log.cosignature import WitnessKey, WitnessPolicy, parse_witness_key
from ledger.log.witness import Witness, parse_witness
from ledgerctl.settings import Settings

__all__ = ["WitnessSettingsError", "configured_witnesses", "witness_policy"]


class WitnessSettingsError(ValueError):
    """LEDGER_WITNESSES or LEDGER_WITNESS_THRESHOLD is wrong (the message says how)."""


def configured_witnesses(settings: Settings) -> tuple[Witness, ...]:
    entries = [e.strip() for e in re.split(r"[,\n]", settings.witnesses) if e.strip()]
    try:
        return tuple(parse_witness(e) for e in entries)
    except LedgerError as exc:
        raise WitnessSettingsError(f"LEDGER_WITNESSES: {exc}") from exc


def witness_policy(
    settings: Settings, keys: Sequence[str] = (), threshold: int | None = None
) -> WitnessPolicy | None:
    """The policy from ``keys`` (``--witness``) or LEDGER_WITNESSES, and ``threshold``
    (``--witness-threshold``) or LEDGER_WITNESS_THRESHOLD (default: all witnesses)."""
    try:
        witnesses: tuple[WitnessKey, ...] = (
            tuple(parse_witness_key(k) for k in keys)
            if keys
            else tuple(w.key for w in configured_witnesses(settings))
        )
    except LedgerError as exc:
        raise WitnessSettingsError(f"witness key: {exc}") from exc
    if not witnesses:
        if threshold or settings.witness_threshold:
            raise WitnessSettingsError("a witness threshold is set but no witness is named")
        return None
    k = threshold or settings.witness_threshold or len({w.name for w in witnesses})
    try:
        return WitnessPolicy(witnesses=witnesses, threshold=k)
    except LedgerError as exc:
        raise WitnessSettingsError(f"LEDGER_WITNESS_THRESHOLD: {exc}") from exc
