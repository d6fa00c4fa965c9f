// @ts-check
/**
 * Switchboard browser SDK: protocol v1 (docs/protocol.md) for browsers. No build step, no
 * dependencies: an ES module to import as `/static/switchboard.js`.
 *
 * - {@link SignalingClient}: the signaling session. Mirrors the Python reference client
 *   (signaling/client/): resume first, rejoin on 4011, never retry on fatal close codes, backoff
 *   with full jitter, dead-server detection from the announced heartbeat timeout, resend of
 *   unconfirmed messages after a resume, duplicate drop by `seq`, ack every 16 messages or 50 ms.
 *   All I/O is injected (WebSocket factory, clock, random) so the protocol logic is testable
 *   without a network or real time (static/test/).
 * - {@link Room}: media through the SFU (publisher + subscriber RTCPeerConnection).
 * - {@link P2PCall}: a direct call to one peer, negotiated over `signal` (perfect negotiation).
 *
 * @module switchboard
 */

export const PROTOCOL_VERSION = 1;

// -- close codes --------------------------------------------------------------------------------

/** What a client does after a close code (signaling/core/codes.py `ClientAction`). */
export const ClientAction = Object.freeze({
  DONE: 'done',
  RESUME_NOW: 'resume-now',
  RESUME_BACKOFF: 'resume-backoff',
  RESUME_AFTER_DELAY: 'resume-after-delay',
  REJOIN: 'rejoin',
  FATAL: 'fatal',
});

/**
 * The close-code table of docs/protocol.md ("Close codes").
 * @type {Readonly<Record<number, {name: string, action: string}>>}
 */
export const CLOSE_CODES = Object.freeze({
  1000: { name: 'normal', action: ClientAction.DONE },
  1001: { name: 'going-away', action: ClientAction.RESUME_NOW },
  1009: { name: 'message-too-big', action: ClientAction.RESUME_BACKOFF },
  1011: { name: 'internal-error', action: ClientAction.RESUME_BACKOFF },
  4001: { name: 'unauthorized', action: ClientAction.FATAL },
  4003: { name: 'forbidden', action: ClientAction.FATAL },
  4006: { name: 'kicked', action: ClientAction.FATAL },
  4008: { name: 'rate-limited', action: ClientAction.RESUME_AFTER_DELAY },
  4009: { name: 'too-slow', action: ClientAction.RESUME_BACKOFF },
  4010: { name: 'protocol-violation', action: ClientAction.FATAL },
  4011: { name: 'session-unknown', action: ClientAction.REJOIN },
  4012: { name: 'replaced', action: ClientAction.FATAL },
  4013: { name: 'heartbeat-timeout', action: ClientAction.RESUME_BACKOFF },
});

/**
 * The client action for a close code. `null` (no close frame: network loss) and codes outside
 * the table below 4000 (1005, 1006, …) reconnect with backoff; unknown 4xxx codes are fatal.
 * @param {number | null | undefined} code
 * @returns {string}
 */
export function closeAction(code) {
  if (code == null) return ClientAction.RESUME_BACKOFF;
  const entry = CLOSE_CODES[code];
  if (entry) return entry.action;
  if (code >= 4000 && code < 5000) return ClientAction.FATAL;
  return ClientAction.RESUME_BACKOFF;
}

/**
 * The error-code table of docs/protocol.md ("Error codes"): the `code` of an `error` message, and
 * whether the same message may be sent again later and succeed (`retryable`).
 * @type {Readonly<Record<string, {retryable: boolean}>>}
 */
export const ERROR_CODES = Object.freeze({
  'bad-json': { retryable: false },
  'binary-frame': { retryable: false },
  'unknown-type': { retryable: false },
  'bad-message': { retryable: false },
  'too-large': { retryable: false },
  'not-joined': { retryable: true },
  'already-joined': { retryable: false },
  'unknown-peer': { retryable: true },
  'self-target': { retryable: false },
  'join-timeout': { retryable: false },
  'resume-failed': { retryable: false },
  'replay-overflow': { retryable: false },
  'too-many-errors': { retryable: false },
  'rate-limited': { retryable: true },
  'unauthorized': { retryable: false },
  'forbidden': { retryable: false },
  'room-full': { retryable: true },
  'bad-sdp': { retryable: false },
  'limit-exceeded': { retryable: false },
  'node-full': { retryable: true },
  'sfu-unavailable': { retryable: true },
  'sfu-error': { retryable: false },
  'unknown-track': { retryable: false },
  'too-many-tracks': { retryable: false },
  'candidate-refused': { retryable: false },
  'media-failed': { retryable: true },
  'shutting-down': { retryable: true },
  'internal': { retryable: true },
});

/** Close code this SDK uses when it drops a socket itself to reconnect (browsers only allow
 *  1000 and 3000–4999 from script; the server treats any client close as a detach). */
export const CLIENT_RECONNECT_CLOSE = 4000;

// -- errors -------------------------------------------------------------------------------------

export class SwitchboardError extends Error {
  /**
   * @param {string} message
   * @param {{code?: string | number | null, cause?: unknown}} [options]
   */
  constructor(message, options = {}) {
    super(message);
    this.name = 'SwitchboardError';
    /** Protocol error code (string) or close code (number), when there is one. */
    this.code = options.code ?? null;
    if (options.cause !== undefined) this.cause = options.cause;
  }
}

/** Too many messages await confirmation by the server. */
export class BackpressureError extends SwitchboardError {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'BackpressureError';
  }
}

// -- small utilities ----------------------------------------------------------------------------

/**
 * @typedef {object} Clock
 * @property {() => number} now  Milliseconds, monotonic.
 * @property {(fn: () => void, ms: number) => unknown} setTimeout
 * @property {(id: unknown) => void} clearTimeout
 */

/** @type {Clock} */
export const realClock = Object.freeze({
  now: () => (globalThis.performance ? globalThis.performance.now() : Date.now()),
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (id) => globalThis.clearTimeout(/** @type {any} */ (id)),
});

/**
 * A tiny event emitter. Listeners get one `detail` object; a listener that throws does not stop
 * the others nor the protocol (the error goes to `onListenerError`, console.error by default).
 */
export class Emitter {
  constructor() {
    /** @type {Map<string, Set<(detail: any) => void>>} */
    this._listeners = new Map();
    /** @type {(error: unknown, type: string) => void} */
    this.onListenerError = (error, type) => console.error(`switchboard: "${type}" listener failed`, error);
  }

  /**
   * @param {string} type
   * @param {(detail: any) => void} fn
   * @returns {() => void} a function that removes the listener
   */
  on(type, fn) {
    let set = this._listeners.get(type);
    if (!set) this._listeners.set(type, (set = new Set()));
    set.add(fn);
    return () => this.off(type, fn);
  }

  /** @param {string} type @param {(detail: any) => void} fn */
  off(type, fn) {
    this._listeners.get(type)?.delete(fn);
  }

  /**
   * The next `type` event (whose detail satisfies `predicate`, if given).
   * @param {string} type
   * @param {(detail: any) => boolean} [predicate]
   * @returns {Promise<any>}
   */
  once(type, predicate) {
    return new Promise((resolve) => {
      const off = this.on(type, (detail) => {
        if (predicate && !predicate(detail)) return;
        off();
        resolve(detail);
      });
    });
  }

  /** @param {string} type @param {any} [detail] */
  emit(type, detail = {}) {
    const set = this._listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(detail);
      } catch (error) {
        this.onListenerError(error, type);
      }
    }
  }
}

// -- backoff ------------------------------------------------------------------------------------

/**
 * @typedef {object} BackoffOptions
 * @property {number} [baseMs=250]
 * @property {number} [factor=2]
 * @property {number} [capMs=10000]
 * @property {number} [stableAfterMs=10000] a connection up this long resets the attempt counter
 * @property {() => number} [random=Math.random] uniform in [0, 1)
 */

/**
 * Reconnect backoff (signaling/core/backoff.py): the first attempt is immediate, then a uniform draw in
 * [0, min(cap, base·factorⁿ)] ("full jitter"). The counter resets only once a connection stayed
 * up for `stableAfterMs`, so a server that accepts and drops at once is not hammered.
 */
export class Backoff {
  /** @param {BackoffOptions} [options] */
  constructor(options = {}) {
    this.baseMs = options.baseMs ?? 250;
    this.factor = options.factor ?? 2;
    this.capMs = options.capMs ?? 10_000;
    this.stableAfterMs = options.stableAfterMs ?? 10_000;
    this.random = options.random ?? Math.random;
    this.attempt = 0;
    /** @type {number | null} */
    this._connectedAt = null;
  }

  /** Delay before the next attempt (ms). */
  nextDelay() {
    const n = this.attempt;
    this.attempt += 1;
    if (n === 0) return 0;
    const ceiling = Math.min(this.capMs, this.baseMs * this.factor ** (n - 1));
    return this.random() * ceiling;
  }

  /** @param {number} now */
  connected(now) {
    this._connectedAt = now;
  }

  /** @param {number} now */
  disconnected(now) {
    if (this._connectedAt !== null && now - this._connectedAt >= this.stableAfterMs) this.attempt = 0;
    this._connectedAt = null;
  }
}

// -- the signaling client -----------------------------------------------------------------------

/**
 * The part of the WebSocket API the client uses (a browser `WebSocket` fits; tests pass a fake).
 * @typedef {object} WebSocketLike
 * @property {number} readyState  1 = OPEN
 * @property {(data: string) => void} send
 * @property {(code?: number, reason?: string) => void} close
 * @property {((ev: any) => void) | null} onopen
 * @property {((ev: {data: any}) => void) | null} onmessage
 * @property {((ev: {code: number, reason?: string, wasClean?: boolean}) => void) | null} onclose
 * @property {((ev: any) => void) | null} onerror
 */

