"""turnserver.conf rendering: the text coturn will read (pure; coturn itself runs elsewhere)."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from signaling.tools.cli import cli
from signaling.turn.coturn import (
    DENIED_PEER_RANGES,
    CoturnSettings,
    Profile,
    find_template,
    load_template,
    render,
)

SECRET_A = "a" * 64
SECRET_B = "b" * 64
PRODUCTION = CoturnSettings(
    realm="turn.example.org",
    secrets=(SECRET_A, SECRET_B),
    listening_ips=("10.0.0.5",),
    relay_ips=("10.0.0.5",),
    external_ips=("203.0.113.7/10.0.0.5",),
    tls_listening_port=443,
    cert="/etc/ssl/turn/fullchain.pem",
    pkey="/etc/ssl/turn/privkey.pem",
)
TEST = CoturnSettings(realm="switchboard.test", secrets=("s3cret",), profile=Profile.TEST)

#: What the issue requires production to deny, at least.
REQUIRED_DENIED = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "169.254.169.254/32",
    "0.0.0.0/8",
    "100.64.0.0/10",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def values(text: str, key: str) -> list[str]:
    """Every value of ``key=value`` lines (comments excluded)."""
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]


def flags(text: str) -> set[str]:
    """Every option line without a value."""
    return {
        line for line in text.splitlines() if line and not line.startswith("#") and "=" not in line
    }


def denied(text: str) -> list[tuple[Address, Address]]:
    ranges = []
    for value in values(text, "denied-peer-ip"):
        first, _, last = value.partition("-")
        ranges.append((ipaddress.ip_address(first), ipaddress.ip_address(last or first)))
    return ranges


def covered(network: str, ranges: list[tuple[Address, Address]]) -> bool:
    net = ipaddress.ip_network(network)
    return any(
        first.version == net.version
        and int(first) <= int(net.network_address)
        and int(net.broadcast_address) <= int(last)
        for first, last in ranges
    )


@pytest.mark.parametrize("network", REQUIRED_DENIED)
def test_production_denies_private_and_special_peers(network: str) -> None:
    assert covered(network, denied(render(PRODUCTION)))


@pytest.mark.parametrize("network", ["8.8.8.0/24", "1.1.1.1/32", "2606:4700::/32"])
def test_production_does_not_deny_public_peers(network: str) -> None:
    assert not covered(network, denied(render(PRODUCTION)))


def test_no_range_has_an_all_zero_ipv6_bound() -> None:
    # coturn reads an all-zero bound as "unbounded": `denied-peer-ip=::` would deny every peer,
    # and an allowed one would allow every peer.
    for first, last in denied(render(PRODUCTION)):
        assert not (first.version == 6 and first.is_unspecified)
        assert not last.is_unspecified


def test_production_secure_defaults() -> None:
    text = render(PRODUCTION)
    assert {
        "fingerprint",
        "no-cli",
        "no-multicast-peers",
        "use-auth-secret",
        "no-tlsv1",
        "no-tlsv1_1",
        "no-tcp-relay",
        "no-software-attribute",
        "no-dtls",
    } <= flags(text)
    assert "allow-loopback-peers" not in flags(text)
    assert "no-tls" not in flags(text)
    assert values(text, "static-auth-secret") == [SECRET_A, SECRET_B]
    assert values(text, "realm") == ["turn.example.org"]
    assert values(text, "listening-ip") == ["10.0.0.5"]
    assert values(text, "relay-ip") == ["10.0.0.5"]
    assert values(text, "external-ip") == ["203.0.113.7/10.0.0.5"]
    assert values(text, "listening-port") == ["3478"]
    assert values(text, "tls-listening-port") == ["443"]
    assert values(text, "cert") == ["/etc/ssl/turn/fullchain.pem"]
    assert values(text, "pkey") == ["/etc/ssl/turn/privkey.pem"]
    assert values(text, "min-port") == ["49152"]
    assert values(text, "max-port") == ["65535"]
    for key in ("user-quota", "total-quota", "max-bps", "stale-nonce"):
        assert len(values(text, key)) == 1
    assert flags(text) >= {"syslog"}


def test_every_line_is_an_option_or_a_comment() -> None:
    for profile_settings in (PRODUCTION, TEST):
        for line in render(profile_settings).splitlines():
            assert "$" not in line
            assert (
                line == "" or line.startswith("#") or re.fullmatch(r"[a-z0-9_-]+(=\S+)?", line)
            ), line


def test_test_profile_allows_loopback_only() -> None:
    text = render(TEST)
    assert {"allow-loopback-peers", "no-tls", "no-dtls"} <= flags(text)
    assert values(text, "listening-ip") == ["127.0.0.1"]
    assert values(text, "relay-ip") == ["127.0.0.1"]
    assert not covered("127.0.0.1/32", denied(text))
    assert covered("10.0.0.0/8", denied(text))
    assert covered("169.254.169.254/32", denied(text))
    assert values(text, "log-file") == ["stdout"]
    assert values(text, "cert") == []


def test_allowed_peer_exceptions_are_rendered() -> None:
    text = render(
        dataclasses.replace(PRODUCTION, allowed_peer_ips=("10.0.0.9", "10.0.1.0-10.0.1.255"))
    )
    assert values(text, "allowed-peer-ip") == ["10.0.0.9", "10.0.1.0-10.0.1.255"]


def test_process_settings() -> None:
    text = render(
        dataclasses.replace(
            TEST, log_file="/var/log/turn.log", pidfile="/run/turn.pid", userdb="/tmp/x.sqlite"
        )
    )
    assert values(text, "log-file") == ["/var/log/turn.log"]
    assert values(text, "pidfile") == ["/run/turn.pid"]
    assert values(text, "userdb") == ["/tmp/x.sqlite"]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"realm": "evil\nallow-loopback-peers"}, "realm"),
        ({"secrets": ()}, "at least one"),
        ({"secrets": ("x" * 40 + "\nallow-loopback-peers",)}, "secret #1"),
        ({"secrets": ("short-secret",)}, "shorter than 32"),
        ({"secrets": (SECRET_A, SECRET_A)}, "twice"),
        ({"cert": None}, "needs a TLS certificate"),
        ({"pkey": "relative/key.pem"}, "absolute path"),
        ({"listening_ips": ("not-an-ip",)}, "not an IP"),
        ({"external_ips": ("203.0.113.7/nope",)}, "private address"),
        ({"allowed_peer_ips": ("::",)}, "unspecified"),
        ({"allowed_peer_ips": ("0.0.0.0",)}, "unspecified"),
        ({"min_port": 60000, "max_port": 50000}, "min port"),
        ({"listening_port": 50000}, "inside the relay range"),
        ({"listening_port": 0}, "not in 1..65535"),
        ({"user_quota": -1}, "user quota"),
        ({"log_file": "relative.log"}, "log file"),
    ],
)
def test_production_rejects(change: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        render(dataclasses.replace(PRODUCTION, **change))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"listening_ips": ("0.0.0.0",)}, "not loopback"),
        ({"relay_ips": ("192.0.2.1",)}, "not loopback"),
        ({"external_ips": ("203.0.113.7",)}, "no external IP"),
        ({"cert": "/c.pem", "pkey": "/k.pem"}, "without TLS"),
    ],
)
def test_test_profile_rejects(change: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        render(dataclasses.replace(TEST, **change))  # type: ignore[arg-type]


def test_error_never_echoes_a_secret() -> None:
    bad = "y" * 40 + " with space"
    with pytest.raises(ValueError, match="secret") as info:
        render(dataclasses.replace(PRODUCTION, secrets=(bad,)))
    assert bad not in str(info.value)


def test_template_is_found_in_the_source_tree() -> None:
    path = find_template()
    assert path.name == "turnserver.conf.template"
    assert path.parent.name in ("turn-config", "_turn_config")
    assert load_template() == path.read_text(encoding="utf-8")


def test_template_and_renderer_must_agree() -> None:
    with pytest.raises(ValueError, match="placeholders"):
        render(TEST, template=load_template() + "${unknown}\n")


def test_denied_ranges_are_networks() -> None:
    for entry in DENIED_PEER_RANGES:
        assert entry.reason
        assert entry.network == ipaddress.ip_network(entry.network)


EXAMPLE_ARGS = [
    "turn",
    "config",
    "--profile=production",
    "--realm=turn.example.org",
    "--listen-ip=10.0.0.5",
    "--relay-ip=10.0.0.5",
    "--external-ip=203.0.113.7/10.0.0.5",
    "--tls-port=443",
    "--cert=/etc/letsencrypt/live/turn.example.org/fullchain.pem",
    "--pkey=/etc/letsencrypt/live/turn.example.org/privkey.pem",
]
EXAMPLE_SECRET = "REPLACE-ME-run-openssl-rand-hex-32-and-put-the-output-here"


def test_shipped_example_is_up_to_date() -> None:
    """turn-config/turnserver.example.conf is exactly what README.md's command renders."""
    result = CliRunner().invoke(cli, EXAMPLE_ARGS, env={"SWITCHBOARD_ICE_TURN_SECRETS": EXAMPLE_SECRET})
    assert result.exit_code == 0, result.output
    example = Path(__file__).resolve().parents[2] / "turn-config" / "turnserver.example.conf"
    assert example.read_text(encoding="utf-8") == result.stdout
