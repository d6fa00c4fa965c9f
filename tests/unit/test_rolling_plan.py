"""The pure half of ``switchboard admin rolling-restart``: which nodes, in which order, and the
restart command each one gets (operator mistakes refused before anything is touched)."""

from __future__ import annotations

import pytest

from signaling.tools.rolling import PlanError, Target, plan, render

NODES = [
    {"node": "sfu-b", "kind": "sfu", "address": "http://10.0.0.9:9100", "load": 1},
    {"node": "sig-2", "kind": "signaling", "address": "http://10.0.0.2:8080/"},
    {"node": "sfu-a", "kind": "sfu", "address": "http://10.0.0.8:9100"},
    {"node": "sig-1", "kind": "signaling", "address": "http://10.0.0.1:8080"},
]


def test_signaling_nodes_first_then_sfu_nodes_each_by_id() -> None:
    assert [(t.node, t.kind) for t in plan(NODES)] == [
        ("sig-1", "signaling"), ("sig-2", "signaling"), ("sfu-a", "sfu"), ("sfu-b", "sfu"),
    ]
    assert plan(NODES)[1].address == "http://10.0.0.2:8080"  # trailing slash dropped


def test_only_keeps_the_order_given_and_drops_repeats() -> None:
    assert [t.node for t in plan(NODES, only=["sfu-b", "sig-2", "sfu-b"])] == ["sfu-b", "sig-2"]


def test_unknown_nodes_and_lone_nodes_are_refused() -> None:
    with pytest.raises(PlanError, match=r"--only: no live node sig-9 .*known: sfu-a, sfu-b, sig-1, sig-2"):
        plan(NODES, only=["sig-9"])
    lone = [n for n in NODES if n["node"] != "sig-2"]
    with pytest.raises(PlanError, match=r"only one live signaling node \(sig-1\).*resume"):
        plan(lone)
    # Restarting only the SFU nodes of that cluster is fine: its lone signaling node stays.
    assert [t.node for t in plan(lone, only=["sfu-a", "sfu-b"])] == ["sfu-a", "sfu-b"]
    with pytest.raises(PlanError, match="only one live sfu node"):
        plan([n for n in NODES if n["node"] != "sfu-b"], only=["sfu-a"])
    # Malformed registry entries are skipped, not trusted.
    assert [t.node for t in plan([*NODES, {"node": 3, "kind": "sfu"}, {"node": "x", "kind": "db", "address": "a"}])] == [
        "sig-1", "sig-2", "sfu-a", "sfu-b",
    ]


def test_render_fills_placeholders_shell_quoted() -> None:
    target = Target("sig-1", "signaling", "http://10.0.0.1:8080")
    assert render("systemctl restart switchboard@{node}", target) == "systemctl restart switchboard@sig-1"
    assert render("ssh {host} restart {kind} {port} {address}", target) == "ssh 10.0.0.1 restart signaling 8080 http://10.0.0.1:8080"
    hostile = Target("a; rm -rf /", "sfu", "http://h:1")
    assert render("restart {node}", hostile) == "restart 'a; rm -rf /'"
    assert render("no placeholders {{literal}}", target) == "no placeholders {literal}"


@pytest.mark.parametrize(("template", "message"), [
    ("restart {name}", "unknown placeholder {name}"),
    ("restart {0}", "unknown placeholder {0}"),
    ("restart {node", "--restart-cmd: "),
])
def test_render_refuses_bad_templates(template: str, message: str) -> None:
    with pytest.raises(PlanError, match=message.replace("{", "\\{").replace("}", "\\}")):
        render(template, Target("n", "sfu", "http://h:1"))
