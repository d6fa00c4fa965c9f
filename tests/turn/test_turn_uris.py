"""STUN/TURN URI parsing (RFC 7064, RFC 7065)."""

from __future__ import annotations

import re

import pytest

from signaling.turn.uris import IceUri, parse_ice_uri


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stun:stun.example.org", IceUri("stun", "stun.example.org", 3478, "udp")),
        ("stuns:example.org", IceUri("stuns", "example.org", 5349, "tcp")),
        (
            "turn:10.0.0.1:3479",
            IceUri("turn", "10.0.0.1", 3479, "udp", explicit_port=True),
        ),
        (
            "turn:turn.example.org?transport=tcp",
            IceUri("turn", "turn.example.org", 3478, "tcp", explicit_transport=True),
        ),
        (
            "turns:turn.example.org:443?transport=tcp",
            IceUri("turns", "turn.example.org", 443, "tcp", True, True),
        ),
        ("TURN:[2001:db8::1]:3478", IceUri("turn", "2001:db8::1", 3478, "udp", explicit_port=True)),
        ("turn:[::1]", IceUri("turn", "::1", 3478, "udp")),
    ],
)
def test_parse(text: str, expected: IceUri) -> None:
    assert parse_ice_uri(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "stun:stun.example.org",
        "turn:10.0.0.1:3479",
        "turns:turn.example.org:443?transport=tcp",
        "turn:[2001:db8::1]:3478?transport=udp",
    ],
)
def test_str_round_trips(text: str) -> None:
    assert str(parse_ice_uri(text)) == text


def test_properties() -> None:
    uri = parse_ice_uri("turns:t.example.org")
    assert uri.is_turn and uri.secure and uri.address == ("t.example.org", 5349)
    assert not parse_ice_uri("stun:s.example.org").is_turn


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("http://example.org", "scheme"),
        ("example.org", "scheme"),
        ("turn://example.org:3478", "'//'"),
        ("turn:", "no host"),
        ("turn:exa mple.org", "host name"),
        ("turn:example.org:0", "port"),
        ("turn:example.org:65536", "port"),
        ("turn:example.org:http", "port"),
        ("turn:example.org?transport=sctp", "transport"),
        ("turn:example.org?foo=bar", "transport"),
        ("stun:example.org?transport=tcp", "stun: URIs take no"),
        ("turns:example.org?transport=udp", "DTLS"),
        ("turn:[::1", "unterminated"),
        ("turn:[nope]:3478", "IPv6"),
        ("turn:[::1]x", "after the IPv6"),
        ("turn:::1", "no host"),
    ],
)
def test_rejects(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        parse_ice_uri(text)
