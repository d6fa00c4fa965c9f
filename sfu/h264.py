"""H.264 profiles the SFU forwards, and the few bitstream facts recording needs (pure).

Encoders for streaming (OBS, FFmpeg, GStreamer) send Main or High profile; browsers mostly send
constrained baseline. The SFU never decodes, so any profile can be forwarded as long as both
legs negotiate the same one. A codec *key* names the profile class:

==============  ==========================  ===========================================
key             profile-level-id examples   RFC 6184 / RFC 7742 profile
==============  ==========================  ===========================================
``H264``        42e01f, 4d801f, 58c01f      Constrained Baseline (the historic default)
``H264-main``   4d001f, 4d0028              Main
``H264-high``   64001f, 640028              High
``H264-chigh``  640c1f, 640c34              Constrained High (what Chromium offers)
==============  ==========================  ===========================================

The classes follow libwebrtc's profile table (the one aiortc copies): a publisher's level is
ignored, since levels are asymmetric (``level-asymmetry-allowed=1``).
"""

from __future__ import annotations

from typing import Final

#: Codec key -> the profile-level-id the SFU itself announces for it (level 3.1).
PROFILE_LEVEL_IDS: Final = {
    "H264": "42e01f",
    "H264-main": "4d001f",
    "H264-high": "64001f",
    "H264-chigh": "640c1f",
}
H264_KEYS: Final = tuple(PROFILE_LEVEL_IDS)


def is_h264(codec: str) -> bool:
    """Is ``codec`` (a codec key) one of the H.264 profile classes?"""
    return codec in PROFILE_LEVEL_IDS


def codec_name(codec: str) -> str:
    """The RTP codec name of a codec key (``H264-high`` -> ``H264``)."""
    return "H264" if is_h264(codec) else codec


def profile_key(profile_level_id: str) -> str | None:
    """The codec key of an offered ``profile-level-id``, or ``None`` if we do not forward it.

    Plain Baseline (``42001f``) is refused as before: browsers do not decode arbitrary
    baseline streams (FMO/ASO), and no encoder we know of needs it.
    """
    if len(profile_level_id) != 6:
        return None
    try:
        value = int(profile_level_id, 16)
    except ValueError:
        return None
    idc, iop = value >> 16, (value >> 8) & 0xFF
    # libwebrtc's table (x = any bit): 42 x1xx0000, 4D 1xxx0000, 58 11xx0000 -> constrained
    # baseline; 4D 0x0x0000 -> main; 64 00000000 -> high; 64 00001100 -> constrained high.
    if (idc == 0x42 and iop & 0x4F == 0x40) or (idc == 0x4D and iop & 0x8F == 0x80):
        return "H264"
    if idc == 0x58 and iop & 0xCF == 0xC0:
        return "H264"
    if idc == 0x4D and iop & 0xAF == 0:
        return "H264-main"
    if idc == 0x64 and iop == 0x00:
        return "H264-high"
    if idc == 0x64 and iop == 0x0C:
        return "H264-chigh"
    return None


# -- bitstream (recording) ----------------------------------------------------------------------


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream (start codes removed)."""
    units: list[bytes] = []
    i, n = 0, len(data)
    start = -1
    while i + 2 < n:
        if data[i] == 0 and data[i + 1] == 0 and data[i + 2] == 1:
            if start >= 0:
                end = i - 1 if i > 0 and data[i - 1] == 0 else i
                units.append(data[start:end])
            i += 3
            start = i
            continue
        i += 1
    if start >= 0 and start < n:
        units.append(data[start:])
    return [u for u in units if u]


def parameter_sets(access_unit: bytes) -> bytes | None:
    """SPS and PPS of an Annex B access unit, as Annex B (the Matroska muxer's extradata)."""
    units = split_annexb(access_unit)
    sps = [u for u in units if u[0] & 0x1F == 7]
    pps = [u for u in units if u[0] & 0x1F == 8]
    if not sps or not pps:
        return None
    return b"".join(b"\x00\x00\x00\x01" + u for u in sps[:1] + pps[:1])


class _Bits:
    def __init__(self, data: bytes) -> None:
        # Remove emulation prevention bytes (00 00 03 -> 00 00).
        out = bytearray()
        zeros = 0
        for byte in data:
            if zeros >= 2 and byte == 3:
                zeros = 0
                continue
            out.append(byte)
            zeros = zeros + 1 if byte == 0 else 0
        self._data = bytes(out)
        self._pos = 0

    def bit(self) -> int:
        index = self._pos >> 3
        if index >= len(self._data):
            raise ValueError("SPS truncated")
        value = (self._data[index] >> (7 - (self._pos & 7))) & 1
        self._pos += 1
        return value

    def bits(self, count: int) -> int:
        value = 0
        for _ in range(count):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        """Unsigned Exp-Golomb (H.264 section 9.1)."""
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad Exp-Golomb code")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        code = self.ue()
        return (code + 1) // 2 if code & 1 else -(code // 2)


def sps_dimensions(sps: bytes) -> tuple[int, int]:
    """Coded picture width and height (cropping applied) from an SPS NAL unit (H.264 7.3.2.1.1).

    Raises ValueError on anything it cannot read (the caller falls back to no dimensions).
    """
    bits = _Bits(sps[1:])
    profile_idc = bits.bits(8)
    bits.bits(16)  # constraint flags, level_idc
    bits.ue()  # seq_parameter_set_id
    chroma_format_idc = 1
    if profile_idc in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        chroma_format_idc = bits.ue()
        if chroma_format_idc == 3:
            bits.bit()  # separate_colour_plane_flag
        bits.ue()  # bit_depth_luma_minus8
        bits.ue()  # bit_depth_chroma_minus8
        bits.bit()  # qpprime_y_zero_transform_bypass_flag
        if bits.bit():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if bits.bit():
                    last, nxt = 8, 8
                    for _ in range(16 if i < 6 else 64):
                        if nxt:
                            nxt = (last + bits.se() + 256) % 256
                        last = nxt or last
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()
    elif poc_type == 1:
        bits.bit()
        bits.se()
        bits.se()
        for _ in range(bits.ue()):
            bits.se()
    bits.ue()  # max_num_ref_frames
    bits.bit()  # gaps_in_frame_num_value_allowed_flag
    width_mbs = bits.ue() + 1
    height_units = bits.ue() + 1
    frame_mbs_only = bits.bit()
    if not frame_mbs_only:
        bits.bit()  # mb_adaptive_frame_field_flag
    bits.bit()  # direct_8x8_inference_flag
    width = width_mbs * 16
    height = height_units * 16 * (2 - frame_mbs_only)
    if bits.bit():  # frame_cropping_flag
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        crop_x = 2 if chroma_format_idc in (1, 2) else 1
        crop_y = (2 if chroma_format_idc == 1 else 1) * (2 - frame_mbs_only)
        width -= (left + right) * crop_x
        height -= (top + bottom) * crop_y
    if width <= 0 or height <= 0:
        raise ValueError("SPS gives no picture size")
    return width, height


def vp8_dimensions(frame: bytes) -> tuple[int, int] | None:
    """Width and height of a VP8 keyframe (RFC 6386 section 9.1), or None for other frames."""
    if len(frame) < 10 or frame[0] & 0x01 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(frame[6:8], "little") & 0x3FFF
    height = int.from_bytes(frame[8:10], "little") & 0x3FFF
    return (width, height) if width and height else None
