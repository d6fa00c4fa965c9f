"""Hostile input in every field of every client message, watched from the sessions around it.

Hypothesis draws sequences of client frames whose fields hold lone surrogates, NaN and
Infinity, nesting 1,000 to 3,000 deep, huge integers, control and bidi characters, markup, and
plain garbage text frames. Each sequence runs on a fresh connection (joined first, or starting
with the drawn ``join`` itself, resumes of a neighbour's session included) in room ``fuzz``,
where a **target** pair lives; a **bystander** pair lives in room ``calm``. After every example
both pairs must still relay to each other within a bound, every frame any of them received must
be RFC 8259 JSON (the strict parser the server uses on input), and the fuzzing connection may
only be closed with a close code of the table, never 1000 unless it sent ``leave``.

Runs against the memory backend and against a node on a real redis-server (cluster mode: the
session ledger and inboxes in Redis). CI size: 120 examples per backend; ``-m slow``: 10,000.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from signaling.core.codes import Close, Err
from signaling.core.config import HeartbeatConfig, SessionConfig
from signaling.core.protocol import loads_strict
from tests.backend.conftest import RedisServer, prefix, redis_server
from tests.conftest import UNIT, RunningServer, ServerFactory, eventually, make_config
from tests.raw import Raw

__all__ = ["prefix", "redis_server"]

#: A relay between two healthy peers must arrive within this (a liveness bound, not a benchmark).
RELAY_BOUND = 100 * UNIT
CI_EXAMPLES = int(os.environ.get("SWITCHBOARD_TEST_FUZZ_EXAMPLES", "120"))
SLOW_EXAMPLES = 10_000
TARGET, TARGET_SESSION = "$TARGET", "$TARGET_SESSION"


@dataclass(frozen=True)
class Fragment:
    """JSON text inserted verbatim (what ``json.dumps`` cannot or will not produce)."""

    text: str


def dump(value: Any) -> str:
    """Like ``json.dumps`` (ASCII, so a lone surrogate travels as ``\\udXXX``; NaN as ``NaN``),
    with :class:`Fragment` inserted as is."""
    if isinstance(value, Fragment):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v) for v in value) + "]"
    return json.dumps(value)


# -- strategies ---------------------------------------------------------------------------------

NASTY_CHARS = ["\ud800", "\udfff", "\udbff", "\x00", "\n", "\r", "\t", "\x1b", "\x7f", "\x85", "\x9b", "\u202e",
               "\u202d", "\u2066", "\u2067", "\u2069", "\u200e", "\u200f", "\u061c", "\ufeff", "\U0001f600",
               "[/]", "[bold]", "\\", '"', "</script>", "%s", "\u0301"]
hostile_text = st.one_of(
    st.text(max_size=12),
    st.lists(st.sampled_from(NASTY_CHARS) | st.text(max_size=3), max_size=6).map("".join),
    st.text(st.characters(categories=["Cs", "Cc", "Cf", "Zl", "Zp"]), max_size=6),
)
huge_ints = st.integers(min_value=-(10**40), max_value=10**40) | st.sampled_from([2**53, 2**63, -(2**63) - 1, 10**21, 10**22])
non_json_numbers = st.sampled_from([math.nan, math.inf, -math.inf]) | st.sampled_from(
    [Fragment("1e400"), Fragment("-1e999"), Fragment("1" * 25), Fragment("1" * 5000)])
deep = st.integers(min_value=1000, max_value=3000).flatmap(
    lambda n: st.sampled_from([Fragment("[" * n + "]" * n), Fragment('{"a":' * n + "1" + "}" * n),
                               Fragment("[" * n)]))
scalars = st.none() | st.booleans() | huge_ints | st.floats(allow_nan=False) | non_json_numbers | hostile_text
hostile = st.recursive(
    scalars | deep,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text, inner, max_size=3),
    max_leaves=8,
)


def field(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a plausible value, often a hostile one: deep checks need the rest to pass."""
    return st.one_of(valid, valid, hostile)


cseqs = field(st.integers(min_value=1, max_value=10**6))
name = field(hostile_text)
sdp = field(st.sampled_from(["v=0\r\n", "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"]) | hostile_text.map(lambda t: "v=0\r\n" + t))
candidate_init = st.fixed_dictionaries(
    {"candidate": field(st.just("candidate:1 1 udp 1 127.0.0.1 9 typ host") | hostile_text)},
    optional={"sdpMid": field(st.just("0")), "sdpMLineIndex": field(st.integers(0, 3)), "usernameFragment": name},
)


