"""Switchboard's Python media SDK: programs that take part in calls (bots, agents, recorders).

    from switchboard import Room

    room = await Room.connect("ws://127.0.0.1:8080/ws", room="demo", name="bot")
    async for event in room:
        ...

See docs/python-sdk.md. Signaling alone (no media) is ``signaling.client.Client``.
"""

from switchboard.audio import PcmFrame, PcmReader, PcmSource
from switchboard.errors import ConnectError, Disconnected, RequestError, RoomError
from switchboard.events import (
    ActiveSpeakersChanged,
    DataReceived,
    MediaReconnected,
    ParticipantJoined,
    ParticipantLeft,
    PublishLayers,
    RemoteParticipant,
    RemoteTrack,
    RoomClosed,
    RoomEvent,
    SignalingReconnecting,
    SignalingResumed,
    Speaker,
    TrackMuted,
    TrackPublished,
    TrackSubscribed,
    TrackUnavailable,
    TrackUnpublished,
)
from switchboard.ice import IceOptions
from switchboard.room import Room, RoomOptions
from switchboard.tracks import IncomingTrack, LocalTrackPublication, RtpPacket, RtpStream

__all__ = [
    "ActiveSpeakersChanged", "ConnectError", "DataReceived", "Disconnected", "IceOptions",
    "IncomingTrack", "LocalTrackPublication", "MediaReconnected", "ParticipantJoined",
    "ParticipantLeft", "PcmFrame", "PcmReader", "PcmSource", "PublishLayers", "RemoteParticipant", "RemoteTrack",
    "RequestError", "Room", "RoomClosed", "RoomError", "RoomEvent", "RoomOptions", "RtpPacket",
    "RtpStream", "SignalingReconnecting", "SignalingResumed", "Speaker", "TrackMuted",
    "TrackPublished", "TrackSubscribed", "TrackUnavailable", "TrackUnpublished",
]
