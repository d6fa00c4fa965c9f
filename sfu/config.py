"""Configuration of one :class:`~sfu.service.Sfu`.

Everything the SFU decides from (network, codecs, timings) is passed in here, never read from
module globals, so tests build a config with loopback addresses and scaled timings instead of
patching anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sfu.speakers import SpeakerConfig


@dataclass(frozen=True, slots=True)
class SfuConfig:
    """Network, codec and timing settings of an SFU."""

    #: Local addresses ICE gathers host candidates on. ``()`` means every interface aioice finds
    #: (IPv4 and IPv6, loopback excluded, as aioice does). Tests pass ``("127.0.0.1",)``.
    host_addresses: tuple[str, ...] = ()
    #: Address written into our host candidates instead of the local one, for a server behind a
    #: 1:1 NAT (the public address that maps to ``host_addresses``).
    announce_ip: str | None = None
    #: The SFU's own STUN/TURN servers as RTCIceServer-like dicts
    #: ``{"urls": str | list[str], "username": str, "credential": str}``. Default: none. The
    #: SFU always hands aiortc an explicit list, so aiortc never falls back to a public STUN
    #: server. aiortc uses only the first STUN and the first TURN URL.
    ice_servers: tuple[dict[str, object], ...] = ()
    #: Smallest interval (seconds) between two keyframe requests (PLI) sent upstream for one
    #: track, whatever asks for them (new subscribers, subscriber PLI/FIR, keyframe gating).
    keyframe_request_interval: float = 0.5
    #: Video codecs accepted from publishers, most preferred first. Names: ``"VP8"`` and
    #: ``"H264"`` (constrained baseline, packetization-mode 1). Subscribers get the publisher's
    #: codec unchanged: nothing is transcoded.
    video_codecs: tuple[str, ...] = ("VP8", "H264")
    #: Inclusive UDP port range ``(low, high)`` for the SFU's ICE host candidates, or ``None``
    #: for ephemeral ports.
    port_range: tuple[int, int] | None = None
    #: Seconds a subscriber's REMB counts towards the minimum forwarded upstream after it was
    #: last refreshed (browsers send one about every second).
    remb_ttl: float = 5.0
    #: Seconds closing one peer connection may take in :meth:`Sfu.close` / ``leave`` before it
    #: is abandoned (and logged).
    close_timeout: float = 5.0
    #: Active-speaker detection from RFC 6464 audio levels (see :mod:`sfu.speakers`).
    speakers: SpeakerConfig = field(default_factory=SpeakerConfig)

    def __post_init__(self) -> None:
        unknown = [c for c in self.video_codecs if c not in ("VP8", "H264")]
        if unknown or not self.video_codecs:
            raise ValueError(f"video_codecs must be a non-empty subset of VP8, H264: {unknown}")
        if self.keyframe_request_interval < 0:
            raise ValueError("keyframe_request_interval must be >= 0")
        if self.port_range is not None:
            low, high = self.port_range
            if not 1 <= low <= high <= 65535:
                raise ValueError(f"invalid port_range {self.port_range}")
        for server in self.ice_servers:
            if "urls" not in server:
                raise ValueError(f"ice server without urls: {server}")
