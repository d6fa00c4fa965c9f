"""Simulcast forwarding: what choosing a layer per subscriber costs per packet, in the SFU's logic.

    python bench/simulcast.py            # a few seconds, no network

Every figure is CPU time (``time.process_time_ns``) of :meth:`sfu.forwarding.PublishedTrack.on_rtp`
with subscriber slots whose ports only record the send (no serialization, SRTP or socket: those
cost the same per sent packet on both paths, see bench/sfu.py), best of five rounds:

* ``single``: a single-layer VP8 track, every packet sent to each of ``N`` slots - the baseline;
* ``simulcast``: a three-layer track (q/h/f interleaved), the ``N`` slots spread over the three
  layers (each packet goes to the slots on its layer), with layer selection and VP8
  PictureID/TL0PICIDX munging.

Both are given per packet *received* and per packet *sent*; the ratio of the per-sent figures is
what the simulcast logic adds per forwarded packet. Prints figures; asserts nothing.
"""

from __future__ import annotations

import asyncio
import os
import struct
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sfu.forwarding import PublishedTrack, Slot  # noqa: E402
from sfu.metrics import ForwardingCounters  # noqa: E402
from sfu.packets import CodecSpec, InboundRtp, ReceiveInfo  # noqa: E402
from sfu.rewrite import StreamRewriter  # noqa: E402

PACKETS = 6_000
ROUNDS = 5
VP8 = ReceiveInfo(media={96: CodecSpec("video/VP8", 90000, 96)}, rtx_apt={})
RIDS = ("q", "h", "f")


class _Port:
    clock_rate = 90000

    def __init__(self) -> None:
        self.sent = 0

    def send_now(self, *fields: Any) -> int | None:
        self.sent += 1
        return 1200

    async def send_slow(self, **fields: Any) -> int:
        self.sent += 1
        return 1200


class _Tap:
    def set_msid(self, stream_id: str, track_id: str) -> None:
        pass

    async def send_pli(self, ssrc: int) -> None:
        pass


def _payload(picture_id: int, key: bool) -> bytes:
    descriptor = bytes([0x90 if key else 0x80, 0xC0]) + struct.pack("!H", 0x8000 | picture_id) + b"\x01"
    header = b"\x00\x00\x00\x9d\x01\x2a\x40\x01\xf0\x00" if key else b"\x01\x00\x00"
    return descriptor + header + bytes(1100)


def _packets(simulcast: bool) -> list[InboundRtp]:
    out = []
    for i in range(PACKETS):
        rid = RIDS[i % 3] if simulcast else None
        layer = i % 3 if simulcast else 0
        frame = i // (3 if simulcast else 1)
        out.append(InboundRtp(
            ssrc=1000 + layer, payload_type=96, sequence_number=(frame + 1) & 0xFFFF,
            timestamp=frame * 3000, marker=1, payload=_payload(frame & 0x7FFF, key=frame % 300 == 0),
            rid=rid,
        ))
    return out


def _track(simulcast: bool, slots: int) -> tuple[PublishedTrack, list[_Port]]:
    track = PublishedTrack(
        track_id="cam", publisher="p", kind="video", codec="VP8", mid="0", msid_track="cam",
        counters=ForwardingCounters(), keyframe_interval=0.5, remb_ttl=5.0,
        rids=RIDS if simulcast else (),
    )
    track.tap = _Tap()  # type: ignore[assignment]
    track.start(VP8)
    ports = []
    for n in range(slots):
        slot = Slot(subscriber=f"s{n}", kind="video", codec="VP8", counters=ForwardingCounters(),
                    transceiver=None, make_tap=lambda s: _Tap())  # type: ignore[arg-type,return-value]
        slot.quality = ("low", "medium", "high")[n % 3]
        port = _Port()
        slot.port = port  # type: ignore[assignment]
        slot.rewriter = StreamRewriter(90000, 1, 1)
        slot.track = slot.negotiated = slot.attached = track
        track.attach(slot)
        ports.append(port)
    return track, ports


async def _measure(simulcast: bool, slots: int) -> tuple[float, float]:
    best_in = best_out = float("inf")
    packets = _packets(simulcast)
    for _ in range(ROUNDS):
        track, ports = _track(simulcast, slots)
        # warm up: every slot past its first keyframe
        for packet in packets[:30]:
            await track.on_rtp(packet)
        sent_before = sum(p.sent for p in ports)
        start = time.process_time_ns()
        for packet in packets[30:]:
            await track.on_rtp(packet)
        elapsed = time.process_time_ns() - start
        sent = sum(p.sent for p in ports) - sent_before
        best_in = min(best_in, elapsed / (len(packets) - 30) / 1000)
        best_out = min(best_out, elapsed / max(1, sent) / 1000)
    return best_in, best_out


async def main() -> None:
    print("CPU per packet through PublishedTrack.on_rtp (ports record only), best of 5:")
    for slots in (3, 30):
        single_in, single_out = await _measure(False, slots)
        multi_in, multi_out = await _measure(True, slots)
        print(f"  {slots:3d} slots  single   {single_in:7.2f} us/received  {single_out:6.2f} us/sent")
        print(f"  {slots:3d} slots  simulcast{multi_in:7.2f} us/received  {multi_out:6.2f} us/sent"
              f"   (x{multi_out / single_out:.2f} per sent packet)")


if __name__ == "__main__":
    asyncio.run(main())
