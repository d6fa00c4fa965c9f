"""Sessions on an impaired network: retention, lost signals, resumes, media decoded, freezes.

    python bench/impaired.py                              # 12 clients x 2 min per profile
    python bench/impaired.py --clients 24 --minutes 5     # bigger
    python bench/impaired.py --profiles clean,harsh --json

Each profile runs the same scenario from scratch in one run, the clean baseline first:
``--clients`` SDK + aiortc participants in rooms of ``--room-size`` (one publisher of
320x240 VP8, the others subscribe), every one of them sending a numbered ``signal`` to every
other member of its room each ``--signal-every`` seconds, for ``--minutes``. The rooms are
set up on a clean network; then the profile's impairment starts and the window opens (retention
is about keeping established sessions).

* The server is a real ``switchboard serve`` process with its SFU and production heartbeat
  timings (10 s ±10 %, timeout 20 s adapting up to 40 s), dev mode on loopback.
* Signaling crosses the TCP fault proxy (tests/faultproxy.py): latency ± jitter each way, a
  bandwidth limit, and random outages — stalls (what a lost segment or a radio fade does to a
  TCP stream) and cuts (RST: a NAT rebinding), so clients have to resume.
* Media crosses a real coturn that clients reach only through the UDP impairment relay
  (tests/udp_impair.py, ``iceTransportPolicy: "relay"``): loss, Gilbert-Elliott bursts, delay,
  jitter, reordering, a bandwidth limit with a bounded queue, on both directions.

Reported per profile: sessions retained without a rejoin (%), numbered signals lost /
duplicated / out of order (must be 0), random outages (cuts), resumes with their latency
(Reconnecting → Resumed, p50 / p99), 4013 closes, video frames decoded (%) of those the
publishers sent in the window, freezes (> 500 ms without a decoded frame) per subscriber-minute,
and the SFU's NACK / RTX counters. Everything on loopback, bounded in clients and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The participants' waits (ICE, DTLS, first keyframe) scale with this; the machines these run on
# are shared and loaded, and a bench should not die of a slow setup.
os.environ.setdefault("SWITCHBOARD_TEST_TIME_SCALE", "3")

from sfu import aiortc_hooks
from signaling.core.backoff import Backoff
from signaling.turn.coturn import Profile, render
from tests.cluster.procs import NodeProcess, Processes
from tests.faultproxy import FaultProxy
from tests.media.impaired import (
    MEDIA_METRICS,
    ImpairedRooms,
    NetworkProfile,
    Outcome,
    parse_metrics,
    summary,
)
from tests.media.peers import LOOPBACK
from tests.netem import GilbertElliott, Impairment, OutageConfig
from tests.turn.conftest import Coturn, free_port, new_secret, run_coturn, settings_for
from tests.udp_impair import ImpairedUdpRelay

#: The seed's figure: connection retention at 200 ms RTT with 5 % packet loss.
SEED_RETENTION = 99.2


def profiles() -> dict[str, NetworkProfile]:
    mobile_media = Impairment(delay=0.1, jitter=0.01, loss=0.05, reorder=0.01, reorder_by=0.02, rate=250_000, queue=200)
    harsh_media = Impairment(
        delay=0.2, jitter=0.03, loss=0.045, bursts=GilbertElliott.bursts(0.06, 3.0), reorder=0.02, reorder_by=0.03,
        rate=125_000, queue=100,
    )
    return {
        "clean": NetworkProfile("clean"),
        # 200 ms RTT, 5 % media loss; TCP sees the loss as short stalls, and now and then a cut.
        "mobile": NetworkProfile(
            "mobile", latency=0.1, jitter=0.01, rate=64_000,
            outages=OutageConfig(every=15.0, shortest=0.2, longest=1.0, cuts=0.2),
            up=mobile_media, down=mobile_media,
        ),
        # 400 ms RTT, 10 % media loss in bursts, longer stalls and more cuts.
        "harsh": NetworkProfile(
            "harsh", latency=0.2, jitter=0.05, rate=16_000,
            outages=OutageConfig(every=8.0, shortest=0.4, longest=2.5, cuts=0.3),
            up=harsh_media, down=harsh_media,
        ),
    }


async def scrape(url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return parse_metrics(await response.text(), MEDIA_METRICS)


async def run_profile(profile: NetworkProfile, coturn: Coturn, args: argparse.Namespace, directory: Path) -> Outcome:
    relay = await ImpairedUdpRelay((LOOPBACK, coturn.port), up=Impairment(), down=Impairment(), seed=args.seed).start()
    procs = Processes(directory / profile.name)
    port = free_port()
    argv = [
        "serve", "--host", LOOPBACK, "--port", str(port), "--ice-host", LOOPBACK, "--ice-allow-peer", "127.0.0.0/8",
        "--turn", f"turn:{LOOPBACK}:{relay.port}?transport=udp", "--turn-secret", coturn.secrets[0],
        "--log-level", "warning",
    ]
    proxy: FaultProxy | None = None
    rooms: ImpairedRooms | None = None
    failed = True
    try:
        node = NodeProcess("server", argv, ready_url=f"http://{LOOPBACK}:{port}/readyz", log_path=procs.directory / "server.log")
        procs.started.append(node)
        await node.start(patience=120.0)  # a loaded machine can take a while to import aiortc
        proxy = await FaultProxy(port).start()
        proxy.rng = random.Random(args.seed)
        rooms = ImpairedRooms(
            proxy, relay, rooms=args.clients // args.room_size, size=args.room_size, signal_every=args.signal_every,
            backoff=lambda seed: Backoff(rng=random.Random(args.seed * 1000 + seed)), patience=60.0,
        )
        started = time.monotonic()
        await rooms.start()
        setup = time.monotonic() - started
        # Established sessions, then the network turns bad: retention is about keeping them.
        relay.set_impairment(up=profile.up, down=profile.down)
        proxy.latency, proxy.jitter, proxy.rate = profile.latency, profile.jitter, profile.rate
        metrics_url = f"http://{LOOPBACK}:{port}/metrics"
        before = await scrape(metrics_url)
        if profile.outages is not None:
            proxy.start_outages(profile.outages, random.Random(args.seed + 1))
        rooms.begin()
        await asyncio.sleep(args.minutes * 60)  # the measured window: a bench, not a test
        await rooms.end()
        await proxy.stop_outages()
        await rooms.drain()
        after = await scrape(metrics_url)
        outcome = rooms.outcome(profile.name, before, after)
        outcome.media["setup_s"] = round(setup, 1)
        failed = False
        return outcome
    finally:
        try:
            if rooms is not None:
                await rooms.close()
        except Exception as exc:  # a participant's task failed: say so, keep the figures
            print(f"   closing the rooms: {type(exc).__name__}: {exc}", flush=True)
        finally:
            if proxy is not None:
                await proxy.close()
            relay.close()
            await procs.close(show_logs=failed)
            if not failed:  # what the server had to say about media and heartbeats, briefly
                notes = [line for line in (procs.directory / "server.log").read_text(errors="replace").splitlines()
                         if any(word in line for word in ("reset", "failed", "4013", "timed out"))]
                for line in notes[:20]:
                    print(f"   server: {line[:240]}")


def table(outcomes: list[Outcome], profiles_: dict[str, NetworkProfile]) -> str:
    base = next((o for o in outcomes if o.profile == "clean"), None)
    rows = [
        "| profile | network | retained (no rejoin) | signals sent / lost / dup / reordered | outages (cuts) | resumes, p50 / p99 ms "
        "| 4013 | frames decoded | vs clean | freezes/min | NACKs → RTX served | media-failed sub / pub (silent closes) | media dropped up / down |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        s = summary(o)
        resumes = f"{o.resumes}" + (f", {s['resume_p50_ms']:.0f} / {s['resume_p99_ms']:.0f}" if o.resume_latencies else "")
        ratio = f"{o.decoded_share / base.decoded_share:.2f}x" if base and base.decoded_share else "—"
        up = o.media["relay_up_dropped"] / o.media["relay_up_seen"] if o.media["relay_up_seen"] else 0.0
        down = o.media["relay_down_dropped"] / o.media["relay_down_seen"] if o.media["relay_down_seen"] else 0.0
        rows.append(
            f"| {o.profile} | {profiles_[o.profile].describe()} | **{100 * o.retained_share:.1f} %** ({o.retained}/{o.clients}) "
            f"| {o.signals_sent} / **{o.signals_lost}** / **{o.signals_duplicated}** / {o.signals_out_of_order} "
            f"| {o.outages} ({o.cuts}) | {resumes} | {o.heartbeat_timeouts} | {100 * o.decoded_share:.1f} % | {ratio} "
            f"| {o.freezes_per_minute:.2f} | {s.get('sfu_nack_from_subscribers', 0):.0f} → {s.get('sfu_retransmissions_served', 0):.0f} "
            f"| {o.media_failed.get('subscriber', 0)} / {o.media_failed.get('publisher', 0)} ({o.subscriber_closed_silently}) "
            f"| {100 * up:.1f} % / {100 * down:.1f} % |"
        )
    return "\n".join(rows)


async def main(args: argparse.Namespace) -> int:
    aiortc_hooks.set_process_host_addresses((LOOPBACK,))
    chosen = profiles()
    names = [n.strip() for n in args.profiles.split(",") if n.strip()]
    unknown = [n for n in names if n not in chosen]
    if unknown:
        print(f"--profiles: unknown {', '.join(unknown)} (known: {', '.join(chosen)})", file=sys.stderr)
        return 2
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="impaired-bench-") as tmp:
        directory = Path(tmp)
        coturn = Coturn(port=free_port(), tls_port=None, secrets=(new_secret(),), directory=directory)
        with run_coturn(render(settings_for(Profile.TEST, coturn)), coturn) as running:
            for name in names:
                print(f"== {name}: {chosen[name].describe()} — {args.clients} clients, {args.minutes:g} min", flush=True)
                outcome = await run_profile(chosen[name], running, args, directory)
                print(json.dumps(summary(outcome) | {"setup_s": outcome.media.get("setup_s")}), flush=True)
                outcomes.append(outcome)
    print()
    print(table(outcomes, chosen))
    retained = min((100 * o.retained_share for o in outcomes), default=0.0)
    lost = sum(o.signals_lost + o.signals_duplicated for o in outcomes)
    print(f"\nworst retention {retained:.1f} % vs the seed's {SEED_RETENTION} %; signals lost or duplicated: {lost}")
    return 0 if retained >= SEED_RETENTION and lost == 0 else 1


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=12, help="participants per profile (default 12)")
    parser.add_argument("--room-size", type=int, default=4, help="participants per room, one publishes (default 4)")
    parser.add_argument("--minutes", type=float, default=2.0, help="measured minutes per profile (default 2)")
    parser.add_argument("--signal-every", type=float, default=1.0, help="seconds between numbered signals (default 1)")
    parser.add_argument("--profiles", default="clean,mobile,harsh", help="comma-separated: clean, mobile, harsh")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if not 2 <= args.room_size <= args.clients or args.clients > 64:
        parser.error("--room-size must be 2..--clients, and --clients at most 64")
    if not 0 < args.minutes <= 30:
        parser.error("--minutes must be in (0, 30]")
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
