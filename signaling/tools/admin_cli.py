"""``switchboard admin …``: the operators' CLI over the admin HTTP API (see docs/admin-api.md).

Human tables by default, ``--json`` for scripts. Every failure is one line on stderr and an exit
code that says what kind of failure it was (:class:`Exit`); the token is never printed, never
sent anywhere but the admin URL (redirects are not followed) and never sent to ``/metrics``.

Layout: :class:`AdminClient` is the I/O (aiohttp, one session per command); the summary of
``/metrics`` (:func:`summarise_metrics`) and the table builders are pure.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import math
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, NoReturn
from urllib.parse import quote

import aiohttp
import click
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from yarl import URL

from signaling.core.auth import ALL_GRANTS, DEFAULT_GRANTS, create_token
from signaling.core.errors import PeerError
from signaling.core.exits import Exit as Exit  # re-exported: scripts and tests read it here
from signaling.core.loopback import is_loopback

DEFAULT_URL = "http://127.0.0.1:8080"


class AdminError(PeerError):
    """A failure to report as one line, with its exit code."""

    def __init__(self, code: Exit, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- the HTTP client -------------------------------------------------------------------------------


def base_url(url: str) -> URL:
    """The node's base URL; ``ws(s)://host/ws`` (the signaling URL) is accepted too."""
    try:
        u = URL(url)
    except (ValueError, TypeError) as exc:
        raise click.BadParameter(f"not a URL: {exc}", param_hint="--url") from None
    scheme = {"ws": "http", "wss": "https"}.get(u.scheme, u.scheme)
    if scheme not in ("http", "https") or not u.host:
        raise click.BadParameter("expected http(s)://HOST[:PORT]", param_hint="--url")
    path = u.path
    if u.scheme in ("ws", "wss") and path.rstrip("/").endswith("/ws"):
        path = path.rstrip("/")[: -len("/ws")]
    return u.with_scheme(scheme).with_path(path or "/").with_query(None).with_fragment(None)


def segment(value: str) -> str:
    """One path segment, percent-encoded (room names may hold ``:@+.``; ``.``/``..`` too)."""
    if value in (".", ".."):
        return value.replace(".", "%2E")
    return quote(value, safe="")


