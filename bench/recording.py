"""What recording costs: on the forwarding path, and on its own thread.

    python -m bench.recording [--seconds 10] [--width 640 --height 480]

Generates VP8 (libvpx) at 30 fps plus Opus-sized audio packets at 50/s, packetized as RTP
payloads, and feeds them to a real :class:`sfu.recorder.Recording` (sender reports first, as a
publisher sends them). Prints, with baselines measured in the same run:

* the forwarding path's cost per packet (one ``TrackSink.on_media``) against appending the
  same packet to a list;
* the recording thread's CPU (frame assembly, depayload, PyAV WebM mux, disk) per second of
  media, i.e. how many such recordings one core could sustain.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from sfu.ingest import MediaPacket
from sfu.packets import SenderReport
from sfu.recorder import RecordedTrack, Recording, RecordingCounters
from sfu.recording import NTP_UNIX_OFFSET

MTU = 1100


def vp8_frames(seconds: float, width: int, height: int) -> list[bytes]:
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = fractions.Fraction(1, 30)
    encoder.bit_rate = 1_000_000
    out: list[bytes] = []
    ramp = (np.add.outer(np.arange(height), np.arange(width)) % 256).astype(np.uint8)
    base = np.stack([ramp, ramp.T[:height, :width] if height == width else ramp[::-1], ramp[:, ::-1]], axis=2)
    for i in range(int(seconds * 30)):
        picture = np.roll(base, i * 4, axis=1)
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        out += [bytes(p) for p in encoder.encode(frame)]
    out += [bytes(p) for p in encoder.encode(None)]
    return out


def packetize(frames: list[bytes]) -> list[MediaPacket]:
    """RFC 7741 payloads with a one-byte descriptor (S bit on each frame's first packet)."""
    packets: list[MediaPacket] = []
    seq = 0
    for index, frame in enumerate(frames):
        chunks = [frame[i:i + MTU] for i in range(0, len(frame), MTU)]
        for n, chunk in enumerate(chunks):
            descriptor = b"\x10" if n == 0 else b"\x00"
            packets.append(MediaPacket(0, seq, index * 3000, int(n == len(chunks) - 1), descriptor + chunk, 0, None, False))
            seq += 1
    return packets


def ntp(unix: float) -> int:
    whole = int(unix)
    return ((whole + NTP_UNIX_OFFSET) << 32) | int((unix - whole) * 2**32)


async def run(seconds: float, width: int, height: int) -> None:
    video = packetize(vp8_frames(seconds, width, height))
    audio = [MediaPacket(0, i, i * 960, 1, bytes([0xFC]) + bytes(80), 0, None, False) for i in range(int(seconds * 50))]
    # Interleave as they would arrive: by media time.
    timeline = sorted(
        [(p.timestamp / 90000, 0, p) for p in video] + [(p.timestamp / 48000, 1, p) for p in audio],
        key=lambda x: (x[0], x[1]),
    )
    results = {}
    for concurrent in (False, True):
        with tempfile.TemporaryDirectory() as directory:
            counters = RecordingCounters()
            recording = Recording(
                room="bench", participant="p", directory=Path(directory), counters=counters,
                tracks=[RecordedTrack("v", "video", "VP8"), RecordedTrack("a", "audio", "opus")],
                queue_size=len(timeline) + 10,
            )
            video_sink, audio_sink = recording.sink(0), recording.sink(1)
            now = time.time()
            video_sink.on_sender_report(SenderReport(1, ntp(now), 0))
            audio_sink.on_sender_report(SenderReport(2, ntp(now), 0))
            if concurrent:
                recording.start()
            push0 = time.perf_counter()
            for _, kind, packet in timeline:
                (video_sink if kind == 0 else audio_sink).on_media(packet)
            push = time.perf_counter() - push0
            cpu0, wall0 = time.process_time(), time.perf_counter()
            if not concurrent:
                recording.start()  # the worker alone, on a full queue
            recording.stop()
            await recording.done
            results[concurrent] = (push, time.process_time() - cpu0, time.perf_counter() - wall0, recording.info())
    baseline: list[MediaPacket] = []
    base0 = time.perf_counter()
    for _, _, packet in timeline:
        baseline.append(packet)
    base = time.perf_counter() - base0
    n = len(timeline)
    push, cpu, wall, info = results[False]
    concurrent_push = results[True][0]
    print(f"media: {seconds:.0f} s of {width}x{height} VP8 ({len(video)} packets) + Opus ({len(audio)} packets)")
    print(f"file: {info['bytes']} bytes, {info['duration']:.2f} s, state {info['state']}")
    print(f"forwarding path: {push / n * 1e6:.2f} us/packet for the sink vs {base / n * 1e6:.3f} us/packet "
          f"list append baseline (ratio {push / max(base, 1e-9):.1f}x); "
          f"{concurrent_push / n * 1e6:.2f} us/packet while the worker runs (GIL shared)")
    print(f"recording thread: {cpu:.3f} s CPU for {seconds:.0f} s of media = {cpu / seconds * 100:.2f} % of a core "
          f"per recording (wall {wall:.2f} s; ~{seconds / max(cpu, 1e-9):.0f} recordings per core)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    args = parser.parse_args()
    asyncio.run(run(args.seconds, args.width, args.height))


if __name__ == "__main__":
    main()
