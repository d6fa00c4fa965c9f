"""Resumable sessions on a real server: replay, de-duplication, grace period, replacement."""

from __future__ import annotations

import asyncio

import pytest

from signaling.core.config import HeartbeatConfig, LimitsConfig, SessionConfig
from tests.conftest import UNIT, RunningServer, ServerFactory, eventually, make_config
from tests.raw import Raw


def resume_join(raw: Raw, last_seq: int, room: str = "room") -> dict[str, object]:
    w = raw.welcome
    return {"type": "join", "room": room, "resume": {"session": w["session"], "token": w["resume_token"], "last_seq": last_seq}}


async def test_resume_replays_missed_messages_in_order_once(server: RunningServer) -> None:
    alice = await Raw.joined(server.url, "room", "alice")
    bob = await Raw.joined(server.url, "room", "bob")
    await alice.expect("peer-joined")  # seq 2
    await alice.ws.close()
    await eventually(lambda: server.hub.sessions()[0].conn is None)
    for i in range(5):
        await bob.send({"type": "signal", "to": alice.peer, "data": i, "cseq": i + 1})
    await eventually(lambda: server.hub.sessions()[0].session.last_seq == 7)
    again = await Raw.connect(server.url)
    await again.send(resume_join(alice, last_seq=2))
    welcome = await again.expect("welcome")
    assert welcome["resumed"] is True and "seq" not in welcome and welcome["replayed"] == 5
    assert welcome["peer"] == alice.peer
    got = [await again.expect("signal") for _ in range(5)]
    assert [m["seq"] for m in got] == [3, 4, 5, 6, 7]
    assert [m["data"] for m in got] == [0, 1, 2, 3, 4]
    # live traffic continues after the replay, with the next seq
    await bob.send({"type": "signal", "to": alice.peer, "data": "live", "cseq": 6})
    live = await again.expect("signal")
    assert live["seq"] == 8 and live["data"] == "live"
    await again.close()
    await bob.close()
    await alice.close()


async def test_resume_skips_what_the_client_already_has(server: RunningServer) -> None:
    alice = await Raw.joined(server.url, "room", "alice")
    bob = await Raw.joined(server.url, "room", "bob")
    await alice.expect("peer-joined")
    for i in range(3):
        await bob.send({"type": "signal", "to": alice.peer, "data": i, "cseq": i + 1})
    assert [(await alice.expect("signal"))["seq"] for _ in range(3)] == [3, 4, 5]
    await alice.ws.close()
    again = await Raw.connect(server.url)
    await again.send(resume_join(alice, last_seq=4))
    assert (await again.expect("welcome"))["replayed"] == 1
    assert (await again.expect("signal"))["seq"] == 5
    await again.close()
    await bob.close()
    await alice.close()


async def test_client_resend_after_resume_is_deduplicated(server: RunningServer) -> None:
    alice = await Raw.joined(server.url, "room", "alice")
    bob = await Raw.joined(server.url, "room", "bob")
    await alice.expect("peer-joined")
    await alice.send({"type": "signal", "to": bob.peer, "data": "one", "cseq": 1})
    assert (await bob.expect("signal"))["data"] == "one"
    await alice.ws.close()
    again = await Raw.connect(server.url)
    await again.send(resume_join(alice, last_seq=2))
    welcome = await again.expect("welcome")
    assert welcome["last_cseq"] == 1
    # a client that did not see the confirmation resends cseq 1, then sends cseq 2
    await again.send({"type": "signal", "to": bob.peer, "data": "one", "cseq": 1})
    await again.send({"type": "signal", "to": bob.peer, "data": "two", "cseq": 2})
    assert (await bob.expect("signal"))["data"] == "two"
    assert server.metrics.duplicates._value.get() == 1
    await again.close()
    await bob.close()
    await alice.close()


async def test_resume_failures_close_4011(server: RunningServer) -> None:
    alice = await Raw.joined(server.url, "room", "alice")
    cases = [
        {"session": "s_unknown", "token": alice.welcome["resume_token"], "last_seq": 0},
        {"session": alice.welcome["session"], "token": "wrong-token", "last_seq": 0},
        {"session": alice.welcome["session"], "token": alice.welcome["resume_token"], "last_seq": 99},
    ]
    for resume in cases:
        raw = await Raw.connect(server.url)
        await raw.send({"type": "join", "room": "room", "resume": resume})
        assert (await raw.expect("error"))["code"] == "resume-failed"
        assert await raw.closed() == 4011
        await raw.close()
    # the attacked session is untouched
    assert server.hub.sessions()[0].conn is not None
    await alice.close()


async def test_newer_connection_replaces_the_old_one_with_4012(server: RunningServer) -> None:
    alice = await Raw.joined(server.url, "room", "alice")
    newer = await Raw.connect(server.url)
    await newer.send(resume_join(alice, last_seq=1))
    assert (await newer.expect("welcome"))["resumed"] is True
    assert await alice.closed() == 4012
    assert server.hub.session_count == 1
    await newer.close()
    await alice.close()


