"""How the session ledger batches its writes into script calls (pure)."""

from __future__ import annotations

from signaling.cluster.ledger import Put, group_writes


def put(session: str, seq: int = 0) -> Put:
    return Put(session, "{}", "t", frames=[(seq, "f")] if seq else [])


def drop(session: str) -> Put:
    return Put(session, "", "", drop=True)


def test_writes_of_one_session_share_a_call_and_sessions_keep_their_own_order() -> None:
    batch = [put("a", 1), put("b", 1), put("a", 2), put("b", 2), put("a", 3)]
    assert group_writes(batch) == [[0, 2, 4], [1, 3]]


def test_a_drop_is_its_own_call_and_later_writes_start_a_new_one() -> None:
    batch = [put("a", 1), drop("a"), put("a", 1), put("b", 1), put("a", 2)]
    assert group_writes(batch) == [[0], [1], [2, 4], [3]]


def test_every_item_is_in_exactly_one_group() -> None:
    batch = [put(s, n) for n in range(1, 20) for s in "xyz"] + [drop("y"), put("y", 1)]
    indexes = sorted(i for g in group_writes(batch) for i in g)
    assert indexes == list(range(len(batch)))
