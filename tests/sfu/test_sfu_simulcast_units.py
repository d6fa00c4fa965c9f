"""Simulcast, pure parts: SDP rid/simulcast, rid learning, layer selection, VP8 munging."""

from __future__ import annotations

import struct

from sfu.sdp_simulcast import REPAIRED_RID_URI, RID_URI, answer_simulcast, parse_simulcast
from sfu.simulcast import (
    Decision,
    DynacastConfig,
    LayerDemand,
    LayerMeter,
    LayerSelector,
    RidResolver,
    layer_quality,
    quality_index,
)
from sfu.vp8 import Vp8Munger, keyframe_dimensions, parse_descriptor

# The shape libwebrtc (Chromium, @roamhq/wrtc) offers for sendEncodings q/h/f.
SIMULCAST_OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 1 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "a=mid:0",
        "a=sendonly",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=rtpmap:111 opus/48000/2",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
        "a=mid:1",
        "a=sendonly",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        f"a=extmap:10 {RID_URI}",
        f"a=extmap:11/sendonly {REPAIRED_RID_URI}",
        "a=rtpmap:96 VP8/90000",
        "a=rtpmap:97 rtx/90000",
        "a=fmtp:97 apt=96",
        "a=rid:q send",
        "a=rid:h send",
        "a=rid:f send max-width=1280",
        "a=simulcast:send q;h;~f",
        "",
    ]
)

ANSWER = "\r\n".join(
    [
        "v=0",
        "o=- 3 4 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "a=mid:0",
        "a=recvonly",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
        "a=mid:1",
        "a=recvonly",
        "a=rtpmap:96 VP8/90000",
        "",
    ]
)


# -- SDP ----------------------------------------------------------------------------------------


def test_parse_simulcast_offer() -> None:
    offers = parse_simulcast(SIMULCAST_OFFER)
    assert list(offers) == ["1"]
    offer = offers["1"]
    assert offer.rids == ("q", "h", "f")  # a paused stream (~f) is still a layer
    assert offer.rid_extension == 10
    assert offer.repaired_rid_extension == 11


def test_parse_simulcast_needs_rids_extension_and_two_layers() -> None:
    without_ext = SIMULCAST_OFFER.replace(f"a=extmap:10 {RID_URI}\r\n", "")
    assert parse_simulcast(without_ext) == {}
    one_layer = SIMULCAST_OFFER.replace("a=simulcast:send q;h;~f", "a=simulcast:send q")
    assert parse_simulcast(one_layer) == {}
    undeclared = SIMULCAST_OFFER.replace("a=rid:h send\r\n", "").replace("a=rid:f send max-width=1280\r\n", "")
    assert parse_simulcast(undeclared) == {}
    # Alternatives take their first choice; bad rids are ignored; at most 3 layers.
    odd = SIMULCAST_OFFER.replace("a=simulcast:send q;h;~f", "a=simulcast:send q,h;h;f;x;b@d").replace(
        "a=rid:q send", "a=rid:q send\r\na=rid:x send"
    )
    assert parse_simulcast(odd)["1"].rids == ("q", "h", "f")
    # recv-only simulcast (a subscriber's) is not a publisher's simulcast
    assert parse_simulcast(SIMULCAST_OFFER.replace("simulcast:send", "simulcast:recv")) == {}


def test_answer_simulcast_adds_rid_recv_and_simulcast_recv() -> None:
    offers = parse_simulcast(SIMULCAST_OFFER)
    answer = answer_simulcast(ANSWER, offers)
    lines = answer.split("\r\n")
    video = lines[lines.index("m=video 9 UDP/TLS/RTP/SAVPF 96 97") :]
    assert "a=rid:q recv" in video and "a=rid:h recv" in video and "a=rid:f recv" in video
    assert "a=simulcast:recv q;h;f" in video
    audio = lines[: lines.index("m=video 9 UDP/TLS/RTP/SAVPF 96 97")]
    assert not any(x.startswith(("a=rid", "a=simulcast")) for x in audio)
    assert answer.endswith("\r\n")
    # idempotent: applying it twice does not repeat lines
    assert answer_simulcast(answer, offers) == answer
    # a rejected section stays untouched
    rejected = ANSWER.replace("m=video 9 ", "m=video 0 ")
    assert "a=rid" not in answer_simulcast(rejected, offers)
    assert answer_simulcast(ANSWER, {}) == ANSWER


# -- rid learning ---------------------------------------------------------------------------------