async def test_grace_period_reconnecting_then_resumed(start_server: ServerFactory) -> None:
    server = await start_server(make_config(session=SessionConfig(grace_period=200 * UNIT, reconnecting_notice_after=4 * UNIT)))
    alice = await Raw.joined(server.url, "room", "alice")
    bob = await Raw.joined(server.url, "room", "bob")
    await alice.expect("peer-joined")
    await bob.ws.close()
    assert (await alice.expect("peer-reconnecting"))["peer"] == bob.peer
    again = await Raw.connect(server.url)
    await again.send(resume_join(bob, last_seq=1))
    await again.expect("welcome")
    assert (await alice.expect("peer-resumed"))["peer"] == bob.peer
    await again.close()
    await alice.close()
    await bob.close()


async def test_short_blip_is_invisible_to_others(start_server: ServerFactory) -> None:
    server = await start_server(make_config(session=SessionConfig(grace_period=400 * UNIT, reconnecting_notice_after=200 * UNIT)))
    alice = await Raw.joined(server.url, "room", "alice")
    bob = await Raw.joined(server.url, "room", "bob")
    await alice.expect("peer-joined")
    await bob.ws.close()
    again = await Raw.connect(server.url)
    await again.send(resume_join(bob, last_seq=1))
    await again.expect("welcome")
    await again.send({"type": "signal", "to": alice.peer, "data": "back", "cseq": 1})
    msg = await alice.recv()
    assert msg["type"] == "signal"  # no peer-reconnecting/peer-left in between
    await again.close()
    await alice.close()
    await bob.close()


async def test_grace_expiry_reports_peer_left_once(start_server: ServerFactory) -> None:
    server = await start_server(make_config(session=SessionConfig(grace_period=10 * UNIT, reconnecting_notice_after=2 * UNIT)))
    alice = await Raw.joined(server.url, "room", "alice")
    bob = await Raw.joined(server.url, "room", "bob")
    await alice.expect("peer-joined")
    await bob.ws.close()
    assert (await alice.expect("peer-reconnecting"))["peer"] == bob.peer
    left = await alice.expect("peer-left")
    assert left["peer"] == bob.peer and left["reason"] == "timeout"
    assert server.hub.session_count == 1
    raw = await Raw.connect(server.url)
    await raw.send(resume_join(bob, last_seq=1))
    assert (await raw.expect("error"))["code"] == "resume-failed"
    assert await raw.closed() == 4011
    await raw.close()
    await alice.close()
    await bob.close()


async def test_leave_ends_the_session_with_1000(server: RunningServer) -> None:
    alice = await Raw.joined(server.url, "room", "alice")
    bob = await Raw.joined(server.url, "room", "bob")
    await alice.expect("peer-joined")
    await bob.send({"type": "leave"})
    assert await bob.closed() == 1000
    left = await alice.expect("peer-left")
    assert left == {"type": "peer-left", "peer": bob.peer, "reason": "left", "seq": 3}
    await alice.close()
    await bob.close()


async def test_silent_client_is_closed_4013(start_server: ServerFactory) -> None:
    server = await start_server(make_config(heartbeat=HeartbeatConfig(interval=2 * UNIT, timeout=6 * UNIT)))
    raw = await Raw.joined(server.url)  # answers no pings
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await raw.closed() == 4013
    assert loop.time() - start >= 6 * UNIT * 0.9
    assert server.metrics.heartbeat_timeouts._value.get() == 1
    await raw.close()


async def test_client_answering_pings_stays(start_server: ServerFactory) -> None:
    server = await start_server(make_config(heartbeat=HeartbeatConfig(interval=2 * UNIT, timeout=6 * UNIT)))
    raw = await Raw.joined(server.url)
    pongs = 0
    async with asyncio.timeout(200 * UNIT):
        while pongs < 10:
            msg = await raw.recv(skip_pings=False)
            if msg["type"] == "ping":
                await raw.send({"type": "pong", "t": msg["t"]})
                pongs += 1
    assert not raw.ws.closed
    await eventually(lambda: server.hub.sessions()[0].rtt is not None)
    await raw.close()


async def test_client_that_does_not_read_is_closed_4009_and_can_resume(start_server: ServerFactory) -> None:
    server = await start_server(
        make_config(
            limits=LimitsConfig(send_queue_size=8, close_timeout=10 * UNIT),
            # Room for what the kernel's socket buffers swallow before our outbox fills.
            session=SessionConfig(replay_max_messages=100_000, replay_max_bytes=256 * 1024 * 1024),
        )
    )
    slow = await Raw.joined(server.url, "room", "slow")
    fast = await Raw.joined(server.url, "room", "fast")
    await slow.expect("peer-joined")
    big = "z" * 30_000
    # The slow client never reads; its socket buffers fill, then the outbox, then 4009.
    cseq = 0
    async with asyncio.timeout(400 * UNIT):
        while server.metrics.send_queue_overflows._value.get() == 0:
            cseq += 1
            await fast.send({"type": "signal", "to": slow.peer, "data": big, "cseq": cseq})
            await asyncio.sleep(0)
    await eventually(lambda: server.hub.sessions()[0].conn is None)
    # The session survived: resume gets everything after what it had (seq 2), in order.
    again = await Raw.connect(server.url)
    await again.send(resume_join(slow, last_seq=2))
    welcome = await again.expect("welcome")
    seqs = [(await again.expect("signal"))["seq"] for _ in range(welcome["replayed"])]
    assert seqs == list(range(3, 3 + welcome["replayed"]))
    await again.close()
    await fast.close()
    await slow.close()


