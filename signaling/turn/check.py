"""``switchboard turn check``: does each configured STUN/TURN server actually answer?

A broken TURN server is invisible until a user behind a symmetric NAT cannot join; this check
makes it visible from a shell or a monitoring probe. Each URL gets one line that says what
worked or, in words, what failed and the likely cause. Checks run concurrently, each bounded
by its own timeout, inside one task group.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Literal

from signaling.turn.client import TurnClient, binding, open_connection
from signaling.turn.protocol import NoResponse, StunClientError
from signaling.turn.uris import IceUri

Kind = Literal["stun", "turn"]


@dataclass(frozen=True, slots=True)
class CheckSettings:
    """How the checks run."""

    #: Seconds one check may take in total (connect, authenticate, allocate).
    timeout: float = 5.0
    #: Trust store for ``stuns:``/``turns:``; None = the system's.
    ssl_context: ssl.SSLContext | None = None


@dataclass(frozen=True, slots=True)
class CheckResult:
    """Outcome of one check."""

    kind: Kind
    #: The URL as given.
    uri: str
    ok: bool
    #: One line for a human: what was observed, or what failed and why.
    summary: str
    #: Milliseconds the check took.
    elapsed_ms: int


def _describe(exc: BaseException, uri: IceUri, settings: CheckSettings) -> str:
    """Turn an I/O or protocol failure into a sentence an operator can act on."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {exc.verify_message}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused: nothing listens on {uri.transport.upper()} port {uri.port}"
    if isinstance(exc, TimeoutError | NoResponse):
        return (
            f"no answer within {settings.timeout:g} s (is the server running, and "
            f"{uri.transport.upper()} port {uri.port} open in the firewall?)"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    if isinstance(exc, OSError):
        return f"network error: {exc.strerror or exc}"
    return str(exc)


class _Stopwatch:
    """Milliseconds since creation on the loop clock."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time()

    def ms(self) -> int:
        return round((self._loop.time() - self._start) * 1000)


async def check_stun(uri: IceUri, settings: CheckSettings) -> CheckResult:
    """One Binding transaction against a ``stun:``/``stuns:`` URL."""
    watch = _Stopwatch()
    try:
        async with asyncio.timeout(settings.timeout):
            conn = await open_connection(uri, settings.ssl_context)
            try:
                mapped = await binding(conn)
            finally:
                await conn.close()
    except (StunClientError, OSError) as exc:  # TimeoutError is an OSError
        reason = _describe(exc, uri, settings)
        return CheckResult("stun", str(uri), False, f"binding failed: {reason}", watch.ms())
    summary = f"binding answered, reflexive address {mapped[0]}:{mapped[1]}"
    return CheckResult("stun", str(uri), True, summary, watch.ms())


async def check_turn(
    uri: IceUri, credentials: tuple[str, str], settings: CheckSettings
) -> CheckResult:
    """Allocate a UDP relay on a ``turn:``/``turns:`` URL with ``(username, password)``, then
    release it."""
    watch = _Stopwatch()
    try:
        async with asyncio.timeout(settings.timeout):
            conn = await open_connection(uri, settings.ssl_context)
            async with TurnClient(conn, *credentials) as client:
                allocation = await client.allocate()
    except (StunClientError, OSError) as exc:  # TimeoutError is an OSError
        reason = _describe(exc, uri, settings)
        return CheckResult("turn", str(uri), False, f"allocation failed: {reason}", watch.ms())
    relayed = allocation.relayed
    summary = f"allocation granted, relayed address {relayed[0]}:{relayed[1]}"
    return CheckResult("turn", str(uri), True, summary, watch.ms())


async def run_checks(
    stun_uris: list[IceUri],
    turn_uris: list[IceUri],
    credentials: tuple[str, str] | None,
    settings: CheckSettings,
) -> list[CheckResult]:
    """Check every URL concurrently; results in the order given (STUN first)."""
    if turn_uris and credentials is None:
        raise ValueError("TURN checks need credentials")
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(check_stun(uri, settings)) for uri in stun_uris]
        if credentials is not None:
            tasks += [
                group.create_task(check_turn(uri, credentials, settings)) for uri in turn_uris
            ]
    return [task.result() for task in tasks]


def format_report(results: list[CheckResult]) -> str:
    """One line per check and a verdict, aligned for a terminal."""
    width = max((len(r.uri) for r in results), default=0)
    lines = [
        f"{'ok' if r.ok else 'FAIL':<4}  {r.kind.upper():<4}  {r.uri:<{width}}  {r.summary} ({r.elapsed_ms} ms)"
        for r in results
    ]
    failed = sum(not r.ok for r in results)
    if failed:
        lines.append(f"{failed} of {len(results)} {'check' if len(results) == 1 else 'checks'} failed.")
    else:
        lines.append("The check passed." if len(results) == 1 else f"All {len(results)} checks passed.")
    return "\n".join(lines)
