"""The bundled page in real browsers, without the SFU: membership, direct (p2p) calls over
``signal``, resume after the signaling socket is cut, leave, and the messages a person sees."""

from __future__ import annotations

import asyncio
import json

from tests.browser.conftest import (
    JoinFactory,
    Participant,
    Server,
    assert_no_stall_since,
    room_name,
    screenshot_path,
)


async def tiles_exactly(participant: Participant, expected: dict[str, str]) -> None:
    """The participant shows one tile per expected peer (id → name) and nothing else."""
    ids = json.dumps(sorted(expected))
    await participant.wait_for(
        f"JSON.stringify(sb.tiles.map(t => t.peer).sort()) === JSON.stringify({ids})"
        f" && sb.tileElements === {len(expected)}",
        what=f"tiles {expected}",
    )
    tiles = await participant.hook("tiles")
    assert {t["peer"]: t["name"] for t in tiles} == expected


async def test_two_browsers_see_each_other(join: JoinFactory) -> None:
    room = room_name("see")
    alice = await join(room, "alice", mode="auto")
    bob = await join(room, "bob", mode="auto")
    alice_id, bob_id = await alice.hook("peerId"), await bob.hook("peerId")
    await tiles_exactly(alice, {bob_id: "bob"})
    await tiles_exactly(bob, {alice_id: "alice"})
    # What a person sees: the other's name on a tile, a connected badge.
    await alice.page.locator("#grid .tile:not(.local) .name", has_text="bob").wait_for()
    await bob.page.locator("#grid .tile:not(.local) .name", has_text="alice").wait_for()
    assert await alice.page.locator("#badge").get_attribute("data-state") == "connected"


async def test_p2p_call_plays_remote_video(join: JoinFactory) -> None:
    room = room_name("p2p")
    alice = await join(room, "alice")
    bob = await join(room, "bob")
    alice_id, bob_id = await alice.hook("peerId"), await bob.hook("peerId")
    await asyncio.gather(alice.wait_video_from(bob_id), bob.wait_video_from(alice_id))
    stats = (await alice.hook("frameStats"))[bob_id]
    assert stats["videoWidth"] > 0 and stats["videoHeight"] > 0
    assert not stats["paused"]
    # Stats on demand: the tile's panel fills in with resolution and bitrate.
    tile = alice.page.locator(f'#grid .tile[data-peer="{bob_id}"]')
    await tile.get_by_role("button", name="Stats for bob").click()
    await tile.locator(".stats dd", has_text="kbps").first.wait_for()
    await tile.locator(".stats dd", has_text="fps").first.wait_for()  # resolution and frame rate


async def test_signaling_cut_resumes_without_media_interruption(join: JoinFactory, app_server: Server) -> None:
    room = room_name("resume")
    alice = await join(room, "alice")
    bob = await join(room, "bob")
    alice_id, bob_id = await alice.hook("peerId"), await bob.hook("peerId")
    await asyncio.gather(alice.wait_video_from(bob_id), bob.wait_video_from(alice_id))
    session = await alice.hook("sessionId")
    mark_alice, mark_bob = await alice.now(), await bob.now()

    await app_server.disconnect(session)

    await alice.wait_for(
        f"sb.stateLog.some(e => e.t > {mark_alice} && e.state === 'badge:reconnecting')"
        f" && sb.stateLog.some(e => e.t > {mark_alice} && e.state === 'badge:resumed')",
        what="badge: reconnecting, then resumed",
    )
    log = [e["state"] for e in await alice.hook("stateLog") if e["t"] > mark_alice]
    assert log.index("badge:reconnecting") < log.index("badge:resumed"), log
    assert "rejoined" not in log, log
    assert await alice.hook("peerId") == alice_id
    assert await alice.hook("sessionId") == session
    assert await alice.hook("resumes") == 1
    # Media never depended on signaling: the video kept playing on both sides...
    await asyncio.gather(alice.wait_video_from(bob_id, 2.0), bob.wait_video_from(alice_id, 2.0))
    await assert_no_stall_since([(alice, bob_id, mark_alice), (bob, alice_id, mark_bob)])
    # ...and nobody appeared twice or went missing.
    await tiles_exactly(alice, {bob_id: "bob"})
    await tiles_exactly(bob, {alice_id: "alice"})
    members = await app_server.admin("GET", f"/admin/rooms/{room}")
    assert sorted(p["peer"] for p in members["participants"]) == sorted([alice_id, bob_id])


