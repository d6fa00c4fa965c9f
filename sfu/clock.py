"""Wall-clock conversions for RTP header extensions and sender reports."""

from __future__ import annotations

#: Seconds from the NTP epoch (1900) to the Unix epoch (1970).
NTP_UNIX_OFFSET = 2_208_988_800


def ntp_from_unix(seconds: float) -> int:
    """64-bit NTP timestamp (32.32 fixed point) of a Unix time, as sender reports carry it."""
    whole = int(seconds)
    fraction = int((seconds - whole) * (1 << 32)) & 0xFFFFFFFF
    return ((whole + NTP_UNIX_OFFSET) << 32) | fraction


def abs_send_time(ntp: int) -> int:
    """The 24-bit abs-send-time extension value (6.18 fixed point seconds) of an NTP time."""
    return (ntp >> 14) & 0xFFFFFF