/**
 * @typedef {object} ClientOptions
 * @property {string} url  The server's `/ws` URL (`wss://host/ws`).
 * @property {string} room
 * @property {string} [name]
 * @property {string | null | (() => (string | null | Promise<string | null>))} [token]
 *   Access token, or a function fetching a fresh one for every connection attempt.
 * @property {() => (string | null | Promise<string | null>)} [tokenProvider]
 *   Called once per connection attempt (first join, every resume and rejoin) for the access
 *   token to present, so an expiring token can be replaced before a reconnect. Wins over `token`.
 * @property {boolean} [subscribe=true]  Receive room media from the SFU.
 * @property {string[] | null} [codecs]  Codec names this client can receive, sent with `join`
 *   so the SFU offers no track it cannot decode (`track-unavailable` instead). Default: from
 *   `RTCRtpReceiver.getCapabilities` where it exists; `null` announces nothing.
 * @property {{session: string, resumeToken: string, lastSeq: number} | null} [restore]
 *   A session this page held before a reload ({@link SignalingClient#snapshot}): the first
 *   connection resumes it (with `fresh_media`: the peer connections did not survive) and emits
 *   `joined` with `restored: true`; if the server refuses, it joins afresh.
 * @property {(url: string) => WebSocketLike} [createWebSocket]
 * @property {Clock} [clock]
 * @property {() => number} [random]  Used by the default backoff.
 * @property {Backoff} [backoff]
 * @property {number} [connectTimeoutMs=10000]  Socket open + `welcome` must fit in this.
 * @property {number} [ackEvery=16]
 * @property {number} [ackDelayMs=50]
 * @property {number} [maxUnconfirmed=1024]
 */

/**
 * @typedef {object} PeerInfo
 * @property {string} id
 * @property {string} name
 */

/**
 * @typedef {object} Outcome  How one connection ended.
 * @property {number | null} code  Close code, null when the link died or we dropped it.
 * @property {string} reason
 * @property {number | null} retryAfterMs  From an `error` with `retry_after_ms`.
 * @property {string | null} reconnectMode  From a server `reconnect` (scope session).
 * @property {number | null} reconnectDelayMs
 */

/**
 * @typedef {object} Connection  One WebSocket, from open to close.
 * @property {WebSocketLike} ws
 * @property {boolean} resuming
 * @property {boolean} joined  `welcome` received.
 * @property {boolean} ended
 * @property {Outcome} outcome
 * @property {unknown} deadTimer  connect timeout before welcome, heartbeat timeout after
 * @property {unknown} ackTimer
 * @property {{remaining: number, peers: PeerInfo[]} | null} replay  resume: messages still to replay
 */

/**
 * The signaling session with a Switchboard server.
 *
 * Events (`client.on(type, detail => …)`):
 * - `state` `{state, previous}` — `connecting` → `connected` ⇄ `reconnecting` → `closed`
 * - `joined` `{peer, session, peers, welcome}` — the first welcome
 * - `resumed` `{replayed, resent, welcome}` — the session survived a reconnect (media untouched)
 * - `rejoined` `{peer, session, peers, dropped, welcome}` — a new session (new peer id): redo media
 * - `reconnecting` `{attempt, delayMs, code, reason, action}`
 * - `peer-joined` `{peer: {id, name}}`, `peer-left` `{peer, reason}`, `peer-reconnecting` `{peer}`,
 *   `peer-resumed` `{peer}` — membership, de-duplicated: a peer joins once and leaves once
 * - `signal` `{from, data, seq}`
 * - `data` `{from, topic, payload, to, seq}` — an application message (chat…); `to` is the list
 *   of recipients when the sender named some, else null
 * - `error` `{code, message, cseq, retryAfterMs}` — an `error` message of the server
 * - `candidate-refused` `{message, cseq}` — the SFU does not contact the address of a trickled
 *   ICE candidate (usually a private host address; ICE goes on with the others). Not an `error`:
 *   browsers trickle such candidates in every normal session.
 * - `closed` `{code, reason, action}` — final
 * - every other server message by its type with the message as detail: `publish-answer`,
 *   `subscriber-offer`, `track-published`, `track-unpublished`, `track-state`, `track-muted`,
 *   `active-speakers`, `reconnect` (also for scope `media`), and `message` for every sequenced
 *   message.
 */
export class SignalingClient extends Emitter {
  /** @param {ClientOptions} options */
  constructor(options) {
    super();
    if (!options || !options.url || !options.room) throw new TypeError('url and room are required');
    this.url = options.url;
    this.room = options.room;
    this.name = options.name ?? '';
    this.subscribe = options.subscribe ?? true;
    /** @type {string[] | null} */
    this.codecs = options.codecs === undefined ? receiveCodecs() : options.codecs;
    this._token = options.tokenProvider ?? options.token ?? null;
    /** The first connection resumes a session of a previous page (a reload). */
    this._restoring = !!options.restore;
    /** Replayed messages still to come that were written before a reload (see `welcome`). */
    this._preReload = 0;
    this._createWebSocket = options.createWebSocket ?? ((url) => /** @type {WebSocketLike} */ (new WebSocket(url)));
    this._clock = options.clock ?? realClock;
    this._backoff = options.backoff ?? new Backoff({ random: options.random });
    this._connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this._ackEvery = options.ackEvery ?? 16;
    this._ackDelayMs = options.ackDelayMs ?? 50;
    this._maxUnconfirmed = options.maxUnconfirmed ?? 1024;

    /** @type {'connecting' | 'connected' | 'reconnecting' | 'closed'} */
    this.state = 'connecting';
    /** @type {string | null} our peer id, issued by the server */
    this.peerId = null;
    /** @type {string | null} */
    this.sessionId = null;
    /** @type {string | null} */
    this._resumeToken = null;
    /** @type {Map<string, string>} peer id → name of the other peers in the room */
    this.peers = new Map();
    /** @type {Set<string>} peers announced as reconnecting */
    this.reconnectingPeers = new Set();
    /** Highest server `seq` received: what a resume asks to continue after. */
    this.lastSeq = 0;
    this._acked = 0;
    this._cseq = 0;
    /** @type {{cseq: number, message: Record<string, any>}[]} */
    this._unconfirmed = [];
    /** @type {RTCIceServer[]} from the last welcome */
    this.iceServers = [];
    /** @type {{intervalMs: number, timeoutMs: number} | null} announced in welcome */
    this.heartbeat = null;
    /** @type {{id: string, peer: string, kind: string}[]} tracks listed by the last welcome */
    this.tracks = [];
    /** @type {string | null} */
    this.node = null;
    this.resumes = 0;
    /** Signaling RTT the server measured from our pongs (ms), from the latest ping; null until known. */
    this.rttMs = /** @type {number | null} */ (null);
    this.rejoins = 0;
    this.reconnects = 0;
    this.pings = 0;
    /** @type {number | null} clock time of the last frame from the server */
    this.lastHeardAt = null;
    /** @type {number | null} */
    this.lastPingAt = null;
    if (options.restore) {
      this.sessionId = options.restore.session;
      this._resumeToken = options.restore.resumeToken;
      this.lastSeq = this._acked = options.restore.lastSeq;
    }
    /** @type {number | null} */
    this.closeCode = null;
    /** @type {string} */
    this.closeReason = '';

    /** @type {Connection | null} */
    this._conn = null;
    /** @type {unknown} */
    this._retryTimer = null;
    /** @type {unknown} */
    this._leaveTimer = null;
    this._leaving = false;
    /** @type {Promise<any> | null} */
    this._connectPromise = null;
    /** @type {{resolve: (v: any) => void, reject: (e: Error) => void} | null} */
    this._connectWaiter = null;
    /** @type {(v?: any) => void} */
    let resolveClosed = () => {};
    /** Resolves with `{code, reason}` once the client is closed for good. */
    this.closed = new Promise((resolve) => {
      resolveClosed = resolve;
    });
    this._resolveClosed = resolveClosed;
  }

  // -- public API ------------------------------------------------------------------------------

  /**
   * Connect and join. Resolves with the `joined` detail; rejects if the client closes first
   * (fatal close code, `close()`). Network trouble is retried, not reported here. Idempotent:
   * a second call returns the same promise.
   * @returns {Promise<{peer: string, session: string, peers: PeerInfo[], welcome: any}>}
   */
  connect() {
    if (this._connectPromise) return this._connectPromise;
    if (this.state === 'closed') return Promise.reject(new SwitchboardError('client is closed', { code: this.closeCode }));
    this._connectPromise = new Promise((resolve, reject) => {
      this._connectWaiter = { resolve, reject };
    });
    this._startConnection();
    return this._connectPromise;
  }

  /**
   * Send `data` to peer `to` of the room; queued while reconnecting, resent after a resume.
   * @param {string} to
   * @param {any} data
   * @returns {number} the message's cseq
   */
  signal(to, data) {
    return this.send({ type: 'signal', to, data });
  }

  /**
   * Send an application message (chat, reactions, app state) to every other peer of the room,
   * or to `options.to` only. It rides the session like `signal`: ordered, resent after a resume,
   * delivered exactly once; the server does not store it. Refusals come as `error` with this
   * cseq (`rate-limited` with `retryAfterMs`, `too-large`, `unknown-peer`, `forbidden`).
   * @param {string} topic  1–64 characters of `[A-Za-z0-9_.:/-]` (the page's chat uses `chat`)
   * @param {any} payload  any JSON, at most 16 KiB encoded (server default)
   * @param {{to?: string[]}} [options]
   * @returns {number} the message's cseq
   */
  sendData(topic, payload, options = {}) {
    /** @type {Record<string, any>} */
    const message = { type: 'data', topic, payload };
    if (options.to) message.to = [...options.to];
    return this.send(message);
  }

  /**
   * Send a state-changing message: it gets the next `cseq` and stays queued until the server
   * confirms it (`last_cseq`), so a resume resends it. Written at once when connected.
   * @param {Record<string, any>} message
   * @returns {number} the message's cseq
   */
  send(message) {
    if (this.state === 'closed') throw new SwitchboardError('client is closed', { code: this.closeCode });
    if (this._unconfirmed.length >= this._maxUnconfirmed) {
      throw new BackpressureError(`${this._unconfirmed.length} messages await confirmation`);
    }
    this._cseq += 1;
    const stamped = { ...message, cseq: this._cseq };
    this._unconfirmed.push({ cseq: this._cseq, message: stamped });
    const conn = this._conn;
    if (this.state === 'connected' && conn && conn.joined) this._write(conn, stamped);
    return this._cseq;
  }

  /** Messages sent but not yet confirmed by the server. */
  get unconfirmed() {
    return this._unconfirmed.length;
  }

