"""Reading offers, choosing codecs, rewriting candidates (pure; one real aiortc offer)."""

from __future__ import annotations

import pytest
from aiortc import RTCPeerConnection

from sfu.config import SfuConfig
from sfu.sdp_info import (
    SdpError,
    announce_address,
    choose_codec,
    is_constrained_baseline,
    is_msid_token,
    parse_candidate,
    parse_session,
    reject_in_offer,
    substitute_rejected,
)

CHROME_LIKE_OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 1 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1 2",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 0",
        "c=IN IP4 0.0.0.0",
        "a=mid:0",
        "a=sendonly",
        "a=msid:stream-a track-audio",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtpmap:0 PCMU/8000",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 106",
        "c=IN IP4 0.0.0.0",
        "a=mid:1",
        "a=sendonly",
        "a=msid:stream-a track-video",
        "a=rtpmap:96 VP9/90000",
        "a=rtpmap:97 rtx/90000",
        "a=fmtp:97 apt=96",
        "a=rtpmap:102 H264/90000",
        "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
        "a=rtpmap:103 rtx/90000",
        "a=fmtp:103 apt=102",
        "a=rtpmap:106 VP8/90000",
        "m=video 0 UDP/TLS/RTP/SAVPF 96",
        "a=mid:2",
        "a=inactive",
        "a=rtpmap:96 VP8/90000",
        "",
    ]
)


def test_parse_sections_directions_msid_and_codecs() -> None:
    session = parse_session(CHROME_LIKE_OFFER)
    assert session.bundle == ["0", "1", "2"]
    audio, video, stopped = session.sections
    assert (audio.kind, audio.mid, audio.direction, audio.sending) == (
        "audio",
        "0",
        "sendonly",
        True,
    )
    assert (audio.msid_stream, audio.msid_track) == ("stream-a", "track-audio")
    assert [c.name for c in video.codecs] == ["VP9", "rtx", "H264", "rtx", "VP8"]
    assert video.codecs[2].fmtp["packetization-mode"] == "1"
    assert not stopped.sending  # port 0: rejected/stopped m-line


def test_choose_codec_follows_our_preference_order() -> None:
    _, video, _ = parse_session(CHROME_LIKE_OFFER).sections
    audio = parse_session(CHROME_LIKE_OFFER).sections[0]
    assert choose_codec(video, ("VP8", "H264")) == "VP8"
    assert choose_codec(video, ("H264", "VP8")) == "H264"
    assert choose_codec(audio, ("VP8",)) == "opus"


def test_h264_must_be_constrained_baseline_packetization_mode_1() -> None:
    offer = CHROME_LIKE_OFFER.replace("packetization-mode=1", "packetization-mode=0")
    _, video, _ = parse_session(offer).sections
    assert choose_codec(video, ("H264",)) is None
    assert is_constrained_baseline("42e01f")
    assert is_constrained_baseline("4de032")
    assert not is_constrained_baseline("42001f")
    assert not is_constrained_baseline("640c1f")
    assert not is_constrained_baseline("zz")


@pytest.mark.parametrize("bad", ["", "hello", "v=0\r\ns=-\r\n", "v=0\r\nm=video x y z\r\n"])
def test_garbage_is_an_sdp_error(bad: str) -> None:
    with pytest.raises(SdpError):
        parse_session(bad)


async def test_parse_a_real_aiortc_offer() -> None:
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("video", direction="sendonly")
        pc.addTransceiver("audio", direction="recvonly")
        offer = await pc.createOffer()
    finally:
        await pc.close()
    video, audio = parse_session(offer.sdp).sections
    assert video.sending and not audio.sending
    assert choose_codec(video, SfuConfig().video_codecs) == "VP8"


def test_announce_rewrites_host_candidates_and_connection_lines() -> None:
    sdp = "\r\n".join(
        [
            "c=IN IP4 10.0.0.5",
            "a=candidate:1 1 udp 2130706431 10.0.0.5 40000 typ host",
            "a=candidate:2 1 udp 1694498815 1.2.3.4 40000 typ srflx raddr 10.0.0.5 rport 40000",
        ]
    )
    lines = announce_address(sdp, "203.0.113.7").split("\r\n")
    assert lines[0] == "c=IN IP4 203.0.113.7"
    assert lines[1] == "a=candidate:1 1 udp 2130706431 203.0.113.7 40000 typ host"
    assert lines[2].endswith("1.2.3.4 40000 typ srflx raddr 10.0.0.5 rport 40000")


def test_parse_browser_candidates() -> None:
    c = parse_candidate(
        "candidate:842163049 1 udp 1677729535 198.51.100.1 46154 typ srflx "
        "raddr 10.0.0.1 rport 46154 generation 0 ufrag abcd network-cost 999"
    )
    assert (c.ip, c.port, c.type, c.related_port) == ("198.51.100.1", 46154, "srflx", 46154)
    with pytest.raises(SdpError):
        parse_candidate("candidate:1 1 udp")
    with pytest.raises(SdpError):
        parse_candidate("candidate:1 x udp 1 1.2.3.4 5 typ host")


