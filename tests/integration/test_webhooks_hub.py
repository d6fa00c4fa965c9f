"""The hub emits signed webhooks for room and participant events."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from signaling.core.config import SessionConfig, WebhookConfig
from signaling.server.webhooks import verify_signature
from tests.conftest import UNIT, ServerFactory, eventually, make_config
from tests.raw import Raw

SECRET = "hook-secret-for-tests"


async def test_room_and_participant_events_are_signed_and_ordered(start_server: ServerFactory) -> None:
    received: list[dict[str, Any]] = []
    bad_signatures = 0

    async def receiver(request: web.Request) -> web.Response:
        nonlocal bad_signatures
        body = await request.read()
        if not verify_signature(SECRET, body, request.headers.get("X-Switchboard-Signature")):
            bad_signatures += 1
        received.append(json.loads(body))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", receiver)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        server = await start_server(
            make_config(
                webhooks=WebhookConfig(urls=(url,), secret=SECRET),
                session=SessionConfig(grace_period=4 * UNIT, reconnecting_notice_after=1 * UNIT),
            )
        )
        alice = await Raw.joined(server.url, "room", "alice")
        bob = await Raw.joined(server.url, "room", "bob")
        await bob.send({"type": "leave"})
        await bob.closed()
        await alice.ws.close()  # dropped: connection_lost, then left after the grace period
        await eventually(lambda: any(e["event"] == "room_finished" for e in received))
        events = [(e["event"], e.get("participant", {}).get("name"), e.get("reason")) for e in received]
        assert events == [
            ("room_started", None, None),
            ("participant_joined", "alice", None),
            ("participant_joined", "bob", None),
            ("participant_left", "bob", "left"),
            ("participant_connection_lost", "alice", None),
            ("participant_left", "alice", "timeout"),
            ("room_finished", None, None),
        ]
        assert bad_signatures == 0
        assert all(e["room"] == "room" and e["node"] == "node-1" for e in received)
        await alice.close()
        await bob.close()
    finally:
        await runner.cleanup()
