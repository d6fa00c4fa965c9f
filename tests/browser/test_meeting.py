"""A meeting as a team would hold it, in real Chromium through the SFU: access links, mute state,
active speakers, screen share, chat, devices (issue 17)."""

from __future__ import annotations

import asyncio

from signaling.auth import create_token
from tests.browser.conftest import (
    TOKEN_KEY,
    JoinFactory,
    Participant,
    Server,
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
        others = [ids[n] for n in ids if n != who.name]
        await asyncio.gather(*(who.wait_video_from(peer, 0.5) for peer in others))
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
    await alice.wait_video_from(ids["bob"], 0.5)


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
