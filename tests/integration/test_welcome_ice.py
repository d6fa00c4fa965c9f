"""welcome carries ice_servers with ephemeral TURN credentials, fresh on every join and resume."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from signaling.core.config import IceConfig
from tests.conftest import ServerFactory, make_config
from tests.raw import Raw


def expected(secret: str, username: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()


async def test_welcome_ice_servers_and_fresh_credentials_on_resume(start_server: ServerFactory) -> None:
    secret = "s3cret-for-tests-only-0123456789"
    ice = IceConfig(stun_urls=("stun:127.0.0.1:3478",), turn_urls=("turn:127.0.0.1:3478",), turn_secrets=(secret,), turn_ttl=600)
    server = await start_server(make_config(ice=ice))
    raw = await Raw.joined(server.url, "room", "a")
    servers = raw.welcome["ice_servers"]
    assert servers[0] == {"urls": ["stun:127.0.0.1:3478"]}
    turn = servers[1]
    assert turn["urls"] == ["turn:127.0.0.1:3478"]
    expiry = int(turn["username"].split(":", 1)[0])
    assert time.time() + 500 < expiry <= time.time() + 601
    assert turn["credential"] == expected(secret, turn["username"])
    await raw.ws.close()
    again = await Raw.connect(server.url)
    w = raw.welcome
    await again.send({"type": "join", "room": "room", "resume": {"session": w["session"], "token": w["resume_token"], "last_seq": 1}})
    resumed = await again.expect("welcome")
    assert resumed["ice_servers"][1]["credential"] == expected(secret, resumed["ice_servers"][1]["username"])
    await again.close()
    await raw.close()
