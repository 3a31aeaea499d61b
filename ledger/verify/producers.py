"""The producer check: every leaf of an exported log is held by a valid producer seal.

Invariant: with the bundle's ``producer-keys.json`` and ``producer-seals.jsonl``
(``ledger.verify.producerbundle``; each seal's signature is checked once), a leaf is shown to
come from the producer its event names, or it gets one finding: no seal reference
(``producer_unauthenticated``); a reference to a seal that is not exported
(``producer_unknown_seal``); a seal that is malformed, names an unknown key or does not
verify, or a reference past its seal's end (``producer_bad_envelope``,
``producer_unknown_key``, ``producer_bad_signature``); a leaf whose hash is not its
seal's entry (``producer_bad_signature``); or a valid seal by another producer's key
(``producer_mismatch``). A seal reference for a leaf index beyond the log is
``producer_envelope_orphan``. A log that had leaves before producer authentication
existed (``producer-auth-start.json``, from migration 0009) asks no seal of those older
leaves (a reference it has is still checked). Revocation is not held against a leaf: a
key revoked after a leaf was accepted signed it while it was valid
(docs/producer-auth.md). A source that is not a bundle, or a bundle without the registry
(exported before producer authentication, or fetched through the API), is not checked.
Plugged in as an ``EventCheck``.
"""

from __future__ import annotations

from collections.abc import Mapping

from ledger.audit.producerauth import (
    REASON_UNKNOWN_SEAL,
    AuthFailure,
    ProducerAuthenticator,
    RegisteredKey,
    check_producer,
    record_leaf_hash,
)
from ledger.audit.records import JsonValue
from ledger.errors import MalformedInputError
from ledger.log.leaf import KafkaRecord
from ledger.verify.bundles import BundleLogSource
from ledger.verify.checks import CheckContext
from ledger.verify.findings import Findings
from ledger.verify.producerbundle import (
    KEYS_FILE,
    SEALS_FILE,
    load_seals,
    read_auth_start,
    read_keys,
    read_seal_refs,
)

__all__ = ["ProducerCheck", "producer_check"]


class ProducerCheck:
    """Authenticates each decoded leaf with the seal entry it was accepted with."""

    def __init__(
        self,
        findings: Findings,
        auth: ProducerAuthenticator | None,
        refs: dict[int, tuple[bytes, int]],
        size: int,
        first_leaf: int = 0,
        bad_seals: Mapping[bytes, AuthFailure] | None = None,
    ) -> None:
        self.findings = findings
        self._auth = auth
        self._refs = refs
        self._size = size
        self._first_leaf = first_leaf
        self._bad_seals: Mapping[bytes, AuthFailure] = bad_seals or {}

    def leaf(
        self, index: int, record: KafkaRecord, full_name: str, event: Mapping[str, JsonValue]
    ) -> None:
        if self._auth is None:
            return
        ref = self._refs.pop(index, None)
        if ref is None and index < self._first_leaf:
            return  # appended before producers authenticated
        if ref is None:
            self.findings.add(
                "producer_unauthenticated",
                f"leaf {index}: no producer seal reference",
                leaf_index=index,
            )
            return
        try:
            key = self._check_ref(self._auth, ref, record.topic, record.value)
            check_producer(key, str(event.get("producer_id")))
        except AuthFailure as exc:
            kind = exc.reason if exc.reason.startswith("producer_") else f"producer_{exc.reason}"
            self.findings.add(kind, f"leaf {index}: {exc.detail}", leaf_index=index)

    def _check_ref(
        self, auth: ProducerAuthenticator, ref: tuple[bytes, int], topic: str, value: bytes
    ) -> RegisteredKey:
        """The key whose verified seal holds this leaf at the referenced entry."""
        seal_id, entry = ref
        if seal_id in self._bad_seals:
            raise self._bad_seals[seal_id]
        seal = auth.seal(seal_id)
        if seal is None:
            raise AuthFailure(REASON_UNKNOWN_SEAL, f"seal {seal_id.hex()} is not in {SEALS_FILE}")
        key = auth.check_key_any(seal.key_id)
        leaf = record_leaf_hash(key.producer_id, topic, value)
        auth.check_entry(key, bytes.fromhex(seal.key_id), seal_id, entry, leaf)
        return key

    def row(self, index: int, row: Mapping[str, object], expected: Mapping[str, JsonValue]) -> None:
        """Index rows carry nothing of the seal."""

    def finish(self) -> None:
        if self._auth is None:
            return
        for index in sorted(i for i in self._refs if not 0 <= i < self._size):
            self.findings.add(
                "producer_envelope_orphan",
                f"a seal reference for leaf {index}, which is not in the log",
                leaf_index=index,
            )


def producer_check(context: CheckContext) -> ProducerCheck:
    """The ``EventCheckFactory`` for ``checks=`` (one check per log)."""
    source = context.source
    if not isinstance(source, BundleLogSource) or not (source.reader.path / KEYS_FILE).exists():
        return ProducerCheck(context.findings, None, {}, 0)
    path = source.reader.path
    try:
        # Every exported seal is kept: the offline check looks each up by id.
        auth = ProducerAuthenticator(read_keys(path), cache_size=2**62)
        bad_seals = load_seals(path, auth)
        refs = read_seal_refs(path, source.log_id)
        first_leaf = read_auth_start(path).get(source.log_id, 0)
    except MalformedInputError as exc:
        context.findings.add("source_error", f"producer authentication files: {exc}")
        return ProducerCheck(context.findings, None, {}, 0)
    return ProducerCheck(context.findings, auth, refs, source.size, first_leaf, bad_seals)
