"""A meeting as a team would hold it, in real Chromium through the SFU: access links, mute state,
active speakers, screen share, chat, devices (issue 17)."""

from __future__ import annotations

import asyncio
import math
import random
import struct
import wave
from pathlib import Path

from signaling.core.auth import create_token
from tests.browser.conftest import (
    TOKEN_KEY,
    JoinFactory,
    Participant,
    Server,
    assert_no_stall_since,
    room_name,
    screenshot_path,
)


def access_link(server: Server, room: str, name: str, *, ttl: int = 600) -> str:
    token = create_token(TOKEN_KEY, identity=name, room=room, name=name, ttl=ttl)
    return f"{server.base_url}/?token={token}"


async def test_access_links_three_participants_and_clear_refusals(join: JoinFactory, token_server: Server) -> None:
    room = room_name("tok")
    # Joined by the link alone: room and name come from the token; the token leaves the URL.
    alice = await join("", "alice", server=token_server, url=access_link(token_server, room, "Alice"))
    bob = await join("", "bob", server=token_server, url=access_link(token_server, room, "Bob"))
    carol = await join("", "carol", server=token_server, url=access_link(token_server, room, "Carol"))
    ids = {p.name: await p.hook("peerId") for p in (alice, bob, carol)}
    for who in (alice, bob, carol):
        assert await who.hook("room") == room
        assert "token=" not in who.page.url
        await who.wait_for("sb.tiles.length === 2", what="two others")
    # Media through the SFU (one direction per pair is enough here; test_sfu covers the rest).
    await asyncio.gather(alice.wait_video_from(ids["bob"], 0.3), bob.wait_video_from(ids["carol"], 0.3),
                         carol.wait_video_from(ids["alice"], 0.3))
    names = sorted(t["name"] for t in await alice.hook("tiles"))
    assert names == ["Bob", "Carol"]
    await alice.page.screenshot(path=screenshot_path("token-deep-link-3.png"))

    # A fresh tab for the refusals (a tab keeps its token in sessionStorage): each one a clear
    # sentence and no "Try again".
    page = await carol.browser.new_page()
    carol = Participant("carol-tab", carol.browser, page)
    await page.goto(token_server.url(room=room, name="nobody", autojoin="1"))
    await carol.wait_for("sb.notice !== null && sb.state === 'closed'", what="missing-token notice")
    assert "needs an access link" in await carol.hook("notice")
    assert not await page.get_by_role("button", name="Try again").is_visible()

    await page.goto(access_link(token_server, room, "Late", ttl=-120))
    await carol.wait_for("sb.notice !== null", what="expired notice")
    assert "expired" in await carol.hook("notice")

    other = create_token(TOKEN_KEY, identity="x", room="another-room", ttl=600)
    await page.goto(f"{token_server.base_url}/?room={room}&autojoin=1&token={other}")
    await carol.wait_for("sb.notice !== null", what="other-room notice")
    assert "another-room" in await carol.hook("notice")
    await page.screenshot(path=screenshot_path("token-other-room.png"))
    # The two who stayed are unaffected.
    await alice.wait_video_from(ids["bob"], 0.3)


async def admin_mute(server: Server, peer: str, track: str, muted: bool) -> None:
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    async with server.http.post(
        f"http://switchboard/admin/participants/{peer}/mute", json={"track": track, "muted": muted}, headers=headers
    ) as response:
        assert response.status == 200, await response.text()


def tile_of(peer: str) -> str:
    """JS expression: the tile of ``peer`` in the page's hook."""
    return f"sb.tiles.find(t => t.peer === {peer!r})"


