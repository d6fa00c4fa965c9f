"""Simulcast under a weak subscriber: one throttled leg no longer degrades the room.

A native libwebrtc (@roamhq/wrtc) publisher sends three simulcast layers (240x135, 480x270,
960x540, as tests/interop/test_simulcast.py) to the in-process SFU; three wrtc subscribers ask
for ``high``. Every client reaches the SFU only through coturn (``iceTransportPolicy: "relay"``)
and coturn only through a user-space UDP relay (tests/udp_impair.py): a clean one for the
publisher and two subscribers, a throttled one (below the top layer's rate, with a short router
queue) for the third subscriber's leg.

Expected (docs/sfu.md, *Simulcast*): the weak subscriber's REMB falls, its slot goes down to the
low or medium layer (``track-layer`` says so and it decodes that size), the two others keep
decoding the top layer, and the publisher keeps sending its top layer (no min-REMB clamp for
simulcast tracks). Every wait is on an event, bounded by scaled patience; nothing is timed.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from signaling.core.config import IceConfig
from signaling.turn.credentials import make_credentials
from tests.conftest import LOOPBACK_PEERS, ServerFactory
from tests.interop.endpoints import MediaProcess, start_media_process
from tests.media.conftest import media_config
from tests.media.peers import LOOPBACK, MEDIA_PATIENCE
from tests.netem import Impairment
from tests.turn.conftest import Coturn
from tests.udp_impair import ImpairedUdpRelay

REPO = Path(__file__).resolve().parents[2]
NODE_MODULES = REPO / "tests" / "node" / "node_modules"
LOGS = REPO / "artifacts" / "logs" / "media"

SIZES = {"low": (240, 135), "medium": (480, 270), "high": (960, 540)}
#: The weak leg, SFU -> subscriber: 20 kB/s (160 kbps) carries the low layer (80 kbps cap) and
#: the audio, not the top layer (250 kbps); a router queue of ~0.6 s at that rate.
WEAK = Impairment(rate=20_000, queue=10)
#: libwebrtc turns its upper layers on (and, when its own uplink estimate dips on a loaded
#: machine, off and on again) as aiortc's slow REMB allows: waits on the top layer get longer.
RAMP = 6 * MEDIA_PATIENCE


@pytest.fixture
async def relays(coturn: Coturn) -> AsyncIterator[tuple[ImpairedUdpRelay, ImpairedUdpRelay]]:
    clean = await ImpairedUdpRelay((LOOPBACK, coturn.port), up=Impairment(), down=Impairment(), seed=1).start()
    weak = await ImpairedUdpRelay((LOOPBACK, coturn.port), up=Impairment(), down=WEAK, seed=2).start()
    yield clean, weak
    clean.close()
    weak.close()
    assert clean.errors == [] and weak.errors == []


@pytest.fixture
async def wrtc_clients() -> AsyncIterator[tuple[aiohttp.ClientSession, list[MediaProcess]]]:
    """The bridges' HTTP session and the clients started; closed (clients first) at teardown."""
    node = shutil.which("node")
    if node is None or not (NODE_MODULES / "@roamhq" / "wrtc").exists():
        pytest.skip("node or tests/node/node_modules missing (npm ci --prefix tests/node)")
    started: list[MediaProcess] = []
    async with aiohttp.ClientSession() as http:
        yield http, started
        for client in started:
            await client.close()


def ice_servers(coturn: Coturn, relay: ImpairedUdpRelay, user: str) -> str:
    credentials = make_credentials(coturn.secrets[0], user, 3600, time.time())
    return json.dumps([{
        "urls": f"turn:{LOOPBACK}:{relay.port}?transport=udp",
        "username": credentials.username,
        "credential": credentials.credential,
    }])


def video_track(client: MediaProcess) -> str | None:
    for m in client.messages:
        if m.get("type") == "track-published" and m["track"]["kind"] == "video":
            track: str = m["track"]["id"]
            return track
    return None


