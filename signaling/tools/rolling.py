"""Rolling restart of a cluster: one node at a time, drain it, restart it, wait until it is ready.

The plan (which nodes, in which order, with which restart command) is pure and checked before
anything is touched; :class:`RollingRestart` runs it over HTTP. Per node:

1. ``POST <address>/admin/drain`` with the admin token. A signaling node tells its clients to
   resume elsewhere (``reconnect {mode: resume}`` + 1001); an SFU node stops taking rooms and the
   signaling nodes hand its rooms over to the other SFU nodes while it still forwards. Either
   exits once it is empty (or after its ``drain_timeout``).
2. Wait until the node is down (``/healthz`` no longer answers), or already back (its supervisor
   restarted it: ``/readyz`` answers ``draining: false`` again).
3. Run the operator's restart hook (``switchboard admin rolling-restart --restart-cmd``: a shell
   command template) unless the supervisor was faster.
4. Wait until ``/readyz`` answers 200, then go on with the next node.

Every wait has a deadline (``node_timeout``); the first failure stops the whole run, leaving the
remaining nodes untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import string
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from signaling.core.errors import PeerError

#: Placeholders a restart command template may use.
PLACEHOLDERS = ("node", "kind", "address", "host", "port")


class PlanError(PeerError, ValueError):
    """An operator mistake in what to restart or how: reported as one line, exit 2."""


class StepFailed(PeerError):
    """A node did not go down, did not come back, or its restart command failed."""


@dataclass(frozen=True, slots=True)
class Target:
    """One node to restart, as the cluster's registry lists it."""

    node: str
    kind: str
    #: Its HTTP base URL (``/healthz``, ``/readyz``, ``/admin/drain``).
    address: str

    def fields(self) -> dict[str, str]:
        url = URL(self.address)
        return {
            "node": self.node, "kind": self.kind, "address": self.address,
            "host": url.host or "", "port": str(url.port or ""),
        }


@dataclass(slots=True)
class StepResult:
    """What happened to one node (seconds, from the drain request)."""

    node: str
    kind: str
    down_after: float = 0.0
    ready_after: float = 0.0
    #: False when the node's supervisor restarted it before the command would have run.
    command_ran: bool = False


def plan(nodes: Iterable[Mapping[str, Any]], *, only: Sequence[str] = ()) -> list[Target]:
    """The nodes to restart, in order: signaling nodes, then SFU nodes, each by id (or the order
    of ``only``). Refuses (:class:`PlanError`) a node id it does not know, and a kind with fewer
    than two live nodes: there would be nowhere for its clients or rooms to go."""
    listed: dict[str, Target] = {}
    for entry in nodes:
        node, kind, address = entry.get("node"), entry.get("kind"), entry.get("address")
        if not isinstance(node, str) or kind not in ("signaling", "sfu") or not isinstance(address, str):
            continue
        listed[node] = Target(node, str(kind), address.rstrip("/"))
    unknown = [n for n in only if n not in listed]
    if unknown:
        raise PlanError(f"--only: no live node {', '.join(unknown)} in the cluster (known: {', '.join(sorted(listed)) or 'none'})")
    chosen = [listed[n] for n in dict.fromkeys(only)] if only else sorted(
        listed.values(), key=lambda t: (t.kind != "signaling", t.node)
    )
    for kind in sorted({t.kind for t in chosen}):
        peers = [t for t in listed.values() if t.kind == kind]
        if len(peers) < 2:
            what = "clients could not resume anywhere" if kind == "signaling" else "rooms could not move anywhere"
            raise PlanError(f"only one live {kind} node ({peers[0].node}): restarting it is an outage ({what})")
    return chosen


