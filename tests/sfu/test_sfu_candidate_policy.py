"""The remote-candidate policy as a plain object: addresses in, verdicts out, no sockets."""

from __future__ import annotations

import re

import pytest

from sfu.candidate_policy import LOOPBACK_NETWORKS, CandidatePolicy, Refusal, parse_networks


@pytest.mark.parametrize(
    ("host", "category"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.20", "private"),
        ("fd12:3456::1", "private"),
        ("fc00::1", "private"),
        ("100.64.0.1", "cgnat"),
        ("100.127.255.254", "cgnat"),
        ("169.254.10.20", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("224.0.0.251", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::fb", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("255.255.255.255", "reserved"),
        ("240.0.0.1", "reserved"),
        ("198.18.0.1", "reserved"),
        ("::2", "reserved"),
        # IPv6 forms that lead to an IPv4 address are judged by that address.
        ("::ffff:10.0.0.5", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "metadata"),
        ("64:ff9b::a00:5", "private"),
        ("2002:a00:5::1", "private"),
        ("2002:7f00:1::1", "loopback"),
        # Names: never resolved by the SFU.
        ("3b2c51d3-98c2-4b33-8d6e-0f4f0e4b5b1a.local", "mdns"),
        ("host.LOCAL.", "mdns"),
        ("example.com", "hostname"),
        ("localhost", "hostname"),
    ],
)
def test_refused_by_default(host: str, category: str) -> None:
    assert CandidatePolicy().check(host) == Refusal(host, category)


@pytest.mark.parametrize(
    "host",
    ["8.8.8.8", "1.2.3.4", "172.32.0.1", "100.128.0.1", "192.0.2.10", "2001:4860:4860::8888",
     "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"],
)
def test_public_addresses_pass(host: str) -> None:
    assert CandidatePolicy().check(host) is None


def test_allowed_ranges_override_the_defaults_and_nothing_else() -> None:
    policy = CandidatePolicy(["10.20.0.0/16", *LOOPBACK_NETWORKS])
    assert policy.check("10.20.3.4") is None
    assert policy.check("::ffff:10.20.3.4") is None
    assert policy.check("127.0.0.1") is None
    assert policy.check("::1") is None
    assert policy.check("10.21.0.1") == Refusal("10.21.0.1", "private")
    assert policy.check("169.254.169.254") == Refusal("169.254.169.254", "metadata")
    assert policy.check("x.local") == Refusal("x.local", "mdns")


def test_bad_allow_ranges_are_refused_with_their_value() -> None:
    with pytest.raises(ValueError, match=re.escape("'10.0.0.1/8'")):
        parse_networks(["10.0.0.1/8"])
    with pytest.raises(ValueError, match="'lan'"):
        CandidatePolicy(["lan"])
    assert parse_networks(["192.168.1.7"])[0].num_addresses == 1


OFFER = (
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n"
    "a=candidate:1 1 udp 2122260223 192.168.1.20 54321 typ host generation 0\r\n"
    "a=candidate:2 1 udp 2122260223 abc.local 54322 typ host\r\n"
    "a=candidate:3 1 udp 1686052607 203.0.113.9 40000 typ srflx raddr 192.168.1.20 rport 54321\r\n"
    "a=candidate:4  1  udp  1  10.0.0.5  9  typ  host\r\n"
    "a=candidate:5 1 udp\r\n"
    "a=end-of-candidates\r\n"
)


def test_sdp_filter_drops_refused_candidate_lines_only() -> None:
    kept, refused = CandidatePolicy().filter_sdp(OFFER)
    assert [r.category for r in refused] == ["private", "mdns", "private", "malformed"]
    # The server-reflexive candidate stays (its raddr is never contacted); end-of-candidates
    # goes (the agent must wait for peer-reflexive pairs); all else is intact.
    assert kept == OFFER.replace("a=end-of-candidates\r\n", "").replace(
        "a=candidate:1 1 udp 2122260223 192.168.1.20 54321 typ host generation 0\r\n", ""
    ).replace("a=candidate:2 1 udp 2122260223 abc.local 54322 typ host\r\n", "").replace(
        "a=candidate:4  1  udp  1  10.0.0.5  9  typ  host\r\n", ""
    ).replace("a=candidate:5 1 udp\r\n", "")


def test_sdp_filter_splits_lines_as_aiortc_does() -> None:
    """aiortc splits with str.splitlines: a candidate hidden behind U+2028 is still judged."""
    sneaky = OFFER.replace("a=end-of-candidates", "a=x\u2028a=candidate:9 1 udp 1 10.9.9.9 9 typ host")
    kept, refused = CandidatePolicy().filter_sdp(sneaky)
    assert Refusal("10.9.9.9", "private") in refused
    assert "10.9.9.9" not in kept
    allowed, none = CandidatePolicy(["10.0.0.0/8", "192.168.0.0/16"]).filter_sdp(OFFER)
    assert [r.category for r in none] == ["mdns", "malformed"]
    assert "10.0.0.5" in allowed and "192.168.1.20" in allowed


def test_sdp_filter_keeps_end_of_candidates_when_nothing_was_refused() -> None:
    public = OFFER.replace("192.168.1.20", "198.51.100.7").replace("abc.local", "198.51.100.8")
    public = public.replace("10.0.0.5", "198.51.100.9").replace("a=candidate:5 1 udp\r\n", "")
    assert CandidatePolicy().filter_sdp(public) == (public, [])
