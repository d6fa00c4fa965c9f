"""The Room API against a real server and SFU: raw RTP, data, mute, kick and refused tokens."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncIterator

import aiohttp
import pytest

from signaling.core.auth import create_token
from switchboard import (
    ConnectError,
    DataReceived,
    Disconnected,
    MediaReconnected,
    PcmSource,
    Room,
    RoomClosed,
    RoomError,
    RoomOptions,
    TrackMuted,
    TrackPublished,
    TrackSubscribed,
)
from tests.conftest import UNIT, UNLIMITED, ServerFactory
from tests.faultproxy import FaultProxy
from tests.media.conftest import ADMIN_TOKEN, media_config
from tests.media.peers import MEDIA_PATIENCE, HeldBackoff
from tests.sdk.conftest import LOOPBACK_ICE

KEY = "sdk-test-key-" + "k" * 32


async def _ticks() -> AsyncIterator[bytes]:
    level = 8000
    while True:
        yield (level.to_bytes(2, "little", signed=True) + (-level).to_bytes(2, "little", signed=True)) * 480


async def _next(events: AsyncIterator[object], kind: type) -> object:
    async with asyncio.timeout(MEDIA_PATIENCE):
        async for event in events:
            if isinstance(event, kind):
                return event
    raise AssertionError(f"no {kind.__name__}")


async def _drain(events: AsyncIterator[object], into: list[object]) -> None:
    async with asyncio.timeout(MEDIA_PATIENCE):
        async for event in events:
            into.append(event)


async def test_raw_rtp_data_messages_and_mute(start_server: ServerFactory) -> None:
    server = await start_server(media_config())
    speaker = await Room.connect(server.url, room="raw", name="speaker", ice=LOOPBACK_ICE, auto_subscribe=False)
    forwarder = await Room.connect(server.url, room="raw", name="forwarder", ice=LOOPBACK_ICE, decode=False)
    events = forwarder.events()
    try:
        publication = await speaker.publish(PcmSource.from_chunks(_ticks()))
        published = await _next(events, TrackPublished)
        assert isinstance(published, TrackPublished) and published.track.id == publication.id
        with pytest.raises(RoomError, match="does not decode"):
            forwarder.subscribe(published.track)
        packets = []
        async with asyncio.timeout(MEDIA_PATIENCE):
            async for packet in forwarder.rtp(published.track):
                packets.append(packet)
                if len(packets) == 50:
                    break
        assert {(p.mime_type.lower(), p.clock_rate) for p in packets} == {("audio/opus", 48000)}
        assert all(p.audio_level is not None for p in packets)
        steps = {(b.sequence_number - a.sequence_number) % 65536 for a, b in itertools.pairwise(packets)}
        assert steps == {1}, steps  # in order, nothing lost on loopback
        # Data to one participant, and a mute, reach it as events.
        await speaker.send_data({"text": "hi"}, topic="chat", to=[forwarder.local_peer])
        data = await _next(events, DataReceived)
        assert data == DataReceived(speaker.local_peer, "chat", {"text": "hi"}, (forwarder.local_peer,))
        await speaker.set_muted(publication, True)
        muted = await _next(events, TrackMuted)
        assert isinstance(muted, TrackMuted) and muted.muted and not muted.by_operator
    finally:
        await speaker.close()
        await forwarder.close()
    with pytest.raises(Disconnected):
        await speaker.send_data({}, topic="chat")


async def test_a_kick_ends_the_room_with_a_clear_exception(start_server: ServerFactory) -> None:
    security = dataclasses.replace(UNLIMITED, token_keys=(("k1", KEY),))
    server = await start_server(media_config(security=security))

    with pytest.raises(ConnectError) as refused:
        await Room.connect(server.url, room="kick", name="nobody", ice=LOOPBACK_ICE)
    assert refused.value.code == 4001

    def token() -> str:
        return create_token(KEY, identity="bot", room="kick", grants={"publish", "subscribe", "signal", "data"})

    room = await Room.connect(server.url, room="kick", name="bot", token_provider=token, ice=LOOPBACK_ICE)
    events = room.events()
    async with aiohttp.ClientSession() as http, http.post(
        f"{server.http_url}/admin/participants/{room.local_peer}/kick",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ) as response:
        assert response.status == 200, await response.text()
    seen: list[object] = []
    with pytest.raises(Disconnected) as ended:
        await _drain(events, seen)
    assert ended.value.code == 4006 and ended.value.kicked
    assert isinstance(seen[-1], RoomClosed) and seen[-1].code == 4006
    with pytest.raises(Disconnected):
        await room.wait_closed()
    await room.close()  # idempotent after the end


async def test_a_lost_session_rejoins_and_publishes_again(start_server: ServerFactory) -> None:
    """Signaling gone past the grace period: a new session, new connections, the same tracks."""
    server = await start_server(media_config())
    proxy = await FaultProxy(server.runner.addresses[0][1]).start()
    grace = 100 * UNIT  # make_config's session grace period
    bot = await Room.connect(proxy.url, room="again", name="bot", ice=LOOPBACK_ICE, auto_subscribe=False,
                             options=RoomOptions(backoff=HeldBackoff(grace * 1.5)))
    listener = await Room.connect(server.url, room="again", name="listener", ice=LOOPBACK_ICE)
    bot_events, events = bot.events(), listener.events()
    try:
        publication = await bot.publish(PcmSource.from_chunks(_ticks()))
        first = await _next(events, TrackSubscribed)
        assert isinstance(first, TrackSubscribed)
        await first.stream.recv()
        old_peer = bot.local_peer
        proxy.cut()
        reconnected = await _next(bot_events, MediaReconnected)
        assert isinstance(reconnected, MediaReconnected) and reconnected.reason == "rejoin"
        assert reconnected.peer == bot.local_peer != old_peer and bot.media_reconnects == 1
        again = await _next(events, TrackSubscribed)
        assert isinstance(again, TrackSubscribed)
        assert again.track.peer == bot.local_peer and again.track.id == publication.id
        await again.stream.recv()  # media flows on the new connections
    finally:
        await bot.close()
        await listener.close()
        await proxy.close()
