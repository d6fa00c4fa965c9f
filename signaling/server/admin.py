"""Admin HTTP API (``/admin/...``): bearer-token JSON endpoints for operators and tests.

Without a configured admin token every admin route answers 404: an open admin API is worse
than none. Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from signaling import __version__
from signaling.backend.media import MEDIA_REFUSALS, MediaPort
from signaling.core.auth import bearer_matches
from signaling.core.ratelimit import FailureThrottle
from signaling.runtime.leakwatch import LeakWatch
from signaling.runtime.tasks import TaskInfo, count_by_kind, snapshot
from signaling.server.hub import Hub
from signaling.server.live import Live

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Set by ``POST /admin/drain`` (and by SIGTERM in ``signaling.server.app``): the process drains.
#: Defined here, where it is requested, so the server imports the admin API and not back.
DRAIN_REQUESTED: web.AppKey[asyncio.Event] = web.AppKey("drain_requested", asyncio.Event)


def _session_json(live: Live) -> dict[str, Any]:
    s = live.session
    return {
        "session": s.id,
        "peer": s.peer_id,
        "name": s.name,
        "room": s.room,
        "state": s.state.value,
        "last_seq": s.last_seq,
        "acked_seq": s.acked_seq,
        "unacked": s.unacked,
        "unacked_bytes": s.unacked_bytes,
        "last_cseq": s.last_cseq,
        "rtt_ms": round(live.rtt * 1000, 2) if live.rtt is not None else None,
        "joined_at": live.joined_at,
    }


def _task_json(t: TaskInfo) -> dict[str, Any]:
    return {"name": t.name, "age_s": t.age, "where": t.where, "stack": list(t.stack)}


def tasks_json(tasks: list[TaskInfo], leaks: LeakWatch) -> dict[str, Any]:
    """The body of ``GET /admin/debug/tasks``: owners sorted by kind then name, and the alarm."""
    owners: dict[tuple[str, str], list[TaskInfo]] = {}
    for t in tasks:
        owners.setdefault((t.kind.value, t.owner), []).append(t)
    alert = leaks.last_alert
    return {
        "total": len(tasks),
        "by_kind": {kind.value: n for kind, n in count_by_kind(tasks).items()},
        "owners": [
            {"kind": kind, "owner": owner, "tasks": [_task_json(t) for t in group]}
            for (kind, owner), group in sorted(owners.items())
        ],
        "leak_alarm": {
            "score": round(leaks.alarm.score, 3),
            "threshold": leaks.alarm.h,
            "samples": leaks.alarm.samples,
            "alerts": leaks.alerts,
            "last_alert": None if alert is None else {
                "at": alert.at,
                "score": alert.report.score,
                "per_session": alert.report.per_session,
                "owners": [{"owner": o, "tasks": n} for o, n in alert.report.owners],
                "snapshot": [{"kind": t.kind.value, "owner": t.owner, **_task_json(t)} for t in alert.tasks],
            },
        },
    }


def bearer_ok(request: web.Request, token: str) -> bool:
    """``Authorization: Bearer <token>`` (:func:`~signaling.core.auth.bearer_matches`): a header
    that is not UTF-8 is merely wrong (401), never an error (500)."""
    return bearer_matches(request.headers.get("Authorization", ""), token)


def add_routes(app: web.Application, hub: Hub, token: str | None) -> None:
    sec = hub.config.security
    throttle = FailureThrottle(sec.admin_failure_rate, sec.admin_failure_burst)

    def guarded(handler: Handler) -> Handler:
        async def wrapper(request: web.Request) -> web.StreamResponse:
            if token is None:
                raise web.HTTPNotFound()
            address = request.remote or ""
            now = asyncio.get_running_loop().time()
            if throttle.blocked(address, now):
                retry = max(1, math.ceil(throttle.retry_after(address)))
                raise web.HTTPTooManyRequests(text='{"error":"too many wrong admin tokens"}', content_type="application/json",
                                              headers={"Retry-After": str(retry)})
            if not bearer_ok(request, token):
                throttle.failed(address, now)
                raise web.HTTPUnauthorized(text='{"error":"unauthorized"}', content_type="application/json")
            return await handler(request)

        return wrapper

    async def info(request: web.Request) -> web.Response:
        return web.json_response({
            "version": __version__,
            "node": hub.config.node_id,
            "draining": hub.draining,
            "connections": hub.connection_count,
            "sessions": hub.session_count,
        })

    async def nodes(request: web.Request) -> web.Response:
        """The cluster's live nodes from the registry; alone, just this node."""
        if hub.registry is None:
            return web.json_response({"nodes": [{
                "node": hub.config.node_id, "kind": "signaling", "address": f"http://{hub.config.host}:{hub.config.port}",
                "load": hub.room_count, "capacity": hub.config.security.max_rooms, "draining": hub.draining,
                "connections": hub.connection_count, "sessions": hub.session_count,
            }]})
        listed = await hub.registry.nodes()
        return web.json_response({"nodes": [{
            "node": n.id, "kind": n.kind, "address": n.address, "load": n.load, "capacity": n.capacity,
            "draining": n.draining,
        } for n in listed]})

    async def rooms(request: web.Request) -> web.Response:
        counts = await hub.backend.rooms()
        return web.json_response({"rooms": [{"room": r, "participants": n} for r, n in sorted(counts.items())]})

    async def room(request: web.Request) -> web.Response:
        name = request.match_info["room"]
        members = await hub.backend.members(name)
        if not members:
            raise web.HTTPNotFound(text='{"error":"no such room"}', content_type="application/json")
        return web.json_response({
            "room": name,
            "participants": [{"peer": m.peer_id, "name": m.name, "node": m.node_id} for m in members],
        })

    async def sessions(request: web.Request) -> web.Response:
        return web.json_response({"sessions": [_session_json(live) for live in hub.sessions()]})

    async def disconnect(request: web.Request) -> web.Response:
        if not hub.disconnect(request.match_info["session"]):
            raise web.HTTPNotFound(text='{"error":"no such attached session"}', content_type="application/json")
        return web.json_response({"disconnected": True})

    async def kick(request: web.Request) -> web.Response:
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            raise web.HTTPBadRequest(text='{"error":"body must be JSON"}', content_type="application/json") from None
        reason = str(body.get("reason", "kicked")) if isinstance(body, dict) else "kicked"
        if not await hub.kick(request.match_info["peer"], reason):
            raise web.HTTPNotFound(text='{"error":"no such participant"}', content_type="application/json")
        return web.json_response({"kicked": True})

    async def mute(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text='{"error":"body must be JSON"}', content_type="application/json") from None
        track = body.get("track") if isinstance(body, dict) else None
        muted = body.get("muted", True) if isinstance(body, dict) else True
        if not isinstance(track, str) or not isinstance(muted, bool):
            raise web.HTTPBadRequest(text='{"error":"expected {track: str, muted: bool}"}', content_type="application/json")
        try:
            found = await hub.mute(request.match_info["peer"], track, muted)
        except MEDIA_REFUSALS as exc:
            if exc.code == "unknown-track":
                raise web.HTTPNotFound(text='{"error":"no such track"}', content_type="application/json") from None
            raise
        if not found:
            raise web.HTTPNotFound(text='{"error":"no such participant"}', content_type="application/json")
        return web.json_response({"track": track, "muted": muted})

    async def close_room(request: web.Request) -> web.Response:
        count = await hub.close_room(request.match_info["room"])
        return web.json_response({"closed": count})

    async def record_start(request: web.Request) -> web.Response:
        """Start recording a room (or one track of it): ``{"track"?: str, "dir"?: str}``."""
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            raise web.HTTPBadRequest(text='{"error":"body must be JSON"}', content_type="application/json") from None
        if not isinstance(body, dict):
            body = {}
        track, directory = body.get("track"), body.get("dir") or hub.config.recording_dir
        if (track is not None and not isinstance(track, str)) or not isinstance(directory, str):
            raise web.HTTPBadRequest(text='{"error":"expected {track?: str, dir?: str}"}', content_type="application/json")
        media = _media_or_503(hub)
        try:
            started = await media.record_start(request.match_info["room"], directory=directory, track=track)
        except MEDIA_REFUSALS as exc:
            refusal = _media_refusal(exc.code, str(exc))
            if refusal is None:
                raise
            raise refusal from None
        return web.json_response({"recordings": started}, status=201)

    async def record_stop(request: web.Request) -> web.Response:
        media = _media_or_503(hub)
        try:
            stopped = await media.record_stop(request.match_info["room"])
        except MEDIA_REFUSALS as exc:
            refusal = _media_refusal(exc.code, str(exc))
            if refusal is None:
                raise
            raise refusal from None
        if hub.config.redis_url and hub.webhooks is not None:
            # SFU nodes send no webhooks: the node that stopped the recording reports it.
            for info in stopped:
                hub.webhooks.recording_finished(info)
        return web.json_response({"recordings": stopped})

    async def recordings(request: web.Request) -> web.Response:
        media = _media_or_503(hub)
        return web.json_response({"recordings": await media.recordings()})

    async def drain(request: web.Request) -> web.Response:
        request.app[DRAIN_REQUESTED].set()
        return web.json_response({"draining": True})

    async def debug_tasks(request: web.Request) -> web.Response:
        """Live tasks grouped by owner, with where each is suspended and its age; the leak alarm."""
        return web.json_response(tasks_json(snapshot(), hub.leaks))

    r = app.router
    r.add_get("/admin/debug/tasks", guarded(debug_tasks))
    r.add_get("/admin/info", guarded(info))
    r.add_get("/admin/nodes", guarded(nodes))
    r.add_get("/admin/rooms", guarded(rooms))
    r.add_get("/admin/rooms/{room}", guarded(room))
    r.add_delete("/admin/rooms/{room}", guarded(close_room))
    r.add_get("/admin/sessions", guarded(sessions))
    r.add_post("/admin/sessions/{session}/disconnect", guarded(disconnect))
    r.add_post("/admin/participants/{peer}/kick", guarded(kick))
    r.add_post("/admin/participants/{peer}/mute", guarded(mute))
    r.add_post("/admin/drain", guarded(drain))
    r.add_post("/admin/rooms/{room}/recording", guarded(record_start))
    r.add_delete("/admin/rooms/{room}/recording", guarded(record_stop))
    r.add_get("/admin/recordings", guarded(recordings))


def _media_or_503(hub: Hub) -> MediaPort:
    if hub.media is None:
        raise web.HTTPServiceUnavailable(text='{"error":"this node runs no SFU"}', content_type="application/json")
    return hub.media


def _media_refusal(code: str, detail: str) -> web.HTTPException | None:
    """An SFU refusal of a recording request as an HTTP error (None: a code we do not map)."""
    body = json.dumps({"error": code, "detail": detail})
    if code in ("not-joined", "unknown-track"):
        return web.HTTPNotFound(text=body, content_type="application/json")
    if code == "sfu-error":
        return web.HTTPConflict(text=body, content_type="application/json")
    if code == "sfu-unavailable":
        return web.HTTPServiceUnavailable(text=body, content_type="application/json")
    return None
