/**
 * The client action for a close code. `null` (no close frame: network loss) and codes outside
 * the table below 4000 (1005, 1006, …) reconnect with backoff; unknown 4xxx codes are fatal.
 * @param {number | null | undefined} code
 * @returns {string}
 */
export function closeAction(code: number | null | undefined): string;
/**
 * The media codec names this browser can receive (`VP8`, `H264`, `opus`, …), for `join`;
 * `null` where `RTCRtpReceiver.getCapabilities` does not exist (node, old browsers).
 * Not codecs: RTX, RED, FEC and comfort noise.
 * @returns {string[] | null}
 */
export function receiveCodecs(): string[] | null;
/**
 * The `a=msid` of every m-section of an SDP, by mid: `{stream, track}`.
 * The SFU names them after the protocol (see {@link Room}): stream = publishing peer id,
 * track = `track.id` of `track-published`.
 * @param {string} sdp
 * @returns {Map<string, {stream: string, track: string | null, kind: string}>}
 */
export function parseMsids(sdp: string): Map<string, {
    stream: string;
    track: string | null;
    kind: string;
}>;
/**
 * A candidate as the protocol's `candidate` message wants it (the four RTCIceCandidateInit
 * fields, nothing else: the schema is strict).
 * @param {RTCIceCandidate | RTCIceCandidateInit | null} candidate
 * @returns {RTCIceCandidateInit | null}
 */
export function candidateInit(candidate: RTCIceCandidate | RTCIceCandidateInit | null): RTCIceCandidateInit | null;
/**
 * Is this `signal.data` a P2PCall message?
 * @param {any} data
 */
export function isP2PSignal(data: any): boolean;
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
export const PROTOCOL_VERSION: 1;
/** What a client does after a close code (signaling/core/codes.py `ClientAction`). */
export const ClientAction: Readonly<{
    DONE: "done";
    RESUME_NOW: "resume-now";
    RESUME_BACKOFF: "resume-backoff";
    RESUME_AFTER_DELAY: "resume-after-delay";
    REJOIN: "rejoin";
    FATAL: "fatal";
}>;
/**
 * The close-code table of docs/protocol.md ("Close codes").
 * @type {Readonly<Record<number, {name: string, action: string}>>}
 */
export const CLOSE_CODES: Readonly<Record<number, {
    name: string;
    action: string;
}>>;
/**
 * The error-code table of docs/protocol.md ("Error codes"): the `code` of an `error` message, and
 * whether the same message may be sent again later and succeed (`retryable`).
 * @type {Readonly<Record<string, {retryable: boolean}>>}
 */
export const ERROR_CODES: Readonly<Record<string, {
    retryable: boolean;
}>>;
/** Close code this SDK uses when it drops a socket itself to reconnect (browsers only allow
 *  1000 and 3000–4999 from script; the server treats any client close as a detach). */
export const CLIENT_RECONNECT_CLOSE: 4000;
export class SwitchboardError extends Error {
    /**
     * @param {string} message
     * @param {{code?: string | number | null, cause?: unknown}} [options]
     */
    constructor(message: string, options?: {
        code?: string | number | null;
        cause?: unknown;
    });
    /** Protocol error code (string) or close code (number), when there is one. */
    code: string | number;
    cause: unknown;
}
/** Too many messages await confirmation by the server. */
export class BackpressureError extends SwitchboardError {
    /** @param {string} message */
    constructor(message: string);
}
/**
 * @typedef {object} Clock
 * @property {() => number} now  Milliseconds, monotonic.
 * @property {(fn: () => void, ms: number) => unknown} setTimeout
 * @property {(id: unknown) => void} clearTimeout
 */
/** @type {Clock} */
export const realClock: Clock;
/**
 * A tiny event emitter. Listeners get one `detail` object; a listener that throws does not stop
 * the others nor the protocol (the error goes to `onListenerError`, console.error by default).
 */
