"""Cluster-only code is loaded only by cluster nodes: a memory node (the embedded default) builds
its app without importing redis-py, the session ledger, its store or cross-node takeover. The
hub picks its session store from the backend (``signaling.server.hub._store``) and imports the ledger's
only when the backend is clustered."""

from __future__ import annotations

import subprocess
import sys

CLUSTER_ONLY = (
    "redis",
    "signaling.cluster.ledger",
    "signaling.cluster.redis_backend",
    "signaling.server.ledger_store",
    "signaling.cluster.remote_media",
    "signaling.server.takeover",
)

PROGRAM = """
import sys
from signaling.core.config import ServerConfig
from signaling.server.app import build_app
build_app(ServerConfig(sfu=False))
assert "signaling.server.hub" in sys.modules and "signaling.server.store" in sys.modules
print(" ".join(sorted(sys.modules)))
"""


def test_a_memory_node_loads_no_cluster_module() -> None:
    # A fresh interpreter: this test session has loaded the cluster modules long ago.
    run = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60, check=True)
    loaded = set(run.stdout.split())
    assert "signaling.server.hub" in loaded
    assert not [m for m in loaded if m.split(".")[0] == "redis" or m in CLUSTER_ONLY]