async def test_replay_overflow_is_loud(start_server: ServerFactory) -> None:
    server = await start_server(make_config(session=SessionConfig(replay_max_messages=10, grace_period=200 * UNIT)))
    alice = await Raw.joined(server.url, "room", "alice")
    bob = await Raw.joined(server.url, "room", "bob")
    await alice.expect("peer-joined")
    await alice.ws.close()
    await eventually(lambda: any(live.conn is None for live in server.hub.sessions()))
    for i in range(12):
        await bob.send({"type": "signal", "to": alice.peer, "data": i, "cseq": i + 1})
    left = await bob.expect("peer-left")
    assert left["peer"] == alice.peer and left["reason"] == "replay-overflow"
    raw = await Raw.connect(server.url)
    await raw.send(resume_join(alice, last_seq=2))
    assert (await raw.expect("error"))["code"] == "resume-failed"
    assert await raw.closed() == 4011
    assert server.metrics.replay_overflows._value.get() == 1
    await raw.close()
    await bob.close()
    await alice.close()


async def test_attached_client_that_never_acks_gets_replay_overflow_4011(start_server: ServerFactory) -> None:
    server = await start_server(make_config(session=SessionConfig(replay_max_messages=10)))
    alice = await Raw.joined(server.url, "room", "alice")
    bob = await Raw.joined(server.url, "room", "bob")
    await alice.expect("peer-joined")
    for i in range(12):
        await bob.send({"type": "signal", "to": alice.peer, "data": i, "cseq": i + 1})
    codes = []
    async with asyncio.timeout(200 * UNIT):
        while True:
            msg = await alice.recv()
            codes.append(msg.get("code"))
            if msg["type"] == "error":
                break
    assert codes[-1] == "replay-overflow"
    assert await alice.closed() == 4011
    await alice.close()
    await bob.close()


async def test_sdk_learns_its_rtt_from_pings(start_server: ServerFactory) -> None:
    from signaling.client import Client

    server = await start_server(make_config(heartbeat=HeartbeatConfig(interval=2 * UNIT, timeout=20 * UNIT)))
    async with Client(server.url, "room") as client:
        # first ping measures, a later one carries the measurement
        await eventually(lambda: client.rtt_ms is not None)
        assert client.rtt_ms is not None
        assert 0 <= client.rtt_ms < 1000


async def test_server_echoes_a_client_close_code_and_keeps_the_session(server: RunningServer) -> None:
    """Issue 16: a page closing its socket with 3000 got aiohttp's answer 1000 ("normal": the
    browser SDK reported the session over) while the server kept the session detached for its
    grace period. The server now echoes the client's code, so the SDK resumes (3000 is
    resume-backoff for it) and both sides agree that the session lives."""
    alice = await Raw.joined(server.url, "room", "alice")
    await alice.ws.close(code=3000)
    assert alice.ws.close_code == 3000
    await eventually(lambda: server.hub.sessions()[0].conn is None)
    again = await Raw.connect(server.url)
    await again.send(resume_join(alice, last_seq=1))
    assert (await again.expect("welcome"))["resumed"] is True
    await again.close()
    await alice.close()


async def test_leave_with_linger_can_be_resumed_else_it_is_a_leave(server: RunningServer) -> None:
    """A page that may be reloading says leave {linger_ms}: resumable meanwhile (the others hear
    nothing), reported as left only if nobody resumes it."""
    linger_ms = round(10 * UNIT * 1000)
    alice = await Raw.joined(server.url, "room", "alice")
    bob = await Raw.joined(server.url, "room", "bob")
    await alice.expect("peer-joined")
    await alice.send({"type": "leave", "linger_ms": linger_ms})
    assert await alice.closed() == 1000
    again = await Raw.connect(server.url)
    join = resume_join(alice, last_seq=2)
    join["resume"]["fresh_media"] = True  # type: ignore[index]
    await again.send(join)
    welcome = await again.expect("welcome")
    assert welcome["resumed"] is True and welcome["peer"] == alice.peer
    with pytest.raises(TimeoutError):
        await bob.recv(timeout=1.5 * linger_ms / 1000)  # no peer-left, no peer-reconnecting
    # Without a resume it is a leave, once the linger runs out.
    await again.send({"type": "leave", "linger_ms": linger_ms})
    assert await again.closed() == 1000
    left = await bob.expect("peer-left")
    assert (left["peer"], left["reason"]) == (alice.peer, "left")
    await bob.close()
    await again.close()
    await alice.close()
