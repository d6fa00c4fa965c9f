"""Media requests between the hub and the SFU (``hub.media``, a :class:`~signaling.backend.media.MediaPort`):
a client's publish, answer, candidate, track state, unpublish and subscription go to the SFU, a
coded refusal comes back as the protocol error of the same name; the SFU's own messages, track
and recording events come the other way. The SFU's bookkeeping calls (join, leave, adopt) never
break signaling: a session without media is still a session.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from signaling.backend.media import MEDIA_REFUSALS
from signaling.core.codes import Err, ErrorCode
from signaling.core.protocol import (
    Candidate,
    ProtocolError,
    Publish,
    Sequenced,
    SetSubscription,
    SubscriberAnswer,
    TrackState,
    Unpublish,
)
from signaling.server.live import Live

if TYPE_CHECKING:
    from signaling.server.hub import Hub

log = logging.getLogger(__name__)

#: The SFU's error codes (``sfu.errors``, ``MediaError.code``) as protocol error codes.
MEDIA_ERRORS: dict[str, ErrorCode] = {
    "bad-sdp": Err.BAD_SDP,
    "sfu-error": Err.SFU_ERROR,
    "unknown-track": Err.UNKNOWN_TRACK,
    "not-joined": Err.NOT_JOINED,
    "sfu-unavailable": Err.SFU_UNAVAILABLE,
    "candidate-refused": Err.CANDIDATE_REFUSED,
    "too-many-tracks": Err.TOO_MANY_TRACKS,
}


def media_error(code: str) -> ErrorCode:
    """A coded SFU refusal keeps its code; an unknown code is our failure (``internal``)."""
    return MEDIA_ERRORS.get(code, Err.INTERNAL)


class MediaRouter:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def request(self, live: Live, message: Sequenced) -> ProtocolError | None:
        """Run a client's media request; the error to answer it with (None: done)."""
        media = self.hub.media
        if media is None:
            return ProtocolError(Err.SFU_UNAVAILABLE, "this node runs no SFU", cseq=message.cseq)
        room, peer = live.session.room, live.session.peer_id
        try:
            match message:
                case Publish(sdp=sdp, tracks=tracks):
                    info = [{"id": t.id, "source": t.source, "muted": t.muted} for t in tracks]
                    answer = await (media.publish(room, peer, sdp, tracks=info) if info else media.publish(room, peer, sdp))
                    self.hub.emit(live, {"type": "publish-answer", "sdp": answer, "cseq": message.cseq})
                case TrackState(track=track, muted=muted):
                    await media.set_track_state(room, peer, track, muted)
                case SubscriberAnswer(sdp=sdp):
                    await media.subscriber_answer(room, peer, sdp)
                case Candidate(target=target, candidate=candidate):
                    await media.add_candidate(room, peer, target, candidate)
                case Unpublish(track=track):
                    await media.unpublish(room, peer, track)
                case SetSubscription(track=track, quality=quality):
                    await media.set_subscription(room, peer, track, quality)
        except MEDIA_REFUSALS as exc:
            # The SFU rejects bad SDP, unknown tracks and the like with a coded error.
            error = media_error(exc.code)
            if error is Err.INTERNAL:
                log.error("media request %s of %s refused with unknown code %r", type(message).__name__, peer, exc.code)
            return ProtocolError(error, str(exc) or error.meaning, cseq=message.cseq)
        except Exception as exc:
            # Anything else is still this request's failure, never the connection's.
            log.exception("media request %s of %s failed", type(message).__name__, peer)
            return ProtocolError(Err.INTERNAL, str(exc) or Err.INTERNAL.meaning, cseq=message.cseq)
        return None

    @staticmethod
    async def call(call: Awaitable[None]) -> None:
        """Run an SFU bookkeeping call (join, leave, adopt) whose failure must not break
        signaling. Logged with its traceback."""
        try:
            await call
        except Exception:
            log.exception("SFU call failed")

    async def join(self, live: Live, codecs: tuple[str, ...] | None = None) -> None:
        """A new participant: every one may publish (grants permitting); subscribers get offers."""
        media = self.hub.media
        if media is None:
            return
        room, peer = live.session.room, live.session.peer_id
        if codecs is None:
            await self.call(media.join(room, peer, subscribe=live.subscribe))
        else:
            await self.call(media.join(room, peer, subscribe=live.subscribe, codecs=codecs))

    async def leave(self, live: Live) -> None:
        if self.hub.media is not None:
            await self.call(self.hub.media.leave(live.session.room, live.session.peer_id))

    async def adopt(self, live: Live) -> None:
        """A session resumed here from another node: a later SFU failover moves it from here."""
        if self.hub.media is not None:
            await self.call(self.hub.media.adopt(live.session.room, live.session.peer_id, subscribe=live.subscribe))

    async def fresh(self, live: Live) -> None:
        """A resumed client without its peer connections (a reloaded page): the SFU forgets the
        old ones (the others see its tracks go) and takes the participant afresh (it hears the
        room's tracks again); the client publishes again."""
        if self.hub.media is None:
            return
        await self.leave(live)
        await self.join(live)

    # -- from the SFU ---------------------------------------------------------------------------

    def emit(self, peer_id: str, message: dict[str, Any]) -> None:
        """The SFU's outbound channel (synchronous, as the SFU calls it)."""
        live = self.hub.table.by_peer.get(peer_id)
        if live is not None:
            if message.get("type") == "error":
                self.hub.metrics.errors.labels(message["code"]).inc()
            self.hub.emit(live, message)

    def on_track(self, room: str, change: str, track: dict[str, Any]) -> None:
        """The SFU's track observer: one webhook per published/unpublished track."""
        webhooks = self.hub.webhooks
        if webhooks is None:
            return
        if change == "published":
            webhooks.track_published(room, track_id=track["id"], peer=track["peer"], kind=track["kind"])
        else:
            webhooks.track_unpublished(room, track_id=track["id"], peer=track["peer"], kind=track["kind"])

    def on_recording(self, recording: dict[str, Any]) -> None:
        """The SFU's recording observer: a file was closed (webhook ``recording_finished``)."""
        log.info("recording %s of room %s %s: %s", recording.get("id"), recording.get("room"),
                 recording.get("state"), recording.get("file"))
        if self.hub.webhooks is not None:
            self.hub.webhooks.recording_finished(recording)
