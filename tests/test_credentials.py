"""Secrets hashed in Mosquitto's $7$ format: our hashes verify with Mosquitto's, and the other way round."""

from __future__ import annotations

import pytest

from core.credentials import check_password, demo_secret, new_secret, password_hash

# Written by `mosquitto_passwd -b` (Mosquitto 2.0.11) for the password "secret".
MOSQUITTO_HASH = ("$7$101$5xuOBOLKoyH+BdAi$e4KxqeYuwHzMCLlM2818kUkcB5GjYamYGwSZpBQXw8BgwLlO2TXQuGiyfyn3Z6phc4GX"
                  "kOMubgQBRDR7Tl4dwQ==")


def test_a_hash_made_by_mosquitto_passwd_verifies() -> None:
    assert check_password("secret", MOSQUITTO_HASH)
    assert not check_password("Secret", MOSQUITTO_HASH)


def test_our_hash_verifies_and_is_salted() -> None:
    secret = new_secret()
    first, second = password_hash(secret), password_hash(secret)
    assert first != second
    assert check_password(secret, first)
    assert check_password(secret, second)
    assert not check_password(secret + "x", first)


@pytest.mark.parametrize("hashed", ["", "plain", "$6$abc$def", "$7$x$AAAA$BBBB", "$7$10$!!!$AAAA"])
def test_malformed_hashes_never_match(hashed: str) -> None:
    assert not check_password("secret", hashed)


def test_demo_secrets_are_stable_and_distinct() -> None:
    assert demo_secret("rain-0001") == demo_secret("rain-0001")
    assert demo_secret("rain-0001") != demo_secret("rain-0002")
    assert len(demo_secret("rain-0001")) == 24
