"""Outbound webhooks: signed JSON POSTs telling an operator's service what happens in rooms.

    sender = WebhookSender(["https://hooks.example.org/switchboard"], secret, node="node-1")
    sender.start()                      # inside the running loop
    sender.participant_joined("demo", peer="p_1", name="alice", session="s_1")
    ...
    await sender.close(deadline=5.0)    # flush within 5 s, then cancel

Shape, after the house rules: ``emit()`` never blocks and never raises for delivery trouble; it
puts the event in one bounded queue (full → ``False`` and a counted drop). One worker task, owned
by the sender, posts the events in order; each event goes to every URL concurrently (subtasks of
the worker, awaited before the next event), with retries on network errors, timeouts, 5xx and 429,
exponential backoff with jitter, and no retry on any other 4xx. ``close()`` has a deadline.

Each request carries the raw JSON body ``{"id", "event", "created_at", "node", ...payload}`` and:

- ``X-Switchboard-Event``: the event name;
- ``X-Switchboard-Delivery``: the event id (the same on every retry and every URL: dedupe on it);
- ``X-Switchboard-Signature``: ``sha256=<hex HMAC-SHA256(secret, raw body)>``.

Receivers check the signature with :func:`verify_signature` over the raw bytes, before parsing.
The payload of every event is documented in docs/admin-api.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from signaling.core.errors import PeerError
from signaling.runtime.tasks import OwnerKind, adopt

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Switchboard-Signature"
EVENT_HEADER = "X-Switchboard-Event"
DELIVERY_HEADER = "X-Switchboard-Delivery"

#: Every event a sender accepts.
EVENTS = frozenset({
    "room_started",
    "room_finished",
    "participant_joined",
    "participant_left",
    "participant_connection_lost",
    "track_published",
    "track_unpublished",
    "recording_finished",
})

#: Envelope fields; a payload may not override them.
RESERVED = frozenset({"id", "event", "created_at", "node"})


def sign(secret: str, body: bytes) -> str:
    """The ``X-Switchboard-Signature`` value of ``body``: ``sha256=<hex HMAC-SHA256>``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """True when ``header`` is the signature of the raw ``body`` under ``secret`` (constant time)."""
    if not header:
        return False
    expected = sign(secret, body).encode()
    try:
        given = header.strip().encode("ascii")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(expected, given)


@dataclass(slots=True)
class WebhookStats:
    """Counters of one sender (per event and URL, except ``dropped`` and ``abandoned``)."""

    #: Events accepted by ``emit()``.
    queued: int = 0
    #: Events refused by ``emit()``: queue full, or the sender is closing.
    dropped: int = 0
    #: Deliveries a receiver answered with 2xx.
    delivered: int = 0
    #: Attempts after the first one.
    retries: int = 0
    #: Deliveries given up: a non-retryable answer (4xx other than 429, 3xx) or attempts exhausted.
    failed: int = 0
    #: Events still queued or in flight when ``close()`` ran out of time.
    abandoned: int = 0


@dataclass(frozen=True, slots=True)
class _Event:
    id: str
    event: str
    body: bytes


class _Retry(PeerError):
    """An attempt failed in a way worth retrying; ``after`` is a server-imposed minimum delay."""

    def __init__(self, why: str, after: float | None = None) -> None:
        super().__init__(why)
        self.after = after


