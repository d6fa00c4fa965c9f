"""The WHEP player page (static/whep.html) in Chromium: it plays a WHIP publisher, and Chromium
decodes H.264 Main profile forwarded by the SFU (encoders such as OBS/FFmpeg send Main or
High; the Debian Chromium here offers Main but no High profile, so High is checked with aiortc
in tests/whip/test_h264.py), without joining.

The server, Chromium, the node WHIP client and the aiortc H.264 publisher all live in the
browser tests' loopback-only namespace (the aiortc publisher by moving this thread into it).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from sfu import aiortc_hooks
from tests.browser.conftest import CHROMIUM_FLAGS, PATIENCE_MS, Sandbox, Server, room_name
from tests.media.peers import rtc_configuration
from tests.sfu.sfu_testpeers import CountingAudioTrack
from tests.whip.conftest import DRIVER, NODE_DIR, enter_netns, node_available
from tests.whip.test_h264 import HighProfileTrack, _high_profile_preferences


async def _play(playwright: Any, sandbox: Sandbox, server: Server, room: str) -> tuple[Any, Any]:
    browser = await playwright.chromium.launch(
        executable_path=str(sandbox.chromium_executable()), args=CHROMIUM_FLAGS, timeout=60_000,
    )
    page = await browser.new_page()
    await page.goto(f"{server.base_url}/whep.html?room={room}", wait_until="commit")
    try:
        await page.wait_for_function(
            "() => window.whepPlayer && window.whepPlayer.frames > 30 && "
            "document.getElementById('video').videoWidth === 320",
            timeout=PATIENCE_MS,
        )
    except Exception as exc:
        state = await page.evaluate("() => ({error: whepPlayer.error, frames: whepPlayer.frames, "
                                    "status: document.getElementById('status').textContent, "
                                    "offered: (whepPlayer.pc.localDescription.sdp.match(/profile-level-id=\\w+/g) || []).join(' '), "
                                    "answer: whepPlayer.pc.remoteDescription.sdp.split('\\r\\n').filter(l => /rtpmap|fmtp|m=/.test(l)).join(' | ')})")
        await browser.close()
        raise AssertionError(f"the WHEP page did not play: {state}") from exc
    return browser, page


async def test_whep_page_plays_a_whip_publisher(playwright: Any, sandbox: Sandbox, app_server: Server) -> None:
    if sandbox.netns is None or not node_available():
        pytest.skip("needs the loopback-only namespace (root) and tests/node/node_modules")
    room = room_name("whep")
    argv = sandbox.wrap(["node", str(DRIVER), "publish", f"{app_server.base_url}/whip/{room}"])
    publisher = await asyncio.create_subprocess_exec(
        *argv, cwd=NODE_DIR, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        browser, page = await _play(playwright, sandbox, app_server, room)
        await page.click("#stop")
        await page.wait_for_function("() => document.getElementById('status').textContent === 'stopped'")
        await browser.close()
    finally:
        publisher.kill()
        await publisher.wait()


async def test_chromium_decodes_h264_main_over_whep(playwright: Any, sandbox: Sandbox, app_server: Server) -> None:
    if sandbox.netns is None:
        pytest.skip("needs the loopback-only namespace (root)")
    room = room_name("h264")
    aiortc_hooks.set_process_host_addresses(("127.0.0.1",))
    track = HighProfileTrack("main")
    try:
        with enter_netns(sandbox.netns):
            pc = RTCPeerConnection(rtc_configuration([]))
            _high_profile_preferences(pc.addTransceiver(track, "sendonly"), "4d001f")
            pc.addTransceiver(CountingAudioTrack(), "sendonly")
            await pc.setLocalDescription(await pc.createOffer())
            async with aiohttp.ClientSession() as http, http.post(
                f"{app_server.base_url}/whip/{room}", data=pc.localDescription.sdp,
                headers={"Content-Type": "application/sdp"},
            ) as response:
                assert response.status == 201, await response.text()
                answer = await response.text()
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        try:
            browser, page = await _play(playwright, sandbox, app_server, room)
            codec = await page.evaluate(
                """async () => { const stats = await whepPlayer.pc.getStats(); let found = null;
                   stats.forEach(s => { if (s.type === 'inbound-rtp' && s.kind === 'video') {
                     const c = stats.get(s.codecId); found = c && {mime: c.mimeType, fmtp: c.sdpFmtpLine,
                     decoded: s.framesDecoded}; } }); return found; }"""
            )
            await browser.close()
        finally:
            await pc.close()
    finally:
        aiortc_hooks.set_process_host_addresses(None)
    assert codec["mime"] == "video/H264" and "profile-level-id=4d" in codec["fmtp"], codec
    assert codec["decoded"] > 30 and track.profiles == {77}  # profile_idc 77: Main