  /**
   * What a page needs to resume this session after a reload (keep it in `sessionStorage`,
   * pass it as `restore`), or null before the first welcome.
   * @returns {{session: string, resumeToken: string, lastSeq: number, peer: string | null} | null}
   */
  snapshot() {
    if (this.sessionId === null || this._resumeToken === null) return null;
    return { session: this.sessionId, resumeToken: this._resumeToken, lastSeq: this.lastSeq, peer: this.peerId };
  }

  /**
   * End the session on the server (the others see `peer-left {reason: "left"}`), then close.
   * When not connected there is nobody to tell: it closes at once (the server's grace period
   * ends the session). `lingerMs`: the session stays resumable that long (a page that may be
   * reloading), and ends as "left" if nobody resumes it.
   * @param {{lingerMs?: number}} [options]
   * @returns {Promise<{code: number | null, reason: string}>}
   */
  leave(options = {}) {
    const conn = this._conn;
    if (this.state !== 'connected' || !conn || !conn.joined || this._leaving) {
      if (!this._leaving) this.close();
      return this.closed;
    }
    this._leaving = true;
    this._write(conn, options.lingerMs ? { type: 'leave', linger_ms: Math.round(options.lingerMs) } : { type: 'leave' });
    // The server answers with close 1000; do not wait for it forever.
    this._leaveTimer = this._clock.setTimeout(() => this._finish(1000, 'left'), this._connectTimeoutMs);
    return this.closed;
  }

  /**
   * Close now without ending the session server-side; idempotent. Resolves when closed.
   * @returns {Promise<{code: number | null, reason: string}>}
   */
  close() {
    if (this.state !== 'closed') this._finish(1000, 'closed by client');
    return this.closed;
  }

  /**
   * Skip the backoff wait: when reconnecting, attempt now (e.g. on the browser's `online`
   * event). Does nothing in any other state, or while an attempt is already under way.
   */
  reconnectNow() {
    if (this.state === 'closed' || this._retryTimer === null) return;
    this._clock.clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._startConnection();
  }

  /**
   * Liveness of the link as this client sees it. The server measures RTT from our pongs but does
   * not tell us, so this reports heartbeat health: `ok` while pings arrive on schedule, `late`
   * once one is 1.5 intervals overdue, `dead` past the announced timeout (the client then
   * reconnects by itself).
   */
  health() {
    const now = this._clock.now();
    const hb = this.heartbeat;
    const since = this.lastHeardAt === null ? null : now - this.lastHeardAt;
    const sincePing = this.lastPingAt === null ? null : now - this.lastPingAt;
    /** @type {'ok' | 'late' | 'dead' | 'unknown'} */
    let status = 'unknown';
    if (this.state === 'connected' && hb && since !== null) {
      const quiet = Math.max(since, sincePing ?? 0);
      status = since > hb.timeoutMs ? 'dead' : quiet > hb.intervalMs * 1.5 ? 'late' : 'ok';
    }
    return {
      status,
      state: this.state,
      lastHeardMs: since,
      lastPingMs: sincePing,
      intervalMs: hb ? hb.intervalMs : null,
      timeoutMs: hb ? hb.timeoutMs : null,
      pings: this.pings,
    };
  }

  // -- connections -----------------------------------------------------------------------------

  /** @param {'connecting' | 'connected' | 'reconnecting' | 'closed'} state */
  _setState(state) {
    if (this.state === state) return;
    const previous = this.state;
    this.state = state;
    this.emit('state', { state, previous });
  }

  _startConnection() {
    if (this.state === 'closed') return;
    const resuming = this.sessionId !== null && this._resumeToken !== null;
    /** @type {Connection} */
    const conn = {
      ws: /** @type {any} */ (null),
      resuming,
      joined: false,
      ended: false,
      outcome: { code: null, reason: 'closed before welcome', retryAfterMs: null, reconnectMode: null, reconnectDelayMs: null },
      deadTimer: null,
      ackTimer: null,
      replay: null,
    };
    this._conn = conn;
    try {
      conn.ws = this._createWebSocket(this.url);
    } catch (error) {
      conn.outcome.reason = `connect failed: ${error instanceof Error ? error.message : String(error)}`;
      this._endConnection(conn, false);
      return;
    }
    conn.deadTimer = this._clock.setTimeout(() => this._abort(conn, 'connect timeout'), this._connectTimeoutMs);
    conn.ws.onopen = () => this._onOpen(conn);
    conn.ws.onmessage = (ev) => this._onFrame(conn, ev.data);
    conn.ws.onclose = (ev) => this._onSocketClose(conn, ev);
    conn.ws.onerror = () => {}; // a close event always follows
  }

  /** @param {Connection} conn */
  _onOpen(conn) {
    if (conn.ended) return;
    /** @type {Record<string, any>} */
    const join = { type: 'join', room: this.room, subscribe: this.subscribe };
    if (this.name) join.name = this.name;
    if (this.codecs) join.codecs = this.codecs;
    if (conn.resuming) {
      join.resume = { session: this.sessionId, token: this._resumeToken, last_seq: this.lastSeq };
      if (this._restoring) join.resume.fresh_media = true;
    }
    const token = this._token;
    if (typeof token !== 'function') {
      if (token) join.token = token;
      this._write(conn, join);
      return;
    }
    // A fresh token per attempt (they expire); the socket may die while we fetch it.
    Promise.resolve()
      .then(() => token())
      .then(
        (value) => {
          if (conn.ended) return;
          if (value) join.token = value;
          this._write(conn, join);
        },
        (error) => this._abort(conn, `token provider failed: ${error instanceof Error ? error.message : String(error)}`),
      );
  }

  /**
   * @param {Connection} conn
   * @param {Record<string, any>} message
   */
  _write(conn, message) {
    if (conn.ended || conn.ws.readyState !== 1) return;
    try {
      conn.ws.send(JSON.stringify(message));
    } catch {
      // The socket is going away; its close event decides what happens next.
    }
  }

  /**
   * The single place where a frame from the server enters.
   * @param {Connection} conn
   * @param {unknown} data
   */
  _onFrame(conn, data) {
    if (conn.ended) return;
    // Any frame at all is a sign of life (STYLE: LiveKit's dead-link timer).
    this.lastHeardAt = this._clock.now();
    if (conn.joined) this._armDeadTimer(conn);
    if (typeof data !== 'string') return;
    /** @type {any} */
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (message === null || typeof message !== 'object' || Array.isArray(message)) return;
    if (!conn.joined) {
      this._onJoinPhaseMessage(conn, message);
      return;
    }
    this._onSessionMessage(conn, message);
  }

  /**
   * Before `welcome`: errors explain the close that follows; nothing is emitted.
   * @param {Connection} conn
   * @param {any} message
   */
  _onJoinPhaseMessage(conn, message) {
    if (message.type === 'error') {
      conn.outcome.reason = `${message.code}: ${message.message}`;
      if (typeof message.retry_after_ms === 'number') conn.outcome.retryAfterMs = message.retry_after_ms;
    } else if (message.type === 'welcome') {
      this._onWelcome(conn, message);
    }
  }

  /**
   * @param {Connection} conn
   * @param {any} welcome
   */
  _onWelcome(conn, welcome) {
    const now = this._clock.now();
    conn.joined = true;
    this._clock.clearTimeout(conn.deadTimer);
    const hb = welcome.heartbeat || {};
    this.heartbeat = { intervalMs: hb.interval_ms ?? 10_000, timeoutMs: hb.timeout_ms ?? 20_000 };
    this.iceServers = Array.isArray(welcome.ice_servers) ? welcome.ice_servers : [];
    this.tracks = Array.isArray(welcome.tracks) ? welcome.tracks : [];
    this.node = welcome.node ?? null;
    this._backoff.connected(now);
    this._armDeadTimer(conn);
    /** @type {PeerInfo[]} */
    const peers = (Array.isArray(welcome.peers) ? welcome.peers : []).map((p) => ({ id: p.id, name: p.name ?? '' }));

    if (conn.resuming && welcome.resumed && this._restoring) {
      // A session of the page before a reload: joined, as far as this page is concerned. What
      // the old page had not confirmed is gone with it; numbering continues after the server's.
      this._restoring = false;
      // The replay that follows was written before the reload: its SFU messages about peer
      // connections (an offer for the old subscriber connection, an answer to the old page's
      // publish, their media-failed) concern connections this page never had. The server
      // redoes this session's media (fresh_media); answering such an offer on the new
      // connection would apply our answer to the SFU's next offer, and no media would flow.
      this._preReload = welcome.replayed ?? 0;
      this.peerId = welcome.peer;
      this._cseq = welcome.last_cseq ?? 0;
      this.peers = new Map(peers.map((p) => [p.id, p.name]));
      this._setState('connected');
      const detail = { peer: welcome.peer, session: welcome.session, peers, welcome, restored: true };
      this.emit('joined', detail);
      const waiter = this._connectWaiter;
      this._connectWaiter = null;
      waiter?.resolve(detail);
      if (!conn.ended) this._scheduleAck(conn);
      return;
    }
    this._restoring = false;
    if (conn.resuming && welcome.resumed) {
      this.resumes += 1;
      this._confirm(welcome.last_cseq ?? 0);
      // Resend in cseq order before anything new can be written (we are not `connected` yet).
      for (const entry of this._unconfirmed) this._write(conn, entry.message);
      const replayed = welcome.replayed ?? 0;
      conn.replay = { remaining: replayed, peers };
      this._setState('connected');
      this.emit('resumed', { replayed, resent: this._unconfirmed.length, welcome });
      if (conn.ended) return;
      if (replayed === 0) this._finishReplay(conn);
      return;
    }

    // A fresh session: seq and cseq start over.
    const first = this.peerId === null;
    this.lastSeq = typeof welcome.seq === 'number' ? welcome.seq : 1;
    this._acked = 0;
    this.sessionId = welcome.session;
    this._resumeToken = welcome.resume_token;
    this.peerId = welcome.peer;
    this.reconnectingPeers.clear();
    if (first) {
      // Messages queued before the first join were numbered for this session: send them now.
      this.peers = new Map(peers.map((p) => [p.id, p.name]));
      this._setState('connected');
      for (const entry of this._unconfirmed) this._write(conn, entry.message);
      const detail = { peer: welcome.peer, session: welcome.session, peers, welcome };
      this.emit('joined', detail);
      const waiter = this._connectWaiter;
      this._connectWaiter = null;
      waiter?.resolve(detail);
    } else {
      // What was queued belonged to the old session (its peer id, its media): drop it.
      const dropped = this._unconfirmed.length;
      this._unconfirmed = [];
      this._cseq = 0;
      this.rejoins += 1;
      this._setState('connected');
      const before = this.peers;
      this.peers = new Map(peers.map((p) => [p.id, p.name]));
      this.emit('rejoined', { peer: welcome.peer, session: welcome.session, peers, dropped, welcome });
      this._emitMembershipDiff(before, this.peers, 'gone');
    }
    if (!conn.ended) this._scheduleAck(conn);
  }

