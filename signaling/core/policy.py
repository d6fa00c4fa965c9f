"""What a session may send: the one check a client's sequenced message passes before anything
is relayed or reaches the SFU — its grant (:func:`signaling.core.auth.missing_grant`), the SDP and
candidate grammar (:mod:`signaling.core.sdpcheck`), the per-session candidate limit and the ``data``
rate. Pure: the caller passes the clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from signaling.core.auth import missing_grant
from signaling.core.codes import Err
from signaling.core.config import SecurityConfig
from signaling.core.protocol import (
    Candidate,
    Data,
    ProtocolError,
    Publish,
    Sequenced,
    SubscriberAnswer,
)
from signaling.core.ratelimit import TokenBucket
from signaling.core.sdpcheck import SdpError, check_candidate, check_sdp


@dataclass(slots=True)
class Allowance:
    """What one session has used of its limits."""

    #: Trickled candidates so far (``security.max_candidates_per_session``).
    candidates: int = 0
    #: ``data`` messages (created on the first one).
    data_bucket: TokenBucket | None = None


def refusal(
    message: Sequenced, *, grants: frozenset[str], peer_id: str, allowance: Allowance, limits: SecurityConfig,
    now: float,
) -> ProtocolError | None:
    """Why ``message`` is refused (None: allowed). Counts it against ``allowance``."""
    grant = missing_grant(message, grants)
    if grant is not None:
        return ProtocolError(Err.FORBIDDEN, f"the token does not grant {grant}", cseq=message.cseq)
    if isinstance(message, Data):
        return _data_refusal(message, peer_id=peer_id, allowance=allowance, limits=limits, now=now)
    try:
        if isinstance(message, Publish | SubscriberAnswer):
            check_sdp(message.sdp, max_lines=limits.max_sdp_lines)
        elif isinstance(message, Candidate):
            allowance.candidates += 1
            if allowance.candidates > limits.max_candidates_per_session:
                return ProtocolError(
                    Err.LIMIT_EXCEEDED, f"more than {limits.max_candidates_per_session} candidates", cseq=message.cseq
                )
            if message.candidate is not None:
                check_candidate(message.candidate.get("candidate", ""))
    except SdpError as exc:
        return ProtocolError(Err.BAD_SDP, str(exc), cseq=message.cseq)
    return None


def _data_refusal(
    message: Data, *, peer_id: str, allowance: Allowance, limits: SecurityConfig, now: float
) -> ProtocolError | None:
    """``data`` has its own rate per session, and goes to others only."""
    if allowance.data_bucket is None:
        allowance.data_bucket = TokenBucket(limits.data_rate, limits.data_burst)
    bucket = allowance.data_bucket
    if not bucket.take(now):
        return ProtocolError(
            Err.RATE_LIMITED, f"more than {limits.data_rate:g} data messages per second", cseq=message.cseq,
            retry_after_ms=round(bucket.wait_time() * 1000) + 1,
        )
    if message.to is not None and peer_id in message.to:
        return ProtocolError(Err.SELF_TARGET, "cannot send data to yourself", cseq=message.cseq)
    return None
