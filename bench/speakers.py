"""Active speakers: what reading RFC 6464 audio levels costs per audio packet.

    python bench/speakers.py            # a few seconds, no network

Every figure is CPU time (``time.process_time_ns``) per packet, best of five rounds, measured in
this run next to its baseline:

* ``accumulator``: :meth:`sfu.speakers.LevelAccumulator.add` alone;
* ``ingest``: the SFU's per-packet ingest (:class:`sfu.ingest.IngestFilter`: RTX unwrap,
  de-duplication) that every packet pays anyway - the baseline;
* ``track path``: one Opus packet through :meth:`sfu.forwarding.PublishedTrack.on_rtp` with no
  subscriber, with level accumulation on and off: the difference is what the feature adds to
  the real path;
* ``tick``: one room evaluation (:meth:`SpeakerDetector.tick`) for 10 audio tracks, once per
  ~350 ms, turned into a per-packet share at 50 packets/s per track.

Prints figures and ratios; asserts nothing about timing.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sfu.forwarding import PublishedTrack  # noqa: E402
from sfu.ingest import IngestFilter  # noqa: E402
from sfu.metrics import ForwardingCounters  # noqa: E402
from sfu.packets import CodecSpec, InboundRtp, ReceiveInfo  # noqa: E402
from sfu.speakers import LevelAccumulator, SpeakerConfig, SpeakerDetector  # noqa: E402

N = 200_000
ROUNDS = 5
OPUS = ReceiveInfo(media={111: CodecSpec("audio/opus", 48_000, 111)}, rtx_apt={})


def packets(count: int) -> list[InboundRtp]:
    return [
        InboundRtp(
            ssrc=1, payload_type=111, sequence_number=i & 0xFFFF, timestamp=i * 960, marker=0,
            payload=b"\x00" * 80, audio_level=(True, 10 + (i % 60)),
        )
        for i in range(count)
    ]


def best_ns_per_call(run: Callable[[], int]) -> float:
    """Best of ROUNDS: CPU ns per call (``run`` returns how many calls it made)."""
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.process_time_ns()
        calls = run()
        best = min(best, (time.process_time_ns() - start) / calls)
    return best


def bench_accumulator(levels: list[int]) -> float:
    def run() -> int:
        acc = LevelAccumulator()
        add = acc.add
        for level in levels:
            add(level)
        return len(levels)

    return best_ns_per_call(run)


def bench_ingest(batch: list[InboundRtp]) -> float:
    def run() -> int:
        ingest = IngestFilter(OPUS)
        accept = ingest.accept
        for packet in batch:
            accept(packet)
        return len(batch)

    return best_ns_per_call(run)


def bench_track(batch: list[InboundRtp], *, levels: bool) -> float:
    loop = asyncio.new_event_loop()

    def run() -> int:
        track = PublishedTrack(
            track_id="a", publisher="p", kind="audio", codec="opus", mid="0", msid_track=None,
            counters=ForwardingCounters(), keyframe_interval=0.5, remb_ttl=5.0,
        )
        if not levels:
            track.level = None
        track.start(OPUS)

        async def feed() -> None:
            on_rtp = track.on_rtp
            for packet in batch:
                await on_rtp(packet)

        loop.run_until_complete(feed())
        return len(batch)

    try:
        return best_ns_per_call(run)
    finally:
        loop.close()


def bench_tick(tracks: int = 10) -> float:
    detector = SpeakerDetector(SpeakerConfig())
    samples = [(f"p{i}", 17, 12 if i % 3 == 0 else 0, 12 * 20) for i in range(tracks)]

    def run() -> int:
        for _ in range(2000):
            detector.tick(samples)
        return 2000

    return best_ns_per_call(run)


def main() -> None:
    batch = packets(N)
    levels = [p.audio_level[1] for p in batch if p.audio_level is not None]
    accumulator = bench_accumulator(levels)
    ingest = bench_ingest(batch)
    with_levels = bench_track(batch, levels=True)
    without = bench_track(batch, levels=False)
    tick = bench_tick()
    interval = SpeakerConfig().interval
    tick_share = tick / (10 * 50 * interval)  # 10 tracks x 50 packets/s x interval
    added = with_levels - without
    print(f"packets per round: {N}, best of {ROUNDS} rounds, CPU time")
    print(f"accumulator add            {accumulator:8.0f} ns/packet  ({accumulator / ingest:.2f}x ingest)")
    print(f"ingest (baseline)          {ingest:8.0f} ns/packet")
    print(f"track path, levels off     {without:8.0f} ns/packet")
    print(f"track path, levels on      {with_levels:8.0f} ns/packet  (+{added:.0f} ns, {with_levels / without:.3f}x)")
    print(f"room tick, 10 tracks       {tick / 1000:8.1f} us/tick  = {tick_share:.0f} ns/packet at 50 pkt/s/track")
    print("For scale: SFU findings measured ~40-70 us of CPU per forwarded packet.")


if __name__ == "__main__":
    main()
