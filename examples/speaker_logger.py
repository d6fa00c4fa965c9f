"""Speaker logger: prints active-speaker changes and chat messages of a room.

    python examples/speaker_logger.py --url ws://127.0.0.1:8080/ws --room demo
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json

from switchboard import (
    ActiveSpeakersChanged,
    DataReceived,
    IceOptions,
    ParticipantJoined,
    ParticipantLeft,
    Room,
)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="signaling URL, e.g. ws://127.0.0.1:8080/ws")
    parser.add_argument("--room", required=True)
    parser.add_argument("--name", default="speaker-logger")
    parser.add_argument("--token", help="access token, if the server requires one")
    parser.add_argument("--ice-host", action="append", default=[], help="gather ICE candidates on this address only (repeatable)")
    parser.add_argument("--topic", default="chat", help="data topic to print (default: chat)")
    return parser.parse_args()


async def main(args: argparse.Namespace) -> None:
    room = await Room.connect(args.url, room=args.room, name=args.name, token=args.token,
                              ice=IceOptions(host_addresses=tuple(args.ice_host)), auto_subscribe=False)
    names = {p.id: p.name for p in room.participants.values()}
    print(f"logging {args.room} as {room.local_peer}", flush=True)
    try:
        async for event in room:
            if isinstance(event, ParticipantJoined):
                names[event.participant.id] = event.participant.name
            elif isinstance(event, ParticipantLeft):
                print(f"left: {event.participant.name} ({event.reason})", flush=True)
            elif isinstance(event, ActiveSpeakersChanged):
                speaking = ", ".join(f"{names.get(s.peer, s.peer)} {s.level:.2f}" for s in event.speakers)
                print(f"speakers: {speaking or '(nobody)'}", flush=True)
            elif isinstance(event, DataReceived) and event.topic == args.topic:
                print(f"{args.topic}: {names.get(event.sender, event.sender)}: {json.dumps(event.payload)}", flush=True)
    finally:
        await room.close()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: leave the room and exit quietly
        asyncio.run(main(arguments()))
