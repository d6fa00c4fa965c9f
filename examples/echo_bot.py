"""Echo bot: subscribes to the first participant's microphone and publishes it back 1 s later.

    python examples/echo_bot.py --url ws://127.0.0.1:8080/ws --room demo
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from switchboard import IceOptions, PcmReader, PcmSource, Room, TrackSubscribed


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="signaling URL, e.g. ws://127.0.0.1:8080/ws")
    parser.add_argument("--room", required=True)
    parser.add_argument("--name", default="echo-bot")
    parser.add_argument("--token", help="access token, if the server requires one")
    parser.add_argument("--ice-host", action="append", default=[], help="gather ICE candidates on this address only (repeatable)")
    parser.add_argument("--delay", type=float, default=1.0, help="seconds between hearing and saying (default 1)")
    return parser.parse_args()


async def main(args: argparse.Namespace) -> None:
    room = await Room.connect(args.url, room=args.room, name=args.name, token=args.token,
                              ice=IceOptions(host_addresses=tuple(args.ice_host)),
                              auto_subscribe=lambda track: track.source == "microphone")
    # Never more than the delay (+ a 100 ms margin for jitter) waits: frames that queued up
    # while we were busy are dropped, oldest first, instead of adding to the delay for good.
    echo = PcmSource(max_buffer=args.delay + 0.1)
    echo.push(bytes(round(args.delay * 48_000) * 2))  # the delay: that much silence first
    try:
        await room.publish(echo, source="microphone")
        print(f"echoing in {args.room} as {room.local_peer}", flush=True)
        async for event in room:
            if isinstance(event, TrackSubscribed):
                print(f"echoing {event.track.peer}'s microphone", flush=True)
                async for frame in PcmReader(event.stream):
                    echo.push(frame.data)
                print("the microphone is gone; waiting for the next one", flush=True)
    finally:
        await room.close()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: leave the room and exit quietly
        asyncio.run(main(arguments()))