  /**
   * Membership after a resume: the welcome lists the room as it is *now*, the replayed messages
   * tell how it got there. Apply the replay as usual, then settle on the welcome's list, so no
   * peer is shown twice nor lost whatever the order.
   * @param {Connection} conn
   */
  _finishReplay(conn) {
    const replay = conn.replay;
    conn.replay = null;
    if (!replay) return;
    const target = new Map(replay.peers.map((p) => [p.id, p.name]));
    const before = this.peers;
    this.peers = target;
    this._emitMembershipDiff(before, target, 'gone');
  }

  /**
   * @param {Map<string, string>} before
   * @param {Map<string, string>} after
   * @param {string} reason
   */
  _emitMembershipDiff(before, after, reason) {
    for (const id of before.keys()) {
      if (!after.has(id)) {
        this.reconnectingPeers.delete(id);
        this.emit('peer-left', { peer: id, reason });
      }
    }
    for (const [id, name] of after) {
      if (!before.has(id)) this.emit('peer-joined', { peer: { id, name } });
    }
  }

  /** @param {number} lastCseq */
  _confirm(lastCseq) {
    let n = 0;
    while (n < this._unconfirmed.length && this._unconfirmed[n].cseq <= lastCseq) n += 1;
    if (n > 0) this._unconfirmed.splice(0, n);
  }

  /**
   * After `welcome`: seq bookkeeping, then the message itself.
   * @param {Connection} conn
   * @param {any} message
   */
  _onSessionMessage(conn, message) {
    const seq = message.seq;
    const sequenced = Number.isInteger(seq);
    if (sequenced) {
      if (seq <= this.lastSeq) return; // a duplicate: already delivered
      if (seq !== this.lastSeq + 1) {
        this._abort(conn, `sequence gap: expected ${this.lastSeq + 1}, got ${seq}`);
        return;
      }
      this.lastSeq = seq;
      if (this._preReload > 0) {
        this._preReload -= 1;
        if (isOldPageMedia(message)) {
          this._acknowledge(conn);
          return;
        }
      }
    }
    let reconnectNow = false;
    switch (message.type) {
      case 'ping':
        this.pings += 1;
        this.lastPingAt = this._clock.now();
        this._write(conn, { type: 'pong', t: message.t });
        if (typeof message.last_cseq === 'number') this._confirm(message.last_cseq);
        if (typeof message.rtt_ms === 'number') this.rttMs = message.rtt_ms;
        if (Number.isInteger(message.timeout_ms) && message.timeout_ms > 0 && this.heartbeat) {
          // The server adapts the silence timeout to this link's RTT and announces it: our
          // dead-link timer follows, re-armed with it from this ping on.
          this.heartbeat = { ...this.heartbeat, timeoutMs: message.timeout_ms };
          this._armDeadTimer(conn);
        }
        break;
      case 'error':
        if (message.code === 'candidate-refused') {
          this.emit('candidate-refused', { message: message.message, cseq: message.cseq ?? null });
          break;
        }
        if (typeof message.retry_after_ms === 'number') conn.outcome.retryAfterMs = message.retry_after_ms;
        conn.outcome.reason = `${message.code}: ${message.message}`;
        if (message.code !== 'replay-overflow') {
          this.emit('error', {
            code: message.code,
            message: message.message,
            cseq: message.cseq ?? null,
            retryAfterMs: message.retry_after_ms ?? null,
            target: message.target ?? null,
          });
        }
        break;
      case 'reconnect':
        this.emit('reconnect', message);
        if ((message.scope ?? 'session') === 'session') {
          conn.outcome.reconnectMode = message.mode;
          conn.outcome.reconnectDelayMs = message.delay_ms ?? 0;
          conn.outcome.reason = `server asked to ${message.mode}`;
          reconnectNow = true;
        }
        break;
      default:
        this._dispatch(message);
    }
    if (conn.ended) return; // a listener closed the client
    if (sequenced) {
      this.emit('message', message);
      if (conn.ended) return;
      if (conn.replay) {
        conn.replay.remaining -= 1;
        if (conn.replay.remaining <= 0) this._finishReplay(conn);
      }
      this._acknowledge(conn);
    }
    if (reconnectNow) {
      this._ack(conn);
      this._endConnection(conn, true);
    }
  }

  /**
   * A sequenced message was taken (handed on or dropped): acknowledge now when `ackEvery` are
   * waiting, else soon.
   * @param {Connection} conn
   */
  _acknowledge(conn) {
    if (this.lastSeq - this._acked >= this._ackEvery) this._ack(conn);
    else this._scheduleAck(conn);
  }

  /** @param {any} message */
  _dispatch(message) {
    switch (message.type) {
      case 'peer-joined': {
        const peer = message.peer || {};
        const known = this.peers.has(peer.id);
        this.peers.set(peer.id, peer.name ?? '');
        if (!known) this.emit('peer-joined', { peer: { id: peer.id, name: peer.name ?? '' } });
        return;
      }
      case 'peer-left':
        if (this.peers.delete(message.peer)) {
          this.reconnectingPeers.delete(message.peer);
          this.emit('peer-left', { peer: message.peer, reason: message.reason ?? '' });
        }
        return;
      case 'peer-reconnecting':
        if (this.peers.has(message.peer)) {
          this.reconnectingPeers.add(message.peer);
          this.emit('peer-reconnecting', { peer: message.peer });
        }
        return;
      case 'peer-resumed':
        this.reconnectingPeers.delete(message.peer);
        this.emit('peer-resumed', { peer: message.peer });
        return;
      case 'signal':
        this.emit('signal', { from: message.from, data: message.data, seq: message.seq });
        return;
      case 'data':
        this.emit('data', {
          from: message.from,
          topic: message.topic,
          payload: message.payload,
          to: Array.isArray(message.to) ? message.to : null,
          seq: message.seq,
        });
        return;
      default:
        // SFU messages (publish-answer, subscriber-offer, track-*) and anything newer.
        if (typeof message.type === 'string') this.emit(message.type, message);
    }
  }

  /** @param {Connection} conn */
  _scheduleAck(conn) {
    if (conn.ackTimer !== null || this.lastSeq <= this._acked) return;
    conn.ackTimer = this._clock.setTimeout(() => {
      conn.ackTimer = null;
      this._ack(conn);
    }, this._ackDelayMs);
  }

  /** @param {Connection} conn */
  _ack(conn) {
    if (conn.ackTimer !== null) {
      this._clock.clearTimeout(conn.ackTimer);
      conn.ackTimer = null;
    }
    if (this.lastSeq > this._acked && !conn.ended && conn.ws.readyState === 1) {
      this._acked = this.lastSeq;
      this._write(conn, { type: 'ack', seq: this.lastSeq });
    }
  }

  /** @param {Connection} conn */
  _armDeadTimer(conn) {
    this._clock.clearTimeout(conn.deadTimer);
    const timeout = this.heartbeat ? this.heartbeat.timeoutMs : this._connectTimeoutMs;
    conn.deadTimer = this._clock.setTimeout(() => this._abort(conn, 'server heartbeat timeout'), timeout);
  }

  /**
   * @param {Connection} conn
   * @param {{code: number, reason?: string}} ev
   */
  _onSocketClose(conn, ev) {
    if (conn.ended) return;
    conn.outcome.code = typeof ev.code === 'number' ? ev.code : null;
    if (conn.outcome.reason === 'closed before welcome' || conn.outcome.reason === 'connection lost') {
      conn.outcome.reason = `closed with ${ev.code}${ev.reason ? ` (${ev.reason})` : ''}`;
    }
    this._endConnection(conn, false);
  }

  /**
   * Drop the connection ourselves (dead link, sequence gap, connect timeout): no close frame to
   * wait for, the outcome is decided now.
   * @param {Connection} conn
   * @param {string} reason
   */
  _abort(conn, reason) {
    if (conn.ended) return;
    conn.outcome.code = null;
    conn.outcome.reason = reason;
    this._endConnection(conn, true);
  }