def decoded_size(client: MediaProcess) -> tuple[int, int] | None:
    sizes: dict[str, list[int]] = client.stats.get("sizes", {})
    for size in sizes.values():
        return (size[0], size[1])
    return None


def last_layer(client: MediaProcess, track: str) -> dict[str, Any] | None:
    told = [m for m in client.messages if m.get("type") == "track-layer" and m.get("track") == track]
    return told[-1] if told else None


def top_layer_bytes(publisher: MediaProcess) -> int:
    sent: dict[str, dict[str, int]] = publisher.stats.get("sent", {})
    return sent.get("f", {}).get("bytes", 0)


@pytest.mark.slow  # ~20 s; the default run covers simulcast with tests/interop/test_simulcast.py
@pytest.mark.timeout(400)
async def test_throttled_subscriber_falls_to_a_lower_layer_others_keep_high(
    start_server: ServerFactory, coturn: Coturn, relays: tuple[ImpairedUdpRelay, ImpairedUdpRelay],
    wrtc_clients: tuple[aiohttp.ClientSession, list[MediaProcess]],
) -> None:
    clean, weak = relays
    server = await start_server(media_config(IceConfig(host_addresses=(LOOPBACK,), allow_peers=LOOPBACK_PEERS)))
    node = shutil.which("node")
    assert node is not None
    script = str(REPO / "tests" / "node" / "wrtc_client.mjs")
    room = "simulcast-throttled"

    http, started = wrtc_clients

    async def wrtc(name: str, relay: ImpairedUdpRelay, *flags: str) -> MediaProcess:
        argv = [node, script, *flags, "--ice-servers", ice_servers(coturn, relay, name)]
        client = await start_media_process(
            argv, unix_path=None, room=room, name=name, log_path=LOGS / f"{room}-{name}.log", http=http,
            url=server.url,
        )
        started.append(client)
        return client

    publisher = await wrtc("pub", clean, "--publish", "--simulcast", "960x540")
    strong = [await wrtc(f"strong{i}", clean, "--subscribe") for i in range(2)]
    slow = await wrtc("weak", weak, "--subscribe")
    await slow.wait(lambda s: video_track(s) is not None, MEDIA_PATIENCE, "track-published")
    track = video_track(slow)
    assert track is not None
    for sub in strong:
        await sub.wait(lambda s: decoded_size(s) == SIZES["high"], RAMP, "the top layer decoded")
    # The weak leg cannot carry the top layer: its slot goes down, and the subscriber decodes it.
    lower = {"low", "medium"}
    await slow.wait(
        lambda s: (m := last_layer(s, track)) is not None and m["quality"] in lower and m["requested"] == "high",
        MEDIA_PATIENCE, "track-layer low or medium",
    )
    await slow.wait(lambda s: decoded_size(s) in {SIZES[q] for q in lower}, MEDIA_PATIENCE,
                    "a lower layer decoded")
    fell_to = decoded_size(slow)
    # Meanwhile the publisher keeps sending its top layer, and the others keep decoding it.
    sent, frames = top_layer_bytes(publisher), [s.video_frames() for s in strong]
    await publisher.wait(lambda p: top_layer_bytes(p) > sent + 100_000, RAMP, "100 kB more of the top layer sent")
    for sub, before in zip(strong, frames, strict=True):
        await sub.wait(lambda s, b=before: s.video_frames() > b + 30 and decoded_size(s) == SIZES["high"],
                       RAMP, "30 more frames, at the top layer's size")
    down = weak.stats()[1]
    print(f"weak leg fell to {fell_to}; weak relay down: {down}; publisher sent {publisher.stats.get('sent')}")
    # The throttle did bite (a test that cannot fail is a defect), the clean path did not.
    assert down.overflow > 0, down
    assert clean.stats()[1].dropped == 0, clean.stats()
    for client in (publisher, *strong, slow):
        assert not client.errors(), client.errors()
