"""The aiohttp shell of WHIP (RFC 9725) and WHEP: routes, auth, and calls into hub and SFU.

The rules (ETag, If-Match, ICE restart, fragments, Link headers, problem bodies) live in
:mod:`signaling.core.whip`; this module only moves them onto HTTP. See docs/ingest-egress.md.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Literal

from aiohttp import web

from signaling.backend.media import MEDIA_REFUSALS
from signaling.core.auth import DEV_IDENTITY_GRANTS, AuthError, TokenVerifier
from signaling.core.codes import Err
from signaling.core.sdpcheck import SdpError, check_sdp
from signaling.core.whip import (
    PROBLEM,
    SDP,
    SDPFRAG,
    Kind,
    Problem,
    Resource,
    Resources,
    bearer,
    ice_credentials,
    link_headers,
    media_type,
)
from signaling.server.hub import Hub
from signaling.server.live import HeadlessRefused
from signaling.turn.credentials import ice_servers

log = logging.getLogger(__name__)

RESOURCES: web.AppKey[Resources] = web.AppKey("whip_resources", Resources)

_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, ETag, Link, Accept-Patch, Accept-Post",
}
#: The SFU's refusal codes as HTTP answers (bad-sdp: the offer was well-formed, we cannot use it).
_MEDIA_STATUS = {"bad-sdp": 422, "unknown-track": 404, "sfu-unavailable": 503, "not-joined": 409}


def _problem_response(problem: Problem) -> web.Response:
    headers = {**_CORS, **problem.headers}
    if problem.status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="switchboard"')
    if problem.status == 503:
        headers.setdefault("Retry-After", "2")
    return web.Response(
        status=problem.status, text=json.dumps(problem.body()), content_type=PROBLEM, headers=headers
    )


def add_routes(app: web.Application, hub: Hub, *, limit: int = 1000) -> None:
    resources = app[RESOURCES] = Resources(limit)
    keys = dict(hub.config.security.token_keys)
    verifier = TokenVerifier(keys) if keys else None

    def authorize(request: web.Request, room: str, grant: str) -> tuple[frozenset[str], str, str | None]:
        if verifier is None:  # dev mode, as for WebSocket joins
            return DEV_IDENTITY_GRANTS, "", None
        try:
            identity = verifier.verify(bearer(request.headers.get("Authorization")), room)
        except AuthError as exc:
            hub.metrics.auth_failures.labels(exc.error.code).inc()
            status = 403 if exc.error is Err.FORBIDDEN else 401
            raise Problem(status, exc.error.code, exc.message) from None
        if not identity.may(grant):
            hub.metrics.auth_failures.labels(Err.FORBIDDEN.code).inc()
            raise Problem(403, "forbidden", f"the token does not grant {grant}")
        return identity.grants, identity.identity, identity.name

    async def create(request: web.Request, kind: Kind) -> web.Response:
        room = request.match_info["room"]
        if media_type(request.headers.get("Content-Type")) != SDP:
            raise Problem(415, "unsupported-media-type", f"POST takes {SDP}", headers={"Accept-Post": SDP})
        grants, identity, name = authorize(request, room, "publish" if kind == "whip" else "subscribe")
        media = hub.media
        if media is None:
            raise Problem(503, "sfu-unavailable", "this node runs no SFU")
        offer = await request.text()
        try:
            check_sdp(offer, max_lines=hub.config.security.max_sdp_lines)
        except SdpError as exc:
            raise Problem(400, "bad-sdp", str(exc)) from None
        display = name or identity or request.query.get("name") or ("WHIP" if kind == "whip" else "WHEP viewer")
        try:
            peer = await hub.admission.join_headless(room, display[:64], grants=grants, identity=identity, subscribe=False)
        except HeadlessRefused as exc:
            raise Problem(503, exc.reason, str(exc)) from None
        resource = Resource(kind=kind, room=room, peer=peer, ice=ice_credentials(offer))
        try:
            resources.add(resource)
            await media.join(room, peer, subscribe=False)
            if kind == "whip":
                answer = await media.publish(room, peer, offer)
            else:
                answer = await media.play(
                    room, peer, offer, peer=request.query.get("peer"), track=request.query.get("track")
                )
        except Exception as exc:
            resources.remove(resource)
            await hub.end_headless(peer, "left")
            if isinstance(exc, Problem):
                raise
            if isinstance(exc, MEDIA_REFUSALS) and exc.code in _MEDIA_STATUS:
                raise Problem(_MEDIA_STATUS[exc.code], exc.code, str(exc)) from None
            log.exception("%s offer for %s failed", kind, room)
            raise Problem(500, "internal", "the SFU failed to answer") from None
        hub.metrics.messages_in.labels(f"{kind}-post").inc()
        headers = {
            **_CORS,
            "Location": resource.path,
            "ETag": resource.etag,
            "Accept-Patch": SDPFRAG,
        }
        response = web.Response(status=201, text=answer, content_type=SDP, headers=headers)
        for link in link_headers(ice_servers(hub.config.ice, peer, time.time())):
            response.headers.add("Link", link)
        log.info("%s session %s: peer %s in room %s", kind, resource.id[:6], peer, room)
        return response

    def lookup(request: web.Request, kind: Kind) -> Resource:
        resource = resources.get(kind, request.match_info["room"], request.match_info["id"])
        if resource is not None and not hub.has_peer(resource.peer):
            resources.remove(resource)  # kicked, or the room was closed meanwhile
            resource = None
        if resource is None:
            raise Problem(404, "not-found", "no such session (ended, or never existed)")
        return resource

    async def patch(request: web.Request, kind: Kind) -> web.Response:
        resource = lookup(request, kind)
        body = await request.text()
        candidates = resource.check_patch(
            media_type(request.headers.get("Content-Type")), request.headers.get("If-Match"), body
        )
        media = hub.media
        if media is None:
            raise Problem(503, "sfu-unavailable", "this node runs no SFU")
        target: Literal["publisher", "subscriber"] = "publisher" if kind == "whip" else "subscriber"
        for candidate in candidates:
            try:
                await media.add_candidate(resource.room, resource.peer, target, candidate)
            except MEDIA_REFUSALS as exc:
                code = exc.code
                if code == "bad-sdp":
                    raise Problem(400, "bad-candidate", str(exc)) from None
                if code == "candidate-refused":
                    # Ignored, as on the WebSocket path: the SFU does not contact that address,
                    # the connection goes on with the other candidates (docs/sfu.md).
                    log.info("%s %s: candidate refused: %s", kind, resource.peer, exc)
                    continue
                raise
        return web.Response(status=204, headers={**_CORS, "ETag": resource.etag})

    async def delete(request: web.Request, kind: Kind) -> web.Response:
        resource = lookup(request, kind)
        resources.remove(resource)
        await hub.end_headless(resource.peer, "left")
        return web.Response(status=200, headers=_CORS)

    async def options(request: web.Request) -> web.Response:
        headers = {
            **_CORS,
            "Access-Control-Allow-Methods": "POST, PATCH, DELETE, OPTIONS",
            "Accept-Post": SDP,
            "Accept-Patch": SDPFRAG,
        }
        return web.Response(status=204, headers=headers)

    def handler(action: Any, kind: Kind) -> Any:
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                response: web.StreamResponse = await action(request, kind)
                return response
            except Problem as problem:
                return _problem_response(problem)

        return run

    r = app.router
    for kind in ("whip", "whep"):
        r.add_post(f"/{kind}/{{room}}", handler(create, kind))
        r.add_route("OPTIONS", f"/{kind}/{{room}}", options)
        r.add_patch(f"/{kind}/{{room}}/{{id}}", handler(patch, kind))
        r.add_delete(f"/{kind}/{{room}}/{{id}}", handler(delete, kind))
        r.add_route("OPTIONS", f"/{kind}/{{room}}/{{id}}", options)