  /**
   * The single end of every connection: timers off, handlers detached, then decide.
   * @param {Connection} conn
   * @param {boolean} closeSocket
   * @param {number} [code]
   */
  _endConnection(conn, closeSocket, code = CLIENT_RECONNECT_CLOSE) {
    if (conn.ended) return;
    conn.ended = true;
    this._clock.clearTimeout(conn.deadTimer);
    if (conn.ackTimer !== null) this._clock.clearTimeout(conn.ackTimer);
    conn.deadTimer = conn.ackTimer = null;
    const ws = conn.ws;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      if (closeSocket) {
        try {
          ws.close(code, code === 1000 ? 'closed by client' : 'reconnecting');
        } catch {
          // already closing
        }
      }
    }
    if (this._conn === conn) this._conn = null;
    this._afterConnection(conn.outcome);
  }

  /** @param {Outcome} outcome */
  _afterConnection(outcome) {
    if (this.state === 'closed') return;
    this._backoff.disconnected(this._clock.now());
    if (this._leaving) {
      this._finish(outcome.code ?? 1000, 'left');
      return;
    }
    let action = closeAction(outcome.code);
    if (outcome.reconnectMode === 'rejoin') action = ClientAction.REJOIN;
    if (action === ClientAction.DONE || action === ClientAction.FATAL) {
      this._finish(outcome.code, outcome.reason, action);
      return;
    }
    if (action === ClientAction.REJOIN) {
      this.sessionId = null;
      this._resumeToken = null;
    }
    let delayMs = this._backoff.nextDelay();
    if (outcome.reconnectDelayMs !== null) delayMs = outcome.reconnectDelayMs;
    else if (action === ClientAction.RESUME_AFTER_DELAY && outcome.retryAfterMs !== null) {
      delayMs = Math.max(delayMs, outcome.retryAfterMs);
    }
    this.reconnects += 1;
    this._setState(this.peerId === null && this.state === 'connecting' ? 'connecting' : 'reconnecting');
    this.emit('reconnecting', { attempt: this._backoff.attempt, delayMs, code: outcome.code, reason: outcome.reason, action });
    if (this.state === 'closed') return;
    this._retryTimer = this._clock.setTimeout(() => {
      this._retryTimer = null;
      this._startConnection();
    }, delayMs);
  }

  /**
   * @param {number | null} code
   * @param {string} reason
   * @param {string} [action]
   */
  _finish(code, reason, action = closeAction(code)) {
    if (this.state === 'closed') return;
    this.closeCode = code;
    this.closeReason = reason;
    this._setState('closed');
    if (this._retryTimer !== null) this._clock.clearTimeout(this._retryTimer);
    if (this._leaveTimer !== null) this._clock.clearTimeout(this._leaveTimer);
    this._retryTimer = this._leaveTimer = null;
    const conn = this._conn;
    if (conn) this._endConnection(conn, true, 1000);
    const waiter = this._connectWaiter;
    this._connectWaiter = null;
    waiter?.reject(new SwitchboardError(`could not join: ${reason}`, { code }));
    this.emit('closed', { code, reason, action });
    this._resolveClosed({ code, reason });
  }
}

// -- SDP helpers --------------------------------------------------------------------------------

/**
 * The media codec names this browser can receive (`VP8`, `H264`, `opus`, …), for `join`;
 * `null` where `RTCRtpReceiver.getCapabilities` does not exist (node, old browsers).
 * Not codecs: RTX, RED, FEC and comfort noise.
 * @returns {string[] | null}
 */
export function receiveCodecs() {
  const receiver = /** @type {any} */ (globalThis).RTCRtpReceiver;
  if (!receiver || typeof receiver.getCapabilities !== 'function') return null;
  const names = new Set();
  for (const kind of ['audio', 'video']) {
    for (const codec of receiver.getCapabilities(kind)?.codecs ?? []) {
      const name = String(codec.mimeType).split('/')[1];
      if (name && !/^(rtx|red|ulpfec|flexfec-03|CN|telephone-event)$/i.test(name)) names.add(name);
    }
  }
  return names.size > 0 ? [...names].slice(0, 32) : null;
}

/** The msid stream of a subscriber slot the SFU keeps idle for reuse (sfu/service.py). */
const IDLE_STREAM = 'switchboard-idle';

/**
 * The `a=msid` of every m-section of an SDP, by mid: `{stream, track}`.
 * The SFU names them after the protocol (see {@link Room}): stream = publishing peer id,
 * track = `track.id` of `track-published`.
 * @param {string} sdp
 * @returns {Map<string, {stream: string, track: string | null, kind: string}>}
 */
export function parseMsids(sdp) {
  /** @type {Map<string, {stream: string, track: string | null, kind: string}>} */
  const byMid = new Map();
  const sections = sdp.split(/\r?\nm=/).slice(1);
  for (const section of sections) {
    const kind = section.slice(0, section.indexOf(' '));
    const mid = /(?:^|\n)a=mid:(\S+)/.exec(section)?.[1];
    const msid = /(?:^|\n)a=msid:(\S+)(?: (\S+))?/.exec(section);
    if (mid === undefined || !msid) continue;
    byMid.set(mid, { stream: msid[1], track: msid[2] ?? null, kind });
  }
  return byMid;
}

/**
 * A candidate as the protocol's `candidate` message wants it (the four RTCIceCandidateInit
 * fields, nothing else: the schema is strict).
 * @param {RTCIceCandidate | RTCIceCandidateInit | null} candidate
 * @returns {RTCIceCandidateInit | null}
 */
export function candidateInit(candidate) {
  if (!candidate) return null;
  const json = typeof (/** @type {any} */ (candidate).toJSON) === 'function' ? /** @type {any} */ (candidate).toJSON() : candidate;
  /** @type {RTCIceCandidateInit} */
  const init = { candidate: json.candidate ?? '' };
  if (json.sdpMid !== undefined) init.sdpMid = json.sdpMid;
  if (json.sdpMLineIndex !== undefined) init.sdpMLineIndex = json.sdpMLineIndex;
  if (json.usernameFragment !== undefined) init.usernameFragment = json.usernameFragment;
  return init;
}

// -- media through the SFU ----------------------------------------------------------------------

/**
 * @typedef {object} RemoteTrack
 * @property {string} peer  publishing peer id
 * @property {string} trackId  `track.id` of `track-published` (msid track id)
 * @property {string} kind
 * @property {MediaStreamTrack} track
 * @property {MediaStream} stream  one stream per remote peer, holding all its tracks
 * @property {string | null} mid
 * @property {RTCRtpReceiver | null} receiver
 * @property {string} source  `camera`, `microphone`, `screen` or `screen-audio`
 */

/**
 * A published track as the room knows it (`track-published`, updated by `track-state` and
 * `track-muted`).
 * @typedef {object} TrackInfo
 * @property {string} id
 * @property {string} peer
 * @property {string} kind
 * @property {string} [source]
 * @property {boolean} [muted]  the publisher muted it
 * @property {boolean} [operator_muted]  an operator muted it (the SFU does not forward it)
 */

/** Screen tracks travel in a stream of their own, so a page can show them apart. */
export const SCREEN_SOURCES = Object.freeze(['screen', 'screen-audio']);

/** @param {string} kind @param {string | undefined} source */
function sourceOf(kind, source) {
  return source ?? (kind === 'audio' ? 'microphone' : 'camera');
}

/**
 * @typedef {object} RoomOptions
 * @property {typeof RTCPeerConnection} [RTCPeerConnection]
 * @property {typeof MediaStream} [MediaStream]
 * @property {Clock} [clock]
 * @property {number} [disconnectedGraceMs=3000] a PC `disconnected` this long gets an ICE restart
 * @property {boolean} [simulcast] publish camera video as three simulcast layers (rids q/h/f at
 *   1/4, 1/2 and full resolution) so that each subscriber gets the layer it can take. Default:
 *   true, except in Firefox (one layer unless asked: `simulcast: true` works through the SFU,
 *   tested, but its viewers and the page's default are not settled yet; docs/sfu.md)
 */

/** The simulcast layers a camera track is published with, lowest first. */
export const SIMULCAST_ENCODINGS = Object.freeze([
  Object.freeze({ rid: 'q', scaleResolutionDownBy: 4 }),
  Object.freeze({ rid: 'h', scaleResolutionDownBy: 2 }),
  Object.freeze({ rid: 'f', scaleResolutionDownBy: 1 }),
]);

/**
 * Media through the SFU: a publisher RTCPeerConnection (we offer with `publish`, the SFU answers
 * `publish-answer`) and a subscriber RTCPeerConnection (the SFU offers `subscriber-offer`, we
 * answer `subscriber-answer`); our ICE candidates trickle as `candidate {target}`. The SFU's
 * candidates come inside its SDP (the protocol has no server→client candidate message).
 *
 * Remote tracks are mapped to participants by the subscriber SDP: the SFU writes
 * `a=msid:<publishing peer id> <track.id>` in each m-section (and `track-published` carries the
 * same `track.id`). The mapping goes through the transceiver's mid, so it does not depend on the
 * browser keeping the msid track id as `MediaStreamTrack.id`.
 *
 * Recovery: `resumed` — nothing to do (media untouched), but a PC that failed meanwhile gets its
 * ICE restart now. `rejoined` or `reconnect {scope: "media"}` — both PCs are closed and redone,
 * local tracks are published again (SFU failover in a cluster sends `reconnect {scope: "media"}`:
 * the room moved to another SFU node, which offers the subscriber PC anew as tracks reappear;
 * offers still queued from the old SFU are dropped). Publisher `failed` (or `disconnected` for a while) while
 * signaling is up — an ICE restart offer (`publish` with new ICE credentials). The subscriber PC
 * is the answerer and cannot restart ICE itself: it emits `subscriber-failed`, and the SFU is
 * expected to re-offer (ICE restart) or send `reconnect {scope: "media"}`.
 *
 * Track state: every local track is published with its `source` (camera, microphone, screen,
 * screen-audio) and `muted`; {@link Room#setMuted} tells the room (`track-state`). Remote
 * tracks' state is in `published` (TrackInfo) and changes come as `track-state` events; an
 * operator mute of one of *our* tracks comes as `operator-muted` `{track, muted}`. Devices switch
 * with {@link Room#replaceTrack} (no renegotiation: the SFU keeps the same track).
 *
 * Events: `track` (RemoteTrack), `track-removed` (RemoteTrack), `track-published` (TrackInfo),
 * `track-unpublished`, `track-unavailable` `{track, reason}` (a track this client will not
 * receive: codec not announced, or its m-line rejected), `track-state` `{track: TrackInfo}`, `operator-muted` `{track, muted}`,
 * `active-speakers` `{speakers: [{peer, level}]}`, `track-layer` `{track, quality, requested,
 * rid?, width?, height?}` (the simulcast layer of a remote track we now receive; see
 * {@link Room#setSubscription}), `publish-layers` `{mid, active, error?}` (dynacast: the
 * simulcast encodings of our own camera that somebody receives; the others were set inactive,
 * unless `error` says `setParameters` refused),
 * `published` `{cseq}`, `error`
 * `{code, message, op}`, `connection-state` `{target, state}`, `subscriber-failed`,
 * `media-reset` `{reason}`. On `error media-failed` with `target: "subscriber"` the subscriber
 * connection is closed: the SFU's next `subscriber-offer` builds a new one.
 */
