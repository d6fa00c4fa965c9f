"""Issue 14 finding 4: a 100-participant room fits every limit on the path of its SDPs.

At the old limits (64 KiB frames, 2,000 SDP lines) a legitimate room broke at ~59 camera+mic
participants: the subscriber's answer was refused ``too-large`` and its media never started.
Here a real server with its SFU takes 99 camera+mic publishers; the 100th participant gets the
SFU's real subscriber offer (198 m-sections) and answers it the way Chromium does
(``tests/chromium_sdp.py``, the same bytes and lines as Chromium's own answer). The answer
must pass the frame limit, the schema, the SDP line check and aiortc, with the shipped default
limits, and the subscriber connection must go on negotiating afterwards.
"""

from __future__ import annotations

import json
import re

from aiortc import AudioStreamTrack, RTCPeerConnection, VideoStreamTrack

from signaling.core.config import LimitsConfig, SecurityConfig
from tests.chromium_sdp import chromium_answer
from tests.conftest import PATIENCE
from tests.media.conftest import MediaServerFactory
from tests.raw import Raw
from tests.sfu.sfu_testpeers import client_configuration

PUBLISHERS = 99


async def camera_and_mic_offer() -> str:
    pc = RTCPeerConnection(client_configuration())
    try:
        pc.addTransceiver(AudioStreamTrack(), "sendonly")
        pc.addTransceiver(VideoStreamTrack(), "sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


def with_msid(offer: str, n: int) -> str:
    """The same offer as publisher ``n`` would send it (its own stream and track ids)."""
    return re.sub(r"a=msid:(\S+) (\S+)", lambda m: f"a=msid:s{n}-{m[1][:20]} t{n}-{m[2][:20]}", offer)


async def test_a_full_room_of_camera_and_mic_publishers_fits_every_limit(
    media_server: MediaServerFactory,
) -> None:
    server = await media_server()
    security, limits = server.hub.config.security, server.hub.config.limits
    # The limits on the path are the shipped defaults.
    assert limits.max_message_bytes == LimitsConfig().max_message_bytes
    assert security.max_sdp_lines == SecurityConfig().max_sdp_lines
    assert security.max_tracks_per_room == SecurityConfig().max_tracks_per_room
    room = "full-room"
    template = await camera_and_mic_offer()
    publishers: list[Raw] = []
    subscriber: Raw | None = None
    try:
        for n in range(PUBLISHERS):
            raw = await Raw.joined(server.url, room, f"p{n}", subscribe=False)
            publishers.append(raw)
            await raw.send({"type": "publish", "cseq": 1, "sdp": with_msid(template, n)})
            while (message := await raw.recv())["type"] != "publish-answer":
                assert message["type"] != "error", message

        subscriber = await Raw.joined(server.url, room, "sub")
        published = 0
        while (message := await subscriber.recv())["type"] != "subscriber-offer":
            assert message["type"] in ("track-published", "peer-joined"), message
            published += message["type"] == "track-published"
        offer = message["sdp"]
        sections = offer.count("\r\nm=")
        assert (published, sections) == (2 * PUBLISHERS, 2 * PUBLISHERS)

        answer = chromium_answer(offer)
        frame = json.dumps({"type": "subscriber-answer", "cseq": 1, "sdp": answer}, separators=(",", ":"))
        lines = answer.count("\r\n")
        print(
            f"subscriber offer: {len(offer)} bytes, {offer.count(chr(10))} lines; Chromium-shaped answer: "
            f"{len(answer)} bytes, {lines} lines, frame {len(frame)} bytes "
            f"(limits {limits.max_message_bytes} bytes, {security.max_sdp_lines} lines)"
        )
        # The old limits could not carry it (the regression this test guards).
        assert len(frame) > 64 * 1024 and lines > 2000
        await subscriber.ws.send_str(frame)
        # Confirmed (ping.last_cseq) without any error: frame size, schema, line check and
        # aiortc all accepted it.
        while True:
            message = await subscriber.recv(skip_pings=False)
            assert message["type"] != "error", message
            if message["type"] == "ping" and message["last_cseq"] >= 1:
                break

        # The leg is live: a departure is offered again at once (not waiting on a lost answer).
        await publishers[-1].send({"type": "leave", "cseq": 2})
        while (message := await subscriber.recv(PATIENCE))["type"] != "subscriber-offer":
            assert message["type"] in ("track-unpublished", "peer-left", "peer-reconnecting"), message
        assert message["sdp"].count("\r\nm=") == 2 * PUBLISHERS  # slots are kept for reuse
        assert message["sdp"].count("a=msid:switchboard-idle ") == 2  # freed: silent, idle msid
    finally:
        for raw in [*publishers, *([subscriber] if subscriber else [])]:
            await raw.close()
