"""Client address behind trusted proxies: rightmost untrusted X-Forwarded-For entry, or the peer."""

from __future__ import annotations

import pytest

from signaling.core.forwarded import TrustedProxies, parse_networks
from signaling.core.settings import ConfigError, load
from signaling.server.accept import AddressCounter

PROXIES = TrustedProxies(["10.0.0.0/8", "2001:db8::/32", "192.0.2.1"])


def test_no_trusted_proxies_means_the_header_is_ignored() -> None:
    assert TrustedProxies().client_address("10.1.1.1", ["198.51.100.7"]) == "10.1.1.1"
    assert not TrustedProxies()


def test_an_untrusted_peer_is_the_client_whatever_it_claims() -> None:
    assert PROXIES.client_address("203.0.113.5", ["198.51.100.7, 10.0.0.1"]) == "203.0.113.5"


@pytest.mark.parametrize(
    ("headers", "client"),
    [
        (["198.51.100.7"], "198.51.100.7"),
        # A forged left part is never reached: the rightmost untrusted entry wins.
        (["1.1.1.1, 198.51.100.7"], "198.51.100.7"),
        (["1.1.1.1, 198.51.100.7, 10.2.3.4"], "198.51.100.7"),
        # Several headers count as one list, in order.
        (["1.1.1.1", "198.51.100.7", "10.2.3.4"], "198.51.100.7"),
        # Only trusted hops: the leftmost is the best we know.
        (["10.9.9.9, 192.0.2.1"], "10.9.9.9"),
        # No header at all: the proxy itself.
        ([], "10.0.0.1"),
        # Garbage written by (or passed through) a trusted proxy: stop at the last good hop.
        (["198.51.100.7, nonsense"], "10.0.0.1"),
        (["nonsense, 10.5.5.5"], "10.5.5.5"),
        ([" 198.51.100.7 , "], "10.0.0.1"),
        # Ports and brackets some proxies add; IPv6 and v4-mapped forms.
        (["198.51.100.7:4711"], "198.51.100.7"),
        (["[2001:db9::1]:443"], "2001:db9::1"),
        (["2001:db9::1, 2001:db8::5"], "2001:db9::1"),
        (["::ffff:198.51.100.7"], "198.51.100.7"),
    ],
)
def test_rightmost_untrusted_entry(headers: list[str], client: str) -> None:
    assert PROXIES.client_address("10.0.0.1", headers) == client


def test_a_v4_mapped_peer_is_trusted_like_its_v4_address() -> None:
    assert PROXIES.trusts("::ffff:10.0.0.1")
    assert not PROXIES.trusts("not an address")


def test_bad_cidr_is_refused() -> None:
    with pytest.raises(ValueError, match="host bits"):
        parse_networks(["10.0.0.1/8"])
    with pytest.raises(ConfigError, match=r"security\.trusted_proxies"):
        load(env={"SWITCHBOARD_SECURITY_TRUSTED_PROXIES": "10.0.0.1/8"})


def test_env_scheme_and_list() -> None:
    config = load(env={"SWITCHBOARD_SECURITY_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1"})
    assert config.security.trusted_proxies == ("10.0.0.0/8", "192.0.2.1")


def test_accept_time_counter_bounds_proxies_separately() -> None:
    counter = AddressCounter(1, 3, PROXIES.trusts)
    assert counter.open("203.0.113.5")
    assert not counter.open("203.0.113.5")
    assert [counter.open("10.0.0.1") for _ in range(4)] == [True, True, True, False]
    assert counter.refused == 2