export class Room extends Emitter {
  /**
   * @param {SignalingClient} client
   * @param {RoomOptions} [options]
   */
  constructor(client, options = {}) {
    super();
    this.client = client;
    this._PC = options.RTCPeerConnection ?? globalThis.RTCPeerConnection;
    this._MediaStream = options.MediaStream ?? globalThis.MediaStream;
    this._clock = options.clock ?? realClock;
    this._disconnectedGraceMs = options.disconnectedGraceMs ?? 3000;
    this._simulcast = options.simulcast ?? !/Firefox\//.test(globalThis.navigator?.userAgent ?? '');
    /** @type {Map<string, {quality: string, requested: string, rid?: string, width?: number, height?: number}>} track id → layer received (`track-layer`) */
    this.layers = new Map();
    /** @type {Map<string, string>} track id → quality asked with setSubscription */
    this.qualities = new Map();
    /** @type {RTCPeerConnection | null} */
    this.publisher = null;
    /** @type {RTCPeerConnection | null} */
    this.subscriber = null;
    /** @type {MediaStream | null} */
    this.localStream = null;
    /** @type {MediaStreamTrack[]} local tracks we publish */
    this.localTracks = [];
    /** @type {Map<MediaStreamTrack, {id: string, source: string, muted: boolean}>} what we say about each local track */
    this._meta = new Map();
    /** @type {Map<string, TrackInfo>} track id → published remote track */
    this.published = new Map();
    /** @type {{peer: string, level: number}[]} the room's active speakers, loudest first */
    this.speakers = [];
    /** @type {Map<string, RemoteTrack>} mid → remote track on the subscriber PC */
    this.remote = new Map();
    /** @type {Map<string, MediaStream>} peer id → one stream with all its tracks */
    this.peerStreams = new Map();
    /** @type {Map<string, {stream: string, track: string | null, kind: string}>} */
    this._msids = new Map();
    /** @type {Map<number, {resolve: (m: any) => void, reject: (e: Error) => void}>} publish cseq → waiter */
    this._answers = new Map();
    /** @type {Promise<void>} */
    this._pubChain = Promise.resolve();
    /** @type {Promise<void>} */
    this._subChain = Promise.resolve();
    /** @type {{publisher: RTCIceCandidateInit[] | null, subscriber: RTCIceCandidateInit[] | null}} held until the SDP is sent */
    this._held = { publisher: null, subscriber: null };
    this._restartPending = false;
    /** @type {unknown} */
    this._disconnectTimer = null;
    /** Bumped whenever both PCs are dropped: work queued for the old ones must not touch the new. */
    this._generation = 0;
    this._closed = false;
    /** @type {(() => void)[]} */
    this._offs = [];
    for (const track of client.tracks) this.published.set(track.id, track);
    this._listen();
  }

  _listen() {
    const c = this.client;
    this._offs.push(
      c.on('publish-answer', (m) => this._onPublishAnswer(m)),
      c.on('error', (e) => this._onError(e)),
      c.on('subscriber-offer', (m) => {
        // An offer of the SFU we left (a media reset since) must not start a new connection:
        // the next SFU offers its own.
        const generation = this._generation;
        this._subChain = this._subChain.then(() => this._answerSubscriber(m.sdp, generation)).catch((error) => this._fail('subscribe', error));
      }),
      c.on('track-published', (m) => {
        this.published.set(m.track.id, m.track);
        this.emit('track-published', m.track);
      }),
      c.on('track-unpublished', (m) => this._onTrackUnpublished(m.track)),
      c.on('track-unavailable', (m) => this.emit('track-unavailable', { track: m.track, reason: m.reason })),
      c.on('track-state', (m) => this._onTrackState({ ...m.track, muted: m.muted })),
      c.on('track-muted', (m) => {
        if (m.track.peer === c.peerId) {
          this.emit('operator-muted', { track: m.track, muted: m.muted });
          return;
        }
        this._onTrackState({ ...m.track, operator_muted: m.muted });
      }),
      c.on('track-layer', (m) => {
        const { type: _type, seq: _seq, ...layer } = m;
        this.layers.set(m.track, layer);
        this.emit('track-layer', layer);
      }),
      c.on('publish-layers', (m) => {
        // A refused setParameters only costs bandwidth: reported with the event, not fatal.
        this._applyPublishLayers(m.mid, m.active).catch((e) => this.emit('publish-layers', { mid: m.mid, active: m.active, error: String(e) }));
      }),
      c.on('active-speakers', (m) => {
        this.speakers = Array.isArray(m.speakers) ? m.speakers : [];
        this.emit('active-speakers', { speakers: this.speakers });
      }),
      c.on('peer-left', (e) => this._dropPeer(e.peer)),
      c.on('resumed', () => {
        if (this._restartPending) this._restartPublisherIce();
      }),
      c.on('rejoined', () => {
        this.published = new Map(c.tracks.map((t) => [t.id, t]));
        this._resetMedia('rejoined', 0);
      }),
      c.on('reconnect', (m) => {
        if (m.scope === 'media') this._resetMedia('server asked to redo media', m.delay_ms ?? 0);
      }),
      c.on('closed', () => this.close()),
    );
  }

  /**
   * Publish local tracks (one sendonly transceiver each) and negotiate with the SFU.
   * @param {MediaStream} stream
   * @param {MediaStreamTrack[]} [tracks] default: every track of `stream`
   * @param {{screen?: boolean}} [options] `screen`: a screen share (sources `screen` and
   *   `screen-audio` instead of `camera` and `microphone`)
   * @returns {Promise<void>} resolves once the SFU's answer is applied
   */
  publish(stream, tracks = stream.getTracks(), options = {}) {
    if (!options.screen) this.localStream = stream;
    const pc = this._ensurePublisher();
    for (const track of tracks) {
      if (this.localTracks.includes(track)) continue;
      this.localTracks.push(track);
      if (!this._meta.has(track)) {
        const source = options.screen ? (track.kind === 'audio' ? 'screen-audio' : 'screen') : sourceOf(track.kind, undefined);
        // The SFU names the track after the msid of our offer: the track's id when added.
        this._meta.set(track, { id: track.id, source, muted: !track.enabled });
      }
      const camera = this._meta.get(track)?.source === 'camera' && track.kind === 'video';
      const init = { direction: /** @type {const} */ ('sendonly'), streams: [stream] };
      if (camera && this._simulcast) {
        pc.addTransceiver(track, { ...init, sendEncodings: SIMULCAST_ENCODINGS.map((e) => ({ ...e })) });
      } else {
        pc.addTransceiver(track, init);
      }
    }
    return this._negotiatePublisher(false);
  }

  /**
   * Dynacast (`publish-layers`): send only the simulcast encodings somebody receives.
   * @param {string} mid the m-line of our publisher connection
   * @param {string[]} active the rids to keep sending
   * @returns {Promise<void>}
   */
  async _applyPublishLayers(mid, active) {
    const transceiver = this.publisher?.getTransceivers().find((t) => t.mid === mid);
    if (!transceiver) return;
    const parameters = transceiver.sender.getParameters();
    if (!parameters.encodings || parameters.encodings.length < 2) return;
    let changed = false;
    for (const encoding of parameters.encodings) {
      const on = encoding.rid === undefined || active.includes(encoding.rid);
      if (encoding.active !== on) {
        encoding.active = on;
        changed = true;
      }
    }
    if (changed) await transceiver.sender.setParameters(parameters);
    this.emit('publish-layers', { mid, active });
  }

  /**
   * Which quality of a remote video track we want (`set-subscription`): `low`, `medium`,
   * `high` (the default) or `off`. For a simulcast track the SFU switches layer at its next
   * keyframe and says which one we get (`track-layer` event, {@link Room#layers}). Repeating
   * the current choice sends nothing.
   * @param {string} trackId the id of `track-published`
   * @param {'low' | 'medium' | 'high' | 'off'} quality
   */
  setSubscription(trackId, quality) {
    if ((this.qualities.get(trackId) ?? 'high') === quality) return;
    this.qualities.set(trackId, quality);
    if (this.client.state !== 'closed') this.client.send({ type: 'set-subscription', track: trackId, quality });
  }

  /**
   * Mute or unmute one local track and tell the room (`track-state`). The track keeps its sender
   * (it sends silence or black frames): unmuting is instant, nothing is renegotiated.
   * @param {MediaStreamTrack} track
   * @param {boolean} muted
   */
  setMuted(track, muted) {
    track.enabled = !muted;
    const meta = this._meta.get(track);
    if (!meta || meta.muted === muted) return;
    meta.muted = muted;
    if (this.localTracks.includes(track) && this.publisher && this.client.state !== 'closed') {
      this.client.send({ type: 'track-state', track: meta.id, muted });
    }
  }

  /** Is this local track muted (as the room was told)? @param {MediaStreamTrack} track */
  isMuted(track) {
    return this._meta.get(track)?.muted ?? !track.enabled;
  }

  /**
   * Switch a published track to another device (`RTCRtpSender.replaceTrack`): no renegotiation,
   * the room keeps seeing the same track id, source and mute state.
   * @param {MediaStreamTrack} oldTrack
   * @param {MediaStreamTrack} newTrack
   */
  async replaceTrack(oldTrack, newTrack) {
    const meta = this._meta.get(oldTrack);
    if (meta) {
      this._meta.delete(oldTrack);
      this._meta.set(newTrack, meta);
      newTrack.enabled = !meta.muted;
    }
    const index = this.localTracks.indexOf(oldTrack);
    if (index >= 0) this.localTracks[index] = newTrack;
    const sender = this.publisher?.getSenders().find((s) => s.track === oldTrack);
    if (sender) await sender.replaceTrack(newTrack);
  }

  /** @param {TrackInfo} track */
  _onTrackState(track) {
    const known = this.published.get(track.id);
    const info = { ...(known ?? {}), ...track };
    this.published.set(track.id, info);
    this.emit('track-state', { track: info });
  }

  /**
   * Stop publishing a track: `unpublish` to the SFU, transceiver stopped, renegotiated.
   * @param {MediaStreamTrack} track
   */
  async unpublish(track) {
    const pc = this.publisher;
    this.localTracks = this.localTracks.filter((t) => t !== track);
    if (!pc) return;
    const transceiver = pc.getTransceivers().find((t) => t.sender.track === track);
    if (!transceiver) return;
    // The SFU names a published track after the msid track id of our offer: the local track's id.
    this.client.send({ type: 'unpublish', track: this._meta.get(track)?.id ?? track.id });
    this._meta.delete(track);
    transceiver.stop();
    await this._negotiatePublisher(false);
  }

