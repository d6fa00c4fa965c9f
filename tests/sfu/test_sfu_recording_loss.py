"""Recording under upstream loss: repaired loss leaves no trace, unrepaired loss never corrupts.

Loss is injected on the wire between the aiortc publisher and the SFU (tests/sfu/sfu_lossy_udp).
With RTX allowed through, NACK repairs every hole and the file has every frame. With every
retransmission dropped too, holes are permanent: the recording skips to the next keyframe (and
asks the publisher for one), so every frame in the file still decodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av

from sfu.sdp_info import parse_session
from tests.sfu.sfu_lossy_udp import LossyRelay, rtp_payload_type
from tests.sfu.sfu_testpeers import SfuEnv


class DropMedia:
    """Every ``n``-th video packet, and (``rtx_too``) every retransmission of the stream."""

    def __init__(self, n: int, *, rtx_too: bool) -> None:
        self.n = n
        self.rtx_too = rtx_too
        self.media = self.rtx = -1
        self.seen = self.dropped = 0

    def learn(self, sdp: str) -> str:
        video = next(s for s in parse_session(sdp).sections if s.kind == "video")
        self.media = next(c.payload_type for c in video.codecs if c.name != "rtx")
        self.rtx = next(c.payload_type for c in video.codecs if c.name == "rtx")
        return sdp

    def __call__(self, data: bytes) -> bool:
        kind = rtp_payload_type(data)
        if kind == self.rtx and self.rtx_too:
            self.dropped += 1
            return True
        if kind != self.media:
            return False
        self.seen += 1
        if self.seen % self.n == 0:
            self.dropped += 1
            return True
        return False


async def _record_under_loss(
    env: SfuEnv, tmp_path: Path, drop: DropMedia, frames: int
) -> tuple[int, int, float, dict[str, Any]]:
    relay = LossyRelay(to_sfu=drop)
    await relay.start()
    try:
        publisher = env.publisher("alice", audio=True)
        await env.sfu.join("room", "alice")
        await publisher.publish(
            munge_offer=lambda sdp: relay.sdp_from_client(drop.learn(sdp)), munge_answer=relay.sdp_from_sfu
        )
        assert publisher.video is not None
        video = publisher.video
        await video.pulse.wait_for(lambda: len(video.sent_at) > 30, 20)
        started = await env.sfu.record_start("room", directory=str(tmp_path))
        assert len(started) == 1
        mark = len(video.sent_at)
        await video.pulse.wait_for(lambda: len(video.sent_at) > mark + frames, 60)
        stopped = await env.sfu.record_stop("room")
    finally:
        relay.close()
    info = stopped[0]
    with av.open(str(info["file"])) as container:
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.size]
        decoded = sum(len(p.decode()) for p in packets)
        last = float(max(p.pts for p in packets) * stream.time_base) if packets else 0.0
    return len(packets), decoded, last, info


async def test_repaired_loss_leaves_every_frame_in_the_file(env: SfuEnv, tmp_path: Path) -> None:
    drop = DropMedia(8, rtx_too=False)
    packets, decoded, _, info = await _record_under_loss(env, tmp_path, drop, frames=90)
    assert info["state"] == "finished"
    assert drop.dropped >= 8
    assert env.sfu.stats()["rtx_unwrapped"] > 0
    assert decoded == packets and packets >= 80, (packets, decoded, drop.dropped)


async def test_unrepaired_loss_never_puts_a_broken_frame_in_the_file(env: SfuEnv, tmp_path: Path) -> None:
    drop = DropMedia(40, rtx_too=True)
    packets, decoded, last, info = await _record_under_loss(env, tmp_path, drop, frames=180)
    assert info["state"] == "finished"
    assert drop.dropped >= 4
    assert packets > 0 and decoded == packets, f"{packets - decoded} of {packets} frames did not decode"
    span = float(info["stopped_at"]) - float(info["media_started_at"])
    print(f"{packets} frames of ~180 recorded, last at {last:.2f}s of {span:.2f}s, {drop.dropped} packets lost")
    # It resumes after every hole (each costs the 1 s wait for a repair, then a keyframe's
    # latency), so the file reaches the end of the recording; stuck at the first hole, it would
    # end within a second of its start.
    assert last >= span - 2.0, (last, span)
    # Frames after a hole wait for the next keyframe, which the recording asks for.
    assert env.sfu.stats()["pli_sent_upstream"] >= 2
    transcoding = env.sfu.stats()["transcoding"]
    assert transcoding["frames_to_decoder"] == 0 and transcoding["encoder_calls"] == 0