def test_rid_resolver_learns_and_remembers() -> None:
    r = RidResolver(capacity=4)
    assert r.resolve(1000, None, None) is None
    assert r.resolve(1000, "q", None) == "q"
    assert r.resolve(1000, None, None) == "q"  # RID no longer sent after a receiver report
    assert r.resolve(2000, None, "q") == "q"  # RTX of q
    assert r.media_ssrc("q") == 1000
    assert r.resolve(2000, None, None) == "q"
    for ssrc in range(5):
        r.resolve(ssrc, "f", None)
    assert r.resolve(1000, None, None) is None  # bounded: the oldest was forgotten


# -- layer policy ---------------------------------------------------------------------------------


def test_quality_names() -> None:
    assert [quality_index(q, 3) for q in ("low", "medium", "high", "off")] == [0, 1, 2, None]
    assert [quality_index(q, 2) for q in ("low", "medium", "high")] == [0, 0, 1]
    assert [layer_quality(i, 3) for i in range(3)] == ["low", "medium", "high"]


def test_meter_rates_and_activity() -> None:
    m = LayerMeter(3, window=1.0)
    for i in range(21):
        t = i * 0.1
        m.add(0, 1000, t)
        m.add(2, 5000, t)
    rates = m.bitrates()
    assert rates[0] is not None and 70_000 < rates[0] < 90_000
    assert rates[1] is not None and rates[1] == 0.0
    assert m.active(2.0) == [True, False, True]
    assert m.active(4.5) == [False, False, False]


RATES = [150_000.0, 500_000.0, 1_500_000.0]
ALL = [True, True, True]


def test_selector_switches_only_on_target_keyframe() -> None:
    s = LayerSelector(3)
    assert s.update(0.0, None, RATES, ALL) == 2
    assert s.accept(2, keyframe_start=False) is Decision.DROP  # wait for a keyframe
    assert s.accept(0, keyframe_start=True) is Decision.DROP  # not the target
    assert s.accept(2, keyframe_start=True) is Decision.SWITCH
    assert s.accept(2, keyframe_start=False) is Decision.FORWARD
    s.request(0)
    assert s.update(0.1, None, RATES, ALL) == 0
    assert s.switching
    # keep forwarding the current layer until the target's keyframe
    assert s.accept(2, keyframe_start=False) is Decision.FORWARD
    assert s.accept(0, keyframe_start=False) is Decision.DROP
    assert s.accept(0, keyframe_start=True) is Decision.SWITCH
    assert s.accept(2, keyframe_start=True) is Decision.DROP
    assert not s.switching
    s.request(None)  # off
    assert s.update(0.2, None, RATES, ALL) is None
    assert s.accept(0, keyframe_start=True) is Decision.DROP and s.current is None


def test_selector_follows_falling_estimate_and_probes_up_with_backoff() -> None:
    s = LayerSelector(3)
    s.update(0.0, None, RATES, ALL)
    s.accept(2, keyframe_start=True)
    # a rising estimate below the layer's rate (catching up after a switch) is no congestion
    assert s.update(1.0, 600_000, RATES, ALL) == 2
    assert s.update(2.0, 900_000, RATES, ALL) == 2
    # congestion: the estimate falls below the top layer -> highest affordable (medium)
    assert s.update(3.0, 700_000, RATES, ALL) == 1
    s.accept(1, keyframe_start=True)
    assert s.update(4.0, 700_000, RATES, ALL) == 1
    assert s.update(7.1, 720_000, RATES, ALL) == 2  # back-off 4 s elapsed: try up
    s.accept(2, keyframe_start=True)
    assert s.update(8.0, 650_000, RATES, ALL) == 1  # the try failed quickly
    s.accept(1, keyframe_start=True)
    assert s.update(11.0, 660_000, RATES, ALL) == 1  # back-off doubled: not yet at 4 s
    assert s.update(16.1, 660_000, RATES, ALL) == 2  # 8 s later


def test_selector_never_above_request_and_skips_inactive_layers() -> None:
    s = LayerSelector(3)
    s.request(1)
    assert s.update(0.0, 10_000_000, RATES, ALL) == 1
    # the publisher stopped sending the medium layer: the highest active one below
    assert s.update(0.5, None, RATES, [True, False, True]) == 0
    # nothing below: the lowest active one above
    assert s.update(1.0, None, RATES, [False, False, True]) == 2
    # nothing at all: keep the target (the layer may resume)
    assert s.update(1.5, None, RATES, [False, False, False]) == 2


def test_selector_wanted_ignores_which_layers_are_sent() -> None:
    s = LayerSelector(3)
    s.request(2)
    s.update(0.0, None, RATES, [True, False, False])
    assert s.update(1.0, None, RATES, [True, False, False]) == 0, "past the start wait: the layer sent"
    assert s.wanted == 2, "a paused layer that is asked for is still wanted (dynacast resumes it)"
    s.request(None)
    assert s.wanted is None


# -- dynacast ---------------------------------------------------------------------------------------


