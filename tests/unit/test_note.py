"""Unit tests for ledger.log.note: key strings, signing, opening, rotation and tampering."""

from __future__ import annotations

import base64

import pytest

from ledger.errors import LedgerError, MalformedInputError, VerificationError
from ledger.log import note as N
from ledger.log.types import KeyID

TEXT = "example.com/log\n42\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"


def _keys(name: str) -> tuple[N.Signer, N.Verifier]:
    skey, vkey = N.generate_signer(name)
    return N.parse_signer_key(skey), N.parse_verifier_key(vkey)


# --------------------------------------------------------------------------------------------
# Key strings
# --------------------------------------------------------------------------------------------


def test_generated_keys_round_trip() -> None:
    skey, vkey = N.generate_signer("example.com/log")
    signer = N.parse_signer_key(skey)
    verifier = N.parse_verifier_key(vkey)
    assert skey.startswith("PRIVATE+KEY+example.com/log+")
    assert signer.signer_key() == skey
    assert verifier.key == vkey
    assert signer.verifier == verifier
    assert verifier.key_id == N.key_id_for("example.com/log", b"\x01" + verifier.public_key)
    assert vkey.split("+")[1] == verifier.key_id.hex()
    assert verifier.verify(b"msg", signer.sign(b"msg"))
    assert not verifier.verify(b"msg2", signer.sign(b"msg"))
    assert not verifier.verify(b"msg", signer.sign(b"msg")[:-1])
    # Two generated keys differ (os.urandom seeds).
    assert N.generate_signer("example.com/log")[0] != skey


def test_signer_repr_does_not_leak_the_seed() -> None:
    signer, _ = _keys("a")
    assert signer.seed.hex() not in repr(signer)
    assert base64.b64encode(signer.seed).decode() not in repr(signer)


def test_base64_with_plus_is_split_on_the_first_separators_only() -> None:
    # Find a key whose base64 contains '+', then check both parsers keep it whole.
    for _ in range(200):
        skey, vkey = N.generate_signer("plus")
        if "+" in vkey.split("+", 2)[2] and "+" in skey.split("+", 4)[4]:
            break
    else:
        pytest.fail("no key with '+' in its base64 in 200 tries")
    assert N.parse_verifier_key(vkey).key == vkey
    assert N.parse_signer_key(skey).signer_key() == skey


def _vkey_parts() -> tuple[str, str, bytes]:
    _, verifier = _keys("example.com/log")
    return verifier.name, verifier.key_id.hex(), b"\x01" + verifier.public_key


def _vkey(name: str, hex8: str, key: bytes) -> str:
    return f"{name}+{hex8}+{base64.b64encode(key).decode()}"


def test_verifier_key_parse_errors() -> None:
    name, hex8, key = _vkey_parts()
    good = _vkey(name, hex8, key)
    assert N.parse_verifier_key(good).name == name
    b64 = base64.b64encode(key).decode()
    bad = {
        # 33 bytes encode to 44 characters without padding.
        "bad base64 alphabet": f"{name}+{hex8}+{b64[:-1]}*",
        "url-safe base64": f"{name}+{hex8}+{b64[:-1]}-",
        "extra padding": f"{name}+{hex8}+{b64}=",
        "padding inside": f"{name}+{hex8}+{b64[:20]}={b64[21:]}",
        "truncated base64": f"{name}+{hex8}+{b64[:-1]}",
        "base64 with newline": f"{name}+{hex8}+{b64[:10]}\n{b64[10:]}",
        "wrong key ID": f"{name}+{(int(hex8, 16) ^ 1):08x}+{b64}",
        "key ID too short": f"{name}+{hex8[:7]}+{b64}",
        "key ID not hex": f"{name}+{hex8[:7]}g+{b64}",
        "key ID with 0x": f"{name}+0x{hex8[2:]}+{b64}",
        "plus in name": _vkey("a+b", N.key_id_for("a+b", key).hex(), key),
        "space in name": _vkey("a b", N.key_id_for("a b", key).hex(), key),
        "unicode space in name": _vkey("a\u3000b", N.key_id_for("a\u3000b", key).hex(), key),
        "NBSP in name": _vkey("a\xa0b", N.key_id_for("a\xa0b", key).hex(), key),
        "empty name": _vkey("", N.key_id_for("", key).hex(), key),
        "wrong algorithm byte": _vkey(
            name, N.key_id_for(name, b"\x02" + key[1:]).hex(), b"\x02" + key[1:]
        ),
        "short key": _vkey(name, N.key_id_for(name, key[:-1]).hex(), key[:-1]),
        "long key": _vkey(name, N.key_id_for(name, key + b"\x00").hex(), key + b"\x00"),
        "empty key": f"{name}+{hex8}+",
        "missing parts": f"{name}+{hex8}",
    }
    accepted = []
    for why, vkey in bad.items():
        try:
            N.parse_verifier_key(vkey)
        except MalformedInputError:
            continue
        accepted.append(why)
    assert accepted == []


