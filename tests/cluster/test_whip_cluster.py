"""WHIP, WHEP and recording in a cluster: a signaling node takes the HTTP requests, the SFU node
holding the room runs the media and writes the recording (RPC ops ``play``, ``record_*``).

Real node processes and redis-server; the publisher and the player are aiortc in this process.
"""

from __future__ import annotations

import asyncio
import fractions
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import av
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from sfu import aiortc_hooks
from tests.cluster.conftest import PATIENCE, Cluster
from tests.media.peers import LOOPBACK, PatternVideoTrack, rtc_configuration
from tests.sfu.sfu_testpeers import CountingAudioTrack

ADMIN = "cluster-whip-admin-token"


@pytest.fixture(autouse=True)
def _loopback_only() -> Iterator[None]:
    aiortc_hooks.set_process_host_addresses((LOOPBACK,))
    yield
    aiortc_hooks.set_process_host_addresses(None)


async def _offer(http: aiohttp.ClientSession, url: str, pc: RTCPeerConnection) -> None:
    await pc.setLocalDescription(await pc.createOffer())
    async with http.post(url, data=pc.localDescription.sdp, headers={"Content-Type": "application/sdp"}) as response:
        assert response.status == 201, await response.text()
        answer = await response.text()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))


async def test_whip_whep_and_recording_through_the_sfu_node(cluster: Cluster, tmp_path: Path) -> None:
    await cluster.sfu("sfu-1")
    _, ws_url = await cluster.signaling("sig-1", args=["--admin-token", ADMIN])
    base = ws_url.removeprefix("ws://").removesuffix("/ws")
    base = f"http://{base}"
    publisher = RTCPeerConnection(rtc_configuration([]))
    player = RTCPeerConnection(rtc_configuration([]))
    frames: list[av.VideoFrame] = []
    got_video = asyncio.Event()

    @player.on("track")
    def on_track(track: object) -> None:
        async def consume() -> None:
            while True:
                frame = await track.recv()  # type: ignore[attr-defined]
                if isinstance(frame, av.VideoFrame):
                    frames.append(frame)
                    if len(frames) >= 30:
                        got_video.set()

        if getattr(track, "kind", "") == "video":
            tasks.append(asyncio.get_running_loop().create_task(consume()))

    tasks: list[asyncio.Task[None]] = []
    try:
        async with aiohttp.ClientSession() as http:
            publisher.addTransceiver(PatternVideoTrack(), "sendonly")
            publisher.addTransceiver(CountingAudioTrack(), "sendonly")
            await _offer(http, f"{base}/whip/hall", publisher)
            player.addTransceiver("video", "recvonly")
            player.addTransceiver("audio", "recvonly")
            await _offer(http, f"{base}/whep/hall", player)
            async with asyncio.timeout(PATIENCE):
                await got_video.wait()
            assert (frames[-1].width, frames[-1].height) == (320, 240)

            admin = {"Authorization": f"Bearer {ADMIN}"}
            async with http.post(f"{base}/admin/rooms/hall/recording", json={"dir": str(tmp_path)}, headers=admin) as r:
                assert r.status == 201, await r.text()
                started = (await r.json())["recordings"]
            assert len(started) == 1
            mark = len(frames)
            async with asyncio.timeout(PATIENCE):
                while len(frames) < mark + 60:  # ~2 s recorded, as the player saw it
                    await asyncio.sleep(0.05)
            async with http.get(f"{base}/admin/recordings", headers=admin) as r:
                assert started[0]["id"] in {x["id"] for x in (await r.json())["recordings"]}
            async with http.delete(f"{base}/admin/rooms/hall/recording", headers=admin) as r:
                stopped = (await r.json())["recordings"]
        assert stopped[0]["state"] == "finished", stopped
        path = Path(stopped[0]["file"])
        assert path.is_relative_to(tmp_path)
        with av.open(str(path)) as container:
            video = container.streams.video[0]
            packets = [p for p in container.demux(video) if p.size]
            decoded = sum(len(p.decode()) for p in packets)
            assert container.streams.audio, "no audio stream"
        assert len(packets) > 30 and decoded == len(packets)
        assert float(packets[-1].pts * video.time_base) > 1.0 * fractions.Fraction(1)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await player.close()
        await publisher.close()
