"""RTX unwrapping, padding probes, duplicates and publisher restarts (pure, no sockets)."""

from __future__ import annotations

import struct

from sfu.ingest import IngestFilter, MediaPacket
from sfu.packets import CodecSpec, InboundRtp, ReceiveInfo

VP8 = 96
RTX = 97
MEDIA_SSRC = 1111
RTX_SSRC = 2222
INFO = ReceiveInfo(
    media={VP8: CodecSpec("video/VP8", 90000, VP8)},
    rtx_apt={RTX: VP8},
)


def media(seq: int, payload: bytes = b"frame", ssrc: int = MEDIA_SSRC) -> InboundRtp:
    return InboundRtp(ssrc, VP8, seq, 1000 + seq, 0, payload)


def rtx(rtx_seq: int, original_seq: int, payload: bytes = b"frame") -> InboundRtp:
    return InboundRtp(
        RTX_SSRC, RTX, rtx_seq, 1000 + original_seq, 0, struct.pack("!H", original_seq) + payload
    )


def accepted(ingest: IngestFilter, packet: InboundRtp) -> MediaPacket:
    result = ingest.accept(packet)
    assert result is not None
    return result


def test_rtx_is_unwrapped_to_the_original_sequence_number_and_payload() -> None:
    ingest = IngestFilter(INFO)
    first = accepted(ingest, media(10))
    assert ingest.accept(media(12)) is not None
    repaired = accepted(ingest, rtx(500, 11, b"late"))
    assert repaired.extended_seq == first.extended_seq + 1
    assert repaired.payload == b"late"
    assert repaired.was_rtx
    assert ingest.counters.rtx_unwrapped == 1


def test_rtx_padding_probes_are_dropped() -> None:
    ingest = IngestFilter(INFO)
    accepted(ingest, media(10))
    probe = InboundRtp(RTX_SSRC, RTX, 501, 0, 0, struct.pack("!H", 9))
    assert ingest.accept(probe) is None
    assert ingest.accept(InboundRtp(RTX_SSRC, RTX, 502, 0, 0, b"")) is None
    assert ingest.counters.padding_dropped == 2


def test_duplicates_from_rtx_and_media_are_dropped() -> None:
    ingest = IngestFilter(INFO)
    accepted(ingest, media(10))
    accepted(ingest, media(11))
    assert ingest.accept(rtx(600, 11)) is None  # NACK answered although the original arrived
    assert ingest.accept(media(10)) is None
    assert ingest.counters.duplicates_dropped == 2


def test_rtx_before_any_media_or_from_another_ssrc_is_dropped() -> None:
    ingest = IngestFilter(INFO)
    assert ingest.accept(rtx(1, 5)) is None
    accepted(ingest, media(10))
    accepted(ingest, media(12))
    accepted(ingest, rtx(2, 11))  # the first RTX stream of this epoch is the publisher's
    foreign = InboundRtp(9999, RTX, 7, 0, 0, struct.pack("!H", 9) + b"x")
    assert ingest.accept(foreign) is None
    assert ingest.counters.unknown_dropped == 2


def test_unknown_payload_type_is_dropped() -> None:
    ingest = IngestFilter(INFO)
    assert ingest.accept(InboundRtp(MEDIA_SSRC, 111, 1, 0, 0, b"x")) is None


def test_new_media_ssrc_starts_a_new_epoch() -> None:
    ingest = IngestFilter(INFO)
    before = accepted(ingest, media(10))
    after = accepted(ingest, media(10, ssrc=3333))  # same number, another stream: not a dup
    assert after.epoch == before.epoch + 1
    assert ingest.media_ssrc == 3333


def test_padding_of_media_packets_is_kept() -> None:
    ingest = IngestFilter(INFO)
    packet = media(10, payload=b"")
    packet.padding_size = 200
    assert accepted(ingest, packet).padding_size == 200
