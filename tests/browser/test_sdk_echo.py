"""The Python SDK's echo bot (examples/echo_bot.py) and a Chromium page in one room: the page
hears its own fake microphone back through the SFU, about one second later."""

from __future__ import annotations

import asyncio
import sys
import time

from tests.browser.conftest import JoinFactory, Sandbox, Server, room_name
from tests.sdk.bots import EXAMPLES, Bot


async def test_echo_bot_sends_the_pages_audio_back(join: JoinFactory, app_server: Server, sandbox: Sandbox) -> None:
    room = room_name("echo")
    page = await join(room, "alice", mode="sfu")
    joined_at = time.time()
    url = app_server.base_url.replace("http://", "ws://") + "/ws"
    bot = Bot("echo_bot.py", "--url", url, "--room", room, "--ice-host", "127.0.0.1")
    bot.argv = sandbox.wrap([sys.executable, str(EXAMPLES / "echo_bot.py"), *bot.argv[2:]])
    await bot.start()
    try:
        await bot.wait_line("echoing in")
        await bot.wait_line("echoing " + str(await page.hook("peerId")))
        # The echo arrives: packets, decoded samples, and sound (the fake microphone's beeps).
        heard_at: float | None = None
        stats: dict[str, float] = {}
        async with asyncio.timeout(60):
            while True:
                stats = await page.page.evaluate("window.switchboard.audioStats()")
                if heard_at is None and stats["level"] > 0.01:
                    heard_at = time.time()
                if heard_at is not None and stats["packets"] > 100 and stats["samples"] > 48_000:
                    break
                await asyncio.sleep(0.05)
        print(f"echo: {stats}; first echoed sound {heard_at - joined_at:.2f} s after the page joined"
              " (includes the bot's start and its 1 s delay)")
    finally:
        await bot.stop()
    assert "Traceback" not in bot.output, bot.output
