"""ICE settings of the room's peer connections.

aiortc contacts a public STUN server when ``iceServers`` is None, and gathers host candidates on
every interface: the room always passes the ``ice_servers`` of ``welcome`` explicitly (STUN and
TURN with ephemeral credentials; aiortc uses the first of each) and, when
:attr:`IceOptions.host_addresses` is set, gathers on those addresses only (loopback in tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
)

from sfu.aiortc_hooks import configure_ice


@dataclass(frozen=True, slots=True)
class IceOptions:
    #: Gather host candidates on these addresses only (e.g. ``("127.0.0.1",)``); empty: all.
    host_addresses: tuple[str, ...] = ()
    #: Bind host candidates' UDP ports in this inclusive range (firewalled bot hosts).
    port_range: tuple[int, int] | None = None
    #: Relay only (TURN): hide the bot's addresses from the SFU.
    relay_only: bool = False


def rtc_configuration(ice_servers: list[dict[str, Any]], options: IceOptions) -> RTCConfiguration:
    """The configuration of one peer connection, from ``welcome.ice_servers``."""
    servers = []
    for entry in ice_servers:
        urls = entry["urls"] if isinstance(entry["urls"], list) else [entry["urls"]]
        servers.append(
            RTCIceServer(urls=urls, username=entry.get("username"), credential=entry.get("credential"))
        )
    return RTCConfiguration(
        iceServers=servers,  # explicit even when empty: never aiortc's public default
        bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
        iceTransportPolicy=RTCIceTransportPolicy.RELAY if options.relay_only else RTCIceTransportPolicy.ALL,
    )


def before_gathering(pc: RTCPeerConnection, options: IceOptions) -> None:
    """Apply host addresses and port range; call before ``setLocalDescription`` gathers."""
    if options.host_addresses or options.port_range is not None:
        configure_ice(pc, options.host_addresses, options.port_range)