export class Emitter {
    /** @type {Map<string, Set<(detail: any) => void>>} */
    _listeners: Map<string, Set<(detail: any) => void>>;
    /** @type {(error: unknown, type: string) => void} */
    onListenerError: (error: unknown, type: string) => void;
    /**
     * @param {string} type
     * @param {(detail: any) => void} fn
     * @returns {() => void} a function that removes the listener
     */
    on(type: string, fn: (detail: any) => void): () => void;
    /** @param {string} type @param {(detail: any) => void} fn */
    off(type: string, fn: (detail: any) => void): void;
    /**
     * The next `type` event (whose detail satisfies `predicate`, if given).
     * @param {string} type
     * @param {(detail: any) => boolean} [predicate]
     * @returns {Promise<any>}
     */
    once(type: string, predicate?: (detail: any) => boolean): Promise<any>;
    /** @param {string} type @param {any} [detail] */
    emit(type: string, detail?: any): void;
}
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
    constructor(options?: BackoffOptions);
    baseMs: number;
    factor: number;
    capMs: number;
    stableAfterMs: number;
    random: () => number;
    attempt: number;
    /** @type {number | null} */
    _connectedAt: number | null;
    /** Delay before the next attempt (ms). */
    nextDelay(): number;
    /** @param {number} now */
    connected(now: number): void;
    /** @param {number} now */
    disconnected(now: number): void;
}
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
    constructor(options: ClientOptions);
    url: string;
    room: string;
    name: string;
    subscribe: boolean;
    /** @type {string[] | null} */
    codecs: string[] | null;
    _token: string | (() => (string | null | Promise<string | null>));
    /** The first connection resumes a session of a previous page (a reload). */
    _restoring: boolean;
    /** Replayed messages still to come that were written before a reload (see `welcome`). */
    _preReload: number;
    _createWebSocket: (url: string) => WebSocketLike;
    _clock: Clock;
    _backoff: Backoff;
    _connectTimeoutMs: number;
    _ackEvery: number;
    _ackDelayMs: number;
    _maxUnconfirmed: number;
    /** @type {'connecting' | 'connected' | 'reconnecting' | 'closed'} */
    state: "connecting" | "connected" | "reconnecting" | "closed";
    /** @type {string | null} our peer id, issued by the server */
    peerId: string | null;
    /** @type {string | null} */
    sessionId: string | null;
    /** @type {string | null} */
    _resumeToken: string | null;
    /** @type {Map<string, string>} peer id → name of the other peers in the room */
    peers: Map<string, string>;
    /** @type {Set<string>} peers announced as reconnecting */
    reconnectingPeers: Set<string>;
    /** Highest server `seq` received: what a resume asks to continue after. */
    lastSeq: number;
    _acked: number;
    _cseq: number;
    /** @type {{cseq: number, message: Record<string, any>}[]} */
    _unconfirmed: {
        cseq: number;
        message: Record<string, any>;
    }[];
    /** @type {RTCIceServer[]} from the last welcome */
    iceServers: RTCIceServer[];
    /** @type {{intervalMs: number, timeoutMs: number} | null} announced in welcome */
    heartbeat: {
        intervalMs: number;
        timeoutMs: number;
    } | null;
    /** @type {{id: string, peer: string, kind: string}[]} tracks listed by the last welcome */
    tracks: {
        id: string;
        peer: string;
        kind: string;
    }[];
    /** @type {string | null} */
    node: string | null;
    resumes: number;
    /** Signaling RTT the server measured from our pongs (ms), from the latest ping; null until known. */
    rttMs: number;
    rejoins: number;
    reconnects: number;
    pings: number;
    /** @type {number | null} clock time of the last frame from the server */
    lastHeardAt: number | null;
    /** @type {number | null} */
    lastPingAt: number | null;
    /** @type {number | null} */
    closeCode: number | null;
    /** @type {string} */
    closeReason: string;
    /** @type {Connection | null} */
    _conn: Connection | null;
    /** @type {unknown} */
    _retryTimer: unknown;
    /** @type {unknown} */
    _leaveTimer: unknown;
    _leaving: boolean;
    /** @type {Promise<any> | null} */
    _connectPromise: Promise<any> | null;
    /** @type {{resolve: (v: any) => void, reject: (e: Error) => void} | null} */
    _connectWaiter: {
        resolve: (v: any) => void;
        reject: (e: Error) => void;
    } | null;
    /** Resolves with `{code, reason}` once the client is closed for good. */
    closed: Promise<any>;
    _resolveClosed: (v?: any) => void;
    /**
     * Connect and join. Resolves with the `joined` detail; rejects if the client closes first
     * (fatal close code, `close()`). Network trouble is retried, not reported here. Idempotent:
     * a second call returns the same promise.
     * @returns {Promise<{peer: string, session: string, peers: PeerInfo[], welcome: any}>}
     */
    connect(): Promise<{
        peer: string;
        session: string;
        peers: PeerInfo[];
        welcome: any;
    }>;
    /**
     * Send `data` to peer `to` of the room; queued while reconnecting, resent after a resume.
     * @param {string} to
     * @param {any} data
     * @returns {number} the message's cseq
     */
    signal(to: string, data: any): number;
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
    sendData(topic: string, payload: any, options?: {
        to?: string[];
    }): number;
    /**
     * Send a state-changing message: it gets the next `cseq` and stays queued until the server
     * confirms it (`last_cseq`), so a resume resends it. Written at once when connected.
     * @param {Record<string, any>} message
     * @returns {number} the message's cseq
     */
    send(message: Record<string, any>): number;
    /** Messages sent but not yet confirmed by the server. */
    get unconfirmed(): number;
    /**
     * What a page needs to resume this session after a reload (keep it in `sessionStorage`,
     * pass it as `restore`), or null before the first welcome.
     * @returns {{session: string, resumeToken: string, lastSeq: number, peer: string | null} | null}
     */
    snapshot(): {
        session: string;
        resumeToken: string;
        lastSeq: number;
        peer: string | null;
    } | null;
    /**
     * End the session on the server (the others see `peer-left {reason: "left"}`), then close.
     * When not connected there is nobody to tell: it closes at once (the server's grace period
     * ends the session). `lingerMs`: the session stays resumable that long (a page that may be
     * reloading), and ends as "left" if nobody resumes it.
     * @param {{lingerMs?: number}} [options]
     * @returns {Promise<{code: number | null, reason: string}>}
     */
    leave(options?: {
        lingerMs?: number;
    }): Promise<{
        code: number | null;
        reason: string;
    }>;
    /**
     * Close now without ending the session server-side; idempotent. Resolves when closed.
     * @returns {Promise<{code: number | null, reason: string}>}
     */
    close(): Promise<{
        code: number | null;
        reason: string;
    }>;
    /**
     * Skip the backoff wait: when reconnecting, attempt now (e.g. on the browser's `online`
     * event). Does nothing in any other state, or while an attempt is already under way.
     */
    reconnectNow(): void;
    /**
     * Liveness of the link as this client sees it. The server measures RTT from our pongs but does
     * not tell us, so this reports heartbeat health: `ok` while pings arrive on schedule, `late`
     * once one is 1.5 intervals overdue, `dead` past the announced timeout (the client then
     * reconnects by itself).
     */
    health(): {
        status: "ok" | "late" | "dead" | "unknown";
        state: "connecting" | "connected" | "reconnecting" | "closed";
        lastHeardMs: number;
        lastPingMs: number;
        intervalMs: number;
        timeoutMs: number;
        pings: number;
    };
    /** @param {'connecting' | 'connected' | 'reconnecting' | 'closed'} state */
    _setState(state: "connecting" | "connected" | "reconnecting" | "closed"): void;
    _startConnection(): void;
    /** @param {Connection} conn */
    _onOpen(conn: Connection): void;
    /**
     * @param {Connection} conn
     * @param {Record<string, any>} message
     */
    _write(conn: Connection, message: Record<string, any>): void;
    /**
     * The single place where a frame from the server enters.
     * @param {Connection} conn
     * @param {unknown} data
     */
    _onFrame(conn: Connection, data: unknown): void;
    /**
     * Before `welcome`: errors explain the close that follows; nothing is emitted.
     * @param {Connection} conn
     * @param {any} message
     */
    _onJoinPhaseMessage(conn: Connection, message: any): void;
    /**
     * @param {Connection} conn
     * @param {any} welcome
     */
    _onWelcome(conn: Connection, welcome: any): void;
    /**
     * Membership after a resume: the welcome lists the room as it is *now*, the replayed messages
     * tell how it got there. Apply the replay as usual, then settle on the welcome's list, so no
     * peer is shown twice nor lost whatever the order.
     * @param {Connection} conn
     */
    _finishReplay(conn: Connection): void;
    /**
     * @param {Map<string, string>} before
     * @param {Map<string, string>} after
     * @param {string} reason
     */
    _emitMembershipDiff(before: Map<string, string>, after: Map<string, string>, reason: string): void;
    /** @param {number} lastCseq */
    _confirm(lastCseq: number): void;
    /**
     * After `welcome`: seq bookkeeping, then the message itself.
     * @param {Connection} conn
     * @param {any} message
     */
    _onSessionMessage(conn: Connection, message: any): void;
    /**
     * A sequenced message was taken (handed on or dropped): acknowledge now when `ackEvery` are
     * waiting, else soon.
     * @param {Connection} conn
     */
    _acknowledge(conn: Connection): void;
    /** @param {any} message */
    _dispatch(message: any): void;
    /** @param {Connection} conn */
    _scheduleAck(conn: Connection): void;
    /** @param {Connection} conn */
    _ack(conn: Connection): void;
    /** @param {Connection} conn */
    _armDeadTimer(conn: Connection): void;
    /**
     * @param {Connection} conn
     * @param {{code: number, reason?: string}} ev
     */
    _onSocketClose(conn: Connection, ev: {
        code: number;
        reason?: string;
    }): void;
    /**
     * Drop the connection ourselves (dead link, sequence gap, connect timeout): no close frame to
     * wait for, the outcome is decided now.
     * @param {Connection} conn
     * @param {string} reason
     */
    _abort(conn: Connection, reason: string): void;
    /**
     * The single end of every connection: timers off, handlers detached, then decide.
     * @param {Connection} conn
     * @param {boolean} closeSocket
     * @param {number} [code]
     */
    _endConnection(conn: Connection, closeSocket: boolean, code?: number): void;
    /** @param {Outcome} outcome */
    _afterConnection(outcome: Outcome): void;
    /**
     * @param {number | null} code
     * @param {string} reason
     * @param {string} [action]
     */
    _finish(code: number | null, reason: string, action?: string): void;
}
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
export const SCREEN_SOURCES: readonly string[];
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
export const SIMULCAST_ENCODINGS: readonly (Readonly<{
    rid: "q";
    scaleResolutionDownBy: 4;
}> | Readonly<{
    rid: "h";
    scaleResolutionDownBy: 2;
}> | Readonly<{
    rid: "f";
    scaleResolutionDownBy: 1;
}>)[];
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
    constructor(client: SignalingClient, options?: RoomOptions);
    client: SignalingClient;
    _PC: {
        new (configuration?: RTCConfiguration): RTCPeerConnection;
        prototype: RTCPeerConnection;
        generateCertificate(keygenAlgorithm: AlgorithmIdentifier): Promise<RTCCertificate>;
    };
    _MediaStream: {
        new (): MediaStream;
        new (stream: MediaStream): MediaStream;
        new (tracks: MediaStreamTrack[]): MediaStream;
        prototype: MediaStream;
    };
    _clock: Clock;
    _disconnectedGraceMs: number;
    _simulcast: boolean;
    /** @type {Map<string, {quality: string, requested: string, rid?: string, width?: number, height?: number}>} track id → layer received (`track-layer`) */
    layers: Map<string, {
        quality: string;
        requested: string;
        rid?: string;
        width?: number;
        height?: number;
    }>;
    /** @type {Map<string, string>} track id → quality asked with setSubscription */
    qualities: Map<string, string>;
    /** @type {RTCPeerConnection | null} */
    publisher: RTCPeerConnection | null;
    /** @type {RTCPeerConnection | null} */
    subscriber: RTCPeerConnection | null;
    /** @type {MediaStream | null} */
    localStream: MediaStream | null;
    /** @type {MediaStreamTrack[]} local tracks we publish */
    localTracks: MediaStreamTrack[];
    /** @type {Map<MediaStreamTrack, {id: string, source: string, muted: boolean}>} what we say about each local track */
    _meta: Map<MediaStreamTrack, {
        id: string;
        source: string;
        muted: boolean;
    }>;
    /** @type {Map<string, TrackInfo>} track id → published remote track */
    published: Map<string, TrackInfo>;
    /** @type {{peer: string, level: number}[]} the room's active speakers, loudest first */
    speakers: {
        peer: string;
        level: number;
    }[];
    /** @type {Map<string, RemoteTrack>} mid → remote track on the subscriber PC */
    remote: Map<string, RemoteTrack>;
    /** @type {Map<string, MediaStream>} peer id → one stream with all its tracks */
    peerStreams: Map<string, MediaStream>;
    /** @type {Map<string, {stream: string, track: string | null, kind: string}>} */
    _msids: Map<string, {
        stream: string;
        track: string | null;
        kind: string;
    }>;
    /** @type {Map<number, {resolve: (m: any) => void, reject: (e: Error) => void}>} publish cseq → waiter */
    _answers: Map<number, {
        resolve: (m: any) => void;
        reject: (e: Error) => void;
    }>;
    /** @type {Promise<void>} */
    _pubChain: Promise<void>;
    /** @type {Promise<void>} */
    _subChain: Promise<void>;
    /** @type {{publisher: RTCIceCandidateInit[] | null, subscriber: RTCIceCandidateInit[] | null}} held until the SDP is sent */
    _held: {
        publisher: RTCIceCandidateInit[] | null;
        subscriber: RTCIceCandidateInit[] | null;
    };
    _restartPending: boolean;
    /** @type {unknown} */
    _disconnectTimer: unknown;
    /** Bumped whenever both PCs are dropped: work queued for the old ones must not touch the new. */
    _generation: number;
    _closed: boolean;
    /** @type {(() => void)[]} */
    _offs: (() => void)[];
    _listen(): void;
    /**
     * Publish local tracks (one sendonly transceiver each) and negotiate with the SFU.
     * @param {MediaStream} stream
     * @param {MediaStreamTrack[]} [tracks] default: every track of `stream`
     * @param {{screen?: boolean}} [options] `screen`: a screen share (sources `screen` and
     *   `screen-audio` instead of `camera` and `microphone`)
     * @returns {Promise<void>} resolves once the SFU's answer is applied
     */
    publish(stream: MediaStream, tracks?: MediaStreamTrack[], options?: {
        screen?: boolean;
    }): Promise<void>;
    /**
     * Dynacast (`publish-layers`): send only the simulcast encodings somebody receives.
     * @param {string} mid the m-line of our publisher connection
     * @param {string[]} active the rids to keep sending
     * @returns {Promise<void>}
     */
    _applyPublishLayers(mid: string, active: string[]): Promise<void>;
    /**
     * Which quality of a remote video track we want (`set-subscription`): `low`, `medium`,
     * `high` (the default) or `off`. For a simulcast track the SFU switches layer at its next
     * keyframe and says which one we get (`track-layer` event, {@link Room#layers}). Repeating
     * the current choice sends nothing.
     * @param {string} trackId the id of `track-published`
     * @param {'low' | 'medium' | 'high' | 'off'} quality
     */
    setSubscription(trackId: string, quality: "low" | "medium" | "high" | "off"): void;
    /**
     * Mute or unmute one local track and tell the room (`track-state`). The track keeps its sender
     * (it sends silence or black frames): unmuting is instant, nothing is renegotiated.
     * @param {MediaStreamTrack} track
     * @param {boolean} muted
     */
    setMuted(track: MediaStreamTrack, muted: boolean): void;
    /** Is this local track muted (as the room was told)? @param {MediaStreamTrack} track */
    isMuted(track: MediaStreamTrack): boolean;
    /**
     * Switch a published track to another device (`RTCRtpSender.replaceTrack`): no renegotiation,
     * the room keeps seeing the same track id, source and mute state.
     * @param {MediaStreamTrack} oldTrack
     * @param {MediaStreamTrack} newTrack
     */
    replaceTrack(oldTrack: MediaStreamTrack, newTrack: MediaStreamTrack): Promise<void>;
    /** @param {TrackInfo} track */
    _onTrackState(track: TrackInfo): void;
    /**
     * Stop publishing a track: `unpublish` to the SFU, transceiver stopped, renegotiated.
     * @param {MediaStreamTrack} track
     */
    unpublish(track: MediaStreamTrack): Promise<void>;
    /**
     * Mute or unmute local tracks of a kind without renegotiating (the track keeps its sender).
     * @param {'audio' | 'video'} kind
     * @param {boolean} enabled
     */
    setEnabled(kind: "audio" | "video", enabled: boolean): void;
    /** Remote tracks of a peer. @param {string} peer */
    tracksOf(peer: string): RemoteTrack[];
    close(): void;
    _ensurePublisher(): RTCPeerConnection;
    /**
     * One negotiation at a time; each one offers the publisher's current transceivers.
     * @param {boolean} iceRestart
     */
    _negotiatePublisher(iceRestart: boolean): Promise<void>;
    /**
     * Our candidates are held until the SFU's answer is applied: a publish the server refuses
     * (`sfu-unavailable`) then costs one error, not one per candidate (20 errors close the
     * connection), and the SFU never sees candidates for an offer it has not taken.
     * @param {boolean} iceRestart
     */
    _publishOnce(iceRestart: boolean): Promise<void>;
    /** @param {any} message */
    _onPublishAnswer(message: any): void;
    /** @param {{code: string, message: string, cseq: number | null, target?: string | null}} error */
    _onError(error: {
        code: string;
        message: string;
        cseq: number | null;
        target?: string | null;
    }): void;
    /** @param {RTCPeerConnection} pc */
    _onPublisherState(pc: RTCPeerConnection): void;
    _restartPublisherIce(): void;
    _ensureSubscriber(): RTCPeerConnection;
    /**
     * @param {string} sdp
     * @param {number} [generation] the media generation the offer arrived in
     */
    _answerSubscriber(sdp: string, generation?: number): Promise<void>;
    /**
     * The SFU recycles an m-line for a new track by changing its msid, without a direction
     * change, so no `track` event fires: map such transceivers to their new track here.
     * @param {RTCPeerConnection} pc
     */
    _adoptRecycled(pc: RTCPeerConnection): void;
    /** Close the subscriber connection (its remote tracks go); the next offer builds a new one. */
    _dropSubscriber(): void;
    /**
     * @param {RTCPeerConnection} pc
     * @param {RTCTrackEvent} ev
     */
    _onTrack(pc: RTCPeerConnection, ev: RTCTrackEvent): void;
    /** Transceivers the SFU made inactive no longer carry a track. @param {RTCPeerConnection} pc */
    _pruneRemote(pc: RTCPeerConnection): void;
    /** @param {{id: string, peer: string, kind: string}} track */
    _onTrackUnpublished(track: {
        id: string;
        peer: string;
        kind: string;
    }): void;
    /** @param {string} peer */
    _dropPeer(peer: string): void;
    /** @param {string} key */
    _removeRemote(key: string): void;
    /**
     * @param {'publisher' | 'subscriber'} target
     * @param {RTCPeerConnection} pc
     * @param {RTCIceCandidate | null} candidate
     */
    _trickle(target: "publisher" | "subscriber", pc: RTCPeerConnection, candidate: RTCIceCandidate | null): void;
    /**
     * @param {'publisher' | 'subscriber'} target
     * @param {RTCIceCandidateInit | null} candidate
     */
    _sendCandidate(target: "publisher" | "subscriber", candidate: RTCIceCandidateInit | null): void;
    /**
     * Close both PCs and publish the local tracks again on fresh ones (after `delayMs`).
     * @param {string} reason
     * @param {number} delayMs
     */
    _resetMedia(reason: string, delayMs: number): void;
    /** @param {string} reason */
    _closePeerConnections(reason: string): void;
    /**
     * @param {string} op
     * @param {unknown} error
     */
    _fail(op: string, error: unknown): void;
}
/** Marker of P2PCall payloads inside `signal.data`. */
export const P2P_KIND: "sb-p2p";
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
    constructor(client: SignalingClient, peer: string, options?: P2POptions);
    client: SignalingClient;
    peer: string;
    polite: boolean;
    pc: RTCPeerConnection;
    /** The remote peer's tracks. */
    remoteStream: MediaStream;
    closed: boolean;
    _makingOffer: boolean;
    _ignoreOffer: boolean;
    _settingAnswer: boolean;
    /** Counters of what went over `signal`, for diagnostics. */
    counters: {
        offersSent: number;
        answersSent: number;
        candidatesSent: number;
        descriptionsReceived: number;
        candidatesReceived: number;
        offersIgnored: number;
    };
    /** @type {Promise<void>} */
    _chain: Promise<void>;
    /** @param {MediaStream} stream */
    addStream(stream: MediaStream): void;
    /**
     * Feed a `signal` payload from this peer.
     * @param {any} data
     */
    handle(data: any): void;
    /** Hang up: tell the peer (best effort) and close the PC. Idempotent. */
    close(): void;
    _shutdown(): void;
    /** @param {Record<string, any>} payload */
    _send(payload: Record<string, any>): void;
    _negotiate(): Promise<void>;
    /** @param {any} data */
    _receive(data: any): Promise<void>;
}
export type Clock = {
    /**
     * Milliseconds, monotonic.
     */
    now: () => number;
    setTimeout: (fn: () => void, ms: number) => unknown;
    clearTimeout: (id: unknown) => void;
};
export type BackoffOptions = {
    baseMs?: number;
    factor?: number;
    capMs?: number;
    /**
     * a connection up this long resets the attempt counter
     */
    stableAfterMs?: number;
    /**
     * uniform in [0, 1)
     */
    random?: () => number;
};
/**
 * The part of the WebSocket API the client uses (a browser `WebSocket` fits; tests pass a fake).
 */
