"""A UDP relay on 127.0.0.1 between an aiortc client and the SFU that drops chosen packets.

Loss is injected on the wire, not inside aiortc: the SDP each side sees is rewritten so that
both talk to the relay (the client sees the SFU at ``client_face``, the SFU sees the client at
``sfu_face``). RTP headers are in the clear under SRTP, so packets can be picked by payload type
and the retransmissions (RTX) that repair them can be counted.

Besides the drop predicates, each direction can be given an :class:`tests.netem.Impairment`
(random loss, bursts, delay, jitter, reordering), applied by the same code as the impairment
relay in front of coturn (tests/udp_impair.py).
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable
from typing import Any, cast

from tests.netem import Impairment
from tests.udp_impair import Direction

_CANDIDATE = re.compile(r"^(a=candidate:\S+ \d+ udp \d+ )127\.0\.0\.1 (\d+)( typ host.*)$", re.I)

Drop = Callable[[bytes], bool]


def rtp_payload_type(data: bytes) -> int | None:
    """Payload type of an RTP packet (``None`` for RTCP, STUN, DTLS)."""
    if len(data) < 12 or not 128 <= data[0] < 192:
        return None
    if 192 <= data[1] <= 223:  # RTCP packet types 192-223 (SR, RR, SDES, BYE, feedback)
        return None
    return data[1] & 0x7F


class EveryNth:
    """Drop predicate: every ``n``-th packet of one payload type."""

    def __init__(self, payload_type: int, n: int) -> None:
        self.payload_type = payload_type
        self.n = n
        self.seen = 0
        self.dropped = 0

    def __call__(self, data: bytes) -> bool:
        if rtp_payload_type(data) != self.payload_type:
            return False
        self.seen += 1
        if self.seen % self.n == 0:
            self.dropped += 1
            return True
        return False


class _Face(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, tuple[Any, ...]], None]) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.on_datagram(data, addr)


class LossyRelay:
    """Relays one ICE/DTLS/SRTP flow, dropping what ``to_client`` / ``to_sfu`` select."""

    def __init__(
        self,
        *,
        to_client: Drop | None = None,
        to_sfu: Drop | None = None,
        impair_to_client: Impairment | None = None,
        impair_to_sfu: Impairment | None = None,
        seed: int = 0,
    ) -> None:
        self._to_client = to_client or (lambda data: False)
        self._to_sfu = to_sfu or (lambda data: False)
        rng = random.Random(seed)
        #: The impairment of each direction (a clean one when none is given).
        self.client_direction = Direction(impair_to_client or Impairment(), random.Random(rng.random()))
        self.sfu_direction = Direction(impair_to_sfu or Impairment(), random.Random(rng.random()))
        self._client_face = _Face(self._from_client)
        self._sfu_face = _Face(self._from_sfu)
        self._client_addr: tuple[str, int] | None = None
        self._sfu_addr: tuple[str, int] | None = None
        #: Payload types seen travelling to the client / to the SFU, with counts.
        self.to_client_types: dict[int, int] = {}
        self.to_sfu_types: dict[int, int] = {}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self._client_face, local_addr=("127.0.0.1", 0))
        await loop.create_datagram_endpoint(lambda: self._sfu_face, local_addr=("127.0.0.1", 0))

    def close(self) -> None:
        self.client_direction.close()
        self.sfu_direction.close()
        for face in (self._client_face, self._sfu_face):
            if face.transport is not None:
                face.transport.close()

    def _port(self, face: _Face) -> int:
        assert face.transport is not None
        port: int = face.transport.get_extra_info("sockname")[1]
        return port

    def _rewrite(self, sdp: str, face: _Face, remember: Callable[[int], None]) -> str:
        lines = []
        for line in sdp.split("\r\n"):
            match = _CANDIDATE.match(line)
            if match:
                remember(int(match.group(2)))
                line = f"{match.group(1)}127.0.0.1 {self._port(face)}{match.group(3)}"
            lines.append(line)
        return "\r\n".join(lines)

    def sdp_from_sfu(self, sdp: str) -> str:
        """SDP the SFU wrote, as the client must see it (the SFU lives at the client face)."""

        def remember(port: int) -> None:
            self._sfu_addr = ("127.0.0.1", port)

        return self._rewrite(sdp, self._client_face, remember)

    def sdp_from_client(self, sdp: str) -> str:
        """SDP the client wrote, as the SFU must see it (the client lives at the SFU face)."""

        def remember(port: int) -> None:
            self._client_addr = ("127.0.0.1", port)

        return self._rewrite(sdp, self._sfu_face, remember)

    def _from_client(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._count(self.to_sfu_types, data)
        transport = self._sfu_face.transport
        sfu = self._sfu_addr
        if sfu is not None and transport is not None and not self._to_sfu(data):
            self.sfu_direction.send(data, lambda d: transport.sendto(d, sfu))

    def _from_sfu(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._count(self.to_client_types, data)
        transport = self._client_face.transport
        client = self._client_addr
        if client is not None and transport is not None and not self._to_client(data):
            self.client_direction.send(data, lambda d: transport.sendto(d, client))

    @staticmethod
    def _count(counts: dict[int, int], data: bytes) -> None:
        payload_type = rtp_payload_type(data)
        if payload_type is not None:
            counts[payload_type] = counts.get(payload_type, 0) + 1
