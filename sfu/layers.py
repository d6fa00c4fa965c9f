"""Forwarding a simulcast track: per-layer ingest, and one chosen layer per subscriber slot.

A simulcast publisher sends up to three encodings of one video track (rids, e.g. ``q/h/f``),
each its own RTP stream. :class:`SimulcastForwarder` is what a :class:`~sfu.forwarding.
PublishedTrack` uses instead of its single-stream path when its m-line offered simulcast:

- **ingest per layer**: one :class:`~sfu.ingest.IngestFilter` per rid, so RTX unwrapping,
  de-duplication and publisher restarts (epochs) are per layer — one filter would see every
  layer change as a restart;
- **selection per slot**: a :class:`~sfu.simulcast.LayerSelector` per subscriber slot picks
  ``min(requested, affordable)``; the slot switches at a keyframe of the target layer (a PLI goes
  to that layer's SSRC) and keeps its current layer until then;
- **continuity**: a switch re-anchors the slot's :class:`~sfu.rewrite.StreamRewriter` (sequence
  numbers continue +1, timestamps by elapsed time) and, for VP8, a :class:`~sfu.vp8.Vp8Munger`
  keeps PictureID/TL0PICIDX continuous.

Bandwidth: the publisher's REMB is **not** clamped to the weakest subscriber (that is what
simulcast replaces): each subscriber's REMB only moves its own slot between layers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sfu.clock import abs_send_time, ntp_from_unix
from sfu.delivery import deliver_now, deliver_slow
from sfu.ingest import IngestCounters, IngestFilter
from sfu.packets import InboundRtp, ReceiveInfo
from sfu.ratelimit import KeyframeRequestLimiter
from sfu.simulcast import (
    QUALITIES,
    Decision,
    LayerDemand,
    LayerMeter,
    LayerSelector,
    layer_quality,
    quality_index,
)
from sfu.vp8 import Vp8Munger, keyframe_dimensions, parse_descriptor

if TYPE_CHECKING:
    from sfu.forwarding import PublishedTrack, Slot

#: Selection is re-evaluated at most this often per track (and on each REMB / request).
SELECT_INTERVAL = 0.25


@dataclass(slots=True)
class _SlotLayers:
    selector: LayerSelector
    munger: Vp8Munger | None
    #: The slot's latest REMB share (bits/s).
    estimate: float | None = None
    #: The layer last told to the subscriber (None: nothing yet / off).
    reported: int | None = None
    switches: int = 0


class SimulcastForwarder:
    """The simulcast side of one published video track (see the module docstring)."""

    def __init__(
        self,
        track: PublishedTrack,
        rids: tuple[str, ...],
        keyframe_interval: float,
        is_keyframe: Callable[[bytes], bool] | None,
    ) -> None:
        self._track = track
        self.rids = rids
        self._index = {rid: i for i, rid in enumerate(rids)}
        self._ingest: list[IngestFilter | None] = [None] * len(rids)
        self._limiters = [KeyframeRequestLimiter(keyframe_interval) for _ in rids]
        self.meter = LayerMeter(len(rids))
        #: Picture size of each layer's latest keyframe (VP8), for stats and ``track-layer``.
        self.sizes: list[tuple[int, int] | None] = [None] * len(rids)
        self._is_keyframe = is_keyframe
        self._vp8 = track.codec == "VP8"
        self._slots: dict[Slot, _SlotLayers] = {}
        self._next_select = 0.0
        self.switches = 0
        self.unknown_rid = 0
        #: Monotonic clock (seconds) of the layer meters and selectors; tests pass their own.
        self.clock: Callable[[], float] = time.monotonic
        #: Dynacast: which layers the publisher should send; told through ``on_publish_layers``
        #: (the rids to keep sending, lowest first) whenever that set changes.
        self.demand = LayerDemand(len(rids))
        self.on_publish_layers: Callable[[list[str]], None] | None = None

    @property
    def layers(self) -> int:
        return len(self.rids)

    def start(self, info: ReceiveInfo) -> None:
        for i, ingest in enumerate(self._ingest):
            if ingest is None:
                self._ingest[i] = IngestFilter(info)

    def media_ssrc(self, layer: int) -> int | None:
        ingest = self._ingest[layer]
        return ingest.media_ssrc if ingest is not None else None

    def ingest_counters(self) -> IngestCounters:
        total = IngestCounters()
        for ingest in self._ingest:
            if ingest is not None:
                for name in IngestCounters.__dataclass_fields__:
                    setattr(total, name, getattr(total, name) + getattr(ingest.counters, name))
        total.unknown_dropped += self.unknown_rid
        return total

    # -- slots ----------------------------------------------------------------------------

    def _state(self, slot: Slot) -> _SlotLayers:
        state = self._slots.get(slot)
        if state is None:
            selector = LayerSelector(self.layers)
            selector.request(quality_index(slot.quality, self.layers))
            now = self.clock()
            selector.update(now, None, self.meter.bitrates(), self.meter.active(now))
            state = _SlotLayers(selector, Vp8Munger() if self._vp8 else None)
            self._slots[slot] = state
        return state

    def remove(self, slot: Slot) -> None:
        self._slots.pop(slot, None)

    async def set_quality(self, slot: Slot) -> None:
        """The slot's requested quality changed (``slot.quality``)."""
        state = self._state(slot)
        state.selector.request(quality_index(slot.quality, self.layers))
        now = self.clock()
        await self._select(state, now)
        if state.selector.target is None:
            self._report(slot, state, None)
        self._dynacast(now)  # a paused layer asked for comes back at once

    async def on_estimate(self, slot: Slot, bitrate: int) -> None:
        state = self._state(slot)
        state.estimate = float(bitrate)
        await self._select(state, self.clock())

    async def request_keyframe(self, slot: Slot | None) -> None:
        """A keyframe for ``slot``'s target layer (or for every layer the slots want)."""
        if slot is not None:
            state = self._slots.get(slot)
            layer = None if state is None else (state.selector.target if state.selector.switching
                                                else state.selector.current)
            if layer is not None:
                await self._request(layer)
            return
        for layer in {s.selector.target for s in self._slots.values() if s.selector.target is not None}:
            await self._request(layer)

    async def _request(self, layer: int) -> None:
        track = self._track
        ssrc = self.media_ssrc(layer)
        if track.tap is None or ssrc is None:
            return
        if not self._limiters[layer].try_acquire(self.clock()):
            track._counters.pli_suppressed += 1
            return
        track._counters.pli_sent_upstream += 1
        await track.tap.send_pli(ssrc)

    async def _select(self, state: _SlotLayers, now: float) -> None:
        selector = state.selector
        selector.update(now, state.estimate, self.meter.bitrates(), self.meter.active(now))
        if selector.switching and selector.target is not None:
            await self._request(selector.target)

    def _dynacast(self, now: float) -> None:
        """Tell the publisher when the set of layers anybody wants changes (see LayerDemand)."""
        track = self._track
        wanted: set[int] = set()
        for slot in track._slots:
            if slot.attached is track:
                layer = self._state(slot).selector.wanted
                if layer is not None:
                    wanted.add(layer)
        if track.sinks:
            wanted.add(self.layers - 1)  # a recording takes the top layer
        active = self.demand.update(now, wanted)
        if active is not None and self.on_publish_layers is not None:
            self.on_publish_layers([self.rids[i] for i in active])

    def _report(self, slot: Slot, state: _SlotLayers, layer: int | None) -> None:
        if layer == state.reported:
            return
        state.reported = layer
        callback = slot.on_layer
        if callback is not None:
            callback(slot, self._track, self.describe(layer))

    def describe(self, layer: int | None) -> dict[str, Any]:
        """``quality`` (and picture size when known) of a layer, for ``track-layer``."""
        if layer is None:
            return {"quality": "off"}
        info: dict[str, Any] = {"quality": layer_quality(layer, self.layers), "rid": self.rids[layer]}
        size = self.sizes[layer]
        if size is not None:
            info["width"], info["height"] = size
        return info

    def stats(self) -> dict[str, object]:
        rates = self.meter.bitrates()
        return {
            "simulcast": [
                {
                    "rid": rid,
                    "bitrate": None if rates[i] is None else round(rates[i] or 0.0),
                    "size": list(self.sizes[i] or ()) or None,
                    "ssrc": self.media_ssrc(i),
                }
                for i, rid in enumerate(self.rids)
            ],
            "layer_switches": self.switches,
        }

    # -- forwarding -----------------------------------------------------------------------

    async def forward(self, packet: InboundRtp, received_ns: int) -> None:
        track = self._track
        layer = self._index.get(packet.rid) if packet.rid is not None else None
        if layer is None:
            self.unknown_rid += 1
            return
        ingest = self._ingest[layer]
        if ingest is None or track.closed:
            return
        media = ingest.accept(packet)
        if media is None or track.muted:
            return
        now = self.clock()
        self.meter.add(layer, len(media.payload), now)
        keyframe = self._is_keyframe(media.payload) if self._is_keyframe is not None else True
        if keyframe and self._vp8:
            size = keyframe_dimensions(media.payload)
            if size is not None:
                self.sizes[layer] = size
        if track.sinks and layer == self.layers - 1:
            # A recording takes the top layer.
            wants = False
            for sink in tuple(track.sinks):
                wants = sink.on_media(media) or wants
            if wants:
                await self._request(layer)
        slots = track._slots
        if now >= self._next_select or keyframe:
            self._next_select = now + SELECT_INTERVAL
            for slot in slots:
                await self._select(self._state(slot), now)
            self._dynacast(now)
        if not slots:
            return
        source = (track.serial, layer, media.epoch, track._generation)
        descriptor = parse_descriptor(media.payload) if self._vp8 else None
        ntp = ntp_from_unix(time.time())
        send_time = abs_send_time(ntp)
        want_keyframe = False
        counters = track._counters
        for slot in tuple(slots):
            rewriter, port = slot.rewriter, slot.port
            if slot.attached is not track or rewriter is None or port is None:
                continue
            state = self._state(slot)
            decision = state.selector.accept(layer, keyframe)
            if decision is Decision.DROP:
                if state.selector.current is None and state.reported is not None:
                    self._report(slot, state, None)
                continue
            if decision is Decision.SWITCH or rewriter.source != source:
                if not keyframe:
                    want_keyframe = True  # the layer's stream restarted: wait for a keyframe
                    continue
                rewriter.restart(source, media.extended_seq, media.timestamp, now)
                if state.munger is not None:
                    state.munger.restart()
                if decision is Decision.SWITCH:
                    state.switches += 1
                    self.switches += 1
                self._report(slot, state, layer)
            mapped = rewriter.map(source, media.extended_seq, media.timestamp, now)
            if mapped is None:
                continue
            munger = state.munger
            payload = media.payload if munger is None else munger.rewrite(media.payload, descriptor)
            if not deliver_now(track, counters, slot, port, media, mapped[0], mapped[1], payload,
                               send_time, ntp, received_ns):
                await deliver_slow(track, counters, slot, port, media, mapped[0], mapped[1], payload,
                                   send_time, ntp, received_ns)
        if want_keyframe:
            await self._request(layer)


__all__ = ["QUALITIES", "SimulcastForwarder"]
