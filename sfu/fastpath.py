"""The send fast path's pure part: one subscriber leg's RTP header, prebuilt and patched in place.

A forwarded packet differs from the previous one on the same leg only in the marker bit, the
sequence number, the timestamp, the abs-send-time extension and (audio) the audio-level
extension; payload type, SSRC and the MID extension never change. Serialising a fresh
``RtpPacket`` per packet and subscriber (aiortc's ``HeaderExtensionsMap.set`` and
``pack_header_extensions`` rebuild the extension block each time) was the largest Python cost
of the send path (see docs/benchmarks.md). Here the header is learned once from aiortc's own
serialisation and only the changing bytes are written per packet.

No I/O and no aiortc import: the caller (``sfu.aiortc_hooks.SenderPort``) hands in a function
that serialises a header the way aiortc would, and :meth:`HeaderTemplate.learn` refuses (returns
``None``) unless patching reproduces that function's output exactly, so the fast path can only
ever send the bytes the slow path would have sent.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

#: ``serialize(marker, sequence_number, timestamp, abs_send_time, audio_level)``: the header
#: (empty payload, no padding) the slow path would put on the wire.
Serialize = Callable[[int, int, int, int, "tuple[bool, int] | None"], bytes]

_SEQ_TS = struct.Struct("!HI")
_WORD = struct.Struct("!I")

#: Probe values: every changing field takes two values that differ in every bit.
_PROBES = ((0, 0x0000, 0x00000000, 0x000000, (False, 0)), (1, 0xFFFF, 0xFFFFFFFF, 0xFFFFFF, (True, 127)))


class HeaderTemplate:
    """An RTP header with fixed fields and extensions, patched in place for each packet."""

    __slots__ = ("_abs_at", "_abs_prefix", "_buffer", "_level_at", "_payload_type")

    def __init__(
        self, buffer: bytearray, payload_type: int, abs_at: int | None, level_at: int | None
    ) -> None:
        self._buffer = buffer
        self._payload_type = payload_type
        #: Offset of the 3-byte abs-send-time value (RFC 5285 one/two-byte extension element).
        self._abs_at = abs_at
        #: The byte before it (the element's id/length byte), rewritten with it in one word.
        self._abs_prefix = buffer[abs_at - 1] << 24 if abs_at is not None else 0
        #: Offset of the audio-level byte (RFC 6464: V bit, then -dBov in 7 bits).
        self._level_at = level_at

    @classmethod
    def learn(
        cls, serialize: Serialize, payload_type: int, with_level: bool
    ) -> HeaderTemplate | None:
        """Learn the header layout from ``serialize``; ``None`` if it cannot be patched safely.

        ``with_level``: packets that carry an audio level (the extension is present, if the leg
        negotiated it) or not (absent): the two layouts differ, one template each.
        """
        samples = [
            serialize(m, s, t, a, level if with_level else None) for m, s, t, a, level in _PROBES
        ]
        low, high = samples
        if len(low) != len(high) or len(low) < 12 or low[0] & 0x2F:
            return None  # padding or CSRCs: not a layout this template handles
        changed = [i for i in range(12, len(low)) if low[i] != high[i]]
        abs_at: int | None = None
        level_at: int | None = None
        if changed[:3] and changed[:3] == list(range(changed[0], changed[0] + 3)):
            abs_at = changed[0]
            changed = changed[3:]
        if with_level and len(changed) == 1:
            level_at = changed[0]
            changed = []
        if changed or (abs_at is not None and abs_at < 13):
            return None
        template = cls(bytearray(low), payload_type, abs_at, level_at)
        # Proof: patching must give exactly what the slow path serialises, for other values too.
        for marker, seq, ts, abs_time, level in (
            (1, 0x1234, 0x89ABCDEF, 0x5A5A5A, (True, 42)),
            (0, 0xBEEF, 0x00C0FFEE, 0x0F0F01, (False, 99)),
        ):
            level_value = level if with_level else None
            expected = serialize(marker, seq, ts, abs_time, level_value)
            if template.render(marker, seq, ts, abs_time, level_value, b"") != expected:
                return None
        return template

    def render(
        self,
        marker: int,
        sequence_number: int,
        timestamp: int,
        abs_send_time: int,
        audio_level: tuple[bool, int] | None,
        payload: bytes,
    ) -> bytes:
        """The packet: this leg's header with the packet's fields, then ``payload``."""
        buffer = self._buffer
        buffer[1] = (marker << 7) | self._payload_type
        _SEQ_TS.pack_into(buffer, 2, sequence_number, timestamp)
        abs_at = self._abs_at
        if abs_at is not None:
            _WORD.pack_into(buffer, abs_at - 1, self._abs_prefix | (abs_send_time & 0xFFFFFF))
        level_at = self._level_at
        if level_at is not None and audio_level is not None:
            buffer[level_at] = (audio_level[0] << 7) | (audio_level[1] & 0x7F)
        return b"".join((buffer, payload))


def sequence_number_of(packet: bytes) -> int:
    """The RTP sequence number of a serialised packet (RFC 3550 section 5.1)."""
    return (packet[2] << 8) | packet[3]
