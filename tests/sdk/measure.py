"""What a Python subscriber decoded, in media time (robust to a loaded machine's scheduling)."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

_WRAP = 1 << 32


@dataclass
class Decoded:
    """Frames decoded from one track, with their RTP-derived ``pts`` unwrapped."""

    kind: str
    step: int  # pts per frame: 960 for 20 ms Opus, 3000 for 30 fps video
    pts: list[int] = field(default_factory=list)
    #: Loop time at which each frame came out of the decoder.
    arrivals: list[float] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, pts: int) -> None:
        if self.pts:
            delta = (pts - self.pts[-1] % _WRAP) % _WRAP
            if delta >= _WRAP // 2:
                delta -= _WRAP
            pts = self.pts[-1] + delta
        self.pts.append(pts)
        self.arrivals.append(asyncio.get_running_loop().time())
        self.changed.set()

    @property
    def frames(self) -> int:
        return len(self.pts)

    def sent(self) -> int:
        """Frames the publisher sent over the span decoded (its timestamps are contiguous)."""
        return (max(self.pts) - min(self.pts)) // self.step + 1 if self.pts else 0

    def ratio(self) -> float:
        return self.frames / self.sent() if self.pts else 0.0

    def longest_hole(self) -> float:
        """The longest stretch of media time without a decoded frame, in seconds."""
        ordered = sorted(self.pts)
        clock = 48_000 if self.kind == "audio" else 90_000
        return max((b - a for a, b in itertools.pairwise(ordered)), default=0) / clock

    def longest_stall(self, since: int = 0) -> float:
        """The longest wall-clock wait between two decoded frames (from frame ``since`` on)."""
        return max((b - a for a, b in itertools.pairwise(self.arrivals[since:])), default=0.0)

    async def wait_frames(self, frames: int, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while self.frames < frames:
                self.changed.clear()
                await self.changed.wait()


async def decode(track: MediaStreamTrack, into: Decoded) -> None:
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        if frame.pts is not None:
            into.add(frame.pts)
