"""What streaming encoders send: H.264 High profile over WHIP, forwarded and recorded as is.

The publisher is aiortc fed with *pre-encoded* packets from libx264 (profile High, as OBS and
FFmpeg send), so the bitstream really is High profile; aiortc only packetizes it. A room
participant decodes it through the SFU, and a recording of it is an MKV whose every frame
decodes. Audio is Opus in stereo.
"""

from __future__ import annotations

import asyncio
import fractions
import json
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from sfu.h264 import split_annexb
from tests.conftest import RunningServer, ServerFactory, eventually
from tests.media.conftest import ADMIN_TOKEN, Peers, media_config
from tests.media.peers import LOOPBACK, rtc_configuration
from tests.sfu.sfu_testpeers import CountingAudioTrack
from tests.whip.test_recording import PacedClock

FPS = 30


class HighProfileTrack(MediaStreamTrack):
    """Pre-encoded H.264 (libx264; High profile unless told), a keyframe every second."""

    kind = "video"

    def __init__(self, profile: str = "high") -> None:
        super().__init__()
        self.clock = PacedClock()
        self.encoder = av.CodecContext.create("libx264", "w")
        self.encoder.width, self.encoder.height, self.encoder.pix_fmt = 320, 240, "yuv420p"
        self.encoder.time_base = fractions.Fraction(1, FPS)
        self.encoder.options = {"profile": profile, "tune": "zerolatency", "g": str(FPS), "bf": "0"}
        self.index = 0
        self.profiles: set[int] = set()
        self.pending: list[av.Packet] = []

    async def recv(self) -> av.Packet:
        while not self.pending:
            index = self.index
            self.index += 1
            await self.clock.at(index / FPS)
            picture = np.full((240, 320, 3), (index * 3) % 255, np.uint8)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
            frame.pts = index
            for packet in self.encoder.encode(frame):
                self.pending.append(packet)
                # profile_idc of every SPS sent: 100 is High.
                self.profiles.update(u[1] for u in split_annexb(bytes(packet)) if u[0] & 0x1F == 7)
        packet = self.pending.pop(0)
        packet.time_base = fractions.Fraction(1, FPS)
        return packet


def _high_profile_preferences(transceiver: Any, profile_level_id: str = "64001f") -> None:
    codecs = RTCRtpSender.getCapabilities("video").codecs
    high = [c for c in codecs if c.parameters.get("profile-level-id") == profile_level_id]
    assert high, f"the SFU's aiortc boundary should have added H.264 {profile_level_id}"
    transceiver.setCodecPreferences(high + [c for c in codecs if c.mimeType == "video/rtx"])


async def test_h264_high_is_accepted_forwarded_and_recorded(start_server: ServerFactory, tmp_path: Path) -> None:
    from signaling.core.config import IceConfig

    server: RunningServer = await start_server(media_config(IceConfig(host_addresses=(LOOPBACK,))))
    peers = Peers()
    pc = RTCPeerConnection(rtc_configuration([]))
    track = HighProfileTrack()
    try:
        viewer = await peers.subscriber(server, "obs", "viewer")
        _high_profile_preferences(pc.addTransceiver(track, "sendonly"))
        pc.addTransceiver(CountingAudioTrack(), "sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        async with aiohttp.ClientSession() as http, http.post(
            f"{server.http_url}/whip/obs", data=pc.localDescription.sdp, headers={"Content-Type": "application/sdp"}
        ) as response:
            assert response.status == 201, await response.text()
            answer = await response.text()
        assert "profile-level-id=64001f" in answer
        assert "stereo=1" in answer  # Opus: the SFU takes stereo
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await viewer.wait_decoding(frames=20)
        assert track.profiles == {100}

        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as http:
            async with http.post(f"{server.http_url}/admin/rooms/obs/recording", json={"dir": str(tmp_path)}) as r:
                assert r.status == 201, await r.text()
            mark = track.index
            await eventually(lambda: track.index >= mark + 3 * FPS, what="~3 s of recording")
            async with http.delete(f"{server.http_url}/admin/rooms/obs/recording") as r:
                stopped = json.loads(await r.text())["recordings"]
        assert len(stopped) == 1 and stopped[0]["container"] == "mkv" and stopped[0]["state"] == "finished"
        path = Path(stopped[0]["file"])
        with av.open(str(path)) as container:
            video = container.streams.video[0]
            assert video.codec_context.name == "h264" and video.codec_context.profile == "High"
            assert (video.codec_context.width, video.codec_context.height) == (320, 240)
            packets = [p for p in container.demux(video) if p.size]
            decoded = sum(len(p.decode()) for p in packets)
        assert len(packets) > FPS and decoded == len(packets)  # the first keyframe may take 1 s (GOP)
        stats = server.hub.media.stats() if server.hub.media else {}
        assert stats["transcoding"]["frames_to_decoder"] == 0 and stats["transcoding"]["encoder_calls"] == 0
    finally:
        await pc.close()
        await peers.close()
        await asyncio.sleep(0)
