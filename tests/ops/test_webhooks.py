"""Webhooks: signed deliveries to a receiver on 127.0.0.1, retries, bounds and the close deadline."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from signaling.server.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    WebhookSender,
    sign,
    verify_signature,
)
from tests.conftest import PATIENCE, UNIT, eventually

SECRET = "whsec-test-0123456789"


@dataclass
class Hit:
    event: str
    delivery: str
    signed: bool
    body: dict[str, Any]
    status: int


@dataclass
class Receiver:
    """A webhook receiver: answers with the scripted statuses in turn (then 200) and checks
    every signature over the raw body, as a real receiver must."""

    url: str = ""
    script: list[int] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    #: When set, requests are held until it is released (a receiver that hangs).
    hold: asyncio.Event | None = None
    #: Drop the connection without an answer for this many requests first.
    hang_ups: int = 0
    retry_after: str | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        if self.hang_ups > 0:
            self.hang_ups -= 1
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        if self.hold is not None:
            await self.hold.wait()
        status = self.script.pop(0) if self.script else 200
        self.hits.append(Hit(
            event=request.headers.get(EVENT_HEADER, ""),
            delivery=request.headers.get(DELIVERY_HEADER, ""),
            signed=verify_signature(SECRET, raw, request.headers.get(SIGNATURE_HEADER)),
            body=json.loads(raw),
            status=status,
        ))
        headers = {"Retry-After": self.retry_after} if self.retry_after and status == 429 else None
        return web.Response(status=status, headers=headers)

    def delivered(self) -> list[Hit]:
        return [h for h in self.hits if 200 <= h.status < 300]



@pytest.fixture
async def receivers() -> AsyncIterator[Callable[..., Any]]:
    runners: list[web.AppRunner] = []
    made: list[Receiver] = []

    async def make(**kwargs: Any) -> Receiver:
        receiver = Receiver(**kwargs)
        app = web.Application()
        app.router.add_post("/hook", receiver.handle)
        runner = web.AppRunner(app, shutdown_timeout=UNIT)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        runners.append(runner)
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        if receiver.hold is not None:
            receiver.hold.set()
    for runner in runners:
        await runner.cleanup()


def sender(*urls: str, **kwargs: Any) -> WebhookSender:
    options: dict[str, Any] = {
        "node": "node-1", "backoff_base": UNIT / 5, "backoff_cap": UNIT, "timeout": PATIENCE,
        "rng": random.Random(1),
    }
    options.update(kwargs)
    return WebhookSender(list(urls), SECRET, **options)


async def test_500_twice_then_200_is_one_delivery(receivers: Callable[..., Any]) -> None:
    rx: Receiver = await receivers(script=[500, 500, 200])
    hooks = sender(rx.url, max_attempts=5)
    hooks.start()
    try:
        assert hooks.participant_joined("demo", peer="p_1", name="alice", session="s_1")
        await eventually(lambda: hooks.stats.delivered == 1, what="the delivery succeeded")
    finally:
        await hooks.close(PATIENCE)
    assert [h.status for h in rx.hits] == [500, 500, 200]
    assert len(rx.delivered()) == 1
    assert all(h.signed for h in rx.hits)
    # One event: the same delivery id on every attempt, so a receiver can dedupe.
    assert len({h.delivery for h in rx.hits}) == 1
    hit = rx.delivered()[0]
    assert hit.event == "participant_joined"
    body = hit.body
    assert body["id"] == hit.delivery and body["event"] == "participant_joined" and body["node"] == "node-1"
    assert isinstance(body["created_at"], float)
    assert body["room"] == "demo"
    assert body["participant"] == {"peer": "p_1", "name": "alice", "session": "s_1", "identity": ""}
    assert hooks.stats.retries == 2 and hooks.stats.failed == 0 and hooks.stats.abandoned == 0


async def test_4xx_is_not_retried_but_429_is(receivers: Callable[..., Any]) -> None:
    refused: Receiver = await receivers(script=[400])
    limited: Receiver = await receivers(script=[429], retry_after="0")
    hooks = sender(refused.url, limited.url)
    hooks.start()
    try:
        hooks.room_started("r")
        await eventually(lambda: hooks.stats.delivered + hooks.stats.failed == 2, what="both answered")
    finally:
        await hooks.close(PATIENCE)
    assert [h.status for h in refused.hits] == [400]
    assert [h.status for h in limited.hits] == [429, 200]
    assert (hooks.stats.delivered, hooks.stats.failed, hooks.stats.retries) == (1, 1, 1)


async def test_network_errors_are_retried(receivers: Callable[..., Any]) -> None:
    rx: Receiver = await receivers(hang_ups=2)
    hooks = sender(rx.url)
    hooks.start()
    try:
        hooks.room_finished("r")
        await eventually(lambda: hooks.stats.delivered == 1, what="delivered after two hang-ups")
    finally:
        await hooks.close(PATIENCE)
    assert [h.status for h in rx.hits] == [200]
    assert hooks.stats.retries == 2


async def test_gives_up_after_max_attempts(receivers: Callable[..., Any]) -> None:
    rx: Receiver = await receivers(script=[503] * 10)
    hooks = sender(rx.url, max_attempts=3)
    hooks.start()
    try:
        hooks.track_published("r", track_id="t1", peer="p_1", kind="video")
        await eventually(lambda: hooks.stats.failed == 1, what="the sender gave up")
    finally:
        await hooks.close(PATIENCE)
    assert [h.status for h in rx.hits] == [503, 503, 503]
    assert hooks.stats.delivered == 0


async def test_queue_overflow_drops_and_counts(receivers: Callable[..., Any]) -> None:
    rx: Receiver = await receivers()
    hooks = sender(rx.url, queue_size=3)
    # Not started yet: nothing drains the queue.
    assert [hooks.room_started(f"r{n}") for n in range(5)] == [True, True, True, False, False]
    assert hooks.stats.dropped == 2 and hooks.stats.queued == 3
    hooks.start()
    await hooks.close(PATIENCE)
    # What was accepted was delivered, in order.
    assert [h.body["room"] for h in rx.hits] == ["r0", "r1", "r2"]
    assert hooks.stats.delivered == 3 and hooks.stats.abandoned == 0
    assert not hooks.room_started("late")
    assert hooks.stats.dropped == 3


async def test_close_respects_its_deadline(receivers: Callable[..., Any]) -> None:
    rx: Receiver = await receivers(hold=asyncio.Event())
    hooks = sender(rx.url, timeout=10 * PATIENCE)
    hooks.start()
    hooks.participant_left("r", peer="p_1", name="a", session="s_1", reason="left")
    hooks.participant_left("r", peer="p_2", name="b", session="s_2", reason="kicked")
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = 4 * UNIT
    async with asyncio.timeout(PATIENCE):
        await hooks.close(deadline)
    elapsed = loop.time() - started
    assert deadline - UNIT / 10 <= elapsed < deadline + 10 * UNIT
    assert hooks.stats.abandoned == 2 and hooks.stats.delivered == 0
    await hooks.close(deadline)  # idempotent
    assert hooks.stats.abandoned == 2


async def test_close_without_start_and_twice() -> None:
    hooks = sender("http://127.0.0.1:9/hook")
    hooks.room_started("r")
    await hooks.close(UNIT)
    await hooks.close(UNIT)
    assert hooks.stats.abandoned == 1


async def test_every_url_gets_every_event(receivers: Callable[..., Any]) -> None:
    a: Receiver = await receivers()
    b: Receiver = await receivers()
    hooks = sender(a.url, b.url)
    hooks.start()
    hooks.participant_connection_lost("r", peer="p_1", name="a", session="s_1", grace_period=20.0)
    hooks.track_unpublished("r", track_id="t1", peer="p_1", kind="audio")
    await hooks.close(PATIENCE)
    for rx in (a, b):
        assert [h.event for h in rx.hits] == ["participant_connection_lost", "track_unpublished"]
        assert rx.hits[0].body["grace_period_ms"] == 20_000
        assert rx.hits[1].body["track"] == {"id": "t1", "peer": "p_1", "kind": "audio"}
    assert a.hits[0].delivery == b.hits[0].delivery


def test_emit_rejects_programming_errors() -> None:
    hooks = sender("http://127.0.0.1:9/hook")
    with pytest.raises(ValueError, match="unknown webhook event"):
        hooks.emit("room_exploded", {})
    with pytest.raises(ValueError, match="envelope"):
        hooks.emit("room_started", {"room": "r", "id": "forged"})
    with pytest.raises(TypeError):
        hooks.emit("room_started", {"room": object()})
    with pytest.raises(ValueError, match="http"):
        WebhookSender(["ftp://example.org/"], SECRET)
    with pytest.raises(ValueError, match="secret"):
        WebhookSender(["https://example.org/"], "")
    assert SECRET not in repr(hooks)


def test_signature_helpers() -> None:
    body = b'{"id":"evt_1","event":"room_started","room":"r"}'
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert sign(SECRET, body) == expected
    assert verify_signature(SECRET, body, expected)
    assert not verify_signature(SECRET, body + b" ", expected)
    assert not verify_signature("other-secret", body, expected)
    assert not verify_signature(SECRET, body, expected.removeprefix("sha256="))
    assert not verify_signature(SECRET, body, None)
    assert not verify_signature(SECRET, body, "")
    assert not verify_signature(SECRET, body, "sha256=é")


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    hooks = WebhookSender(["http://127.0.0.1:9/"], SECRET, backoff_base=1.0, backoff_cap=8.0, rng=random.Random(2))
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0), (500, 8.0)]:
        delay = hooks.backoff(attempt)
        assert ceiling / 2 <= delay <= ceiling
