"""VP8 payload descriptor (RFC 7741 section 4.2): reading it and keeping it continuous (pure).

Simulcast layers are independent VP8 streams, each with its own PictureID and TL0PICIDX. When
a subscriber's slot switches from one layer to another, its decoder would see these numbers
jump, and a receiver that tracks frame references by PictureID (libwebrtc does) may wait for
pictures that never come. :class:`Vp8Munger` rewrites both so that the slot's output continues
from the last value it sent (+1), as other SFUs do. The descriptor's size never changes: a
7-bit PictureID stays 7 bits (aiortc and libwebrtc send 15-bit ones).
"""

from __future__ import annotations

from dataclasses import dataclass

_PID_MASK = {7: 0x7F, 15: 0x7FFF}


@dataclass(frozen=True, slots=True)
class Vp8Descriptor:
    """Where the fields we rewrite sit in one packet's payload descriptor."""

    #: PictureID and its size in bits (7 or 15), or None if absent.
    picture_id: int | None
    picture_id_bits: int
    #: Byte offset of the PictureID (its first byte).
    picture_id_at: int
    #: TL0PICIDX, or None if absent, and its byte offset.
    tl0picidx: int | None
    tl0picidx_at: int
    #: Length of the descriptor in bytes (the VP8 payload header follows).
    length: int


def parse_descriptor(payload: bytes) -> Vp8Descriptor | None:
    """The payload descriptor of a VP8 RTP payload, or None if it is truncated."""
    if not payload:
        return None
    first = payload[0]
    pos = 1
    picture_id: int | None = None
    bits = 0
    pid_at = 0
    tl0: int | None = None
    tl0_at = 0
    if first & 0x80:  # X
        if len(payload) < 2:
            return None
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I
            if len(payload) <= pos:
                return None
            pid_at = pos
            if payload[pos] & 0x80:  # M: 15 bits
                if len(payload) <= pos + 1:
                    return None
                picture_id = ((payload[pos] & 0x7F) << 8) | payload[pos + 1]
                bits = 15
                pos += 2
            else:
                picture_id = payload[pos] & 0x7F
                bits = 7
                pos += 1
        if ext & 0x40:  # L
            if len(payload) <= pos:
                return None
            tl0 = payload[pos]
            tl0_at = pos
            pos += 1
        if ext & 0x30:  # T or K
            pos += 1
    if len(payload) < pos:
        return None
    return Vp8Descriptor(picture_id, bits, pid_at, tl0, tl0_at, pos)


def _newer(a: int, b: int, modulus: int) -> bool:
    """``a`` is after ``b`` in a wrapping sequence of ``modulus`` values."""
    return 0 < (a - b) % modulus < modulus // 2


class Vp8Munger:
    """Keeps one output stream's PictureID and TL0PICIDX continuous across source switches.

    Call :meth:`restart` when the slot starts forwarding another source (at its keyframe); the
    next packet then maps to the last PictureID sent + 1 (and TL0PICIDX + 1). Packets of the
    same source keep their relative numbering, reordering and gaps included.
    """

    __slots__ = ("_last_pid", "_last_tl0", "_pid_offset", "_restart", "_tl0_offset")

    def __init__(self) -> None:
        self._pid_offset = 0
        self._tl0_offset = 0
        self._last_pid: int | None = None
        self._last_tl0: int | None = None
        self._restart = True

    def restart(self) -> None:
        """The next packet belongs to a new source."""
        self._restart = True

    def rewrite(self, payload: bytes, descriptor: Vp8Descriptor | None = None) -> bytes:
        """``payload`` with PictureID and TL0PICIDX mapped into the output numbering.

        ``descriptor``: ``parse_descriptor(payload)`` when the caller already has it (one parse
        per packet for all slots). Unchanged numbers (no switch yet) cost no copy.
        """
        d = descriptor if descriptor is not None else parse_descriptor(payload)
        if d is None or (d.picture_id is None and d.tl0picidx is None):
            return payload
        if self._restart:
            self._restart = False
            if d.picture_id is not None:
                base = self._last_pid
                self._pid_offset = 0 if base is None else (base + 1 - d.picture_id) & 0x7FFF
            if d.tl0picidx is not None:
                tl0 = self._last_tl0
                self._tl0_offset = 0 if tl0 is None else (tl0 + 1 - d.tl0picidx) & 0xFF
        if self._pid_offset == 0 and self._tl0_offset == 0:
            if d.picture_id is not None and (
                self._last_pid is None or _newer(d.picture_id, self._last_pid, 1 << d.picture_id_bits)
            ):
                self._last_pid = d.picture_id
            if d.tl0picidx is not None and (
                self._last_tl0 is None or _newer(d.tl0picidx, self._last_tl0, 256)
            ):
                self._last_tl0 = d.tl0picidx
            return payload
        out = bytearray(payload)
        if d.picture_id is not None:
            mask = _PID_MASK[d.picture_id_bits]
            pid = (d.picture_id + self._pid_offset) & mask
            if self._last_pid is None or _newer(pid, self._last_pid & mask, mask + 1):
                self._last_pid = pid
            if d.picture_id_bits == 15:
                out[d.picture_id_at] = 0x80 | (pid >> 8)
                out[d.picture_id_at + 1] = pid & 0xFF
            else:
                out[d.picture_id_at] = pid
        if d.tl0picidx is not None:
            tl0 = (d.tl0picidx + self._tl0_offset) & 0xFF
            if self._last_tl0 is None or _newer(tl0, self._last_tl0, 256):
                self._last_tl0 = tl0
            out[d.tl0picidx_at] = tl0
        return bytes(out)


def keyframe_dimensions(payload: bytes) -> tuple[int, int] | None:
    """Width and height if ``payload`` starts a VP8 keyframe (first partition, S=1), else None."""
    d = parse_descriptor(payload)
    if d is None or not payload[0] & 0x10 or payload[0] & 0x07:
        return None
    frame = payload[d.length :]
    if len(frame) < 10 or frame[0] & 0x01 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(frame[6:8], "little") & 0x3FFF
    height = int.from_bytes(frame[8:10], "little") & 0x3FFF
    return (width, height) if width and height else None
