"""The media SDK's pure parts: room state from server messages, SDP reading, PCM timelines."""

from __future__ import annotations

import fractions

import av
import pytest
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from switchboard.audio import PcmReader, PcmSource
from switchboard.events import (
    ActiveSpeakersChanged,
    ParticipantJoined,
    ParticipantLeft,
    PublishLayers,
    RemoteTrack,
    TrackMuted,
    TrackPublished,
    TrackUnpublished,
)
from switchboard.state import RoomState, offer_codecs, offer_tracks

TRACK = {"id": "t1", "peer": "p_b", "kind": "audio", "source": "microphone", "muted": False, "operator_muted": False}


def test_room_state_follows_participants_and_tracks() -> None:
    state = RoomState()
    assert state.reset({"p_b": "bob"}) == [ParticipantJoined(state.participants["p_b"])]
    (published,) = state.apply({"type": "track-published", "track": TRACK}, "p_me")
    assert published == TrackPublished(RemoteTrack("t1", "p_b", "audio", "microphone"))
    # Our own track as the SFU announces it: not an event.
    assert state.apply({"type": "track-published", "track": {**TRACK, "id": "mine", "peer": "p_me"}}, "p_me") == []
    (muted,) = state.apply({"type": "track-state", "track": "t1", "muted": True}, "p_me")
    assert isinstance(muted, TrackMuted) and muted.muted and not muted.by_operator and muted.track.muted
    (op,) = state.apply({"type": "track-muted", "track": {"id": "t1"}, "muted": True}, "p_me")
    assert isinstance(op, TrackMuted) and op.by_operator and op.track.operator_muted
    (speakers,) = state.apply({"type": "active-speakers", "speakers": [{"peer": "p_b", "level": 0.5}]}, "p_me")
    assert isinstance(speakers, ActiveSpeakersChanged) and speakers.speakers[0].peer == "p_b"
    (layers,) = state.apply({"type": "publish-layers", "track": "v1", "mid": "0", "active": ["q", "f"]}, "p_me")
    assert layers == PublishLayers("v1", "0", ("q", "f"))
    # A participant who leaves takes its tracks along, tracks first.
    gone = state.peer_left("p_b", "kicked")
    assert [type(e) for e in gone] == [TrackUnpublished, ParticipantLeft]
    assert state.tracks == {} and state.participants == {}
    assert state.apply({"type": "track-unpublished", "track": {"id": "t1"}}, "p_me") == []


def test_a_rejoin_reports_who_left_meanwhile() -> None:
    state = RoomState()
    state.reset({"p_b": "bob", "p_c": "carol"})
    events = state.reset({"p_c": "carol", "p_d": "dave"})
    assert [(type(e).__name__, e.participant.id) for e in events] == [
        ("ParticipantLeft", "p_b"), ("ParticipantJoined", "p_d"),
    ]


OFFER = "\r\n".join([
    "v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0",
    "m=audio 9 UDP/TLS/RTP/SAVPF 96", "a=mid:0", "a=sendonly", "a=msid:p_b t1", "a=rtpmap:96 opus/48000/2",
    "m=video 9 UDP/TLS/RTP/SAVPF 97 98", "a=mid:1", "a=sendonly", "a=msid:switchboard-idle idle-1",
    "a=rtpmap:97 VP8/90000", "a=rtpmap:98 rtx/90000",
    "m=video 9 UDP/TLS/RTP/SAVPF 97", "a=mid:2", "a=inactive", "a=msid:p_c t3", "",
])


def test_offer_maps_mids_to_tracks_and_codecs() -> None:
    assert offer_tracks(OFFER) == {"0": "t1", "1": None, "2": None}
    assert offer_codecs(OFFER)["1"] == {97: ("video/VP8", 90000), 98: ("video/rtx", 90000)}
    assert offer_codecs(OFFER)["0"] == {96: ("audio/opus", 48000)}


def _frame(pts: int, samples: int = 960, value: int = 1000) -> av.AudioFrame:
    frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
    frame.planes[0].update(value.to_bytes(2, "little", signed=True) * samples)
    frame.sample_rate = 48_000
    frame.pts = pts
    frame.time_base = fractions.Fraction(1, 48_000)
    return frame


async def _timeline(reader: PcmReader) -> bytes:
    """Everything the reader yields until its track ends."""
    return b"".join([frame.data async for frame in reader])


async def test_pcm_reader_fills_holes_and_drops_overlaps_across_the_rtp_wrap() -> None:
    start = (1 << 32) - 960  # the RTP timestamp wraps after the first frame
    reader = PcmReader(_Frames([
        _frame(start),
        _frame(0),  # contiguous across the wrap
        _frame(2 * 960),  # one frame lost: 960 samples of silence
        _frame(2 * 960 + 480),  # half of it overlaps
    ]), channels=1)
    pcm = await _timeline(reader)
    assert len(pcm) == (4 * 960 + 480) * 2
    assert reader.filled == 960 and reader.overlapped == 480
    hole = pcm[2 * 960 * 2: 3 * 960 * 2]
    assert hole == bytes(len(hole))


async def test_pcm_reader_starts_a_new_timeline_after_a_long_pause() -> None:
    # The second frame comes 5 s later (a media reconnect): not filled.
    reader = PcmReader(_Frames([_frame(0), _frame(48_000 * 5)]), channels=1, max_gap=1.0)
    assert len(await _timeline(reader)) == 2 * 960 * 2 and reader.filled == 0


async def test_pcm_source_sends_what_was_pushed_then_silence() -> None:
    source = PcmSource(max_buffer=0.1)
    source.push(b"\x01\x00" * 960 * 2)
    first = await source.recv()
    assert bytes(first.planes[0])[:4] == b"\x01\x00\x01\x00" and first.pts == 0
    assert first.samples == 960 and first.sample_rate == 48_000
    await source.recv()
    silence = await source.recv()
    assert bytes(silence.planes[0])[: 960 * 2] == bytes(960 * 2) and source.underruns == 1
    source.push(bytes(48_000))  # 0.5 s into a 0.1 s buffer: the oldest is dropped
    assert source.buffered == pytest.approx(0.1) and source.dropped > 0
    source.stop()


class _Frames(MediaStreamTrack):
    """A track that delivers the given frames, then ends."""

    kind = "audio"

    def __init__(self, frames: list[av.AudioFrame]) -> None:
        super().__init__()
        self._frames = list(frames)

    async def recv(self) -> av.AudioFrame:
        if not self._frames:
            raise MediaStreamError
        return self._frames.pop(0)
