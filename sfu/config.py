"""Configuration of one :class:`~sfu.service.Sfu`.

Everything the SFU decides from (network, codecs, timings) is passed in here, never read from
module globals, so tests build a config with loopback addresses and scaled timings instead of
patching anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sfu.candidate_policy import parse_networks
from sfu.h264 import H264_KEYS
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
    #: ``"H264"`` (constrained baseline, packetization-mode 1), ``"H264-main"``, ``"H264-high"``,
    #: ``"H264-chigh"`` (see :mod:`sfu.h264`). Subscribers get the publisher's
    #: codec unchanged: nothing is transcoded.
    video_codecs: tuple[str, ...] = ("VP8", "H264", "H264-chigh", "H264-high", "H264-main")
    #: Inclusive UDP port range ``(low, high)`` for the SFU's ICE host candidates, or ``None``
    #: for ephemeral ports.
    port_range: tuple[int, int] | None = None
    #: Seconds a subscriber's REMB counts towards the minimum forwarded upstream after it was
    #: last refreshed (browsers send one about every second).
    remb_ttl: float = 5.0
    #: Seconds closing one peer connection may take in :meth:`Sfu.close` / ``leave`` before it
    #: is abandoned (and logged).
    close_timeout: float = 5.0
    #: Remote ICE candidate ranges (CIDR) the SFU may send checks to although the default policy
    #: refuses them (private, loopback, link-local, CGNAT…; see :mod:`sfu.candidate_policy`).
    #: Tests on loopback pass ``("127.0.0.0/8",)``; a LAN deployment its LAN.
    ice_allow_peers: tuple[str, ...] = ()
    #: Sending m-lines of each kind (audio, video) one participant's publisher offer may have.
    max_tracks_per_kind: int = 4
    #: Published tracks in one room; every subscriber's SDP has one m-line per track it gets, so
    #: this bounds the size of subscriber offers and answers (see ``signaling/core/media_limits.py``).
    max_tracks_per_room: int = 250
    #: Active-speaker detection from RFC 6464 audio levels (see :mod:`sfu.speakers`).
    speakers: SpeakerConfig = field(default_factory=SpeakerConfig)

    def __post_init__(self) -> None:
        known = ("VP8", *H264_KEYS)
        unknown = [c for c in self.video_codecs if c not in known]
        if unknown or not self.video_codecs:
            raise ValueError(f"video_codecs must be a non-empty subset of {known}: {unknown}")
        if self.keyframe_request_interval < 0:
            raise ValueError("keyframe_request_interval must be >= 0")
        if self.port_range is not None:
            low, high = self.port_range
            if not 1 <= low <= high <= 65535:
                raise ValueError(f"invalid port_range {self.port_range}")
        parse_networks(self.ice_allow_peers)  # raises ValueError naming a bad range
        if self.max_tracks_per_kind < 1 or self.max_tracks_per_room < 1:
            raise ValueError("max_tracks_per_kind and max_tracks_per_room must be at least 1")
        for server in self.ice_servers:
            if "urls" not in server:
                raise ValueError(f"ice server without urls: {server}")
