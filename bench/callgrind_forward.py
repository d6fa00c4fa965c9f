"""Instructions per forwarded packet, counted by valgrind's callgrind (noise-free).

    python bench/callgrind_forward.py [--packets 400 --subscribers 4]   # a few minutes

Runs ``bench/forward_path.py --trace-only`` under ``valgrind --tool=callgrind
--instr-atstart=no`` once per mode: aiortc's send path (``slow``: RtpPacket, serialize, the
``_send_rtp`` coroutine chain), the fast path, and the floor (libsrtp protect + ``sendto`` of
the same packets). The process switches collection on (``callgrind_control -i on``) right
before pushing the fixed trace and off right after, so setup (imports, ICE, DTLS) and its
timer-dependent noise are not counted: the total divided by the packets forwarded is the
instruction count per forwarded packet, independent of machine load.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def instructions(packets: int, subscribers: int, mode: str) -> tuple[int, int]:
    """(instructions counted while the trace was pushed, packets forwarded)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        command = [
            "valgrind", "--tool=callgrind", "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            sys.executable, os.path.join(HERE, "forward_path.py"), "--callgrind",
            "--trace-only", str(packets), "--built", str(packets),
            "--subscribers", str(subscribers),
        ]
        if mode != "fast":
            command.append(f"--{mode}")
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
        if done.returncode != 0:
            sys.exit(f"callgrind run failed:\n{done.stdout}\n{done.stderr[-3000:]}")
        forwarded = int(re.findall(r"^(?:FORWARD|FLOOR) (\d+)$", done.stdout, re.M)[-1])
        with open(out) as f:
            text = f.read()
        # ``totals`` counts what was collected; ``summary`` stays 0 when collection is toggled.
        match = re.search(r"^totals: (\d+)", text, re.M) or re.search(r"^summary: (\d+)", text, re.M)
        if match is None:
            sys.exit("no instruction total in the callgrind output")
        return int(match.group(1)), forwarded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=400)
    parser.add_argument("--subscribers", type=int, default=4)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    n = args.subscribers
    results = {}
    for name, mode in (("slow path", "slow"), ("fast path", "fast"), ("floor", "floor")):
        total, count = instructions(args.packets, n, mode)
        results[name] = total / count
        print(
            f"{name:>16}: {results[name]:>10,.0f} instructions per forwarded packet "
            f"({count} packets forwarded: {args.packets} to {n} subscribers)",
            flush=True,
        )
    for name in ("slow path", "fast path"):
        ratio = results[name] / results["floor"]
        print(f"{name:>16}: {ratio:.2f}x the floor (instructions)")
    print(f"{'fast / slow':>16}: {results['fast path'] / results['slow path']:.2f}x")


if __name__ == "__main__":
    main()