export type WebSocketLike = {
    /**
     * 1 = OPEN
     */
    readyState: number;
    send: (data: string) => void;
    close: (code?: number, reason?: string) => void;
    onopen: ((ev: any) => void) | null;
    onmessage: ((ev: {
        data: any;
    }) => void) | null;
    onclose: ((ev: {
        code: number;
        reason?: string;
        wasClean?: boolean;
    }) => void) | null;
    onerror: ((ev: any) => void) | null;
};
export type ClientOptions = {
    /**
     * The server's `/ws` URL (`wss://host/ws`).
     */
    url: string;
    room: string;
    name?: string;
    /**
     * Access token, or a function fetching a fresh one for every connection attempt.
     */
    token?: string | null | (() => (string | null | Promise<string | null>));
    /**
     * Called once per connection attempt (first join, every resume and rejoin) for the access
     * token to present, so an expiring token can be replaced before a reconnect. Wins over `token`.
     */
    tokenProvider?: () => (string | null | Promise<string | null>);
    /**
     * Receive room media from the SFU.
     */
    subscribe?: boolean;
    /**
     * Codec names this client can receive, sent with `join`
     * so the SFU offers no track it cannot decode (`track-unavailable` instead). Default: from
     * `RTCRtpReceiver.getCapabilities` where it exists; `null` announces nothing.
     */
    codecs?: string[] | null;
    /**
     * A session this page held before a reload ({@link SignalingClient#snapshot}): the first
     * connection resumes it (with `fresh_media`: the peer connections did not survive) and emits
     * `joined` with `restored: true`; if the server refuses, it joins afresh.
     */
    restore?: {
        session: string;
        resumeToken: string;
        lastSeq: number;
    } | null;
    createWebSocket?: (url: string) => WebSocketLike;
    clock?: Clock;
    /**
     * Used by the default backoff.
     */
    random?: () => number;
    backoff?: Backoff;
    /**
     * Socket open + `welcome` must fit in this.
     */
    connectTimeoutMs?: number;
    ackEvery?: number;
    ackDelayMs?: number;
    maxUnconfirmed?: number;
};
export type PeerInfo = {
    id: string;
    name: string;
};
/**
 * How one connection ended.
 */
