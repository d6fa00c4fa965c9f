"""A replicated Redis on loopback: one primary, one replica, three sentinels (real processes).

Sentinel timings are short so a failover takes a couple of seconds: ``down-after-milliseconds``
1000 (a primary is subjectively down after 1 s without a reply), quorum 2, ``failover-timeout``
2000. Servers may run with AOF (``appendonly yes``) in their own directory, so a whole-Redis
restart keeps the data. Every wait polls a condition under a deadline.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.backend.conftest import _free_port

SERVICE = "mymaster"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 2000
LOOPBACK = "127.0.0.1"


def _command(port: int, *args: str, timeout: float = 1.0) -> str:
    """One RESP command over a raw socket; the raw reply text ('' if unreachable)."""
    payload = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as s:
            s.sendall(payload.encode())
            chunks = []
            s.settimeout(timeout)
            while True:
                data = s.recv(65536)
                chunks.append(data)
                if not data or len(data) < 65536:
                    break
            return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""


def _exe(name: str) -> str:
    exe = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)
    if exe is None:
        raise RuntimeError(f"{name} is not installed: `apt-get install redis-server redis-sentinel`")
    return exe


@dataclass
class Proc:
    """One redis-server or redis-sentinel process with a fixed port (restartable on it)."""

    name: str
    port: int
    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_within: float = 20.0) -> None:
        assert self.proc is None
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + ready_within
        while not _command(self.port, "PING").startswith("+PONG"):
            if self.proc.poll() is not None:
                self.proc = None
                raise RuntimeError(f"{self.name} exited at start:\n{self.log.read_text(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not answering on {self.port} after {ready_within} s")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: a crash."""
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: the process holds its connections but answers nothing (a stalled replica)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass
class RedisHA:
    """Primary + replica + 3 sentinels under ``directory``; ``url`` is the Sentinel URL."""

    directory: Path
    aof: bool = False
    servers: list[Proc] = field(default_factory=list)
    sentinels: list[Proc] = field(default_factory=list)

    @property
    def url(self) -> str:
        hosts = ",".join(f"{LOOPBACK}:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def _server(self, name: str, replica_of: int | None) -> Proc:
        port = _free_port()
        data = self.directory / name
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            _exe("redis-server"), "--port", str(port), "--bind", LOOPBACK, "--dir", str(data), "--save", "",
            "--appendonly", "yes" if self.aof else "no", "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction",
            "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
        ]
        if replica_of is not None:
            argv += ["--replicaof", LOOPBACK, str(replica_of)]
        return Proc(name, port, argv, self.directory / f"{name}.log")

    def start(self) -> None:
        primary = self._server("redis-a", None)
        primary.start()
        replica = self._server("redis-b", primary.port)
        replica.start()
        self.servers = [primary, replica]
        for i in range(3):
            port = _free_port()
            conf = self.directory / f"sentinel-{i}.conf"
            conf.write_text(
                f"port {port}\nbind {LOOPBACK}\ndir {self.directory}\n"
                f"sentinel monitor {SERVICE} {LOOPBACK} {primary.port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            sentinel = Proc(f"sentinel-{i}", port, [_exe("redis-sentinel"), str(conf)], self.directory / f"sentinel-{i}.log")
            sentinel.start()
            self.sentinels.append(sentinel)
        self.wait_settled(primary.port)

    def primary_port(self) -> int | None:
        """The primary's port as the sentinels agree on it (None: no agreement yet)."""
        seen = set()
        for s in self.sentinels:
            reply = _command(s.port, "SENTINEL", "get-master-addr-by-name", SERVICE)
            parts = [line for line in reply.split("\r\n") if line and not line.startswith(("*", "$"))]
            seen.add(int(parts[1]) if len(parts) == 2 and parts[1].isdigit() else None)
        return seen.pop() if len(seen) == 1 else None

    def server(self, port: int) -> Proc:
        return next(s for s in self.servers if s.port == port)

    def _sentinel_count(self, key: str, sentinel: Proc) -> int:
        reply = _command(sentinel.port, "SENTINEL", key, SERVICE)
        return int(reply[1:].split("\r\n", 1)[0]) if reply.startswith("*") else -1

    def wait_settled(self, primary: int, within: float = 30.0) -> None:
        """Until every sentinel names ``primary``, knows the other two sentinels and a replica
        whose link is up: only then can a failover happen."""
        deadline = time.monotonic() + within
        replica = next(s for s in self.servers if s.port != primary)
        while True:
            ok = self.primary_port() == primary and all(
                self._sentinel_count("sentinels", s) == 2 and self._sentinel_count("replicas", s) >= 1 for s in self.sentinels
            ) and "master_link_status:up" in _command(replica.port, "INFO", "replication")
            if ok:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"sentinels did not settle on {primary} within {within} s")
            time.sleep(0.05)

    def wait_failover(self, old: int, within: float = 30.0) -> int:
        """Until the sentinels agree on a primary other than ``old``; its port."""
        deadline = time.monotonic() + within
        while True:
            port = self.primary_port()
            if port is not None and port != old and "role:master" in _command(port, "INFO", "replication"):
                return port
            if time.monotonic() > deadline:
                raise RuntimeError(f"no failover away from {old} within {within} s")
            time.sleep(0.02)

    def close(self) -> None:
        for proc in [*self.sentinels, *self.servers]:
            with contextlib.suppress(Exception):
                proc.stop()

    def logs(self) -> str:
        out = []
        for proc in [*self.servers, *self.sentinels]:
            with contextlib.suppress(OSError):
                out.append(f"===== {proc.name}:{proc.port}\n{proc.log.read_text(errors='replace')[-3000:]}")
        return "\n".join(out)
