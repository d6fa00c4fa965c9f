"""Tone bot: publishes a 440 Hz tone and a moving test pattern.

    python examples/tone_bot.py --url ws://127.0.0.1:8080/ws --room demo
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import struct
from collections.abc import AsyncIterator

import av
from aiortc import VideoStreamTrack

from switchboard import (
    IceOptions,
    MediaReconnected,
    PcmSource,
    Room,
    SignalingReconnecting,
    SignalingResumed,
)


async def tone(frequency: float, amplitude: float = 0.3) -> AsyncIterator[bytes]:
    """Endless 48 kHz mono PCM, 20 ms per chunk (PcmSource paces the playback)."""
    n = 0
    while True:
        yield b"".join(
            struct.pack("<h", round(amplitude * 32767 * math.sin(2 * math.pi * frequency * (n + i) / 48_000)))
            for i in range(960)
        )
        n += 960


class TestPattern(VideoStreamTrack):
    """A vertical white bar sweeping across a grey picture, 30 frames per second."""

    def __init__(self, width: int = 320, height: int = 240) -> None:
        super().__init__()
        self.width, self.height = width, height
        self.frames = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(width=self.width, height=self.height, format="yuv420p")
        luma = frame.planes[0]
        bar = (self.frames * 4) % self.width
        row = bytearray(b"\x50" * luma.line_size)
        row[bar:bar + 16] = b"\xeb" * len(row[bar:bar + 16])
        luma.update(bytes(row) * self.height)
        for plane in frame.planes[1:]:
            plane.update(b"\x80" * plane.buffer_size)
        frame.pts, frame.time_base = pts, time_base
        self.frames += 1
        return frame


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="signaling URL, e.g. ws://127.0.0.1:8080/ws")
    parser.add_argument("--room", required=True)
    parser.add_argument("--name", default="tone-bot")
    parser.add_argument("--token", help="access token, if the server requires one")
    parser.add_argument("--ice-host", action="append", default=[], help="gather ICE candidates on this address only (repeatable)")
    parser.add_argument("--frequency", type=float, default=440.0)
    parser.add_argument("--no-video", action="store_true", help="publish the tone only")
    parser.add_argument("--duration", type=float, help="leave after this many seconds (default: run until interrupted)")
    return parser.parse_args()


async def main(args: argparse.Namespace) -> None:
    room = await Room.connect(args.url, room=args.room, name=args.name, token=args.token,
                              ice=IceOptions(host_addresses=tuple(args.ice_host)), auto_subscribe=False)
    room.on(SignalingReconnecting, lambda e: print(f"signaling lost ({e.code}), reconnecting", flush=True))
    room.on(SignalingResumed, lambda e: print("signaling resumed", flush=True))
    room.on(MediaReconnected, lambda e: print(f"media reconnected ({e.reason})", flush=True))
    try:
        await room.publish(PcmSource.from_chunks(tone(args.frequency)), source="microphone")
        if not args.no_video:
            await room.publish(TestPattern(), source="camera")
        print(f"publishing in {args.room} as {room.local_peer}", flush=True)
        if args.duration is not None:
            await asyncio.sleep(args.duration)
        else:
            await room.wait_closed()
    finally:
        await room.close()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: leave the room and exit quietly
        asyncio.run(main(arguments()))