async def test_mute_state_operator_mute_and_screen_share_seen_by_others(join: JoinFactory, app_server: Server) -> None:
    room = room_name("mute")
    alice = await join(room, "alice", mode="sfu")
    bob = await join(room, "bob", mode="sfu")
    carol = await join(room, "carol", mode="sfu")
    ids = {p.name: await p.hook("peerId") for p in (alice, bob, carol)}
    others = (bob, carol)
    await asyncio.gather(*(who.wait_video_from(ids["alice"], 0.5) for who in others))
    for who in others:
        await who.wait_for(f"{tile_of(ids['alice'])}.cam === 'on' && {tile_of(ids['alice'])}.mic === 'on'", what="alice on")

    # Self-mute: the others see the avatar with a reason and the muted icon, not a black tile.
    await alice.page.get_by_role("button", name="Mute").click()
    await alice.page.get_by_role("button", name="Stop video").click()
    for who in others:
        await who.wait_for(
            f"{tile_of(ids['alice'])}.mic === 'muted' && {tile_of(ids['alice'])}.cam === 'off'"
            f" && !{tile_of(ids['alice'])}.hasVideo",
            what="alice muted, camera off",
        )
        tile = who.page.locator(f'#grid .tile[data-peer="{ids["alice"]}"]')
        assert await tile.locator(".tile-note").inner_text() == "Camera off"
        assert await tile.locator(".mic-state").get_attribute("aria-label") == "Microphone muted"
    await bob.page.screenshot(path=screenshot_path("mute-seen-by-others.png"))
    await alice.page.get_by_role("button", name="Unmute").click()
    await alice.page.get_by_role("button", name="Start video").click()
    for who in others:
        await who.wait_for(
            f"{tile_of(ids['alice'])}.mic === 'on' && {tile_of(ids['alice'])}.cam === 'on' && {tile_of(ids['alice'])}.hasVideo",
            what="alice back",
        )

    # Operator mute of bob's microphone: everyone sees it, bob is told.
    audio = next(t for t in await bob.hook("localTracks") if t["kind"] == "audio")
    await admin_mute(app_server, ids["bob"], audio["id"], True)
    for who in (alice, carol):
        await who.wait_for(f"{tile_of(ids['bob'])}.mic === 'operator-muted'", what="bob muted by the host")
    await bob.wait_for("sb.notice && sb.notice.includes('host muted your microphone') && sb.local.mic === 'operator-muted'",
                       what="bob told")
    await bob.page.screenshot(path=screenshot_path("operator-muted-publisher.png"))
    await admin_mute(app_server, ids["bob"], audio["id"], False)
    await alice.wait_for(f"{tile_of(ids['bob'])}.mic === 'on'", what="bob unmuted by the host")

    # Screen share: a second video track, shown large for the others; stopping removes it.
    await carol.page.get_by_role("button", name="Share screen").click()
    for who in (alice, bob):
        await who.wait_for(f"sb.stage.visible && sb.stage.peer === {ids['carol']!r} && sb.stage.videoWidth > 0",
                           what="carol's screen on stage")
        assert "carol is sharing" in (await who.hook("stage"))["label"]
        # Carol's camera tile is still her camera.
        await who.wait_video_from(ids["carol"], 0.3)
    await alice.page.screenshot(path=screenshot_path("screen-share.png"))
    await carol.page.get_by_role("button", name="Stop sharing").click()
    for who in (alice, bob):
        await who.wait_for("!sb.stage.visible", what="stage gone")


def write_wav(path: Path, amplitude: float, seconds: float = 8.0, rate: int = 48_000) -> Path:
    """16-bit mono PCM for Chromium's fake microphone: speech-like "syllables" (a changing pitch
    with harmonics, 180 ms on, 40 ms off) at ``amplitude`` (0 = silence). A steady tone would be
    learnt as noise by the browser's noise suppression within seconds and stop counting as voice."""
    rng = random.Random(17)
    samples: list[int] = []
    syllable, gap = int(0.18 * rate), int(0.04 * rate)
    while len(samples) < seconds * rate:
        f0 = rng.uniform(120, 300)
        for i in range(syllable):
            t = i / rate
            envelope = math.sin(math.pi * i / syllable) ** 2
            pitch = f0 * (1 + 0.05 * math.sin(2 * math.pi * 5 * t))
            value = sum(math.sin(2 * math.pi * pitch * h * t) / h for h in range(1, 6)) / 2.3
            samples.append(int(amplitude * 32767 * envelope * value))
        samples.extend([0] * gap)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(struct.pack(f"<{len(samples)}h", *samples))
    return path


