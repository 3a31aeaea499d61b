"""Signer key files: refused when group/other can access them; several keys mean rotation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ledger.errors import MalformedInputError
from ledger.log.keys import load_signers, parse_verifiers, write_signer_file
from ledger.log.note import generate_signer


def key_file(tmp_path: Path, *names: str) -> tuple[Path, list[str]]:
    pairs = [generate_signer(n) for n in names]
    path = tmp_path / "signer.key"
    write_signer_file(path, [s for s, _ in pairs])
    return path, [v for _, v in pairs]


def test_new_key_file_is_private_and_loads(tmp_path: Path) -> None:
    path, verifiers = key_file(tmp_path, "ledger.example")
    assert path.stat().st_mode & 0o777 == 0o600
    (signer,) = load_signers(path)
    assert signer.verifier.key == verifiers[0]


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o601, 0o610])
def test_key_file_readable_by_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    path, _ = key_file(tmp_path, "ledger.example")
    os.chmod(path, mode)
    with pytest.raises(MalformedInputError, match="group or others"):
        load_signers(path)


def test_refuses_to_overwrite_a_key(tmp_path: Path) -> None:
    path, _ = key_file(tmp_path, "ledger.example")
    with pytest.raises(FileExistsError):
        write_signer_file(path, ["x"])


def test_several_keys_in_one_file_sign_together(tmp_path: Path) -> None:
    path, verifiers = key_file(tmp_path, "ledger.example", "ledger.example")
    signers = load_signers(path)
    assert [s.verifier.key for s in signers] == verifiers
    assert verifiers[0] != verifiers[1]


def test_malformed_key_is_reported_without_echoing_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.key"
    secret = "PRIVATE+KEY+x+00000000+AAAAsecretmaterial"
    write_signer_file(path, [secret])
    with pytest.raises(MalformedInputError) as info:
        load_signers(path)
    assert "secretmaterial" not in str(info.value)
    assert "key 1 is malformed" in str(info.value)


def test_verifier_lists_split_on_commas_and_spaces() -> None:
    keys = [generate_signer(f"k{i}")[1] for i in range(3)]
    parsed = parse_verifiers([f"{keys[0]}, {keys[1]}", keys[2]])
    assert [v.key for v in parsed] == keys
    with pytest.raises(MalformedInputError):
        parse_verifiers([""])
