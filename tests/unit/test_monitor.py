"""`ledger monitor`'s judgement (ledger.verify.monitor), its state file and its alerts."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ledger.audit.delivery import SyslogDestination
from ledger.errors import MalformedInputError, VerificationError
from ledger.log import merkle
from ledger.log.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from ledger.log.note import Signer, generate_signer, parse_signer_key
from ledger.log.types import RootHash
from ledger.verify.growth import Growth, judge_tile
from ledger.verify.monitor import (
    MONITOR_KINDS,
    MonitorFinding,
    Remembered,
    Served,
    check_consistency,
    judge_heads,
    judge_listing,
    open_heads,
    open_history,
    restore,
    stall,
    target,
)
from ledgerctl.monitoralerts import payload, syslog_message
from ledgerctl.monitorstate import MonitorState, load_state, save_state

ORIGIN = "test.ledger.local/t/0"
LEAVES = [f"leaf {i}".encode() for i in range(40)]
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def signer() -> Signer:
    return parse_signer_key(generate_signer("test.ledger.local")[0])


def note(signer: Signer, size: int, root: bytes | None = None) -> str:
    root = merkle.root_from_leaves(LEAVES[:size]) if root is None else root
    cp = Checkpoint(origin=ORIGIN, size=size, root_hash=RootHash(root))
    return sign_checkpoint(cp, [signer])


def head(signer: Signer, size: int, root: bytes | None = None) -> Checkpoint:
    return open_checkpoint(note(signer, size, root), [signer.verifier])


def remembered(signer: Signer, size: int) -> Remembered:
    builder = merkle.TreeBuilder()
    builder.extend(merkle.leaf_hash(leaf) for leaf in LEAVES[:size])
    return restore(
        origin=ORIGIN, note=note(signer, size), compact=builder.hashes, verifiers=[signer.verifier]
    )


def view(endpoint: str, text: str | None, *, unsigned: int = 0, cp_size: int = 10) -> Served:
    return Served(
        endpoint=endpoint, log_id=1, size=cp_size + unsigned, checkpoint_size=cp_size,
        unsigned=unsigned, note=text,
    )  # fmt: skip


def grow(mem: Remembered, heads: dict[str, Checkpoint], leaves: list[bytes]) -> Growth:
    goal = target(mem, heads)
    assert goal is not None
    growth = Growth(mem, heads, goal)
    for index in range(mem.size, goal[1].size):
        if index < len(leaves) and not growth.feed(index, leaves[index]):
            break
    return growth


def test_restore_refuses_a_tree_state_that_does_not_give_the_root(signer: Signer) -> None:
    mem = remembered(signer, 10)
    assert (mem.size, mem.root) == (10, merkle.root_from_leaves(LEAVES[:10]))
    with pytest.raises(VerificationError, match="does not give its root"):
        restore(
            origin=ORIGIN, note=mem.note, compact=[bytes(32), mem.compact[1]],
            verifiers=[signer.verifier],
        )  # fmt: skip
    with pytest.raises(VerificationError, match="names"):
        restore(origin="other/0", note=mem.note, compact=mem.compact, verifiers=[signer.verifier])


def test_a_checkpoint_of_another_key_is_a_finding(signer: Signer) -> None:
    stranger = parse_signer_key(generate_signer("test.ledger.local")[0])
    heads, found = open_heads(ORIGIN, [view("a", note(stranger, 10))], [signer.verifier])
    assert heads == {}
    assert [f.kind for f in found] == ["checkpoint_signature"]
    heads, found = open_heads(ORIGIN, [view("a", "garbage")], [signer.verifier])
    assert [f.kind for f in found] == ["checkpoint_malformed"]


def test_fork_rollback_and_split_view(signer: Signer) -> None:
    mem = remembered(signer, 10)
    assert judge_heads(mem, {"a": head(signer, 10)}) == []
    (fork,) = judge_heads(mem, {"a": head(signer, 10, bytes(32))})
    assert (fork.kind, fork.endpoint, fork.checkpoint_size) == ("fork", "a", 10)
    (rollback,) = judge_heads(mem, {"a": head(signer, 7)})
    assert rollback.kind == "rollback"
    assert "smaller than the 10 verified earlier" in rollback.detail
    (split,) = judge_heads(mem, {"a": head(signer, 20), "b": head(signer, 20, bytes(32))})
    assert (split.kind, split.endpoint) == ("split_view", "b")


def test_a_log_served_unsigned_or_shorter_than_remembered_is_a_rollback(signer: Signer) -> None:
    mem = remembered(signer, 10)
    assert judge_listing(mem, [view("a", note(signer, 10))]) == []
    assert judge_listing(Remembered(origin=ORIGIN), [view("a", None)]) == []  # nothing kept
    (unsigned,) = judge_listing(mem, [view("a", None)])
    assert (unsigned.kind, unsigned.endpoint) == ("rollback", "a")
    assert unsigned.detail.startswith("serves no signed checkpoint, yet 10 leaves")
    (short,) = judge_listing(mem, [view("b", note(signer, 10), cp_size=8)])
    assert short.detail.startswith("reports 8 leaves, fewer than the 10 verified earlier")


def test_new_leaves_grow_the_remembered_tree_to_the_signed_root(signer: Signer) -> None:
    mem = remembered(signer, 10)
    heads = {"a": head(signer, 30), "b": head(signer, 20)}
    new, found = grow(mem, heads, LEAVES).finish("n")
    assert found == []
    assert new is not None
    assert (new.size, new.root, new.note) == (30, merkle.root_from_leaves(LEAVES[:30]), "n")
    # and the grown state is a valid remembered state of its own
    restored = restore(
        origin=ORIGIN, note=note(signer, 30), compact=new.compact, verifiers=[signer.verifier]
    )
    assert restored.root == new.root


def test_an_altered_or_missing_leaf_is_a_finding(signer: Signer) -> None:
    mem = remembered(signer, 10)
    altered = [*LEAVES[:25], b"altered", *LEAVES[26:]]
    new, found = grow(mem, {"a": head(signer, 30)}, altered).finish("n")
    assert new is None
    assert [f.kind for f in found] == ["entries_mismatch"]
    new, found = grow(mem, {"a": head(signer, 30)}, LEAVES[:22]).finish("n")
    assert new is None
    assert [(f.kind, f.checkpoint_size) for f in found] == [("leaves_missing", 30)]
    assert found[0].detail.startswith("leaf 22 is not served")


def test_an_endpoint_whose_smaller_root_the_leaves_do_not_give_is_a_split_view(
    signer: Signer,
) -> None:
    mem = remembered(signer, 10)
    heads = {"a": head(signer, 30), "b": head(signer, 20, bytes(32))}
    new, found = grow(mem, heads, LEAVES).finish("n")
    assert new is None
    assert [(f.kind, f.endpoint, f.checkpoint_size) for f in found] == [("split_view", "b", 20)]


def test_a_checkpoint_in_the_served_history_the_leaves_do_not_give_is_a_fork(
    signer: Signer,
) -> None:
    mem = remembered(signer, 10)
    stranger = parse_signer_key(generate_signer("test.ledger.local")[0])
    notes = [note(signer, 15), note(signer, 20, bytes(32)), note(stranger, 25), note(signer, 5)]
    history, untrusted = open_history(ORIGIN, "a", notes, [signer.verifier])
    assert [cp.size for cp in history] == [15, 20, 5]
    assert [f.kind for f in untrusted] == ["checkpoint_signature"]
    goal = ("a", head(signer, 30))
    growth = Growth(mem, {"a": goal[1]}, goal, history)
    for index in range(10, 30):
        growth.feed(index, LEAVES[index])
    new, found = growth.finish("n")
    assert new is None
    assert [(f.kind, f.endpoint, f.checkpoint_size) for f in found] == [("fork", "a", 20)]
    assert "its checkpoint history holds a signed checkpoint of size 20" in found[0].detail


def test_a_consistency_proof_is_checked_against_both_signed_roots(signer: Signer) -> None:
    mem = remembered(signer, 10)
    goal = ("a", head(signer, 30))
    hashes = [merkle.leaf_hash(leaf) for leaf in LEAVES[:30]]
    proof = merkle.consistency_proof_from_leaves(10, hashes).hashes
    assert check_consistency(mem, goal, proof) is None
    assert check_consistency(Remembered(origin=ORIGIN), goal, []) is None  # nothing kept yet
    bad = check_consistency(mem, goal, [bytes(32), *proof[1:]])
    assert bad is not None
    assert bad.kind == "consistency_proof_invalid"
    missing = check_consistency(mem, goal, None)
    assert missing is not None
    assert "no consistency proof was served" in missing.detail


def test_a_stall_needs_two_sightings_and_the_age(signer: Signer) -> None:
    mem = remembered(signer, 10)
    pending = [view("a", None, unsigned=5)]
    mem, found = stall(mem, pending, now=NOW, after=timedelta(minutes=5))
    assert found is None
    assert (mem.stalled_size, mem.stalled_since) == (10, NOW)
    later = NOW + timedelta(minutes=4)
    assert stall(mem, pending, now=later, after=timedelta(minutes=5))[1] is None
    late = NOW + timedelta(minutes=5)
    _, found = stall(mem, pending, now=late, after=timedelta(minutes=5))
    assert found is not None
    assert (found.kind, found.checkpoint_size) == ("stall", 10)
    assert "for 300 s while the API reports 5 unsigned leaves" in found.detail
    moved = [view("a", None, unsigned=5, cp_size=12)]  # the checkpoint advanced: a new watch
    assert stall(mem, moved, now=late, after=timedelta(0))[1] is None
    cleared, _ = stall(mem, [view("a", None)], now=late, after=timedelta(0))
    assert (cleared.stalled_size, cleared.stalled_since) == (None, None)


def test_a_finding_key_is_stable_and_a_line_names_it_all() -> None:
    a = MonitorFinding(kind="fork", log=ORIGIN, endpoint="http://x", checkpoint_size=3, detail="d")
    b = MonitorFinding(kind="fork", log=ORIGIN, endpoint="http://x", checkpoint_size=3, detail="e")
    assert a.key == b.key
    assert a.line() == f"FINDING fork log {ORIGIN} at http://x: d"
    assert set(MONITOR_KINDS) >= {"fork", "rollback", "stall", "split_view", "leaves_missing"}


def test_the_state_file_round_trips_owner_only_and_refuses_tampering(
    signer: Signer, tmp_path: Path
) -> None:
    path = tmp_path / "s" / "state.json"
    mem = replace(remembered(signer, 10), stalled_size=10, stalled_since=NOW)
    state = MonitorState(logs={ORIGIN: mem, "empty/0": Remembered(origin="empty/0")},
                         alerted=frozenset({"k"}))  # fmt: skip
    save_state(path, state)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert load_state(path, [signer.verifier]) == state
    assert load_state(tmp_path / "none.json", [signer.verifier]) == MonitorState()
    doc = json.loads(path.read_text())
    doc["logs"][ORIGIN]["size"] = 3  # the size is informative: the note is what counts
    doc["logs"][ORIGIN]["compact"][0] = doc["logs"][ORIGIN]["compact"][1]
    path.write_text(json.dumps(doc))
    with pytest.raises(MalformedInputError, match="unusable"):
        load_state(path, [signer.verifier])
    stranger = parse_signer_key(generate_signer("test.ledger.local")[0])
    save_state(path, state)
    with pytest.raises(MalformedInputError, match="unusable"):
        load_state(path, [stranger.verifier])


def test_alerts_carry_the_finding_and_no_secret(tmp_path: Path) -> None:
    f = MonitorFinding(kind="stall", log=ORIGIN, endpoint="http://x", checkpoint_size=9, detail="d")
    body = json.loads(payload(f, destination="siem", found_at=NOW))
    assert body["idempotency_key"] == f"monitor.{f.key}.siem"
    assert body["monitor_finding"]["kind"] == "stall"
    assert body["monitor_finding"]["checkpoint_size"] == 9
    d = SyslogDestination(name="siem", host="localhost", ca_file=tmp_path / "ca.pem")
    message = syslog_message(f, d, NOW)
    assert message.startswith(b"<106>1 2026-12-06T12:00:00.000000Z - phi-ledger - monitor-finding ")
    assert b'kind="stall"' in message


def test_full_tiles_of_fed_leaves_only_are_collected_and_judged(signer: Signer) -> None:
    many = [f"leaf {i}".encode() for i in range(600)]

    def run(start: int) -> list[int]:
        builder = merkle.TreeBuilder()
        builder.extend(merkle.leaf_hash(leaf) for leaf in many[:start])
        root = merkle.root_from_leaves(many[:start])
        cp = Checkpoint(origin=ORIGIN, size=start, root_hash=RootHash(root))
        note = sign_checkpoint(cp, [signer])
        mem = (
            restore(origin=ORIGIN, note=note, compact=builder.hashes, verifiers=[signer.verifier])
            if start
            else Remembered(origin=ORIGIN)
        )
        goal_root = merkle.root_from_leaves(many)
        goal = ("a", Checkpoint(origin=ORIGIN, size=600, root_hash=RootHash(goal_root)))
        growth = Growth(mem, {}, goal)
        for index in range(start, 600):
            growth.feed(index, many[index])
        expected = b"".join(merkle.leaf_hash(leaf) for leaf in many[256:512])
        assert (1, expected) in growth.completed
        return [t for t, _ in growth.completed]

    assert run(0) == [0, 1]
    assert run(100) == [1]  # tile 0 began before the remembered size
    hashes = b"".join(merkle.leaf_hash(leaf) for leaf in many[:256])
    assert judge_tile(ORIGIN, "a", 0, hashes, hashes) is None
    wrong = judge_tile(ORIGIN, "a", 0, hashes, bytes(len(hashes)))
    assert wrong is not None
    assert wrong.line() == (
        f"FINDING tile_mismatch log {ORIGIN} at a: hash tile 0/0 (leaves 0..255) differs "
        "from the hashes of its leaves: proofs computed from it are wrong"
    )
    missing = judge_tile(ORIGIN, "a", 0, hashes, None)
    assert missing is not None
    assert "is not served" in missing.detail
