"""The Python SDK's pure session core, without sockets (the shell is tested in tests/integration).

Timeline comments use the caller's clock in seconds.
"""

from __future__ import annotations

from typing import Any

import pytest

from signaling.client.core import ClientSession, Inbound, Welcome, WindowFull, close_action
from signaling.core.codes import ClientAction, Close


def welcome(seq: int = 0, *, session: str = "s_1", peer: str = "p_1", **extra: Any) -> dict[str, Any]:
    return {"type": "welcome", "seq": seq, "session": session, "resume_token": "tok", "peer": peer, **extra}


def joined(**kwargs: Any) -> ClientSession:
    core = ClientSession(**kwargs)
    assert core.welcomed(welcome(), resuming=False) == (Welcome.JOINED, 0)
    return core


# -- inbound: seq, duplicates, gaps -------------------------------------------------------------


def test_in_order_messages_are_accepted_and_duplicates_dropped() -> None:
    core = joined()
    assert [core.receive(s, room=True, now=0) for s in (1, 2, 3)] == [Inbound.ACCEPT] * 3
    assert core.receive(2, room=True, now=0) is Inbound.DUPLICATE
    assert core.receive(3, room=True, now=0) is Inbound.DUPLICATE
    assert core.last_seq == 3


def test_a_skipped_seq_is_a_gap_and_does_not_advance() -> None:
    core = joined()
    core.receive(1, room=True, now=0)
    assert core.receive(3, room=True, now=0) is Inbound.GAP
    assert core.last_seq == 1
    assert core.join_resume() == {"session": "s_1", "token": "tok", "last_seq": 1}


def test_unstamped_messages_are_always_accepted_even_without_room() -> None:
    core = joined()
    assert core.receive(None, room=False, now=0) is Inbound.ACCEPT
    assert not core.lagging


# -- acknowledgements ---------------------------------------------------------------------------


def test_ack_after_ack_every_messages_at_once() -> None:
    core = joined(ack_every=3, ack_delay=10.0)
    for seq in (1, 2):
        core.receive(seq, room=True, now=0)
        assert core.ack_due(0) is None
    core.receive(3, room=True, now=0)
    assert core.ack_due(0) == 3
    assert core.ack_due(0) is None  # nothing new
    assert core.ack_deadline is None


def test_ack_after_the_delay_when_traffic_stops() -> None:
    core = joined(ack_every=100, ack_delay=0.05)
    core.receive(1, room=True, now=1.0)  # t=1.0: first unacknowledged message
    core.receive(2, room=True, now=1.02)
    assert core.ack_deadline == pytest.approx(1.05)
    assert core.ack_due(1.04) is None
    assert core.ack_due(1.05) == 2  # t=1.05: the delay has passed
    core.receive(3, room=True, now=2.0)  # a new deadline starts with the next message
    assert core.ack_deadline == pytest.approx(2.05)


# -- the application lags: hold, never evict, replay ---------------------------------------------


class ReplayingServer:
    """The server's side of the contract, reduced to its replay buffer: every stamped message is
    kept until acknowledged (an ack, or ``last_seq`` on resume) and replayed after it."""

    def __init__(self) -> None:
        self.stamped: list[int] = []
        self.acked = 0

    def stamp(self, n: int) -> list[int]:
        first = len(self.stamped) + 1
        self.stamped.extend(range(first, first + n))
        return list(range(first, first + n))

    def ack(self, seq: int) -> None:
        assert seq <= len(self.stamped), "acknowledged a message never sent"
        self.acked = max(self.acked, seq)

    def resume(self, last_seq: int) -> list[int]:
        assert last_seq >= self.acked, "the client acknowledged what it then asked for again"
        self.ack(last_seq)
        return [s for s in self.stamped if s > last_seq]


