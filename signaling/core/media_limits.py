"""How large a subscriber's SDP can get, and every limit sized from it. No I/O.

The largest text a client legitimately sends is its answer to a ``subscriber-offer``: one
m-section per track it receives. If any limit on its way (frame size, SDP lines, schema) is
smaller than the largest answer a full room can produce, that client's media stops and the
room cannot repair it; if the limits are unbounded, one client can make everybody's SDP huge.
So the SFU bounds the tracks (per participant and per room, ``sfu/track_limits.py``) and the
signaling limits are derived from that bound, here and nowhere else.

The arithmetic, for the defaults::

    participants per room            N = 100                      (security.max_participants_per_room)
    tracks per participant and kind      4                        (security.max_tracks_per_kind)
    tracks per room                  T = 2 x N + 2 x N / 4 = 250  (security.max_tracks_per_room)
        everyone a camera and a microphone, and a quarter of the room sharing a screen with
        its audio. A subscriber gets at most T m-sections (its own tracks are not sent back).

    measured: Chromium's answer to the SFU's offer for 99 publishers x (camera + mic), i.e.
    198 m-sections: 106,007 bytes, 3,372 lines = 781 bytes / 6 lines of session part, then
    531 bytes and 17 lines per m-section (488 B / 15 lines audio, 572 B / 19 lines video).
    Budget per m-section: 800 bytes and 26 lines (1.5 x Chromium: other browsers write more
    per section, and m-lines left inactive by departed tracks stay in the SDP until reused).
    Budget for the session part: 1,024 bytes and 16 lines (the BUNDLE group's mids are
    counted per m-section: a mid and its space are at most 4 bytes of the 800).

    SDP bytes   = 1,024 + T x 800      = 1,024 + 200,000  = 201,024
    SDP lines   =    16 + T x 26       =    16 +   6,500  =   6,516   (security.max_sdp_lines)
    frame bytes = SDP bytes + 2 x SDP lines + 256
                  (JSON writes each CR LF as the four characters \\r\\n: +2 bytes a line;
                  256 bytes for {"type":"subscriber-answer","cseq":…,"sdp":"…"})
                = 201,024 + 13,032 + 256 = 214,312, rounded up to whole KiB:
                  215,040 = 210 KiB                                  (limits.max_message_bytes)

    The schema's ``maxLength`` of ``sdp`` is the protocol's ceiling, 1 MiB (what
    limits.hard_max_message_bytes lets through at all); the configured limits above are the
    ones that bite.

The same budget in Chromium terms: the frame limit holds a Chromium answer of up to 377
m-sections (the line limit 383), so a room at its track limit still has 127 m-sections of
slack for inactive m-lines (``tests/unit/test_media_limits.py`` checks 198, 250 and 377).

The other direction has no frame limit but passes the replay buffer: the SFU's own offer is
about 1,150 bytes per m-section (228,422 bytes for the 198 above), so ~290 KB at the track
limit, within a session's 1 MiB replay buffer (session.replay_max_bytes); the SFU never has
more than one subscriber offer outstanding per participant.

An operator who raises the room track limit must raise the SDP limits with it: :func:`problems`
says by how much (``switchboard serve`` exits 2 naming the keys). Raising only the participant
limit changes nothing here: the room's tracks stay bounded, shared by more participants (set
``security.max_tracks_per_room`` to :func:`tracks_per_room` of the new size to keep the ratio).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Participants in one room (``security.max_participants_per_room``).
ROOM_PARTICIPANTS = 100
#: Sending audio, and sending video, m-lines in one participant's publisher offer.
TRACKS_PER_KIND = 4
#: Budget of one m-section of a subscriber answer (Chromium: 531 B, 17 lines).
SECTION_BYTES = 800
SECTION_LINES = 26
#: Budget of the session part of an SDP (Chromium: 781 B with 198 mids, 6 lines).
SESSION_BYTES = 1024
SESSION_LINES = 16
#: JSON envelope of a subscriber-answer around its SDP.
ENVELOPE_BYTES = 256
#: Largest ``sdp`` the protocol allows at all (the schema's maxLength).
PROTOCOL_MAX_SDP = 1024 * 1024


def tracks_per_room(participants: int) -> int:
    """Camera + microphone for everyone, a screen share with audio for a quarter of them."""
    return 2 * participants + math.ceil(2 * participants / 4)


@dataclass(frozen=True, slots=True)
class SdpBudget:
    """Sizes every subscriber SDP of a room with at most ``tracks`` tracks stays within."""

    tracks: int
    sdp_bytes: int
    sdp_lines: int
    #: A ``subscriber-answer`` frame carrying the largest SDP, rounded up to whole KiB.
    frame_bytes: int


def budget(tracks: int) -> SdpBudget:
    sdp_bytes = SESSION_BYTES + tracks * SECTION_BYTES
    sdp_lines = SESSION_LINES + tracks * SECTION_LINES
    frame = sdp_bytes + 2 * sdp_lines + ENVELOPE_BYTES
    return SdpBudget(tracks, sdp_bytes, sdp_lines, math.ceil(frame / 1024) * 1024)


#: The defaults of ``SecurityConfig`` and ``LimitsConfig``.
DEFAULT = budget(tracks_per_room(ROOM_PARTICIPANTS))


def problems(
    *, max_tracks_per_room: int, max_tracks_per_kind: int, max_sdp_lines: int, max_message_bytes: int
) -> list[str]:
    """Configured limits that cannot carry the largest SDP the track limits allow."""
    out = []
    if max_tracks_per_kind < 1 or max_tracks_per_room < 1:
        out.append("security.max_tracks_per_kind / security.max_tracks_per_room: must be at least 1")
        return out
    need = budget(max_tracks_per_room)
    if need.sdp_bytes > PROTOCOL_MAX_SDP:
        out.append(
            f"security.max_tracks_per_room: {max_tracks_per_room} tracks need SDPs of "
            f"{need.sdp_bytes} bytes, over the protocol's {PROTOCOL_MAX_SDP}"
        )
    if max_sdp_lines < need.sdp_lines:
        out.append(
            f"security.max_sdp_lines: must be at least {need.sdp_lines} for "
            f"security.max_tracks_per_room={max_tracks_per_room} (a subscriber answer has that many)"
        )
    if max_message_bytes < need.frame_bytes:
        out.append(
            f"limits.max_message_bytes: must be at least {need.frame_bytes} for "
            f"security.max_tracks_per_room={max_tracks_per_room} (a subscriber answer is that large)"
        )
    return out
