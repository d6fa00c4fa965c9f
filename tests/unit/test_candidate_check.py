"""``check_candidate``: the RFC 8839 candidate grammar the hub applies before aiortc parses a
trickled candidate, hostile input included (tests/integration drives it through a server)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signaling.core.sdpcheck import SdpError, check_candidate

GOOD = [
    "candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host",
    "a=candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host",
    "candidate:abc+/ 2 TCP 1518280447 2001:db8::1 9 typ host tcptype active",
    "candidate:842163049 1 UDP 1677729535 198.51.100.7 3478 typ srflx raddr 0.0.0.0 rport 0 generation 0",
    "candidate:3 1 udp 41885439 203.0.113.9 65535 typ relay raddr 198.51.100.7 rport 40000",
    "candidate:4 1 udp 1 3f1c5e7a-0d2b-4b1e-9f0e-2c4d6e8fa1b2.local 0 typ prflx",
    "",  # end of candidates
]

BAD = [
    ("not a candidate", "not an ICE candidate"),
    ("candidate:1 1 udp 2122260223 192.0.2.1 54321 typ bogus", "not an ICE candidate"),
    ("candidate:1 1 sctp 2122260223 192.0.2.1 54321 typ host", "not an ICE candidate"),
    ("candidate:1 1 udp 2122260223 192.0.2.1 65536 typ host", "port out of range"),
    ("candidate:1 1 udp 2122260223 192.0.2.1 99999 typ host", "port out of range"),
    ("candidate:1 1 udp 2122260223 192.0.2.1 123456 typ host", "not an ICE candidate"),
    ("candidate: 1 udp 2122260223 192.0.2.1 54321 typ host", "not an ICE candidate"),
    ("candidate:" + "a" * 33 + " 1 udp 1 192.0.2.1 1 typ host", "not an ICE candidate"),
    ("candidate:1 1 udp 2122260223 " + "h" * 256 + " 1 typ host", "not an ICE candidate"),
    ("candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host\r\na=evil", "not an ICE candidate"),
    ("candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host\x00", "not an ICE candidate"),
    ("candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host " + "x" * 513, "not an ICE candidate"),
    ("candidate:1 1 udp 2122260223 1\u0669.0.0.1 54321 typ host", "not an ICE candidate"),  # Arabic-Indic digit
    ("candidate:1 \u0661 udp 1 192.0.2.1 1 typ host", "not an ICE candidate"),
    ("candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host \u202e", "not an ICE candidate"),  # bidi override
    ("a=a=candidate:1 1 udp 1 192.0.2.1 1 typ host", "not an ICE candidate"),
    (" candidate:1 1 udp 1 192.0.2.1 1 typ host", "not an ICE candidate"),
]


@pytest.mark.parametrize("candidate", GOOD)
def test_real_candidates_pass(candidate: str) -> None:
    check_candidate(candidate)


@pytest.mark.parametrize(("candidate", "why"), BAD)
def test_hostile_candidates_are_refused_with_a_reason(candidate: str, why: str) -> None:
    with pytest.raises(SdpError, match=why):
        check_candidate(candidate)


def test_the_message_quotes_at_most_60_characters() -> None:
    with pytest.raises(SdpError) as caught:
        check_candidate("x" * 10_000)
    assert len(str(caught.value)) < 100


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_passes_or_raises_sdp_error_only(text: str) -> None:
    try:
        check_candidate(text)
    except SdpError:
        return
    # What passes is one line of printable ASCII with a port in range.
    assert text == "" or (text.isascii() and "\n" not in text and "\r" not in text)
