"""Run inside a fresh network namespace (``unshare -n``, as root): does the SFU send ICE checks
to addresses a client names?

The namespace holds only ``lo``, with two extra addresses on it: 10.99.0.2 (a "private
service" the SFU must never contact) and 10.99.1.2 (a range the SFU is told to allow: the
control). A UDP listener on each counts what arrives. A real aiortc publisher offers to a real
SFU on 127.0.0.1, its offer naming both addresses as host candidates (the private one with the
highest priority, so it would be checked first), then trickles one more candidate for each. It
never applies the answer, so the SFU keeps checking, as in the seconds before a client connects.
Once the control listener has received checks for both of its candidates (ICE checks every
pair it has, in priority order), the private listener must have received nothing.

Prints one JSON object: datagrams per listener, the trickle outcomes, the SFU's refusal count.
``tests/sfu/test_sfu_candidate_netns.py`` runs it; ``python -m tests.sfu.sfu_netns_scenario``
from the repository root inside ``unshare -n`` runs it by hand.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

from sfu import aiortc_hooks
from sfu.config import SfuConfig
from sfu.errors import SfuError
from tests.sfu.sfu_testpeers import LOOPBACK, LOOPBACK_PEERS, SfuEnv

PRIVATE = "10.99.0.2"
ALLOWED = "10.99.1.2"
ALLOWED_RANGE = "10.99.1.0/24"
STUN_COOKIE = bytes.fromhex("2112a442")
PATIENCE = 30.0


class Listener(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.datagrams: list[bytes] = []
        self.changed = asyncio.Event()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.datagrams.append(data)
        self.changed.set()

    def stun_requests(self) -> int:
        return sum(1 for d in self.datagrams if d[4:8] == STUN_COOKIE)


async def listen(address: str) -> tuple[asyncio.DatagramTransport, Listener, int]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(Listener, local_addr=(address, 0))
    return transport, protocol, transport.get_extra_info("sockname")[1]


def candidate(foundation: str, priority: int, address: str, port: int) -> str:
    return f"candidate:{foundation} 1 udp {priority} {address} {port} typ host"


def setup_namespace() -> None:
    """``lo`` up, with the two extra addresses (this namespace only)."""
    for command in (
        ["ip", "link", "set", "lo", "up"],
        ["ip", "addr", "add", f"{PRIVATE}/32", "dev", "lo"],
        ["ip", "addr", "add", f"{ALLOWED}/32", "dev", "lo"],
    ):
        subprocess.run(command, check=True)


async def scenario() -> dict[str, Any]:
    aiortc_hooks.set_process_host_addresses(LOOPBACK)
    transports = []
    private_t, private, private_port = await listen(PRIVATE)
    allowed_t, allowed, allowed_port = await listen(ALLOWED)
    _, _, private_port2 = second_private = await listen(PRIVATE)
    _, _, allowed_port2 = second_allowed = await listen(ALLOWED)
    transports += [private_t, allowed_t, second_private[0], second_allowed[0]]
    env = SfuEnv(SfuConfig(host_addresses=LOOPBACK, ice_allow_peers=(*LOOPBACK_PEERS, ALLOWED_RANGE)))
    result: dict[str, Any] = {}
    try:
        publisher = env.publisher("alice", audio=False)
        await env.sfu.join("room", "alice")

        def name_both(offer: str) -> str:
            extra = "".join(
                f"a={c}\r\n"
                for c in (
                    candidate("victim", 2147483647, PRIVATE, private_port),
                    candidate("control", 2147483646, ALLOWED, allowed_port),
                )
            )
            # Trickle ICE: more candidates follow, so no end-of-candidates (browsers' offers
            # have none either).
            return offer.replace("a=end-of-candidates\r\n", extra)

        # The client never applies the answer: the SFU's checks go on (retransmitted, paced)
        # and trickled candidates join them, as in the seconds before a real client connects.
        await publisher.pc.setLocalDescription(await publisher.pc.createOffer())
        await env.sfu.publish("room", "alice", name_both(publisher.pc.localDescription.sdp))
        mid = "0"
        outcomes = {}
        for label, line in (
            ("private", candidate("victim2", 2147483647, PRIVATE, private_port2)),
            ("allowed", candidate("control2", 2147483646, ALLOWED, allowed_port2)),
        ):
            try:
                await env.sfu.add_candidate("room", "alice", "publisher", {"candidate": line, "sdpMid": mid})
                outcomes[label] = "accepted"
            except SfuError as exc:
                outcomes[label] = exc.code
        # Event, not time: ICE checks pairs in priority order, and the private candidates come
        # first; once both control candidates got checks, the private ones would have too.
        second = second_allowed[1]
        async with asyncio.timeout(PATIENCE):
            while allowed.stun_requests() == 0 or second.stun_requests() == 0:
                allowed.changed.clear()
                second.changed.clear()
                waits = [asyncio.ensure_future(p.changed.wait()) for p in (allowed, second)]
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for wait in waits:
                        wait.cancel()
        result = {
            "private_datagrams": len(private.datagrams) + len(second_private[1].datagrams),
            "allowed_stun_requests": [allowed.stun_requests(), second.stun_requests()],
            "trickled": outcomes,
            "candidates_refused": env.sfu.stats()["candidates_refused"],
        }
    finally:
        await env.close()
        for transport in transports:
            transport.close()
    return result


def main() -> None:
    setup_namespace()
    print(json.dumps(asyncio.run(scenario())))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
