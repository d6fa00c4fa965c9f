"""Python client SDK: the reference implementation of protocol v1 for mobile and bot developers.

    async with Client("ws://127.0.0.1:8080/ws", room="demo", name="bot") as client:
        await client.signal(peer_id, {"sdp": ...})
        async for event in client:
            ...

Two layers, as in python-websockets: :mod:`signaling.client.core` holds the session rules
without I/O (seq, duplicates and gaps, the ack policy, the cseq window, close code → action),
:mod:`signaling.client.shell` runs them over aiohttp. The SDK imports only the pure core of
``signaling`` (an import contract in pyproject.toml).
"""

from signaling.client.core import ClientSession, Inbound, Welcome, close_action
from signaling.client.shell import (
    Client,
    ClientError,
    ClientState,
    Closed,
    DataReceived,
    ErrorReceived,
    Event,
    Joined,
    PeerJoined,
    PeerLeft,
    PeerReconnecting,
    PeerResumed,
    Reconnecting,
    Rejoined,
    Resumed,
    ServerMessage,
    SignalReceived,
    TokenProvider,
    protocol_json,
)

__all__ = [
    "Client", "ClientError", "ClientSession", "ClientState", "Closed", "DataReceived", "ErrorReceived", "Event",
    "Inbound", "Joined", "PeerJoined", "PeerLeft", "PeerReconnecting", "PeerResumed", "Reconnecting", "Rejoined",
    "Resumed", "ServerMessage", "SignalReceived", "TokenProvider", "Welcome", "close_action", "protocol_json",
]