  /**
   * Mute or unmute local tracks of a kind without renegotiating (the track keeps its sender).
   * @param {'audio' | 'video'} kind
   * @param {boolean} enabled
   */
  setEnabled(kind, enabled) {
    for (const track of this.localTracks) {
      if (track.kind === kind && !SCREEN_SOURCES.includes(this._meta.get(track)?.source ?? '')) this.setMuted(track, !enabled);
    }
  }

  /** Remote tracks of a peer. @param {string} peer */
  tracksOf(peer) {
    return [...this.remote.values()].filter((r) => r.peer === peer);
  }

  close() {
    if (this._closed) return;
    this._closed = true;
    for (const off of this._offs) off();
    this._offs = [];
    this._closePeerConnections('closed');
  }

  // -- publisher -------------------------------------------------------------------------------

  _ensurePublisher() {
    if (this.publisher) return this.publisher;
    const pc = new this._PC({ iceServers: this.client.iceServers });
    this.publisher = pc;
    pc.onicecandidate = (ev) => this._trickle('publisher', pc, ev.candidate);
    pc.onconnectionstatechange = () => this._onPublisherState(pc);
    return pc;
  }

  /**
   * One negotiation at a time; each one offers the publisher's current transceivers.
   * @param {boolean} iceRestart
   */
  _negotiatePublisher(iceRestart) {
    const generation = this._generation;
    const run = this._pubChain.then(() => (generation === this._generation ? this._publishOnce(iceRestart) : undefined));
    this._pubChain = run.catch(() => {});
    return run;
  }

  /**
   * Our candidates are held until the SFU's answer is applied: a publish the server refuses
   * (`sfu-unavailable`) then costs one error, not one per candidate (20 errors close the
   * connection), and the SFU never sees candidates for an offer it has not taken.
   * @param {boolean} iceRestart
   */
  async _publishOnce(iceRestart) {
    const pc = this.publisher;
    if (!pc || this._closed) return;
    this._held.publisher = [];
    let accepted = false;
    try {
      const offer = await pc.createOffer(iceRestart ? { iceRestart: true } : {});
      await pc.setLocalDescription(offer);
      const sdp = pc.localDescription?.sdp ?? offer.sdp ?? '';
      const tracks = this.localTracks.slice(0, 16).flatMap((t) => {
        const meta = this._meta.get(t);
        return meta ? [{ id: meta.id, source: meta.source, muted: meta.muted }] : [];
      });
      const cseq = this.client.send(tracks.length ? { type: 'publish', sdp, tracks } : { type: 'publish', sdp });
      const answer = await new Promise((resolve, reject) => this._answers.set(cseq, { resolve, reject }));
      if (pc !== this.publisher || pc.signalingState === 'closed') return;
      await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
      accepted = true;
      this.emit('published', { cseq });
    } finally {
      const held = pc === this.publisher ? this._held.publisher : null;
      if (pc === this.publisher) this._held.publisher = null;
      if (accepted) for (const c of held ?? []) this._sendCandidate('publisher', c);
    }
  }

  /** @param {any} message */
  _onPublishAnswer(message) {
    let cseq = message.cseq;
    if (typeof cseq !== 'number') cseq = Math.min(...this._answers.keys()); // oldest pending
    const waiter = this._answers.get(cseq);
    if (!waiter) return;
    this._answers.delete(cseq);
    waiter.resolve(message);
  }

  /** @param {{code: string, message: string, cseq: number | null, target?: string | null}} error */
  _onError(error) {
    if (error.code === 'media-failed' && error.target === 'subscriber') {
      // The SFU closed its end and offers a new connection: answer it on a fresh one.
      this._dropSubscriber();
      return;
    }
    if (error.cseq == null) return;
    const waiter = this._answers.get(error.cseq);
    if (!waiter) return;
    this._answers.delete(error.cseq);
    waiter.reject(new SwitchboardError(`${error.code}: ${error.message}`, { code: error.code }));
  }

  /** @param {RTCPeerConnection} pc */
  _onPublisherState(pc) {
    if (pc !== this.publisher) return;
    const state = pc.connectionState;
    this.emit('connection-state', { target: 'publisher', state });
    this._clock.clearTimeout(this._disconnectTimer);
    this._disconnectTimer = null;
    if (state === 'failed') this._restartPublisherIce();
    else if (state === 'disconnected') {
      this._disconnectTimer = this._clock.setTimeout(() => {
        if (pc === this.publisher && pc.connectionState === 'disconnected') this._restartPublisherIce();
      }, this._disconnectedGraceMs);
    }
  }

  _restartPublisherIce() {
    if (!this.publisher || this._closed) return;
    if (this.client.state !== 'connected') {
      this._restartPending = true; // done on `resumed`; a rejoin redoes everything anyway
      return;
    }
    this._restartPending = false;
    this._negotiatePublisher(true).catch((error) => this._fail('ice-restart', error));
  }

  // -- subscriber ------------------------------------------------------------------------------

  _ensureSubscriber() {
    if (this.subscriber) return this.subscriber;
    const pc = new this._PC({ iceServers: this.client.iceServers });
    this.subscriber = pc;
    pc.onicecandidate = (ev) => this._trickle('subscriber', pc, ev.candidate);
    pc.ontrack = (ev) => this._onTrack(pc, ev);
    pc.onconnectionstatechange = () => {
      if (pc !== this.subscriber) return;
      this.emit('connection-state', { target: 'subscriber', state: pc.connectionState });
      if (pc.connectionState === 'failed') this.emit('subscriber-failed', {});
    };
    return pc;
  }

  /**
   * @param {string} sdp
   * @param {number} [generation] the media generation the offer arrived in
   */
  async _answerSubscriber(sdp, generation = this._generation) {
    if (this._closed || generation !== this._generation) return;
    const pc = this._ensureSubscriber();
    this._msids = parseMsids(sdp);
    this._held.subscriber = [];
    try {
      await pc.setRemoteDescription({ type: 'offer', sdp });
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      if (pc !== this.subscriber) return;
      this.client.send({ type: 'subscriber-answer', sdp: pc.localDescription?.sdp ?? answer.sdp ?? '' });
    } finally {
      const held = this._held.subscriber;
      this._held.subscriber = null;
      for (const c of held ?? []) this._sendCandidate('subscriber', c);
    }
    this._adoptRecycled(pc);
    this._pruneRemote(pc);
  }

  /**
   * The SFU recycles an m-line for a new track by changing its msid, without a direction
   * change, so no `track` event fires: map such transceivers to their new track here.
   * @param {RTCPeerConnection} pc
   */
  _adoptRecycled(pc) {
    if (pc !== this.subscriber) return;
    for (const t of pc.getTransceivers()) {
      const msid = t.mid ? this._msids.get(t.mid) : undefined;
      if (!t.mid || !msid?.track || !this.published.has(msid.track)) continue;
      if (t.currentDirection !== 'recvonly' && t.currentDirection !== 'sendrecv') continue;
      if (this.remote.get(t.mid)?.trackId === msid.track) continue;
      this._onTrack(pc, /** @type {any} */ ({ track: t.receiver.track, transceiver: t, receiver: t.receiver, streams: [] }));
    }
  }

  /** Close the subscriber connection (its remote tracks go); the next offer builds a new one. */
  _dropSubscriber() {
    const pc = this.subscriber;
    if (!pc) return;
    for (const key of [...this.remote.keys()]) this._removeRemote(key);
    pc.onicecandidate = pc.ontrack = pc.onconnectionstatechange = null;
    pc.close();
    this.subscriber = null;
    this._held.subscriber = null;
  }

  /**
   * @param {RTCPeerConnection} pc
   * @param {RTCTrackEvent} ev
   */
  _onTrack(pc, ev) {
    if (pc !== this.subscriber) return;
    const mid = ev.transceiver?.mid ?? null;
    const msid = mid !== null ? this._msids.get(mid) : undefined;
    const trackId = msid?.track ?? ev.track.id;
    const info = this.published.get(trackId);
    // A freed slot the SFU keeps for reuse (sendonly, silent, msid IDLE_STREAM) is nobody's
    // track: _adoptRecycled maps it once a published track takes it.
    if (!info && msid?.stream === IDLE_STREAM) return;
    const peer = info?.peer ?? msid?.stream ?? ev.streams[0]?.id ?? 'unknown';
    const source = sourceOf(ev.track.kind, info?.source);
    // A screen share is a stream of its own: the page shows it apart from the camera.
    const streamKey = SCREEN_SOURCES.includes(source) ? `${peer}#screen` : peer;
    let stream = this.peerStreams.get(streamKey);
    if (!stream) this.peerStreams.set(streamKey, (stream = new this._MediaStream()));
    const key = mid ?? trackId;
    const previous = this.remote.get(key);
    if (previous && previous.track !== ev.track) this._removeRemote(key);
    stream.addTrack(ev.track);
    /** @type {RemoteTrack} */
    const remote = { peer, trackId, kind: ev.track.kind, track: ev.track, stream, mid, receiver: ev.receiver ?? null, source };
    this.remote.set(key, remote);
    this.emit('track', remote);
  }

  /** Transceivers the SFU made inactive no longer carry a track. @param {RTCPeerConnection} pc */
  _pruneRemote(pc) {
    for (const t of pc.getTransceivers()) {
      if (t.mid && this.remote.has(t.mid) && (t.currentDirection === 'inactive' || t.currentDirection === 'stopped')) {
        this._removeRemote(t.mid);
      }
    }
  }

  /** @param {{id: string, peer: string, kind: string}} track */
  _onTrackUnpublished(track) {
    this.published.delete(track.id);
    this.layers.delete(track.id);
    this.qualities.delete(track.id);
    for (const [key, remote] of this.remote) if (remote.trackId === track.id) this._removeRemote(key);
    this.emit('track-unpublished', track);
  }

  /** @param {string} peer */
  _dropPeer(peer) {
    for (const [key, remote] of this.remote) if (remote.peer === peer) this._removeRemote(key);
    for (const [id, info] of this.published) if (info.peer === peer) this.published.delete(id);
    this.peerStreams.delete(peer);
    this.peerStreams.delete(`${peer}#screen`);
  }

