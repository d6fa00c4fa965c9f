"""Does this RTP payload start a keyframe? VP8 (RFC 7741) and H.264 (RFC 6184).

Used to gate new subscribers: a decoder that starts on a delta frame shows garbage or nothing
until the next keyframe, so a new subscriber gets packets only from the start of one.
"""

from __future__ import annotations

from collections.abc import Callable

NAL_IDR = 5
NAL_SPS = 7
NAL_STAP_A = 24
NAL_FU_A = 28


def vp8_keyframe_start(payload: bytes) -> bool:
    """True if ``payload`` is the first packet of a VP8 keyframe.

    Payload descriptor (RFC 7741 section 4.2): S bit set and partition index 0, then the VP8
    payload header's first byte with the inverse key frame flag P = 0 (RFC 6386 section 9.1).
    """
    if len(payload) < 2:
        return False
    first = payload[0]
    if not first & 0x10 or first & 0x07:
        return False
    pos = 1
    if first & 0x80:  # X: extension byte follows
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture id, 7 or 15 bits
            if len(payload) <= pos:
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: TID/Y/KEYIDX byte
            pos += 1
    if len(payload) <= pos:
        return False
    return not payload[pos] & 0x01


def h264_keyframe_start(payload: bytes) -> bool:
    """True if ``payload`` carries an SPS or begins an IDR picture.

    Handles single NAL units, STAP-A aggregates (where encoders put SPS/PPS before an IDR) and
    the first fragment of an FU-A. Encoders (Chromium, x264) send SPS/PPS before every IDR, so
    the first packet of a keyframe access unit is the SPS-carrying one.
    """
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in (NAL_IDR, NAL_SPS):
        return True
    if nal_type == NAL_STAP_A:
        pos = 1
        while pos + 2 < len(payload):
            size = (payload[pos] << 8) | payload[pos + 1]
            pos += 2
            if size == 0 or pos + size > len(payload):
                return False
            if payload[pos] & 0x1F in (NAL_IDR, NAL_SPS):
                return True
            pos += size
        return False
    if nal_type == NAL_FU_A and len(payload) >= 2:
        fu_header = payload[1]
        return bool(fu_header & 0x80) and fu_header & 0x1F in (NAL_IDR, NAL_SPS)
    return False


def keyframe_detector(codec_name: str) -> Callable[[bytes], bool] | None:
    """The detector for a video codec name, or ``None`` (audio: every packet can start)."""
    family = codec_name.split("-", 1)[0].lower()  # H.264 profile keys: "H264-high" -> h264
    return {"vp8": vp8_keyframe_start, "h264": h264_keyframe_start}.get(family)
