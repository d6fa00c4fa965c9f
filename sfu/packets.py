"""Plain records that cross the boundary between aiortc (``aiortc_hooks``) and the SFU logic.

They are ours, not aiortc's, so the forwarding logic and its tests never touch aiortc objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class InboundRtp:
    """One RTP packet as a publisher's receiver got it (after SRTP, before anything else)."""

    ssrc: int
    payload_type: int
    sequence_number: int
    timestamp: int
    marker: int
    payload: bytes
    #: Bytes of RTP padding the packet carried (already stripped from ``payload``).
    padding_size: int = 0
    #: ``(voice_activity, level)`` from the ssrc-audio-level extension, copied downstream.
    audio_level: tuple[bool, int] | None = None
    #: Simulcast: the rid of the layer this packet (or the RTX repairing it) belongs to, from
    #: the RID header extensions or remembered from the SSRC's earlier packets; else None.
    rid: str | None = None


@dataclass(frozen=True, slots=True)
class CodecSpec:
    """A negotiated codec on one leg (payload types differ per leg, see SFU findings)."""

    mime_type: str
    clock_rate: int
    payload_type: int
    #: Only ``apt`` (RTX) and H.264's ``profile-level-id``/``packetization-mode`` matter here.
    parameters: dict[str, object] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """``"VP8"``, ``"H264"``, ``"opus"``, ``"rtx"``… (the part after the slash)."""
        return self.mime_type.split("/", 1)[1]

    @property
    def is_rtx(self) -> bool:
        return self.name.lower() == "rtx"


@dataclass(frozen=True, slots=True)
class ReceiveInfo:
    """What a publisher's receiver was configured with when it started."""

    #: Media (non-RTX) codecs by payload type.
    media: dict[int, CodecSpec]
    #: RTX payload type -> the media payload type it repairs (``apt``).
    rtx_apt: dict[int, int]


@dataclass(frozen=True, slots=True)
class SenderReport:
    """An RTCP sender report (RFC 3550 section 6.4.1): one NTP <-> RTP timestamp pair."""

    ssrc: int
    #: 64-bit NTP timestamp (32.32 fixed point, seconds since 1900).
    ntp_timestamp: int
    rtp_timestamp: int
