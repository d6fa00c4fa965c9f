"""Simulcast: which layer a packet belongs to, what each layer costs, which one a slot gets.

Pure logic (no I/O, times passed in):

- :class:`RidResolver` learns SSRC -> rid from the RID header extensions. libwebrtc sends MID
  and RID only until a receiver report acknowledges the SSRC (RFC 8852 section 3.2 allows it to
  stop), so the mapping must be remembered from the first packets.
- :class:`LayerMeter` measures each layer's bitrate and whether it is being sent at all (the
  publisher's encoder drops upper layers when its own bandwidth is short).
- :class:`LayerSelector` decides, per subscriber slot, which layer to forward: the target is
  ``min(layer the client asked for, layer its bandwidth estimate affords)``; the slot switches
  only on a keyframe of the target layer and keeps forwarding the current one until then.
- :class:`LayerDemand` (dynacast) decides which layers the publisher should send at all: the
  union of what the slots want, paused only after a hold time (a subscriber toggling must not
  flap the publisher's encoder), resumed at once.

Layers are indices, 0 = lowest. Layers are ordered as the publisher's
``a=simulcast`` lists them, lowest resolution first (libwebrtc, our SDK's ``q;h;f`` and OBS's
``0;1;2`` all do; the received picture sizes are reported so a reversed order would show).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

#: The qualities a client may ask for, lowest first; ``off`` stops the track's video.
QUALITIES = ("low", "medium", "high")
OFF = "off"


def quality_index(quality: str, layers: int) -> int | None:
    """The layer index for a requested quality (None for ``off``) among ``layers`` layers.

    ``high`` is the top layer, ``low`` layer 0, ``medium`` the middle one (with two layers:
    the lower, so ``medium`` never costs more than asked).
    """
    if quality == OFF:
        return None
    if quality == "high":
        return layers - 1
    if quality == "medium":
        return min(1, layers - 1) if layers >= 3 else 0
    return 0


def layer_quality(index: int, layers: int) -> str:
    """The inverse of :func:`quality_index` for what a subscriber receives."""
    if index >= layers - 1:
        return "high"
    return "low" if index == 0 else "medium"


class RidResolver:
    """SSRC -> rid, learnt from the rtp-stream-id / repaired-rtp-stream-id extensions.

    Bounded: at most ``capacity`` SSRCs are remembered (the oldest forgotten), so a publisher
    that restarts its encoders many times cannot grow it.
    """

    __slots__ = ("_capacity", "_rids", "_rtx")

    def __init__(self, capacity: int = 16) -> None:
        self._capacity = capacity
        self._rids: OrderedDict[int, str] = OrderedDict()
        self._rtx: dict[int, bool] = {}

    def resolve(self, ssrc: int, rid: str | None, repaired_rid: str | None) -> str | None:
        """The layer rid of a packet (media or its RTX), or None while unknown."""
        named = rid if rid is not None else repaired_rid
        if named is not None:
            if self._rids.get(ssrc) != named:
                self._rids[ssrc] = named
                self._rtx[ssrc] = rid is None
                while len(self._rids) > self._capacity:
                    old, _ = self._rids.popitem(last=False)
                    self._rtx.pop(old, None)
            return named
        return self._rids.get(ssrc)

    def is_repair(self, ssrc: int) -> bool:
        """``ssrc`` was seen with repaired-rtp-stream-id: an RTX stream."""
        return self._rtx.get(ssrc, False)

    def media_ssrc(self, rid: str) -> int | None:
        """The latest media (not RTX) SSRC seen for ``rid``."""
        found = None
        for ssrc, named in self._rids.items():
            if named == rid and not self._rtx.get(ssrc, False):
                found = ssrc
        return found


class LayerMeter:
    """Per layer: bitrate (bits/s, smoothed over ~1 s windows) and the time of the last packet."""

    __slots__ = ("_bytes", "_last", "_rate", "_window_start", "window")

    def __init__(self, layers: int, window: float = 1.0) -> None:
        self.window = window
        self._bytes = [0] * layers
        self._rate: list[float | None] = [None] * layers
        self._last: list[float | None] = [None] * layers
        self._window_start: float | None = None

    def add(self, layer: int, size: int, now: float) -> None:
        if self._window_start is None:
            self._window_start = now
        elapsed = now - self._window_start
        if elapsed >= self.window:
            for i, count in enumerate(self._bytes):
                sample = count * 8 / elapsed
                old = self._rate[i]
                self._rate[i] = sample if old is None else 0.5 * old + 0.5 * sample
                self._bytes[i] = 0
            self._window_start = now
        self._bytes[layer] += size
        self._last[layer] = now

    def bitrates(self) -> list[float | None]:
        return list(self._rate)

    def active(self, now: float, idle: float = 2.0) -> list[bool]:
        """Layers with a packet within ``idle`` seconds."""
        return [t is not None and now - t <= idle for t in self._last]


class Decision(Enum):
    FORWARD = "forward"
    #: Start forwarding this packet's layer here (it is the target's keyframe): re-anchor.
    SWITCH = "switch"
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class SelectorConfig:
    #: Go down when the estimate falls below this fraction of the current layer's bitrate.
    down_fraction: float = 0.9
    #: ...and only when it falls (by more than this fraction): a rising estimate that has not
    #: caught up with a layer just switched to is not congestion.
    fall_fraction: float = 0.02
    #: After going down, try the next layer up after this long (doubled on each failed try).
    probe_after: float = 4.0
    probe_after_max: float = 32.0
    #: A try that held this long resets the back-off.
    settle: float = 10.0
    #: A new slot waits this long for its desired layer before starting on another one (the
    #: layers' first packets do not arrive together; starting low and climbing at once would
    #: cost two switches and two keyframes).
    start_wait: float = 0.5


class LayerSelector:
    """Which layer one subscriber slot forwards (pure; see the module docstring).

    Bandwidth: a subscriber's REMB follows what it receives (libwebrtc's receive-side estimator
    stays near the incoming rate, rises slowly, and drops below it under congestion), so an
    estimate cannot show that a *higher* layer would fit. The selector therefore starts at the
    requested layer, goes down when the estimate *falls* below the current layer's bitrate
    (congestion), and tries one layer up again after a back-off (4 s, doubling to 32 s while
    tries fail within 10 s).
    """

    __slots__ = (
        "_backoff",
        "_born",
        "_cap",
        "_config",
        "_down_at",
        "_estimate",
        "_layers",
        "_up_at",
        "current",
        "requested",
        "target",
    )

    def __init__(self, layers: int, config: SelectorConfig | None = None) -> None:
        self._layers = layers
        self._config = config or SelectorConfig()
        #: Requested layer (None: off). Defaults to the top one.
        self.requested: int | None = layers - 1
        #: Highest layer the bandwidth allows now.
        self._cap = layers - 1
        self._backoff = self._config.probe_after
        self._down_at: float | None = None
        self._up_at: float | None = None
        self._estimate: float | None = None
        self._born: float | None = None
        #: Layer being forwarded (None before the first keyframe, or off).
        self.current: int | None = None
        #: Layer to switch to (None: off).
        self.target: int | None = layers - 1

    @property
    def layers(self) -> int:
        return self._layers

    def request(self, layer: int | None) -> None:
        self.requested = None if layer is None else max(0, min(layer, self._layers - 1))

    def update(
        self,
        now: float,
        estimate: float | None,
        bitrates: Sequence[float | None],
        active: Sequence[bool],
    ) -> int | None:
        """Recompute and return the target layer.

        ``estimate``: the subscriber's bandwidth share for this slot (bits/s), None if unknown;
        ``bitrates``/``active``: per layer, from :class:`LayerMeter`.
        """
        config = self._config
        current = self.current
        if self._born is None:
            self._born = now
        falling = (
            estimate is not None
            and self._estimate is not None
            and estimate < self._estimate * (1 - config.fall_fraction)
        )
        if estimate is not None:
            self._estimate = estimate
        if estimate is not None and falling and current is not None and current > 0:
            rate = bitrates[current]
            if rate is not None and estimate < config.down_fraction * rate:
                affordable = [i for i in range(current) if (bitrates[i] or 0.0) <= estimate]
                self._cap = affordable[-1] if affordable else 0
                if self._up_at is not None and now - self._up_at < config.settle:
                    self._backoff = min(self._backoff * 2, config.probe_after_max)
                self._down_at, self._up_at = now, None
        if self._up_at is not None and now - self._up_at >= config.settle:
            self._backoff = config.probe_after
        if (
            self._cap < self._layers - 1
            and self._down_at is not None
            and now - self._down_at >= self._backoff
        ):
            self._cap += 1
            self._up_at, self._down_at = now, (now if self._cap < self._layers - 1 else None)
        if self.requested is None:
            self.target = None
            return None
        desired = min(self.requested, self._cap)
        if current is None and not active[desired] and now - self._born < config.start_wait:
            self.target = desired
            return desired
        below = [i for i in range(desired + 1) if active[i]]
        above = [i for i in range(desired + 1, self._layers) if active[i]]
        if below:
            self.target = below[-1]
        elif above:
            self.target = above[0]
        # else: nothing is being sent: keep the target (the layer may resume)
        return self.target

    @property
    def wanted(self) -> int | None:
        """The layer this slot would forward if every layer were sent: ``min(requested,
        affordable)``, None when off. What dynacast keeps on (:class:`LayerDemand`); unlike
        :attr:`target` it ignores which layers are being sent, so a paused layer is asked back."""
        return None if self.requested is None else min(self.requested, self._cap)

    def accept(self, layer: int, keyframe_start: bool) -> Decision:
        """What to do with one packet of ``layer`` (``keyframe_start``: it begins a keyframe)."""
        target = self.target
        if target is None:
            self.current = None
            return Decision.DROP
        if layer == target and layer != self.current:
            if keyframe_start:
                self.current = layer
                return Decision.SWITCH
            return Decision.DROP
        return Decision.FORWARD if layer == self.current else Decision.DROP

    @property
    def switching(self) -> bool:
        """The slot waits for a keyframe of its target layer."""
        return self.target is not None and self.target != self.current


@dataclass(frozen=True, slots=True)
class DynacastConfig:
    #: A layer nobody wants is paused only after it stayed unwanted this long (hysteresis).
    pause_after: float = 5.0


class LayerDemand:
    """Which layers of one simulcast track the publisher should send (dynacast; pure).

    ``update`` gets the layers the subscriber slots want (:attr:`LayerSelector.wanted`, plus the
    top layer while a recording takes it) and returns the new set of active layers when it
    changes: every layer up to the highest one wanted (as LiveKit's "max subscribed quality"
    does — the layers below stay on, because a slot falls back to them whenever the publisher's
    own bandwidth estimate stops the upper ones). A needed layer is resumed at once (a
    subscriber asking for it gets it back); a layer is paused only once it has been unneeded for
    ``pause_after`` seconds, so a subscriber that toggles its quality does not flap the
    publisher. The lowest layer is never paused: it keeps the track alive for the next
    subscriber, which starts on it at once.
    """

    __slots__ = ("_config", "_layers", "_unwanted_since", "active")

    def __init__(self, layers: int, config: DynacastConfig | None = None) -> None:
        self._layers = layers
        self._config = config or DynacastConfig()
        #: Layers the publisher was last told to send (all, as it starts).
        self.active: tuple[int, ...] = tuple(range(layers))
        self._unwanted_since: list[float | None] = [None] * layers

    def update(self, now: float, wanted: set[int]) -> tuple[int, ...] | None:
        """The new active layers if they change now, else None."""
        active = set(self.active)
        top = max(wanted, default=0)
        for layer in range(self._layers):
            if layer <= top:
                self._unwanted_since[layer] = None
                active.add(layer)
                continue
            if layer not in active:
                continue
            since = self._unwanted_since[layer]
            if since is None:
                self._unwanted_since[layer] = now
            elif now - since >= self._config.pause_after:
                active.discard(layer)
                self._unwanted_since[layer] = None
        result = tuple(sorted(active))
        if result == self.active:
            return None
        self.active = result
        return result