def test_demand_pauses_unwanted_layers_after_the_hold_and_resumes_at_once() -> None:
    d = LayerDemand(3, DynacastConfig(pause_after=5.0))
    assert d.active == (0, 1, 2)
    # t=0: only low is wanted; nothing changes before the hold has passed
    assert d.update(0.0, {0}) is None
    assert d.update(4.9, {0}) is None
    assert d.update(5.0, {0}) == (0,)
    assert d.update(6.0, {0}) is None
    # someone asks for high: back at once, with medium (the fallback when high is not sent)
    assert d.update(6.1, {0, 2}) == (0, 1, 2)
    # nobody wants more than medium: high is paused after the hold, medium stays
    assert d.update(7.0, {1}) is None
    assert d.update(12.0, {0, 1}) == (0, 1)


def test_demand_does_not_flap_when_a_subscriber_toggles() -> None:
    d = LayerDemand(3, DynacastConfig(pause_after=5.0))
    changes = []
    t = 0.0
    for i in range(40):  # high wanted every other second, for 20 s
        t += 0.5
        changes.append(d.update(t, {0, 2} if (i // 2) % 2 == 0 else {0}))
    assert [c for c in changes if c is not None] == [], "never paused while asked for within the hold"


def test_demand_never_pauses_the_lowest_layer() -> None:
    d = LayerDemand(2, DynacastConfig(pause_after=0.0))
    d.update(0.0, set())
    assert d.update(1.0, set()) == (0,)
    assert d.update(2.0, set()) is None


# -- VP8 ------------------------------------------------------------------------------------------


def vp8(picture_id: int, tl0: int, *, start: bool = False, key: bool = False, seven: bool = False) -> bytes:
    first = 0x80 | (0x10 if start else 0)
    ext = 0x80 | 0x40 | 0x20
    pid = bytes([picture_id & 0x7F]) if seven else struct.pack("!H", 0x8000 | picture_id)
    header = bytes([first, ext]) + pid + bytes([tl0, 0x00])
    if key:
        body = bytes([0x00, 0x00, 0x00, 0x9D, 0x01, 0x2A]) + struct.pack("<HH", 640, 360)
    else:
        body = bytes([0x01, 0x00, 0x00, 0x00])
    return header + body


def test_parse_descriptor_and_keyframe_size() -> None:
    d = parse_descriptor(vp8(1234, 7))
    assert d is not None
    assert (d.picture_id, d.picture_id_bits, d.tl0picidx, d.length) == (1234, 15, 7, 6)
    assert parse_descriptor(b"\x80") is None
    assert parse_descriptor(b"\x80\x80") is None
    assert keyframe_dimensions(vp8(1, 1, start=True, key=True)) == (640, 360)
    assert keyframe_dimensions(vp8(1, 1, start=False, key=True)) is None
    assert keyframe_dimensions(vp8(1, 1, start=True)) is None


def test_munger_keeps_picture_id_and_tl0_continuous_across_switches() -> None:
    m = Vp8Munger()
    out = [parse_descriptor(m.rewrite(vp8(100 + i, 50 + i))) for i in range(3)]
    assert [(d.picture_id, d.tl0picidx) for d in out if d] == [(100, 50), (101, 51), (102, 52)]
    m.restart()  # switch to another layer with unrelated numbers, wrapping on the way
    out = [parse_descriptor(m.rewrite(vp8((32766 + i) % 32768, (254 + i) % 256))) for i in range(4)]
    assert [(d.picture_id, d.tl0picidx) for d in out if d] == [(103, 53), (104, 54), (105, 55), (106, 56)]
    # a reordered (older) packet keeps its relative number
    older = parse_descriptor(m.rewrite(vp8(32767, 255)))
    assert older is not None and older.picture_id == 104
    m.restart()
    nxt = parse_descriptor(m.rewrite(vp8(5, 9)))
    assert nxt is not None and (nxt.picture_id, nxt.tl0picidx) == (107, 57)
    # payload bytes after the descriptor are untouched
    payload = vp8(77, 3, start=True, key=True)
    assert m.rewrite(payload)[6:] == payload[6:]


def test_munger_seven_bit_picture_ids_stay_seven_bits() -> None:
    m = Vp8Munger()
    m.rewrite(vp8(126, 0, seven=True))
    m.restart()
    out = m.rewrite(vp8(40, 0, seven=True))
    assert len(out) == len(vp8(40, 0, seven=True))
    d = parse_descriptor(out)
    assert d is not None and d.picture_id_bits == 7 and d.picture_id == 127
    d = parse_descriptor(m.rewrite(vp8(41, 0, seven=True)))
    assert d is not None and d.picture_id == 0  # wraps within 7 bits
