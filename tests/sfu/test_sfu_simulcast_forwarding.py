"""A simulcast track's forwarding logic with plain fakes for the aiortc ports (no sockets).

Three layers of VP8 reach a :class:`PublishedTrack`; two subscriber slots ask for different
qualities. Checked: per-layer ingest (each layer its own sequence space, RTX per layer), each
slot gets only its layer and switches at a keyframe of the target with continuous sequence
numbers and VP8 PictureIDs, a PLI goes to the target layer's SSRC, the layer is told, and a weak
subscriber's REMB neither clamps the publisher nor moves the other subscriber.
"""

from __future__ import annotations

import itertools
import struct
from typing import Any

from sfu.forwarding import PublishedTrack, Slot
from sfu.metrics import ForwardingCounters
from sfu.packets import CodecSpec, InboundRtp, ReceiveInfo
from sfu.rewrite import StreamRewriter
from sfu.vp8 import parse_descriptor

VP8, RTX = 96, 97
INFO = ReceiveInfo(media={VP8: CodecSpec("video/VP8", 90000, VP8)}, rtx_apt={RTX: VP8})
SSRCS = {"q": 1000, "h": 2000, "f": 3000}
RTX_SSRCS = {"q": 1001, "h": 2001, "f": 3001}
BASE = {"q": 100, "h": 20000, "f": 40000}
SIZES = {"q": (320, 180), "h": (640, 360), "f": (1280, 720)}
#: Payload filler per layer: ~30, ~100 and ~400 kbit/s at 30 fps.
FILLER = {"q": 110, "h": 400, "f": 1650}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def vp8_payload(picture_id: int, *, key: bool, size: tuple[int, int]) -> bytes:
    descriptor = bytes([0x90, 0x80]) + struct.pack("!H", 0x8000 | picture_id)
    if key:
        return descriptor + bytes([0x00, 0x00, 0x00, 0x9D, 0x01, 0x2A]) + struct.pack("<HH", *size)
    return descriptor + bytes([0x01, 0x00, 0x00, 0x00])


def layer_packet(rid: str, frame: int, *, key: bool = False) -> InboundRtp:
    seq = BASE[rid] + frame
    payload = vp8_payload((BASE[rid] * 7 + frame) % 32768, key=key, size=SIZES[rid]) + bytes(FILLER[rid])
    return InboundRtp(
        ssrc=SSRCS[rid], payload_type=VP8, sequence_number=seq, timestamp=3000 * frame, marker=1,
        payload=payload, rid=rid,
    )


class FakeTap:
    def __init__(self) -> None:
        self.plis: list[int] = []

    async def send_pli(self, ssrc: int) -> None:
        self.plis.append(ssrc)

    async def send_remb(self, bitrate: int, ssrc: int) -> None:
        raise AssertionError("a simulcast track sends no clamped REMB upstream")


class FakePort:
    clock_rate = 90000

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_now(
        self, marker: int, sequence_number: int, timestamp: int, payload: bytes, padding_size: int,
        audio_level: tuple[bool, int] | None, abs_send_time: int, ntp_time: int,
    ) -> int | None:
        """The fast path, as :class:`sfu.aiortc_hooks.SenderPort` (simulcast uses it too)."""
        self.sent.append({
            "marker": marker, "sequence_number": sequence_number, "timestamp": timestamp, "payload": payload,
            "padding_size": padding_size, "audio_level": audio_level, "abs_send_time": abs_send_time,
            "ntp_time": ntp_time,
        })
        return len(payload) + 12

    async def send_slow(self, **fields: Any) -> int:
        raise AssertionError("the fast path took every packet")


class FakeSenderTap:
    def set_msid(self, stream_id: str, track_id: str) -> None:
        pass


def make_slot(track: PublishedTrack, quality: str, told: list[tuple[str, dict[str, Any]]]) -> tuple[Slot, FakePort]:
    slot = Slot(subscriber=quality, kind="video", codec="VP8", counters=ForwardingCounters(),
                transceiver=None, make_tap=lambda s: FakeSenderTap())  # type: ignore[arg-type,return-value]
    port = FakePort()
    slot.quality = quality
    slot.on_layer = lambda s, t, layer: told.append((s.subscriber, layer))
    slot.port = port  # type: ignore[assignment]
    slot.rewriter = StreamRewriter(90000, 500, 0)
    slot.track = slot.negotiated = slot.attached = track
    track.attach(slot)
    return slot, port


def make_track(clock: Clock) -> tuple[PublishedTrack, FakeTap]:
    track = PublishedTrack(
        track_id="cam", publisher="alice", kind="video", codec="VP8", mid="1", msid_track="cam",
        counters=ForwardingCounters(), keyframe_interval=0.0, remb_ttl=5.0, rids=("q", "h", "f"),
    )
    tap = FakeTap()
    track.tap = tap  # type: ignore[assignment]
    assert track.simulcast is not None
    track.simulcast.clock = clock
    track.start(INFO)
    return track, tap


async def send_frames(track: PublishedTrack, clock: Clock, frames: range, keys: dict[str, int] | None = None) -> None:
    for frame in frames:
        clock.now += 1 / 30
        for rid in ("q", "h", "f"):
            await track.on_rtp(layer_packet(rid, frame, key=(keys or {}).get(rid) == frame))


def picture_ids(port: FakePort) -> list[int]:
    out = []
    for fields in port.sent:
        d = parse_descriptor(fields["payload"])
        assert d is not None and d.picture_id is not None
        out.append(d.picture_id)
    return out


