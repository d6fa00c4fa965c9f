"""What the input checks cost for the largest answers the limits let through.

    python bench/sdp_limits.py              # 2,000 rounds per size
    python bench/sdp_limits.py --rounds 200

For Chromium-shaped subscriber answers (tests/chromium_sdp.py) of 2 m-sections (the baseline:
one publisher's camera and microphone), 198 (a full room of cameras and microphones) and 250
(the room track limit), times in one process, on the CPU clock, what the hub and the SFU do to a
``subscriber-answer`` before aiortc parses it: ``protocol.parse`` (size, JSON, schema),
``sdpcheck.check_sdp`` (line grammar) and ``CandidatePolicy.filter_sdp``. Prints microseconds per
answer and the ratio to the baseline. Asserts nothing; no network.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sfu.candidate_policy import CandidatePolicy
from signaling.core import protocol
from signaling.core.config import LimitsConfig, SecurityConfig
from signaling.core.sdpcheck import check_sdp
from tests.chromium_sdp import chromium_answer
from tests.unit.test_media_limits import sfu_offer


def per_answer_us(sections: int, rounds: int) -> tuple[float, float, float, int]:
    answer = chromium_answer(sfu_offer(sections))
    frame = json.dumps({"type": "subscriber-answer", "cseq": 1, "sdp": answer}, separators=(",", ":"))
    limits, security, policy = LimitsConfig(), SecurityConfig(), CandidatePolicy()
    timings = []
    for step in ("parse", "check", "filter"):
        start = time.process_time()
        for _ in range(rounds):
            if step == "parse":
                protocol.parse(frame, max_bytes=limits.max_message_bytes, max_signal_bytes=limits.max_signal_bytes)
            elif step == "check":
                check_sdp(answer, max_lines=security.max_sdp_lines)
            else:
                policy.filter_sdp(answer)
        timings.append((time.process_time() - start) / rounds * 1e6)
    return timings[0], timings[1], timings[2], len(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    baseline = None
    print(f"{'m-sections':>10} {'frame B':>9} {'parse us':>9} {'check us':>9} {'filter us':>9} {'total us':>9} {'x baseline':>10}")
    for sections in (2, 198, 250):
        parse, check, filt, size = per_answer_us(sections, max(1, args.rounds if sections == 2 else args.rounds // 20))
        total = parse + check + filt
        baseline = baseline or total
        print(f"{sections:>10} {size:>9} {parse:>9.0f} {check:>9.0f} {filt:>9.0f} {total:>9.0f} {total / baseline:>10.1f}")


if __name__ == "__main__":
    main()
