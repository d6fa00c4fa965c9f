"""Which grant each client message needs (the hub refuses with ``forbidden`` before relaying)."""

from __future__ import annotations

import pytest

from signaling.core.auth import ALL_GRANTS, missing_grant
from signaling.core.protocol import (
    Ack,
    Candidate,
    ClientMessage,
    Data,
    Leave,
    Pong,
    Publish,
    Signal,
    SubscriberAnswer,
    TrackState,
    Unpublish,
)

NEEDS = [
    (Signal("p", {}, 1), "signal"),
    (Publish(1, "v=0"), "publish"),
    (Unpublish(1, "t"), "publish"),
    (TrackState(1, "t", True), "publish"),
    (SubscriberAnswer(1, "v=0"), "subscribe"),
    (Candidate(1, "publisher", None), "publish"),
    (Candidate(1, "subscriber", None), "subscribe"),
    (Data(1, "chat", "hi"), "data"),
]


@pytest.mark.parametrize(("message", "grant"), NEEDS)
def test_each_message_needs_its_grant(message: ClientMessage, grant: str) -> None:
    assert missing_grant(message, frozenset()) == grant
    assert missing_grant(message, frozenset({grant})) is None
    assert missing_grant(message, ALL_GRANTS - {grant, "signal"}) == grant


def test_signal_allows_data_too() -> None:
    assert missing_grant(Data(1, "chat", "hi"), frozenset({"signal"})) is None


@pytest.mark.parametrize("message", [Ack(1), Pong(1.0), Leave()])
def test_session_housekeeping_needs_no_grant(message: ClientMessage) -> None:
    assert missing_grant(message, frozenset()) is None
