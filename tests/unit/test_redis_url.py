"""Redis URLs (direct and Sentinel) and the replica-wait decision, without Redis."""

from __future__ import annotations

from typing import Any

import pytest

from signaling.backend.base import BackendUnavailable
from signaling.cluster.durable import ReplicaWait
from signaling.core.redis_url import (
    SentinelUrl,
    check_url,
    parse_sentinel_url,
    redact,
    resolve_wait_replicas,
)
from signaling.core.settings import ConfigError, load


def test_a_full_sentinel_url() -> None:
    url = "redis+sentinel://app:s%40cret@h1:26380,h2,[::1]:26381/mymaster/3?sentinel_password=sp&sentinel_user=su"
    assert parse_sentinel_url(url) == SentinelUrl(
        sentinels=(("h1", 26380), ("h2", 26379), ("::1", 26381)),
        service="mymaster", db=3, username="app", password="s@cret", sentinel_username="su", sentinel_password="sp",
    )


def test_a_minimal_sentinel_url_and_password_only() -> None:
    assert parse_sentinel_url("redis+sentinel://h1/svc") == SentinelUrl(sentinels=(("h1", 26379),), service="svc")
    parsed = parse_sentinel_url("REDIS+SENTINEL://:pw@h1:1,h2:2/svc/0")
    assert parsed.password == "pw" and parsed.username is None and parsed.sentinels == (("h1", 1), ("h2", 2))


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+sentinel://h1:26379", "no service name"),
        ("redis+sentinel:///svc", "no sentinel hosts"),
        ("redis+sentinel://h1:0/svc", "bad sentinel port"),
        ("redis+sentinel://h1:x/svc", "bad sentinel port"),
        ("redis+sentinel://[::1/svc", "bad sentinel address"),
        ("redis+sentinel://h1/svc/x", "bad database number"),
        ("redis+sentinel://h1/svc/0/extra", "too many path parts"),
        ("redis+sentinel://h1/svc?sentinel_pasword=x", "unknown option 'sentinel_pasword'"),
        ("http://h1:6379", "expected redis://"),
        ("localhost:6379", "expected redis://"),
    ],
)
def test_bad_urls_name_the_problem(url: str, problem: str) -> None:
    found = check_url(url)
    assert found is not None and problem in found


def test_plain_urls_pass_the_check() -> None:
    for url in ("redis://localhost:6379/0", "rediss://:pw@h:6380", "unix:///run/redis.sock"):
        assert check_url(url) is None


def test_passwords_never_appear_in_messages() -> None:
    url = "redis+sentinel://u:topsecret@h1:x/svc?sentinel_password=alsosecret"
    message = check_url(url)
    assert message is not None and "topsecret" not in message
    assert "topsecret" not in redact(url) and "alsosecret" not in redact(url)
    assert redact("redis://:pw@h:1/0") == "redis://:****@h:1/0"


def test_the_wait_defaults_to_one_replica_behind_sentinel_only() -> None:
    assert resolve_wait_replicas(None, "redis+sentinel://h/svc") == 1
    assert resolve_wait_replicas(None, "redis://h") == 0
    assert resolve_wait_replicas(2, "redis://h") == 2
    assert resolve_wait_replicas(0, "redis+sentinel://h/svc") == 0


def test_the_config_check_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"redis_url: .*no service name"):
        load(overrides={"redis_url": "redis+sentinel://h1"}, env={})
    with pytest.raises(ConfigError, match=r"cluster\.ledger_wait_timeout"):
        load(overrides={"redis_url": "redis://h", "cluster.ledger_wait_timeout": 5}, env={})
    with pytest.raises(ConfigError, match=r"cluster\.ledger_wait_replicas"):
        load(overrides={"cluster.ledger_wait_replicas": -1}, env={})
    config = load(env={"SWITCHBOARD_REDIS_URL": "redis+sentinel://h1,h2/svc", "SWITCHBOARD_CLUSTER_LEDGER_WAIT_REPLICAS": "2"})
    assert config.redis_url == "redis+sentinel://h1,h2/svc" and config.cluster.ledger_wait_replicas == 2


class FakePipe:
    def __init__(self) -> None:
        self.commands: list[tuple[Any, ...]] = []

    def execute_command(self, *args: Any) -> None:
        self.commands.append(args)


def role(replicas: int) -> list[Any]:
    return ["master", 100, [["127.0.0.1", str(7000 + i), "100"] for i in range(replicas)]]


def test_replica_wait_waits_for_what_is_connected() -> None:
    wait = ReplicaWait(2, 0.5)
    pipe = FakePipe()
    assert wait.add(pipe) == 2 and pipe.commands == [("WAIT", 2, 500), ("ROLE",)]
    wait.check(["script", 2, role(2)], 2, "t")  # both acknowledged
    with pytest.raises(BackendUnavailable, match="1 of 2"):
        wait.check(["script", 1, role(2)], 2, "t")  # one is connected but silent
    wait.check(["script", 1, role(1)], 2, "t")  # one left during the wait: one is all there is
    assert wait.connected == 1 and wait.target() == 1
    with pytest.raises(BackendUnavailable, match="0 of 1"):
        wait.check(["script", 0, role(1)], 2, "t")


def test_replica_wait_without_replicas_does_not_wait() -> None:
    wait = ReplicaWait(1, 0.5)
    wait.check(["script", 0, role(0)], 2, "t")  # the first write learns there is none
    pipe = FakePipe()
    assert wait.add(pipe) == 1 and pipe.commands == [("ROLE",)]
    replies: list[Any] = ["script", role(0)]
    wait.check(replies, 1, "t")
    assert replies == ["script"] and wait.unreplicated == 2
    wait.check(["script", role(1)], 1, "t")  # a replica is back: the next write waits for it
    assert wait.target() == 1


def test_replica_wait_refuses_a_demoted_primary() -> None:
    with pytest.raises(BackendUnavailable, match="not the primary"):
        ReplicaWait(1, 0.5).check(["script", 0, ["slave", "127.0.0.1", 6379, "connected", 10]], 2, "t")


def test_config_show_masks_the_redis_passwords() -> None:
    from signaling.core.settings import effective

    config = load(env={"SWITCHBOARD_REDIS_URL": "redis+sentinel://:secret@h1/svc?sentinel_password=other"})
    shown = effective(config)["redis_url"]
    assert "secret" not in shown and "other" not in shown and shown.startswith("redis+sentinel://:****@h1/svc")
