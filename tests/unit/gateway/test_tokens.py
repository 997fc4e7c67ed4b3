from __future__ import annotations

import hashlib

from gateway.tokens import (
    TOKEN_PREFIX,
    display_prefix,
    generate_token,
    hash_token,
    is_well_formed,
)


def test_tokens_are_prefixed_high_entropy_and_self_checking() -> None:
    tokens = {generate_token() for _ in range(200)}
    assert len(tokens) == 200
    for token in tokens:
        assert token.startswith(TOKEN_PREFIX)
        assert len(token) == len(TOKEN_PREFIX) + 46
        assert is_well_formed(token)


def test_a_corrupted_token_fails_its_checksum() -> None:
    token = generate_token()
    flipped = token[:-7] + ("a" if token[-7] != "a" else "b") + token[-6:]
    assert not is_well_formed(flipped)
    assert not is_well_formed(token + "x")
    assert not is_well_formed("sams_scim_short")


def test_only_a_hash_and_a_short_prefix_leave_the_token() -> None:
    token = generate_token()
    assert hash_token(token) == hashlib.sha256(token.encode()).hexdigest()
    assert display_prefix(token) == token[: len(TOKEN_PREFIX) + 4]
