"""The SFU the signaling service drives: rooms, participants, their two peer connections.

Each participant has, as in LiveKit, a *publisher* peer connection (the client offers, the SFU
answers) and a lazily created *subscriber* peer connection (the SFU offers, renegotiating as
tracks come and go). Media is forwarded at the RTP level (:mod:`sfu.forwarding`), never decoded
or encoded. Everything the SFU says to a client goes through the ``emit`` callback.

Concurrency: every public method is a coroutine on one event loop. Each peer connection has a
lock serialising its negotiation; room state changes happen between awaits, and every await is
followed by a check that the participant is still there.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceCandidate,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpCodecCapability,
    RTCRtpSender,
    RTCSessionDescription,
)

from sfu import aiortc_hooks, track_limits
from sfu.aiortc_hooks import ReceiverTap, SenderTap, TranscodingProbe
from sfu.candidate_policy import CandidatePolicy, Refusal
from sfu.config import SfuConfig
from sfu.errors import (
    BAD_SDP,
    CANDIDATE_REFUSED,
    MEDIA_FAILED,
    NOT_JOINED,
    SFU_ERROR,
    TOO_MANY_TRACKS,
    UNKNOWN_TRACK,
    SfuError,
)
from sfu.forwarding import PublishedTrack, ReceiverRoute, Slot
from sfu.h264 import PROFILE_LEVEL_IDS, codec_name, is_h264
from sfu.ingest import IngestCounters, MediaPacket
from sfu.metrics import ForwardingCounters
from sfu.packets import SenderReport
from sfu.recorder import RecordedTrack, Recording, RecordingCounters, TrackSink
from sfu.sdp_info import (
    MediaSection,
    SdpError,
    announce_address,
    choose_codec,
    is_msid_token,
    parse_candidate,
    parse_session,
    reject_in_offer,
    substitute_rejected,
)
from sfu.sdp_simulcast import answer_simulcast, parse_simulcast
from sfu.simulcast import OFF, QUALITIES
from sfu.speakers import SpeakerDetector
from sfu.tasks import OwnerKind, TaskRegistry

__all__ = ["Emit", "Sfu", "SfuError"]

logger = logging.getLogger(__name__)

#: ``(participant_id, server->client message without seq)``; synchronous.
Emit = Callable[[str, dict[str, Any]], None]
#: (room, "published" | "unpublished", track {id, peer, kind}): told once per track change.
OnTrack = Callable[[str, str, dict[str, Any]], None]
#: A recording finished or failed: its :meth:`Recording.info` (webhook ``recording_finished``).
OnRecording = Callable[[dict[str, Any]], None]

#: Finished recordings remembered for ``recordings()``.
_RECORDED_HISTORY = 100

_MEDIA_KINDS = ("audio", "video")
#: Subscriber answers in a row the SFU cannot apply before it resets the leg (the first one is
#: answered with a fresh offer on the same connection).
_ANSWER_FAILURES_BEFORE_RESET = 2
#: Subscriber connections the SFU builds anew for one participant before it gives up on
#: sending it media (each reset follows a failure; a client that fails every time must not
#: make the SFU loop).
_MAX_SUBSCRIBER_RESETS = 3
#: The msid of a recycled slot while it carries nothing (see ``_reconcile_slots``).
_IDLE_STREAM = "switchboard-idle"
#: Track descriptions (``publish.tracks``) kept per participant.
_MAX_TRACK_INFO = 64
#: Requested simulcast qualities kept per participant (``set-subscription``).
_MAX_QUALITIES = 256


class _PublisherLeg:
    def __init__(self, pc: RTCPeerConnection) -> None:
        self.pc = pc
        self.lock = asyncio.Lock()
        #: One route per negotiated (or prepared) audio/video mid.
        self.routes: dict[str, ReceiverRoute] = {}
        #: Mids unpublished by the client while its offer still says it sends on them.
        self.retired: set[str] = set()
        #: Simulcast m-lines: their layers' rids, fixed when the m-line is first negotiated.
        self.simulcast: dict[str, tuple[str, ...]] = {}


class _SubscriberLeg:
    def __init__(self, pc: RTCPeerConnection) -> None:
        self.pc = pc
        self.lock = asyncio.Lock()
        self.slots: list[Slot] = []
        #: An offer was emitted and its answer has not been applied yet.
        self.awaiting_answer = False
        #: The track set changed while awaiting an answer: offer again after it.
        self.pending = False
        #: Slot assignments announced by the outstanding offer.
        self.offered: dict[Slot, PublishedTrack | None] = {}
        #: Mids the client rejected (port 0): their slots are dead, offered with port 0 again.
        self.rejected_mids: set[str] = set()
        #: Answers in a row that could not be applied.
        self.answer_failures = 0


class _Participant:
    def __init__(
        self,
        room: _Room,
        participant_id: str,
        subscribe: bool = True,
        codecs: frozenset[str] | None = None,
    ) -> None:
        self.room = room
        self.id = participant_id
        #: Receives the room's media. A publish-only participant hears track-published but is
        #: never offered a subscriber connection.
        self.subscribe = subscribe
        #: Codec names (lower case) the client said it can receive; ``None``: not announced,
        #: every codec is offered.
        self.codecs = codecs
        #: Tracks told ``track-unavailable``: never offered to this participant again.
        self.unavailable: set[str] = set()
        #: Subscriber connections reset so far (bounded by ``_MAX_SUBSCRIBER_RESETS``).
        self.subscriber_resets = 0
        self.publisher: _PublisherLeg | None = None
        self.subscriber: _SubscriberLeg | None = None
        #: A WHEP player's connection: the client offered, slots are filled without
        #: renegotiation (see :meth:`Sfu.play`).
        self.player: _SubscriberLeg | None = None
        #: What the player wants: a participant id and/or a track id (None: anything).
        self.play_filter: tuple[str | None, str | None] = (None, None)
        self.left = False
        #: Connections ("publisher", "subscriber") some of whose candidates were refused: their
        #: end-of-candidates is withheld from aioice (see CandidatePolicy.filter_sdp).
        self.refused_candidates: set[str] = set()
        #: What the client said about its tracks (``publish.tracks``), by msid track id.
        self.track_info: dict[str, dict[str, Any]] = {}
        #: Simulcast quality asked per track (``set-subscription``); at most 256 kept.
        self.qualities: dict[str, str] = {}


def _premature_end(leg: _PublisherLeg | _SubscriberLeg) -> bool:
    """An end-of-candidates that arrives while the connection knows no usable remote candidate.

    Native libwebrtc (``@roamhq/wrtc``, M106) sends ``null`` before the first candidate of a
    subscriber connection (its answer carries none aioice can use). Applied, aioice drops the
    component and aiortc ignores the candidates that follow; the peer-reflexive pair the
    client's own checks then create succeeds, but with no component left ICE is declared
    failed: about one subscriber leg in ten (measured on loopback). Withheld, the candidates
    that follow pair normally, and the client's later end-of-candidates is applied as usual.
    """
    return aiortc_hooks.remote_udp_candidate_count(leg.pc) == 0


class _Room:
    def __init__(self, name: str, detector: SpeakerDetector | None = None) -> None:
        self.name = name
        self.participants: dict[str, _Participant] = {}
        #: Published tracks by track id, in publication order.
        self.tracks: dict[str, PublishedTrack] = {}
        #: Tracks the publisher offers being negotiated may add, by participant (room limit).
        self.pending_tracks: dict[str, int] = {}
        #: Recording the whole room: where new publishers' files go (None: not recording).
        self.recording_dir: Path | None = None
        self.speakers = detector or SpeakerDetector()


class Sfu:
    """Selective forwarding unit for many rooms. See docs/sfu.md."""

    def __init__(
        self,
        config: SfuConfig,
        emit: Emit,
        *,
        on_track: OnTrack | None = None,
        on_recording: OnRecording | None = None,
    ) -> None:
        self._config = config
        self._emit_callback = emit
        #: Observer of track changes, once per track (webhooks), not once per recipient.
        self._on_track = on_track
        self._rooms: dict[str, _Room] = {}
        self._tasks = TaskRegistry("sfu", OwnerKind.SFU)
        self._counters = ForwardingCounters()
        self._probe = TranscodingProbe()
        self._closed_tracks = IngestCounters()
        self._recording_counters = RecordingCounters()
        self._recordings: dict[str, Recording] = {}
        #: Finished recordings, newest last (bounded).
        self._recorded: list[Recording] = []
        self._on_recording = on_recording
        self._closed = False
        self._candidate_policy = CandidatePolicy(config.ice_allow_peers)
        self._candidates_refused = 0
        #: The active-speaker task (started with the first audio track).
        self._speaker_task: asyncio.Task[None] | None = None
        self._rtc_configuration = RTCConfiguration(
            # Always an explicit list: with None, aiortc would use a public STUN server.
            iceServers=[_ice_server(s) for s in config.ice_servers],
            bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
        )

    # -- public API ---------------------------------------------------------------------------

    async def close(self) -> None:
        """Close every peer connection and await every task; emits nothing afterwards."""
        if self._closed:
            return
        self._closed = True
        await self._finish_recordings(list(self._recordings.values()))
        pcs: list[RTCPeerConnection] = []
        for room in self._rooms.values():
            for track in room.tracks.values():
                track.close()
            for participant in room.participants.values():
                participant.left = True
                pcs.extend(self._release_legs(participant))
        self._rooms.clear()
        await asyncio.gather(*(self._close_pc(pc) for pc in pcs))
        await self._tasks.close()

    async def join(
        self,
        room: str,
        participant: str,
        *,
        subscribe: bool = True,
        codecs: tuple[str, ...] | None = None,
    ) -> None:
        """Add ``participant`` to ``room``; a subscriber is offered the room's tracks (if any).

        ``codecs``: the codec names the client can receive (``RTCRtpReceiver.getCapabilities``);
        a track in any other codec is not offered to it (``track-unavailable``).
        """
        self._check_open()
        joined = self._rooms.get(room)
        if joined is None:
            joined = self._rooms[room] = _Room(room, SpeakerDetector(self._config.speakers))
        if participant in joined.participants:
            return
        receivable = frozenset(c.lower() for c in codecs) if codecs is not None else None
        p = _Participant(joined, participant, subscribe, receivable)
        joined.participants[participant] = p
        tracks = list(joined.tracks.values())
        for track in tracks:
            self._emit(participant, {"type": "track-published", "track": track.public})
        if joined.speakers.speakers:
            # The set may not change for a while: a joiner learns who speaks now.
            self._emit(participant, _speakers_message(joined.speakers.speakers))
        if tracks and subscribe:
            await self._renegotiate(p)

    async def publish(
        self, room: str, participant: str, sdp: str, *, tracks: list[dict[str, Any]] | None = None
    ) -> str:
        """Apply the client's publisher offer (initial or renegotiation); return the answer.

        ``tracks`` describes the offer's tracks by msid track id: ``{id, source, muted}``.
        """
        p = self._participant(room, participant)
        if tracks:
            p.track_info.update({str(t["id"]): dict(t) for t in tracks})
            while len(p.track_info) > _MAX_TRACK_INFO:
                del p.track_info[next(iter(p.track_info))]  # the oldest description
        sdp = self._remote_sdp(p, "publisher", sdp)
        try:
            session = parse_session(sdp)
        except SdpError as exc:
            raise SfuError(BAD_SDP, str(exc)) from exc
        self._check_bundle(session.sections, session.bundle)
        p.room.pending_tracks[p.id] = self._admit_tracks(p, session.sections)
        try:
            async with self._publisher_lock(p):
                answer, added, removed = await self._negotiate_publisher(p, sdp, session.sections)
        finally:
            p.room.pending_tracks.pop(p.id, None)
        self._announce(p.room, added, removed)
        await self._renegotiate_others(p.room, exclude=p.id)
        return answer

    async def subscriber_answer(self, room: str, participant: str, sdp: str) -> None:
        """Apply the client's answer to the last subscriber-offer."""
        p = self._participant(room, participant)
        sdp = self._remote_sdp(p, "subscriber", sdp)
        leg = p.subscriber
        if leg is None:
            raise SfuError(SFU_ERROR, "no subscriber offer was sent to this participant")
        refused: SfuError | None = None
        everything_rejected = False
        async with leg.lock:
            self._check_participant(p)
            if not leg.awaiting_answer:
                raise SfuError(SFU_ERROR, "no subscriber offer is awaiting an answer")
            try:
                usable, rejected = substitute_rejected(sdp, leg.pc.localDescription.sdp)
                if usable:
                    await leg.pc.setRemoteDescription(RTCSessionDescription(sdp=usable, type="answer"))
                else:
                    # Every m-line rejected: the client has no transport at all. Firefox then
                    # fails ICE on the next offer that adds one, so start the leg over instead.
                    everything_rejected = True
            except Exception as exc:  # aiortc raises many types for bad SDP
                self._check_participant(p)
                # Never leave the leg waiting for an answer that will not come: offer again
                # (or, after repeated failures, start the connection over).
                leg.awaiting_answer = False
                leg.answer_failures += 1
                self._counters.answers_refused += 1
                refused = SfuError(BAD_SDP, f"subscriber answer rejected: {exc}")
                if leg.answer_failures < _ANSWER_FAILURES_BEFORE_RESET:
                    await self._offer_locked(p, leg, force=True)
                    raise refused from exc
            else:
                self._check_participant(p)
                leg.awaiting_answer = False
                leg.answer_failures = 0
                for slot, track in leg.offered.items():
                    slot.negotiated = track
                leg.offered = {}
                self._apply_rejections(p, leg, rejected)
                for slot in list(leg.slots):
                    await slot.try_attach()
                if leg.pending:
                    leg.pending = False
                    await self._offer_locked(p, leg)
        if refused is not None:
            await self._reset_subscriber(p, leg, f"answers refused twice ({refused})")
            raise refused
        if everything_rejected:
            await self._reset_subscriber(
                p, leg, "the answer rejected every m-line; the next offer comes on a new connection",
                count=False,
            )

    async def add_candidate(
        self,
        room: str,
        participant: str,
        target: Literal["publisher", "subscriber"],
        candidate: dict[str, Any] | None,
    ) -> None:
        """Add a trickled remote ICE candidate (``None`` or empty = end of candidates)."""
        p = self._participant(room, participant)
        if target not in ("publisher", "subscriber"):
            raise SfuError(SFU_ERROR, f"unknown candidate target {target!r}")
        ice = _ice_candidate(candidate)
        if ice is not None and ice.protocol != "udp":
            logger.debug("ignoring %s candidate of %s (aiortc has no ICE-TCP)", ice.protocol, p.id)
            return
        if ice is not None:
            refused = self._candidate_policy.check(ice.ip)
            if refused is not None:
                self._refused(p, target, [refused])
                raise SfuError(CANDIDATE_REFUSED, f"{refused}: the SFU does not contact it")
        elif target in p.refused_candidates:
            logger.debug("end-of-candidates of %s's %s withheld (peer-reflexive may follow)", p.id, target)
            return
        leg: _PublisherLeg | _SubscriberLeg | None = (
            p.publisher if target == "publisher" else (p.subscriber or p.player)
        )
        if leg is None:
            logger.debug("candidate for %s's absent %s connection dropped", p.id, target)
            return
        async with leg.lock:
            self._check_participant(p)
            if ice is None and _premature_end(leg):
                logger.debug("end-of-candidates of %s's %s before any candidate withheld", p.id, target)
                return
            try:
                await leg.pc.addIceCandidate(ice)
            except ValueError as exc:
                if ice is None:
                    logger.debug("repeated end-of-candidates from %s: %s", p.id, exc)
                    return
                raise SfuError(BAD_SDP, f"candidate rejected: {exc}") from exc

    async def unpublish(self, room: str, participant: str, track_id: str) -> None:
        """Stop forwarding one of the participant's tracks and tell the room."""
        p = self._participant(room, participant)
        track = p.room.tracks.get(track_id)
        if track is None or track.publisher != p.id or p.publisher is None:
            raise SfuError(UNKNOWN_TRACK, f"{participant} publishes no track {track_id!r}")
        route = p.publisher.routes.get(track.mid)
        if route is not None and route.track is track:
            route.assign(None)
        p.publisher.retired.add(track.mid)
        self._announce(p.room, [], [track])
        await self._renegotiate_others(p.room, exclude=p.id)

    async def mute(self, room: str, participant: str, track_id: str, muted: bool) -> None:
        """Stop (or restart) forwarding a published track; everyone in the room hears
        ``track-muted``. The publisher keeps sending: the SFU is the one that drops it."""
        p = self._participant(room, participant)
        track = p.room.tracks.get(track_id)
        if track is None or track.publisher != p.id:
            raise SfuError(UNKNOWN_TRACK, f"{participant} publishes no track {track_id!r}")
        if not track.set_muted(muted):
            return
        for other in list(p.room.participants.values()):
            self._emit(other.id, {"type": "track-muted", "track": track.public, "muted": muted})
        if not muted and track.kind == "video":
            await track.request_keyframe()

    async def set_track_state(self, room: str, participant: str, track_id: str, muted: bool) -> None:
        """The publisher muted (unmuted) its own track. Forwarding goes on (the client sends
        silence or black frames); the other participants hear ``track-state``."""
        p = self._participant(room, participant)
        track = self._own_track(p, track_id)
        if track is None:
            info = p.track_info.get(track_id)
            if info is None:
                raise SfuError(UNKNOWN_TRACK, f"{participant} publishes no track {track_id!r}")
            info["muted"] = muted  # announced, negotiation still under way: applied then
            return
        if track.self_muted == muted:
            return
        track.self_muted = muted
        info = p.track_info.get(track.msid_track or "")
        if info is not None:
            info["muted"] = muted
        for other in list(p.room.participants.values()):
            if other.id != p.id:
                self._emit(other.id, {"type": "track-state", "track": track.public, "muted": muted})

    async def set_subscription(self, room: str, participant: str, track_id: str, quality: str) -> None:
        """Which quality the participant wants of another participant's video track.

        ``quality``: ``low``, ``medium``, ``high`` or ``off`` (:data:`sfu.simulcast.QUALITIES`).
        Applies to simulcast tracks (the slot moves to the matching layer at its next keyframe;
        the participant hears ``track-layer`` when the layer it gets changes); for a
        single-layer track it is remembered, in case the track is republished with simulcast.
        """
        p = self._participant(room, participant)
        if quality not in (*QUALITIES, OFF):
            raise SfuError(SFU_ERROR, f"unknown quality {quality!r}")
        track = p.room.tracks.get(track_id)
        if track is None or track.publisher == p.id:
            raise SfuError(UNKNOWN_TRACK, f"no track {track_id!r} to subscribe to")
        p.qualities.pop(track_id, None)
        p.qualities[track_id] = quality
        while len(p.qualities) > _MAX_QUALITIES:
            del p.qualities[next(iter(p.qualities))]
        for leg in (p.subscriber, p.player):
            for slot in leg.slots if leg is not None else ():
                if slot.track is track:
                    slot.quality = quality
                    if slot.attached is track and track.simulcast is not None:
                        await track.simulcast.set_quality(slot)

    def _own_track(self, p: _Participant, track_id: str) -> PublishedTrack | None:
        """A track of ``p`` by its track id or by the msid track id of its offer."""
        track = p.room.tracks.get(track_id)
        if track is not None and track.publisher == p.id:
            return track
        return next(
            (t for t in p.room.tracks.values() if t.publisher == p.id and t.msid_track == track_id), None
        )

    async def adopt(self, room: str, participant: str, *, subscribe: bool = True) -> None:
        """Nothing to take over: an in-process SFU serves only its own node's participants
        (the media port's ``adopt`` matters for a cluster's remote SFU)."""

    async def leave(self, room: str, participant: str) -> None:
        """Remove the participant: its tracks leave every subscriber, its connections close.

        Idempotent: leaving twice, or leaving a room never joined, does nothing.
        """
        joined = self._rooms.get(room)
        p = joined.participants.get(participant) if joined is not None else None
        if joined is None or p is None:
            return
        p.left = True
        del joined.participants[participant]
        removed = [t for t in joined.tracks.values() if t.publisher == participant]
        pcs = self._release_legs(p)
        self._announce(joined, [], removed)
        if not joined.participants and self._rooms.get(room) is joined:
            del self._rooms[room]
        await asyncio.gather(*(self._close_pc(pc) for pc in pcs))
        if removed:
            await self._renegotiate_others(joined, exclude=participant)

    async def play(
        self,
        room: str,
        participant: str,
        sdp: str,
        *,
        peer: str | None = None,
        track: str | None = None,
    ) -> str:
        """Answer a player's (WHEP) offer: the room's tracks on the m-lines it offers to receive.

        ``peer``/``track`` narrow what is played. Each offered audio/video m-line gets one
        slot; a slot without a track yet (nothing published) is filled later, without
        renegotiation, when a matching track appears, and refilled when its track goes away.
        """
        p = self._participant(room, participant)
        if track is not None and track not in p.room.tracks:
            raise SfuError(UNKNOWN_TRACK, f"no track {track!r} in {room}")
        try:
            session = parse_session(sdp)
        except SdpError as exc:
            raise SfuError(BAD_SDP, str(exc)) from exc
        self._check_bundle(session.sections, session.bundle)
        if p.player is not None or p.publisher is not None:
            raise SfuError(SFU_ERROR, f"{participant} already has a media connection")
        leg = p.player = _SubscriberLeg(self._new_pc(p, "player"))
        p.play_filter = (peer, track)
        async with leg.lock:
            taken: set[PublishedTrack] = set()
            for section in session.sections:
                if section.kind not in _MEDIA_KINDS or section.mid is None or section.port == 0:
                    continue
                chosen = next(
                    (
                        t
                        for t in self._playable(p)
                        if t.kind == section.kind and t not in taken
                        and choose_codec(section, (t.codec,)) is not None
                    ),
                    None,
                )
                codec = chosen.codec if chosen is not None else choose_codec(
                    section, self._config.video_codecs
                )
                if codec is None:
                    raise SfuError(BAD_SDP, f"m-line {section.mid} ({section.kind}) offers no codec we send")
                slot = self._new_slot(p, leg, section.kind, codec)
                if chosen is not None:
                    taken.add(chosen)
                    slot.track = slot.negotiated = chosen
                    slot.tap.set_msid(stream_id(chosen.publisher), chosen.id)
            if not leg.slots:
                raise SfuError(BAD_SDP, "the offer has no audio or video m-line to play")
            pc = leg.pc
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
                self._check_participant(p)
                aiortc_hooks.configure_ice(pc, self._config.host_addresses, self._config.port_range)
                await pc.setLocalDescription(await pc.createAnswer())
            except Exception as exc:  # aiortc raises many types for bad SDP
                if p.player is leg:
                    p.player = None
                    for slot in leg.slots:
                        slot.close()
                    await self._close_pc(pc)
                self._check_participant(p)
                raise SfuError(BAD_SDP, f"player offer rejected: {exc}") from exc
            self._check_participant(p)
            for slot in leg.slots:
                await slot.try_attach()
            return self._outgoing_sdp(pc.localDescription.sdp)

    def _playable(self, p: _Participant) -> list[PublishedTrack]:
        peer, track = p.play_filter
        return [
            t
            for t in p.room.tracks.values()
            if t.publisher != p.id
            and (peer is None or t.publisher == peer)
            and (track is None or t.id == track)
        ]

    async def _refill_players(self, room: _Room) -> None:
        """Give players' idle slots a track of their kind and codec (no renegotiation)."""
        for p in list(room.participants.values()):
            leg = p.player
            if leg is None or p.left:
                continue
            carried = {s.track for s in leg.slots if s.track is not None and not s.track.closed}
            for slot in leg.slots:
                if slot.track is not None and not slot.track.closed:
                    continue
                chosen = next(
                    (
                        t
                        for t in self._playable(p)
                        if t.kind == slot.kind and t.codec == slot.codec and t not in carried
                    ),
                    None,
                )
                slot.track = slot.negotiated = chosen
                if chosen is not None:
                    carried.add(chosen)
                    await slot.try_attach()

    # -- recording ----------------------------------------------------------------------------

    async def record_start(
        self, room: str, *, directory: str, track: str | None = None
    ) -> list[dict[str, Any]]:
        """Record ``room`` (every publisher, including later ones) or one ``track`` to files
        under ``directory``; return the recordings started. See :mod:`sfu.recorder`."""
        self._check_open()
        joined = self._rooms.get(room)
        if joined is None:
            raise SfuError(NOT_JOINED, f"no room {room!r} on this SFU")
        base = Path(directory)
        if track is not None:
            chosen = joined.tracks.get(track)
            if chosen is None:
                raise SfuError(UNKNOWN_TRACK, f"no track {track!r} in {room}")
            if any(isinstance(sink, _Sink) for sink in chosen.sinks):
                raise SfuError(SFU_ERROR, f"track {track} is already being recorded")
            started = [self._start_recording(joined, [chosen], base, single_track=True)]
        else:
            if joined.recording_dir is not None:
                raise SfuError(SFU_ERROR, f"room {room} is already being recorded")
            joined.recording_dir = base
            started = self._record_publishers(joined, list(joined.tracks.values()))
        for rec in started:
            for t in rec.tracks:
                published = joined.tracks.get(t.track_id)
                if published is not None and published.kind == "video":
                    await published.request_keyframe()
        return [rec.info() for rec in started]

    async def record_stop(self, room: str) -> list[dict[str, Any]]:
        """Stop every recording of ``room``; return them once their files are closed."""
        self._check_open()
        joined = self._rooms.get(room)
        if joined is not None:
            joined.recording_dir = None
        stopping = [r for r in self._recordings.values() if r.room == room]
        if not stopping and joined is None:
            raise SfuError(NOT_JOINED, f"no room {room!r} on this SFU")
        await self._finish_recordings(stopping)
        return [r.info() for r in stopping]

    async def recordings(self) -> list[dict[str, Any]]:
        """Active recordings, then the last finished ones."""
        active = [r.info() for r in self._recordings.values()]
        return active + [r.info() for r in reversed(self._recorded)]

    def _record_publishers(self, room: _Room, tracks: list[PublishedTrack]) -> list[Recording]:
        assert room.recording_dir is not None
        by_publisher: dict[str, list[PublishedTrack]] = {}
        for t in tracks:
            if not any(isinstance(sink, _Sink) for sink in t.sinks):
                by_publisher.setdefault(t.publisher, []).append(t)
        return [
            self._start_recording(room, group, room.recording_dir, single_track=False)
            for group in by_publisher.values()
        ]

    def _start_recording(
        self, room: _Room, tracks: list[PublishedTrack], directory: Path, *, single_track: bool
    ) -> Recording:
        rec = Recording(
            room=room.name,
            participant=tracks[0].publisher,
            tracks=[RecordedTrack(t.id, t.kind, t.codec) for t in tracks],
            directory=directory,
            counters=self._recording_counters,
            single_track=single_track,
        )
        self._recordings[rec.id] = rec
        for index, t in enumerate(tracks):
            t.sinks.append(_Sink(rec.sink(index)))
        rec.start()
        rec.done.add_done_callback(lambda _f: self._recording_done(rec))
        logger.info("recording %s of %s in %s to %s", rec.id, rec.participant, room.name, rec.path)
        return rec

    def _recording_done(self, rec: Recording) -> None:
        if self._recordings.pop(rec.id, None) is None:
            return
        for room in self._rooms.values():
            for t in room.tracks.values():
                t.sinks = [s for s in t.sinks if not (isinstance(s, _Sink) and s.recording is rec)]
        self._recorded.append(rec)
        del self._recorded[:-_RECORDED_HISTORY]
        if self._on_recording is not None:
            self._on_recording(rec.info())

    async def _finish_recordings(self, recordings: list[Recording]) -> None:
        for rec in recordings:
            rec.stop()
        if not recordings:
            return
        try:
            async with asyncio.timeout(self._config.close_timeout):
                await asyncio.gather(*(asyncio.shield(r.done) for r in recordings))
        except TimeoutError:
            for rec in recordings:
                if not rec.done.done():
                    rec.fail(f"closing the file took over {self._config.close_timeout}s")
            logger.warning("recordings did not close within %ss", self._config.close_timeout)

    def _track_ended(self, track: PublishedTrack) -> None:
        """A recorded track went away: its recording ends once all its tracks have."""
        for sink in track.sinks:
            if not isinstance(sink, _Sink):
                continue
            rec = sink.recording
            others = [
                t for room in self._rooms.values() for t in room.tracks.values()
                if t is not track and not t.closed and any(
                    isinstance(s, _Sink) and s.recording is rec for s in t.sinks
                )
            ]
            if not others:
                rec.stop()
        track.sinks = []

    def stats(self) -> dict[str, Any]:
        """Counts and per-track forwarding figures (cheap; safe to call often)."""
        tracks = [t for room in self._rooms.values() for t in room.tracks.values()]
        ingest = IngestCounters(**vars_of(self._closed_tracks))
        for track in tracks:
            for name, value in vars_of(track.ingest_counters).items():
                setattr(ingest, name, getattr(ingest, name) + value)
        participants = [p for room in self._rooms.values() for p in room.participants.values()]
        pcs = sum(
            (p.publisher is not None) + (p.subscriber is not None) + (p.player is not None)
            for p in participants
        )
        rec = self._recording_counters
        return {
            "rooms": len(self._rooms),
            "participants": len(participants),
            "tracks": len(tracks),
            "peer_connections": pcs,
            "subscriber_transceivers": sum(
                len(p.subscriber.slots) for p in participants if p.subscriber is not None
            ),
            "tasks": len(self._tasks),
            "candidates_refused": self._candidates_refused,
            "packets_in": ingest.packets,
            "bytes_in": ingest.bytes,
            "rtx_unwrapped": ingest.rtx_unwrapped,
            "padding_dropped": ingest.padding_dropped,
            "duplicates_dropped": ingest.duplicates_dropped,
            **self._counters.as_dict(),
            "transcoding": {
                "frames_to_decoder": self._probe.frames_to_decoder,
                "encoder_calls": self._probe.encoder_calls,
                "packets_past_tap": self._probe.packets_past_tap,
            },
            "per_track": [t.stats() for t in tracks],
            "recordings_active": len(self._recordings),
            "recordings_started": rec.started,
            "recordings_finished": rec.finished,
            "recordings_failed": rec.failed,
            "recording_bytes_written": rec.bytes_written,
            "recording_packets_dropped": rec.packets_dropped,
        }

    # -- remote input limits ------------------------------------------------------------------

    def _remote_sdp(self, p: _Participant, target: str, sdp: str) -> str:
        """The client's SDP without the candidates the policy refuses (before aiortc sees it)."""
        kept, refused = self._candidate_policy.filter_sdp(sdp)
        if refused:
            self._refused(p, target, refused)
        return kept

    def _refused(self, p: _Participant, target: str, refused: list[Refusal]) -> None:
        p.refused_candidates.add(target)
        self._candidates_refused += len(refused)
        logger.info(
            "refused %d ICE candidate(s) of %s in %s: %s",
            len(refused), p.id, p.room.name, ", ".join(str(r) for r in refused),
        )

    def _admit_tracks(self, p: _Participant, sections: list[MediaSection]) -> int:
        """The number of tracks the offer publishes, if the track limits allow it."""
        room = p.room
        retired = p.publisher.retired if p.publisher is not None else set()
        offered = track_limits.offered_tracks(sections, retired)
        others = sum(1 for t in room.tracks.values() if t.publisher != p.id)
        others += sum(n for peer, n in room.pending_tracks.items() if peer != p.id)
        why = track_limits.refusal(
            offered,
            others=others,
            per_kind=self._config.max_tracks_per_kind,
            per_room=self._config.max_tracks_per_room,
        )
        if why is not None:
            raise SfuError(TOO_MANY_TRACKS, why)
        return sum(offered.values())

    # -- publisher negotiation ----------------------------------------------------------------

    def _publisher_lock(self, p: _Participant) -> asyncio.Lock:
        if p.publisher is None:
            pc = self._new_pc(p, "publisher")
            p.publisher = _PublisherLeg(pc)
        return p.publisher.lock

    async def _negotiate_publisher(
        self, p: _Participant, sdp: str, sections: list[MediaSection]
    ) -> tuple[str, list[PublishedTrack], list[PublishedTrack]]:
        self._check_participant(p)
        leg = p.publisher
        assert leg is not None
        pc = leg.pc
        initial = pc.remoteDescription is None
        simulcast = {
            mid: offer for mid, offer in parse_simulcast(sdp).items()
            if any(s.mid == mid and s.kind == "video" and s.sending for s in sections)
            and leg.simulcast.get(mid, offer.rids) == offer.rids
            and (mid in leg.simulcast or mid not in leg.routes)
        }
        try:
            self._prepare_transceivers(leg, sections)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            self._check_participant(p)
            if not any(section.setup == "passive" for section in sections):
                aiortc_hooks.answer_as_dtls_server(pc)
            aiortc_hooks.configure_ice(pc, self._config.host_addresses, self._config.port_range)
            if simulcast:
                aiortc_hooks.negotiate_rid_extensions(pc, simulcast)
                for mid, offer in simulcast.items():
                    route = leg.routes.get(mid)
                    if route is not None and route.tap is not None:
                        route.tap.enable_simulcast()
                        if mid not in leg.simulcast:
                            logger.info("%s in %s publishes simulcast on m-line %s: rids %s",
                                        p.id, p.room.name, mid, ",".join(offer.rids))
                        leg.simulcast[mid] = offer.rids
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc raises many types for bad SDP
            if initial and p.publisher is leg:
                # A half-configured first connection is worth nothing: start over next time.
                p.publisher = None
                await self._close_pc(pc)
            self._check_participant(p)
            if isinstance(exc, SfuError):
                raise
            raise SfuError(BAD_SDP, f"publisher offer rejected: {exc}") from exc
        self._check_participant(p)
        added, removed = self._reconcile_published(p, leg, sections)
        answer = answer_simulcast(pc.localDescription.sdp, simulcast)
        return self._outgoing_sdp(answer), added, removed

    def _prepare_transceivers(self, leg: _PublisherLeg, sections: list[MediaSection]) -> None:
        """One transceiver per new audio/video m-line, its codec forced by preferences.

        Must run before ``setRemoteDescription``: aiortc negotiates codecs inside it, and
        matches each new m-line to the first unassigned transceiver of its kind, in order.
        """
        pc = leg.pc
        for section in sections:
            if section.kind not in _MEDIA_KINDS or section.mid is None:
                continue
            route = leg.routes.get(section.mid)
            codec = self._forced_codec(section, route)
            if route is None:
                direction = "recvonly" if section.sending else "inactive"
                transceiver = pc.addTransceiver(section.kind, direction=direction)
                route = ReceiverRoute()
                route.tap = ReceiverTap(transceiver.receiver, route, self._probe)
                leg.routes[section.mid] = route
                if codec is not None:
                    transceiver.setCodecPreferences(_capabilities(section.kind, codec))
            elif codec is not None and route.codec is None:
                transceiver = _transceiver_by_mid(pc, section.mid)
                if transceiver is not None:
                    transceiver.direction = "recvonly"
                    transceiver.setCodecPreferences(_capabilities(section.kind, codec))
            if codec is not None:
                route.codec = codec

    def _forced_codec(self, section: MediaSection, route: ReceiverRoute | None) -> str | None:
        if not section.sending:
            return None
        if route is not None and route.codec is not None:
            if choose_codec(section, (route.codec,)) is None:
                raise SfuError(
                    BAD_SDP, f"m-line {section.mid} no longer offers its codec {route.codec}"
                )
            return route.codec
        codec = choose_codec(section, self._config.video_codecs)
        if codec is None:
            wanted = "opus" if section.kind == "audio" else "/".join(self._config.video_codecs)
            raise SfuError(BAD_SDP, f"m-line {section.mid} ({section.kind}) offers no {wanted}")
        return codec

    def _reconcile_published(
        self, p: _Participant, leg: _PublisherLeg, sections: list[MediaSection]
    ) -> tuple[list[PublishedTrack], list[PublishedTrack]]:
        """Which tracks the accepted offer adds and removes."""
        added: list[PublishedTrack] = []
        removed: list[PublishedTrack] = []
        room = p.room
        for section in sections:
            route = leg.routes.get(section.mid or "")
            if route is None or section.mid is None:
                continue
            current = route.track
            if section.sending and section.mid not in leg.retired:
                if current is not None and (
                    section.msid_track is None or section.msid_track == current.msid_track
                ):
                    continue
                if current is not None:
                    removed.append(current)
                info = p.track_info.get(section.msid_track or "", {})
                source = info.get("source")
                if source is not None and _source_kind(str(source)) != section.kind:
                    source = None  # a camera cannot be an audio track: keep the default
                track = PublishedTrack(
                    track_id=self._track_id(room, section),
                    publisher=p.id,
                    kind=section.kind,
                    source=str(source) if source is not None else None,
                    self_muted=bool(info.get("muted", False)),
                    level_threshold=self._config.speakers.threshold,
                    codec=route.codec or "",
                    mid=section.mid,
                    msid_track=section.msid_track,
                    counters=self._counters,
                    keyframe_interval=self._config.keyframe_request_interval,
                    remb_ttl=self._config.remb_ttl,
                    rids=leg.simulcast.get(section.mid, ()),
                )
                if track.simulcast is not None:
                    track.simulcast.on_publish_layers = (
                        lambda rids, pid=p.id, tid=track.id, mid=section.mid: self._emit(
                            pid, {"type": "publish-layers", "track": tid, "mid": mid, "active": rids}
                        )
                    )
                route.assign(track)
                room.tracks[track.id] = track
                added.append(track)
            else:
                if not section.sending:
                    leg.retired.discard(section.mid)
                if current is not None:
                    route.assign(None)
                    removed.append(current)
        return added, removed

    def _track_id(self, room: _Room, section: MediaSection) -> str:
        """The publisher's msid track id when usable and unique here, else a generated one."""
        candidate = section.msid_track
        if is_msid_token(candidate) and candidate not in room.tracks:
            assert candidate is not None
            return candidate
        return f"{section.kind}-{uuid.uuid4().hex[:16]}"

    def _announce(
        self, room: _Room, added: list[PublishedTrack], removed: list[PublishedTrack]
    ) -> None:
        """Update the room's track set and tell every other participant."""
        for track in removed:
            track.close()
            self._track_ended(track)
            if room.tracks.get(track.id) is track:
                del room.tracks[track.id]
                if self._on_track is not None:
                    self._on_track(room.name, "unpublished", track.public)
            self._retire_counters(track)
        if added and room.recording_dir is not None and not self._closed:
            self._record_publishers(room, added)
        if self._on_track is not None:
            for track in added:
                self._on_track(room.name, "published", track.public)
        if any(t.kind == "audio" for t in added) and self._speaker_task is None and not self._closed:
            self._speaker_task = self._tasks.spawn(self._speakers_loop(), name="sfu-active-speakers")
        for other in list(room.participants.values()):
            for track in removed:
                if track.publisher != other.id:
                    self._emit(other.id, {"type": "track-unpublished", "track": track.public})
            for track in added:
                if track.publisher != other.id:
                    self._emit(other.id, {"type": "track-published", "track": track.public})

    def _retire_counters(self, track: PublishedTrack) -> None:
        for name, value in vars_of(track.ingest_counters).items():
            setattr(self._closed_tracks, name, getattr(self._closed_tracks, name) + value)

    # -- active speakers ----------------------------------------------------------------------

    async def _speakers_loop(self) -> None:
        """Every interval, each room's audio levels become ``active-speakers`` when the set of
        speakers changed. One task for all rooms: the work per room is a few additions."""
        while not self._closed:
            await asyncio.sleep(self._config.speakers.interval)
            rooms = list(self._rooms.values())
            for room in rooms:
                self._tick_speakers(room)
            if all(r.speakers.idle and not any(t.level is not None for t in r.tracks.values()) for r in rooms):
                # No audio anywhere and every "nobody speaks" said: the next audio track restarts it.
                self._speaker_task = None
                return

    def _tick_speakers(self, room: _Room) -> None:
        samples = [
            (t.publisher, *t.level.take()) for t in room.tracks.values() if t.level is not None
        ]
        speakers = room.speakers.tick(samples)
        if speakers is None:
            return
        message = _speakers_message(speakers)
        for participant in list(room.participants.values()):
            self._emit(participant.id, message)

    # -- subscriber negotiation ---------------------------------------------------------------

    def _apply_rejections(self, p: _Participant, leg: _SubscriberLeg, mids: list[str]) -> None:
        """The client rejected these m-lines: their slots die, their tracks are unavailable."""
        for mid in mids:
            if mid in leg.rejected_mids:
                continue
            leg.rejected_mids.add(mid)
            slot = next((s for s in leg.slots if s.transceiver.mid == mid), None)
            if slot is None:
                continue
            track = slot.track
            slot.track = None
            slot.negotiated = None
            slot.close()
            slot.transceiver.direction = "inactive"
            if track is not None:
                self._unavailable(p, track, "rejected")

    def _unavailable(self, p: _Participant, track: PublishedTrack, reason: str) -> None:
        if track.id in p.unavailable:
            return
        p.unavailable.add(track.id)
        self._counters.tracks_unavailable += 1
        self._emit(
            p.id,
            {"type": "track-unavailable", "track": track.public, "reason": reason},
        )

    def _receivable(self, p: _Participant, track: PublishedTrack) -> bool:
        if track.id in p.unavailable:
            return False
        if p.codecs is not None and track.codec.lower() not in p.codecs:
            self._unavailable(p, track, "codec")
            return False
        return True

    async def _reset_subscriber(
        self, p: _Participant, leg: _SubscriberLeg, why: str, *, count: bool = True
    ) -> None:
        """Close the subscriber connection, tell the client, offer a fresh one (bounded: a
        reset caused by a failure counts towards ``_MAX_SUBSCRIBER_RESETS``)."""
        if p.left or self._closed or p.subscriber is not leg:
            return
        for slot in leg.slots:
            slot.close()
        p.subscriber = None
        await self._close_unless_closing(leg.pc)
        p.subscriber_resets += count
        self._counters.subscriber_resets += 1
        giving_up = p.subscriber_resets > _MAX_SUBSCRIBER_RESETS
        logger.warning(
            "subscriber connection of %s in %s reset (%s)%s",
            p.id, p.room.name, why, "; giving up" if giving_up else "",
        )
        message = f"the subscriber connection was reset: {why}"
        if giving_up:
            p.subscribe = False
            message += "; no more media will be offered to this session"
        self._emit(
            p.id,
            {"type": "error", "code": MEDIA_FAILED, "message": message, "target": "subscriber"},
        )
        await self._renegotiate(p)

    async def _renegotiate_others(self, room: _Room, exclude: str) -> None:
        await self._refill_players(room)
        for other in list(room.participants.values()):
            if other.id == exclude:
                continue
            try:
                await self._renegotiate(other)
            except SfuError as exc:
                logger.warning("renegotiating %s in %s failed: %s", other.id, room.name, exc)

    async def _renegotiate(self, p: _Participant) -> None:
        """Bring ``p``'s subscriber connection in line with the room (coalescing offers)."""
        if p.left or self._closed or not p.subscribe:
            return
        if p.subscriber is None:
            if not any(
                t.publisher != p.id and self._receivable(p, t) for t in p.room.tracks.values()
            ):
                return  # lazy: no connection until there is something to send
            p.subscriber = _SubscriberLeg(self._new_pc(p, "subscriber"))
        leg = p.subscriber
        async with leg.lock:
            if p.left or self._closed or p.subscriber is not leg:
                return
            if leg.awaiting_answer:
                leg.pending = True
                return
            await self._offer_locked(p, leg)

    async def _offer_locked(self, p: _Participant, leg: _SubscriberLeg, force: bool = False) -> None:
        if not self._reconcile_slots(p, leg) and not force:
            return
        pc = leg.pc
        try:
            aiortc_hooks.configure_ice(pc, self._config.host_addresses, self._config.port_range)
            await pc.setLocalDescription(await pc.createOffer())
        except Exception as exc:  # aiortc failure on our own offer: report, keep the room going
            raise SfuError(SFU_ERROR, f"creating a subscriber offer failed: {exc}") from exc
        if p.left or self._closed:
            return
        leg.awaiting_answer = True
        leg.offered = {slot: slot.track for slot in leg.slots}
        sdp = reject_in_offer(pc.localDescription.sdp, leg.rejected_mids)
        self._emit(p.id, {"type": "subscriber-offer", "sdp": self._outgoing_sdp(sdp)})

    def _reconcile_slots(self, p: _Participant, leg: _SubscriberLeg) -> bool:
        """Assign the room's tracks to slots; return True if the next offer differs.

        Slot policy: a slot whose track went away stays ``sendonly`` and silent (its msid
        becomes ``switchboard-idle <n>``) until a new track of its kind and codec takes it.
        Making it ``inactive`` in between would be a direction change on an existing m-line,
        which GStreamer 1.22's webrtcbin refuses ("transceiver direction changes are not
        implemented"), after which it never decodes the new track. So the number of m-lines
        is the largest number of tracks per (kind, codec) the participant ever received at
        once (plus m-lines the client rejected), however long the session lives.
        """
        wanted = [
            t for t in p.room.tracks.values() if t.publisher != p.id and self._receivable(p, t)
        ]
        changed = False
        for index, slot in enumerate(leg.slots):
            if slot.track is not None and slot.track not in wanted:
                slot.track = None
                slot.detach()
                slot.tap.set_msid(_IDLE_STREAM, f"idle-{index}")
                changed = True
        carried = {slot.track for slot in leg.slots if slot.track is not None}
        for track in wanted:
            if track in carried:
                continue
            free = next(
                (
                    s
                    for s in leg.slots
                    if s.track is None
                    and not s.closed
                    and s.kind == track.kind
                    and s.codec == track.codec
                ),
                None,
            )
            slot = free or self._new_slot(p, leg, track.kind, track.codec)
            slot.track = track
            slot.quality = p.qualities.get(track.id, "high")
            slot.tap.set_msid(stream_id(track.publisher), track.id)
            slot.transceiver.direction = "sendonly"
            changed = True
        return changed

    def _new_slot(self, p: _Participant, leg: _SubscriberLeg, kind: str, codec: str) -> Slot:
        transceiver = leg.pc.addTransceiver(kind, direction="sendonly")
        transceiver.setCodecPreferences(_capabilities(kind, codec))
        slot = Slot(
            subscriber=p.id,
            kind=kind,
            codec=codec,
            counters=self._counters,
            transceiver=transceiver,
            make_tap=lambda s: SenderTap(transceiver.sender, s, self._probe),
        )
        slot.on_layer = lambda s, track, layer: self._emit(
            p.id, {"type": "track-layer", "track": track.id, "requested": s.quality, **layer}
        )
        leg.slots.append(slot)
        return slot

    # -- connections --------------------------------------------------------------------------

    def _new_pc(self, p: _Participant, role: str) -> RTCPeerConnection:
        pc = RTCPeerConnection(configuration=self._rtc_configuration)

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState in ("failed", "closed") and not p.left and not self._closed:
                self._tasks.spawn_if_open(self._on_pc_down(p, pc, role), name=f"sfu-{role}-down-{p.id}",
                                         owner=f"room:{p.room.name}")

        return pc

    async def _on_pc_down(self, p: _Participant, pc: RTCPeerConnection, role: str) -> None:
        """A connection went down under us: drop what depended on it, and tell the client.

        Every close the SFU makes itself detaches the leg first, so a leg still held here went
        down on its own. That is a failure even when aiortc reports "closed" rather than
        "failed": when ICE consent expires (RFC 7675, no answer for ~30 s) aioice closes the
        connection, the DTLS transport ends with "closed", and aiortc closes the whole peer
        connection by itself. Treating that as "the client closed it" left a subscriber without
        media (nothing offered until the room changed) and a publisher unpublished without a
        word; both now get ``media-failed``, like an ICE or DTLS failure, whose message names
        the layer that failed (:func:`sfu.aiortc_hooks.failure_reason`).
        """
        state = pc.connectionState
        why = (
            aiortc_hooks.failure_reason(pc) if state == "failed"
            else "it closed under us (ICE consent expired, or the client closed it)"
        )
        logger.log(
            logging.WARNING if not p.left else logging.INFO,
            "%s connection of %s in %s is %s (%s)", role, p.id, p.room.name, state, why,
        )
        if p.left:
            return
        if role == "publisher" and p.publisher is not None and p.publisher.pc is pc:
            leg = p.publisher
            p.publisher = None
            removed = [r.track for r in leg.routes.values() if r.track is not None]
            for route in leg.routes.values():
                route.assign(None)
            self._announce(p.room, [], removed)
            await self._close_unless_closing(pc)
            self._counters.pc_failures += 1
            self._emit(p.id, {
                "type": "error", "code": MEDIA_FAILED, "target": "publisher",
                "message": f"the publisher connection went down ({why}); publish again",
            })
            await self._renegotiate_others(p.room, exclude=p.id)
        elif role == "player" and p.player is not None and p.player.pc is pc:
            for slot in p.player.slots:
                slot.close()
            p.player = None
            await self._close_unless_closing(pc)
        elif role == "subscriber" and p.subscriber is not None and p.subscriber.pc is pc:
            self._counters.pc_failures += 1
            await self._reset_subscriber(p, p.subscriber, why)

    async def _close_unless_closing(self, pc: RTCPeerConnection) -> None:
        """A "closed" connection is already being closed by aiortc itself: a second close()
        would wait on aiortc's shared future, and cancelling that wait (Sfu.close) would make
        aiortc's own close task fail with InvalidStateError."""
        if pc.connectionState != "closed":
            await self._close_pc(pc)

    def _release_legs(self, p: _Participant) -> list[RTCPeerConnection]:
        """Detach a leaving participant from all forwarding; return its connections to close."""
        pcs = []
        if p.player is not None:
            for slot in p.player.slots:
                slot.close()
            pcs.append(p.player.pc)
            p.player = None
        if p.subscriber is not None:
            for slot in p.subscriber.slots:
                slot.close()
            pcs.append(p.subscriber.pc)
            p.subscriber = None
        if p.publisher is not None:
            for route in p.publisher.routes.values():
                route.assign(None)
            pcs.append(p.publisher.pc)
            p.publisher = None
        return pcs

    async def _close_pc(self, pc: RTCPeerConnection) -> None:
        try:
            async with asyncio.timeout(self._config.close_timeout):
                await pc.close()
        except TimeoutError:
            logger.warning("closing a peer connection took over %ss", self._config.close_timeout)

    def _outgoing_sdp(self, sdp: str) -> str:
        if self._config.announce_ip:
            return announce_address(sdp, self._config.announce_ip)
        return sdp

    # -- helpers ------------------------------------------------------------------------------

    def _emit(self, participant: str, message: dict[str, Any]) -> None:
        if self._closed:
            return
        self._emit_callback(participant, message)

    def _check_open(self) -> None:
        if self._closed:
            raise SfuError(SFU_ERROR, "the SFU is closed")

    def _participant(self, room: str, participant: str) -> _Participant:
        self._check_open()
        joined = self._rooms.get(room)
        p = joined.participants.get(participant) if joined is not None else None
        if p is None:
            raise SfuError(NOT_JOINED, f"{participant} has not joined {room}")
        return p

    def _check_participant(self, p: _Participant) -> None:
        self._check_open()
        if p.left:
            raise SfuError(NOT_JOINED, f"{p.id} left {p.room.name}")

    @staticmethod
    def _check_bundle(sections: list[MediaSection], bundle: list[str]) -> None:
        for section in sections:
            if section.port != 0 and section.mid not in bundle:
                raise SfuError(
                    BAD_SDP, f"m-line {section.mid} is not in a BUNDLE group (BUNDLE is required)"
                )