  /** @param {string} key */
  _removeRemote(key) {
    const remote = this.remote.get(key);
    if (!remote) return;
    this.remote.delete(key);
    remote.stream.removeTrack(remote.track);
    this.emit('track-removed', remote);
  }

  // -- shared ----------------------------------------------------------------------------------

  /**
   * @param {'publisher' | 'subscriber'} target
   * @param {RTCPeerConnection} pc
   * @param {RTCIceCandidate | null} candidate
   */
  _trickle(target, pc, candidate) {
    if (pc !== (target === 'publisher' ? this.publisher : this.subscriber)) return;
    const init = candidateInit(candidate);
    const held = this._held[target];
    if (held) held.push(/** @type {any} */ (init));
    else this._sendCandidate(target, init);
  }

  /**
   * @param {'publisher' | 'subscriber'} target
   * @param {RTCIceCandidateInit | null} candidate
   */
  _sendCandidate(target, candidate) {
    if (this._closed || this.client.state === 'closed') return;
    this.client.send({ type: 'candidate', target, candidate });
  }

  /**
   * Close both PCs and publish the local tracks again on fresh ones (after `delayMs`).
   * @param {string} reason
   * @param {number} delayMs
   */
  _resetMedia(reason, delayMs) {
    if (this._closed) return;
    const tracks = [...this.localTracks];
    const stream = this.localStream;
    this._closePeerConnections(reason);
    this.emit('media-reset', { reason });
    if (!stream || tracks.length === 0) return;
    this._clock.setTimeout(() => {
      if (this._closed || this.client.state === 'closed') return;
      this.publish(stream, tracks).catch((error) => this._fail('publish', error));
    }, delayMs);
  }

  /** @param {string} reason */
  _closePeerConnections(reason) {
    this._generation += 1;
    for (const [cseq, waiter] of this._answers) {
      this._answers.delete(cseq);
      waiter.reject(new SwitchboardError(`publish abandoned: ${reason}`, { code: 'abandoned' }));
    }
    for (const key of [...this.remote.keys()]) this._removeRemote(key);
    this.peerStreams.clear();
    this.localTracks = [];
    this._clock.clearTimeout(this._disconnectTimer);
    this._disconnectTimer = null;
    this._restartPending = false;
    for (const pc of [this.publisher, this.subscriber]) {
      if (!pc) continue;
      pc.onicecandidate = pc.ontrack = pc.onconnectionstatechange = null;
      pc.close();
    }
    this.publisher = this.subscriber = null;
    this._pubChain = Promise.resolve();
    this._subChain = Promise.resolve();
  }

  /**
   * @param {string} op
   * @param {unknown} error
   */
  _fail(op, error) {
    const code = error instanceof SwitchboardError ? error.code : null;
    if (code === 'abandoned') return;
    this.emit('error', { op, code, message: error instanceof Error ? error.message : String(error) });
  }
}

// -- direct calls ---------------------------------------------------------------------------------

/** Marker of P2PCall payloads inside `signal.data`. */
export const P2P_KIND = 'sb-p2p';

/**
 * Is this `signal.data` a P2PCall message?
 * @param {any} data
 */
export function isP2PSignal(data) {
  return data !== null && typeof data === 'object' && data.kind === P2P_KIND;
}

/**
 * @typedef {object} P2POptions
 * @property {boolean} [polite] default: our peer id sorts before theirs
 * @property {MediaStream | null} [localStream] tracks to send (none: receive only)
 * @property {boolean} [initiate=false] offer right away, with a receive-only audio/video
 *   transceiver for each kind we do not send, so a peer without camera still gets media. The
 *   other side should not initiate too: a newcomer calls the peers already in the room, and they
 *   answer (two simultaneous first offers make Chromium roll back, which has been seen to leave
 *   the polite side without ICE candidates).
 * @property {typeof RTCPeerConnection} [RTCPeerConnection]
 * @property {typeof MediaStream} [MediaStream]
 */

/**
 * A direct call with one peer, negotiated with "perfect negotiation" (W3C WebRTC §10.7) over
 * `signal`: both sides may offer at any time; on a collision the polite side rolls back and the
 * impolite side ignores the incoming offer. Signals are `{kind: "sb-p2p", description}` or
 * `{kind: "sb-p2p", candidate}`, or `{kind: "sb-p2p", bye: true}`. Because `signal` messages are
 * queued while reconnecting and resent after a resume, negotiation survives a signaling outage;
 * the call's media does not depend on signaling at all. ICE failure triggers `restartIce()`.
 *
 * Events: `track` `{track, stream}`, `state` `{state}` (connectionState), `closed`, `error`.
 */
export class P2PCall extends Emitter {
  /**
   * @param {SignalingClient} client
   * @param {string} peer  the other peer's id
   * @param {P2POptions} [options]
   */
  constructor(client, peer, options = {}) {
    super();
    this.client = client;
    this.peer = peer;
    this.polite = options.polite ?? String(client.peerId) < peer;
    const PC = options.RTCPeerConnection ?? globalThis.RTCPeerConnection;
    const MS = options.MediaStream ?? globalThis.MediaStream;
    this.pc = new PC({ iceServers: client.iceServers });
    /** The remote peer's tracks. */
    this.remoteStream = new MS();
    this.closed = false;
    this._makingOffer = false;
    this._ignoreOffer = false;
    this._settingAnswer = false;
    /** Counters of what went over `signal`, for diagnostics. */
    this.counters = { offersSent: 0, answersSent: 0, candidatesSent: 0, descriptionsReceived: 0, candidatesReceived: 0, offersIgnored: 0 };
    /** @type {Promise<void>} */
    this._chain = Promise.resolve();
    const pc = this.pc;
    pc.onnegotiationneeded = () => this._negotiate();
    pc.onicecandidate = (ev) => {
      this.counters.candidatesSent += 1;
      this._send({ candidate: candidateInit(ev.candidate) });
    };
    pc.ontrack = (ev) => {
      if (!this.remoteStream.getTracks().includes(ev.track)) this.remoteStream.addTrack(ev.track);
      ev.track.onended = () => this.remoteStream.removeTrack(ev.track);
      this.emit('track', { track: ev.track, stream: this.remoteStream });
    };
    pc.onconnectionstatechange = () => this.emit('state', { state: pc.connectionState });
    pc.oniceconnectionstatechange = () => {
      if (pc.iceConnectionState === 'failed') pc.restartIce();
    };
    if (options.localStream) this.addStream(options.localStream);
    if (options.initiate) {
      for (const kind of ['audio', 'video']) {
        if (!pc.getTransceivers().some((t) => (t.sender.track?.kind ?? t.receiver.track.kind) === kind)) {
          pc.addTransceiver(kind, { direction: 'recvonly' });
        }
      }
    }
  }

  /** @param {MediaStream} stream */
  addStream(stream) {
    const senders = this.pc.getSenders();
    for (const track of stream.getTracks()) {
      if (!senders.some((s) => s.track === track)) this.pc.addTrack(track, stream);
    }
  }

  /**
   * Feed a `signal` payload from this peer.
   * @param {any} data
   */
  handle(data) {
    if (this.closed || !isP2PSignal(data)) return;
    this._chain = this._chain.then(() => this._receive(data)).catch((error) => {
      this.emit('error', { message: error instanceof Error ? error.message : String(error) });
    });
  }

  /** Hang up: tell the peer (best effort) and close the PC. Idempotent. */
  close() {
    if (this.closed) return;
    this.closed = true;
    if (this.client.state !== 'closed') {
      try {
        this.client.signal(this.peer, { kind: P2P_KIND, bye: true });
      } catch {
        // closing anyway
      }
    }
    this._shutdown();
  }

  _shutdown() {
    this.closed = true;
    const pc = this.pc;
    pc.onnegotiationneeded = pc.onicecandidate = pc.ontrack = pc.onconnectionstatechange = pc.oniceconnectionstatechange = null;
    pc.close();
    this.emit('closed', {});
  }

  /** @param {Record<string, any>} payload */
  _send(payload) {
    if (this.closed || this.client.state === 'closed') return;
    this.client.signal(this.peer, { kind: P2P_KIND, ...payload });
  }

  async _negotiate() {
    try {
      this._makingOffer = true;
      await this.pc.setLocalDescription();
      const desc = this.pc.localDescription;
      if (desc) {
        this.counters.offersSent += 1;
        this._send({ description: { type: desc.type, sdp: desc.sdp } });
      }
    } catch (error) {
      this.emit('error', { message: error instanceof Error ? error.message : String(error) });
    } finally {
      this._makingOffer = false;
    }
  }

  /** @param {any} data */
  async _receive(data) {
    if (this.closed) return;
    const pc = this.pc;
    if (data.bye) {
      this._shutdown();
      return;
    }
    if (data.description) {
      this.counters.descriptionsReceived += 1;
      const description = data.description;
      const readyForOffer = !this._makingOffer && (pc.signalingState === 'stable' || this._settingAnswer);
      const collision = description.type === 'offer' && !readyForOffer;
      this._ignoreOffer = !this.polite && collision;
      if (this._ignoreOffer) {
        this.counters.offersIgnored += 1;
        return;
      }
      this._settingAnswer = description.type === 'answer';
      try {
        await pc.setRemoteDescription(description); // rolls back our offer when polite
      } finally {
        this._settingAnswer = false;
      }
      if (description.type === 'offer') {
        await pc.setLocalDescription();
        const desc = pc.localDescription;
        if (desc) {
          this.counters.answersSent += 1;
          this._send({ description: { type: desc.type, sdp: desc.sdp } });
        }
      }
    } else if ('candidate' in data) {
      this.counters.candidatesReceived += 1;
      try {
        await pc.addIceCandidate(data.candidate ?? undefined);
      } catch (error) {
        if (!this._ignoreOffer) throw error;
      }
    }
  }
}

/**
 * A replayed SFU message about the peer connections of the page before a reload.
 * @param {any} message
 */
function isOldPageMedia(message) {
  return message.type === 'subscriber-offer' || message.type === 'publish-answer'
    || (message.type === 'error' && message.code === 'media-failed');
}
