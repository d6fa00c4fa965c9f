"""A weak subscriber in a simulcast room vs in a single-layer room (the old min-REMB behaviour).

    python bench/simulcast_weak.py [--subscribers 20] [--window 10] [--warmup 25]

One room per phase, on one in-process server with its SFU (loopback only):

* the publisher is native libwebrtc (@roamhq/wrtc, tests/node/wrtc_client.mjs) sending a
  960x540 moving picture, either as three simulcast layers (q/h/f, capped 80/150/250 kbps) or
  as one encoding capped at their sum (``--single``): a single-layer track is still clamped to
  its subscribers' minimum REMB (docs/sfu.md, *Bandwidth*), simulcast tracks are not;
* ``N`` strong subscribers: aiortc peers that do not decode (their receivers are tapped) and
  count packets, bytes and frames (marker bits) of the video they receive; they run in a child
  process (``--child``), so that their CPU does not delay the SFU's loop (a loop that lags
  makes aiortc's delay-based estimate of the publisher's uplink collapse, for both phases);
* one weak subscriber (wrtc, decoding), whose leg goes through coturn and a user-space UDP
  relay throttled to 20 kB/s with a short queue (tests/udp_impair.py). The publisher reaches
  coturn through an unthrottled relay.

After a warm-up (for simulcast, also until the publisher sends its top layer: libwebrtc turns
it on only once aiortc's slow REMB ramp affords it), a window measures the publisher's sent video bitrate (its outbound-rtp),
and the strong subscribers' mean received video frame rate and bitrate. Prints each phase and
the ratios simulcast / single-layer; asserts nothing. Uses the test harness (tests/).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from sfu import aiortc_hooks  # noqa: E402
from sfu.aiortc_hooks import ReceiverTap, TranscodingProbe  # noqa: E402
from signaling.core.config import IceConfig  # noqa: E402
from signaling.server.app import build_app, listener, make_runner  # noqa: E402
from signaling.turn.coturn import Profile, render  # noqa: E402
from signaling.turn.credentials import make_credentials  # noqa: E402
from tests.conftest import LOOPBACK_PEERS  # noqa: E402
from tests.interop.endpoints import MediaProcess, start_media_process  # noqa: E402
from tests.media.conftest import media_config  # noqa: E402
from tests.media.peers import LOOPBACK, Subscriber  # noqa: E402
from tests.netem import Impairment  # noqa: E402
from tests.turn.conftest import Coturn, free_port, new_secret, run_coturn, settings_for  # noqa: E402
from tests.udp_impair import ImpairedUdpRelay  # noqa: E402

WEAK = Impairment(rate=20_000, queue=10)
SCRIPT = ROOT / "tests" / "node" / "wrtc_client.mjs"
LOGS = ROOT / "artifacts" / "logs" / "bench"


class Counter:
    """Receiver events of one non-decoding subscriber's video."""

    def __init__(self) -> None:
        self.packets = 0
        self.bytes = 0
        self.frames = 0
        self.media_type: int | None = None

    async def on_rtp(self, packet: Any) -> None:
        if self.media_type is None:
            self.media_type = packet.payload_type
        if packet.payload_type != self.media_type:
            return  # RTX
        self.packets += 1
        self.bytes += len(packet.payload)
        if packet.marker:
            self.frames += 1

    def on_receiver_started(self, info: Any) -> None:
        pass

    def on_upstream_estimate(self, bitrate: int) -> int:
        return bitrate

    def on_sender_report(self, report: Any) -> None:
        pass


class TappedSubscriber(Subscriber):
    """A :class:`tests.media.peers.Subscriber` that counts its video instead of decoding it."""

    probe = TranscodingProbe()

    def __init__(self, url: str, room: str, name: str) -> None:
        super().__init__(url, room, name)
        self.counter = Counter()

    def _on_track(self, track: Any) -> None:
        if track.kind != "video":
            return
        receiver = next(t.receiver for t in self.pc.getTransceivers() if t.receiver.track is track)
        ReceiverTap(receiver, self.counter, self.probe)


async def child(url: str, room: str, count: int) -> None:
    """``--child``: ``count`` tapped subscribers; a JSON line of their counters every 0.5 s,
    until stdin closes."""
    aiortc_hooks.set_process_host_addresses((LOOPBACK,))
    subs = []
    for i in range(count):
        sub = TappedSubscriber(url, room, f"s{i}")
        subs.append(sub)
        await sub.start()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    eof = asyncio.ensure_future(reader.read())
    try:
        while not eof.done():
            print(json.dumps({"frames": [s.counter.frames for s in subs], "bytes": [s.counter.bytes for s in subs],
                              "t": time.monotonic()}), flush=True)
            await asyncio.wait([eof], timeout=0.5)
    finally:
        for sub in subs:
            await sub.close()