export type Outcome = {
    /**
     * Close code, null when the link died or we dropped it.
     */
    code: number | null;
    reason: string;
    /**
     * From an `error` with `retry_after_ms`.
     */
    retryAfterMs: number | null;
    /**
     * From a server `reconnect` (scope session).
     */
    reconnectMode: string | null;
    reconnectDelayMs: number | null;
};
/**
 * One WebSocket, from open to close.
 */
export type Connection = {
    ws: WebSocketLike;
    resuming: boolean;
    /**
     * `welcome` received.
     */
    joined: boolean;
    ended: boolean;
    outcome: Outcome;
    /**
     * connect timeout before welcome, heartbeat timeout after
     */
    deadTimer: unknown;
    ackTimer: unknown;
    /**
     * resume: messages still to replay
     */
    replay: {
        remaining: number;
        peers: PeerInfo[];
    } | null;
};
export type RemoteTrack = {
    /**
     * publishing peer id
     */
    peer: string;
    /**
     * `track.id` of `track-published` (msid track id)
     */
    trackId: string;
    kind: string;
    track: MediaStreamTrack;
    /**
     * one stream per remote peer, holding all its tracks
     */
    stream: MediaStream;
    mid: string | null;
    receiver: RTCRtpReceiver | null;
    /**
     * `camera`, `microphone`, `screen` or `screen-audio`
     */
    source: string;
};
/**
 * A published track as the room knows it (`track-published`, updated by `track-state` and
 * `track-muted`).
 */