def message(kind: str, required: dict[str, Any], optional: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    base = st.fixed_dictionaries({"type": st.just(kind), **required}, optional=optional or {})
    # Sometimes an extra field, or a field of another message type, is thrown in.
    return st.one_of(base, base, st.tuples(base, hostile_text, hostile).map(lambda t: {**t[0], t[1]: t[2]}))


resume = st.fixed_dictionaries({
    "session": field(st.just(TARGET_SESSION) | st.text(max_size=8)),
    "token": field(st.text(max_size=8)),
    "last_seq": field(st.integers(0, 5)),
})
join = message("join", {"room": field(st.just("fuzz"))},
               {"name": name, "token": field(st.text(max_size=12)), "subscribe": field(st.booleans()), "resume": resume})
client_messages = st.one_of(
    join,
    message("signal", {"to": field(st.just(TARGET)), "data": hostile, "cseq": cseqs}),
    message("ack", {"seq": field(st.integers(0, 10))}),
    message("pong", {"t": field(st.floats(allow_nan=False, allow_infinity=False)) | non_json_numbers}),
    message("leave", {}, {"cseq": cseqs}),
    message("publish", {"sdp": sdp, "cseq": cseqs}),
    message("subscriber-answer", {"sdp": sdp, "cseq": cseqs}),
    message("candidate", {"target": field(st.sampled_from(["publisher", "subscriber"])),
                          "candidate": field(candidate_init | st.none()), "cseq": cseqs}),
    message("unpublish", {"track": name, "cseq": cseqs}),
    message("bogus", {}),  # an unknown type
    hostile,  # not even an object
)
raw_frames = st.one_of(
    st.text(max_size=40),
    st.sampled_from(['{"type":"signal"', "{", "[", '{"type":"join","room":"fuzz"}}', "\ufeff{}", "{}" * 100]),
)
frames = st.lists(client_messages.map(lambda m: ("json", m)) | raw_frames.map(lambda t: ("text", t)),
                  min_size=1, max_size=6)


@dataclass(frozen=True)
class Example:
    prejoin: bool
    frames: list[tuple[str, Any]]


examples = st.builds(Example, st.booleans(), frames)


# -- the watched neighbours -----------------------------------------------------------------------


class Watched:
    """A long-lived peer: every frame it gets must be strict JSON; it acks what it got."""

    def __init__(self, raw: Raw) -> None:
        self.raw = raw
        self.last_seq = int(raw.welcome["seq"])
        self.cseq = 0

    @property
    def peer(self) -> str:
        return self.raw.peer

    async def until_signal(self, marker: str) -> None:
        """Read (checking every frame) until the signal carrying ``marker`` arrives."""
        ws = self.raw.ws
        async with asyncio.timeout(RELAY_BOUND):
            while True:
                msg = await ws.receive()
                assert msg.type is aiohttp.WSMsgType.TEXT, f"a watched peer lost its socket: {msg.type} {ws.close_code}"
                frame = loads_strict(msg.data)  # raises if the server sent non-RFC-8259 JSON
                assert isinstance(frame, dict)
                if isinstance(frame.get("seq"), int):
                    self.last_seq = max(self.last_seq, frame["seq"])
                if frame["type"] == "signal" and frame.get("data") == marker:
                    return

    async def send_to(self, other: Watched, marker: str) -> None:
        self.cseq += 1
        await self.raw.send({"type": "signal", "to": other.peer, "data": marker, "cseq": self.cseq})

    async def ack(self) -> None:
        await self.raw.send({"type": "ack", "seq": self.last_seq})


async def relays(a: Watched, b: Watched, n: int) -> None:
    await a.send_to(b, f"ping {n}")
    await b.until_signal(f"ping {n}")
    await b.send_to(a, f"pong {n}")
    await a.until_signal(f"pong {n}")
    await a.ack()
    await b.ack()


def substitute(value: Any, target: Watched) -> Any:
    if value == TARGET:
        return target.peer
    if value == TARGET_SESSION:
        return target.raw.welcome["session"]
    if isinstance(value, dict):
        return {k: substitute(v, target) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, target) for v in value]
    return value


SENTINEL = '{"type":"fuzz-sentinel"}'
KNOWN_ERRORS = {e.code for e in Err.all()}
KNOWN_CLOSES = {c.code for c in Close.all()}


