"""PCM in and out for agents: 16-bit little-endian samples, 48 kHz by default, mono or stereo.

- :class:`PcmReader` turns a received audio track into fixed-size :class:`PcmFrame` s on the
  track's *media* timeline: samples are placed by the frames' timestamps, a lost or late packet
  becomes silence of the right length, overlaps are dropped. What it yields is therefore as long
  as the audio the publisher sent over the same span (a recorder's file keeps its duration).
- :class:`PcmSource` is an audio track to publish: PCM goes in with :meth:`PcmSource.push` or
  from an async generator (:meth:`PcmSource.play`, :meth:`PcmSource.from_chunks`) and comes out
  as 20 ms frames paced on the clock. A small bounded buffer absorbs the producer's jitter
  (a TTS engine delivering in bursts); when it runs dry the track sends silence, never stalls.
"""

from __future__ import annotations

import asyncio
import fractions
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

SAMPLE_RATE = 48_000
_RTP_WRAP = 1 << 32


@dataclass(frozen=True, slots=True)
class PcmFrame:
    """A run of interleaved s16le samples."""

    data: bytes
    sample_rate: int
    channels: int
    #: Position of the first sample on the track's media timeline (samples since the reader
    #: started), so gaps and the total duration can be told.
    position: int

    @property
    def samples(self) -> int:
        """Samples per channel."""
        return len(self.data) // (2 * self.channels)

    @property
    def duration(self) -> float:
        return self.samples / self.sample_rate


def _layout(channels: int) -> str:
    if channels not in (1, 2):
        raise ValueError("channels must be 1 or 2")
    return "mono" if channels == 1 else "stereo"


class PcmReader:
    """``async for frame in PcmReader(track)``: fixed-size PCM frames of a received track.

    ``max_gap`` (seconds): a longer hole in the timestamps (the publisher paused, a media
    reconnect) is not filled with silence; the timeline goes on from the new audio.
    """

    def __init__(
        self,
        track: MediaStreamTrack,
        *,
        sample_rate: int = SAMPLE_RATE,
        channels: int = 1,
        frame_ms: int = 20,
        max_gap: float = 2.0,
    ) -> None:
        self.track = track
        self.sample_rate = sample_rate
        self.channels = channels
        self._resampler = av.AudioResampler(format="s16", layout=_layout(channels), rate=sample_rate)
        self._bytes_per_sample = 2 * channels
        self._frame_bytes = sample_rate * frame_ms // 1000 * self._bytes_per_sample
        self._max_gap = round(max_gap * sample_rate)
        self._pending = bytearray()
        #: Media position (samples) of the first byte of ``_pending``.
        self._position = 0
        #: Where the next decoded frame is expected, in samples (None before the first).
        self._expected: int | None = None
        self._last_pts: int | None = None
        self._clock = 0  # unwrapped pts of the latest frame, in the frames' time base
        self._ended = False
        #: Samples of silence inserted for holes, and samples dropped as overlaps.
        self.filled = 0
        self.overlapped = 0

    def __aiter__(self) -> AsyncIterator[PcmFrame]:
        return self

    async def __anext__(self) -> PcmFrame:
        while len(self._pending) < self._frame_bytes:
            if self._ended:
                if not self._pending:
                    raise StopAsyncIteration
                return self._take(len(self._pending))
            try:
                frame = await self.track.recv()
            except MediaStreamError:
                self._ended = True
                continue
            self.add(frame)
        return self._take(self._frame_bytes)

    def _take(self, size: int) -> PcmFrame:
        data = bytes(self._pending[:size])
        del self._pending[:size]
        frame = PcmFrame(data, self.sample_rate, self.channels, self._position)
        self._position += len(data) // self._bytes_per_sample
        return frame

    def add(self, frame: Any) -> None:
        """Place one decoded ``av.AudioFrame`` on the timeline (what ``__anext__`` does)."""
        start = self._start_of(frame)
        bps = self._bytes_per_sample
        data = b"".join(bytes(out.planes[0])[: out.samples * bps] for out in self._resampler.resample(frame))
        samples = len(data) // bps
        if start is not None and self._expected is not None and abs(start - self._expected) <= self._max_gap:
            gap = start - self._expected
            if gap > 0:  # a hole: lost or late packets
                self._pending.extend(bytes(gap * bps))
                self.filled += gap
            elif gap < 0:  # overlaps what we already have
                cut = min(-gap, samples)
                data = data[cut * bps:]
                self.overlapped += cut
            self._expected = max(self._expected, start + samples)
        elif start is not None:
            self._expected = start + samples  # the first frame, or a new timeline
        self._pending.extend(data)

    def _start_of(self, frame: Any) -> int | None:
        """The frame's start on our timeline, in output samples (RTP wrap-around unwrapped)."""
        pts = frame.pts
        if pts is None or frame.time_base is None:
            return None
        if self._last_pts is None:
            self._clock = 0
        else:
            delta = (pts - self._last_pts) % _RTP_WRAP
            if delta >= _RTP_WRAP // 2:
                delta -= _RTP_WRAP
            self._clock += delta
        self._last_pts = pts
        position: int = round(self._clock * frame.time_base * self.sample_rate)
        return position


