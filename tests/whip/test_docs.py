"""docs/ingest-egress.md: every ``sh`` block runs, in order, in one bash against a real server."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from pathlib import Path

from aiortc import RTCPeerConnection

from signaling.core.auth import create_token
from signaling.core.config import IceConfig, SecurityConfig
from tests.conftest import UNLIMITED, ServerFactory
from tests.media.conftest import ADMIN_TOKEN, media_config
from tests.media.peers import LOOPBACK, PatternVideoTrack, rtc_configuration
from tests.sfu.sfu_testpeers import CountingAudioTrack

DOC = Path(__file__).resolve().parents[2] / "docs" / "ingest-egress.md"
SECRET = "docs-tests-signing-key-0123456789abcdef"


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_the_doc_has_the_examples() -> None:
    blocks = sh_blocks(DOC.read_text())
    script = "\n".join(blocks)
    assert len(blocks) >= 6
    for needle in ("/whip/studio", "If-Match: $ETAG", "rooms record start", "rooms record stop",
                   "rooms record list", "/admin/rooms/studio/recording", "-X DELETE"):
        assert needle in script, needle


async def test_the_doc_examples_run(start_server: ServerFactory, tmp_path: Path) -> None:
    fields = {f: getattr(UNLIMITED, f) for f in UNLIMITED.__slots__}
    security = SecurityConfig(**{**fields, "token_keys": (("k1", SECRET),)})
    server = await start_server(media_config(
        IceConfig(host_addresses=(LOOPBACK,), stun_urls=(f"stun:{LOOPBACK}:3478",)), security=security,
    ))
    pc = RTCPeerConnection(rtc_configuration([]))
    try:
        pc.addTransceiver(PatternVideoTrack(), "sendonly")
        pc.addTransceiver(CountingAudioTrack(), "sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        (tmp_path / "offer.sdp").write_text(pc.localDescription.sdp)
        env = {
            **os.environ,
            "SB": server.http_url,
            "TOKEN": create_token(SECRET, identity="encoder", room="studio", grants={"publish"}, now=time.time()),
            "SWITCHBOARD_ADMIN_TOKEN": ADMIN_TOKEN,
            "RECORDINGS": str(tmp_path / "recordings"),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        script = "\n".join(sh_blocks(DOC.read_text()))
        process = await asyncio.create_subprocess_exec(
            "bash", "-euo", "pipefail", "-c", script, cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        assert process.returncode == 0, f"doc examples failed:\n{out.decode()}\n{err.decode()}"
    finally:
        await pc.close()
    assert "rel=\"ice-server\"" in out.decode()
    assert server.hub.session_count == 0  # the DELETE ended the WHIP participant
