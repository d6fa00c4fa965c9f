"""Issue 5: a publisher allowed to use TURN only relays through coturn to the server's SFU.

The server hands out coturn credentials in ``welcome.ice_servers``; the publisher builds its
``RTCConfiguration`` from them with ``iceTransportPolicy="relay"``, so its only candidate is a
coturn relay (coturn's test profile, 127.0.0.1, loopback peers allowed). The SFU gathers host
candidates on 127.0.0.1 as usual and needs no TURN configuration of its own to accept the
relayed candidate.
"""

from __future__ import annotations

from signaling.core.config import IceConfig
from signaling.turn.credentials import sign
from tests.conftest import LOOPBACK_PEERS
from tests.media.conftest import MediaServerFactory, Peers
from tests.media.peers import LOOPBACK, measure, sdp_candidates, selected_pairs
from tests.turn.conftest import RELAY_PORTS, Coturn

MIN_RATIO = 0.9


async def test_relay_only_publisher_reaches_a_subscriber_through_coturn(
    media_server: MediaServerFactory, peers: Peers, coturn: Coturn
) -> None:
    turn_url = coturn.url("turn", "udp")
    server = await media_server(
        IceConfig(
            turn_urls=(turn_url,), turn_secrets=(coturn.secrets[0],), host_addresses=(LOOPBACK,),
            allow_peers=LOOPBACK_PEERS,
        )
    )
    room = "relay"
    sub = await peers.subscriber(server, room, "sub")
    publisher = await peers.publisher(server, room, "pub", relay=True)

    # welcome carries ephemeral credentials that coturn accepts (signed with its secret).
    [turn] = publisher.welcome["ice_servers"]
    assert turn["urls"] == [turn_url]
    assert turn["credential"] == sign(coturn.secrets[0], turn["username"])

    answer = await publisher.publish()
    # The publisher offered nothing but its coturn relay ...
    offered = sdp_candidates(publisher.pc.localDescription.sdp)
    assert offered and {c.type for c in offered} == {"relay"}, offered
    assert all(RELAY_PORTS[0] <= c.port <= RELAY_PORTS[1] for c in offered), offered
    # ... and the SFU answered with its usual host candidates: no TURN on its side.
    assert {c.type for c in sdp_candidates(answer["sdp"])} == {"host"}
    await publisher.wait_connected()

    # The selected pair: our relay allocation on coturn to the SFU's host candidate.
    [pair] = selected_pairs(publisher.pc)
    assert pair.local_type == "relay", pair
    assert pair.local_address[0] == LOOPBACK and RELAY_PORTS[0] <= pair.local_address[1] <= RELAY_PORTS[1], pair
    assert pair.remote_type == "host", pair
    assert pair.remote_address in {(c.address, c.port) for c in sdp_candidates(answer["sdp"])}, pair

    await sub.wait_decoding()
    window = await measure(publisher, [sub], 60)
    summary = (
        f"relayed: sent {window.sent} frames at {window.sent_fps:.1f} fps; "
        f"decoded {window.decoded_rate(sub.decoded()):.1f} fps ({window.ratio(sub.decoded()):.1%}); pair {pair}"
    )
    print(summary)
    assert window.ratio(sub.decoded()) >= MIN_RATIO, summary
