"""Keyframe detection for VP8 (RFC 7741) and H.264 (RFC 6184) payloads (pure)."""

from __future__ import annotations

import struct

import pytest

from sfu.keyframe import h264_keyframe_start, keyframe_detector, vp8_keyframe_start

# First byte of a VP8 frame header: bit 0 is the inverse key frame flag (0 = keyframe).
VP8_KEY = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A])
VP8_DELTA = bytes([0x31, 0x02, 0x00])


@pytest.mark.parametrize(
    ("descriptor", "expected"),
    [
        (bytes([0x10]), True),  # S=1, PID=0, no extension
        (bytes([0x00]), False),  # not the start of a partition
        (bytes([0x11]), False),  # start of partition 1
        (bytes([0x90, 0x80, 0x05]), True),  # X, I with 7-bit picture id
        (bytes([0x90, 0x80, 0x81, 0x23]), True),  # X, I with 15-bit picture id
        (bytes([0x90, 0xE0, 0x81, 0x23, 0x07, 0x40]), True),  # I, L and T bytes
        (bytes([0x90, 0x10, 0x20]), True),  # K only
    ],
)
def test_vp8_descriptor_variants(descriptor: bytes, expected: bool) -> None:
    assert vp8_keyframe_start(descriptor + VP8_KEY) is expected
    assert vp8_keyframe_start(descriptor + VP8_DELTA) is False


def test_vp8_truncated_payloads_are_not_keyframes() -> None:
    assert not vp8_keyframe_start(b"")
    assert not vp8_keyframe_start(bytes([0x10]))
    assert not vp8_keyframe_start(bytes([0x90, 0x80]))


def nal(nal_type: int, body: bytes = b"\x00\x01") -> bytes:
    return bytes([0x60 | nal_type]) + body


def stap_a(*units: bytes) -> bytes:
    return bytes([0x78]) + b"".join(struct.pack("!H", len(u)) + u for u in units)


def fu_a(nal_type: int, start: bool) -> bytes:
    return bytes([0x7C, (0x80 if start else 0) | nal_type]) + b"\x00" * 10


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (nal(7), True),  # SPS alone
        (nal(5), True),  # IDR slice in one packet
        (nal(1), False),  # non-IDR slice
        (nal(8), False),  # PPS alone
        (stap_a(nal(7), nal(8)), True),  # SPS+PPS aggregate, as before every IDR
        (stap_a(nal(6), nal(5)), True),  # SEI+IDR
        (stap_a(nal(6), nal(1)), False),
        (fu_a(5, start=True), True),
        (fu_a(5, start=False), False),
        (fu_a(1, start=True), False),
        (b"", False),
        (bytes([0x78, 0x00, 0x09, 0x67]), False),  # truncated STAP-A
    ],
)
def test_h264_packetizations(payload: bytes, expected: bool) -> None:
    assert h264_keyframe_start(payload) is expected


def test_detector_by_codec_name() -> None:
    assert keyframe_detector("VP8") is vp8_keyframe_start
    assert keyframe_detector("H264") is h264_keyframe_start
    assert keyframe_detector("opus") is None
