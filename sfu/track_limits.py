"""How many tracks a publisher offer may add. No I/O.

Every track published in a room becomes one m-line in the SDP of every other participant's
subscriber connection. Without a bound, one publisher offering 170 video m-lines made every
subscriber's offer ~212 KB and its answer too large to be accepted: the whole room lost its
media. Two limits keep every subscriber SDP within the sizes the signaling service accepts
(``signaling/core/media_limits.py`` derives those sizes from the room track limit):

- per participant, per kind: at most ``per_kind`` sending audio and ``per_kind`` sending video
  m-lines in one publisher offer (camera + microphone is 1 + 1; a screen share adds one video
  and maybe one audio);
- per room: at most ``per_room`` published tracks, counting the ones other participants'
  offers in flight are about to add.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable

from sfu.sdp_info import MediaSection

KINDS = ("audio", "video")


def offered_tracks(sections: Iterable[MediaSection], retired: Collection[str] = ()) -> Counter[str]:
    """Tracks an offer publishes, by kind: sending audio/video m-lines not unpublished."""
    return Counter(
        s.kind for s in sections if s.kind in KINDS and s.sending and s.mid not in retired
    )


def refusal(offered: Counter[str], *, others: int, per_kind: int, per_room: int) -> str | None:
    """Why the offer may not be accepted, or ``None``.

    ``others`` counts the room's tracks of every other participant, published or being
    published. The participant's own current tracks are not counted: the offer replaces them.
    """
    for kind in KINDS:
        if offered[kind] > per_kind:
            return (
                f"the offer sends {offered[kind]} {kind} tracks; "
                f"a participant may publish {per_kind} of each kind"
            )
    total = others + sum(offered[kind] for kind in KINDS)
    if total > per_room:
        return (
            f"the room would hold {total} tracks; it may hold {per_room} "
            f"({others} are other participants')"
        )
    return None
