"""``check_sdp`` searches the whole text at once; it must judge exactly as the plain per-line
loop it replaced (kept here as the reference), message included."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signaling.core.sdpcheck import SdpError, check_sdp

_LINE = re.compile(r"^[a-z]=[^\x00-\x08\x0a-\x1f\x7f]*$")


def reference(sdp: str, *, max_lines: int) -> None:
    lines = sdp.replace("\r\n", "\n").rstrip("\n").split("\n")
    if len(lines) > max_lines:
        raise SdpError(f"SDP has {len(lines)} lines, limit {max_lines}")
    if lines[0] != "v=0":
        raise SdpError("SDP must start with v=0")
    for number, line in enumerate(lines, 1):
        if not _LINE.match(line):
            raise SdpError(f"SDP line {number} is not <letter>=<value>: {line[:40]!r}")
    missing = {"o", "s", "t", "m"} - {line[0] for line in lines}
    if missing:
        raise SdpError(f"SDP lacks {', '.join(sorted(missing))}= lines")


def verdict(check: object, sdp: str) -> str | None:
    try:
        check(sdp, max_lines=12)  # type: ignore[operator]
    except SdpError as exc:
        return str(exc)
    return None


VALID = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
lines = st.one_of(
    st.sampled_from(["v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", "m=audio 9 RTP 0", "a=mid:0", "a=x\ty", ""]),
    st.text(alphabet="av=mx\t\r\n\x00\x0b\x1f\x7f\x85\u2028 Z", max_size=8),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(lines, max_size=14), st.sampled_from(["\r\n", "\n", "\r"]), st.booleans())
def test_same_verdict_as_the_per_line_loop(parts: list[str], end: str, trailing: bool) -> None:
    sdp = end.join(parts) + (end if trailing else "")
    assert verdict(check_sdp, sdp) == verdict(reference, sdp)


@pytest.mark.parametrize(
    "sdp",
    [VALID, VALID.rstrip(), VALID.replace("\r\n", "\n"), "", "v=0", "v=0\r\n", VALID + "\r\n\r\n",
     VALID.replace("s=-", "s=\x1b[2J"), VALID.replace("a=mid:0", "a=mid:0\rb=x"), VALID + "bad line\r\n",
     VALID.replace("m=audio", "M=audio"), "v=0\n" + "a=x\n" * 20],
)
def test_same_verdict_on_known_cases(sdp: str) -> None:
    assert verdict(check_sdp, sdp) == verdict(reference, sdp)