class AdminClient:
    """The admin API of one node. Use as ``async with AdminClient(url, token) as api``."""

    def __init__(self, url: str, token: str | None, *, timeout: float = 10.0) -> None:
        self.base = base_url(url)
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._http: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # never show the token
        return f"<AdminClient {self.where}>"

    @property
    def where(self) -> str:
        """The base URL as printed in messages."""
        return str(self.base).rstrip("/")

    async def __aenter__(self) -> AdminClient:
        self._http = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()

    def url(self, path: str) -> URL:
        return URL(str(self.base).rstrip("/") + path, encoded=True)

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One admin request; its JSON object, or :class:`AdminError`."""
        if not self._token:
            raise AdminError(Exit.USAGE, "no admin token: set SWITCHBOARD_ADMIN_TOKEN (or pass --token)")
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        status, text = await self._request(method, path, headers, body)
        if 200 <= status < 300:
            try:
                value = json.loads(text)
            except ValueError:
                raise AdminError(Exit.SERVER_ERROR, f"{method} {path}: the answer is not JSON") from None
            if not isinstance(value, dict):
                raise AdminError(Exit.SERVER_ERROR, f"{method} {path}: the answer is not a JSON object")
            return value
        raise _status_error(method, path, status, text, self.where)

    async def metrics(self, token: str | None = None) -> str:
        """The node's ``/metrics`` text. The admin token is never sent there; ``token`` is the
        node's metrics token (``--metrics-token``), if it requires one."""
        headers = {"Accept": "text/plain"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        status, text = await self._request("GET", "/metrics", headers, None)
        if status != 200:
            raise _status_error("GET", "/metrics", status, text, self.where)
        return text

    async def _request(
        self, method: str, path: str, headers: dict[str, str], body: dict[str, Any] | None
    ) -> tuple[int, str]:
        assert self._http is not None, "use AdminClient as an async context manager"
        url = self.url(path)
        try:
            async with self._http.request(method, url, headers=headers, json=body, allow_redirects=False) as response:
                return response.status, (await response.read()).decode("utf-8", errors="replace")
        except aiohttp.InvalidURL:
            raise AdminError(Exit.USAGE, f"invalid URL {self.where}") from None
        except TimeoutError:
            raise AdminError(Exit.UNREACHABLE, f"{self.where} did not answer within {self._timeout.total:g}s") from None
        except aiohttp.ClientSSLError as exc:
            raise AdminError(Exit.UNREACHABLE, f"TLS failure talking to {self.where}: {_why(exc)}") from None
        except aiohttp.ClientConnectorError as exc:
            raise AdminError(Exit.UNREACHABLE, f"cannot reach {self.where}: {_why(exc)}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise AdminError(Exit.UNREACHABLE, f"connection to {self.where} failed: {_why(exc)}") from None


def _why(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return exc.strerror or type(exc.os_error).__name__
    return str(exc) or type(exc).__name__


def _status_error(method: str, path: str, status: int, text: str, base: str) -> AdminError:
    detail = ""
    try:
        value = json.loads(text)
        if isinstance(value, dict) and isinstance(value.get("error"), str):
            detail = value["error"]
    except ValueError:
        pass
    if status in (401, 403):
        return AdminError(Exit.UNAUTHORIZED, f"unauthorized: {base} refused the admin token (HTTP {status})")
    if status == 404:
        if detail:
            return AdminError(Exit.NOT_FOUND, detail)
        # The server answers a bare 404 to every admin route when it has no admin token.
        return AdminError(
            Exit.NOT_FOUND,
            f"no admin API at {base}{path} (wrong --url, or the server runs without --admin-token)",
        )
    if 300 <= status < 400:
        return AdminError(Exit.SERVER_ERROR, f"{method} {path}: unexpected redirect (HTTP {status}); check --url")
    return AdminError(Exit.SERVER_ERROR, f"{method} {path}: server error HTTP {status}{': ' + detail if detail else ''}")


# -- /metrics summary (pure) ---------------------------------------------------------------------


@dataclass(slots=True)
class Stats:
    """What ``switchboard admin stats`` reports, read from one scrape of ``/metrics``."""

    sessions: float = 0
    sessions_attached: float = 0
    sessions_detached: float = 0
    connections: float = 0
    rooms: float = 0
    messages_in: float = 0
    messages_out: float = 0
    messages_in_by_type: dict[str, float] = field(default_factory=dict)
    messages_out_by_type: dict[str, float] = field(default_factory=dict)
    resumes: float = 0
    resume_failures: float = 0
    heartbeat_timeouts: float = 0
    send_queue_overflows: float = 0
    errors_by_code: dict[str, float] = field(default_factory=dict)
    closes_by_code: dict[str, float] = field(default_factory=dict)
    #: Heartbeat RTT median (ms) interpolated from the histogram; None without any pong yet.
    rtt_p50_ms: float | None = None
    rtt_samples: float = 0


def summarise_metrics(text: str) -> Stats:
    """Summarise a Prometheus text exposition of a Switchboard node."""
    stats = Stats()
    buckets: list[tuple[float, float]] = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "switchboard_sessions":
                stats.sessions += value
                if labels.get("state") == "attached":
                    stats.sessions_attached += value
                elif labels.get("state") == "detached":
                    stats.sessions_detached += value
            elif name == "switchboard_connections":
                stats.connections = value
            elif name == "switchboard_rooms":
                stats.rooms = value
            elif name == "switchboard_messages_in_total":
                stats.messages_in += value
                _add(stats.messages_in_by_type, labels.get("type", ""), value)
            elif name == "switchboard_messages_out_total":
                stats.messages_out += value
                _add(stats.messages_out_by_type, labels.get("type", ""), value)
            elif name == "switchboard_resumes_total":
                stats.resumes += value
            elif name == "switchboard_resume_failures_total":
                stats.resume_failures += value
            elif name == "switchboard_heartbeat_timeouts_total":
                stats.heartbeat_timeouts += value
            elif name == "switchboard_send_queue_overflows_total":
                stats.send_queue_overflows += value
            elif name == "switchboard_errors_total":
                _add(stats.errors_by_code, labels.get("code", ""), value)
            elif name == "switchboard_closes_total":
                _add(stats.closes_by_code, labels.get("code", ""), value)
            elif name == "switchboard_rtt_seconds_bucket":
                buckets.append((float(labels["le"]), value))
            elif name == "switchboard_rtt_seconds_count":
                stats.rtt_samples = value
    p50 = histogram_quantile(0.5, buckets)
    stats.rtt_p50_ms = round(p50 * 1000, 3) if p50 is not None else None
    return stats


def _add(into: dict[str, float], key: str, value: float) -> None:
    into[key] = into.get(key, 0) + value


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """Quantile ``q`` from cumulative ``(le, count)`` buckets, interpolating linearly inside the
    bucket (what PromQL's ``histogram_quantile`` does). None when there are no observations; the
    highest finite bound when the quantile falls in the ``+Inf`` bucket.
    """
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


# -- output --------------------------------------------------------------------------------------


def plural(count: float, noun: str) -> str:
    """``1 room``, ``2 rooms``, ``0 rooms`` (English nouns of this CLI: a trailing s)."""
    return f"{_cell(count)} {noun}" + ("" if count == 1 else "s")


@dataclass(slots=True)
class Ctx:
    url: str
    token: str | None
    timeout: float
    json: bool = False


def _console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal:
        # Piped or captured: do not squeeze ids into 80 columns.
        console.width = max(console.width, 160)
    return console


def _table(title: str, columns: list[str], rows: Iterable[Iterable[Any]]) -> Table:
    # Titles and cells hold names chosen by participants: escaped, never read as rich markup
    # (a participant named "[/]" must not crash the table, nor "[link=...]" style it).
    table = Table(title=escape(title), title_justify="left")
    for column in columns:
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    return table


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return escape(str(value))


def _when(ts: Any) -> str | None:
    if not isinstance(ts, int | float):
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _emit_json(value: Any) -> None:
    click.echo(json.dumps(_plain(value), indent=2, sort_keys=True))


def _plain(value: Any) -> Any:
    """Counters come back from Prometheus as floats: print whole numbers as integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _confirm(question: str) -> bool:
    try:
        return click.confirm(question, err=True)
    except click.Abort:  # no terminal, or ^C / EOF at the prompt
        click.echo("", err=True)
        return False


def fail(code: Exit, message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(int(code))


# -- commands ------------------------------------------------------------------------------------


def _json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--json`` on every leaf command too (``admin --json rooms list`` works as well)."""

    def set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        obj = ctx.find_object(Ctx)
        if value and obj is not None:
            obj.json = True

    return click.option(
        "--json", "as_json", is_flag=True, expose_value=False, callback=set_json, help="Print JSON for scripts."
    )(f)


def _run(
    ctx: click.Context, work: Callable[[AdminClient, Ctx], Awaitable[None]], *, needs_token: bool = True
) -> None:
    """Run one command's coroutine with an API client; map failures to one line + exit code."""
    obj = ctx.find_object(Ctx)
    assert obj is not None
    if needs_token and not obj.token:
        raise click.UsageError("no admin token: set SWITCHBOARD_ADMIN_TOKEN (or pass --token)")
    client = AdminClient(obj.url, obj.token if needs_token else None, timeout=obj.timeout)
    host = client.base.host or ""
    if needs_token and client.base.scheme == "http" and not is_loopback(host):
        click.echo(f"warning: sending the admin token to {host} over plain http", err=True)

    async def main() -> None:
        async with client as api:
            await work(api, obj)

    try:
        asyncio.run(main())
    except AdminError as exc:
        fail(exc.code, exc.message)


@click.group()
@click.option("--url", envvar="SWITCHBOARD_ADMIN_URL", default=DEFAULT_URL, show_default=True,
              help="Base URL of the node (env SWITCHBOARD_ADMIN_URL).")
@click.option("--token", envvar="SWITCHBOARD_ADMIN_TOKEN", default=None,
              help="Admin bearer token (env SWITCHBOARD_ADMIN_TOKEN; prefer the env: flags show in ps).")
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds to wait for each answer.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def admin(ctx: click.Context, url: str, token: str | None, timeout: float, as_json: bool) -> None:
    """Operate a node through its admin API.

    \b
    Exit codes: 0 ok, 1 not found, 2 usage, 3 unauthorized,
                4 unreachable, 5 server error.
    """
    base_url(url)  # a bad URL is a usage error, before anything else
    ctx.obj = Ctx(url=url, token=token, timeout=timeout, json=as_json)


@admin.command()
@_json_option
@click.pass_context
def info(ctx: click.Context) -> None:
    """Version, node id, draining, connections and sessions."""

    async def work(api: AdminClient, obj: Ctx) -> None:
        data = await api.call("GET", "/admin/info")
        if obj.json:
            _emit_json(data)
            return
        table = Table(show_header=False)
        table.add_column("key", style="bold")
        table.add_column("value")
        for key in ("node", "version", "draining", "connections", "sessions"):
            table.add_row(key, _cell(data.get(key)))
        _console().print(table)

    _run(ctx, work)


# rooms -------------------------------------------------------------------------------------------


@admin.group()
def rooms() -> None:
    """Rooms: list, show, close."""


@rooms.command("list")
@_json_option
@click.pass_context
def rooms_list(ctx: click.Context) -> None:
    """Every room with its participant count (across the cluster)."""

    async def work(api: AdminClient, obj: Ctx) -> None:
        data = await api.call("GET", "/admin/rooms")
        if obj.json:
            _emit_json(data)
            return
        items = data.get("rooms", [])
        _console().print(_table(plural(len(items), "room"), ["room", "participants"],
                                ([r.get("room"), r.get("participants")] for r in items)))

    _run(ctx, work)


@rooms.command("show")
@click.argument("room")
@_json_option
@click.pass_context
def rooms_show(ctx: click.Context, room: str) -> None:
    """The participants of ROOM (exit 1 if it has none)."""

    async def work(api: AdminClient, obj: Ctx) -> None:
        data = await api.call("GET", f"/admin/rooms/{segment(room)}")
        if obj.json:
            _emit_json(data)
            return
        people = data.get("participants", [])
        _console().print(_table(f"room {data.get('room', room)}: {plural(len(people), 'participant')}", ["peer", "name", "node"],
                                ([p.get("peer"), p.get("name"), p.get("node")] for p in people)))

    _run(ctx, work)


@rooms.command("close")
@click.argument("room")
@_json_option
@click.pass_context
def rooms_close(ctx: click.Context, room: str) -> None:
    """Kick every participant of ROOM held by this node (they see close 4006)."""

    async def work(api: AdminClient, obj: Ctx) -> None:
        data = await api.call("DELETE", f"/admin/rooms/{segment(room)}")
        if obj.json:
            _emit_json(data)
            return
        click.echo(f"closed room {room}: {plural(data.get('closed', 0), 'participant')} removed")

    _run(ctx, work)


@rooms.group("record")
def rooms_record() -> None:
    """Recording without transcoding: start, stop, list."""


def _recording_rows(items: list[dict[str, Any]]) -> Table:
    return _table(f"{len(items)} recordings", ["id", "room", "participant", "state", "duration", "bytes", "file"],
                  ([r.get("id"), r.get("room"), r.get("participant"), r.get("state") if not r.get("error")
                    else f"{r.get('state')}: {r.get('error')}", r.get("duration"), r.get("bytes"), r.get("file")]
                   for r in items))


@rooms_record.command("start")
@click.argument("room")
@click.option("--track", default=None, help="Record only this track id (default: every publisher).")
@click.option("--dir", "directory", default=None, help="Directory on the SFU's host (default: the node's).")
@_json_option
@click.pass_context
def rooms_record_start(ctx: click.Context, room: str, track: str | None, directory: str | None) -> None:
    """Record ROOM (every publisher, later ones too) or one --track to files."""

    async def work(api: AdminClient, obj: Ctx) -> None:
        body: dict[str, Any] = {}
        if track is not None:
            body["track"] = track
        if directory is not None:
            body["dir"] = directory
        data = await api.call("POST", f"/admin/rooms/{segment(room)}/recording", body)
        if obj.json:
            _emit_json(data)
            return
        items = data.get("recordings", [])
        click.echo(f"recording room {room}: {len(items)} files started")
        for r in items:
            click.echo(f"  {r.get('id')} {r.get('participant')} -> {r.get('file')}")

    _run(ctx, work)


@rooms_record.command("stop")
@click.argument("room")
@_json_option
@click.pass_context
def rooms_record_stop(ctx: click.Context, room: str) -> None:
    """Stop recording ROOM; prints the closed files."""

    async def work(api: AdminClient, obj: Ctx) -> None:
        data = await api.call("DELETE", f"/admin/rooms/{segment(room)}/recording")
        if obj.json:
            _emit_json(data)
            return
        _console().print(_recording_rows(data.get("recordings", [])))

    _run(ctx, work)


@rooms_record.command("list")
@_json_option
@click.pass_context
def rooms_record_list(ctx: click.Context) -> None:
    """Active recordings, then the last finished ones."""

    async def work(api: AdminClient, obj: Ctx) -> None:
        data = await api.call("GET", "/admin/recordings")
        if obj.json:
            _emit_json(data)
            return
        _console().print(_recording_rows(data.get("recordings", [])))

    _run(ctx, work)


# participants ------------------------------------------------------------------------------------


@admin.group()
def participants() -> None:
    """Participants: list, kick, mute."""


@participants.command("list")
@click.argument("room")
@_json_option
@click.pass_context
def participants_list(ctx: click.Context, room: str) -> None:
    """The participants of ROOM, with session state and RTT for those on this node."""

    async def work(api: AdminClient, obj: Ctx) -> None:
        members = await api.call("GET", f"/admin/rooms/{segment(room)}")
        sessions = await api.call("GET", "/admin/sessions")
        by_peer = {s.get("peer"): s for s in sessions.get("sessions", [])}
        rows = []
        for member in members.get("participants", []):
            s = by_peer.get(member.get("peer"), {})
            rows.append({
                "peer": member.get("peer"),
                "name": member.get("name"),
                "node": member.get("node"),
                "session": s.get("session"),
                "state": s.get("state"),
                "rtt_ms": s.get("rtt_ms"),
                "joined_at": s.get("joined_at"),
            })
        if obj.json:
            _emit_json({"room": members.get("room", room), "participants": rows})
            return
        columns = ["peer", "name", "node", "session", "state", "rtt_ms", "joined"]
        _console().print(_table(
            f"room {room}: {plural(len(rows), 'participant')}", columns,
            ([r["peer"], r["name"], r["node"], r["session"], r["state"], r["rtt_ms"], _when(r["joined_at"])] for r in rows),
        ))

    _run(ctx, work)


@participants.command("kick")
@click.argument("peer")
@click.option("--reason", default="kicked", show_default=True, help="Told to the client in the close reason.")
@_json_option
@click.pass_context
def participants_kick(ctx: click.Context, peer: str, reason: str) -> None:
    """End PEER's session: its client sees close 4006 and does not reconnect."""

    async def work(api: AdminClient, obj: Ctx) -> None:
        data = await api.call("POST", f"/admin/participants/{segment(peer)}/kick", {"reason": reason})
        if obj.json:
            _emit_json(data)
            return
        click.echo(f"kicked {peer}")

    _run(ctx, work)


@participants.command("mute")
@click.argument("peer")
@click.argument("track")
@click.option("--unmute", is_flag=True, help="Restart forwarding instead.")
@_json_option
@click.pass_context
def participants_mute(ctx: click.Context, peer: str, track: str, unmute: bool) -> None:
    """Stop forwarding PEER's published TRACK (the room hears track-muted)."""

    async def work(api: AdminClient, obj: Ctx) -> None:
        data = await api.call("POST", f"/admin/participants/{segment(peer)}/mute", {"track": track, "muted": not unmute})
        if obj.json:
            _emit_json(data)
            return
        click.echo(f"{'unmuted' if unmute else 'muted'} {track} of {peer}")

    _run(ctx, work)


# sessions ----------------------------------------------------------------------------------------


@admin.group()
def sessions() -> None:
    """Sessions held by this node: list, disconnect."""


@sessions.command("list")
@_json_option
@click.pass_context
def sessions_list(ctx: click.Context) -> None:
    """Every session of this node with its replay-buffer and heartbeat figures."""

    async def work(api: AdminClient, obj: Ctx) -> None:
        data = await api.call("GET", "/admin/sessions")
        if obj.json:
            _emit_json(data)
            return
        items = data.get("sessions", [])
        columns = ["session", "peer", "name", "room", "state", "last_seq", "acked", "unacked", "rtt_ms", "joined"]
        _console().print(_table(plural(len(items), "session"), columns, (
            [s.get("session"), s.get("peer"), s.get("name"), s.get("room"), s.get("state"), s.get("last_seq"),
             s.get("acked_seq"), s.get("unacked"), s.get("rtt_ms"), _when(s.get("joined_at"))]
            for s in items
        )))

    _run(ctx, work)


@sessions.command("disconnect")
@click.argument("session")
@_json_option
@click.pass_context
def sessions_disconnect(ctx: click.Context, session: str) -> None:
    """Drop SESSION's socket but keep the session: the client resumes (exit 1 if not attached)."""

    async def work(api: AdminClient, obj: Ctx) -> None:
        data = await api.call("POST", f"/admin/sessions/{segment(session)}/disconnect")
        if obj.json:
            _emit_json(data)
            return
        click.echo(f"disconnected {session}")

    _run(ctx, work)


# debug -------------------------------------------------------------------------------------------


@admin.group()
def debug() -> None:
    """Debugging views of this node: live tasks and the leak alarm."""


def short_where(where: Any) -> str | None:
    """``/long/path/pkg/file.py:12 fn`` → ``pkg/file.py:12 fn`` (the JSON keeps the full path)."""
    if not isinstance(where, str):
        return None
    path, sep, rest = where.partition(":")
    return "/".join(path.split("/")[-2:]) + sep + rest


def task_tables(data: dict[str, Any]) -> list[Table]:
    """The tables of ``admin debug tasks``: one row per live task grouped by owner, then the
    leak alarm (pure: built from the JSON of ``GET /admin/debug/tasks``)."""
    owners = data.get("owners", [])
    rows = []
    for group in owners:
        for task in group.get("tasks", []):
            rows.append([group.get("kind"), group.get("owner"), task.get("name"), task.get("age_s"),
                         short_where(task.get("where"))])
    tables = [_table(f"{plural(data.get('total', len(rows)), 'task')} of {plural(len(owners), 'owner')}",
                     ["kind", "owner", "task", "age_s", "where"], rows)]
    alarm = data.get("leak_alarm") or {}
    alert = alarm.get("last_alert")
    summary = [[alarm.get("score"), alarm.get("threshold"), alarm.get("samples"), alarm.get("alerts"),
                _when(alert.get("at")) if alert else None,
                ", ".join(f"{o.get('owner')} ({o.get('tasks')})" for o in alert.get("owners", [])) if alert else None]]
    tables.append(_table("leak alarm", ["score", "threshold", "samples", "alerts", "last alert", "owners"], summary))
    return tables


@debug.command("tasks")
@_json_option
@click.pass_context
def debug_tasks(ctx: click.Context) -> None:
    """Live asyncio tasks grouped by owner (where each waits, its age) and the leak alarm."""

    async def work(api: AdminClient, obj: Ctx) -> None:
        data = await api.call("GET", "/admin/debug/tasks")
        if obj.json:
            _emit_json(data)
            return
        console = _console()
        for table in task_tables(data):
            console.print(table)

    _run(ctx, work)


# nodes -------------------------------------------------------------------------------------------


@admin.group()
def nodes() -> None:
    """Nodes: list (the whole cluster), drain (the node behind --url)."""


@nodes.command("list")
@_json_option
@click.pass_context
def nodes_list(ctx: click.Context) -> None:
    """The live nodes of the cluster (from the Redis node registry), or the node behind --url."""

    async def work(api: AdminClient, obj: Ctx) -> None:
        data = await api.call("GET", "/admin/nodes")
        listed = data.get("nodes", [])
        if obj.json:
            _emit_json({"nodes": listed})
            return
        columns = ["node", "kind", "address", "load", "capacity", "draining"]
        _console().print(_table(plural(len(listed), "node"), columns, [[n.get(c) for c in columns] for n in listed]))

    _run(ctx, work)


@nodes.command("drain")
@click.argument("node", required=False)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_json_option
@click.pass_context
def nodes_drain(ctx: click.Context, node: str | None, yes: bool) -> None:
    """Drain the node: clients are told to reconnect elsewhere, then the process exits.

    NODE, if given, must be the id of the node behind --url (exit 1 otherwise).
    """

    async def work(api: AdminClient, obj: Ctx) -> None:
        data = await api.call("GET", "/admin/info")
        target = str(data.get("node"))
        if node is not None and node != target:
            raise AdminError(Exit.NOT_FOUND, f"no node {node} at {api.where} (it serves node {target})")
        if not yes and not _confirm(f"Drain node {target} ({data.get('sessions', 0)} sessions)? The process exits afterwards"):
            raise AdminError(Exit.USAGE, "drain not confirmed (pass --yes in scripts)")
        result = await api.call("POST", "/admin/drain")
        if obj.json:
            _emit_json({"node": target, **result})
            return
        click.echo(f"node {target} is draining")

    _run(ctx, work)


@admin.command("rolling-restart")
@click.option("--restart-cmd", "restart_cmd", default=None, metavar="TEMPLATE",
              help="Shell command run once a drained node is down, e.g. 'systemctl restart switchboard@{node}' "
                   "(placeholders {node} {kind} {address} {host} {port}).")
@click.option("--only", multiple=True, metavar="NODE", help="Restart only these nodes, in this order (repeatable).")
@click.option("--node-timeout", default=120.0, show_default=True, type=click.FloatRange(min=1),
              help="Seconds each node may take to go down, and to come back ready.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_json_option
@click.pass_context
def rolling_restart(ctx: click.Context, restart_cmd: str | None, only: tuple[str, ...], node_timeout: float, yes: bool) -> None:
    """Restart every node of the cluster, one at a time: drain it, wait until it is down, run
    --restart-cmd, wait until it is ready, go on (docs/operations.md, "Rolling restart").

    Nodes are read from the node registry through --url; each is reached at the address it
    registered, with the same --token (SFU nodes need --admin-token too).
    """
    from signaling.tools.rolling import (
        PlanError,
        RollingRestart,
        StepFailed,
        plan,
        render,
        shell_restart,
    )

    if not restart_cmd:
        fail(Exit.USAGE, "--restart-cmd is required (the command that starts a drained node again)")

    async def work(api: AdminClient, obj: Ctx) -> None:
        data = await api.call("GET", "/admin/nodes")
        try:
            targets = plan(data.get("nodes", []), only=only)
            for target in targets:
                render(restart_cmd, target)
        except PlanError as exc:
            raise AdminError(Exit.USAGE, str(exc)) from None
        if not targets:
            raise AdminError(Exit.NOT_FOUND, "no nodes to restart")
        order = ", ".join(t.node for t in targets)
        if not yes and not _confirm(f"Restart {plural(len(targets), 'node')} one at a time ({order})?"):
            raise AdminError(Exit.USAGE, "rolling restart not confirmed (pass --yes in scripts)")
        assert obj.token is not None

        def report(line: str) -> None:
            click.echo(line, err=obj.json)

        timeout = aiohttp.ClientTimeout(total=obj.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            runner = RollingRestart(
                http, obj.token, shell_restart(restart_cmd, timeout=node_timeout), node_timeout=node_timeout, report=report
            )
            try:
                results = await runner.run(targets)
            except StepFailed as exc:
                raise AdminError(Exit.SERVER_ERROR, f"{exc} (nodes after it were not touched)") from None
        if obj.json:
            _emit_json({"nodes": [asdict(r) for r in results]})
            return
        click.echo(f"restarted {plural(len(results), 'node')}: {order}")

    _run(ctx, work)


# stats -------------------------------------------------------------------------------------------


@admin.command()
@_json_option
@click.option("--metrics-token", envvar="SWITCHBOARD_SECURITY_METRICS_TOKEN", default=None,
              help="Bearer token of /metrics, if the node requires one (env SWITCHBOARD_SECURITY_METRICS_TOKEN).")
@click.pass_context
def stats(ctx: click.Context, metrics_token: str | None) -> None:
    """A summary of the node's /metrics: sessions, messages, resumes, heartbeat, RTT.

    The admin token is not needed and never sent; a node started with --metrics-token needs
    that token (--metrics-token or SWITCHBOARD_SECURITY_METRICS_TOKEN). With --admin-port, point --url
    at the admin listener.
    """

    async def work(api: AdminClient, obj: Ctx) -> None:
        summary = summarise_metrics(await api.metrics(metrics_token))
        if obj.json:
            _emit_json(asdict(summary))
            return
        s = summary
        rows: list[tuple[str, Any]] = [
            ("sessions", f"{_cell(s.sessions)} ({_cell(s.sessions_attached)} attached, {_cell(s.sessions_detached)} detached)"),
            ("connections", s.connections),
            ("rooms", s.rooms),
            ("messages in", s.messages_in),
            ("messages out", s.messages_out),
            ("resumes", s.resumes),
            ("resume failures", s.resume_failures),
            ("heartbeat timeouts", s.heartbeat_timeouts),
            ("send queue overflows", s.send_queue_overflows),
            ("rtt p50 (ms)", s.rtt_p50_ms if s.rtt_p50_ms is not None else "n/a (no pongs yet)"),
        ]
        if s.errors_by_code:
            rows.append(("errors", ", ".join(f"{k}={_cell(v)}" for k, v in sorted(s.errors_by_code.items()))))
        table = Table(show_header=False)
        table.add_column("metric", style="bold")
        table.add_column("value")
        for key, value in rows:
            table.add_row(key, _cell(value))
        _console().print(table)

    _run(ctx, work, needs_token=False)


__all__ = ["AdminClient", "AdminError", "Exit", "Stats", "admin", "histogram_quantile", "summarise_metrics"]


@admin.group()
def token() -> None:
    """Access tokens for clients (signed locally; no server needed)."""


@token.command("create")
@click.option("--key", "keys", multiple=True, envvar="SWITCHBOARD_SECURITY_TOKEN_KEYS",
              help="Signing key KID:SECRET; the first signs (env SWITCHBOARD_SECURITY_TOKEN_KEYS).")
@click.option("--identity", required=True, help="Who the token is for (the `sub` claim).")
@click.option("--room", required=True, help="Room name or glob pattern (e.g. 'team-*').")
@click.option("--grant", "grants", multiple=True, type=click.Choice(sorted(ALL_GRANTS)),
              help="Grant (repeatable); default publish, subscribe, signal.")
@click.option("--name", default=None, help="Display name shown to the other peers.")
@click.option("--ttl", default=3600, show_default=True, type=click.IntRange(1, 30 * 86400), help="Lifetime (s).")
@_json_option
@click.pass_context
def token_create(
    ctx: click.Context, keys: tuple[str, ...], identity: str, room: str, grants: tuple[str, ...], name: str | None, ttl: int
) -> None:
    """Sign an access token for a client's `join`."""
    entries = [k.strip() for raw in keys for k in raw.split(",") if k.strip()]
    if not entries:
        fail(Exit.USAGE, "no signing key: pass --key KID:SECRET or set SWITCHBOARD_SECURITY_TOKEN_KEYS")
    kid, sep, secret = entries[0].partition(":")
    if not sep or not kid or len(secret) < 32:
        fail(Exit.USAGE, "--key must be KID:SECRET with a secret of at least 32 characters")
    chosen = frozenset(grants) if grants else DEFAULT_GRANTS
    value = create_token(secret, identity=identity, room=room, grants=chosen, name=name, ttl=ttl, kid=kid)
    if ctx.obj.json:
        _emit_json({"token": value, "identity": identity, "room": room, "grants": sorted(chosen), "ttl": ttl, "kid": kid})
    else:
        click.echo(value)
