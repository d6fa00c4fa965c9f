"""What a :class:`~switchboard.Room` tells the application: plain frozen dataclasses.

The room's view of participants and tracks (:class:`RemoteParticipant`, :class:`RemoteTrack`)
and one event class per change. Every event is also delivered to the callbacks registered with
``Room.on(EventClass, callback)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from switchboard.tracks import IncomingTrack


@dataclass(frozen=True, slots=True)
class RemoteParticipant:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class RemoteTrack:
    """A track another participant publishes (``track-published`` of the protocol)."""

    id: str
    #: Peer id of the publisher.
    peer: str
    #: ``"audio"`` or ``"video"``.
    kind: str
    #: ``camera``, ``microphone``, ``screen`` or ``screen-audio``.
    source: str
    #: Muted by its publisher.
    muted: bool = False
    #: Muted by an operator (the SFU does not forward it meanwhile).
    operator_muted: bool = False


@dataclass(frozen=True, slots=True)
class ParticipantJoined:
    participant: RemoteParticipant


@dataclass(frozen=True, slots=True)
class ParticipantLeft:
    participant: RemoteParticipant
    #: ``left``, ``timeout``, ``kicked``, ``node-lost`` ... (``peer-left.reason``).
    reason: str


@dataclass(frozen=True, slots=True)
class TrackPublished:
    track: RemoteTrack


@dataclass(frozen=True, slots=True)
class TrackUnpublished:
    track: RemoteTrack


@dataclass(frozen=True, slots=True)
class TrackMuted:
    """A track's mute state changed: by its publisher (``track-state``) or an operator."""

    track: RemoteTrack
    muted: bool
    by_operator: bool


@dataclass(frozen=True, slots=True)
class TrackSubscribed:
    """The room subscribed to a track by itself (``auto_subscribe``).

    Sent when the auto-subscription policy took a newly published track: ``stream`` is what
    ``Room.subscribe(track)`` returns (an aiortc ``MediaStreamTrack`` of decoded frames).
    """

    track: RemoteTrack
    stream: IncomingTrack


@dataclass(frozen=True, slots=True)
class TrackUnavailable:
    """The SFU will not send this track to us (``reason``: ``codec`` or ``rejected``)."""

    track_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Speaker:
    peer: str
    #: Smoothed linear audio level, 0..1.
    level: float


@dataclass(frozen=True, slots=True)
class ActiveSpeakersChanged:
    """Who speaks now, loudest first (empty: nobody)."""

    speakers: tuple[Speaker, ...]


@dataclass(frozen=True, slots=True)
class PublishLayers:
    """Dynacast: the simulcast layers (rids, lowest first) of one of *our* published video
    tracks that anybody receives (``publish-layers``). aiortc publishes a single layer, so this
    SDK only reports it; a publisher that sends simulcast should stop the other encodings."""

    track: str
    mid: str
    active: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DataReceived:
    sender: str
    topic: str
    payload: Any
    #: The recipients the sender named, or None when it went to the whole room.
    to: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class SignalingReconnecting:
    """The signaling link dropped; the SDK reconnects (media keeps flowing meanwhile)."""

    attempt: int
    code: int | None


@dataclass(frozen=True, slots=True)
class SignalingResumed:
    """The signaling session survived the cut: nothing was lost, media was not touched."""


@dataclass(frozen=True, slots=True)
class MediaReconnected:
    """The peer connections were rebuilt and local tracks published again.

    ``reason``: ``sfu-failover`` (``reconnect {scope: media}``), ``rejoin`` (the signaling
    session was gone: new peer id) or ``media-failed`` (the SFU reset our publisher connection).
    """

    reason: str
    #: Our peer id after the rebuild (changes with ``rejoin``).
    peer: str


@dataclass(frozen=True, slots=True)
class RoomClosed:
    """The room ended; the last event. ``code`` is the WebSocket close code (4006: kicked)."""

    code: int | None
    reason: str


RoomEvent = (
    ParticipantJoined | ParticipantLeft | TrackPublished | TrackUnpublished | TrackMuted
    | TrackSubscribed | TrackUnavailable | ActiveSpeakersChanged | PublishLayers | DataReceived
    | SignalingReconnecting | SignalingResumed | MediaReconnected | RoomClosed
)
