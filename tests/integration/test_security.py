"""Access tokens, grants, isolation, rate and connection limits, slowloris, fuzzing."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import statistics
import time

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signaling.client import Client
from signaling.core.auth import create_token
from signaling.core.codes import Close, Err
from signaling.core.config import LimitsConfig
from tests.conftest import (
    PATIENCE,
    UNIT,
    UNLIMITED,
    RunningServer,
    ServerFactory,
    eventually,
    make_config,
)
from tests.raw import Raw

KEY = "k" * 40
SECURE = dataclasses.replace(UNLIMITED, token_keys=(("k1", KEY),))


def token(room: str = "room", grants: set[str] | None = None, ttl: int = 600, key: str = KEY, kid: str = "k1", **kw: object) -> str:
    return create_token(key, identity="user", room=room, grants=grants if grants is not None else {"publish", "subscribe", "signal"}, ttl=ttl, kid=kid, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def secure(start_server: ServerFactory) -> RunningServer:
    return await start_server(make_config(security=SECURE))


@pytest.mark.parametrize(
    ("make", "close", "code"),
    [
        (lambda: None, 4001, "unauthorized"),
        (lambda: token(ttl=-60), 4001, "unauthorized"),
        (lambda: token(room="other"), 4003, "forbidden"),
        (lambda: token(key="x" * 40), 4001, "unauthorized"),
        (lambda: token(kid="nope"), 4001, "unauthorized"),
        (lambda: "not.a.jwt", 4001, "unauthorized"),
    ],
)
async def test_bad_tokens_are_refused(secure: RunningServer, make, close: int, code: str) -> None:  # type: ignore[no-untyped-def]
    raw = await Raw.connect(secure.url)
    join: dict[str, object] = {"type": "join", "room": "room"}
    if (t := make()) is not None:
        join["token"] = t
    await raw.send(join)
    assert (await raw.expect("error"))["code"] == code
    assert await raw.closed() == close
    await raw.close()


async def test_sdk_does_not_retry_on_auth_failure(secure: RunningServer) -> None:
    client = Client(secure.url, "room", token=token(room="other"))
    with pytest.raises(Exception, match="could not join") as info:
        await client.connect()
    assert getattr(info.value, "code", None) == 4003
    assert client.close_code == 4003


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_sdk_token_provider_is_asked_on_every_attempt(secure: RunningServer, asynchronous: bool) -> None:
    """A resume presents a fresh token: the provider runs per connection attempt, sync or async."""
    calls: list[str] = []

    def fresh() -> str:
        calls.append("t")
        return token()

    async def fresh_async() -> str:
        return fresh()

    client = Client(secure.url, "room", token_provider=fresh_async if asynchronous else fresh)
    await client.connect()
    try:
        assert calls == ["t"]
        assert secure.hub.disconnect(client.session_id or "")
        async with asyncio.timeout(PATIENCE):
            while client.resumes < 1:
                await client.next_event()
        assert calls == ["t", "t"]
    finally:
        await client.close()


async def test_room_patterns_and_token_name(secure: RunningServer) -> None:
    raw = await Raw.joined(secure.url, "team-blue", "ignored", token=token(room="team-*", name="Ada"))
    bob = await Raw.joined(secure.url, "team-blue", "bob", token=token(room="team-*"))
    assert bob.welcome["peers"] == [{"id": raw.peer, "name": "Ada"}]
    await raw.close()
    await bob.close()


async def test_each_grant_is_enforced(secure: RunningServer) -> None:
    viewer = await Raw.joined(secure.url, "room", "viewer", token=token(grants={"subscribe"}))
    other = await Raw.joined(secure.url, "room", "other", token=token())
    await viewer.expect("peer-joined")
    sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
    for i, message in enumerate(
        [
            {"type": "publish", "sdp": sdp},
            {"type": "unpublish", "track": "t"},
            {"type": "candidate", "target": "publisher", "candidate": None},
            {"type": "signal", "to": other.peer, "data": {}},
        ],
        start=1,
    ):
        await viewer.send({**message, "cseq": i})
        err = await viewer.expect("error")
        assert err["code"] == "forbidden", message
        assert err["cseq"] == i
    assert not viewer.ws.closed
    # nothing reached the other participant
    await other.send({"type": "signal", "to": viewer.peer, "data": "ping", "cseq": 1})
    assert (await viewer.expect("signal"))["data"] == "ping"
    await viewer.close()
    await other.close()


async def test_cross_room_isolation(server: RunningServer) -> None:
    a = await Raw.joined(server.url, "red", "a")
    b = await Raw.joined(server.url, "blue", "b")
    c = await Raw.joined(server.url, "red", "c")
    assert b.welcome["peers"] == []
    assert (await a.expect("peer-joined"))["peer"]["id"] == c.peer
    for target in (a.peer, c.peer):
        await b.send({"type": "signal", "to": target, "data": 1, "cseq": 1 + (target == c.peer)})
        assert (await b.expect("error"))["code"] == "unknown-peer"
    await c.send({"type": "leave"})
    assert (await a.expect("peer-left"))["peer"] == c.peer
    # b heard nothing of red's joins and leaves
    await a.send({"type": "signal", "to": b.peer, "data": 1, "cseq": 1})
    assert (await a.expect("error"))["code"] == "unknown-peer"
    with pytest.raises(TimeoutError):
        await b.recv(timeout=4 * UNIT)
    for raw in (a, b, c):
        await raw.close()


async def relay(sender: Raw, receiver: Raw, count: int, start_cseq: int) -> list[float]:
    """Send ``count`` numbered signals; check each arrives intact and in order; return latencies."""
    out = []
    for i in range(count):
        t0 = time.perf_counter()
        await sender.send({"type": "signal", "to": receiver.peer, "data": start_cseq + i, "cseq": start_cseq + i})
        got = await receiver.expect("signal")
        assert got["data"] == start_cseq + i, got
        out.append(time.perf_counter() - t0)
        if i % 16 == 15:
            await receiver.send({"type": "ack", "seq": receiver.welcome["seq"]})
    return out


async def test_flooder_is_rate_limited_and_others_are_unaffected(start_server: ServerFactory) -> None:
    security = dataclasses.replace(UNLIMITED, message_rate=200.0, message_burst=400.0)
    server = await start_server(make_config(security=security))
    a = await Raw.joined(server.url, "room", "a")
    b = await Raw.joined(server.url, "room", "b")
    await a.expect("peer-joined")
    idle = statistics.median(await relay(a, b, 50, 1))
    flooder = await Raw.joined(server.url, "other", "flood")

    async def flood() -> int:
        sent = 0
        try:
            while not flooder.ws.closed:
                await flooder.send_raw('{"type":"ack","seq":1}')
                sent += 1
                if sent % 50 == 0:
                    await asyncio.sleep(0)
        except ConnectionError:
            pass
        return sent

    flood_task = asyncio.create_task(flood())
    # The bystanders' relay keeps working, exactly, while the flood runs.
    busy = statistics.median(await relay(a, b, 50, 100))
    err = await flooder.expect("error")
    assert err["code"] == "rate-limited"
    assert err["retry_after_ms"] >= 1000
    assert await flooder.closed() == 4008
    await flood_task
    # Latency is reported, never asserted (a timing assertion fails on a loaded machine; the
    # figure is printed for whoever reads the test output).
    print(f"bystander relay median: {idle * 1e3:.2f} ms idle, {busy * 1e3:.2f} ms under flood")
    await relay(a, b, 10, 200)
    for raw in (a, b, flooder):
        await raw.close()


async def test_slowloris_is_closed_and_does_not_block_real_clients(start_server: ServerFactory) -> None:
    server = await start_server(make_config(limits=LimitsConfig(join_timeout=20 * UNIT, close_timeout=10 * UNIT)))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        idle = await asyncio.gather(*(http.ws_connect(server.url) for _ in range(1000)))
        real = await Raw.joined(server.url, "room", "real")
        assert real.welcome["type"] == "welcome"
        await real.close()
        await eventually(lambda: server.hub.connection_count == 0, timeout=PATIENCE * 2)
        assert all(ws.closed or ws.close_code is None for ws in idle)
        for ws in idle:
            await ws.close()


async def test_origin_allow_list_and_per_ip_limits(start_server: ServerFactory) -> None:
    security = dataclasses.replace(UNLIMITED, allowed_origins=("https://app.example",), max_connections_per_ip=3)
    server = await start_server(make_config(security=security))
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(server.url, origin="https://evil.example")
        assert info.value.status == 403
        ok = [await http.ws_connect(server.url, origin="https://app.example") for _ in range(2)]
        ok.append(await http.ws_connect(server.url))  # no Origin: not a browser
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(server.url)
        assert info.value.status == 429
        await ok.pop().close()
        await eventually(lambda: server.hub.connection_count == 2)
        ok.append(await http.ws_connect(server.url))
        for ws in ok:
            await ws.close()


async def test_connection_rate_per_ip(start_server: ServerFactory) -> None:
    security = dataclasses.replace(UNLIMITED, connection_rate_per_ip=1.0, connection_burst_per_ip=5.0)
    server = await start_server(make_config(security=security))
    statuses = []
    async with aiohttp.ClientSession() as http:
        for _ in range(8):
            try:
                ws = await http.ws_connect(server.url)
                statuses.append(101)
                await ws.close()
            except aiohttp.WSServerHandshakeError as exc:
                statuses.append(exc.status)
    assert statuses[:5] == [101] * 5
    assert 429 in statuses[5:]


async def test_hostile_sdp_and_candidates_never_reach_the_sfu(server: RunningServer) -> None:
    raw = await Raw.joined(server.url, "room", "a")
    cases = [
        {"type": "publish", "sdp": "hello"},
        {"type": "publish", "sdp": "v=0\r\n" + "a=x\r\n" * 5000},
        {"type": "publish", "sdp": "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\n"},
        {"type": "subscriber-answer", "sdp": "v=0\r\nbogus line\r\n"},
        {"type": "candidate", "target": "publisher", "candidate": {"candidate": "candidate:x 1 udp 1 ; rm -rf / 1 typ host"}},
        {"type": "candidate", "target": "publisher", "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 99999 typ host"}},
    ]
    for i, message in enumerate(cases, 1):
        await raw.send({**message, "cseq": i})
        err = await raw.expect("error")
        assert err["code"] == "bad-sdp", (message, err)
    await raw.close()


CLIENT_TYPES = ["join", "signal", "ack", "pong", "leave", "publish", "subscriber-answer", "candidate", "unpublish", "bogus"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(["to", "data", "cseq", "seq", "t", "sdp", "room", "candidate", "target", "track", "x"]), c, max_size=4),
    max_leaves=10,
)
fuzz_message = st.builds(lambda kind, body: {"type": kind, **body} if isinstance(body, dict) else body,
                         st.sampled_from(CLIENT_TYPES), st.dictionaries(st.sampled_from(["to", "data", "cseq", "seq", "t", "sdp", "room", "name", "candidate", "target", "track", "resume"]), json_values, max_size=5) | json_values)


async def fuzz_once(url: str, messages: list[object]) -> None:
    known_errors = {e.code for e in Err.all()}
    known_closes = {c.code for c in Close.all()}
    raw = await Raw.joined(url, "fuzz", "f")
    try:
        for message in messages:
            await raw.send_raw(json.dumps(message))
        # A sentinel whose error marks the end of the replies (unless the fuzz ended the session).
        await raw.send({"type": "signal", "to": raw.peer, "data": "end", "cseq": 2**53 - 1})
        while True:
            try:
                reply = await raw.recv(timeout=20 * UNIT)
            except TimeoutError:
                break
            except ConnectionError:
                assert raw.ws.close_code in known_closes
                # 1000 says "done, do not reconnect": only ever after a leave.
                assert raw.ws.close_code != 1000 or any(isinstance(m, dict) and m.get("type") == "leave" for m in messages)
                break
            if reply["type"] == "error":
                assert reply["code"] in known_errors
                if reply["code"] == "self-target" and reply.get("cseq") == 2**53 - 1:
                    break
    finally:
        await raw.close()


async def _fuzz(server: RunningServer, examples: int) -> None:
    """Hypothesis draws the message sequences; each runs against the live server in turn.

    (Drawing first and running after keeps hypothesis out of the event loop.)
    """
    baseline = len(asyncio.all_tasks())
    baseline_hub_tasks = server.hub.task_count

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(messages=st.lists(fuzz_message, min_size=1, max_size=6))
    def property_(messages: list[object]) -> None:
        pending.append(messages)

    pending: list[list[object]] = []
    property_()
    for messages in pending:
        await fuzz_once(server.url, messages)
    await eventually(lambda: server.hub.connection_count == 0 and server.hub.task_count == baseline_hub_tasks)
    await eventually(lambda: len(asyncio.all_tasks()) <= baseline + 1)


async def test_fuzz_client_messages_small(server: RunningServer) -> None:
    await _fuzz(server, 150)


@pytest.mark.slow
@pytest.mark.timeout(3600)
async def test_fuzz_client_messages_nightly(server: RunningServer) -> None:
    await _fuzz(server, 10_000)