async def test_each_slot_gets_its_layer_and_switches_continuously_at_keyframes() -> None:
    clock = Clock()
    track, tap = make_track(clock)
    told: list[tuple[str, dict[str, Any]]] = []
    low_slot, low = make_slot(track, "low", told)
    _, high = make_slot(track, "high", told)
    await send_frames(track, clock, range(0, 5))
    assert low.sent == [] and high.sent == [], "held until a keyframe of each slot's layer"
    await send_frames(track, clock, range(5, 20), keys={"q": 5, "f": 7})
    assert len(low.sent) == 15 and len(high.sent) == 13
    assert all(len(f["payload"]) < 200 for f in low.sent) and all(len(f["payload"]) > 1600 for f in high.sent)
    assert told == [("low", {"quality": "low", "rid": "q", "width": 320, "height": 180}),
                    ("high", {"quality": "high", "rid": "f", "width": 1280, "height": 720})]
    # Per-layer ingest: three sequence spaces, no loss, nothing taken for a restart.
    stats = track.stats()
    assert stats["packets_in"] == 60 and stats["duplicates_dropped"] == 0
    assert [layer["ssrc"] for layer in stats["simulcast"]] == [1000, 2000, 3000]  # type: ignore[index]
    # An RTX of the q layer repairs q only.
    rtx = InboundRtp(ssrc=RTX_SSRCS["q"], payload_type=RTX, sequence_number=7, timestamp=0, marker=0,
                     payload=struct.pack("!H", BASE["q"] + 3) + b"x", rid="q")
    await track.on_rtp(rtx)
    assert track.stats()["rtx_unwrapped"] == 1

    # The low subscriber now asks for high: a PLI goes to the f layer's SSRC, and q keeps
    # flowing to it until f's keyframe.
    tap.plis.clear()
    low_slot.quality = "high"
    assert track.simulcast is not None
    await track.simulcast.set_quality(low_slot)
    assert tap.plis == [SSRCS["f"]]
    before = len(low.sent)
    await send_frames(track, clock, range(20, 23))
    assert len(low.sent) == before + 3 and all(len(f["payload"]) < 200 for f in low.sent[-3:])
    await send_frames(track, clock, range(23, 26), keys={"f": 23})
    seqs = [f["sequence_number"] for f in low.sent]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "sequence numbers continue across the switch"
    pids = picture_ids(low)
    assert pids == list(range(pids[0], pids[0] + len(pids))), "PictureIDs continue across the switch"
    timestamps = [f["timestamp"] for f in low.sent]
    assert all(b > a for a, b in itertools.pairwise(timestamps))
    assert told[-1] == ("low", {"quality": "high", "rid": "f", "width": 1280, "height": 720})
    assert track.stats()["layer_switches"] == 3


async def test_a_weak_subscriber_neither_clamps_the_publisher_nor_moves_the_others() -> None:
    clock = Clock()
    track, _ = make_track(clock)
    told: list[tuple[str, dict[str, Any]]] = []
    weak_slot, weak = make_slot(track, "high", told)
    weak_slot.subscriber = "weak"
    strong_slot, strong = make_slot(track, "high", told)
    strong_slot.subscriber = "strong"
    for start in range(0, 200, 10):  # ~6.7 s of 30 fps, keyframes every 10 frames on every layer
        await send_frames(track, clock, range(start, start + 10), keys={"q": start, "h": start, "f": start})
        if start == 60:
            await weak_slot.on_remb(600_000, 1)
            await strong_slot.on_remb(600_000, 1)
        if start == 90:
            await weak_slot.on_remb(60_000, 1)  # congestion: the estimate falls under f and h
    assert track.on_upstream_estimate(2_000_000) == 2_000_000, "the publisher is not clamped"
    weak_told = [layer["quality"] for who, layer in told if who == "weak"]
    strong_told = [layer["quality"] for who, layer in told if who == "strong"]
    assert weak_told == ["high", "low"], told
    assert strong_told == ["high"], told
    assert all(len(f["payload"]) > 1600 for f in strong.sent)
    assert len(weak.sent[-1]["payload"]) < 200, "the weak subscriber now gets the low layer"


async def test_dynacast_pauses_layers_nobody_wants_and_resumes_on_demand() -> None:
    clock = Clock()
    track, tap = make_track(clock)
    assert track.simulcast is not None
    told: list[list[str]] = []
    track.simulcast.on_publish_layers = told.append
    layer_told: list[tuple[str, dict[str, Any]]] = []
    slot, port = make_slot(track, "low", layer_told)
    # ~6.7 s with one subscriber asking low: medium and high are paused (once)
    for start in range(0, 200, 10):
        await send_frames(track, clock, range(start, start + 10), keys={"q": start, "h": start, "f": start})
    assert told == [["q"]]
    # The publisher obeys: only q arrives from now on.
    for frame in range(200, 260):
        clock.now += 1 / 30
        await track.on_rtp(layer_packet("q", frame, key=frame % 10 == 0))
    # The subscriber asks for high: the publisher is told at once, and the slot switches to f
    # when f's packets come back (PLI to f's SSRC once it is being sent again).
    slot.quality = "high"
    tap.plis.clear()
    await track.simulcast.set_quality(slot)
    assert told == [["q"], ["q", "h", "f"]]
    await send_frames(track, clock, range(260, 270), keys={"q": 260})
    assert SSRCS["f"] in tap.plis
    await send_frames(track, clock, range(270, 280), keys={"f": 275})
    assert layer_told[-1][1]["quality"] == "high"
    assert len(port.sent[-1]["payload"]) > 1600
