"""Trickled ICE as real stacks send it, against the real SFU (aiortc peers on loopback)."""

from __future__ import annotations

import asyncio

from aiortc import RTCSessionDescription

from tests.sfu.sfu_testpeers import TIME_SCALE, SfuEnv


async def test_end_of_candidates_before_any_candidate_is_withheld(env: SfuEnv) -> None:
    """Native libwebrtc (@roamhq/wrtc M106) trickles ``null`` before its first candidate.
    Applied at once, aioice dropped the component and then ignored the real candidates: the
    publisher connection failed (``media-failed``) whenever no check of the client had arrived
    yet. Here the SFU answers before the client has the answer, so no check can have arrived:
    the failure was certain; the premature end must be withheld and the connection work."""
    publisher = env.publisher("pub", video_codec=None)
    await env.sfu.join("room", "pub")
    connected = asyncio.Event()
    publisher.pc.on("connectionstatechange", lambda: connected.set() if publisher.pc.connectionState == "connected" else None)
    await publisher.pc.setLocalDescription(await publisher.pc.createOffer())
    lines = publisher.pc.localDescription.sdp.split("\r\n")
    trickled = [line[2:] for line in lines if line.startswith("a=candidate:")]
    assert trickled
    # No usable candidate in the SDP; like libwebrtc's, it may still list a TCP one aiortc drops.
    kept = [line for line in lines if not line.startswith("a=candidate:") and line != "a=end-of-candidates"]
    at = next(i for i, line in enumerate(kept) if line.startswith("a=ice-ufrag:"))
    kept.insert(at, "a=candidate:3 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active")
    offer = "\r\n".join(kept)
    answer = await env.sfu.publish("room", "pub", offer)
    await env.sfu.add_candidate("room", "pub", "publisher", None)  # libwebrtc's premature end
    for candidate in trickled:
        await env.sfu.add_candidate("room", "pub", "publisher", {"candidate": candidate, "sdpMid": "0", "sdpMLineIndex": 0})
    await env.sfu.add_candidate("room", "pub", "publisher", None)
    await publisher.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    await asyncio.wait_for(connected.wait(), 20 * TIME_SCALE)
    assert not [m for m in publisher.messages if m.get("type") == "error"], publisher.messages