async def test_speaker_highlight_and_chat_once_in_order_across_a_cut(
    join: JoinFactory, app_server: Server, tmp_path: Path
) -> None:
    loud = write_wav(tmp_path / "loud.wav", 0.6)
    silent = write_wav(tmp_path / "silent.wav", 0.0)
    room = room_name("talk")
    alice = await join(room, "alice", mode="sfu", extra_flags=[f"--use-file-for-fake-audio-capture={loud}"])
    bob = await join(room, "bob", mode="sfu", extra_flags=[f"--use-file-for-fake-audio-capture={silent}"])
    carol = await join(room, "carol", mode="sfu", extra_flags=[f"--use-file-for-fake-audio-capture={silent}"])
    ids = {p.name: await p.hook("peerId") for p in (alice, bob, carol)}

    # The SFU reads audio levels: alice (loud) is highlighted for everyone, nobody else is.
    for who in (bob, carol):
        await who.wait_for(f"{tile_of(ids['alice'])} && {tile_of(ids['alice'])}.speaking", what="alice speaking")
        assert [s["peer"] for s in await who.hook("speakers")] == [ids["alice"]]
        assert not any(t["speaking"] for t in await who.hook("tiles") if t["peer"] != ids["alice"])
    await alice.wait_for("sb.local.speaking", what="alice sees herself speaking")
    await bob.page.screenshot(path=screenshot_path("active-speaker.png"))
    # She mutes: the highlight goes (a muted track never speaks).
    await alice.page.get_by_role("button", name="Mute").click()
    for who in (bob, carol):
        await who.wait_for(f"!{tile_of(ids['alice'])}.speaking && sb.speakers.length === 0", what="nobody speaking")

    # Chat: messages arrive once and in order, also those sent while alice's signaling is cut.
    for who in (alice, bob, carol):
        await who.page.get_by_role("button", name="Chat").click()

    async def say(who: Participant, text: str) -> None:
        await who.page.get_by_role("textbox", name="Message").fill(text)
        await who.page.get_by_role("textbox", name="Message").press("Enter")

    await say(alice, "a1")
    await say(bob, "b1")
    await say(alice, "a2")
    mark = await alice.now()
    await app_server.disconnect(await alice.hook("sessionId"))
    await say(alice, "a3")  # queued while reconnecting, sent after the resume
    await say(bob, "b2")  # waits in alice's replay buffer
    await say(alice, "a4")
    await alice.wait_for(f"sb.stateLog.some(e => e.t > {mark} && e.state === 'badge:resumed')", what="resumed")
    await say(carol, "c1")
    expected_from_alice = ["a1", "a2", "a3", "a4"]
    for who in (bob, carol):
        await who.wait_for("sb.chat.filter(m => m.text === 'c1').length === 1 && sb.chat.length >= 6", what="chat")
    for who in (alice, bob, carol):
        await who.wait_for("sb.chat.some(m => m.text === 'c1')", what="c1")
        chat = await who.hook("chat")
        texts = [m["text"] for m in chat]
        assert len(texts) == len(set(texts)), f"{who.name}: duplicates {texts}"
        assert [t for t in texts if t.startswith("a")] == expected_from_alice, texts
        assert [t for t in texts if t.startswith("b")] == ["b1", "b2"], texts
        names = {m["text"]: ("me" if m["mine"] else m["name"]) for m in chat}
        assert names["c1"] == ("me" if who is carol else "carol")
    await carol.page.screenshot(path=screenshot_path("chat.png"))