def test_non_canonical_base64_is_rejected() -> None:
    """Trailing bits must be zero: 'AB==' and 'AA==' both decode to b'\\x00' in lax decoders."""
    signer, verifier = _keys("example.com/log")
    signed = N.sign_note(TEXT, [signer])
    b64 = signed.rsplit(" ", 1)[1].rstrip("\n")
    assert b64.endswith("=")  # 68 bytes encode with one padding character
    last = b64[-2]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    sibling = alphabet[alphabet.index(last) ^ 1]  # flips a bit the decoder discards
    forged = signed[: -len(b64) - 1] + b64[:-2] + sibling + "=\n"
    assert base64.b64decode(forged.rsplit(" ", 1)[1]) == base64.b64decode(b64)
    with pytest.raises(MalformedInputError):
        N.open_note(forged, [verifier])


def test_signer_key_parse_errors() -> None:
    signer, _ = _keys("example.com/log")
    skey = signer.signer_key()
    _, _, name, hex8, b64 = skey.split("+", 4)
    seed = base64.b64decode(b64)
    wrong_alg = base64.b64encode(b"\x02" + seed[1:]).decode()
    short_seed = base64.b64encode(seed[:-1]).decode()
    bad = [
        skey.replace("PRIVATE+KEY", "PRIVATE+KEX", 1),
        skey.replace("PRIVATE+KEY+", "", 1),
        f"PRIVATE+KEY+{name}+{(int(hex8, 16) ^ 0x80):08x}+{b64}",
        f"PRIVATE+KEY+{name}+{hex8}+{wrong_alg}",
        f"PRIVATE+KEY+{name}+{hex8}+{short_seed}",
        f"PRIVATE+KEY+{name}+{hex8}+{b64[:-1]}",
        f"PRIVATE+KEY+a+b+{hex8}+{b64}",
    ]
    for value in bad:
        with pytest.raises(MalformedInputError):
            N.parse_signer_key(value)
    # The key ID of a signer key is the hash of the *public* key, not of the seed.
    assert N.key_id_for(name, seed).hex() != hex8


def test_key_objects_validate_themselves() -> None:
    signer, verifier = _keys("k")
    with pytest.raises(MalformedInputError):
        N.Verifier(name="k", key_id=KeyID(b"\x00" * 4), public_key=verifier.public_key)
    with pytest.raises(MalformedInputError):
        N.Verifier(name="k", key_id=verifier.key_id, public_key=verifier.public_key[:31])
    with pytest.raises(MalformedInputError):
        N.Signer(name="other", key_id=signer.key_id, seed=signer.seed)
    with pytest.raises(MalformedInputError):
        N.Verifier.from_public_key("bad name", verifier.public_key)
    assert N.Verifier.from_public_key("k", verifier.public_key) == verifier
    assert N.Signer.from_seed("k", signer.seed) == signer


