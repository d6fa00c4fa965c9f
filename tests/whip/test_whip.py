"""WHIP and WHEP against a real server, with clients we did not write.

The publisher and the player are Medooze's `whip-whep` npm clients on native libwebrtc
(`@roamhq/wrtc`), in node; a room participant is the Python SDK with aiortc
(tests/media/peers.py). Everything runs in a loopback-only network namespace (conftest.py).
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest

from signaling.client import PeerJoined, PeerLeft
from signaling.core.auth import create_token
from signaling.core.config import IceConfig, SecurityConfig
from tests.conftest import UNLIMITED, RunningServer, ServerFactory
from tests.media.conftest import Peers, media_config
from tests.media.peers import LOOPBACK, Subscriber

SECRET = "whip-tests-signing-key-0123456789abcdef"
TURN_SECRET = "whip-tests-turn-secret-0123456789"
MINIMAL_OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 VP8/90000\r\n"
)


def _config(**overrides: Any) -> Any:
    ice = IceConfig(
        host_addresses=(LOOPBACK,),
        stun_urls=(f"stun:{LOOPBACK}:3478",),
        turn_urls=(f"turn:{LOOPBACK}:3478?transport=udp",),
        turn_secrets=(TURN_SECRET,),
    )
    return media_config(ice, **overrides)


@pytest.fixture
async def whip_server(netns: str, start_server: ServerFactory) -> RunningServer:
    return await start_server(_config())


@pytest.fixture
async def room_peers(whip_server: RunningServer) -> Any:
    registry = Peers()
    yield registry
    await registry.close()


async def _http(method: str, url: str, *, body: str = "", headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession() as http, http.request(method, url, data=body, headers=headers or {}) as response:
        return response.status, dict(response.headers), await response.text()


async def test_whip_publish_trickle_restart_delete(
    whip_server: RunningServer, node_clients: Any, room_peers: Peers
) -> None:
    server = whip_server
    viewer: Subscriber = await room_peers.subscriber(server, "studio", "viewer")
    publisher = await node_clients("publish", f"{server.http_url}/whip/studio")
    posted = await publisher.wait(lambda e: e["event"] == "http" and e["method"] == "POST", "POST answer")
    assert posted["status"] == 201, posted
    assert posted["location"].startswith("/whip/studio/")
    assert posted["etag"].startswith('"')
    # Link headers: STUN, and TURN with REST credentials (expiry:user, HMAC).
    links = posted["links"]
    assert f'<stun:{LOOPBACK}:3478>; rel="ice-server"' in links
    assert 'rel="ice-server"; username="' in links and 'credential-type="password"' in links
    await publisher.wait(lambda e: e.get("state") == "connected", "WHIP connection")

    # Trickle: the client PATCHes its candidates with If-Match = the ETag -> 204.
    patch = await publisher.wait(lambda e: e["event"] == "http" and e["method"] == "PATCH", "trickle PATCH")
    assert patch["status"] == 204 and patch["ifMatch"] == posted["etag"], patch

    # The room sees a participant with two tracks, and its video decodes through the SFU.
    await viewer.wait_for(lambda: len(viewer.messages("track-published")) >= 2, what="two tracks")
    whip_peer = viewer.of_type(PeerJoined)[0].peer
    published = viewer.messages("track-published")
    assert {t["track"]["peer"] for t in published} == {whip_peer}
    assert {t["track"]["kind"] for t in published} == {"audio", "video"}
    await viewer.wait_decoding(frames=10)

    # ICE restart: If-Match: * -> 422 with a problem body naming the reason.
    await publisher.send("restart")
    restart = await publisher.wait(lambda e: e["event"] == "http" and e.get("ifMatch") == "*", "restart PATCH")
    assert restart["status"] == 422
    resource = server.http_url + posted["location"]
    status, headers, text = await _http("PATCH", resource, body="a=ice-ufrag:x\r\na=ice-pwd:y\r\n",
                                        headers={"Content-Type": "application/trickle-ice-sdpfrag", "If-Match": "*"})
    assert status == 422 and headers["Content-Type"].startswith("application/problem+json")
    assert "aioice" in text and "ice-restart-unsupported" in text

    # Preconditions: missing If-Match 428, stale 412, wrong type 415.
    frag = {"Content-Type": "application/trickle-ice-sdpfrag"}
    assert (await _http("PATCH", resource, body="a=end-of-candidates\r\n", headers=frag))[0] == 428
    stale = {**frag, "If-Match": '"stale"'}
    assert (await _http("PATCH", resource, body="a=end-of-candidates\r\n", headers=stale))[0] == 412
    assert (await _http("PATCH", resource, body="{}", headers={"Content-Type": "application/json", "If-Match": posted["etag"]}))[0] == 415

    # DELETE -> 200, the participant leaves the room; the resource is gone.
    await publisher.send("stop")
    deleted = await publisher.wait(lambda e: e["event"] == "http" and e["method"] == "DELETE", "DELETE")
    assert deleted["status"] == 200
    await viewer.wait_for(lambda: bool(viewer.of_type(PeerLeft)), what="peer-left")
    assert viewer.of_type(PeerLeft)[0].peer == whip_peer
    assert (await _http("DELETE", resource))[0] == 404


async def test_whep_player_decodes_whip_publisher(whip_server: RunningServer, node_clients: Any) -> None:
    server = whip_server
    publisher = await node_clients("publish", f"{server.http_url}/whip/show")
    await publisher.wait(lambda e: e.get("state") == "connected", "WHIP connection")
    player = await node_clients("play", f"{server.http_url}/whep/show")
    posted = await player.wait(lambda e: e["event"] == "http" and e["method"] == "POST", "WHEP answer")
    assert posted["status"] == 201 and posted["location"].startswith("/whep/show/")
    await player.wait(lambda e: e["event"] == "frames" and e["count"] >= 30, "30 decoded frames")
    frames = player.of("frames")[-1]
    assert frames["size"] == [320, 240]
    stats = server.hub.media.stats() if server.hub.media else {}
    assert stats["transcoding"]["frames_to_decoder"] == 0 and stats["transcoding"]["encoder_calls"] == 0
    await player.send("stop")
    assert (await player.wait(lambda e: e["event"] == "http" and e["method"] == "DELETE", "DELETE"))["status"] == 200


async def test_whep_player_waits_for_a_publisher(whip_server: RunningServer, node_clients: Any) -> None:
    """A player that starts first gets the publisher's tracks when they appear (no renegotiation)."""
    server = whip_server
    player = await node_clients("play", f"{server.http_url}/whep/later")
    await player.wait(lambda e: e.get("state") == "connected", "WHEP connection")
    publisher = await node_clients("publish", f"{server.http_url}/whip/later")
    await publisher.wait(lambda e: e.get("state") == "connected", "WHIP connection")
    await player.wait(lambda e: e["event"] == "frames" and e["count"] >= 10, "10 decoded frames")


