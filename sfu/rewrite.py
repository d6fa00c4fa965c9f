"""Per-subscriber rewriting of sequence numbers and timestamps.

Each subscriber's sender is its own RTP stream (its own SSRC), so it numbers packets itself.
Offsets map the publisher's (extended) numbers onto it. A subscriber slot keeps its rewriter
when its source changes (the publisher restarts its sender, or the slot is recycled for another
publisher's track): the outgoing stream then continues where it stopped, with no jump backwards,
so the subscriber's jitter buffer and decoder see one continuous stream.
"""

from __future__ import annotations

from collections.abc import Hashable

SEQ_MASK = 0xFFFF
TS_MASK = 0xFFFFFFFF


class StreamRewriter:
    """Maps ``(source, extended seq, timestamp)`` of forwarded packets onto one output stream.

    ``restart`` anchors a source at a packet (the first packet forwarded after keyframe gating);
    ``map`` translates the packets that follow. Packets older than the anchor, or from another
    source, are not forwarded (``map`` returns ``None``).
    """

    __slots__ = (
        "_clock_rate",
        "_last_out_time",
        "_last_out_ts",
        "_max_out",
        "_next_seq",
        "_next_ts",
        "_seq_offset",
        "_source",
        "_start",
        "_ts_offset",
    )

    def __init__(self, clock_rate: int, initial_seq: int, initial_timestamp: int) -> None:
        self._clock_rate = clock_rate
        self._next_seq = initial_seq
        self._next_ts = initial_timestamp & TS_MASK
        self._source: Hashable | None = None
        self._seq_offset = 0
        self._ts_offset = 0
        self._start = 0
        self._max_out: int | None = None
        self._last_out_ts = 0
        self._last_out_time = 0.0

    @property
    def source(self) -> Hashable | None:
        return self._source

    def restart(self, source: Hashable, extended_seq: int, timestamp: int, now: float) -> None:
        """Anchor ``source`` so that ``extended_seq`` becomes the next output sequence number.

        The output timestamp advances by the wall-clock time elapsed since the last packet
        (at least one tick), so playout timing stays plausible across the switch.
        """
        if self._max_out is None:
            out_seq = self._next_seq
            out_ts = self._next_ts
        else:
            out_seq = self._max_out + 1
            elapsed = max(0.0, now - self._last_out_time)
            out_ts = (self._last_out_ts + max(1, int(elapsed * self._clock_rate))) & TS_MASK
        self._source = source
        self._start = extended_seq
        self._seq_offset = out_seq - extended_seq
        self._ts_offset = (out_ts - timestamp) & TS_MASK

    def detach(self) -> None:
        """Forget the source (its packets are no longer mapped) but keep the output position."""
        self._source = None

    def map(
        self, source: Hashable, extended_seq: int, timestamp: int, now: float
    ) -> tuple[int, int] | None:
        """Return ``(sequence_number, timestamp)`` to send, or ``None`` to drop the packet."""
        if source != self._source or extended_seq < self._start:
            return None
        out = extended_seq + self._seq_offset
        out_ts = (timestamp + self._ts_offset) & TS_MASK
        if self._max_out is None or out > self._max_out:
            self._max_out = out
            self._last_out_ts = out_ts
            self._last_out_time = now
        return out & SEQ_MASK, out_ts
