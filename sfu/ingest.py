"""Ingest of one published track: RTX unwrapping, de-duplication and source changes.

Pure logic: packets in, :class:`MediaPacket` (or nothing) out. Findings that shaped it:
Chromium answers NACKs over RTX *and* sends bandwidth probes over RTX, so RTX must be unwrapped
(skipping it leaves permanent holes) while padding-only RTX (payload <= 2 bytes: just the
original sequence number) is dropped, and the result de-duplicated.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from sfu.packets import InboundRtp, ReceiveInfo
from sfu.seqnum import DuplicateWindow, SequenceUnwrapper


@dataclass(slots=True)
class MediaPacket:
    """A media packet ready to fan out: original payload type and sequence space restored."""

    #: Changes whenever the publisher's media SSRC changes (sender restarted): sequence numbers
    #: and timestamps of two epochs are unrelated, so every subscriber re-bases.
    epoch: int
    extended_seq: int
    timestamp: int
    marker: int
    payload: bytes
    padding_size: int
    audio_level: tuple[bool, int] | None
    was_rtx: bool


@dataclass(slots=True)
class IngestCounters:
    packets: int = 0
    bytes: int = 0
    rtx_unwrapped: int = 0
    padding_dropped: int = 0
    duplicates_dropped: int = 0
    unknown_dropped: int = 0


class IngestFilter:
    """Turns a publisher's RTP stream (media + RTX) into one de-duplicated media stream."""

    __slots__ = (
        "_dedupe",
        "_epoch",
        "_info",
        "_media_ssrc",
        "_rtx_ssrc",
        "_unwrapper",
        "_window",
        "counters",
    )

    def __init__(self, info: ReceiveInfo, window: int = 2048) -> None:
        self._info = info
        self._window = window
        self._media_ssrc: int | None = None
        #: The RTX SSRC seen in this epoch: RTX from another SSRC repairs another (older) stream.
        self._rtx_ssrc: int | None = None
        self._epoch = 0
        self._unwrapper = SequenceUnwrapper()
        self._dedupe = DuplicateWindow(window)
        self.counters = IngestCounters()

    @property
    def media_ssrc(self) -> int | None:
        """SSRC of the media stream (what upstream PLIs and REMBs must name)."""
        return self._media_ssrc

    def accept(self, packet: InboundRtp) -> MediaPacket | None:
        counters = self.counters
        counters.packets += 1
        counters.bytes += len(packet.payload) + packet.padding_size
        payload = packet.payload
        seq = packet.sequence_number
        was_rtx = False

        apt = self._info.rtx_apt.get(packet.payload_type)
        if apt is not None:
            # RFC 4588: the first two payload bytes are the original sequence number. Two bytes
            # or less means a padding probe with nothing to repair.
            if len(payload) <= 2:
                counters.padding_dropped += 1
                return None
            if self._rtx_ssrc is None:
                self._rtx_ssrc = packet.ssrc
            if self._media_ssrc is None or packet.ssrc != self._rtx_ssrc:
                # A retransmission cannot be placed before its media stream started, nor one
                # that belongs to the publisher's previous stream.
                counters.unknown_dropped += 1
                return None
            (seq,) = struct.unpack_from("!H", payload)
            payload = payload[2:]
            was_rtx = True
            counters.rtx_unwrapped += 1
        elif packet.payload_type in self._info.media:
            if packet.ssrc != self._media_ssrc:
                self._new_epoch(packet.ssrc)
        else:
            counters.unknown_dropped += 1
            return None

        extended = self._unwrapper.unwrap(seq)
        if not self._dedupe.check_and_add(extended):
            counters.duplicates_dropped += 1
            return None
        return MediaPacket(
            epoch=self._epoch,
            extended_seq=extended,
            timestamp=packet.timestamp,
            marker=packet.marker,
            payload=payload,
            padding_size=0 if was_rtx else packet.padding_size,
            audio_level=packet.audio_level,
            was_rtx=was_rtx,
        )

    def _new_epoch(self, ssrc: int) -> None:
        if self._media_ssrc is not None:
            self._epoch += 1
        self._media_ssrc = ssrc
        self._rtx_ssrc = None
        self._unwrapper = SequenceUnwrapper()
        self._dedupe = DuplicateWindow(self._window)
