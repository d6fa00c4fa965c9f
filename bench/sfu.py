"""SFU benchmark: CPU per subscriber of RTP forwarding vs aiortc's MediaRelay, and capacity.

    python bench/sfu.py            # about two minutes, loopback only, stops by itself

Processes (all on 127.0.0.1, spawned here, terminated at the end or on any error):

* the SFU under test, alone in its process so that its CPU time (``time.process_time``, all
  its threads) is what is measured; either our forwarder (:class:`sfu.service.Sfu`) or a
  MediaRelay server (decode once, re-encode per subscriber, as aiortc's examples do);
* one publisher sending the same generated 640x480@30 VP8 stream in every phase;
* the subscribers: aiortc peers that do not decode (their receivers are tapped with
  ``sfu.aiortc_hooks.ReceiverTap``) but still NACK, and count packets, frames and losses.

This process relays signaling between them. Prints figures; asserts nothing about timing.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import multiprocessing.connection
import os
import statistics
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests", "sfu"))

LOOPBACK = ("127.0.0.1",)
#: The SFU refuses loopback candidates unless allowed; the benchmark peers are on loopback.
LOOPBACK_PEERS = ("127.0.0.0/8",)
ROOM = "bench"
WIDTH, HEIGHT = 640, 480

Conn = multiprocessing.connection.Connection


# ------------------------------------------------------------------------------------------
# Pipe plumbing: every process runs one asyncio loop reading its pipe without threads.
# ------------------------------------------------------------------------------------------


class Channel:
    """Messages over a multiprocessing pipe, as an asyncio queue."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        asyncio.get_running_loop().add_reader(conn.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            while self.conn.poll():
                self.inbox.put_nowait(self.conn.recv())
        except EOFError:
            asyncio.get_running_loop().remove_reader(self.conn.fileno())
            self.inbox.put_nowait(("eof",))

    def send(self, *message: Any) -> None:
        self.conn.send(message)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.conn.fileno())


def child_main(role: str, conn: Conn, *args: Any) -> None:
    """Entry point of every child process."""
    from sfu import aiortc_hooks

    aiortc_hooks.set_process_host_addresses(LOOPBACK)
    runner = {"forward": run_forwarder, "relay": run_relay, "pub": run_publisher}.get(role)
    asyncio.run(runner(conn, *args) if runner else run_subscribers(conn, *args))


def load_average() -> str:
    """The 1-minute load average, printed next to every figure (a shared 2-core machine)."""
    return f"{os.getloadavg()[0]:.1f}"


async def serve(channel: Channel, handlers: dict[str, Callable[..., Awaitable[Any]]]) -> None:
    """Answer ("call", id, name, args) messages until ("quit",)."""
    while True:
        message = await channel.inbox.get()
        if message[0] in ("quit", "eof"):
            return
        _, call_id, name, args = message
        try:
            result = await handlers[name](*args)
        except Exception as exc:  # reported to the orchestrator, which stops the run
            channel.send("result", call_id, None, f"{type(exc).__name__}: {exc}")
        else:
            channel.send("result", call_id, result, None)


# ------------------------------------------------------------------------------------------
# SFU processes.
# ------------------------------------------------------------------------------------------


async def run_forwarder(conn: Conn) -> None:
    from sfu.config import SfuConfig
    from sfu.service import Sfu

    channel = Channel(conn)
    sfu = Sfu(SfuConfig(host_addresses=LOOPBACK, ice_allow_peers=LOOPBACK_PEERS), lambda peer, msg: channel.send("emit", peer, msg))

    async def stats() -> dict[str, Any]:
        s = sfu.stats()
        return {
            "cpu": time.process_time(),
            "delay": s["forwarding_delay_us"],
            "forwarded": s["packets_forwarded"],
            "transcoding": s["transcoding"],
            "retransmissions": s["retransmissions_served"],
        }

    await serve(
        channel,
        {
            "join": lambda peer: sfu.join(ROOM, peer),
            "publish": lambda peer, sdp: sfu.publish(ROOM, peer, sdp),
            "answer": lambda peer, sdp: sfu.subscriber_answer(ROOM, peer, sdp),
            "stats": stats,
        },
    )
    await sfu.close()