export type TrackInfo = {
    id: string;
    peer: string;
    kind: string;
    source?: string;
    /**
     * the publisher muted it
     */
    muted?: boolean;
    /**
     * an operator muted it (the SFU does not forward it)
     */
    operator_muted?: boolean;
};
export type RoomOptions = {
    RTCPeerConnection?: typeof RTCPeerConnection;
    MediaStream?: typeof MediaStream;
    clock?: Clock;
    /**
     * a PC `disconnected` this long gets an ICE restart
     */
    disconnectedGraceMs?: number;
    /**
     * publish camera video as three simulcast layers (rids q/h/f at
     * 1/4, 1/2 and full resolution) so that each subscriber gets the layer it can take. Default:
     * true, except in Firefox (one layer unless asked: `simulcast: true` works through the SFU,
     * tested, but its viewers and the page's default are not settled yet; docs/sfu.md)
     */
    simulcast?: boolean;
};
export type P2POptions = {
    /**
     * default: our peer id sorts before theirs
     */
    polite?: boolean;
    /**
     * tracks to send (none: receive only)
     */
    localStream?: MediaStream | null;
    /**
     * offer right away, with a receive-only audio/video
     * transceiver for each kind we do not send, so a peer without camera still gets media. The
     * other side should not initiate too: a newcomer calls the peers already in the room, and they
     * answer (two simultaneous first offers make Chromium roll back, which has been seen to leave
     * the polite side without ICE candidates).
     */
    initiate?: boolean;
    RTCPeerConnection?: typeof RTCPeerConnection;
    MediaStream?: typeof MediaStream;
};
