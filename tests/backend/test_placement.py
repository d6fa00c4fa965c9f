"""The pure placement policy: no Redis, no I/O."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from signaling.cluster.registry import NodeInfo, choose_node, utilisation


def sfu(node_id: str, capacity: int = 10, load: float = 0, draining: bool = False) -> NodeInfo:
    return NodeInfo(node_id, "sfu", f"http://{node_id}", capacity, load, draining)


def test_least_loaded_wins() -> None:
    nodes = [sfu("a"), sfu("b"), sfu("c")]
    assert choose_node(nodes, {"a": 3, "b": 1, "c": 2}) == "b"


def test_utilisation_not_room_count_balances_unequal_nodes() -> None:
    # 4 of 10 is fuller than 6 of 20.
    assert choose_node([sfu("small", 10), sfu("big", 20)], {"small": 4, "big": 6}) == "big"


def test_reported_load_counts_when_higher_than_placements() -> None:
    assert choose_node([sfu("a", load=8), sfu("b")], {"a": 1, "b": 3}) == "b"


def test_full_draining_and_signaling_nodes_are_skipped() -> None:
    nodes = [
        sfu("full", capacity=2),
        sfu("reports-full", capacity=5, load=5),
        sfu("draining", draining=True),
        NodeInfo("sig", "signaling", "http://sig", 100),
        sfu("zero", capacity=0),
    ]
    assert choose_node(nodes, {"full": 2}) is None
    assert choose_node([*nodes, sfu("ok")], {"full": 2, "ok": 9}) == "ok"


def test_ties_break_on_id_so_the_choice_is_deterministic() -> None:
    assert choose_node([sfu("b"), sfu("a"), sfu("c")], {}) == "a"


def test_no_nodes_no_choice() -> None:
    assert choose_node([], {}) is None


nodes_st = st.lists(
    st.builds(
        sfu,
        st.sampled_from(["a", "b", "c", "d", "e"]),
        capacity=st.integers(0, 5),
        load=st.integers(0, 6),
        draining=st.booleans(),
    ),
    unique_by=lambda n: n.id,
)


@given(nodes=nodes_st, placed=st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e"]), st.integers(0, 6)))
def test_the_choice_is_eligible_and_minimal(nodes: list[NodeInfo], placed: dict[str, int]) -> None:
    eligible = [n for n in nodes if not n.draining and n.capacity > 0 and max(placed.get(n.id, 0), n.load) < n.capacity]
    choice = choose_node(nodes, placed)
    if not eligible:
        assert choice is None
        return
    chosen = next(n for n in eligible if n.id == choice)
    assert all(utilisation(chosen, placed.get(chosen.id, 0)) <= utilisation(n, placed.get(n.id, 0)) for n in eligible)


@given(nodes=nodes_st, rooms=st.integers(0, 40))
def test_placing_one_room_at_a_time_never_exceeds_capacity(nodes: list[NodeInfo], rooms: int) -> None:
    placed: dict[str, int] = {}
    for _ in range(rooms):
        choice = choose_node(nodes, placed)
        if choice is None:
            break
        placed[choice] = placed.get(choice, 0) + 1
    for node in nodes:
        assert placed.get(node.id, 0) == 0 or placed[node.id] <= node.capacity
    room_left = any(not n.draining and max(placed.get(n.id, 0), n.load) < n.capacity for n in nodes)
    assert sum(placed.values()) == rooms or not room_left


def test_node_info_round_trips_through_json() -> None:
    info = NodeInfo("n", "sfu", "http://10.0.0.1:8081", 12, 3.5, True)
    assert NodeInfo.from_json(info.to_json()) == info
