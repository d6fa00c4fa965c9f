"""Real Chromium answers the SFU's subscriber offer for a full room, and the answer fits.

The SDP limits (``signaling/core/media_limits.py``) are sized from Chromium's answer: 531 bytes and
17 lines per m-section, budgeted at 800 bytes and 26 lines. This test keeps that figure honest:
an SFU (in this process) produces its real offer for 99 publishers x (camera + microphone),
Chromium answers it, and the answer must stay within the per-section budget, pass the frame
limit, the schema and the line check at their defaults, and be accepted by the SFU.
"""

from __future__ import annotations

import re

from aiortc import AudioStreamTrack, RTCPeerConnection, VideoStreamTrack
from playwright.async_api import Playwright

from sfu import aiortc_hooks
from sfu.config import SfuConfig
from sfu.service import Sfu
from signaling.core import media_limits
from tests.browser.conftest import CHROMIUM_FLAGS, Sandbox
from tests.sfu.sfu_testpeers import LOOPBACK, LOOPBACK_PEERS, client_configuration
from tests.unit.test_media_limits import accepted

PUBLISHERS = 99

ANSWER_JS = """async (sdp) => {
  const pc = new RTCPeerConnection({iceServers: []});
  await pc.setRemoteDescription({type: 'offer', sdp});
  await pc.setLocalDescription(await pc.createAnswer());
  const answer = pc.localDescription.sdp;
  pc.close();
  return answer;
}"""


async def full_room_offer(sfu: Sfu, log: list[tuple[str, dict[str, str]]]) -> str:
    aiortc_hooks.set_process_host_addresses(LOOPBACK)
    try:
        pc = RTCPeerConnection(client_configuration())
        pc.addTransceiver(AudioStreamTrack(), "sendonly")
        pc.addTransceiver(VideoStreamTrack(), "sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        template = pc.localDescription.sdp
        await pc.close()
        for n in range(PUBLISHERS):
            await sfu.join("room", f"p{n}", subscribe=False)
            offer = re.sub(r"a=msid:(\S+) (\S+)", rf"a=msid:s{n} t{n}-\2", template)
            await sfu.publish("room", f"p{n}", offer)
        await sfu.join("room", "sub")
    finally:
        aiortc_hooks.set_process_host_addresses(None)
    [offer] = [m["sdp"] for peer, m in log if peer == "sub" and m["type"] == "subscriber-offer"]
    return offer


async def test_chromium_answers_a_full_room_within_the_limits(playwright: Playwright, sandbox: Sandbox) -> None:
    log: list[tuple[str, dict[str, str]]] = []
    sfu = Sfu(SfuConfig(host_addresses=LOOPBACK, ice_allow_peers=LOOPBACK_PEERS), lambda p, m: log.append((p, m)))
    browser = await playwright.chromium.launch(executable_path=str(sandbox.chromium_executable()), args=CHROMIUM_FLAGS)
    try:
        offer = await full_room_offer(sfu, log)
        page = await browser.new_page()
        answer = str(await page.evaluate(ANSWER_JS, offer))
        sections = answer.count("\r\nm=")
        session_part = answer.index("\r\nm=") + 2
        lines = answer.count("\r\n")
        per_section_bytes = (len(answer) - session_part) / sections
        per_section_lines = (lines - answer[:session_part].count("\r\n")) / sections
        print(
            f"Chromium {browser.version}: {sections} m-sections, {len(answer)} bytes, {lines} lines; "
            f"{per_section_bytes:.0f} B and {per_section_lines:.1f} lines per m-section"
        )
        assert sections == 2 * PUBLISHERS
        # The derivation's budget still covers what Chromium writes.
        assert per_section_bytes <= media_limits.SECTION_BYTES
        assert per_section_lines <= media_limits.SECTION_LINES
        assert session_part <= media_limits.SESSION_BYTES + sections * 4
        accepted(answer)
        await sfu.subscriber_answer("room", "sub", answer)
    finally:
        await browser.close()
        await sfu.close()
