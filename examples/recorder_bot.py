"""Recorder bot: writes a participant's audio to a WAV file (48 kHz, 16-bit).

    python examples/recorder_bot.py --url ws://127.0.0.1:8080/ws --room demo --out call.wav

The file follows the audio's own timeline: a lost packet is silence of its length, so the
file is as long as what the participant said while recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import wave

from switchboard import IceOptions, PcmReader, RemoteTrack, Room, TrackSubscribed


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="signaling URL, e.g. ws://127.0.0.1:8080/ws")
    parser.add_argument("--room", required=True)
    parser.add_argument("--name", default="recorder-bot")
    parser.add_argument("--token", help="access token, if the server requires one")
    parser.add_argument("--ice-host", action="append", default=[], help="gather ICE candidates on this address only (repeatable)")
    parser.add_argument("--participant", help="name or peer id to record (default: the first one heard)")
    parser.add_argument("--out", required=True, help="WAV file to write")
    parser.add_argument("--duration", type=float, help="stop after this many seconds of audio")
    parser.add_argument("--channels", type=int, choices=(1, 2), default=1)
    return parser.parse_args()


async def main(args: argparse.Namespace) -> None:
    def wanted(track: RemoteTrack) -> bool:
        if track.kind != "audio":
            return False
        if args.participant is None:
            return True
        participant = room.participants.get(track.peer)
        return args.participant in (track.peer, participant.name if participant else None)

    room = await Room.connect(args.url, room=args.room, name=args.name, token=args.token,
                              ice=IceOptions(host_addresses=tuple(args.ice_host)), auto_subscribe=wanted)
    print(f"recording in {args.room} as {room.local_peer}", flush=True)
    limit = round(args.duration * 48_000) if args.duration else None
    written = 0
    try:
        async for event in room:
            if not isinstance(event, TrackSubscribed):
                continue
            with wave.open(args.out, "wb") as out:
                out.setnchannels(args.channels)
                out.setsampwidth(2)
                out.setframerate(48_000)
                async for frame in PcmReader(event.stream, channels=args.channels):
                    data = frame.data
                    if limit is not None:
                        data = data[: (limit - written) * 2 * args.channels]
                    out.writeframes(data)
                    written += len(data) // (2 * args.channels)
                    if limit is not None and written >= limit:
                        break
            print(f"recorded {written / 48_000:.3f} s of {event.track.peer} to {args.out}", flush=True)
            break
    finally:
        await room.close()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: leave the room and exit quietly
        asyncio.run(main(arguments()))
