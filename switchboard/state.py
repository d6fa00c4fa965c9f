"""The room as the server describes it: a pure object, no I/O.

:class:`RoomState` turns server messages (``peer-*``, ``track-*``, ``active-speakers``) into
:mod:`switchboard.events` and keeps participants and tracks current. :func:`offer_tracks`
reads which m-line carries which track from a ``subscriber-offer`` (m-lines are recycled, so
``mid -> track`` is re-read from every offer; see docs/sfu.md "Which m-line carries which
track").
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from switchboard.events import (
    ActiveSpeakersChanged,
    ParticipantJoined,
    ParticipantLeft,
    PublishLayers,
    RemoteParticipant,
    RemoteTrack,
    RoomEvent,
    Speaker,
    TrackMuted,
    TrackPublished,
    TrackUnavailable,
    TrackUnpublished,
)

_MSID = re.compile(r"^a=msid:(\S+) (\S+)$")
#: The stream id of a recycled m-line that carries nothing now.
IDLE_STREAM = "switchboard-idle"


def offer_tracks(sdp: str) -> dict[str, str | None]:
    """``mid -> track id`` for each m-section of a ``subscriber-offer`` (None: carries nothing)."""
    result: dict[str, str | None] = {}
    for section in sdp.replace("\r\n", "\n").split("\nm=")[1:]:
        lines = section.split("\n")
        mid = next((line[6:] for line in lines if line.startswith("a=mid:")), None)
        if mid is None:
            continue
        sending = "a=sendonly" in lines or "a=sendrecv" in lines
        track: str | None = None
        for line in lines:
            match = _MSID.match(line)
            if match and match[1] != IDLE_STREAM:
                track = match[2]
        result[mid] = track if sending else None
    return result


class RoomState:
    """Participants, tracks and speakers of one room, updated from server messages."""

    def __init__(self) -> None:
        self.participants: dict[str, RemoteParticipant] = {}
        self.tracks: dict[str, RemoteTrack] = {}
        self.speakers: tuple[Speaker, ...] = ()

    def reset(self, peers: dict[str, str]) -> list[RoomEvent]:
        """A (re)join: ``peers`` is the welcome's list. Returns what changed for the app."""
        events: list[RoomEvent] = []
        for peer_id in list(self.participants):
            if peer_id not in peers:
                events.extend(self._left(peer_id, "left"))
        for peer_id, name in peers.items():
            if peer_id not in self.participants:
                participant = RemoteParticipant(peer_id, name)
                self.participants[peer_id] = participant
                events.append(ParticipantJoined(participant))
        return events

    def forget_tracks(self) -> list[RoomEvent]:
        """The media side starts over (SFU failover): every track is announced again later."""
        events: list[RoomEvent] = [TrackUnpublished(t) for t in self.tracks.values()]
        self.tracks.clear()
        return events

    def peer_joined(self, peer_id: str, name: str) -> list[RoomEvent]:
        participant = RemoteParticipant(peer_id, name)
        self.participants[peer_id] = participant
        return [ParticipantJoined(participant)]

    def peer_left(self, peer_id: str, reason: str) -> list[RoomEvent]:
        return self._left(peer_id, reason)

    def _left(self, peer_id: str, reason: str) -> list[RoomEvent]:
        events: list[RoomEvent] = []
        for track in [t for t in self.tracks.values() if t.peer == peer_id]:
            del self.tracks[track.id]
            events.append(TrackUnpublished(track))
        participant = self.participants.pop(peer_id, None)
        if participant is not None:
            events.append(ParticipantLeft(participant, reason))
        return events

    def apply(self, message: dict[str, Any], local_peer: str | None) -> list[RoomEvent]:
        """One SFU/room message (``track-*``, ``active-speakers``); others give no event."""
        kind = message.get("type")
        if kind == "track-published":
            info = message["track"]
            if info.get("peer") == local_peer:
                return []  # our own track, as the SFU announces it to us
            track = RemoteTrack(
                id=info["id"], peer=info["peer"], kind=info["kind"],
                source=info.get("source") or ("microphone" if info["kind"] == "audio" else "camera"),
                muted=bool(info.get("muted", False)), operator_muted=bool(info.get("operator_muted", False)),
            )
            self.tracks[track.id] = track
            return [TrackPublished(track)]
        if kind == "track-unpublished":
            gone = self.tracks.pop(_track_id(message["track"]), None)
            return [TrackUnpublished(gone)] if gone is not None else []
        if kind in ("track-state", "track-muted"):
            current = self.tracks.get(_track_id(message["track"]))
            if current is None:
                return []
            muted = bool(message["muted"])
            by_operator = kind == "track-muted"
            if by_operator:
                updated = dataclasses.replace(current, operator_muted=muted)
            else:
                updated = dataclasses.replace(current, muted=muted)
            self.tracks[updated.id] = updated
            return [TrackMuted(updated, muted, by_operator)]
        if kind == "track-unavailable":
            return [TrackUnavailable(_track_id(message["track"]), str(message.get("reason", "")))]
        if kind == "publish-layers":
            return [PublishLayers(str(message["track"]), str(message["mid"]), tuple(message["active"]))]
        if kind == "active-speakers":
            self.speakers = tuple(Speaker(s["peer"], float(s["level"])) for s in message["speakers"])
            return [ActiveSpeakersChanged(self.speakers)]
        return []


def _track_id(value: Any) -> str:
    """``track`` fields are an object with ``id`` in some messages and a bare id in others."""
    if isinstance(value, dict):
        return str(value["id"])
    return str(value)


_RTPMAP = re.compile(r"^a=rtpmap:(\d+) ([^/\s]+)/(\d+)")


def offer_codecs(sdp: str) -> dict[str, dict[int, tuple[str, int]]]:
    """``mid -> {payload type: (mime type, clock rate)}`` of each m-section of an SDP."""
    result: dict[str, dict[int, tuple[str, int]]] = {}
    for section in sdp.replace("\r\n", "\n").split("\nm=")[1:]:
        lines = section.split("\n")
        kind = lines[0].split(" ", 1)[0]
        mid = next((line[6:] for line in lines if line.startswith("a=mid:")), None)
        if mid is None:
            continue
        codecs: dict[int, tuple[str, int]] = {}
        for line in lines:
            match = _RTPMAP.match(line)
            if match:
                codecs[int(match[1])] = (f"{kind}/{match[2]}", int(match[3]))
        result[mid] = codecs
    return result