def render(template: str, target: Target) -> str:
    """The restart command for ``target``: ``{node}``, ``{kind}``, ``{address}``, ``{host}``,
    ``{port}`` replaced by shell-quoted values. :class:`PlanError` on any other placeholder."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise PlanError(f"--restart-cmd: {exc}") from None
    bad = [n for n in names if n not in PLACEHOLDERS]
    if bad:
        raise PlanError(f"--restart-cmd: unknown placeholder {{{bad[0]}}} (known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)})")
    return template.format_map({k: shlex.quote(v) for k, v in target.fields().items()})


def shell_restart(template: str, *, timeout: float) -> Callable[[Target], Awaitable[None]]:
    """A restart hook running ``render(template, target)`` through ``/bin/sh`` (output passed
    through); fails on a non-zero exit or after ``timeout`` (the command is killed)."""

    async def restart(target: Target) -> None:
        command = render(template, target)
        proc = await asyncio.create_subprocess_shell(command)
        try:
            async with asyncio.timeout(timeout):
                code = await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise StepFailed(f"{target.node}: restart command did not finish within {timeout:g}s: {command}") from None
        if code != 0:
            raise StepFailed(f"{target.node}: restart command exited with {code}: {command}")

    return restart


class RollingRestart:
    """Runs a plan against live nodes (see the module docstring)."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        token: str,
        restart: Callable[[Target], Awaitable[None]],
        *,
        node_timeout: float = 120.0,
        poll: float = 0.1,
        report: Callable[[str], None] = lambda _line: None,
    ) -> None:
        self._http = http
        self._token = token
        self._restart = restart
        self.node_timeout = node_timeout
        self.poll = poll
        self._report = report

    async def run(self, targets: Sequence[Target]) -> list[StepResult]:
        done: list[StepResult] = []
        for target in targets:
            done.append(await self.one(target))
        return done

    async def one(self, target: Target) -> StepResult:
        result = StepResult(target.node, target.kind)
        started = time.monotonic()
        await self._drain(target)
        # The node answers the drain request before it starts draining: wait until it says so
        # (or is gone already), so a node that is not draining yet is not taken for one restarted.
        gone = not await self._until(target, "draining", self._draining)
        self._report(f"{target.node} ({target.kind}): draining")
        back = False if gone else await self._until(target, "down", self._down_or_back)
        result.down_after = time.monotonic() - started
        if back:
            self._report(f"{target.node}: restarted by its supervisor already")
        else:
            self._report(f"{target.node}: down after {result.down_after:.1f}s; restarting")
            await self._restart(target)
            result.command_ran = True
        await self._until(target, "ready", self._ready)
        result.ready_after = time.monotonic() - started
        self._report(f"{target.node}: ready after {result.ready_after:.1f}s")
        return result

    async def _drain(self, target: Target) -> None:
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            async with self._http.post(f"{target.address}/admin/drain", headers=headers, allow_redirects=False) as response:
                if response.status in (401, 403):
                    raise StepFailed(f"{target.node}: {target.address} refused the admin token (HTTP {response.status})")
                if response.status == 404:
                    raise StepFailed(f"{target.node}: no admin API at {target.address} (start it with --admin-token)")
                if response.status != 200:
                    raise StepFailed(f"{target.node}: drain answered HTTP {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StepFailed(f"{target.node}: cannot reach {target.address}: {exc or type(exc).__name__}") from None

    async def _draining(self, target: Target) -> bool | None:
        """True: draining; False: down already; None: not draining yet."""
        return {"draining": True, "down": False}.get(await self._readyz(target))

    async def _readyz(self, target: Target) -> str:
        """``down`` (refused), ``draining``, ``ready`` or ``unsure`` (not ready for another reason)."""
        try:
            async with self._http.get(f"{target.address}/readyz", allow_redirects=False) as response:
                body = await response.json(content_type=None)
                status = response.status
        except (aiohttp.ClientConnectionError, TimeoutError):
            return "down"
        except (aiohttp.ClientError, ValueError):
            return "unsure"
        if not isinstance(body, dict):
            return "unsure"
        if body.get("draining") is True:
            return "draining"
        return "ready" if status == 200 else "unsure"

    async def _down_or_back(self, target: Target) -> bool | None:
        """True: back already (ready, not draining); False: down; None: still draining."""
        return {"down": False, "ready": True}.get(await self._readyz(target))

    async def _ready(self, target: Target) -> bool | None:
        try:
            async with self._http.get(f"{target.address}/readyz", allow_redirects=False) as response:
                return True if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def _until(self, target: Target, what: str, check: Callable[[Target], Awaitable[bool | None]]) -> bool:
        """Poll ``check`` until it answers True or False; StepFailed after ``node_timeout``."""
        try:
            async with asyncio.timeout(self.node_timeout):
                # Polling another process over HTTP: there is no event to wait on.
                while (answer := await check(target)) is None:  # noqa: ASYNC110
                    await asyncio.sleep(self.poll)
        except TimeoutError:
            raise StepFailed(f"{target.node}: not {what} within {self.node_timeout:g}s") from None
        return answer
