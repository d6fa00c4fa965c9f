"""RTP sequence-number arithmetic: 16-bit unwrapping and a duplicate window.

Sequence numbers wrap every 65,536 packets (about ten minutes of video), so everything after
ingest works on *extended* sequence numbers: plain ints that keep growing.
"""

from __future__ import annotations

SEQ_MODULO = 1 << 16
_HALF = 1 << 15


class SequenceUnwrapper:
    """Extends 16-bit sequence numbers to ever-growing ints (RFC 3550 appendix A.1 idea).

    A number is placed in whichever 65,536-cycle puts it closest to the highest one seen, so
    late or repeated packets (retransmissions) get their true, older, extended value.
    """

    __slots__ = ("_highest",)

    def __init__(self) -> None:
        self._highest: int | None = None

    def unwrap(self, seq: int) -> int:
        if self._highest is None:
            # Start one cycle up so that packets slightly older than the first one stay >= 0.
            self._highest = SEQ_MODULO + seq
            return self._highest
        delta = (seq - self._highest) % SEQ_MODULO
        if delta >= _HALF:
            delta -= SEQ_MODULO
        extended = self._highest + delta
        if extended > self._highest:
            self._highest = extended
        return extended

    @property
    def highest(self) -> int | None:
        return self._highest


class DuplicateWindow:
    """Remembers which of the last ``size`` extended sequence numbers were seen.

    Publishers repeat packets (a NACK answered over RTX after the original arrived late, or two
    NACKs for one loss); forwarding each copy would waste subscriber bandwidth and confuse their
    NACK logic. Packets older than the window are reported as duplicates too: they are too late
    to be useful and could not be checked.
    """

    __slots__ = ("_highest", "_mask", "_slots")

    def __init__(self, size: int = 2048) -> None:
        if size <= 0 or size & (size - 1):
            raise ValueError("size must be a power of two")
        self._mask = size - 1
        self._slots = [-1] * size
        self._highest: int | None = None

    def check_and_add(self, extended_seq: int) -> bool:
        """Record ``extended_seq``; return True if it is new, False if seen (or too old)."""
        highest = self._highest
        if highest is not None and extended_seq <= highest - len(self._slots):
            return False
        slot = extended_seq & self._mask
        if self._slots[slot] == extended_seq:
            return False
        self._slots[slot] = extended_seq
        if highest is None or extended_seq > highest:
            self._highest = extended_seq
        return True