class _Sink:
    """A recording's sink on a published track (the SFU's handle to find and remove it)."""

    __slots__ = ("_sink",)

    def __init__(self, sink: TrackSink) -> None:
        self._sink = sink

    @property
    def recording(self) -> Recording:
        return self._sink.recording

    def on_media(self, media: MediaPacket) -> bool:
        return self._sink.on_media(media)

    def on_sender_report(self, report: SenderReport) -> None:
        self._sink.on_sender_report(report)


def _speakers_message(speakers: list[tuple[str, float]]) -> dict[str, Any]:
    return {
        "type": "active-speakers",
        "speakers": [{"peer": peer, "level": round(min(level, 1.0), 3)} for peer, level in speakers],
    }


def _source_kind(source: str) -> str:
    return "audio" if source in ("microphone", "screen-audio") else "video"


def stream_id(peer: str) -> str:
    """The msid stream id of a publisher's tracks as subscribers see them.

    The peer id itself when it is a valid msid token, else a stable hash of it.
    """
    if is_msid_token(peer):
        return peer
    return "p-" + hashlib.sha256(peer.encode()).hexdigest()[:20]


def vars_of(counters: IngestCounters) -> dict[str, int]:
    return {name: getattr(counters, name) for name in IngestCounters.__slots__}


def _ice_server(spec: dict[str, object]) -> RTCIceServer:
    urls = spec["urls"]
    username = spec.get("username")
    credential = spec.get("credential")
    return RTCIceServer(
        urls=urls if isinstance(urls, list) else str(urls),
        username=str(username) if username is not None else None,
        credential=str(credential) if credential is not None else None,
    )