async def test_devices_autoplay_equal_names_and_kick_reason(
    join: JoinFactory, app_server: Server, tmp_path: Path
) -> None:
    room = room_name("dev")
    voice = write_wav(tmp_path / "voice.wav", 0.6)
    # Three fake cameras (Chromium's second one is a depth camera, Y16, which no encoder takes:
    # fake_device_0 and fake_device_2 are the usable ones). The pre-join preview: picture,
    # device choice, microphone level.
    sam = await join(
        room, "Sam", wait_connected=False, url=app_server.url(room=room, name="Sam", mode="sfu"),
        drop_flags=("--use-fake-device-for-media-stream",),
        extra_flags=["--use-fake-device-for-media-stream=device-count=3", f"--use-file-for-fake-audio-capture={voice}"],
    )
    await sam.page.get_by_role("button", name="Check camera and microphone").click()
    await sam.wait_for("sb.micLevel > 0.02", what="microphone level moves")
    cameras = sam.page.locator("#cam-select option")
    await cameras.nth(2).wait_for(state="attached")
    second = await cameras.nth(2).get_attribute("value")
    assert second
    await sam.page.locator("#cam-select").select_option(second)
    await sam.page.wait_for_function("() => document.getElementById('preview-video').videoWidth > 0")
    await sam.page.screenshot(path=screenshot_path("prejoin-preview.png"))
    await sam.page.get_by_role("button", name="Join").click()
    await sam.wait_for("sb.state === 'connected' && sb.peerId", what="joined")
    video = next(t for t in await sam.hook("localTracks") if t["kind"] == "video")
    assert video["deviceId"] == second

    # A second "Sam", receive-only, without the autoplay flag: the page asks for a click instead
    # of showing a black tile, and the two Sams are told apart.
    other = await join(room, "Sam", mode="sfu", cam="0", mic="0", drop_flags=("--autoplay-policy=no-user-gesture-required",))
    sam_id, other_id = await sam.hook("peerId"), await other.hook("peerId")
    await sam.wait_for(f"{tile_of(other_id)} && {tile_of(other_id)}.name === 'Sam (2)'", what="Sam (2)")
    assert (await other.hook("tiles"))[0]["name"] == "Sam (2)"
    await other.wait_for(f"sb.autoplayBlocked && {tile_of(sam_id)}.playOverlay", what="click-to-start overlay")
    await other.page.screenshot(path=screenshot_path("autoplay-overlay.png"))
    await other.page.get_by_role("button", name="Click to start audio and video").click()
    await other.wait_video_from(sam_id, 1.0)
    assert not (await other.hook("autoplayBlocked"))
    # Receive-only: the badge still has a media RTT (from the subscriber connection).
    await other.wait_for("sb.rttMs !== null && sb.badgeText.includes('RTT')", what="receive-only RTT")

    # Switching the camera during the call: replaceTrack, no renegotiation, frames keep flowing.
    mark = await other.now()
    await sam.page.get_by_role("button", name="Devices").click()
    first = await sam.page.locator("#call-cam-select option").nth(0).get_attribute("value")
    assert first and first != second
    await sam.page.locator("#call-cam-select").select_option(first)
    await sam.wait_for("sb.deviceSwitches === 1", what="camera switched")
    assert next(t for t in await sam.hook("localTracks") if t["kind"] == "video")["deviceId"] == first
    await other.wait_video_from(sam_id, 2.0)
    await assert_no_stall_since([(other, sam_id, mark)])
    assert "device:video" in [e["state"] for e in await sam.hook("stateLog")]

    # Kicked with a reason: the page says why, and offers no "Try again".
    headers = {"Authorization": f"Bearer {app_server.admin_token}"}
    async with app_server.http.post(
        f"http://switchboard/admin/participants/{other_id}/kick", json={"reason": "disruptive behaviour"}, headers=headers
    ) as response:
        assert response.status == 200
    await other.wait_for("sb.state === 'closed' && sb.notice !== null", what="kicked notice")
    assert await other.hook("notice") == "You were removed from the room: disruptive behaviour."
    assert not await other.page.get_by_role("button", name="Try again").is_visible()


async def test_reload_mid_call_resumes_the_session(join: JoinFactory) -> None:
    room = room_name("reload")
    alice = await join(room, "alice", mode="sfu")
    bob = await join(room, "bob", mode="sfu")
    alice_id, bob_id = await alice.hook("peerId"), await bob.hook("peerId")
    session = await alice.hook("sessionId")
    await asyncio.gather(alice.wait_video_from(bob_id, 0.5), bob.wait_video_from(alice_id, 0.5))
    # Mark bob's tile of alice: a leave and a join would replace it with a new element.
    await bob.page.evaluate(f"document.querySelector('#grid .tile[data-peer=\"{alice_id}\"]').dataset.mark = 'before'")
    await alice.page.reload()
    await alice.wait_for("sb.state === 'connected' && sb.restored", what="restored after the reload")
    assert (await alice.hook("peerId"), await alice.hook("sessionId")) == (alice_id, session)
    assert await alice.page.locator("#lobby").is_hidden(), "a reload must not land in the lobby"
    # Media redone on both sides; bob never saw alice leave or join again.
    await asyncio.gather(alice.wait_video_from(bob_id, 0.5), bob.wait_video_from(alice_id, 0.5))
    assert [t["peer"] for t in await bob.hook("tiles")] == [alice_id]
    assert await bob.page.locator(f'#grid .tile[data-peer="{alice_id}"][data-mark="before"]').count() == 1
