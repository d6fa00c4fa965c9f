"""Active speakers from RFC 6464 audio levels, without decoding anything. Pure logic, no I/O.

Every audio packet a publisher sends carries the client-to-mixer audio level (RFC 6464 §3: a
7-bit level in -dBov, 0 = loudest, 127 = silence), which aiortc parses and the SFU already copies
downstream. Each audio track adds its packets to a :class:`LevelAccumulator` (two integer additions
and a comparison per packet); a room task calls :meth:`SpeakerDetector.tick` every interval
(~350 ms) with what each track accumulated, and gets the new list of speakers when the *set* of
speakers changed, ``None`` otherwise.

The policy follows what LiveKit and mediasoup do, simplified: a packet at or above the threshold
(-35 dBov by default) counts as voice; a peer becomes a speaker once voice made up at least 40 % of
its packets in an interval (so a door slam or a click does not count), and stops being one after
``release`` quiet intervals in a row (so pauses between words do not make the highlight flicker).
The reported level is the linear level of the voice packets (0..1, 1 = 0 dBov) weighted by
the share of voice packets, exponentially smoothed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


def linear(level_dbov: float) -> float:
    """RFC 6464 level (-dBov) as a linear amplitude ratio: 0 -> 1.0, 20 -> 0.1, 127 -> ~0."""
    return float(10.0 ** (-level_dbov / 20.0))


class LevelAccumulator:
    """What one audio track sent during the current interval. O(1) per packet."""

    __slots__ = ("last", "loud", "loud_sum", "packets", "threshold")

    def __init__(self, threshold: int = 35) -> None:
        #: Level (-dBov) at or below which a packet counts as voice.
        self.threshold = threshold
        self.packets = 0
        self.loud = 0
        #: Sum of the levels of the loud packets (their mean is the speaker's loudness).
        self.loud_sum = 0
        #: The latest level seen (for stats), 127 before any.
        self.last = 127

    def add(self, level: int) -> None:
        """One packet's ``ssrc-audio-level`` (0..127, -dBov)."""
        self.packets += 1
        self.last = level
        if level <= self.threshold:
            self.loud += 1
            self.loud_sum += level

    def take(self) -> tuple[int, int, int]:
        """``(packets, loud packets, sum of the loud packets' levels)`` since the last take, and
        start over."""
        out = (self.packets, self.loud, self.loud_sum)
        self.packets = self.loud = self.loud_sum = 0
        return out


@dataclass(frozen=True, slots=True)
class SpeakerConfig:
    #: Seconds between two evaluations (the room task's period).
    interval: float = 0.35
    #: RFC 6464 level (-dBov) at or below which a packet counts as voice (-35 dBov).
    threshold: int = 35
    #: Share of an interval's packets that must be voice for the peer to count as speaking.
    min_active: float = 0.4
    #: Quiet intervals in a row after which a speaker is no longer one.
    release: int = 2
    #: Weight of the newest interval in the smoothed level (exponential smoothing).
    smoothing: float = 0.5

    def __post_init__(self) -> None:
        if self.interval <= 0 or not 0 <= self.threshold <= 127 or not 0 < self.min_active <= 1:
            raise ValueError(f"invalid speaker detection settings: {self}")
        if self.release < 1 or not 0 < self.smoothing <= 1:
            raise ValueError(f"invalid speaker detection settings: {self}")


@dataclass(slots=True)
class _Peer:
    level: float = 0.0
    quiet: int = 0
    speaking: bool = False


class SpeakerDetector:
    """The active speakers of one room, re-evaluated once per interval."""

    def __init__(self, config: SpeakerConfig | None = None) -> None:
        self.config = config or SpeakerConfig()
        self._peers: dict[str, _Peer] = {}
        self._announced: frozenset[str] = frozenset()

    @property
    def idle(self) -> bool:
        """Nothing to remember and nobody announced: no need to tick until audio comes back."""
        return not self._peers and not self._announced

    @property
    def speakers(self) -> list[tuple[str, float]]:
        """Current speakers, loudest first: ``(peer, smoothed linear level)``."""
        out = [(peer, state.level) for peer, state in self._peers.items() if state.speaking]
        out.sort(key=lambda item: (-item[1], item[0]))
        return out

    def tick(self, samples: Iterable[tuple[str, int, int, int]]) -> list[tuple[str, float]] | None:
        """One interval: ``samples`` holds ``(peer, packets, loud, loud_sum)`` per audio track
        (a peer may have several: microphone and screen audio). Returns the speakers when their
        set changed since the last announcement, else None."""
        cfg = self.config
        per_peer: dict[str, tuple[int, int, int]] = {}
        for peer, packets, loud, loud_sum in samples:
            p, lo, total = per_peer.get(peer, (0, 0, 0))
            per_peer[peer] = (p + packets, lo + loud, total + loud_sum)
        for peer in per_peer.keys() - self._peers.keys():
            self._peers[peer] = _Peer()
        for peer, state in list(self._peers.items()):
            packets, loud, loud_sum = per_peer.get(peer, (0, 0, 0))
            active = packets > 0 and loud >= cfg.min_active * packets
            current = linear(loud_sum / loud) * loud / packets if active else 0.0
            state.level += cfg.smoothing * (current - state.level)
            if active:
                state.speaking, state.quiet = True, 0
            else:
                state.quiet += 1
                if state.quiet >= cfg.release:
                    state.speaking = False
            if not state.speaking and peer not in per_peer:
                del self._peers[peer]  # gone (left, unpublished): nothing to remember
        now = frozenset(peer for peer, state in self._peers.items() if state.speaking)
        if now == self._announced:
            return None
        self._announced = now
        return self.speakers
