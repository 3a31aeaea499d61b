"""A seal whose carrying batch is not committed yet stays at hand for the records that
refer to it, even when the authenticator's cache evicted it: the database cannot give
it back before that commit, and ``unknown_seal`` would send genuine records to
quarantine for good (seen as 14 records lost in a PostgreSQL-restart fault run)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from consumers.authpoll import PollAuthenticator
from ledger.audit.producerauth import (
    REASON_UNKNOWN_SEAL,
    Authenticated,
    AuthFailure,
    ProducerAuthenticator,
    RegisteredKey,
    Seal,
    key_id_of,
)
from ledger.errors import UnavailableError
from producers.signing import generate_producer_key

TOPIC = "phi-access"


class NothingStored:
    """The database while the batch carrying the seal is still being appended."""

    def __init__(self, key: RegisteredKey) -> None:
        self.key = key
        self.asked: list[bytes] = []

    async def producer_keys(self) -> Sequence[RegisteredKey]:
        return [self.key]

    async def producer_seals(self, seal_ids: Sequence[bytes]) -> Sequence[Seal]:
        self.asked += seal_ids
        return []


async def test_an_evicted_seal_of_an_uncommitted_batch_still_authenticates_its_records() -> None:
    key = generate_producer_key("orthanc-01")
    registered = RegisteredKey(
        key_id=key_id_of(key.public_key),
        producer_id=key.producer_id,
        public_key=key.public_key,
        created_at=datetime.now(UTC),
    )
    source = NothingStored(registered)
    gate = PollAuthenticator(source=source, refresh_seconds=60, refresh_min_seconds=0)
    gate.authenticator = ProducerAuthenticator(cache_size=1)
    await gate.refresh_keys(on_unknown_key=False)
    signer = key.signer()
    first = [(TOPIC, b"first-%d" % i) for i in range(3)]
    first_envelopes = signer.envelopes(first)
    other = [(TOPIC, b"other")]
    other_envelopes = signer.envelopes(other)

    def row(
        records: list[tuple[str, bytes]], envelopes: list[bytes], i: int
    ) -> tuple[str, bytes, bytes]:
        return records[i][0], records[i][1], envelopes[i]

    [carried] = await gate.authenticate_poll([row(first, first_envelopes, 0)])
    assert isinstance(carried, Authenticated)
    assert carried.seal is not None
    await gate.authenticate_poll([row(other, other_envelopes, 0)])  # evicts the first seal
    assert gate.authenticator.seal(carried.seal.seal_id) is None

    [verdict] = await gate.authenticate_poll([row(first, first_envelopes, 1)])
    assert isinstance(verdict, Authenticated), verdict
    assert verdict.entry == 1

    # Once its batch is committed the seal is the database's to give back; here the
    # stand-in database has nothing, so a record that still needs it is refused.
    gate.committed([carried.seal])
    gate.authenticator = ProducerAuthenticator([registered], cache_size=1)
    [late] = await gate.authenticate_poll([row(first, first_envelopes, 2)])
    assert isinstance(late, AuthFailure)
    assert late.reason == REASON_UNKNOWN_SEAL
    assert carried.seal.seal_id in source.asked


class AwayThenBack(NothingStored):
    """The database answers the key registry only on the third try."""

    def __init__(self, key: RegisteredKey) -> None:
        super().__init__(key)
        self.tries = 0

    async def producer_keys(self) -> Sequence[RegisteredKey]:
        self.tries += 1
        if self.tries in (2, 3):
            raise UnavailableError("PostgreSQL unavailable: CannotConnectNowError")
        return [self.key] if self.tries > 1 else []


async def test_a_new_key_is_waited_for_while_the_registry_cannot_be_read() -> None:
    """A record of a key registered after the consumer's last read, met while the
    database is away, waits for the registry instead of being refused for good."""
    key = generate_producer_key("orthanc-02")
    registered = RegisteredKey(
        key_id=key_id_of(key.public_key),
        producer_id=key.producer_id,
        public_key=key.public_key,
        created_at=datetime.now(UTC),
    )
    source = AwayThenBack(registered)
    gate = PollAuthenticator(source=source, refresh_seconds=60, refresh_min_seconds=0)
    await gate.refresh_keys(on_unknown_key=False)  # the registry without the new key
    records = [(TOPIC, b"new")]
    [envelope] = key.signer().envelopes(records)
    [verdict] = await gate.authenticate_poll([(TOPIC, b"new", envelope)])
    assert isinstance(verdict, Authenticated), verdict
    assert source.tries == 4