def test_key_name_rules() -> None:
    assert N.is_valid_key_name("example.com/log")
    assert N.is_valid_key_name("\u00e9t\u00e9")
    for name in ["", "a+b", "a b", "a\tb", "a\nb", "a\u2028b", "a\x85b", "a\x01b", "\ud800"]:
        assert not N.is_valid_key_name(name), name


# --------------------------------------------------------------------------------------------
# Signing and opening
# --------------------------------------------------------------------------------------------


def test_sign_and_open() -> None:
    signer, verifier = _keys("example.com/log")
    signed = N.sign_note(TEXT, [signer])
    assert signed.startswith(TEXT + "\n\u2014 example.com/log ")
    assert signed.endswith("\n")
    opened = N.open_note(signed, [verifier])
    assert opened.text == TEXT
    assert [s.name for s in opened.verified_signatures] == ["example.com/log"]
    assert opened.verified_signatures[0].key_id == verifier.key_id
    assert len(opened.verified_signatures[0].signature) == 64
    assert opened.unverified_signatures == ()


def test_key_rotation_with_old_and_new_keys() -> None:
    old_signer, old_verifier = _keys("example.com/log")
    new_signer, new_verifier = _keys("example.com/log")
    signed = N.sign_note(TEXT, [old_signer, new_signer])
    only_old = N.open_note(signed, [old_verifier])
    only_new = N.open_note(signed, [new_verifier])
    both = N.open_note(signed, [old_verifier, new_verifier])
    assert [s.key_id for s in only_old.verified_signatures] == [old_verifier.key_id]
    assert [s.key_id for s in only_old.unverified_signatures] == [new_verifier.key_id]
    assert [s.key_id for s in only_new.verified_signatures] == [new_verifier.key_id]
    assert [s.key_id for s in both.verified_signatures] == [
        old_verifier.key_id,
        new_verifier.key_id,
    ]
    # After the rotation the old key is retired: a note signed only by it no longer opens
    # for a client that trusts only the new key.
    with pytest.raises(VerificationError):
        N.open_note(N.sign_note(TEXT, [old_signer]), [new_verifier])


def test_note_signed_only_by_unknown_keys_is_rejected() -> None:
    signer, _ = _keys("example.com/log")
    _, stranger = _keys("example.com/log")
    _, other_name = _keys("other.example/log")
    signed = N.sign_note(TEXT, [signer])
    for verifiers in ([], [stranger], [other_name], [stranger, other_name]):
        with pytest.raises(VerificationError):
            N.open_note(signed, verifiers)


def test_tampered_text_is_rejected() -> None:
    signer, verifier = _keys("example.com/log")
    signed = N.sign_note(TEXT, [signer])
    for tampered in [
        signed.replace("42", "43", 1),
        signed.replace("example.com/log\n", "example.com/loh\n", 1),
        "x" + signed,
        signed.replace(TEXT, TEXT + "extra\n", 1),
    ]:
        with pytest.raises(VerificationError):
            N.open_note(tampered, [verifier])


def test_tampered_signature_is_rejected() -> None:
    signer, verifier = _keys("example.com/log")
    signed = N.sign_note(TEXT, [signer])
    head, sig_line = signed.rsplit("\u2014 ", 1)
    name, b64 = sig_line.rstrip("\n").split(" ")
    raw = bytearray(base64.b64decode(b64))
    raw[10] ^= 0x01
    forged = head + f"\u2014 {name} {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(VerificationError, match="invalid signature"):
        N.open_note(forged, [verifier])


def test_a_bad_signature_from_a_trusted_key_fails_the_note_even_next_to_a_good_one() -> None:
    signer, verifier = _keys("example.com/log")
    signed = N.sign_note(TEXT, [signer])
    sig_line = signed[len(TEXT) + 1 :]
    other_text_sig = N.sign_note("other text\n", [signer])[len("other text\n") + 1 :]
    with pytest.raises(VerificationError):
        N.open_note(TEXT + "\n" + sig_line + other_text_sig, [verifier])


