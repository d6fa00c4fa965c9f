"""The SDP limits derived in signaling/core/media_limits.py hold the largest answer they promise to.

No server: the frame goes through ``protocol.parse`` (frame size, schema) and
``sdpcheck.check_sdp`` (lines) with the shipped defaults, as the hub does for every
``subscriber-answer``. ``tests/media/test_media_limits.py`` does the same on a real server
with the SFU's real offer for a full room.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from signaling.core import media_limits, protocol, settings
from signaling.core.config import LimitsConfig, SecurityConfig
from signaling.core.protocol import ProtocolError, SubscriberAnswer
from signaling.core.sdpcheck import SdpError, check_sdp
from signaling.tools.cli import cli
from tests.chromium_sdp import chromium_answer

AUDIO = [
    "a=sendonly",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:2 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=rtpmap:96 opus/48000/2",
]
VIDEO = [
    "a=sendonly",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=rtpmap:97 VP8/90000",
    "a=rtcp-fb:97 nack",
    "a=rtcp-fb:97 nack pli",
    "a=rtcp-fb:97 goog-remb",
    "a=rtpmap:98 rtx/90000",
    "a=fmtp:98 apt=97",
]


def sfu_offer(sections: int) -> str:
    """The parts of the SFU's subscriber offer an answer echoes, for ``sections`` tracks
    (alternately a microphone and a camera, as publishers add them)."""
    lines = ["v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0"]
    for mid in range(sections):
        if mid % 2 == 0:
            lines += ["m=audio 9 UDP/TLS/RTP/SAVPF 96", f"a=mid:{mid}", *AUDIO]
        else:
            lines += ["m=video 9 UDP/TLS/RTP/SAVPF 97 98", f"a=mid:{mid}", *VIDEO]
    return "\r\n".join(lines) + "\r\n"


def accepted(sdp: str) -> None:
    """What the hub does with a subscriber-answer, at the shipped defaults; raises if refused."""
    frame = json.dumps({"type": "subscriber-answer", "cseq": 1, "sdp": sdp}, separators=(",", ":"))
    limits = LimitsConfig()
    message = protocol.parse(frame, max_bytes=limits.max_message_bytes, max_signal_bytes=limits.max_signal_bytes)
    assert isinstance(message, SubscriberAnswer)
    check_sdp(message.sdp, max_lines=SecurityConfig().max_sdp_lines)


def test_the_arithmetic_of_the_docstring() -> None:
    assert media_limits.tracks_per_room(100) == 250
    assert media_limits.SdpBudget(
        tracks=250, sdp_bytes=201_024, sdp_lines=6_516, frame_bytes=215_040
    ) == media_limits.DEFAULT


def test_the_config_defaults_are_the_derived_ones() -> None:
    security, limits = SecurityConfig(), LimitsConfig()
    assert security.max_participants_per_room == media_limits.ROOM_PARTICIPANTS
    assert security.max_tracks_per_kind == media_limits.TRACKS_PER_KIND == 4
    assert security.max_tracks_per_room == media_limits.DEFAULT.tracks
    assert security.max_sdp_lines == media_limits.DEFAULT.sdp_lines
    assert limits.max_message_bytes == media_limits.DEFAULT.frame_bytes
    schema = protocol.schema()["$defs"]["client"]
    for kind in ("publish", "subscriber-answer"):
        assert schema[kind]["properties"]["sdp"]["maxLength"] == media_limits.PROTOCOL_MAX_SDP
    assert media_limits.DEFAULT.sdp_bytes <= media_limits.PROTOCOL_MAX_SDP


def test_the_chromium_shape_matches_the_measurement() -> None:
    """99 camera+mic publishers: Chromium's own answer was 106,007 bytes and 3,372 lines."""
    answer = chromium_answer(sfu_offer(198))
    assert (len(answer), answer.count("\r\n")) == (106_007, 3_372)


@pytest.mark.parametrize("sections", [198, 250, 377])
def test_answers_up_to_the_track_limit_and_its_slack_pass_every_limit(sections: int) -> None:
    """198: a full room of cameras and microphones; 250: the room's track limit; 377: the most
    Chromium m-sections the frame limit holds (m-lines left inactive by departed tracks)."""
    accepted(chromium_answer(sfu_offer(sections)))
    if sections == 377:
        with pytest.raises(ProtocolError):
            accepted(chromium_answer(sfu_offer(sections + 1)))


def test_the_old_limits_refused_a_full_room_and_the_new_ones_still_bound_it() -> None:
    answer = chromium_answer(sfu_offer(198))
    frame = json.dumps({"type": "subscriber-answer", "cseq": 1, "sdp": answer})
    with pytest.raises(ProtocolError) as refused:
        protocol.parse(frame, max_bytes=64 * 1024, max_signal_bytes=32 * 1024)
    assert refused.value.error.code == "too-large"
    with pytest.raises(SdpError):
        check_sdp(answer, max_lines=2000)
    # Twice the budget is refused: the limits are bounds, not decoration.
    with pytest.raises((ProtocolError, SdpError)):
        accepted(chromium_answer(sfu_offer(2 * 377)))


def test_limits_too_small_for_the_track_limit_are_an_operator_error() -> None:
    assert media_limits.problems(
        max_tracks_per_room=250, max_tracks_per_kind=4, max_sdp_lines=6_516, max_message_bytes=215_040
    ) == []
    with pytest.raises(settings.ConfigError) as error:
        settings.load(env={}, overrides={"security.max_tracks_per_room": "400"})
    message = str(error.value)
    assert "security.max_sdp_lines: must be at least 10416" in message
    assert "limits.max_message_bytes: must be at least 343040" in message
    settings.load(env={}, overrides={
        "security.max_tracks_per_room": "400", "security.max_sdp_lines": "10416",
        "limits.max_message_bytes": "343040",
    })


def test_serve_exits_2_naming_the_key() -> None:
    result = CliRunner().invoke(cli, ["serve", "--set", "security.max_tracks_per_room=400"])
    assert result.exit_code == 2
    assert "security.max_sdp_lines" in result.output
    result = CliRunner().invoke(cli, ["serve", "--ice-allow-peer", "10.0.0.1/8"])
    assert result.exit_code == 2
    assert "ice.allow_peers: '10.0.0.1/8'" in result.output
    result = CliRunner().invoke(cli, ["config", "show", "--json", "--ice-allow-peer", "10.0.0.0/8"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["ice.allow_peers"] == ["10.0.0.0/8"]
    config = settings.load(env={"SWITCHBOARD_ICE_ALLOW_PEERS": "10.0.0.0/8, fd00::/8"})
    assert config.ice.allow_peers == ("10.0.0.0/8", "fd00::/8")
