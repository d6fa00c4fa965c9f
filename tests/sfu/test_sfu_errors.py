"""Error codes, bad input that must not leave anyone stuck, candidates, close semantics."""

from __future__ import annotations

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from sfu.errors import SfuError
from sfu.sdp_info import parse_session
from tests.sfu.sfu_testpeers import SfuEnv, client_configuration


async def raises(code: str, coro: object) -> SfuError:
    with pytest.raises(SfuError) as raised:
        await coro  # type: ignore[misc]
    assert raised.value.code == code, raised.value
    return raised.value


async def test_calls_for_participants_who_did_not_join(env: SfuEnv) -> None:
    await raises("not-joined", env.sfu.publish("room", "ghost", "v=0"))
    await raises("not-joined", env.sfu.subscriber_answer("room", "ghost", "v=0"))
    await raises("not-joined", env.sfu.add_candidate("room", "ghost", "publisher", None))
    await raises("not-joined", env.sfu.unpublish("room", "ghost", "t"))
    await env.sfu.leave("room", "ghost")  # leaving is idempotent, never an error


async def test_bad_publisher_sdp_is_reported_and_a_good_one_works_after(env: SfuEnv) -> None:
    subscriber = await env.subscriber("bob")
    publisher = env.publisher("alice")
    await env.sfu.join("room", "alice")
    await raises("bad-sdp", env.sfu.publish("room", "alice", "garbage"))
    await publisher.pc.setLocalDescription(await publisher.pc.createOffer())
    offer = publisher.pc.localDescription.sdp
    vp9_only = offer.replace("VP8/90000", "VP9/90000")
    error = await raises("bad-sdp", env.sfu.publish("room", "alice", vp9_only))
    assert "VP8" in str(error)
    no_bundle = "\r\n".join(line for line in offer.split("\r\n") if "BUNDLE" not in line)
    await raises("bad-sdp", env.sfu.publish("room", "alice", no_bundle))
    no_ice = "\r\n".join(line for line in offer.split("\r\n") if "ice-ufrag" not in line)
    await raises("bad-sdp", env.sfu.publish("room", "alice", no_ice))

    answer = await env.sfu.publish("room", "alice", offer)
    await publisher.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    await subscriber.wait_for(lambda: any(r.frames > 3 for r in subscriber.received.values()), 20)


async def test_bad_subscriber_answer_is_reported_and_a_good_one_works_after(
    env: SfuEnv,
) -> None:
    manual = await env.subscriber("bob", auto_answer=False)
    publisher = env.publisher("alice", audio=False)
    await env.sfu.join("room", "alice")
    await publisher.publish()
    assert len(manual.offers()) == 1
    await raises("bad-sdp", env.sfu.subscriber_answer("room", "bob", "v=0\r\nnonsense"))
    manual.answer_next()
    await manual.wait_for(lambda: any(r.frames > 3 for r in manual.received.values()), 20)
    await raises("sfu-error", env.sfu.subscriber_answer("room", "bob", "v=0"))


async def test_answer_before_any_offer_is_an_sfu_error(env: SfuEnv) -> None:
    await env.sfu.join("room", "bob")
    await raises("sfu-error", env.sfu.subscriber_answer("room", "bob", "v=0"))


async def test_trickled_candidates(env: SfuEnv) -> None:
    publisher = env.publisher("alice")
    await env.sfu.join("room", "alice")
    await publisher.publish()
    sections = parse_session(publisher.pc.localDescription.sdp).sections
    line = next(
        x for x in publisher.pc.localDescription.sdp.split("\r\n") if x.startswith("a=candidate")
    )
    candidate = {"candidate": line[2:], "sdpMid": sections[0].mid, "sdpMLineIndex": 0}
    await env.sfu.add_candidate("room", "alice", "publisher", candidate)  # a repeat: ignored
    await env.sfu.add_candidate("room", "alice", "publisher", None)  # end of candidates
    await env.sfu.add_candidate("room", "alice", "publisher", {"candidate": ""})  # again
    tcp = dict(candidate, candidate=line[2:].replace(" udp ", " tcp "))
    await env.sfu.add_candidate("room", "alice", "publisher", tcp)  # no ICE-TCP: ignored
    await raises(
        "bad-sdp",
        env.sfu.add_candidate("room", "alice", "publisher", {"candidate": "candidate:1 1 udp"}),
    )
    await raises(
        "bad-sdp",
        env.sfu.add_candidate("room", "alice", "publisher", {"candidate": line[2:]}),
    )
    # No subscriber connection yet (nothing to receive): candidates for it are dropped.
    await env.sfu.add_candidate("room", "alice", "subscriber", candidate)


