"""The shared client-session vectors (tests/vectors/client_session.json) against the Python SDK's
pure session, :class:`signaling.client.core.ClientSession`. static/test/vectors.test.mjs runs the
same file against the JS SDK, so the two SDKs follow one set of rules (seq, duplicates, gaps, the
ack policy, the cseq window, close code → action)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from signaling.client.core import ClientSession, Inbound, Welcome, WindowFull, close_action
from signaling.core.codes import Close

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "client_session.json").read_text())


def test_the_close_actions_cover_every_close_code() -> None:
    listed = {code for code, _ in VECTORS["close_actions"]}
    assert {c.code for c in Close.all()} <= listed
    assert None in listed


@pytest.mark.parametrize(("code", "action"), VECTORS["close_actions"])
def test_close_action(code: int | None, action: str) -> None:
    assert close_action(code).value == action


class Driver:
    """Plays a session's steps: time in ms (the core takes the caller's clock), acks sent when
    due as the shell sends them (after each message, and at the ack deadline)."""

    def __init__(self, options: dict[str, int]) -> None:
        self.core = ClientSession(ack_every=options["ack_every"], ack_delay=options["ack_delay_ms"],
                                  max_unconfirmed=options["max_unconfirmed"])
        self.now = 0.0
        self.acks: list[int] = []
        self.resuming = False
        self.resent: list[int] = []

    def wait(self, ms: float) -> None:
        end = self.now + ms
        while (deadline := self.core.ack_deadline) is not None and deadline <= end:
            self.now = max(self.now, deadline)
            self._ack()
        self.now = end

    def _ack(self) -> None:
        seq = self.core.ack_due(self.now)
        if seq is not None:
            self.acks.append(seq)

    def unconfirmed(self) -> list[int]:
        return [self.core.unconfirmed(i)["cseq"] for i in range(self.core.unconfirmed_count)]  # type: ignore[index]

    def step(self, step: dict[str, Any]) -> None:
        core = self.core
        self.wait(step.get("wait", 0))
        if "welcome" in step:
            self.acks = []  # a new connection
            kind, dropped = core.welcomed(step["welcome"], resuming=self.resuming, now=self.now)
            assert kind is Welcome(step["expect"])
            self.resent = self.unconfirmed() if kind is Welcome.RESUMED else []
            if "expect_dropped" in step:
                assert dropped == step["expect_dropped"]
        elif "receive" in step:
            verdict = core.receive(step["receive"], room=True, now=self.now)
            assert verdict is Inbound(step["expect"])
            if verdict is Inbound.ACCEPT:
                self._ack()
        elif "send" in step:
            if step.get("expect") == "window-full":
                with pytest.raises(WindowFull):
                    core.stamp(step["send"])
            else:
                assert core.stamp(step["send"])["cseq"] == step["expect_cseq"]
        elif "ping" in step:
            pong = core.ping(step["ping"])
            if "expect_pong" in step:
                assert pong == step["expect_pong"]
        elif "close" in step:
            close = step["close"]
            if isinstance(close, str):
                action = core.closed(None, reconnect_mode=close.removeprefix("reconnect:"))
            else:
                action = core.closed(close)
            assert action.value == step["expect_action"]
            if "expect_resume" in step:
                assert core.join_resume() == step["expect_resume"]
            self.resuming = core.join_resume() is not None
        if "expect_acks" in step:
            assert self.acks == step["expect_acks"]
        if "expect_last_seq" in step:
            assert core.last_seq == step["expect_last_seq"]
        if "expect_unconfirmed" in step:
            assert self.unconfirmed() == step["expect_unconfirmed"]
        if "expect_resent" in step:
            assert self.resent == step["expect_resent"]


@pytest.mark.parametrize("session", VECTORS["sessions"], ids=[s["name"] for s in VECTORS["sessions"]])
def test_session(session: dict[str, Any]) -> None:
    driver = Driver(VECTORS["options"])
    for index, step in enumerate(session["steps"]):
        try:
            driver.step(step)
        except AssertionError as exc:
            raise AssertionError(f"step {index}: {json.dumps(step)}") from exc
