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