async def test_close_is_idempotent_and_silent() -> None:
    env = SfuEnv()
    subscriber = await env.subscriber("bob")
    publisher = env.publisher("alice", audio=False)
    await env.sfu.join("room", "alice")
    await publisher.publish()
    await subscriber.wait_for(lambda: any(r.frames > 0 for r in subscriber.received.values()), 20)
    await env.sfu.close()
    emitted = len(env.router.log)
    await env.sfu.close()
    await env.sfu.leave("room", "bob")
    await raises("sfu-error", env.sfu.join("room", "carol"))
    await raises("sfu-error", env.sfu.publish("room", "alice", "v=0"))
    assert len(env.router.log) == emitted
    stats = env.sfu.stats()
    assert (stats["rooms"], stats["peer_connections"], stats["tasks"]) == (0, 0, 0)
    await env.close()


async def test_client_closing_its_publisher_connection_unpublishes(env: SfuEnv) -> None:
    subscriber = await env.subscriber("bob")
    publisher = env.publisher("alice")
    await env.sfu.join("room", "alice")
    await publisher.publish()
    await subscriber.wait_for(lambda: any(r.frames > 0 for r in subscriber.received.values()), 20)
    await publisher.pc.close()  # DTLS close_notify: the SFU's publisher connection closes
    await subscriber.wait_for(
        lambda: sum(m["type"] == "track-unpublished" for m in subscriber.messages) == 2, 20
    )
    assert env.sfu.stats()["tracks"] == 0


async def test_plain_client_connection_for_reference() -> None:
    """The harness itself gathers on loopback only (process-wide restriction in conftest)."""
    pc = RTCPeerConnection(client_configuration())
    try:
        pc.addTransceiver("audio")
        await pc.setLocalDescription(await pc.createOffer())
        candidates = [
            x for x in pc.localDescription.sdp.split("\r\n") if x.startswith("a=candidate")
        ]
        assert candidates
        assert all(" 127.0.0.1 " in c and " typ host" in c for c in candidates)
    finally:
        await pc.close()


async def test_refused_answers_never_leave_the_subscriber_leg_waiting(env: SfuEnv) -> None:
    """Issue 14 finding 4 / issue 16 failure 4: an answer the SFU cannot apply used to leave
    ``awaiting_answer`` set, so no offer was ever sent again. Now: a fresh offer; after a
    second refusal in a row, the leg is reset and the client told (``media-failed``)."""
    manual = await env.subscriber("bob", auto_answer=False)
    publisher = env.publisher("alice", audio=False)
    await env.sfu.join("room", "alice")
    await publisher.publish()
    assert len(manual.offers()) == 1
    await raises("bad-sdp", env.sfu.subscriber_answer("room", "bob", "v=0\r\nnonsense"))
    assert len(manual.offers()) == 2, "a refused answer must be followed by a new offer"
    await raises("bad-sdp", env.sfu.subscriber_answer("room", "bob", "v=0\r\nnonsense"))
    errors = [m for m in manual.messages if m["type"] == "error"]
    assert [(e["code"], e["target"]) for e in errors] == [("media-failed", "subscriber")]
    assert len(manual.offers()) == 3, "the reset leg offers again on a new connection"
    stats = env.sfu.stats()
    assert (stats["answers_refused"], stats["subscriber_resets"]) == (2, 1)


async def test_tracks_in_codecs_a_subscriber_did_not_announce_are_not_offered(env: SfuEnv) -> None:
    client = await env.subscriber("bob", join=False)
    await env.sfu.join("room", "bob", codecs=("opus", "H264"))
    publisher = env.publisher("alice")
    await env.sfu.join("room", "alice")
    await publisher.publish()
    await client.wait_for(lambda: any(r.kind == "audio" and r.frames > 10 for r in client.received.values()), 20)
    assert [s.kind for s in parse_session(client.offers()[-1]).sections] == ["audio"]
    unavailable = [m for m in client.messages if m["type"] == "track-unavailable"]
    assert [(m["track"]["kind"], m["reason"]) for m in unavailable] == [("video", "codec")]