class PcmSource(MediaStreamTrack):
    """An audio track fed with PCM (s16le, ``sample_rate``, ``channels``), paced by the SDK."""

    kind = "audio"

    def __init__(
        self,
        *,
        sample_rate: int = SAMPLE_RATE,
        channels: int = 1,
        frame_ms: int = 20,
        max_buffer: float = 2.0,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.channels = channels
        self._layout = _layout(channels)
        self._frame_samples = sample_rate * frame_ms // 1000
        self._frame_bytes = self._frame_samples * 2 * channels
        self._frame_seconds = frame_ms / 1000
        self._resync_after = 1.0
        self._max_bytes = round(max_buffer * sample_rate) * 2 * channels
        self._buffer = bytearray()
        self._room = asyncio.Event()
        self._room.set()
        self._start: float | None = None
        self._sent = 0  # frames
        self._feeder: asyncio.Task[None] | None = None
        self._chunks: AsyncIterable[bytes] | None = None
        #: Frames sent as silence because the buffer was empty (underruns).
        self.underruns = 0
        #: Bytes dropped because ``push`` overfilled the buffer.
        self.dropped = 0

    @classmethod
    def from_chunks(cls, chunks: AsyncIterable[bytes], **kwargs: Any) -> PcmSource:
        """A track that plays ``chunks`` (any sizes) once published; the generator is pulled
        only as fast as the audio plays. The track owns the task that reads it."""
        source = cls(**kwargs)
        source._chunks = chunks
        return source

    @property
    def buffered(self) -> float:
        """Seconds of audio waiting to be sent."""
        return len(self._buffer) / (2 * self.channels * self.sample_rate)

    def push(self, pcm: bytes) -> None:
        """Queue PCM now; beyond ``max_buffer`` the oldest audio is dropped."""
        self._buffer.extend(pcm)
        excess = len(self._buffer) - self._max_bytes
        if excess > 0:
            excess += (-excess) % (2 * self.channels)
            del self._buffer[:excess]
            self.dropped += excess
        if len(self._buffer) >= self._max_bytes:
            self._room.clear()

    async def play(self, chunks: AsyncIterable[bytes]) -> None:
        """Feed ``chunks`` in, waiting while the buffer is full (nothing is dropped)."""
        async for chunk in chunks:
            while len(self._buffer) + len(chunk) > self._max_bytes and self._buffer:
                self._room.clear()
                await self._room.wait()
            self.push(chunk)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._chunks is not None and self._feeder is None:
            self._feeder = asyncio.get_running_loop().create_task(self.play(self._chunks), name="pcm-source")
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._start is None:
            self._start = now
        due = self._start + self._sent * self._frame_seconds
        if now - due > self._resync_after:
            # Nobody read for a while (a media reconnect): pick the clock up from now. A shorter
            # lag (a busy loop) is caught up by sending the late frames at once.
            self._start = now - self._sent * self._frame_seconds
            due = now
        if due > now:
            await asyncio.sleep(due - now)
        if len(self._buffer) >= self._frame_bytes:
            data = bytes(self._buffer[: self._frame_bytes])
            del self._buffer[: self._frame_bytes]
        else:
            if self._buffer:
                data = bytes(self._buffer) + bytes(self._frame_bytes - len(self._buffer))
                self._buffer.clear()
            else:
                data = bytes(self._frame_bytes)
            self.underruns += 1
        if len(self._buffer) < self._max_bytes:
            self._room.set()
        frame = av.AudioFrame(format="s16", layout=self._layout, samples=self._frame_samples)
        frame.planes[0].update(data)
        frame.sample_rate = self.sample_rate
        frame.pts = self._sent * self._frame_samples
        frame.time_base = fractions.Fraction(1, self.sample_rate)
        self._sent += 1
        return frame

    def stop(self) -> None:
        super().stop()
        if self._feeder is not None:
            self._feeder.cancel()