async def test_http_errors_without_media(whip_server: RunningServer) -> None:
    url = f"{whip_server.http_url}/whip/errors"
    status, headers, _ = await _http("OPTIONS", url)
    assert status == 204 and headers["Accept-Post"] == "application/sdp"
    assert "POST" in headers["Access-Control-Allow-Methods"]
    status, headers, text = await _http("POST", url, body=MINIMAL_OFFER, headers={"Content-Type": "text/plain"})
    assert status == 415 and headers["Accept-Post"] == "application/sdp" and "unsupported-media-type" in text
    status, _, text = await _http("POST", url, body="hello", headers={"Content-Type": "application/sdp"})
    assert status == 400 and "bad-sdp" in text
    # Well-formed, but nothing the SFU can use (no BUNDLE, no ICE): 422, and nobody stays in the room.
    status, _, text = await _http("POST", url, body=MINIMAL_OFFER, headers={"Content-Type": "application/sdp"})
    assert status == 422, text
    assert whip_server.hub.session_count == 0
    assert (await _http("PATCH", f"{url}/nope", body="", headers={"Content-Type": "application/trickle-ice-sdpfrag"}))[0] == 404


async def test_auth_failures(netns: str, start_server: ServerFactory, node_clients: Any) -> None:
    security = SecurityConfig(**{**{f: getattr(UNLIMITED, f) for f in UNLIMITED.__slots__}, "token_keys": (("k1", SECRET),)})
    server = await start_server(_config(security=security))
    url = f"{server.http_url}/whip/secure"
    sdp = {"Content-Type": "application/sdp"}

    def token(room: str, grants: set[str]) -> str:
        return create_token(SECRET, identity="enc-1", room=room, grants=grants, name="Encoder", now=time.time())

    status, headers, text = await _http("POST", url, body=MINIMAL_OFFER, headers=sdp)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer") and "unauthorized" in text
    bad = {**sdp, "Authorization": "Bearer not-a-jwt"}
    assert (await _http("POST", url, body=MINIMAL_OFFER, headers=bad))[0] == 401
    other_room = {**sdp, "Authorization": f"Bearer {token('elsewhere', {'publish'})}"}
    assert (await _http("POST", url, body=MINIMAL_OFFER, headers=other_room))[0] == 403
    no_grant = {**sdp, "Authorization": f"Bearer {token('secure', {'subscribe'})}"}
    status, _, text = await _http("POST", url, body=MINIMAL_OFFER, headers=no_grant)
    assert status == 403 and "publish" in text
    no_play = {**sdp, "Authorization": f"Bearer {token('secure', {'publish'})}"}
    assert (await _http("POST", f"{server.http_url}/whep/secure", body=MINIMAL_OFFER, headers=no_play))[0] == 403

    # The real client with a good token publishes, under the token's name.
    publisher = await node_clients("publish", url, token("secure", {"publish"}))
    await publisher.wait(lambda e: e.get("state") == "connected", "WHIP connection with a token")
    names = [live.session.name for live in server.hub.sessions()]
    assert names == ["Encoder"]


async def test_whep_plays_the_chosen_participant(whip_server: RunningServer, node_clients: Any) -> None:
    server = whip_server
    for _ in range(2):
        publisher = await node_clients("publish", f"{server.http_url}/whip/two")
        await publisher.wait(lambda e: e.get("state") == "connected", "WHIP connection")
    first, second = (live.session.peer_id for live in server.hub.sessions())
    status, _, text = await _http("POST", f"{server.http_url}/whep/two?track=nope", body=MINIMAL_OFFER,
                                  headers={"Content-Type": "application/sdp"})
    assert status == 404 and "unknown-track" in text, text
    player = await node_clients("play", f"{server.http_url}/whep/two?peer={second}")
    await player.wait(lambda e: e["event"] == "frames" and e["count"] >= 10, "10 decoded frames")
    media = server.hub.media
    assert media is not None
    watched = {t["peer"]: t["subscribers"] for t in media.stats()["per_track"] if t["kind"] == "video"}
    assert watched == {first: 0, second: 1}


async def test_a_node_without_sfu_answers_503_with_retry_after(start_server: ServerFactory) -> None:
    from tests.conftest import make_config

    server = await start_server(make_config())  # sfu=False: signaling only
    status, headers, text = await _http("POST", f"{server.http_url}/whip/none", body=MINIMAL_OFFER,
                                        headers={"Content-Type": "application/sdp"})
    assert status == 503 and int(headers["Retry-After"]) > 0 and "sfu-unavailable" in text
    assert server.hub.session_count == 0