async def fuzz_once(url: str, example: Example, target: Watched) -> None:
    fuzzer = await (Raw.joined(url, "fuzz", "f") if example.prejoin else Raw.connect(url))
    sent_leave = False
    try:
        for kind, item in example.frames:
            if kind == "json":
                item = substitute(item, target)
                sent_leave |= isinstance(item, dict) and item.get("type") == "leave"
                text = dump(item)
            else:
                text = item
            try:
                await fuzzer.send_raw(text)
            except ConnectionError:
                break  # closed by the server meanwhile: checked below
        if not fuzzer.ws.closed:
            with contextlib.suppress(ConnectionError):  # closed by the server meanwhile: checked below
                await fuzzer.send_raw(SENTINEL)
        while True:
            msg = await fuzzer.ws.receive(timeout=RELAY_BOUND)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                code = fuzzer.ws.close_code
                assert code in KNOWN_CLOSES, code
                assert code != 1000 or sent_leave, "closed 1000 without a leave"
                break
            reply = loads_strict(msg.data)
            if reply["type"] == "error":
                assert reply["code"] in KNOWN_ERRORS, reply
                if "fuzz-sentinel" in reply["message"]:
                    break
    finally:
        await fuzzer.close()


def draw(count: int) -> list[Example]:
    """Hypothesis draws the examples first; they run on the live server after (keeps hypothesis
    out of the event loop)."""
    drawn: list[Example] = []

    @settings(max_examples=count, deadline=None, suppress_health_check=list(HealthCheck), database=None,
              phases=[Phase.generate])
    @given(example=examples)
    def collect(example: Example) -> None:
        drawn.append(example)

    collect()
    return drawn


@pytest.fixture(params=["memory", "redis"])
async def fuzz_server(request: pytest.FixtureRequest, start_server: ServerFactory) -> RunningServer:
    # The watched peers speak only between examples (raw clients do not answer pings): a heartbeat
    # timeout far above one example's duration, so a starved CI box cannot close them with 4013.
    config = make_config(session=SessionConfig(grace_period=10 * UNIT, reconnecting_notice_after=5 * UNIT),
                         heartbeat=HeartbeatConfig(interval=20 * UNIT, timeout=1000 * UNIT))
    if request.param == "redis":
        redis: RedisServer = request.getfixturevalue("redis_server")
        config = replace(config, redis_url=redis.url, redis_prefix=request.getfixturevalue("prefix"))
    return await start_server(config)


async def run_fuzz(server: RunningServer, count: int, progress: Callable[[int], None] | None = None) -> int:
    # Drawing takes a while (~70 ms an example): off the loop, or the node's own tasks stall.
    drawn = await asyncio.to_thread(draw, count)
    bystanders = [Watched(await Raw.joined(server.url, "calm", n)) for n in ("x", "y")]
    targets = [Watched(await Raw.joined(server.url, "fuzz", n)) for n in ("t", "u")]
    baseline_tasks = server.hub.task_count
    await relays(*bystanders, 0)
    await relays(*targets, 0)
    done = 0
    try:
        for n, example in enumerate(drawn, 1):
            await fuzz_once(server.url, example, targets[0])
            try:
                await relays(*bystanders, n)
                await relays(*targets, n)
            except (ConnectionError, AssertionError, TimeoutError) as exc:
                closes = {w.raw.ws.close_code for w in (*bystanders, *targets) if w.raw.ws.closed}
                raise AssertionError(f"a watched peer was hurt (closes {closes}) after {example!r}") from exc
            done += 1
            if progress is not None and n % 1000 == 0:
                progress(n)
    finally:
        for watched in (*bystanders, *targets):
            await watched.raw.close()
    await eventually(lambda: server.hub.connection_count == 0)
    await eventually(lambda: server.hub.task_count <= baseline_tasks, what="grace tasks of fuzz sessions to end")
    return done


@pytest.mark.timeout(600)
async def test_fuzz_every_field_bystanders_unharmed(fuzz_server: RunningServer) -> None:
    assert await run_fuzz(fuzz_server, CI_EXAMPLES) == CI_EXAMPLES


@pytest.mark.slow
@pytest.mark.timeout(14400)
async def test_fuzz_every_field_bystanders_unharmed_10k(fuzz_server: RunningServer) -> None:
    done = await run_fuzz(fuzz_server, SLOW_EXAMPLES, progress=lambda n: print(f"fuzz: {n} examples", flush=True))
    print(f"fuzz: {done} examples passed")
    assert done == SLOW_EXAMPLES
