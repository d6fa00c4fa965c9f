"""An aiortc media client for the interop tests, speaking the same JSON lines as gst_client.py.

It runs as a subprocess inside the test sandbox (the SFU's UDP ports are only reachable there).
``--publish`` sends a synthetic 320x240 video (``--codec VP8`` or ``H264``); ``--subscribe``
receives and counts decoded video frames and audio frames per mid.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import sys
import time
from typing import Any

import av
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from sfu.aiortc_hooks import set_process_host_addresses


def send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


class Pattern(VideoStreamTrack):
    """A moving grey ramp at 30 fps."""

    def __init__(self) -> None:
        super().__init__()
        self.index = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(width=320, height=240, format="yuv420p")
        for plane in frame.planes:
            plane.update(bytes([(self.index * 4) % 256]) * plane.buffer_size)
        self.index += 1
        frame.pts, frame.time_base = pts, time_base or fractions.Fraction(1, 90000)
        return frame


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--publish", action="store_true")
    parser.add_argument("--subscribe", action="store_true")
    parser.add_argument("--codec", default="VP8")
    args = parser.parse_args()
    set_process_host_addresses(("127.0.0.1",))  # the sandbox has only lo; aioice skips it
    config = RTCConfiguration(iceServers=[])
    video: dict[str, int] = {}
    audio: dict[str, int] = {}
    first: dict[str, float] = {}
    tasks: set[asyncio.Task[None]] = set()
    publisher = subscriber = None

    if args.publish:
        publisher = RTCPeerConnection(config)
        transceiver = publisher.addTransceiver(Pattern(), direction="sendonly")
        transceiver.setCodecPreferences([
            c for c in RTCRtpSender.getCapabilities("video").codecs
            if c.mimeType.lower() == f"video/{args.codec.lower()}"
            # H.264: constrained baseline, packetization-mode 1 (what the SFU forwards)
            and (args.codec != "H264" or (
                c.parameters.get("packetization-mode") == "1" and c.parameters.get("profile-level-id") == "42e01f"
            ))
        ][:1])
        await publisher.setLocalDescription(await publisher.createOffer())
        send({"type": "publish", "sdp": publisher.localDescription.sdp})

    async def consume(track: MediaStreamTrack, mid: str) -> None:
        counters = video if track.kind == "video" else audio
        try:
            while True:
                await track.recv()
                counters[mid] = counters.get(mid, 0) + 1
                first.setdefault(mid, time.time())
        except MediaStreamError:
            return

    if args.subscribe:
        subscriber = RTCPeerConnection(config)

        @subscriber.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            mid = next(str(t.mid) for t in subscriber.getTransceivers() if t.receiver.track is track)
            task = asyncio.get_running_loop().create_task(consume(track, mid))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async def report() -> None:
        while True:
            send({"type": "x-stats", "video": dict(video), "audio": dict(audio), "first_frame": dict(first), "t": time.time()})
            await asyncio.sleep(0.25)

    reporter = asyncio.get_running_loop().create_task(report())
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            message = json.loads(line)
            kind = message.get("type")
            if kind == "publish-answer" and publisher is not None:
                await publisher.setRemoteDescription(RTCSessionDescription(message["sdp"], "answer"))
            elif kind == "subscriber-offer" and subscriber is not None:
                await subscriber.setRemoteDescription(RTCSessionDescription(message["sdp"], "offer"))
                await subscriber.setLocalDescription(await subscriber.createAnswer())
                send({"type": "subscriber-answer", "sdp": subscriber.localDescription.sdp})
            elif kind == "x-quit":
                break
    finally:
        reporter.cancel()
        for pc in (publisher, subscriber):
            if pc is not None:
                await pc.close()


if __name__ == "__main__":
    asyncio.run(main())
