"""Packet loss on either leg, injected on the wire by a UDP relay, is repaired.

Downstream: the subscriber NACKs, the SFU serves the retransmission (over RTX) from its
sender's history. Upstream: the SFU's receiver NACKs, the publisher retransmits over RTX, the
SFU unwraps RTX back to the original packet and forwards it.
"""

from __future__ import annotations

from sfu.sdp_info import parse_session
from tests.sfu.sfu_lossy_udp import EveryNth, LossyRelay
from tests.sfu.sfu_measure import decoded_ratio, measure_window
from tests.sfu.sfu_testpeers import SfuEnv

#: Every 8th video packet (12.5 %; at 320x240 a frame is about one packet) is lost.
DROP_EVERY = 8


def video_payload_types(sdp: str) -> tuple[int, int]:
    """(media, rtx) payload types of the first video m-line."""
    video = next(s for s in parse_session(sdp).sections if s.kind == "video")
    media = next(c.payload_type for c in video.codecs if c.name != "rtx")
    rtx = next(c.payload_type for c in video.codecs if c.name == "rtx")
    return media, rtx


async def test_downstream_loss_is_repaired_by_nack_and_rtx(env: SfuEnv) -> None:
    drop = EveryNth(payload_type=-1, n=DROP_EVERY)
    relay = LossyRelay(to_client=drop)
    await relay.start()
    rtx_type: list[int] = []

    def offer_to_client(sdp: str) -> str:
        drop.payload_type, rtx = video_payload_types(sdp)
        rtx_type.append(rtx)
        return relay.sdp_from_sfu(sdp)

    try:
        subscriber = await env.subscriber(
            "lossy", munge_offer=offer_to_client, munge_answer=relay.sdp_from_client
        )
        publisher = env.publisher("alice", audio=False)
        await env.sfu.join("room", "alice")
        await publisher.publish()
        await subscriber.wait_for(
            lambda: bool(subscriber.received) and bool(subscriber.video().indexes), 20
        )
        window = await measure_window(publisher, [subscriber], frames=90)

        assert drop.dropped >= 8
        assert relay.to_client_types.get(rtx_type[0], 0) >= 1, "no RTX retransmission seen"
        stats = env.sfu.stats()
        assert stats["nack_from_subscribers"] > 0
        assert stats["retransmissions_served"] > 0
        ratio = decoded_ratio(subscriber, window)
        assert ratio >= 0.9, (
            f"decoded {ratio:.0%} of {window.sent} frames with {drop.dropped} drops"
        )
    finally:
        relay.close()


async def test_upstream_loss_is_repaired_through_rtx_unwrapping(env: SfuEnv) -> None:
    drop = EveryNth(payload_type=-1, n=DROP_EVERY)
    relay = LossyRelay(to_sfu=drop)
    await relay.start()

    def offer_to_sfu(sdp: str) -> str:
        drop.payload_type, _ = video_payload_types(sdp)
        return relay.sdp_from_client(sdp)

    try:
        subscriber = await env.subscriber("viewer")
        publisher = env.publisher("alice", audio=False)
        await env.sfu.join("room", "alice")
        await publisher.publish(munge_offer=offer_to_sfu, munge_answer=relay.sdp_from_sfu)
        await subscriber.wait_for(
            lambda: bool(subscriber.received) and bool(subscriber.video().indexes), 20
        )
        window = await measure_window(publisher, [subscriber], frames=90)

        assert drop.dropped >= 8
        stats = env.sfu.stats()
        assert stats["rtx_unwrapped"] > 0
        ratio = decoded_ratio(subscriber, window)
        assert ratio >= 0.9, (
            f"decoded {ratio:.0%} of {window.sent} frames with {drop.dropped} drops"
        )
    finally:
        relay.close()