def test_conflicting_verifiers_for_one_key_id_are_ambiguous() -> None:
    signer, verifier = _keys("example.com/log")
    _, other = _keys("example.com/log")
    # Simulate a 32-bit key-ID collision: same name and key ID, different public key.
    colliding = N.Verifier(
        name=verifier.name, key_id=verifier.key_id, public_key=verifier.public_key
    )
    object.__setattr__(colliding, "public_key", other.public_key)
    with pytest.raises(VerificationError, match="ambiguous"):
        N.open_note(N.sign_note(TEXT, [signer]), [verifier, colliding])


def test_cosigning_keeps_existing_signatures() -> None:
    log_signer, log_verifier = _keys("example.com/log")
    witness_signer, witness_verifier = _keys("witness.example")
    signed = N.sign_note(TEXT, [log_signer])
    opened = N.open_note(signed, [log_verifier])
    cosigned = N.sign_note(TEXT, [witness_signer], existing=opened.verified_signatures)
    assert cosigned.startswith(signed)
    both = N.open_note(cosigned, [log_verifier, witness_verifier])
    assert [s.name for s in both.verified_signatures] == ["example.com/log", "witness.example"]
    # Re-signing with the same key replaces the old line instead of duplicating it.
    resigned = N.sign_note(TEXT, [log_signer], existing=opened.verified_signatures)
    assert resigned == signed


def test_sign_note_rejects_bad_input() -> None:
    signer, _ = _keys("example.com/log")
    for text in ["no newline", "", "tab\there\n", "nul\x00\n", "\ud800\n"]:
        with pytest.raises(MalformedInputError):
            N.sign_note(text, [signer])
    with pytest.raises(MalformedInputError):
        N.sign_note(TEXT, [])
    with pytest.raises(MalformedInputError):
        N.sign_note(TEXT, [signer, signer])
    with pytest.raises(MalformedInputError):
        N.sign_note("x" * 2000 + "\n", [signer], max_size=1000)


def test_text_with_blank_lines_and_dash_lines_round_trips() -> None:
    """The note splits at the last blank line, so the text itself may contain both."""
    signer, verifier = _keys("example.com/log")
    text = "first\n\n\u2014 not a signature\n\n"
    assert N.open_note(N.sign_note(text, [signer]), [verifier]).text == text


def test_open_note_malformed_inputs() -> None:
    signer, verifier = _keys("example.com/log")
    signed = N.sign_note(TEXT, [signer])
    sig_line = signed[len(TEXT) + 1 :]
    name_and_sig = sig_line[2:-1]
    bad = [
        TEXT,  # no signature block
        TEXT + "\n",  # empty signature block
        TEXT + "\n" + sig_line[:-1],  # no final newline
        TEXT + "\n" + "-- " + name_and_sig + "\n",  # ASCII dashes
        TEXT + "\n" + "\u2014" + name_and_sig + "\n",  # no space after the dash
        TEXT + "\n" + "\u2014 " + name_and_sig.split(" ")[0] + "\n",  # no signature
        TEXT + "\n" + "\u2014 " + name_and_sig.split(" ")[0] + " AAAA\n",  # under 5 bytes
        TEXT + "\n" + sig_line.replace("=\n", "\n"),  # bad padding
        TEXT + "\n" + sig_line + "\n",  # blank line after the signatures
        TEXT.replace("\n", "\r\n") + "\n" + sig_line,  # control character
        "\ud800" + signed,  # not UTF-8 encodable
    ]
    for value in bad:
        with pytest.raises(MalformedInputError):
            N.open_note(value, [verifier])
    with pytest.raises(MalformedInputError):
        N.open_note(signed.encode() + b"\xc0", [verifier])
    with pytest.raises(MalformedInputError):
        N.open_note(signed, [verifier], max_size=len(signed.encode()) - 1)
    assert N.open_note(signed, [verifier], max_size=len(signed.encode())).text == TEXT


def test_errors_are_ledger_errors() -> None:
    assert issubclass(MalformedInputError, LedgerError)
    assert issubclass(VerificationError, LedgerError)
    with pytest.raises(LedgerError):
        N.parse_verifier_key("nonsense")