class WebhookSender:
    def __init__(
        self,
        urls: list[str],
        secret: str,
        *,
        node: str = "",
        queue_size: int = 1000,
        max_attempts: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        timeout: float = 10.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secret:
            raise ValueError("a webhook secret is required")
        for url in urls:
            if URL(url).scheme not in ("http", "https"):
                raise ValueError(f"webhook URL must be http(s): {_redact(url)}")
        if queue_size < 1 or max_attempts < 1:
            raise ValueError("queue_size and max_attempts must be at least 1")
        self.urls = list(urls)
        self.node = node
        self.queue_size = queue_size
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.timeout = timeout
        self.stats = WebhookStats()
        self._secret = secret
        self._rng = rng or random.Random()
        self._clock = clock
        # One slot more than the bound: the stop marker always fits.
        self._queue: asyncio.Queue[_Event | None] = asyncio.Queue(maxsize=queue_size + 1)
        self._worker: asyncio.Task[None] | None = None
        self._closing = False
        self._in_flight = 0

    def __repr__(self) -> str:  # never show the secret
        return f"<WebhookSender urls={len(self.urls)} queued={self._queue.qsize()} closing={self._closing}>"

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker; call from inside the running loop, once."""
        if self._worker is not None or self._closing:
            raise RuntimeError("WebhookSender.start() called twice or after close()")
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="webhooks")
        adopt(self._worker, OwnerKind.WEBHOOKS, "node:webhooks")

    async def close(self, deadline: float) -> None:
        """Stop taking events, deliver what is queued within ``deadline`` seconds, then cancel.

        Idempotent. Events not delivered in time are counted in ``stats.abandoned``.
        """
        if not self._closing:
            self._closing = True
            self._queue.put_nowait(None)
        worker = self._worker
        if worker is None:
            self.stats.abandoned += self._drain_queue()
            return
        try:
            await asyncio.wait({worker}, timeout=deadline)
        finally:
            # Also when close() itself is cancelled: the worker never outlives its owner.
            if not worker.done():
                worker.cancel()
                await asyncio.wait({worker})
                left = self._drain_queue() + self._in_flight
                self._in_flight = 0
                self.stats.abandoned += left
                log.warning("webhooks: closed after %.1fs with %d events undelivered", deadline, left)

    def _drain_queue(self) -> int:
        """Empty the queue; the number of events (not stop markers) it held."""
        left = 0
        while not self._queue.empty():
            if self._queue.get_nowait() is not None:
                left += 1
        return left

    # -- emitting -----------------------------------------------------------------------------

    def emit(self, event: str, payload: Mapping[str, Any]) -> bool:
        """Queue ``event`` without blocking; False (and a counted drop) when full or closing.

        Raises ValueError for an unknown event or a payload that overrides the envelope, and
        TypeError for a payload that is not JSON: those are bugs of the caller. A payload that
        JSON can carry but RFC 8259 cannot (NaN, a lone surrogate) is dropped and logged.
        """
        if event not in EVENTS:
            raise ValueError(f"unknown webhook event {event!r}")
        clash = RESERVED.intersection(payload)
        if clash:
            raise ValueError(f"payload overrides envelope fields: {sorted(clash)}")
        if self._closing or self._queue.qsize() >= self.queue_size:
            self.stats.dropped += 1
            if self.stats.dropped == 1 or self.stats.dropped % 100 == 0:
                log.warning("webhooks: queue full or closing, %d events dropped so far", self.stats.dropped)
            return False
        event_id = f"evt_{uuid.uuid4().hex}"
        envelope = {"id": event_id, "event": event, "created_at": round(self._clock(), 3), "node": self.node, **payload}
        try:
            body = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
        except (ValueError, UnicodeEncodeError) as exc:
            # NaN or a lone surrogate (a value the protocol never lets in): this one event is
            # dropped, logged and counted; the caller (ending a session, say) goes on.
            self.stats.dropped += 1
            log.error("webhooks: %s event not sent, payload is not strict JSON: %s", event, exc)
            return False
        self._queue.put_nowait(_Event(event_id, event, body))
        self.stats.queued += 1
        return True

    # Typed shortcuts: one place that fixes the payload of each event (docs/admin-api.md).

    def room_started(self, room: str) -> bool:
        return self.emit("room_started", {"room": room})

    def room_finished(self, room: str) -> bool:
        return self.emit("room_finished", {"room": room})

    def participant_joined(self, room: str, *, peer: str, name: str, session: str, identity: str = "") -> bool:
        return self.emit("participant_joined", {"room": room, "participant": _participant(peer, name, session, identity)})

    def participant_left(
        self, room: str, *, peer: str, name: str, session: str, reason: str, identity: str = ""
    ) -> bool:
        return self.emit(
            "participant_left",
            {"room": room, "participant": _participant(peer, name, session, identity), "reason": reason},
        )

    def participant_connection_lost(
        self, room: str, *, peer: str, name: str, session: str, grace_period: float, identity: str = ""
    ) -> bool:
        return self.emit(
            "participant_connection_lost",
            {
                "room": room,
                "participant": _participant(peer, name, session, identity),
                "grace_period_ms": round(grace_period * 1000),
            },
        )

    def track_published(self, room: str, *, track_id: str, peer: str, kind: str) -> bool:
        return self.emit("track_published", {"room": room, "track": {"id": track_id, "peer": peer, "kind": kind}})

    def track_unpublished(self, room: str, *, track_id: str, peer: str, kind: str) -> bool:
        return self.emit("track_unpublished", {"room": room, "track": {"id": track_id, "peer": peer, "kind": kind}})

    def recording_finished(self, recording: Mapping[str, Any]) -> bool:
        """A recording file was closed (stopped, its publisher left, or dropped with an error)."""
        keys = ("id", "participant", "tracks", "file", "container", "state", "error", "duration", "bytes",
                "started_at", "stopped_at")
        return self.emit("recording_finished", {"room": recording.get("room"), "recording": {
            k: recording.get(k) for k in keys}})

    # -- the worker ---------------------------------------------------------------------------

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                item = await self._queue.get()
                if item is None:
                    return
                self._in_flight = 1
                try:
                    await asyncio.gather(*(self._deliver(http, url, item) for url in self.urls))
                except Exception:
                    # A bug of ours must cost one event, not every later one.
                    self.stats.failed += 1
                    log.exception("webhooks: delivering %s %s failed", item.event, item.id)
                self._in_flight = 0

    def backoff(self, attempt: int) -> float:
        """Delay before attempt ``attempt + 1`` (attempt ≥ 1): capped exponential, equal jitter."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2.0 ** min(attempt - 1, 62))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    async def _deliver(self, http: aiohttp.ClientSession, url: str, event: _Event) -> None:
        """Post one event to one URL until it is accepted, refused, or out of attempts."""
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: event.event,
            DELIVERY_HEADER: event.id,
            SIGNATURE_HEADER: sign(self._secret, event.body),
            "User-Agent": "switchboard-webhooks",
        }
        for attempt in range(1, self.max_attempts + 1):
            if attempt > 1:
                self.stats.retries += 1
            try:
                async with http.post(url, data=event.body, headers=headers, allow_redirects=False) as response:
                    status = response.status
                    retry_after = _retry_after(response.headers.get("Retry-After"))
                    await response.read()
                if 200 <= status < 300:
                    self.stats.delivered += 1
                    return
                if status >= 500 or status == 429:
                    raise _Retry(f"HTTP {status}", retry_after if status == 429 else None)
                self.stats.failed += 1
                log.warning("webhooks: %s refused %s %s with HTTP %d; not retried", _redact(url), event.event, event.id, status)
                return
            except (_Retry, aiohttp.ClientError, OSError, TimeoutError) as exc:
                why = str(exc) or type(exc).__name__
                if attempt == self.max_attempts:
                    self.stats.failed += 1
                    log.warning("webhooks: giving up on %s %s to %s after %d attempts: %s",
                                event.event, event.id, _redact(url), attempt, why)
                    return
                delay = self.backoff(attempt)
                if isinstance(exc, _Retry) and exc.after is not None:
                    delay = max(delay, min(exc.after, self.backoff_cap))
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("webhooks: %s %s to %s failed (%s), retry in %.2fs",
                              event.event, event.id, _redact(url), why, delay)
                await asyncio.sleep(delay)


def _participant(peer: str, name: str, session: str, identity: str) -> dict[str, str]:
    return {"peer": peer, "name": name, "session": session, "identity": identity}


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the delta-seconds form only)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _redact(url: str) -> str:
    """A URL fit for logs: no credentials, no query (either may hold a secret)."""
    try:
        u = URL(url)
        return str(u.with_user(None).with_query(None).with_fragment(None))
    except (ValueError, TypeError):
        return "<invalid url>"


__all__ = [
    "DELIVERY_HEADER", "EVENTS", "EVENT_HEADER", "SIGNATURE_HEADER", "WebhookSender", "WebhookStats",
    "sign", "verify_signature",
]
