"""Counters the SFU keeps for ``Sfu.stats()``: cumulative, cheap to update on the hot path."""

from __future__ import annotations

from dataclasses import dataclass, field, fields


class DelayReservoir:
    """The last ``size`` forwarding delays (microseconds), for percentiles."""

    __slots__ = ("_count", "_samples", "_size")

    def __init__(self, size: int = 8192) -> None:
        self._size = size
        self._samples = [0] * size
        self._count = 0

    def add(self, microseconds: int) -> None:
        self._samples[self._count % self._size] = microseconds
        self._count += 1

    def percentiles(self) -> dict[str, float | int]:
        kept = sorted(self._samples[: min(self._count, self._size)])
        if not kept:
            return {"samples": 0}

        def pick(q: float) -> int:
            return kept[min(len(kept) - 1, int(q * len(kept)))]

        return {"samples": len(kept), "p50": pick(0.5), "p99": pick(0.99), "max": kept[-1]}


@dataclass(slots=True)
class ForwardingCounters:
    """Totals over the SFU's lifetime (tracks and subscribers come and go)."""

    packets_forwarded: int = 0
    bytes_forwarded: int = 0
    send_errors: int = 0
    forward_errors: int = 0
    pli_from_subscribers: int = 0
    pli_sent_upstream: int = 0
    pli_suppressed: int = 0
    nack_from_subscribers: int = 0
    retransmissions_served: int = 0
    retransmissions_missed: int = 0
    remb_from_subscribers: int = 0
    remb_sent_upstream: int = 0
    remb_clamped_upstream: int = 0
    #: Peer connections that failed (ICE/DTLS), each told to its client as ``media-failed``.
    pc_failures: int = 0
    #: Subscriber answers the SFU could not apply (the leg was re-offered or reset).
    answers_refused: int = 0
    #: Subscriber connections closed and offered anew (after failures or refused answers).
    subscriber_resets: int = 0
    #: ``track-unavailable`` sent: a track a subscriber cannot receive (codec, rejected m-line).
    tracks_unavailable: int = 0
    delays: DelayReservoir = field(default_factory=DelayReservoir)

    def as_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            f.name: getattr(self, f.name) for f in fields(self) if f.name != "delays"
        }
        data["forwarding_delay_us"] = self.delays.percentiles()
        return data
