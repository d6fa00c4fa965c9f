"""SFU node processes without media: registration, health, drain, and the media RPC's answers
as clients see them (error codes, no SFU at all, an SFU node that leaves gracefully).

Clients use the Python SDK; nothing here negotiates a peer connection, so these run in seconds.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from signaling.client import Client, ErrorReceived, Event, ServerMessage
from tests.cluster.conftest import NODE_TTL, PATIENCE, UNIT, Cluster
from tests.cluster.media_peers import is_media_reconnect

#: Passes the signaling node's SDP grammar check; the SFU refuses it (no BUNDLE group).
UNBUNDLED_OFFER = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=sendonly\r\n"
#: Five sending video m-lines, bundled: refused by the SFU's track limit (4 per kind) before aiortc.
FIVE_CAMERAS_OFFER = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1 2 3 4\r\n" + "".join(
    f"m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:{mid}\r\na=sendonly\r\n" for mid in range(5)
)


async def next_matching(client: Client, wanted: Any, *, what: str) -> Event:
    """The next event of ``client`` for which ``wanted(event)`` holds (others are skipped)."""
    try:
        async with asyncio.timeout(PATIENCE):
            while True:
                event = await client.next_event()
                if wanted(event):
                    return event
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def reply_to(client: Client, cseq: int) -> Event:
    def answers(event: Event) -> bool:
        if isinstance(event, ErrorReceived):
            return event.cseq == cseq
        return isinstance(event, ServerMessage) and event.message.get("cseq") == cseq

    return await next_matching(client, answers, what=f"the reply to cseq {cseq}")


async def until_equal(read: Any, *, expect: Any) -> None:
    """Poll the async ``read()`` until it returns ``expect``."""
    async with asyncio.timeout(PATIENCE):
        while await read() != expect:
            await asyncio.sleep(UNIT / 5)


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.text()


async def test_sfu_node_registers_serves_health_and_deregisters_on_sigterm(cluster: Cluster) -> None:
    node = await cluster.sfu("sfu-a", capacity=3)
    registry = cluster.registry()
    [info] = await registry.nodes("sfu")
    assert (info.id, info.kind, info.capacity, info.draining) == ("sfu-a", "sfu", 3, False)
    base = node.ready_url.removesuffix("/readyz")
    assert info.address == base
    status, body = await get(base + "/healthz")
    assert status == 200 and '"node": "sfu-a"' in body
    status, body = await get(base + "/metrics")
    assert status == 200
    assert "switchboard_sfu_node_rooms_hosted 0.0" in body
    assert "switchboard_sfu_rooms 0.0" in body  # the SFU's own figures
    assert await node.terminate() == 0
    # Deregistered on the way out: gone at once, not after the TTL.
    assert await registry.nodes("sfu") == []


async def test_media_refusals_come_back_with_their_codes(cluster: Cluster) -> None:
    await cluster.sfu("sfu-a")
    _, url = await cluster.signaling("sig-1")
    async with Client(url, "codes", name="c") as client:
        cseq = await client.send({"type": "publish", "sdp": UNBUNDLED_OFFER})
        error = await reply_to(client, cseq)
        assert isinstance(error, ErrorReceived) and error.code == "bad-sdp", error
        cseq = await client.send({"type": "unpublish", "track": "no-such-track"})
        error = await reply_to(client, cseq)
        assert isinstance(error, ErrorReceived) and error.code == "unknown-track", error
        cseq = await client.send({"type": "subscriber-answer", "sdp": UNBUNDLED_OFFER})
        error = await reply_to(client, cseq)
        assert isinstance(error, ErrorReceived) and error.code == "sfu-error", error
        # Issue 14: the SFU node's track limit and candidate policy, codes intact across RPC.
        cseq = await client.send({"type": "publish", "sdp": FIVE_CAMERAS_OFFER})
        error = await reply_to(client, cseq)
        assert isinstance(error, ErrorReceived) and error.code == "too-many-tracks", error
        private = {"candidate": "candidate:1 1 udp 2130706431 10.0.0.5 5000 typ host", "sdpMid": "0"}
        cseq = await client.send({"type": "candidate", "target": "publisher", "candidate": private})
        error = await reply_to(client, cseq)
        assert isinstance(error, ErrorReceived) and error.code == "candidate-refused", error
        # Loopback is allowed on this node (--ice-allow-peer 127.0.0.0/8): no error for it; the
        # next error is the one of the message after it.
        loopback = dict(private, candidate="candidate:2 1 udp 2130706431 127.0.0.1 5000 typ host")
        await client.send({"type": "candidate", "target": "publisher", "candidate": loopback})
        cseq = await client.send({"type": "unpublish", "track": "still-no-such-track"})
        error = await next_matching(client, lambda e: isinstance(e, ErrorReceived), what="an error")
        assert isinstance(error, ErrorReceived) and error.cseq == cseq, error
        registry = cluster.registry()
        assert await registry.placement("codes") == "sfu-a"
        await client.leave()
    # The room ended on the SFU node, which gave its slot back.
    await until_equal(lambda: registry.placement("codes"), expect=None)


async def test_without_sfu_nodes_media_is_unavailable_until_one_registers(cluster: Cluster) -> None:
    _, url = await cluster.signaling("sig-1")
    async with Client(url, "lonely", name="c") as client:
        cseq = await client.send({"type": "publish", "sdp": UNBUNDLED_OFFER})
        error = await reply_to(client, cseq)
        assert isinstance(error, ErrorReceived) and error.code == "sfu-unavailable", error
        # An SFU node appears: the room is placed on it, the participant joined there and told
        # to (re)do media; its requests now reach the SFU (which refuses this SDP by name).
        await cluster.sfu("sfu-late")
        await next_matching(client, is_media_reconnect, what="reconnect {scope: media}")
        cseq = await client.send({"type": "publish", "sdp": UNBUNDLED_OFFER})
        error = await reply_to(client, cseq)
        assert isinstance(error, ErrorReceived) and error.code == "bad-sdp", error
        session = client.session_id
    assert (client.resumes, client.rejoins, client.session_id) == (0, 0, session)


async def test_a_draining_sfu_node_hands_its_rooms_over_without_waiting_for_the_ttl(cluster: Cluster) -> None:
    first = await cluster.sfu("sfu-a", args=["--drain-timeout", "0"])
    _, url = await cluster.signaling("sig-1")
    registry = cluster.registry()
    async with Client(url, "handover", name="a") as a, Client(url, "handover", name="b", subscribe=False) as b:
        assert await registry.placement("handover") == "sfu-a"
        await cluster.sfu("sfu-b")
        started = time.monotonic()
        assert await first.terminate() == 0
        for client in (a, b):
            await next_matching(client, is_media_reconnect, what=f"{client.name}: reconnect {{scope: media}}")
        handed_over = time.monotonic() - started
        assert await registry.placement("handover") == "sfu-b"
        # A dead node is noticed after the TTL; a draining one deregisters and is gone at once.
        assert handed_over < NODE_TTL, f"handover took {handed_over:.2f}s"
        cseq = await a.send({"type": "unpublish", "track": "t"})
        error = await reply_to(a, cseq)
        # Joined on the new node (else: not-joined), which answers for its own tracks.
        assert isinstance(error, ErrorReceived) and error.code == "unknown-track", error


async def test_a_draining_sfu_node_hands_its_rooms_over_before_it_stops(cluster: Cluster) -> None:
    """Make before break: the rooms move while the draining node still runs (and still forwards),
    and it exits once they are gone, long before its drain timeout."""
    token = "sfu-admin-token"
    first = await cluster.sfu("sfu-a", args=["--admin-token", token, "--drain-timeout", str(2 * PATIENCE)])
    drain_url = first.ready_url.replace("/readyz", "/admin/drain")
    _, url = await cluster.signaling("sig-1")
    registry = cluster.registry()
    async with aiohttp.ClientSession() as http:
        # No token, a wrong one: refused, nothing drains.
        async with http.post(drain_url) as response:
            assert response.status == 401
        async with http.post(drain_url, headers={"Authorization": "Bearer wrong"}) as response:
            assert response.status == 401
        async with Client(url, "handover", name="a") as a, Client(url, "handover", name="b", subscribe=False) as b:
            assert await registry.placement("handover") == "sfu-a"
            await cluster.sfu("sfu-b")
            async with http.post(drain_url, headers={"Authorization": f"Bearer {token}"}) as response:
                assert response.status == 200 and await response.json() == {"draining": True}
            # Within PATIENCE, while the drain lasts 2 * PATIENCE: the room moved while sfu-a still
            # ran (it deregisters only once its rooms are gone, or at its drain deadline).
            for client in (a, b):
                await next_matching(client, is_media_reconnect, what=f"{client.name}: reconnect {{scope: media}}")
            assert await registry.placement("handover") == "sfu-b"
            # Its room is gone from it: it exits well within its drain timeout.
            assert await first.wait_exit(patience=PATIENCE) == 0
            cseq = await a.send({"type": "unpublish", "track": "t"})
            error = await reply_to(a, cseq)
            assert isinstance(error, ErrorReceived) and error.code == "unknown-track", error
        assert (a.resumes, a.rejoins, b.resumes, b.rejoins) == (0, 0, 0, 0)


async def test_sfu_drain_endpoint_is_off_without_an_admin_token(cluster: Cluster) -> None:
    node = await cluster.sfu("sfu-a")
    async with aiohttp.ClientSession() as http, http.post(
        node.ready_url.replace("/readyz", "/admin/drain"), headers={"Authorization": "Bearer x"}
    ) as response:
        assert response.status == 404
    assert node.running
