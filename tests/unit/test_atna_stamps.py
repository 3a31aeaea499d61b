"""The ATNA receiver's stamp log: what survives a restart, and what it refuses to trust."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from integrations.atna.stamps import FILE_NAME, StampLog


def test_stamps_survive_a_reopen_in_order(tmp_path: Path) -> None:
    log = StampLog(tmp_path, "atna-1", capacity=10)
    assert log.open() == {}
    assert not log.append([("a", 0), ("b", 1)])
    log.append([("c", 2)])
    log.close()
    again = StampLog(tmp_path, "atna-1", capacity=10).open()
    assert list(again.items()) == [("a", 0), ("b", 1), ("c", 2)]
    assert stat.S_IMODE((tmp_path / FILE_NAME).stat().st_mode) == 0o600


def test_only_the_newest_capacity_are_kept_and_the_file_is_compacted(tmp_path: Path) -> None:
    log = StampLog(tmp_path, "atna-1", capacity=3)
    recent = log.open()
    wants_compaction = False
    for i in range(7):
        recent[f"e{i}"] = i
        wants_compaction = log.append([(f"e{i}", i)])
    assert wants_compaction  # 7 lines > 2 x 3
    log.compact(recent.items())
    log.close()
    assert len((tmp_path / FILE_NAME).read_text().splitlines()) == 1 + 3
    reopened = StampLog(tmp_path, "atna-1", capacity=3).open()
    assert list(reopened.items()) == [("e4", 4), ("e5", 5), ("e6", 6)]


def test_stamps_of_another_producer_id_are_not_reused(tmp_path: Path) -> None:
    log = StampLog(tmp_path, "atna-1", capacity=10)
    log.open()
    log.append([("a", 5)])
    log.close()
    other = StampLog(tmp_path, "atna-2", capacity=10)
    assert other.open() == {}  # number 5 of atna-1 means nothing to atna-2
    other.close()
    assert (tmp_path / FILE_NAME).read_text() == "# producer atna-2\n"


def test_a_damaged_line_is_skipped_not_trusted(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_text("# producer atna-1\na 1\nb x\ntruncat\nc 3\n")
    log = StampLog(tmp_path, "atna-1", capacity=10)
    assert list(log.open().items()) == [("a", 1), ("c", 3)]
    log.close()
    assert "b x" not in (tmp_path / FILE_NAME).read_text()  # rewritten without them


@pytest.mark.parametrize("producer_id", ["", "has space", "nön-ascii"])
def test_a_producer_id_that_cannot_head_the_file_is_refused(
    tmp_path: Path, producer_id: str
) -> None:
    with pytest.raises(ValueError, match="producer id"):
        StampLog(tmp_path, producer_id, capacity=1)
