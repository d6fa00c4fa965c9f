"""Per-packet cost of the forwarding path against its physical floor, in one process.

    python bench/forward_path.py                 # about 20 s
    python bench/forward_path.py --trace-only N  # used by bench/callgrind_forward.py

Setup (loopback, real aiortc): one peer connection plays the SFU, with ``--subscribers``
sendonly video transceivers, each hooked by ``sfu.aiortc_hooks.SenderTap`` and fed by a real
:class:`sfu.forwarding.Slot` attached to one real :class:`sfu.forwarding.PublishedTrack`; the
other peer connection receives (its receivers tapped: nothing is decoded). Once DTLS is up, a
fixed synthetic VP8 trace (seeded, 1,100-byte payloads, a keyframe first) is pushed through
``PublishedTrack.on_rtp`` synchronously, outside the event loop: ingest, rewrite, RTP header,
NACK history, sender-report counters, SRTP protect, ``sendto``.

The **floor** is measured in the same run: the same packets (serialized once), one libsrtp
session per subscriber, ``protect`` + ``socket.sendto`` to a loopback UDP socket, in a tight
loop. Prints µs per forwarded packet, the marginal µs (the slope between one subscriber and
``--subscribers``) and the ratio to the floor. CPU clock (``time.process_time``); on a shared
machine read the ratio, not the microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

PAYLOAD = 1100
PACKETS_PER_FRAME = 4


def make_trace(count: int, seed: int = 20) -> list[Any]:
    """``count`` VP8 packets of one stream: frames of 4 packets, the first one a keyframe."""
    from sfu.packets import InboundRtp

    rng = random.Random(seed)
    body = bytes(rng.randrange(256) for _ in range(PAYLOAD * 4))
    trace = []
    for i in range(count):
        frame, index = divmod(i, PACKETS_PER_FRAME)
        start = index == 0
        # VP8 payload descriptor: S bit on a frame's first packet, partition 0; then the VP8
        # header, whose first byte's bit 0 (P) is 0 only for the keyframe at the start.
        descriptor = bytes([0x10 if start else 0x00, 0x00 if (start and frame == 0) else 0x01])
        offset = (i * 37) % (len(body) - PAYLOAD)
        trace.append(
            InboundRtp(
                ssrc=0x1234,
                payload_type=96,
                sequence_number=(1000 + i) & 0xFFFF,
                timestamp=(5000 + frame * 3000) & 0xFFFFFFFF,
                marker=int(index == PACKETS_PER_FRAME - 1),
                payload=descriptor + body[offset : offset + PAYLOAD - 2],
            )
        )
    return trace


class _Counting:
    """Receiver events of the far end: counts packets, never decodes."""

    def __init__(self) -> None:
        self.packets = 0

    async def on_rtp(self, packet: Any) -> None:
        self.packets += 1

    def on_receiver_started(self, info: Any) -> None:
        pass

    def on_upstream_estimate(self, bitrate: int) -> int:
        return bitrate

    def on_sender_report(self, report: Any) -> None:
        pass


class Harness:
    """A real PublishedTrack forwarding to ``n`` real slots over one real DTLS/SRTP leg."""

    def __init__(self, subscribers: int, slow: bool = False) -> None:
        self.n = subscribers
        #: Use aiortc's own send path (RtpPacket, serialize, _send_rtp): the "before".
        self.slow = slow
        self.pcs: list[Any] = []
        self.far = _Counting()

    async def start(self) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection

        from sfu import aiortc_hooks
        from sfu.aiortc_hooks import ReceiverTap, SenderTap, TranscodingProbe
        from sfu.forwarding import PublishedTrack, Slot
        from sfu.metrics import ForwardingCounters
        from sfu.packets import CodecSpec, ReceiveInfo

        aiortc_hooks.set_process_host_addresses(("127.0.0.1",))
        self.counters = ForwardingCounters()
        self.probe = TranscodingProbe()
        track = PublishedTrack(
            track_id="t", publisher="p", kind="video", codec="VP8", mid="0", msid_track=None,
            counters=self.counters, keyframe_interval=1.0, remb_ttl=5.0,
        )
        track.start(ReceiveInfo(media={96: CodecSpec("video/VP8", 90000, 96)}, rtx_apt={}))
        self.track = track
        sfu = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        far = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs = [sfu, far]
        self.slots = []
        for i in range(self.n):
            transceiver = sfu.addTransceiver("video", direction="sendonly")
            slot = Slot(
                subscriber=f"s{i}", kind="video", codec="VP8", counters=self.counters,
                transceiver=transceiver,
                make_tap=lambda s, t=transceiver: SenderTap(t.sender, s, self.probe),
            )
            slot.track = slot.negotiated = track
            self.slots.append(slot)

        @far.on("track")
        def on_track(remote: Any) -> None:
            receiver = next(t.receiver for t in far.getTransceivers() if t.receiver.track is remote)
            ReceiverTap(receiver, self.far, self.probe)

        await sfu.setLocalDescription(await sfu.createOffer())
        await far.setRemoteDescription(sfu.localDescription)
        await far.setLocalDescription(await far.createAnswer())
        await sfu.setRemoteDescription(far.localDescription)
        async with asyncio.timeout(60):
            while int(track.stats()["subscribers"]) < self.n:  # type: ignore[call-overload]
                await asyncio.sleep(0.05)
        if self.slow:
            for slot in self.slots:
                port: Any = slot.port
                # Bench only: no header template, so every packet takes the slow path.
                port._templates = (None, None)

    def push(self, trace: list[Any]) -> None:
        """Forward every packet of ``trace``, synchronously (the path never suspends)."""
        on_rtp = self.track.on_rtp
        now = time.perf_counter_ns
        for packet in trace:
            coroutine = on_rtp(packet)
            try:
                coroutine.send(None)
            except StopIteration:
                continue
            coroutine.close()
            raise RuntimeError("the forwarding path suspended: it cannot be driven synchronously")
        del now

    async def close(self) -> None:
        for pc in self.pcs:
            await pc.close()


def floor_packets(trace: list[Any], subscribers: int) -> list[list[bytes]]:
    """The trace as serialized RTP datagrams, one SSRC (and stream) per subscriber."""
    import struct

    out = []
    for s in range(subscribers):
        ssrc = 0x10000 + s
        rows = []
        for p in trace:
            # Same size as the forwarded packets: 12-byte header + mid + abs-send-time (16 B).
            header = struct.pack(
                "!BBHII", 0x90, (p.marker << 7) | 96, p.sequence_number, p.timestamp, ssrc
            )
            rows.append(header + b"\xbe\xde\x00\x02\x11\x30\x32\x00\x00\x00\x00\x00" + p.payload)
        out.append(rows)
    return out


def run_floor(packets: list[list[bytes]], sink: tuple[str, int]) -> int:
    """protect + sendto of every packet; returns the count. A fresh libsrtp session per call."""
    from pylibsrtp import Policy, Session

    key = bytes(range(30))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sessions = [Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND)) for _ in packets]
    count = 0
    try:
        for session, rows in zip(sessions, packets, strict=True):
            protect = session.protect
            sendto = sock.sendto
            for data in rows:
                sendto(protect(data), sink)
                count += 1
    finally:
        sock.close()
    return count


def cpu_us(fn: Any, count: int) -> float:
    start = time.process_time()
    fn()
    return (time.process_time() - start) * 1e6 / count


async def measure(args: argparse.Namespace) -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    address = sink.getsockname()
    trace = make_trace(args.packets * (args.rounds + 1))
    chunks = [
        trace[i * args.packets : (i + 1) * args.packets] for i in range(args.rounds + 1)
    ]
    print(
        f"forwarding path vs floor: {args.packets} packets x {args.rounds} rounds, "
        f"{PAYLOAD}-byte VP8 payloads, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    results: dict[tuple[str, int], list[float]] = {}
    floors: list[float] = []
    for mode in ("slow", "fast"):
        for n in (1, args.subscribers):
            harness = Harness(n, slow=mode == "slow")
            await harness.start()
            try:
                harness.push(chunks[0])  # warm-up: keyframe gate, caches
                per_round = []
                for r in range(1, args.rounds + 1):
                    chunk = chunks[r]
                    per_round.append(cpu_us(lambda c=chunk, h=harness: h.push(c), len(chunk)))
                    # The floor, interleaved so both see the same machine load.
                    packets = floor_packets(chunk, n)
                    floors.append(cpu_us(lambda p=packets: run_floor(p, address), len(chunk) * n))
                results[mode, n] = per_round
                forwarded = harness.counters.packets_forwarded
                # Let the far end read what is still queued, as a sanity check of the path.
                await asyncio.sleep(0.2)
                print(
                    f"  {mode} path, {n:>2} subscriber(s): {forwarded} packets forwarded, far "
                    f"end got {harness.far.packets} (the rest overflowed its socket buffer), "
                    f"errors {harness.counters.forward_errors + harness.counters.send_errors}"
                )
            finally:
                await harness.close()
    sink.close()
    n = args.subscribers
    floor = statistics.median(floors)
    print(f"  floor (libsrtp protect + sendto): {floor:6.2f} us/packet (median of {len(floors)})")
    marginals = {}
    for mode in ("slow", "fast"):
        one = statistics.median(results[mode, 1])
        many = statistics.median(results[mode, n])
        marginal = marginals[mode] = (many - one) / (n - 1)
        print(
            f"  {mode}: 1 subscriber {one:6.2f} us/packet (ingest included), {n} subscribers "
            f"{many:6.2f} us/packet = {many / n:.2f} us per forwarded packet; marginal "
            f"{marginal:.2f} us = {marginal / floor:.2f}x the floor"
        )
    print(f"  fast / slow marginal cost: {marginals['fast'] / marginals['slow']:.2f}x")


@contextlib.contextmanager
def callgrind_collecting(enabled: bool) -> Iterator[None]:
    """Count instructions only inside the block (run under ``--instr-atstart=no``).

    ``callgrind_control -i on|off <pid>`` returns once callgrind has switched; only the
    waiting for it (a blocked ``waitpid``) lands inside the block.
    """
    if enabled:
        subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True,
                       capture_output=True)
    try:
        yield
    finally:
        if enabled:
            subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True,
                           capture_output=True)


async def trace_only(args: argparse.Namespace) -> None:
    """For callgrind: set up, then forward ``args.trace_only`` packets (0 = setup only).

    Both runs of a pair build the same ``args.built`` packets, so only the sending differs.
    """
    harness = Harness(args.subscribers, slow=args.slow)
    await harness.start()
    try:
        trace = make_trace(args.built + 1)
        harness.push(trace[:1])
        chosen = trace[1 : args.trace_only + 1]
        if args.floor:
            sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sink.bind(("127.0.0.1", 0))
            packets = [p[: len(chosen)] for p in floor_packets(trace[1:], args.subscribers)]
            run_floor([p[:1] for p in packets], sink.getsockname())  # warm: same code paths
            with callgrind_collecting(args.callgrind):
                run_floor(packets, sink.getsockname())
            sink.close()
            print(f"FLOOR {len(chosen) * args.subscribers}", flush=True)
        else:
            before = harness.counters.packets_forwarded
            with callgrind_collecting(args.callgrind):
                harness.push(chosen)
            print(f"FORWARD {harness.counters.packets_forwarded - before}", flush=True)
    finally:
        await harness.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=8)
    parser.add_argument("--packets", type=int, default=2000, help="packets per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--trace-only", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--built", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--slow", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--callgrind", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    asyncio.run(trace_only(args) if args.trace_only is not None else measure(args))
