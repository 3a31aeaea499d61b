"""The offline producer check (``ledger.verify.producers``) on a bundle on disk.

Refusals it proves, per leaf, from the export alone: a leaf without a seal reference, one
sealed by another producer's key, one by a key the registry does not hold, one claiming
another leaf's entry of its seal, one referring to a seal the export does not hold, and
a reference for a leaf the log does not have. A bundle without the registry (exported
before producer authentication, or fetched through the API) is not judged on it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from ledger.audit.producerauth import (
    Authenticated,
    ProducerAuthenticator,
    ProducerKeyId,
    RegisteredKey,
)
from ledger.log.leaf import decode_leaf
from ledger.verify import verify_bundle
from ledger.verify.findings import FINDING_KINDS
from ledger.verify.producerbundle import (
    SealRefWriter,
    write_auth_start,
    write_producer_keys,
    write_producer_seals,
)
from ledger.verify.producers import producer_check
from producers.signing import ProducerKey, generate_producer_key
from tests.unit.test_bundle_format_doc import _every_kind
from tests.unit.test_verify import KEY, export

LOG_ID = 7  # tests.unit.test_verify.export's log


def _registered(key: ProducerKey) -> RegisteredKey:
    return RegisteredKey(
        key_id=ProducerKeyId(key.key_id),
        producer_id=key.producer_id,
        public_key=key.public_key,
        created_at=datetime.now(UTC),
    )


def _signed_bundle(path: Path, tamper: bool) -> tuple[Path, int]:
    log = _every_kind()  # every event names producer "t"
    bundle = export(log, path)
    own, other, unknown = (generate_producer_key(p) for p in ("t", "other", "t"))
    write_producer_keys(bundle, [_registered(own), _registered(other)])
    # The producer side's seals, as a consumer that knows every key would have read them.
    reader = ProducerAuthenticator([_registered(k) for k in (own, other, unknown)])
    records = [decode_leaf(leaf) for leaf in log.leaves]
    values = [(r.topic, r.value) for r in records]

    def sealed(key: ProducerKey, batch: list[tuple[str, bytes]]) -> list[Authenticated]:
        return [
            reader.authenticate(topic=t, value=v, envelope=e)
            for (t, v), e in zip(batch, key.signer().envelopes(batch), strict=True)
        ]

    verdicts = sealed(own, values)
    refs = {i: (a.seal_id, a.entry) for i, a in enumerate(verdicts)}
    seals = [verdicts[0].seal]
    if tamper:
        del refs[0]
        (mismatch,) = sealed(other, values[1:2])
        (unknown_key,) = sealed(unknown, values[2:3])
        refs[1] = (mismatch.seal_id, mismatch.entry)
        refs[2] = (unknown_key.seal_id, unknown_key.entry)
        refs[3] = refs[4]  # leaf 3 claims leaf 4's entry
        refs[5] = (bytes(16), 0)  # a seal the export does not hold
        refs[len(values) + 5] = refs[4]
        seals += [mismatch.seal, unknown_key.seal]
    write_producer_seals(bundle, [s for s in seals if s is not None])
    with SealRefWriter(bundle, LOG_ID) as out:
        for index, (seal_id, entry) in sorted(refs.items()):
            out.add(index, seal_id, entry)
    return bundle, len(values)


def _producer_findings(bundle: Path) -> list[tuple[str, int | None]]:
    [report] = verify_bundle(bundle, [KEY.verifier], check_index=False, checks=[producer_check])
    assert all(f.kind in FINDING_KINDS for f in report.findings)
    return sorted((f.kind, f.leaf_index) for f in report.findings)


def test_a_signed_export_verifies(tmp_path: Path) -> None:
    bundle, _ = _signed_bundle(tmp_path / "b", tamper=False)
    assert _producer_findings(bundle) == []


def test_each_unauthenticated_leaf_is_one_finding_at_its_index(tmp_path: Path) -> None:
    bundle, n = _signed_bundle(tmp_path / "b", tamper=True)
    assert _producer_findings(bundle) == [
        ("producer_bad_signature", 3),
        ("producer_envelope_orphan", n + 5),
        ("producer_mismatch", 1),
        ("producer_unauthenticated", 0),
        ("producer_unknown_key", 2),
        ("producer_unknown_seal", 5),
    ]


def test_leaves_from_before_producer_authentication_need_no_seal(tmp_path: Path) -> None:
    """A log upgraded by migration 0009: leaves below its start are not asked for a seal
    reference, every leaf from the start on is (and a reference below it is still checked)."""
    bundle, _ = _signed_bundle(tmp_path / "b", tamper=True)
    write_auth_start(bundle, {LOG_ID: 2})  # leaf 0 (no reference) and 1 predate it
    assert _producer_findings(bundle)[-3:] == [
        ("producer_mismatch", 1),  # present, so checked
        ("producer_unknown_key", 2),
        ("producer_unknown_seal", 5),
    ]
    assert ("producer_unauthenticated", 0) not in _producer_findings(bundle)


def test_a_bundle_without_the_registry_is_not_judged_on_producers(tmp_path: Path) -> None:
    bundle = export(_every_kind(), tmp_path / "b")
    assert _producer_findings(bundle) == []
