"""The pure parts of recording (sfu/recording.py, sfu/h264.py): no socket, no file, no thread."""

from __future__ import annotations

import pytest

from sfu.h264 import parameter_sets, profile_key, split_annexb, sps_dimensions, vp8_dimensions
from sfu.recording import (
    NTP_UNIX_OFFSET,
    AudioOrder,
    FrameAssembler,
    MediaClock,
    Timeline,
    TimestampUnwrapper,
)

# An x264 High-profile SPS for 320x176 (cropped from 320x176 macroblocks) and a VP8 keyframe header.
SPS_HIGH = bytes.fromhex("6764000dacb20282f420000003002000000791e28549")
VP8_KEY = bytes.fromhex("d00d009d012a4001b0000047")


def key(payload: bytes) -> bool:
    return payload.startswith(b"K")


def assembler(max_gap: int = 8) -> FrameAssembler:
    return FrameAssembler(key, lambda p: p[1:], max_gap=max_gap)


def test_frames_complete_only_with_every_packet_in_order_or_not() -> None:
    a = assembler()
    assert a.push(10, 1000, 0, b"Ka", 1.0) == []
    assert a.push(12, 1000, 1, b"-c", 1.0) == []  # 11 missing: wait
    frames = a.push(11, 1000, 0, b"-b", 1.1)
    assert [(f.timestamp, f.data, f.keyframe) for f in frames] == [(1000, b"abc", True)]
    assert [f.data for f in a.push(13, 4000, 1, b"-d", 1.2)] == [b"d"]


def test_starts_on_a_keyframe_and_drops_what_came_before() -> None:
    a = assembler()
    assert a.push(5, 100, 1, b"-x", 0.0) == []  # a delta frame first: no decoder could use it
    assert [f.data for f in a.push(6, 200, 1, b"Ky", 0.0)] == [b"y"]
    assert a.dropped_packets == 1


def test_a_lost_packet_resyncs_at_the_next_keyframe_never_a_corrupt_frame() -> None:
    a = assembler(max_gap=4)
    assert len(a.push(1, 100, 1, b"Ka", 0.0)) == 1
    # packet 2 (start of frame 200) is lost for good; later frames pile up behind it
    for seq, ts in ((3, 200), (4, 300), (5, 400), (6, 500)):
        assert a.push(seq, ts, 1, b"-z", 0.0) == []
    frames = a.push(7, 600, 1, b"Kk", 0.0)
    assert [f.data for f in frames] == [b"k"] and frames[0].keyframe
    assert a.resyncs == 1


def test_a_lost_marker_does_not_merge_two_frames() -> None:
    a = assembler()
    a.push(1, 100, 0, b"Ka", 0.0)
    assert a.push(2, 200, 1, b"-b", 0.0) == []  # marker of frame 100 lost: 2 is another frame
    assert a.resyncs == 1
    assert [f.data for f in a.push(3, 300, 1, b"Kc", 0.0)] == [b"c"]


def test_duplicates_and_late_packets_are_ignored() -> None:
    a = assembler()
    a.push(1, 100, 1, b"Ka", 0.0)
    assert a.push(1, 100, 1, b"Ka", 0.0) == []
    assert a.dropped_packets == 1
    audio = AudioOrder()
    assert len(audio.push(5, 960, b"x", 0.0)) == 1
    assert audio.push(4, 0, b"y", 0.0) == [] and audio.push(5, 960, b"x", 0.0) == []
    assert audio.dropped_packets == 2


def test_timestamps_unwrap() -> None:
    u = TimestampUnwrapper()
    assert u.unwrap(0xFFFFFF00) == 0xFFFFFF00
    assert u.unwrap(0x10) == (1 << 32) + 0x10
    assert u.unwrap(0xFFFFFFF0) == 0xFFFFFFF0  # late, from before the wrap


