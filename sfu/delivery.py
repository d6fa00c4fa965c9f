"""Sending one forwarded packet to one simulcast subscriber slot: the fast path first, then aiortc's.

Used by the simulcast path (:meth:`sfu.layers.SimulcastForwarder.forward`), so it uses
:meth:`~sfu.aiortc_hooks.SenderPort.send_now` (synchronous, no ``RtpPacket``) and falls back to
:meth:`~sfu.aiortc_hooks.SenderPort.send_slow` only for the packets it declines. The
single-layer loop (:meth:`sfu.forwarding.PublishedTrack._forward`) does the same steps inline
and adds its totals once per packet instead of once per subscriber: that loop is the hot path
the forwarding benchmarks measure (docs/benchmarks.md), and a call per subscriber there costs
instructions callgrind counts. Both count, time and detach the same way.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

from sfu.ingest import MediaPacket

if TYPE_CHECKING:
    from sfu.aiortc_hooks import SenderPort
    from sfu.metrics import ForwardingCounters


class _Forwarded(Protocol):
    packets_forwarded: int
    bytes_forwarded: int


class _Detachable(Protocol):
    def detach(self) -> None: ...


def deliver_now(
    track: _Forwarded,
    counters: ForwardingCounters,
    slot: _Detachable,
    port: SenderPort,
    media: MediaPacket,
    sequence_number: int,
    timestamp: int,
    payload: bytes,
    send_time: int,
    ntp: int,
    received_ns: int,
) -> bool:
    """Send ``payload`` as ``media`` rewritten to ``sequence_number``/``timestamp`` on the fast
    path and count it; False when the packet needs :func:`deliver_slow` (nothing was sent).

    Synchronous on purpose: the common case creates no coroutine. A leg that went down
    (``ConnectionError``) is detached from its track (True: the packet is done with).
    """
    try:
        sent = port.send_now(
            media.marker, sequence_number, timestamp, payload, media.padding_size, media.audio_level, send_time, ntp,
        )
    except ConnectionError:
        counters.send_errors += 1
        slot.detach()
        return True
    if sent is None:
        return False
    _count(track, counters, sent, received_ns)
    return True


async def deliver_slow(
    track: _Forwarded,
    counters: ForwardingCounters,
    slot: _Detachable,
    port: SenderPort,
    media: MediaPacket,
    sequence_number: int,
    timestamp: int,
    payload: bytes,
    send_time: int,
    ntp: int,
    received_ns: int,
) -> None:
    """aiortc's path for a packet :func:`deliver_now` declined; counted and detached alike."""
    try:
        sent = await port.send_slow(
            marker=media.marker,
            sequence_number=sequence_number,
            timestamp=timestamp,
            payload=payload,
            padding_size=media.padding_size,
            audio_level=media.audio_level,
            abs_send_time=send_time,
            ntp_time=ntp,
        )
    except ConnectionError:
        counters.send_errors += 1
        slot.detach()
        return
    _count(track, counters, sent, received_ns)


def _count(track: _Forwarded, counters: ForwardingCounters, sent: int, received_ns: int) -> None:
    track.packets_forwarded += 1
    track.bytes_forwarded += sent
    counters.packets_forwarded += 1
    counters.bytes_forwarded += sent
    counters.delays.add((time.perf_counter_ns() - received_ns) // 1000)


__all__ = ["deliver_now", "deliver_slow"]