class Children:
    """The child process of the strong subscribers, and its latest counters."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.latest: dict[str, Any] = {}
        self.reading = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, url: str, room: str, count: int) -> Children:
        process = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--child", url, room, str(count),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.latest = json.loads(line)

    async def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            async with asyncio.timeout(20):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        await self.reading


def sent_bytes(publisher: MediaProcess) -> int:
    return sum(s.get("bytes", 0) for s in publisher.stats.get("sent", {}).values())


def sent_by_rid(publisher: MediaProcess) -> dict[str, int]:
    return {rid: s.get("bytes", 0) for rid, s in publisher.stats.get("sent", {}).items() if rid in ("q", "h", "f")}


async def phase(
    url: str, http: aiohttp.ClientSession, coturn: Coturn, clean: ImpairedUdpRelay, weak: ImpairedUdpRelay,
    *, simulcast: bool, subscribers: int, warmup: float, window: float, ramp: float,
) -> dict[str, float]:
    node = shutil.which("node")
    assert node is not None, "node not found"
    room = f"weak-{'simulcast' if simulcast else 'single'}-{os.getpid()}"
    processes: list[MediaProcess] = []
    children: Children | None = None

    async def wrtc(name: str, relay: ImpairedUdpRelay, *flags: str) -> MediaProcess:
        credentials = make_credentials(coturn.secrets[0], name, 3600, time.time())
        ice = json.dumps([{"urls": f"turn:{LOOPBACK}:{relay.port}?transport=udp",
                           "username": credentials.username, "credential": credentials.credential}])
        client = await start_media_process(
            [node, str(SCRIPT), *flags, "--ice-servers", ice], unix_path=None, room=room, name=name,
            log_path=LOGS / f"{room}-{name}.log", http=http, url=url,
        )
        processes.append(client)
        return client

    try:
        publisher = await wrtc("pub", clean, "--publish", "--simulcast", "960x540",
                               *(() if simulcast else ("--single",)))
        children = await Children.start(url, room, subscribers)
        slow = await wrtc("weak", weak, "--subscribe")
        await asyncio.sleep(warmup)
        if simulcast:
            # aiortc's REMB ramp (no transport-cc) decides when libwebrtc turns its upper layers
            # on; on a loaded machine that takes minutes. Measure once the top layer flows.
            deadline = time.monotonic() + ramp
            history = [sent_by_rid(publisher).get("f", 0)]
            while time.monotonic() < deadline and (len(history) < 3 or history[-1] - history[-3] < 25_000):
                await asyncio.sleep(1.0)  # until f sends >= 100 kbit/s over 2 s
                history.append(sent_by_rid(publisher).get("f", 0))
        first = children.latest
        before = (sent_bytes(publisher), slow.video_frames())
        rids = sent_by_rid(publisher)
        await asyncio.sleep(window)
        last = children.latest
        seconds = last["t"] - first["t"]
        fps = [(b - a) / seconds for a, b in zip(first["frames"], last["frames"], strict=True)]
        kbps = [(b - a) * 8 / seconds / 1000 for a, b in zip(first["bytes"], last["bytes"], strict=True)]
        return {
            "publisher_kbps": (sent_bytes(publisher) - before[0]) * 8 / seconds / 1000,
            "others_fps": statistics.mean(fps),
            "others_fps_min": min(fps),
            "others_kbps": statistics.mean(kbps),
            "weak_fps": (slow.video_frames() - before[1]) / seconds,
            **{f"rid_{rid}_kbps": (n - rids.get(rid, 0)) * 8 / seconds / 1000 for rid, n in sent_by_rid(publisher).items()},
            "weak_width": float((list(slow.stats.get("sizes", {}).values()) or [[0]])[0][0]),
        }
    finally:
        for process in processes:
            await process.close()
        if children is not None:
            await children.close()


def line(name: str, row: dict[str, float]) -> str:
    return (f"  {name:<12} publisher {row['publisher_kbps']:6.0f} kbps | others {row['others_fps']:5.1f} fps "
            f"(min {row['others_fps_min']:4.1f}), {row['others_kbps']:6.0f} kbps each | weak {row['weak_fps']:5.1f} fps "
            f"at {row['weak_width']:.0f} wide"
            + "".join(f" | {k[4]} {v:.0f} kbps" for k, v in row.items() if k.startswith("rid_")))


async def main(args: argparse.Namespace) -> None:
    aiortc_hooks.set_process_host_addresses((LOOPBACK,))
    running = Coturn(port=free_port(), tls_port=None, secrets=(new_secret(),),
                     directory=Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-coturn-{os.getpid()}")
    running.directory.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    with run_coturn(render(settings_for(Profile.TEST, running)), running) as coturn:
        config = media_config(IceConfig(host_addresses=(LOOPBACK,), allow_peers=LOOPBACK_PEERS))
        app = build_app(config)
        runner = make_runner(app, config, shutdown_timeout=5)
        await runner.setup()
        site = listener(runner, config, "127.0.0.1", 0)
        await site.start()
        url = f"ws://127.0.0.1:{runner.addresses[0][1]}/ws"
        clean = await ImpairedUdpRelay((LOOPBACK, coturn.port), up=Impairment(), down=Impairment()).start()
        weak = await ImpairedUdpRelay((LOOPBACK, coturn.port), up=Impairment(), down=WEAK).start()
        load = os.getloadavg()
        try:
            async with aiohttp.ClientSession() as http:
                rows = {}
                for simulcast in (False, True):
                    name = "simulcast" if simulcast else "single-layer"
                    rows[name] = await phase(url, http, coturn, clean, weak, simulcast=simulcast,
                                             subscribers=args.subscribers, warmup=args.warmup, window=args.window,
                                             ramp=args.ramp)
                    print(line(name, rows[name]), flush=True)
        finally:
            clean.close()
            weak.close()
            await runner.cleanup()
    single, multi = rows["single-layer"], rows["simulcast"]
    print(f"{args.subscribers} strong subscribers + 1 weak (20 kB/s); load average at start {load[0]:.1f}, "
          f"at end {os.getloadavg()[0]:.1f}")
    for key in ("publisher_kbps", "others_fps", "others_kbps"):
        ratio = multi[key] / single[key] if single[key] else float("inf")
        print(f"  simulcast / single-layer {key:<15} x{ratio:.2f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        asyncio.run(child(sys.argv[2], sys.argv[3], int(sys.argv[4])))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=20)
    parser.add_argument("--warmup", type=float, default=45.0)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--ramp", type=float, default=240.0,
                        help="simulcast: wait up to this long after the warm-up for the top layer to flow")
    asyncio.run(main(parser.parse_args()))
