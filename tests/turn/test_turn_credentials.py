"""Ephemeral TURN REST credentials and the ``ice_servers`` of ``welcome`` (pure, no server)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import string
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signaling.core.config import IceConfig
from signaling.turn.credentials import (
    DEFAULT_TTL,
    MAX_TTL,
    MAX_USER_LENGTH,
    TurnCredentials,
    check_ice_config,
    escape_user,
    ice_servers,
    make_credentials,
    unescape_user,
)

NOW = 1_700_000_000.75
SECRET = "0123456789abcdef0123456789abcdef"

secret_chars = st.sampled_from(
    sorted(set(string.printable) - set(string.whitespace) - set("\"'#,\\"))
)
secrets_st = st.text(secret_chars, min_size=1, max_size=64)
# 20 characters of at most 4 UTF-8 bytes, 3 characters each once escaped: within MAX_USER_LENGTH.
users_st = st.text(min_size=1, max_size=20)


def reference_credential(secret: str, username: str) -> str:
    """The TURN REST credential, computed independently of the code under test."""
    mac = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def test_known_vector() -> None:
    # printf '%s' '1700003600:alice' | openssl dgst -sha1 -hmac "$SECRET" -binary | base64
    creds = make_credentials(SECRET, "alice", 3600, 1_700_000_000.0)
    assert creds.username == "1700003600:alice"
    assert creds.credential == "HUgaepYTXVnvj1Vo97U6+hBbmH4="
    assert creds == TurnCredentials(creds.username, creds.credential, 3600, 1_700_003_600)


@settings(deadline=None)  # no per-example deadline: CI machines are loaded
@given(secret=secrets_st, user=users_st, ttl=st.integers(1, MAX_TTL), now=st.floats(0, 4e9))
def test_matches_independent_hmac(secret: str, user: str, ttl: int, now: float) -> None:
    creds = make_credentials(secret, user, ttl, now)
    expiry_text, sep, escaped = creds.username.partition(":")
    assert sep == ":"
    assert int(expiry_text) == creds.expires_at == int(now) + ttl
    assert unquote(escaped) == user
    assert creds.credential == reference_credential(secret, creds.username)
    assert creds.ttl == ttl


@settings(deadline=None)
@given(user=users_st)
def test_user_escaping_is_safe_and_reversible(user: str) -> None:
    escaped = escape_user(user)
    # coturn takes the expiry before the first ':'; nothing after it may look like a separator,
    # a control character (log forging) or non-ASCII (SASLprep mismatches).
    assert ":" not in escaped
    assert escaped.isascii() and escaped.isprintable()
    assert unescape_user(escaped) == user


def test_colon_in_user_is_percent_encoded() -> None:
    creds = make_credentials(SECRET, "room:42\nadmin", 60, NOW)
    assert creds.username == f"{int(NOW) + 60}:room%3A42%0Aadmin"
    assert creds.username.count(":") == 1


def test_distinct_users_never_share_a_username() -> None:
    assert escape_user("a:b") != escape_user("a%3Ab")


@pytest.mark.parametrize("ttl", [0, -1, MAX_TTL + 1])
def test_ttl_outside_range_is_rejected(ttl: int) -> None:
    with pytest.raises(ValueError, match="TTL"):
        make_credentials(SECRET, "alice", ttl, NOW)


@pytest.mark.parametrize("user", ["", "x" * (MAX_USER_LENGTH + 1), "é" * 50])
def test_empty_or_too_long_user_is_rejected(user: str) -> None:
    with pytest.raises(ValueError, match="user"):
        make_credentials(SECRET, user, 60, NOW)


@pytest.mark.parametrize("secret", ["", "has space", "new\nline", "quote'", "comma,", "hash#"])
def test_unsafe_secret_is_rejected_without_echoing_it(secret: str) -> None:
    with pytest.raises(ValueError, match="secret") as info:
        make_credentials(secret, "alice", 60, NOW)
    if secret:
        assert secret not in str(info.value)


def test_ice_servers_shape_and_first_secret_signs() -> None:
    ice = IceConfig(
        stun_urls=("stun:stun.example.org:3478",),
        turn_urls=(
            "turn:turn.example.org:3478",
            "turn:turn.example.org:3478?transport=tcp",
            "turns:turn.example.org:443?transport=tcp",
        ),
        turn_secrets=(SECRET, "older-secret-still-accepted-by-coturn"),
        turn_ttl=600,
    )
    servers = ice_servers(ice, "session-1", NOW)
    assert servers[0] == {"urls": ["stun:stun.example.org:3478"]}
    turn = servers[1]
    assert turn["urls"] == list(ice.turn_urls)
    assert turn["username"] == f"{int(NOW) + 600}:session-1"
    assert turn["credential"] == reference_credential(SECRET, turn["username"])
    assert len(servers) == 2


def test_ice_servers_default_ttl_is_four_hours() -> None:
    ice = IceConfig(turn_urls=("turn:t.example.org",), turn_secrets=(SECRET,))
    assert ice.turn_ttl == DEFAULT_TTL == 4 * 3600
    (turn,) = ice_servers(ice, "u", NOW)
    assert turn["username"].startswith(f"{int(NOW) + DEFAULT_TTL}:")


def test_ice_servers_empty_config_gives_no_servers() -> None:
    assert ice_servers(IceConfig(), "u", NOW) == []


def test_ice_servers_stun_only() -> None:
    assert ice_servers(IceConfig(stun_urls=("stun:s.example.org",)), "u", NOW) == [
        {"urls": ["stun:s.example.org"]}
    ]


def test_ice_servers_turn_without_secret_is_an_error() -> None:
    with pytest.raises(ValueError, match="turn_secrets"):
        ice_servers(IceConfig(turn_urls=("turn:t.example.org",)), "u", NOW)


def test_check_ice_config_accepts_a_good_config() -> None:
    check_ice_config(
        IceConfig(
            stun_urls=("stun:s.example.org",),
            turn_urls=("turns:t.example.org:443?transport=tcp",),
            turn_secrets=(SECRET,),
        )
    )


def test_check_ice_config_lists_every_problem() -> None:
    ice = IceConfig(
        stun_urls=("turn:t.example.org", "http://nope"),
        turn_urls=("stun:s.example.org",),
        turn_secrets=("bad secret",),
        turn_ttl=MAX_TTL + 1,
    )
    with pytest.raises(ValueError, match="invalid ICE configuration") as info:
        check_ice_config(ice)
    message = str(info.value)
    for fragment in (
        "TURN URL in stun_urls",
        "scheme",
        "STUN URL in turn_urls",
        "turn_secrets[0]",
        "turn_ttl",
    ):
        assert fragment in message
    assert "bad secret" not in message