def test_app_never_reads_link_stays_alive_nothing_lost() -> None:
    """The application stops reading with 4 events of room: the client keeps answering every
    ping, acknowledges only the 4 it handed over, holds the rest; once the application read its
    events the resume replays the held ones: all 50, in order, once."""
    core = joined(ack_every=2, ack_delay=0.05, max_unconfirmed=8)
    server = ReplayingServer()
    app: list[int] = []  # events handed to the application (its buffer)
    limit = 4
    now = 0.0

    def deliver(seqs: list[int]) -> None:
        nonlocal now
        for seq in seqs:
            now += 0.01
            if core.receive(seq, room=len(app) < limit, now=now) is Inbound.ACCEPT:
                app.append(seq)
            ack = core.ack_due(now)
            if ack is not None:
                server.ack(ack)

    deliver(server.stamp(50))
    assert app == [1, 2, 3, 4]
    assert core.lagging and core.held == 46
    assert server.acked <= 4  # nothing held was acknowledged: the server still has it
    # The link stays alive: pings keep being answered (and confirm as usual) while lagging.
    for t in range(100):
        pong = core.ping({"type": "ping", "t": t, "last_cseq": 0})
        assert pong == {"type": "pong", "t": t}
    deliver(server.stamp(10))  # more arrives while the app still does not read: held too
    assert app == [1, 2, 3, 4] and core.held == 56

    read: list[int] = []
    while core.lagging or app or core.last_seq < len(server.stamped):
        read.extend(app)
        app.clear()  # the application catches up; the shell resumes
        resume = core.join_resume()
        assert resume is not None
        replay = server.resume(resume["last_seq"])
        assert core.welcomed(welcome(session="s_1", resumed=True, last_cseq=0), resuming=True) == (Welcome.RESUMED, 0)
        assert not core.lagging
        deliver(replay)
    read.extend(app)
    assert read == list(range(1, 61))


def test_a_full_buffer_holds_even_in_order_messages_until_the_resume() -> None:
    core = joined()
    core.receive(1, room=False, now=0)
    assert core.receive(2, room=True, now=0) is Inbound.HELD  # 1 is missing: wait for the replay
    assert core.last_seq == 0


# -- outbound cseq window ------------------------------------------------------------------------


def test_cseq_window_bounds_unconfirmed_messages() -> None:
    core = joined(max_unconfirmed=2)
    assert core.stamp({"type": "signal"})["cseq"] == 1
    assert core.stamp({"type": "signal"})["cseq"] == 2
    assert not core.window_open
    with pytest.raises(WindowFull):
        core.stamp({"type": "signal"})
    core.ping({"type": "ping", "t": 1, "last_cseq": 1})
    assert core.window_open and core.unconfirmed_count == 1
    assert core.unconfirmed(0) == {"type": "signal", "cseq": 2}
    assert core.unconfirmed(1) is None


def test_resume_confirms_from_the_welcome_and_keeps_the_rest_for_resending() -> None:
    core = joined()
    for _ in range(3):
        core.stamp({"type": "signal"})
    assert core.welcomed(welcome(resumed=True, last_cseq=2), resuming=True) == (Welcome.RESUMED, 0)
    assert [core.unconfirmed(0)] == [{"type": "signal", "cseq": 3}]


def test_rejoin_starts_seq_and_cseq_over_and_counts_the_dropped() -> None:
    core = joined()
    core.receive(1, room=True, now=0)
    core.stamp({"type": "signal"})
    core.stamp({"type": "signal"})
    assert core.closed(Close.SESSION_UNKNOWN.code) is ClientAction.REJOIN
    assert core.join_resume() is None
    assert core.welcomed(welcome(5, session="s_2", peer="p_2"), resuming=False) == (Welcome.REJOINED, 2)
    assert (core.last_seq, core.acked, core.unconfirmed_count) == (5, 0, 0)
    assert core.stamp({"type": "signal"})["cseq"] == 1
    assert core.join_resume() == {"session": "s_2", "token": "tok", "last_seq": 5}


# -- close code -> action ------------------------------------------------------------------------


@pytest.mark.parametrize("entry", Close.all(), ids=lambda e: e.name)
def test_every_close_code_maps_to_its_table_action(entry: Any) -> None:
    assert close_action(entry.code) is entry.action


@pytest.mark.parametrize(
    ("code", "action"),
    [(None, ClientAction.RESUME_BACKOFF), (4999, ClientAction.FATAL), (4000, ClientAction.FATAL),
     (1006, ClientAction.RESUME_BACKOFF), (3000, ClientAction.RESUME_BACKOFF)],
)
def test_codes_outside_the_table(code: int | None, action: ClientAction) -> None:
    assert close_action(code) is action


def test_reconnect_rejoin_forgets_the_session_and_resume_keeps_it() -> None:
    core = joined()
    assert core.closed(Close.GOING_AWAY.code) is ClientAction.RESUME_NOW
    assert core.resumable
    assert core.closed(Close.GOING_AWAY.code, reconnect_mode="rejoin") is ClientAction.REJOIN
    assert not core.resumable


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="ack_every"):
        ClientSession(ack_every=0)