def test_msid_tokens() -> None:
    assert is_msid_token("3f2a-b_c.d")
    assert not is_msid_token("alice/0")
    assert not is_msid_token("a" * 65)
    assert not is_msid_token(None)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="video_codecs"):
        SfuConfig(video_codecs=("VP9",))
    with pytest.raises(ValueError, match="port_range"):
        SfuConfig(port_range=(5000, 4000))
    with pytest.raises(ValueError, match="urls"):
        SfuConfig(ice_servers=({"username": "x"},))


WEBRTCBIN_MAX_BUNDLE_OFFER = "\r\n".join([
    "v=0", "o=- 1 0 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE video0 audio1",
    "m=video 9 UDP/TLS/RTP/SAVPF 96", "c=IN IP4 0.0.0.0", "a=setup:actpass", "a=ice-ufrag:u",
    "a=ice-pwd:p", "a=rtcp-mux", "a=sendrecv", "a=rtpmap:96 VP8/90000", "a=mid:video0",
    "m=audio 0 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 0.0.0.0", "a=setup:actpass", "a=ice-ufrag:u",
    "a=ice-pwd:p", "a=bundle-only", "a=rtcp-mux", "a=sendrecv", "a=rtpmap:111 OPUS/48000/2",
    "a=mid:audio1", "",
])


def test_port_zero_with_bundle_only_is_a_bundled_sending_section() -> None:
    """RFC 8843 section 6: webrtcbin's max-bundle offer (issue 16, failure 2)."""
    video, audio = parse_session(WEBRTCBIN_MAX_BUNDLE_OFFER).sections
    assert audio.port == 0 and audio.bundle_only and not audio.rejected and audio.sending
    assert video.sending and video.setup == "actpass"
    rejected = parse_session(WEBRTCBIN_MAX_BUNDLE_OFFER.replace("a=bundle-only\r\n", "")).sections[1]
    assert rejected.rejected and not rejected.sending


OUR_OFFER = "\r\n".join([
    "v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0 1",
    "m=video 40000 UDP/TLS/RTP/SAVPF 97", "c=IN IP4 127.0.0.1", "a=sendonly", "a=mid:0",
    "a=msid:alice h264-track", "a=rtcp-mux", "a=rtpmap:97 H264/90000",
    "a=candidate:1 1 udp 1 127.0.0.1 40000 typ host", "a=ice-ufrag:sfu", "a=ice-pwd:sfupwd",
    "a=fingerprint:sha-256 AA", "a=setup:actpass",
    "m=video 40000 UDP/TLS/RTP/SAVPF 96", "c=IN IP4 127.0.0.1", "a=sendonly", "a=mid:1",
    "a=msid:carol vp8-track", "a=rtcp-mux", "a=rtpmap:96 VP8/90000", "a=ice-ufrag:sfu",
    "a=ice-pwd:sfupwd", "a=fingerprint:sha-256 AA", "a=setup:actpass", "",
])
FIREFOX_LIKE_ANSWER = "\r\n".join([
    "v=0", "o=mozilla 1 0 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 1",
    "m=video 0 UDP/TLS/RTP/SAVPF 120", "c=IN IP4 0.0.0.0", "a=inactive", "a=mid:0",
    "m=video 9 UDP/TLS/RTP/SAVPF 96", "c=IN IP4 0.0.0.0", "a=recvonly", "a=mid:1",
    "a=rtcp-mux", "a=rtpmap:96 VP8/90000", "a=ice-ufrag:fox", "a=ice-pwd:foxpwd",
    "a=fingerprint:sha-256 BB", "a=setup:active", "",
])


def test_a_rejected_section_is_replaced_by_ours_with_the_accepted_transport() -> None:
    usable, rejected = substitute_rejected(FIREFOX_LIKE_ANSWER, OUR_OFFER)
    assert rejected == ["0"]
    session = parse_session(usable)
    assert session.bundle == ["1", "0"]  # an accepted mid stays the transport
    first = usable.split("m=")[1]
    assert "a=ice-ufrag:fox" in first and "a=setup:active" in first and "a=inactive" in first
    assert "a=candidate" not in first and "a=ice-ufrag:sfu" not in first and "a=sendonly" not in first
    assert [c.name for c in session.sections[0].codecs] == ["H264"]  # codecs aiortc knows


def test_answers_without_rejections_pass_unchanged_and_all_rejected_yields_nothing() -> None:
    assert substitute_rejected(OUR_OFFER, OUR_OFFER) == (OUR_OFFER, [])
    everything = FIREFOX_LIKE_ANSWER.replace("m=video 9 ", "m=video 0 ")
    assert substitute_rejected(everything, OUR_OFFER) == ("", ["0", "1"])


def test_rejected_mids_stay_rejected_in_later_offers() -> None:
    offer = reject_in_offer(OUR_OFFER, {"0"})
    sections = parse_session(offer).sections
    assert [s.port for s in sections] == [0, 40000]
    assert parse_session(offer).bundle == ["1"]
    assert reject_in_offer(OUR_OFFER, set()) == OUR_OFFER
