"""The producer check: every leaf of an exported log carries a valid producer envelope.

Invariant: with the bundle's ``producer-keys.json`` (``ledger.producerbundle``), a leaf is
shown to come from the producer its event names, or it gets one finding: no envelope
(``producer_unauthenticated``), an envelope that does not parse, names an unknown key or
does not verify (``producer_bad_envelope``, ``producer_unknown_key``,
``producer_bad_signature``), or a valid signature by another producer's key
(``producer_mismatch``); an envelope for a leaf index beyond the log is
``producer_envelope_orphan``. A log that had leaves before producer authentication
existed (``producer-auth-start.json``, from migration 0009) asks no envelope of those
older leaves (one it has is still checked). Revocation is not held against a leaf: a
key revoked after a leaf was accepted signed it while it was valid
(docs/producer-auth.md). A source that is not a bundle, or a bundle without the registry
(exported before producer authentication, or fetched through the API), is not checked.
Plugged in as an ``EventCheck``.
"""

from __future__ import annotations

from collections.abc import Mapping

from ledger.avro import JsonValue
from ledger.errors import MalformedInputError
from ledger.leaf import KafkaRecord
from ledger.producerauth import AuthFailure, ProducerAuthenticator, check_producer
from ledger.producerbundle import KEYS_FILE, read_auth_start, read_envelopes, read_keys
from ledger.verification.bundles import BundleLogSource
from ledger.verification.checks import CheckContext
from ledger.verification.findings import Findings

__all__ = ["ProducerCheck", "producer_check"]


class ProducerCheck:
    """Authenticates each decoded leaf with the envelope it was accepted with."""

    def __init__(
        self,
        findings: Findings,
        auth: ProducerAuthenticator | None,
        envelopes: dict[int, bytes],
        size: int,
        first_leaf: int = 0,
    ) -> None:
        self.findings = findings
        self._auth = auth
        self._envelopes = envelopes
        self._size = size
        self._first_leaf = first_leaf

    def leaf(
        self, index: int, record: KafkaRecord, full_name: str, event: Mapping[str, JsonValue]
    ) -> None:
        if self._auth is None:
            return
        envelope = self._envelopes.pop(index, None)
        if envelope is None and index < self._first_leaf:
            return  # appended before producers authenticated
        if envelope is None:
            self.findings.add(
                "producer_unauthenticated",
                f"leaf {index}: no producer envelope",
                leaf_index=index,
            )
            return
        try:
            key = self._auth.authenticate(topic=record.topic, value=record.value, envelope=envelope)
            check_producer(key, str(event.get("producer_id")))
        except AuthFailure as exc:
            kind = exc.reason if exc.reason.startswith("producer_") else f"producer_{exc.reason}"
            self.findings.add(kind, f"leaf {index}: {exc.detail}", leaf_index=index)

    def row(self, index: int, row: Mapping[str, object], expected: Mapping[str, JsonValue]) -> None:
        """Index rows carry nothing of the envelope."""

    def finish(self) -> None:
        if self._auth is None:
            return
        for index in sorted(i for i in self._envelopes if not 0 <= i < self._size):
            self.findings.add(
                "producer_envelope_orphan",
                f"an envelope for leaf {index}, which is not in the log",
                leaf_index=index,
            )


def producer_check(context: CheckContext) -> ProducerCheck:
    """The ``EventCheckFactory`` for ``checks=`` (one check per log)."""
    source = context.source
    if not isinstance(source, BundleLogSource) or not (source.reader.path / KEYS_FILE).exists():
        return ProducerCheck(context.findings, None, {}, 0)
    try:
        auth = ProducerAuthenticator(read_keys(source.reader.path))
        envelopes = read_envelopes(source.reader.path, source.log_id)
        first_leaf = read_auth_start(source.reader.path).get(source.log_id, 0)
    except MalformedInputError as exc:
        context.findings.add("source_error", f"producer authentication files: {exc}")
        return ProducerCheck(context.findings, None, {}, 0)
    return ProducerCheck(context.findings, auth, envelopes, source.size, first_leaf)
