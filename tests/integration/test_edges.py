"""Regressions of the robustness review (issue 14): what one client sends never hurts another.

Every test here failed on the code before the fix it names: lone surrogates and non-JSON numbers
got relayed (the receiver's writer died, or a browser could not parse the frame), an unexpected
exception closed with 1000, a resume outlived its access token, names carried control and bidi
characters, the admin API gave 500 for a non-ASCII header and let tokens be guessed at full speed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import struct
from typing import Any

import aiohttp
import pytest

from signaling.backend import MemoryBackend
from signaling.client import Client
from signaling.core.auth import create_token
from signaling.server.app import ACCEPTED, ADMIN_APP, listener, make_runner
from signaling.server.webhooks import WebhookSender
from tests.conftest import UNIT, UNLIMITED, RunningServer, ServerFactory, eventually, make_config
from tests.raw import Raw

KEY = "k" * 40
SECURE = dataclasses.replace(UNLIMITED, token_keys=(("k1", KEY),))


def token(ttl: int = 600, room: str = "room") -> str:
    return create_token(KEY, identity="user", room=room, ttl=ttl)


async def pair(url: str, room: str = "room") -> tuple[Raw, Raw]:
    a = await Raw.joined(url, room, "a")
    b = await Raw.joined(url, room, "b")
    await a.expect("peer-joined")
    return a, b


async def still_relays(sender: Raw, receiver: Raw, cseq: int, data: Any = "still here") -> None:
    await sender.send({"type": "signal", "to": receiver.peer, "data": data, "cseq": cseq})
    got = await receiver.expect("signal")
    assert got["data"] == data


# -- finding 1: lone surrogates ----------------------------------------------------------------


@pytest.mark.parametrize("data", ['"\\ud800"', '{"k\\udfff":1}', '["ok","\\udbff\\u0041"]'])
async def test_lone_surrogate_in_signal_is_bad_json_and_the_receiver_lives(server: RunningServer, data: str) -> None:
    a, b = await pair(server.url)
    await a.send_raw(f'{{"type":"signal","to":"{b.peer}","data":{data},"cseq":1}}')
    assert (await a.expect("error"))["code"] == "bad-json"
    await still_relays(a, b, 2)
    # A valid pair (an emoji) is fine.
    await a.send_raw(f'{{"type":"signal","to":"{b.peer}","data":"\\ud83d\\ude00","cseq":3}}')
    assert (await b.expect("signal"))["data"] == "\U0001f600"
    await a.close()
    await b.close()


async def test_lone_surrogate_in_name_or_resume_token_is_refused(server: RunningServer) -> None:
    a, b = await pair(server.url)
    bad = await Raw.connect(server.url)
    await bad.send_raw('{"type":"join","room":"room","name":"x\\ud800"}')
    assert (await bad.expect("error"))["code"] == "bad-json"
    await bad.send_raw('{"type":"join","room":"room","resume":{"session":"s_x","token":"\\udc00","last_seq":0}}')
    assert (await bad.expect("error"))["code"] == "bad-json"
    assert not bad.ws.closed  # not 1000, not anything: the connection may still join
    await bad.send({"type": "join", "room": "room", "name": "fine"})
    assert (await bad.expect("welcome"))["peers"] == [{"id": a.peer, "name": "a"}, {"id": b.peer, "name": "b"}]
    for member in (a, b):
        assert (await member.expect("peer-joined"))["peer"]["name"] == "fine"
    await still_relays(a, b, 1)
    for raw in (a, b, bad):
        await raw.close()


async def test_an_unwritable_frame_closes_its_connection_with_1011(server: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    """The writer never dies silently: a frame that cannot be written (here: handed to the
    connection directly, as a bug would) fails that connection with 1011 and an error log."""
    a, b = await pair(server.url)
    victim = next(live for live in server.hub.sessions() if live.session.peer_id == b.peer)
    assert victim.conn is not None
    with caplog.at_level(logging.ERROR, logger="signaling.server.connection"):
        victim.conn.send('{"type":"x","data":"\ud800"}')
        assert await b.closed() == 1011
    assert any("unencodable" in r.getMessage() for r in caplog.records)
    # b resumes later; a is untouched:
    c = await Raw.joined(server.url, "room", "c")
    await still_relays(a, c, 1)
    for raw in (a, b, c):
        await raw.close()


def test_webhook_with_unencodable_payload_is_dropped_not_raised() -> None:
    sender = WebhookSender(["http://127.0.0.1:9/hook"], "s" * 32)
    assert sender.participant_joined("room", peer="p_1", name="x\ud800", session="s_1") is False
    assert sender.stats.dropped == 1
    assert sender.participant_joined("room", peer="p_1", name="ok", session="s_1") is True


# -- finding 2: NaN, Infinity, huge numbers, deep nesting --------------------------------------


@pytest.mark.parametrize("data", ["NaN", "Infinity", "-Infinity", "1e400", "[" * 40 + "]" * 40, "1" * 30])
async def test_non_json_numbers_and_deep_nesting_are_bad_json(server: RunningServer, data: str) -> None:
    a, b = await pair(server.url)
    await a.send_raw(f'{{"type":"signal","to":"{b.peer}","data":{data},"cseq":1}}')
    assert (await a.expect("error"))["code"] == "bad-json"
    await still_relays(a, b, 2, data=[1e300, -(10**20), [[["ok"]]]])
    await a.close()
    await b.close()


async def test_nan_pong_never_makes_a_nan_rtt(server: RunningServer) -> None:
    a = await Raw.joined(server.url, "room", "a")
    await a.send_raw('{"type":"pong","t":NaN}')
    assert (await a.expect("error"))["code"] == "bad-json"
    async with aiohttp.ClientSession() as http, http.get(f"{server.http_url}/metrics") as response:
        text = await response.text()
    assert "nan" not in text.lower().replace("nanoseconds", "")
    await a.close()


# -- finding 10: unexpected exceptions, names, admin -----------------------------------------------


class _BuggyBackend(MemoryBackend):
    """A backend with a bug: relaying ``"boom"`` raises something nobody expects."""

    async def send(self, peer_id: str, message: dict[str, Any], **kwargs: Any) -> bool:
        if message.get("data") == "boom":
            raise KeyError("a bug")
        return await super().send(peer_id, message, **kwargs)


async def test_an_unexpected_exception_closes_1011_not_1000_and_logs_once(
    start_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server(backend=_BuggyBackend())
    a, b = await pair(server.url)
    with caplog.at_level(logging.ERROR):
        await a.send({"type": "signal", "to": b.peer, "data": "boom", "cseq": 1})
        assert await a.closed() == 1011
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
    # The client resumes; the other peer never noticed.
    resumed = await Raw.connect(server.url)
    await resumed.send({"type": "join", "room": "room",
                        "resume": {"session": a.welcome["session"], "token": a.welcome["resume_token"], "last_seq": 2}})
    resumed.welcome = await resumed.expect("welcome")
    assert resumed.welcome["resumed"] is True
    await still_relays(b, resumed, 1)
    for raw in (a, b, resumed):
        await raw.close()


@pytest.mark.parametrize("name", ["a\x00b", "line\nbreak", "tab\there", "\x1b[31mred", "abc\u202egnp.exe", "x\u2066y", "\x85", "a\u200fb"])
async def test_control_and_bidi_characters_in_names_are_refused(server: RunningServer, name: str) -> None:
    raw = await Raw.connect(server.url)
    await raw.send({"type": "join", "room": "room", "name": name})
    error = await raw.expect("error")
    assert error["code"] == "bad-message", error
    await raw.send({"type": "join", "room": "room", "name": "Zoë 🎉 [/] <b>"})
    assert (await raw.expect("welcome"))["type"] == "welcome"
    await raw.close()


@pytest.mark.parametrize("room", ["a\u202eb", "a\x00", "a\nb"])
async def test_control_and_bidi_characters_in_rooms_are_refused(server: RunningServer, room: str) -> None:
    raw = await Raw.connect(server.url)
    await raw.send({"type": "join", "room": room})
    assert (await raw.expect("error"))["code"] == "bad-message"
    await raw.close()


async def _raw_http(port: int, head: bytes) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        await writer.drain()
        status = await reader.readline()
        return int(status.split()[1])
    finally:
        writer.close()
        await writer.wait_closed()


async def test_non_ascii_authorization_on_admin_is_401(start_server: ServerFactory) -> None:
    server = await start_server(make_config(admin_token="t" * 32))
    port = int(server.http_url.rsplit(":", 1)[1])
    for value in (b"Bearer \xff\xfe\xfd", "Bearer Zoë".encode(), b"\xc3\x28"):
        head = b"GET /admin/info HTTP/1.1\r\nHost: x\r\nAuthorization: " + value + b"\r\nConnection: close\r\n\r\n"
        assert await _raw_http(port, head) == 401


async def test_wrong_admin_tokens_are_throttled_per_address(start_server: ServerFactory) -> None:
    security = dataclasses.replace(UNLIMITED, admin_failure_rate=0.01, admin_failure_burst=5)
    server = await start_server(make_config(admin_token="t" * 32, security=security))
    statuses = []
    async with aiohttp.ClientSession() as http:
        for i in range(12):
            async with http.get(f"{server.http_url}/admin/info", headers={"Authorization": f"Bearer guess{i}"}) as r:
                statuses.append(r.status)
        # Blocked means blocked: the right token waits too, so guessing gains nothing.
        async with http.get(f"{server.http_url}/admin/info", headers={"Authorization": "Bearer " + "t" * 32}) as r:
            assert r.status == 429
            assert int(r.headers["Retry-After"]) >= 1
    assert statuses[:5] == [401] * 5
    assert set(statuses[5:]) == {429}


async def test_admin_and_metrics_on_their_own_listener(start_server: ServerFactory) -> None:
    config = make_config(admin_token="t" * 32, admin_port=0,
                         security=dataclasses.replace(UNLIMITED, metrics_token="m" * 32))
    server = await start_server(config)
    runner = make_runner(server.app[ADMIN_APP], config, shutdown_timeout=UNIT)
    await runner.setup()
    try:
        await listener(runner, config, "127.0.0.1", 0).start()
        admin_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        auth = {"Authorization": "Bearer " + "t" * 32}
        async with aiohttp.ClientSession() as http:
            for path in ("/admin/info", "/metrics"):
                async with http.get(server.http_url + path, headers=auth) as r:
                    assert r.status == 404, path  # not where clients connect
            async with http.get(admin_url + "/admin/info", headers=auth) as r:
                assert r.status == 200
            async with http.get(admin_url + "/metrics") as r:
                assert r.status == 401
            async with http.get(admin_url + "/metrics", headers={"Authorization": "Bearer " + "m" * 32}) as r:
                assert r.status == 200
                assert "switchboard_sessions" in await r.text()
    finally:
        await runner.cleanup()


async def test_metrics_token_on_the_main_listener(start_server: ServerFactory) -> None:
    server = await start_server(make_config(security=dataclasses.replace(UNLIMITED, metrics_token="m" * 32)))
    async with aiohttp.ClientSession() as http:
        async with http.get(server.http_url + "/metrics") as r:
            assert r.status == 401
        async with http.get(server.http_url + "/metrics", headers={"Authorization": "Bearer " + "m" * 32}) as r:
            assert r.status == 200


async def test_connection_reset_during_upgrade_logs_no_error(server: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    """150 clients send an upgrade request and reset at once (RST), all at the same time: before
    the fix each one logged an ERROR traceback ("Call .prepare() first"), anonymous log flooding."""
    port = int(server.http_url.rsplit(":", 1)[1])
    loop = asyncio.get_running_loop()
    head = (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")

    async def reset_after_head() -> None:
        with socket.socket() as sock:
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
            await loop.sock_sendall(sock, head)

    with caplog.at_level(logging.DEBUG):
        await asyncio.gather(*(reset_after_head() for _ in range(150)))
        await eventually(lambda: server.hub.connection_count == 0 and server.app[ACCEPTED].total == 0)
        # One more real client afterwards: its join proves the resets were all handled.
        late = await Raw.joined(server.url, "room", "late")
        await late.close()
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert noisy == [], [r.getMessage() for r in noisy][:3]


# -- finding 7: a session does not outlive its access token ----------------------------------------


async def _resume_join(url: str, first: Raw, **extra: Any) -> Raw:
    again = await Raw.connect(url)
    await again.send({"type": "join", "room": "room", **extra,
                      "resume": {"session": first.welcome["session"], "token": first.welcome["resume_token"], "last_seq": 0}})
    return again


async def test_resume_checks_the_presented_token(start_server: ServerFactory) -> None:
    server = await start_server(make_config(security=SECURE))
    first = await Raw.joined(server.url, "room", "a", token=token())
    await first.close()
    await eventually(lambda: server.hub.connection_count == 0)
    for extra, close, code in (({}, 4001, "unauthorized"), ({"token": token(ttl=-60)}, 4001, "unauthorized"),
                               ({"token": token(room="elsewhere")}, 4003, "forbidden"),
                               ({"token": create_token("x" * 40, identity="user", room="room")}, 4001, "unauthorized")):
        again = await _resume_join(server.url, first, **extra)
        error = await again.expect("error")  # no welcome, so no TURN credentials
        assert error["code"] == code, (extra, error)
        assert await again.closed() == close
        await again.close()
    # The session is still there for a valid (fresh) token.
    fresh = await _resume_join(server.url, first, token=token())
    welcome = await fresh.expect("welcome")
    assert welcome["resumed"] is True and welcome["session"] == first.welcome["session"]
    await fresh.close()


async def test_sdk_sends_a_fresh_token_on_resume(start_server: ServerFactory) -> None:
    server = await start_server(make_config(security=SECURE))
    issued: list[str] = []

    async def provider() -> str:
        issued.append(token(ttl=600 + len(issued)))
        return issued[-1]

    async with Client(server.url, "room", name="a", token=provider) as client:
        assert client.session_id is not None
        assert server.hub.disconnect(client.session_id)
        await eventually(lambda: client.resumes == 1)
    assert len(issued) >= 2  # one for the join, one (fresh) for the resume


async def test_a_token_name_claim_with_bidi_characters_is_refused(start_server: ServerFactory) -> None:
    server = await start_server(make_config(security=SECURE))
    raw = await Raw.connect(server.url)
    await raw.send({"type": "join", "room": "room",
                    "token": create_token(KEY, identity="user", room="room", name="admin\u202egnp.exe")})
    assert (await raw.expect("error"))["code"] == "unauthorized"
    assert await raw.closed() == 4001
    await raw.close()