async def test_three_participants_screenshot_and_leave(join: JoinFactory) -> None:
    room = room_name("three")
    alice = await join(room, "alice")
    bob = await join(room, "bob")
    carol = await join(room, "carol", viewport={"width": 390, "height": 844})  # a phone
    ids = {p.name: await p.hook("peerId") for p in (alice, bob, carol)}
    everyone = (alice, bob, carol)
    await asyncio.gather(*(
        p.wait_video_from(ids[other.name], 0.5) for p in everyone for other in everyone if other is not p
    ))
    await alice.page.screenshot(path=screenshot_path("room-3-participants.png"))
    await carol.page.screenshot(path=screenshot_path("room-3-participants-phone.png"))

    await carol.page.get_by_role("button", name="Leave").click()

    await tiles_exactly(alice, {ids["bob"]: "bob"})
    await tiles_exactly(bob, {ids["alice"]: "alice"})
    await carol.wait_for("sb.state === 'closed'", what="carol closed")
    assert await carol.page.locator("#lobby").is_visible()
    assert await carol.hook("notice") is None, "leaving is not an error"
    # The two who stayed still see each other's video.
    await asyncio.gather(alice.wait_video_from(ids["bob"], 0.5), bob.wait_video_from(ids["alice"], 0.5))


async def test_denied_camera_joins_without_media_and_says_why(join: JoinFactory) -> None:
    room = room_name("denied")
    # Without --use-fake-ui-for-media-stream headless Chromium denies the permission prompt.
    dana = await join(room, "dana", fake_ui=False)
    await dana.wait_for("sb.notice !== null", what="a notice")
    notice = await dana.hook("notice")
    assert "denied" in notice
    assert await dana.page.get_by_role("alert").filter(has_text="denied").is_visible()
    assert await dana.page.get_by_role("button", name="Try again").is_visible()
    assert await dana.page.get_by_role("button", name="Mute").is_disabled()
    assert await dana.hook("state") == "connected"


async def test_kicked_participant_sees_why_and_stays_out(join: JoinFactory, app_server: Server) -> None:
    room = room_name("kick")
    erin = await join(room, "erin")
    peer = await erin.hook("peerId")
    mark = await erin.now()
    await app_server.kick(peer)
    await erin.wait_for("sb.state === 'closed' && sb.notice !== null", what="closed with a notice")
    assert "removed" in await erin.hook("notice")
    assert await erin.page.locator("#badge").get_attribute("data-state") == "closed"
    log = [e["state"] for e in await erin.hook("stateLog") if e["t"] > mark]
    assert "reconnecting" not in log, f"4006 must not be retried: {log}"
    rooms = await app_server.admin("GET", "/admin/rooms")
    assert room not in {r["room"] for r in rooms["rooms"]}


async def test_offline_detected_said_and_recovered(join: JoinFactory) -> None:
    room = room_name("offline")
    fay = await join(room, "fay")
    mark = await fay.now()
    await fay.page.context.set_offline(True)
    # Nothing arrives any more: the client notices from the announced heartbeat timeout
    # (HEARTBEAT_TIMEOUT) and says so.
    await fay.wait_for("sb.badge === 'reconnecting' && sb.notice !== null", what="reconnecting, with a notice")
    assert "offline" in await fay.hook("notice")
    assert await fay.page.get_by_role("alert").filter(has_text="offline").is_visible()
    log = await fay.hook("stateLog")
    assert any(e["t"] > mark and "server heartbeat timeout" in (e["detail"] or "") for e in log), log
    await fay.page.context.set_offline(False)
    await fay.wait_for("sb.state === 'connected' && sb.notice === null", what="back, notice gone")