async def run_relay(conn: Conn) -> None:
    """The comparison: aiortc's MediaRelay, one decoder, one encoder per subscriber."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaRelay
    from sfu_testpeers import force_codec

    channel = Channel(conn)
    relay = MediaRelay()
    config = RTCConfiguration(iceServers=[])
    pcs: dict[str, RTCPeerConnection] = {}
    source: list[Any] = []

    async def publish(peer: str, sdp: str) -> str:
        pc = RTCPeerConnection(config)
        pcs[peer] = pc
        pc.on("track", source.append)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return str(pc.localDescription.sdp)

    async def join(peer: str) -> None:
        if peer.startswith("pub") or not source:
            return
        pc = RTCPeerConnection(config)
        pcs[peer] = pc
        transceiver = pc.addTransceiver(relay.subscribe(source[0], buffered=False), "sendonly")
        force_codec(transceiver, "video", "VP8")
        await pc.setLocalDescription(await pc.createOffer())
        channel.send("emit", peer, {"type": "subscriber-offer", "sdp": pc.localDescription.sdp})

    async def answer(peer: str, sdp: str) -> None:
        await pcs[peer].setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def stats() -> dict[str, Any]:
        return {"cpu": time.process_time(), "delay": {}, "forwarded": 0, "transcoding": {}}

    await serve(channel, {"join": join, "publish": publish, "answer": answer, "stats": stats})
    for pc in pcs.values():
        await pc.close()


# ------------------------------------------------------------------------------------------
# Clients.
# ------------------------------------------------------------------------------------------


async def run_publisher(conn: Conn, audio: bool = False) -> None:
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from sfu_testpeers import (
        CountingAudioTrack,
        PatternVideoTrack,
        client_configuration,
        force_codec,
    )

    channel = Channel(conn)
    pc = RTCPeerConnection(client_configuration())
    if audio:
        # Opus, 20 ms frames: 50 packets/s, what an audio-only participant sends.
        sound = CountingAudioTrack()
        force_codec(pc.addTransceiver(sound, "sendonly"), "audio", "opus")
    else:
        track = PatternVideoTrack(WIDTH, HEIGHT)
        force_codec(pc.addTransceiver(track, "sendonly"), "video", "VP8")

    async def offer() -> str:
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)

    async def answer(sdp: str) -> None:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def frames() -> int:
        return sound.frames_sent if audio else len(track.sent_at)

    await serve(channel, {"offer": offer, "answer": answer, "frames": frames})
    await pc.close()


class Counter:
    """Receiver events of a non-decoding subscriber: frames, packets, losses."""

    def __init__(self, audio: bool = False) -> None:
        #: Audio: every packet is a frame (20 ms of Opus); video: a marker bit ends a frame.
        self.audio = audio
        self.packets = 0
        self.frames = 0
        self.seqs: set[int] = set()
        self.media_type: int | None = None

    async def on_rtp(self, packet: Any) -> None:
        if self.media_type is None:
            self.media_type = packet.payload_type
        if packet.payload_type != self.media_type:
            return  # RTX: repairs are counted by the SFU
        self.packets += 1
        self.seqs.add(packet.sequence_number)
        if packet.marker or self.audio:
            self.frames += 1

    def on_receiver_started(self, info: Any) -> None:
        pass

    def on_upstream_estimate(self, bitrate: int) -> int:
        return bitrate

    def on_sender_report(self, report: Any) -> None:
        pass

    def snapshot(self) -> tuple[int, int, int]:
        """(frames, packets, packets missing among the sequence numbers seen)."""
        lost = 0
        if self.seqs:
            ordered = sorted(self.seqs)
            span = ordered[-1] - ordered[0] + 1
            lost = span - len(ordered) if span < 30000 else 0  # ignore a wrap in the window
        return self.frames, self.packets, lost


class HeaderCounter:
    """What a *light* subscriber counts: the plain RTP header of each SRTP packet, nothing else.

    The capacity sweep's subscribers all live in one process on a 2-core machine; aiortc's full
    receive path (RTP parse, receiver, NACK generator) costs that process more per packet than the
    SFU spends forwarding it, so the load generator, not the SFU, would stop the sweep. A light
    subscriber still does ICE (consent checks included), DTLS and SRTP unprotect, then reads the
    sequence number, payload type and marker bit; it sends no receiver reports, NACKs or REMB,
    so the SFU's per-subscriber RTCP work is absent from these figures.
    """

    __slots__ = ("audio", "first", "frames", "highest", "media_type", "packets")

    def __init__(self, audio: bool) -> None:
        self.audio = audio
        self.packets = 0
        self.frames = 0
        self.media_type: int | None = None
        self.first: int | None = None
        self.highest = 0

    def on_rtp_bytes(self, data: bytes) -> None:
        second = data[1]
        payload_type = second & 0x7F
        if self.media_type is None:
            self.media_type = payload_type
        if payload_type != self.media_type:
            return  # RTX
        self.packets += 1
        if second & 0x80 or self.audio:
            self.frames += 1
        seq = (data[2] << 8) | data[3]
        if self.first is None:
            self.first = self.highest = seq
            return
        delta = (seq - self.highest) & 0xFFFF
        if delta < 0x8000:
            self.highest += delta

    def snapshot(self) -> tuple[int, int, int]:
        lost = 0 if self.first is None else max(0, self.highest - self.first + 1 - self.packets)
        return self.frames, self.packets, lost


def light_taps() -> dict[int, HeaderCounter]:
    """Route every RTP packet this process receives to a :class:`HeaderCounter` (bench only)."""
    from aiortc.rtcdtlstransport import RTCDtlsTransport

    taps: dict[int, HeaderCounter] = {}

    async def handle(self: Any, data: bytes, arrival_time_ms: int) -> None:
        counter = taps.get(id(self))
        if counter is not None:
            counter.on_rtp_bytes(data)

    RTCDtlsTransport._handle_rtp_data = handle  # type: ignore[method-assign]
    return taps


async def run_subscribers(conn: Conn, audio: bool = False, light: bool = False) -> None:
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from sfu_testpeers import client_configuration

    from sfu.aiortc_hooks import ReceiverTap, TranscodingProbe

    channel = Channel(conn)
    pcs: dict[str, RTCPeerConnection] = {}
    counters: dict[str, Counter | HeaderCounter] = {}
    probe = TranscodingProbe()
    taps = light_taps() if light else {}

    def new_peer(peer: str) -> RTCPeerConnection:
        pc = RTCPeerConnection(client_configuration())
        counter = counters[peer] = HeaderCounter(audio) if light else Counter(audio)

        @pc.on("track")
        def on_track(track: Any) -> None:
            receiver = next(t.receiver for t in pc.getTransceivers() if t.receiver.track is track)
            if isinstance(counter, HeaderCounter):
                taps[id(receiver.transport)] = counter
            else:
                ReceiverTap(receiver, counter, probe)

        return pc

    async def deliver(peer: str, message: dict[str, Any]) -> str | None:
        if message["type"] != "subscriber-offer":
            return None
        pc = pcs.get(peer)
        if pc is None or pc.signalingState == "closed":
            # A first offer, or the SFU reset this subscriber's connection: a fresh one.
            pc = pcs[peer] = new_peer(peer)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=message["sdp"], type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return str(pc.localDescription.sdp)

    async def snapshot() -> dict[str, tuple[int, int, int]]:
        return {peer: c.snapshot() for peer, c in counters.items()}

    await serve(channel, {"deliver": deliver, "snapshot": snapshot})
    for pc in pcs.values():
        await pc.close()


# ------------------------------------------------------------------------------------------
# Orchestrator.
# ------------------------------------------------------------------------------------------


class Child:
    """A spawned process and its request/response channel."""

    def __init__(self, ctx: Any, role: str, *args: Any, main: Callable[..., None] | None = None) -> None:
        parent, child = ctx.Pipe()
        self.role = role
        self.process = ctx.Process(target=main or child_main, args=(role, child, *args), daemon=True)
        self.process.start()
        child.close()
        self.conn: Conn = parent
        self.channel: Channel | None = None
        self._next = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self.on_emit: Callable[[str, dict[str, Any]], None] = lambda peer, msg: None

    def attach(self, tasks: set[asyncio.Task[None]]) -> None:
        self.channel = Channel(self.conn)
        task = asyncio.get_running_loop().create_task(self._pump())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _pump(self) -> None:
        assert self.channel is not None
        while True:
            message = await self.channel.inbox.get()
            if message[0] == "eof":
                for future in self._pending.values():
                    if not future.done():
                        future.set_exception(RuntimeError(f"{self.role} process died"))
                return
            if message[0] == "emit":
                self.on_emit(message[1], message[2])
            elif message[0] == "result":
                _, call_id, value, error = message
                future = self._pending.pop(call_id)
                if future.done():
                    continue  # the caller gave up (timeout) before the answer came
                if error:
                    future.set_exception(RuntimeError(f"{self.role}: {error}"))
                else:
                    future.set_result(value)

    async def call(self, name: str, *args: Any) -> Any:
        assert self.channel is not None
        self._next += 1
        future = asyncio.get_running_loop().create_future()
        self._pending[self._next] = future
        self.channel.send("call", self._next, name, args)
        async with asyncio.timeout(30):
            return await future

    def stop(self) -> None:
        if self.channel is not None:
            self.channel.send("quit")
            self.channel.close()
        self.process.join(5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)


class Setup:
    """One SFU (forwarder or relay), one publisher, a growing set of subscribers."""

    def __init__(
        self, ctx: Any, mode: str, tasks: set[asyncio.Task[None]], audio: bool = False, light: bool = False
    ) -> None:
        self.sfu = Child(ctx, mode)
        self.publisher = Child(ctx, "pub", audio)
        self.subscribers = Child(ctx, "subs", audio, light)
        self.children = [self.sfu, self.publisher, self.subscribers]
        self.count = 0
        self._tasks = tasks
        self._answers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        for child in self.children:
            child.attach(self._tasks)
        self.sfu.on_emit = self._route
        await self.sfu.call("join", "pub")
        answer = await self.sfu.call("publish", "pub", await self.publisher.call("offer"))
        await self.publisher.call("answer", answer)
        # Wait until the publisher actually sends.
        await until(lambda: self.publisher.call("frames"), lambda n: n > 15, 20)

    def _route(self, peer: str, message: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(peer, message))
        self._answers.add(task)
        task.add_done_callback(self._answers.discard)

    async def _deliver(self, peer: str, message: dict[str, Any]) -> None:
        try:
            answer = await self.subscribers.call("deliver", peer, message)
            if answer is not None:
                await self.sfu.call("answer", peer, answer)
        except (RuntimeError, TimeoutError) as exc:
            print(f"  {peer}: offer/answer failed: {exc}", flush=True)

    async def grow(self, total: int) -> None:
        """Add subscribers up to ``total`` and wait until each receives frames."""
        new = [f"sub-{i}" for i in range(self.count, total)]
        for peer in new:
            await self.sfu.call("join", peer)
        self.count = total
        if new:
            await until(
                lambda: self.subscribers.call("snapshot"),
                lambda snap: all(snap.get(p, (0, 0, 0))[0] > 10 for p in new),
                60 + len(new),
            )

    async def measure(self, seconds: float) -> dict[str, Any]:
        pub0, sfu0, subs0 = await self._sample()
        wall0 = time.monotonic()
        await asyncio.sleep(seconds)  # the measurement window itself
        pub1, sfu1, subs1 = await self._sample()
        wall = time.monotonic() - wall0
        fps = [(subs1[p][0] - subs0[p][0]) / wall for p in subs1 if p in subs0]
        return {
            "subscribers": self.count,
            "cpu_percent": 100 * (sfu1["cpu"] - sfu0["cpu"]) / wall,
            "publisher_fps": (pub1 - pub0) / wall,
            "subscriber_fps_mean": statistics.mean(fps) if fps else 0.0,
            "subscriber_fps_min": min(fps) if fps else 0.0,
            "packets_per_subscriber_s": (
                statistics.mean((subs1[p][1] - subs0[p][1]) / wall for p in subs1 if p in subs0)
                if fps
                else 0.0
            ),
            "lost": sum(subs1[p][2] for p in subs1),
            "delay": sfu1["delay"],
            "transcoding": sfu1["transcoding"],
            "load": load_average(),
        }

    async def _sample(self) -> tuple[int, dict[str, Any], dict[str, Any]]:
        return (
            await self.publisher.call("frames"),
            await self.sfu.call("stats"),
            await self.subscribers.call("snapshot"),
        )

    def stop(self) -> None:
        for task in self._answers:
            task.cancel()
        for child in self.children:
            child.stop()


async def until(
    fetch: Callable[[], Awaitable[Any]], done: Callable[[Any], bool], timeout: float
) -> None:
    async with asyncio.timeout(timeout):
        while not done(await fetch()):
            await asyncio.sleep(0.2)


def slope(points: list[tuple[int, float]]) -> float:
    """Least-squares CPU % per added subscriber."""
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def line(row: dict[str, Any]) -> str:
    delay = row["delay"]
    delays = f"  delay p50/p99 {delay['p50']}/{delay['p99']} us" if "p50" in delay else ""
    return (
        f"  {row['subscribers']:>3} subs  load {row['load']}  cpu {row['cpu_percent']:6.1f} %  "
        f"pub {row['publisher_fps']:5.1f} fps  sub {row['subscriber_fps_mean']:5.1f} fps "
        f"(min {row['subscriber_fps_min']:5.1f})  {row['packets_per_subscriber_s']:5.1f} pkt/s/sub  "
        f"lost {row['lost']}{delays}"
    )


async def phase(
    ctx: Any,
    mode: str,
    steps: list[int],
    window: float,
    stop_when_degraded: bool = False,
    audio: bool = False,
    light: bool = False,
) -> list[dict[str, Any]]:
    tasks: set[asyncio.Task[None]] = set()
    setup = Setup(ctx, mode, tasks, audio, light)
    rows: list[dict[str, Any]] = []
    try:
        await setup.start()
        for total in steps:
            await setup.grow(total)
            row = await setup.measure(window)
            rows.append(row)
            print(line(row), flush=True)
            degraded = row["subscribers"] > 0 and row["subscriber_fps_min"] < 0.9 * row["publisher_fps"]
            if stop_when_degraded and degraded:
                print("  frame rate dropped below 90 % of the publisher's: stopping", flush=True)
                break
    except TimeoutError:
        # A step whose subscribers never all got media: the load generator or the SFU gave up.
        print(f"  step of {setup.count} subscribers not reached in time: stopping", flush=True)
    finally:
        setup.stop()
        for task in tasks:
            task.cancel()
    return rows


def measure_floor() -> float:
    """µs per packet of the physical floor: SRTP protect + sendto of VP8-sized packets."""
    import socket

    from bench.forward_path import floor_packets, make_trace, run_floor

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    try:
        packets = floor_packets(make_trace(3000), 4)
        runs = []
        for _ in range(3):
            start = time.process_time()
            count = run_floor(packets, sink.getsockname())
            runs.append((time.process_time() - start) * 1e6 / count)
        return statistics.median(runs)
    finally:
        sink.close()


#: Subscriber counts of the capacity sweep (stopped early when the frame rate drops).
CAPACITY_STEPS = (10, 20, 40, 60, 80, 100, 150, 200, 250, 300)


async def main(args: argparse.Namespace) -> None:
    ctx = multiprocessing.get_context("spawn")
    print(
        f"SFU benchmark: {WIDTH}x{HEIGHT}@30 VP8 generated stream, loopback, {os.cpu_count()} CPUs"
    )
    async with asyncio.timeout(args.deadline):
        print("forwarder (sfu.service.Sfu), CPU of the SFU process:", flush=True)
        forward = await phase(ctx, "forward", [0, 2, 4, 8], args.window)
        if args.relay:
            print(
                "MediaRelay (decode once, encode per subscriber), CPU of the relay process:",
                flush=True,
            )
        relay = await phase(ctx, "relay", [0, 1, 2, 3], args.window) if args.relay else []
        fwd = slope([(r["subscribers"], r["cpu_percent"]) for r in forward])
        rel = slope([(r["subscribers"], r["cpu_percent"]) for r in relay]) if relay else 0.0
        print(
            f"CPU per added subscriber: forwarder {fwd:.2f} % of a core"
            + (f", MediaRelay {rel:.2f} %" if relay else "")
        )
        pps = statistics.mean(r["packets_per_subscriber_s"] for r in forward if r["subscribers"])
        marginal = fwd / 100 * 1e6 / pps if pps else 0.0
        floor = measure_floor()
        print(
            f"forwarder marginal cost: {marginal:.1f} us per forwarded packet "
            f"({pps:.0f} packets/s per subscriber); floor (libsrtp protect + sendto, same run): "
            f"{floor:.1f} us; ratio {marginal / floor:.2f}x",
            flush=True,
        )
        if relay:
            print(f"MediaRelay / forwarder: {rel / fwd:.1f}x" if fwd > 0 else "forwarder: ~0")
        print(f"capacity (forwarder, up to {args.max_subscribers} subscribers):", flush=True)
        steps = [n for n in CAPACITY_STEPS if n <= args.max_subscribers]
        await phase(ctx, "forward", steps, args.window, stop_when_degraded=True)


async def capacity(args: argparse.Namespace) -> None:
    """Only the capacity sweep (``--capacity-only``), video or audio-only (``--audio``)."""
    ctx = multiprocessing.get_context("spawn")
    kind = "Opus audio-only, 50 packets/s" if args.audio else f"{WIDTH}x{HEIGHT}@30 VP8"
    print(f"SFU capacity sweep: {kind}, loopback, {os.cpu_count()} CPUs, load {load_average()}")
    steps = [n for n in CAPACITY_STEPS if n <= args.max_subscribers]
    async with asyncio.timeout(args.deadline):
        rows = await phase(ctx, "forward", [0, *steps], args.window, True, args.audio, args.light)
    per = slope([(r["subscribers"], r["cpu_percent"]) for r in rows])
    pps = statistics.mean(r["packets_per_subscriber_s"] for r in rows if r["subscribers"]) if rows[1:] else 0.0
    if per > 0 and pps:
        print(
            f"CPU per added subscriber {per:.3f} % of a core ({pps:.0f} packets/s each): "
            f"{100 / per:.0f} forwarded streams per core by the slope, "
            f"{per / 100 * 1e6 / pps:.1f} us per forwarded packet"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--max-subscribers", type=int, default=40)
    parser.add_argument(
        "--no-relay", dest="relay", action="store_false", help="skip the MediaRelay phase"
    )
    parser.add_argument("--deadline", type=float, default=480.0, help="seconds before giving up")
    parser.add_argument(
        "--capacity-only", action="store_true", help="run only the capacity sweep (0 to --max-subscribers)"
    )
    parser.add_argument(
        "--audio", action="store_true", help="capacity sweep with an audio-only publisher (Opus, 50 pkt/s)"
    )
    parser.add_argument(
        "--full-subscribers", dest="light", action="store_false",
        help="capacity sweep: subscribers run aiortc's whole receive path (default: light, see HeaderCounter)",
    )
    try:
        options = parser.parse_args()
        asyncio.run(capacity(options) if options.capacity_only or options.audio else main(options))
    except TimeoutError:
        traceback.print_exc()
        sys.exit("benchmark exceeded its deadline")
