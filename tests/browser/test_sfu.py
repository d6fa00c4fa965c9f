"""Media through the in-process SFU of ``switchboard serve`` in real browsers.

What the page expects of the SFU (see the report of the browser client and ``Room`` in
static/switchboard.js): the subscriber SDP names every m-section ``a=msid:<publishing peer id>
<track.id>``, ``track-published`` carries the same ``track.id``, the SFU's ICE candidates are inside
its SDP, and a new subscriber gets a keyframe promptly.
"""

from __future__ import annotations

import asyncio
import json

from tests.browser.conftest import ARTIFACTS, JoinFactory, Server, assert_no_stall_since, room_name

# Join-to-first-frame times are figures, not assertions (a loaded machine moves them; a timed
# assertion would make the suite flaky): each test writes them to artifacts/ and prints them, and
# docs/benchmarks.md records them from a quiet run.


def first_frame_ms(participant_hook: dict[str, dict[str, object]], peer: str) -> int:
    value = participant_hook[peer]["firstFrameMs"]
    assert isinstance(value, int), f"no first frame from {peer}: {participant_hook[peer]}"
    return value


async def test_sfu_two_publishers_see_each_other(join: JoinFactory) -> None:
    room = room_name("sfu2")
    alice = await join(room, "alice", mode="sfu")
    bob = await join(room, "bob", mode="sfu")
    alice_id, bob_id = await alice.hook("peerId"), await bob.hook("peerId")
    await asyncio.gather(alice.wait_video_from(bob_id, 2.0), bob.wait_video_from(alice_id, 2.0))
    assert await alice.hook("mode") == "sfu"
    assert await alice.hook("calls") == [], "media must go through the SFU, not a direct call"
    for who in (alice, bob):
        assert len(await who.hook("tiles")) == 1
        # Audio arrives too: packets in and samples decoded on the subscriber connection.
        audio: dict[str, int] = {}
        async with asyncio.timeout(30):
            while not (audio.get("packets", 0) > 20 and audio.get("samples", 0) > 0):
                audio = await who.page.evaluate("window.switchboard.audioStats()")
                await asyncio.sleep(0.1)


async def test_sfu_signaling_cut_keeps_media_flowing(join: JoinFactory, app_server: Server) -> None:
    """The signaling socket is cut; the session resumes and SFU media never stops."""
    room = room_name("sfu-cut")
    alice = await join(room, "alice", mode="sfu")
    bob = await join(room, "bob", mode="sfu")
    alice_id, bob_id = await alice.hook("peerId"), await bob.hook("peerId")
    await asyncio.gather(alice.wait_video_from(bob_id), bob.wait_video_from(alice_id))
    session = await alice.hook("sessionId")
    mark_alice, mark_bob = await alice.now(), await bob.now()
    await app_server.disconnect(session)
    await alice.wait_for(
        f"sb.stateLog.some(e => e.t > {mark_alice} && e.state === 'badge:resumed')", what="badge: resumed"
    )
    assert await alice.hook("rejoins") == 0
    assert await alice.hook("peerId") == alice_id
    await asyncio.gather(alice.wait_video_from(bob_id, 2.0), bob.wait_video_from(alice_id, 2.0))
    await assert_no_stall_since([(alice, bob_id, mark_alice), (bob, alice_id, mark_bob)])
    for who in (alice, bob):
        assert len(await who.hook("tiles")) == 1


async def test_sfu_late_joiner_shows_video(join: JoinFactory) -> None:
    room = room_name("sfu-late")
    alice = await join(room, "alice", mode="sfu")
    bob = await join(room, "bob", mode="sfu")
    alice_id, bob_id = await alice.hook("peerId"), await bob.hook("peerId")
    await asyncio.gather(alice.wait_video_from(bob_id), bob.wait_video_from(alice_id))
    carol = await join(room, "carol", mode="sfu")
    await asyncio.gather(carol.wait_video_from(alice_id, 0.5), carol.wait_video_from(bob_id, 0.5))
    stats = await carol.hook("frameStats")
    waited = {peer: first_frame_ms(stats, peer) for peer in (alice_id, bob_id)}
    print(f"late joiner: welcome -> first frame per publisher (ms): {waited}")
    carol_id = await carol.hook("peerId")
    await asyncio.gather(alice.wait_video_from(carol_id, 0.5), bob.wait_video_from(carol_id, 0.5))


async def test_sfu_join_to_first_remote_frame_time(join: JoinFactory) -> None:
    """Welcome to first decoded frame for someone joining a room where video already flows
    (the first participant's figure would include waiting for the second one to arrive)."""
    room = room_name("sfu-timing")
    alice = await join(room, "alice", mode="sfu")
    alice_id = await alice.hook("peerId")
    bob = await join(room, "bob", mode="sfu")
    bob_id = await bob.hook("peerId")
    await asyncio.gather(alice.wait_video_from(bob_id), bob.wait_video_from(alice_id))
    timings = {"join_to_first_remote_frame_ms": first_frame_ms(await bob.hook("frameStats"), alice_id)}
    out = ARTIFACTS / "sfu-first-frame.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(timings, indent=2) + "\n")
    print(f"SFU join -> first remote frame: {timings}")
