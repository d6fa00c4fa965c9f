"""SFU worker processes: ``switchboard serve --sfu-workers N`` (one SFU process per core).

The serve process runs no SFU itself: it starts N worker processes, each one
:class:`sfu.service.Sfu` behind the same :class:`~signaling.cluster.sfu_node.RpcExecutor` as an SFU node
of a cluster, and places rooms on them with the cluster's placement code. Media calls of the hub
go through :class:`~signaling.cluster.remote_media.RemoteMedia` as in a cluster, with two local pieces
instead of Redis:

- :class:`signaling.server.local_rpc.LocalRegistry`: the workers are the SFU nodes, alive while their
  socket is connected; rooms are placed by ``choose_node`` (least utilised, capacity
  ``cluster.sfu_capacity`` rooms per worker), sticky while their worker lives;
- :class:`WorkerPool` is the :class:`~signaling.cluster.remote_media.RpcTransport`: one Unix socket pair
  per worker carries the requests and replies of :mod:`signaling.core.sfu_rpc` (the same JSON as the
  Redis Streams), the SFU's messages for clients (stamped with the worker's id, ``VIA``, so the
  hub drops what a replaced worker still says) and the worker's load.

Workers are owned children. Each runs in its own session (a terminal's Ctrl-C reaches only the
serve process) and exits when its socket closes, so it dies with the serve process however that
ends (even ``kill -9``: the kernel closes the socket). A worker that dies is removed from the
registry at once; the failover watcher of ``RemoteMedia`` moves its rooms to the other workers
exactly as a cluster moves the rooms of a dead SFU node (``reconnect {mode: "rejoin", scope:
"media"}`` to each client, join on the new worker), and the pool starts a replacement with a new
id. SIGTERM to a worker drains it (no new rooms, its rooms move while it still forwards, then it
exits and is replaced); the serve process's own shutdown closes the sockets and reaps the workers
under a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import signal
import socket
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from signaling.backend import BackendUnavailable
from signaling.backend.media import Emit, MediaPort
from signaling.cluster.registry import NodeInfo
from signaling.cluster.remote_media import ReplyHandler
from signaling.core.backoff import Backoff
from signaling.core.config import ServerConfig
from signaling.core.sfu_rpc import SFU_ERROR, VIA, Reply, Request, RpcFormatError
from signaling.runtime.tasks import OwnerKind, TaskRegistry
from signaling.server.local_rpc import (
    DRAIN,
    EMIT,
    HELLO,
    LOAD,
    MAX_FRAME,
    REPLY,
    REQUEST,
    FrameError,
    LocalRegistry,
    emit_frame,
    frame,
    parse,
    parse_emit,
)

log = logging.getLogger(__name__)

#: How long :meth:`WorkerPool.start` waits for every worker's hello (importing aiortc included).
START_TIMEOUT = 60.0
#: A link whose unsent bytes pass this is stuck: requests to it fail, client messages are dropped.
WRITE_BUFFER_LIMIT = 8 * 1024 * 1024
#: The program a worker process runs (``python -c``): argv is the socket fd, the node id and
#: the log level; the pickled :class:`ServerConfig` arrives on stdin.
_BOOT = "from signaling.server.sfu_workers import worker_main; worker_main()"

#: What the pool does with a message an SFU worker sends a client (the hub's ``deliver``: it
#: strips ``VIA`` and drops messages of a worker the room has left).
Deliver = Callable[[str, dict[str, Any]], Awaitable[None]]


# -- the serve process's side ------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Worker:
    node_id: str
    process: asyncio.subprocess.Process
    writer: asyncio.StreamWriter
    hello: asyncio.Event = field(default_factory=asyncio.Event)


class WorkerPool:
    """N SFU worker processes, kept running; the local registry and request transport."""

    def __init__(self, config: ServerConfig, *, workers: int, deliver: Deliver, log_level: str = "WARNING") -> None:
        if workers < 1:
            raise ValueError("an SFU worker pool needs at least one worker")
        self.config = config
        self.size = workers
        self.registry = LocalRegistry()
        self._deliver = deliver
        self._log_level = log_level
        self._handle: ReplyHandler | None = None
        self._tasks = TaskRegistry("sfu-workers", OwnerKind.CLUSTER)
        self._live: dict[str, _Worker] = {}
        self._processes: set[asyncio.subprocess.Process] = set()
        self._up: list[asyncio.Event] = [asyncio.Event() for _ in range(workers)]
        self._closing = False
        #: Workers started again after their process ended (died, killed, drained).
        self.restarts = 0
        #: Link figures: frames dropped as malformed, client messages dropped (link stuck).
        self.dropped: Counter[str] = Counter()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every worker and wait (up to :data:`START_TIMEOUT`) until each said hello."""
        for index in range(self.size):
            self._tasks.spawn(self._keep(index), name=f"sfu-worker:{index + 1}")
        try:
            async with asyncio.timeout(START_TIMEOUT):
                for up in self._up:
                    await up.wait()
        except TimeoutError:
            await self.shutdown()
            raise RuntimeError(f"SFU workers did not start within {START_TIMEOUT:.0f}s") from None
        log.info("%d SFU worker(s) running: %s", self.size, ", ".join(sorted(self._live)))

    async def shutdown(self) -> None:
        """Close every link (each worker closes its SFU and exits), then reap the processes
        under a deadline (``limits.close_timeout`` + 5 s), killing what is left."""
        if self._closing:
            return
        self._closing = True
        for worker in list(self._live.values()):
            worker.writer.close()
        deadline = max(self.config.limits.close_timeout, 5.0) + 5.0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(deadline):
                await asyncio.gather(*(p.wait() for p in list(self._processes)))
        for process in list(self._processes):
            if process.returncode is None:
                log.warning("SFU worker pid %d did not exit within %.0fs: killed", process.pid, deadline)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        await self._tasks.close()

    def worker_ids(self) -> list[str]:
        """The live workers' node ids (those in the registry)."""
        return sorted(self._live)

    def pid_of(self, node_id: str) -> int | None:
        worker = self._live.get(node_id)
        return None if worker is None else worker.process.pid

    async def _keep(self, index: int) -> None:
        """Run worker ``index``; start it again, with a new id, whenever its process ends."""
        backoff = Backoff(base=0.5, cap=10.0, stable_after=30.0)
        loop = asyncio.get_running_loop()
        generation = 0
        while not self._closing:
            generation += 1
            node_id = f"{self.config.node_id}/sfu-{index + 1}.{generation}"
            try:
                await self._run_one(index, node_id, backoff, loop)
            except (OSError, RuntimeError) as exc:
                log.error("SFU worker %s could not run: %s", node_id, exc)
            if self._closing:
                return
            self.restarts += 1
            delay = backoff.next_delay()
            log.warning("SFU worker %s ended; starting a replacement in %.1fs", node_id, delay)
            await asyncio.sleep(delay)

    async def _run_one(self, index: int, node_id: str, backoff: Backoff, loop: asyncio.AbstractEventLoop) -> None:
        ours, theirs = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _BOOT, str(theirs.fileno()), node_id, self._log_level,
                stdin=asyncio.subprocess.PIPE, pass_fds=(theirs.fileno(),), start_new_session=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._processes.add(process)
        worker: _Worker | None = None
        try:
            assert process.stdin is not None
            process.stdin.write(pickle.dumps(self.config))
            await process.stdin.drain()
            process.stdin.close()
            reader, writer = await asyncio.open_unix_connection(sock=ours, limit=MAX_FRAME)
            worker = _Worker(node_id, process, writer)
            backoff.connected(loop.time())
            await self._serve(index, worker, reader)
        finally:
            # Gone from placement first: the failover watcher moves its rooms from now on.
            self.registry.remove(node_id)
            if worker is not None:
                self._live.pop(node_id, None)
                worker.writer.close()
            else:
                ours.close()
            backoff.disconnected(loop.time())
            await self._reap(process)
            self._processes.discard(process)

    async def _reap(self, process: asyncio.subprocess.Process) -> None:
        try:
            async with asyncio.timeout(max(self.config.limits.close_timeout, 5.0) + 5.0):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        if process.returncode not in (0, None) and not self._closing:
            log.warning("SFU worker pid %d exited with %s", process.pid, process.returncode)

    async def _serve(self, index: int, worker: _Worker, reader: asyncio.StreamReader) -> None:
        """Read the worker's frames until its socket closes."""
        while True:
            try:
                line = await reader.readline()
            except (ValueError, asyncio.LimitOverrunError, ConnectionError) as exc:
                log.error("SFU worker %s: link broken: %s", worker.node_id, exc)
                worker.process.kill()
                return
            if not line:
                return
            try:
                tag, payload = parse(line)
                await self._on_frame(index, worker, tag, payload)
            except (FrameError, UnicodeDecodeError, ValueError) as exc:
                self.dropped["malformed"] += 1
                log.error("SFU worker %s: malformed frame dropped: %s", worker.node_id, exc)

    async def _on_frame(self, index: int, worker: _Worker, tag: str, payload: str) -> None:
        if tag == REPLY:
            if self._handle is not None:
                await self._handle({"m": payload})
        elif tag == EMIT:
            peer, message = parse_emit(payload)
            try:
                await self._deliver(peer, message)
            except Exception:  # boundary: one undeliverable message must not cut the worker off
                log.exception("SFU worker %s: %s for %s not delivered", worker.node_id, message.get("type"), peer)
        elif tag == LOAD:
            self.registry.update(worker.node_id, load=float(payload))
        elif tag == DRAIN:
            log.info("SFU worker %s drains: its rooms move to the other workers", worker.node_id)
            self.registry.update(worker.node_id, draining=True)
        elif tag == HELLO and payload == worker.node_id and not worker.hello.is_set():
            worker.hello.set()
            self._live[worker.node_id] = worker
            self.registry.add(NodeInfo(
                id=worker.node_id, kind="sfu", address=f"pid:{worker.process.pid}",
                capacity=self.config.cluster.sfu_capacity,
            ))
            self._up[index].set()
        else:
            raise FrameError(f"unexpected {tag} frame")

    # -- RpcTransport ---------------------------------------------------------------------------

    async def prepare(self, handle: ReplyHandler) -> None:
        self._handle = handle

    def start_replies(self) -> None:
        """Replies arrive through the workers' links, read by the pool's own tasks: nothing to start."""

    async def stop_replies(self, deadline: float) -> None:
        self._handle = None

    async def send(self, node: str, payload: str, *, what: str) -> None:
        worker = self._live.get(node)
        if worker is None or worker.writer.is_closing():
            raise BackendUnavailable(f"{what}: SFU worker {node} is not running")
        if worker.writer.transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
            raise BackendUnavailable(f"{what}: the link to SFU worker {node} is stuck")
        worker.writer.write(frame(REQUEST, payload))

    async def close(self) -> None:
        """The port is done with the transport; the workers stop with :meth:`shutdown`."""

    def stats(self) -> dict[str, Any]:
        return {"sfu_workers": len(self._live), "sfu_worker_restarts": self.restarts}


