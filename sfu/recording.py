"""Recording without transcoding, the pure part: RTP packets in, timed codec frames out.

Three objects, none doing I/O, all tested without sockets or files:

* :class:`FrameAssembler` turns one video track's (de-duplicated, RTX-unwrapped) packets into
  complete frames. It emits a frame only when every packet from the frame's first to its
  marker packet is there, and starts (and restarts after any loss it cannot wait out) on a
  keyframe, so a gap never reaches the file as a corrupt frame. aiortc's own ``JitterBuffer``
  is not used for video because after an overflow it can hand out a frame whose first packets
  were lost.
* :class:`AudioOrder` drops late or duplicate audio packets (each Opus packet is a frame).
* :class:`MediaClock` maps a stream's RTP timestamps to the publisher's wall clock (NTP) from
  its RTCP sender reports (RFC 3550 section 6.4.1). Audio and video of one publisher share that
  clock, which is what puts them in sync in the file.
* :class:`Timeline` chooses the file's time zero (the first video keyframe, or the first audio
  frame for an audio-only file) and turns wall-clock times into presentation timestamps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

#: Seconds between 1900 (NTP epoch) and 1970 (Unix epoch).
NTP_UNIX_OFFSET = 2_208_988_800


@dataclass(slots=True)
class Frame:
    """One complete encoded frame of a stream."""

    #: RTP timestamp (unwrapped: it keeps growing past 2**32).
    timestamp: int
    data: bytes
    keyframe: bool
    #: Wall-clock second (Unix time) the last packet of the frame arrived.
    arrival: float


class _Pending:
    __slots__ = ("arrival", "marker", "payload", "timestamp")

    def __init__(self, timestamp: int, marker: int, payload: bytes, arrival: float) -> None:
        self.timestamp = timestamp
        self.marker = marker
        self.payload = payload
        self.arrival = arrival


class FrameAssembler:
    """Complete video frames from packets with extended sequence numbers, in any order.

    ``is_keyframe_start(payload)`` tells whether a packet begins a keyframe (sfu.keyframe);
    ``depayload(payload)`` turns the payloads of one frame into the codec bitstream. A frame
    that waits for a lost packet longer than ``max_wait`` seconds (NACK/RTX had its chance) or
    ``max_gap`` packets is given up: everything before the next keyframe start is dropped and
    :attr:`resyncs` counts it.
    """

    def __init__(
        self,
        is_keyframe_start: Callable[[bytes], bool],
        depayload: Callable[[bytes], bytes],
        *,
        max_gap: int = 256,
        max_wait: float = 1.0,
    ) -> None:
        self._is_keyframe = is_keyframe_start
        self._depayload = depayload
        self._max_gap = max_gap
        self._max_wait = max_wait
        #: Arrival time of the first packet that had to wait behind a hole (None: no hole).
        self._waiting_since: float | None = None
        self._packets: dict[int, _Pending] = {}
        #: Sequence number the next frame starts at (None: waiting for a keyframe start).
        self._next: int | None = None
        self._highest: int | None = None
        self._unwrap = TimestampUnwrapper()
        self.frames = 0
        self.resyncs = 0
        self.dropped_packets = 0

    def push(self, seq: int, timestamp: int, marker: int, payload: bytes, arrival: float) -> list[Frame]:
        if self._next is not None and seq < self._next:
            self.dropped_packets += 1  # late: its frame was emitted or given up
            return []
        if seq in self._packets:
            return []
        self._packets[seq] = _Pending(self._unwrap.unwrap(timestamp), marker, payload, arrival)
        if self._highest is None or seq > self._highest:
            self._highest = seq
        frames = self._drain()
        if self._next is None or not self._packets:
            self._waiting_since = None
            return frames
        if frames or self._waiting_since is None:
            self._waiting_since = arrival  # progress, or a new wait begins
        too_far = self._highest - self._next > self._max_gap
        if too_far or arrival - self._waiting_since > self._max_wait:
            self.resyncs += 1
            stuck = self._next
            self._next = None
            self._waiting_since = None
            frames += self._drain(after=max(stuck, self._highest - self._max_gap))
        return frames

    def _find_start(self, after: int | None) -> int | None:
        for seq in sorted(self._packets):
            if after is not None and seq <= after:
                continue
            if self._is_keyframe(self._packets[seq].payload):
                return seq
        return None

    def _drain(self, after: int | None = None) -> list[Frame]:
        if self._next is None:
            start = self._find_start(after)
            if start is None:
                if after is not None:
                    self._discard_below(after + 1)
                return []
            self._discard_below(start)
            self._next = start
        frames: list[Frame] = []
        while True:
            frame = self._complete_frame()
            if frame is None:
                return frames
            frames.append(frame)

    def _complete_frame(self) -> Frame | None:
        start = self._next
        assert start is not None
        first = self._packets.get(start)
        if first is None:
            return None
        seq = start
        parts: list[_Pending] = []
        while True:
            packet = self._packets.get(seq)
            if packet is None:
                return None
            if packet.timestamp != first.timestamp:
                # The marker packet was lost and the next frame began: drop this one and wait
                # for a keyframe (the next frame may reference the lost one).
                self._discard_below(seq)
                self._next = None
                self.resyncs += 1
                return None
            parts.append(packet)
            if packet.marker:
                break
            seq += 1
        for s in range(start, seq + 1):
            del self._packets[s]
        self._next = seq + 1
        try:
            data = b"".join(self._depayload(p.payload) for p in parts)
        except ValueError:
            self._next = None
            self.resyncs += 1
            return None
        self.frames += 1
        return Frame(first.timestamp, data, self._is_keyframe(first.payload), parts[-1].arrival)

    def _discard_below(self, seq: int) -> None:
        for s in [s for s in self._packets if s < seq]:
            del self._packets[s]
            self.dropped_packets += 1


class AudioOrder:
    """Audio packets in order: late and duplicate ones are dropped (each one is a frame)."""

    def __init__(self) -> None:
        self._last: int | None = None
        self._unwrap = TimestampUnwrapper()
        self.dropped_packets = 0

    def push(self, seq: int, timestamp: int, payload: bytes, arrival: float) -> list[Frame]:
        if self._last is not None and seq <= self._last:
            self.dropped_packets += 1
            return []
        self._last = seq
        if not payload:
            return []
        return [Frame(self._unwrap.unwrap(timestamp), payload, True, arrival)]


class TimestampUnwrapper:
    """32-bit RTP timestamps to a monotonic-ish integer line (wraps every ~13 h at 90 kHz)."""

    def __init__(self) -> None:
        self._last: int | None = None
        self._cycles = 0

    def unwrap(self, timestamp: int) -> int:
        if self._last is not None:
            delta = (timestamp - self._last) & 0xFFFFFFFF
            if delta < 0x80000000 and timestamp < self._last:
                self._cycles += 1
            elif delta >= 0x80000000 and timestamp > self._last and self._cycles:
                return (self._cycles - 1 << 32) + timestamp  # a late packet from before a wrap
        self._last = timestamp
        return (self._cycles << 32) + timestamp


def ntp_to_unix(ntp: int) -> float:
    """64-bit NTP timestamp (32.32) to Unix seconds."""
    return (ntp >> 32) - NTP_UNIX_OFFSET + (ntp & 0xFFFFFFFF) / 2**32


class MediaClock:
    """RTP timestamp -> publisher wall clock for one stream, from its sender reports.

    A sender report pairs an NTP time with an RTP timestamp; ``ntp - rtp / rate`` is the
    stream's clock offset. Senders that stamp reports when they *send* (aiortc, or any sender
    falling behind) report offsets that are late by their send delay, never early, so the
    smallest offset seen is the best estimate of the capture clock, and keeping it (rather than
    the latest) keeps the file's timeline as regular as the RTP timestamps. An offset more than
    :data:`REANCHOR` seconds away is a new timeline (the sender restarted) and replaces it.

    Without any report yet, :meth:`wall` returns None; :meth:`assume` sets a fallback mapping
    (arrival time of a frame) for publishers that never send reports.
    """

    #: Seconds of offset change that mean "another timeline" (a restarted sender's random RTP
    #: base is hours away), not send delay (an overloaded sender was seen 5+ s behind).
    REANCHOR = 60.0

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self._offset: float | None = None
        self.reports = 0
        self.assumed = False

    @property
    def synced(self) -> bool:
        return self._offset is not None

    def on_report(self, ntp_timestamp: int, rtp_timestamp: int, unwrapped_near: int | None) -> None:
        """A sender report. ``unwrapped_near`` is a recent unwrapped timestamp of the stream
        (to place the report's 32-bit timestamp on the same line), if any."""
        rtp = rtp_timestamp
        if unwrapped_near is not None:
            base = unwrapped_near - (unwrapped_near & 0xFFFFFFFF)
            candidates = (base - (1 << 32) + rtp, base + rtp, base + (1 << 32) + rtp)
            rtp = min(candidates, key=lambda c: abs(c - unwrapped_near))
        offset = ntp_to_unix(ntp_timestamp) - rtp / self.clock_rate
        self.reports += 1
        current = self._offset
        if current is None or self.assumed or offset < current or abs(offset - current) > self.REANCHOR:
            self._offset = offset
        self.assumed = False

    def assume(self, timestamp: int, wall: float) -> None:
        self._offset = wall - timestamp / self.clock_rate
        self.assumed = True

    def wall(self, timestamp: int) -> float | None:
        if self._offset is None:
            return None
        return self._offset + timestamp / self.clock_rate


class Timeline:
    """Time zero of a file and presentation timestamps relative to it (in seconds)."""

    def __init__(self) -> None:
        self.zero: float | None = None
        self.last: float = 0.0

    def start(self, wall: float) -> None:
        if self.zero is None:
            self.zero = wall

    def position(self, wall: float) -> float | None:
        """Seconds since time zero, or None for media before it (dropped)."""
        if self.zero is None or wall < self.zero - 1e-6:
            return None
        at = max(0.0, wall - self.zero)
        self.last = max(self.last, at)
        return at