def test_media_clock_maps_rtp_to_the_senders_wall_clock() -> None:
    clock = MediaClock(90000)
    assert clock.wall(0) is None
    unix = 1_700_000_000.25
    ntp = (int(unix) + NTP_UNIX_OFFSET) << 32 | int(0.25 * 2**32)
    clock.on_report(ntp, 900_000, None)
    assert clock.wall(900_000) == pytest.approx(unix)
    assert clock.wall(990_000) == pytest.approx(unix + 1.0)
    # A later report from a sender that sent it 40 ms late does not move the timeline...
    late = ntp + int(0.04 * 2**32)
    clock.on_report(late + (1 << 32), 990_000, None)
    assert clock.wall(990_000) == pytest.approx(unix + 1.0)
    # ...an earlier one (less send delay) does.
    clock.on_report(ntp + (1 << 32) - int(0.01 * 2**32), 990_000, None)
    assert clock.wall(990_000) == pytest.approx(unix + 0.99)
    # A report whose 32-bit timestamp wrapped lands next to the stream's unwrapped timestamps
    # (a restarted sender: far off, so it re-anchors).
    clock.on_report(ntp, 5, unwrapped_near=(1 << 32) + 10)
    assert clock.wall((1 << 32) + 5) == pytest.approx(unix)


def test_audio_and_video_of_one_sender_line_up_by_their_reports() -> None:
    """Different RTP clocks and offsets, one NTP clock: the same instant gets the same time."""
    ntp = (1000 + NTP_UNIX_OFFSET) << 32
    video, audio = MediaClock(90000), MediaClock(48000)
    video.on_report(ntp, 123_456, None)
    audio.on_report(ntp, 987, None)
    timeline = Timeline()
    first_video = video.wall(123_456 + 9000)  # 100 ms later
    assert first_video is not None
    timeline.start(first_video)
    assert timeline.position(audio.wall(987 + 4800) or 0) == pytest.approx(0.0)
    assert timeline.position(audio.wall(987 + 48000) or 0) == pytest.approx(0.9)
    assert timeline.position(audio.wall(987) or 0) is None  # before time zero: dropped


def test_h264_profiles() -> None:
    assert profile_key("42e01f") == "H264"
    assert profile_key("4d801f") == "H264"  # constrained baseline signalled as main
    assert profile_key("4d001f") == "H264-main"
    assert profile_key("640028") == "H264-high"
    assert profile_key("640c1f") == "H264-chigh"
    assert profile_key("42001f") is None  # plain baseline: refused as before
    assert profile_key("f4001f") is None and profile_key("zz") is None and profile_key("6400") is None


def test_bitstream_facts() -> None:
    assert sps_dimensions(SPS_HIGH) == (320, 176)
    assert vp8_dimensions(VP8_KEY) == (320, 176)
    assert vp8_dimensions(b"\x01" + VP8_KEY[1:]) is None  # an interframe
    au = b"\x00\x00\x00\x01" + SPS_HIGH + b"\x00\x00\x01\x68\xeb" + b"\x00\x00\x00\x01\x65\x88"
    assert [u[0] & 0x1F for u in split_annexb(au)] == [7, 8, 5]
    assert parameter_sets(au) == b"\x00\x00\x00\x01" + SPS_HIGH + b"\x00\x00\x00\x01\x68\xeb"
    assert parameter_sets(b"\x00\x00\x01\x65\x88") is None
    with pytest.raises(ValueError, match="truncated"):
        sps_dimensions(SPS_HIGH[:6])


def test_a_hole_nack_cannot_fill_is_given_up_after_max_wait() -> None:
    a = FrameAssembler(key, lambda p: p[1:], max_wait=0.5)  # default: 1 s
    assert len(a.push(1, 100, 1, b"Ka", 0.0)) == 1
    # 2 is lost for good; small frames keep coming, far fewer than max_gap packets
    assert a.push(3, 300, 1, b"-c", 0.1) == []
    assert a.push(4, 400, 1, b"Kd", 0.3) == []  # a keyframe, but behind the hole: still waiting
    assert a.push(5, 500, 1, b"-e", 0.5) == []
    frames = a.push(6, 600, 1, b"-f", 0.7)  # waited 0.6 s > 0.5 s: skip to the keyframe at 4
    assert [f.data for f in frames] == [b"d", b"e", b"f"] and frames[0].keyframe
    assert a.resyncs == 1