# -- the worker process --------------------------------------------------------------------------------


class SfuWorker:
    """One worker: an SFU and the cluster's request executor, on the socket to the serve process."""

    def __init__(self, config: ServerConfig, node_id: str, writer: asyncio.StreamWriter,
                 media_factory: Callable[[Emit], MediaPort] | None = None) -> None:
        from signaling.cluster.sfu_node import RpcExecutor

        self.config = config
        self.node_id = node_id
        self._writer = writer
        self._tasks = TaskRegistry("sfu-worker", OwnerKind.CLUSTER)
        self.media = (media_factory or _aiortc_sfu(config))(self.emit)
        self.executor = RpcExecutor(
            self.media, self._reply, tasks=self._tasks, lane_size=config.cluster.lane_size, on_rooms=self._rooms_changed
        )
        self._emptied = asyncio.Event()
        self._emptied.set()
        self.dropped = 0

    def _write(self, data: bytes) -> bool:
        if self._writer.is_closing() or self._writer.transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
            return False
        self._writer.write(data)
        return True

    def emit(self, participant: str, message: dict[str, Any]) -> None:
        """The SFU's synchronous ``emit``: one frame, stamped with this worker's id."""
        if self._write(emit_frame(participant, {**message, VIA: self.node_id})):
            return
        self.dropped += 1
        if self._writer.is_closing():
            # The serve process closed the link (shutdown): the SFU's last words go nowhere.
            log.debug("sfu worker %s: link closed, %s for %s dropped", self.node_id, message.get("type"), participant)
        else:
            log.error("sfu worker %s: link stuck, %s for %s dropped", self.node_id, message.get("type"), participant)

    async def _reply(self, request: Request, reply: Reply) -> None:
        if request.reply_to is not None:
            self._write(frame(REPLY, reply.encode()))

    def _rooms_changed(self, room: str, hosted: bool) -> None:
        self._write(frame(LOAD, str(len(self.executor.rooms))))
        if self.executor.rooms:
            self._emptied.clear()
        else:
            self._emptied.set()

    async def serve(self, reader: asyncio.StreamReader, drain: asyncio.Event) -> None:
        """Run requests until the serve process closes the link or a drain completes."""
        self._write(frame(HELLO, self.node_id))
        read = asyncio.ensure_future(self._read(reader))
        drained = asyncio.ensure_future(self._drain(drain))
        try:
            await asyncio.wait((read, drained), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (read, drained):
                task.cancel()
            await asyncio.gather(read, drained, return_exceptions=True)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            line = await reader.readline()
            if not line:
                return  # the serve process is gone or stops us
            try:
                tag, payload = parse(line)
                if tag != REQUEST:
                    raise FrameError(f"unexpected {tag} frame")
                request = Request.decode(payload)
            except (FrameError, RpcFormatError, UnicodeDecodeError) as exc:
                log.error("sfu worker %s: malformed frame dropped: %s", self.node_id, exc)
                continue
            if not self.executor.submit(request):
                await self._reply(request, Reply.refusal(request.id, SFU_ERROR, "too many requests queued for this participant"))

    async def _drain(self, drain: asyncio.Event) -> None:
        """SIGTERM: take no new rooms, let the serve process move the hosted ones, then stop."""
        await drain.wait()
        self._write(frame(DRAIN, ""))
        log.info("sfu worker %s: draining, %d room(s) hosted", self.node_id, len(self.executor.rooms))
        try:
            async with asyncio.timeout(self.config.drain_timeout):
                await self._emptied.wait()
        except TimeoutError:
            log.warning("sfu worker %s: %d room(s) still hosted after %.1fs; they move", self.node_id,
                        len(self.executor.rooms), self.config.drain_timeout)

    async def close(self) -> None:
        await self._tasks.close()
        try:
            async with asyncio.timeout(max(self.config.limits.close_timeout, 5.0)):
                await self.media.close()
        except TimeoutError:
            log.warning("sfu worker %s: closing the SFU took too long", self.node_id)
        self._writer.close()


def _aiortc_sfu(config: ServerConfig) -> Callable[[Emit], MediaPort]:
    from sfu.service import Sfu
    from signaling.core.config import sfu_settings

    # The workers serve the same clients the embedded SFU would: same dev-mode rule.
    settings = sfu_settings(config, dev_mode=not config.security.token_keys)
    return lambda emit: Sfu(settings, emit)


async def run_worker(config: ServerConfig, fd: int, node_id: str) -> None:
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_FRAME)
    worker = SfuWorker(config, node_id, writer)
    drain = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, drain.set)
    try:
        await worker.serve(reader, drain)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        await worker.close()


def worker_main() -> None:
    """Entry point of a worker process (see :data:`_BOOT`)."""
    fd, node_id, level = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    logging.basicConfig(level=level, format=f"%(asctime)s %(levelname)s [{node_id}] %(name)s: %(message)s")
    # Only the serve process answers a terminal's Ctrl-C; the worker stops when its link closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    config = pickle.loads(sys.stdin.buffer.read())  # our parent's own config, over a pipe
    if not isinstance(config, ServerConfig):
        sys.exit("sfu worker: expected a ServerConfig on stdin")
    asyncio.run(run_worker(config, fd, node_id))