def _ice_candidate(candidate: dict[str, Any] | None) -> RTCIceCandidate | None:
    if candidate is None or not candidate.get("candidate"):
        return None
    try:
        fields = parse_candidate(str(candidate["candidate"]))
    except SdpError as exc:
        raise SfuError(BAD_SDP, str(exc)) from exc
    mid = candidate.get("sdpMid")
    index = candidate.get("sdpMLineIndex")
    if mid is None and index is None:
        raise SfuError(BAD_SDP, "candidate has neither sdpMid nor sdpMLineIndex")
    return RTCIceCandidate(
        component=fields.component,
        foundation=fields.foundation,
        ip=fields.ip,
        port=fields.port,
        priority=fields.priority,
        protocol=fields.protocol,
        type=fields.type,
        relatedAddress=fields.related_address,
        relatedPort=fields.related_port,
        sdpMid=str(mid) if mid is not None else None,
        sdpMLineIndex=int(index) if index is not None else None,
        tcpType=fields.tcp_type,
    )


def _capabilities(kind: str, codec: str) -> list[RTCRtpCodecCapability]:
    """aiortc codec preferences forcing ``codec`` (and RTX for video) on a transceiver."""
    chosen: list[RTCRtpCodecCapability] = []
    rtx: list[RTCRtpCodecCapability] = []
    for capability in RTCRtpSender.getCapabilities(kind).codecs:
        name = capability.mimeType.split("/", 1)[1]
        if name.lower() == "rtx":
            rtx.append(capability)
        elif name.lower() == codec_name(codec).lower() and not chosen:
            if is_h264(codec) and capability.parameters.get("profile-level-id") != (
                PROFILE_LEVEL_IDS[codec]
            ):
                continue
            chosen.append(capability)
    if not chosen:
        raise SfuError(SFU_ERROR, f"aiortc cannot handle {kind} codec {codec}")
    return chosen + rtx


def _transceiver_by_mid(pc: RTCPeerConnection, mid: str) -> Any:
    return next((t for t in pc.getTransceivers() if t.mid == mid), None)
