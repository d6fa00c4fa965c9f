from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp

from signaling.client import Client, Joined, PeerJoined, SignalReceived
from tests.conftest import PATIENCE, RunningServer


async def next_of(client: Client, kind: type) -> object:
    async with asyncio.timeout(PATIENCE):
        while True:
            event = await client.next_event()
            if isinstance(event, kind):
                return event


async def test_two_sdk_clients_exchange_signals(server: RunningServer) -> None:
    async with Client(server.url, "room1", name="alice") as alice, Client(server.url, "room1", name="bob") as bob:
        joined = await next_of(bob, Joined)
        assert isinstance(joined, Joined)
        assert joined.peers == {alice.peer_id: "alice"}
        pj = await next_of(alice, PeerJoined)
        assert pj == PeerJoined(bob.peer_id, "bob")
        assert bob.peer_id is not None
        await alice.signal(bob.peer_id, {"sdp": "v=0", "kind": "offer"})
        got = await next_of(bob, SignalReceived)
        assert isinstance(got, SignalReceived)
        assert got.sender == alice.peer_id and got.data == {"sdp": "v=0", "kind": "offer"}


async def test_sdk_and_raw_clients_negotiate_offer_answer_candidates(server: RunningServer) -> None:
    from tests.raw import Raw

    offer = {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n" + "a=x\r\n" * 200}
    answer = {"type": "answer", "sdp": "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\n"}
    cand = {"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host", "sdpMid": "0", "sdpMLineIndex": 0}
    async with Client(server.url, "call", name="sdk") as sdk:
        raw = await Raw.joined(server.url, "call", "raw")
        assert raw.welcome["peers"] == [{"id": sdk.peer_id, "name": "sdk"}]
        assert sdk.peer_id is not None
        await sdk.signal(raw.peer, offer)
        await sdk.signal(raw.peer, cand)
        got = [await raw.expect("signal") for _ in range(2)]
        assert [m["data"] for m in got] == [offer, cand]
        assert {m["from"] for m in got} == {sdk.peer_id}
        await raw.send({"type": "signal", "to": sdk.peer_id, "data": answer, "cseq": 1})
        await raw.send({"type": "signal", "to": sdk.peer_id, "data": cand, "cseq": 2})
        received = [await next_of(sdk, SignalReceived) for _ in range(2)]
        assert [r.data for r in received if isinstance(r, SignalReceived)] == [answer, cand]
        await raw.send({"type": "leave"})
        assert await raw.closed() == 1000
        await raw.close()


#: The JS SDK's node tests: in the repository, neither served nor shipped in the wheel.
JS_TESTS = Path(__file__).resolve().parents[2] / "static" / "test"


async def test_the_page_and_its_files_are_served_but_not_the_js_tests(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.http_url}/") as resp:
            assert resp.status == 200
            assert resp.content_type == "text/html"
            page = await resp.text()
        assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page)
        assert set(assets) >= {"/static/app.js", "/static/style.css"}
        # What the page loads, and what app.js imports.
        for path in [*assets, "/static/switchboard.js"]:
            async with http.get(f"{server.http_url}{path}") as resp:
                assert resp.status == 200, path
                if path.endswith(".js"):  # a module script needs a JavaScript MIME type
                    assert resp.content_type in ("text/javascript", "application/javascript"), path
                assert await resp.read(), path
        hidden = [f"/static/test/{p.name}" for p in sorted(JS_TESTS.iterdir())]
        assert "/static/test/fakes.mjs" in hidden
        for path in [*hidden, "/static/test", "/static/test/", "/static/nope.js", "/static/..%2Fpyproject.toml"]:
            async with http.get(f"{server.http_url}{path}") as resp:
                assert resp.status == 404, path
