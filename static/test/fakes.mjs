// Test doubles for the SDK: a clock that only moves when told, a WebSocket driven by the test,
// and a minimal RTCPeerConnection. No real time, no network.

import { SignalingClient } from '../switchboard.js';

/** Timers run only inside advance(), in due order (ties: creation order). */
export class FakeClock {
  constructor() {
    this.t = 0;
    this.nextId = 1;
    /** @type {Map<number, {at: number, fn: () => void}>} */
    this.timers = new Map();
  }

  now() {
    return this.t;
  }

  setTimeout(fn, ms) {
    const id = this.nextId++;
    this.timers.set(id, { at: this.t + Math.max(0, ms || 0), fn });
    return id;
  }

  clearTimeout(id) {
    this.timers.delete(id);
  }

  /** Move time forward by `ms`, running every timer that falls due (including new ones). */
  advance(ms) {
    const end = this.t + ms;
    for (;;) {
      let next = null;
      for (const [id, timer] of this.timers) {
        if (timer.at <= end && (next === null || timer.at < next[1].at)) next = [id, timer];
      }
      if (next === null) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
    }
    this.t = end;
  }
}

export class FakeSocket {
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    /** Frames the client sent, parsed. */
    this.sent = [];
    /** @type {{code: number, reason: string} | null} set when the client closed it */
    this.closedWith = null;
    this.onopen = null;
    this.onmessage = null;
    this.onclose = null;
    this.onerror = null;
  }

  send(data) {
    if (this.readyState !== 1) throw new Error('InvalidStateError: not open');
    this.sent.push(JSON.parse(data));
  }

  close(code, reason) {
    this.closedWith = { code, reason };
    this.readyState = 3;
  }

  // -- the server's side --

  open() {
    this.readyState = 1;
    this.onopen?.({});
  }

  receive(message) {
    this.onmessage?.({ data: typeof message === 'string' ? message : JSON.stringify(message) });
  }

  serverClose(code, reason = '') {
    this.readyState = 3;
    this.onclose?.({ code, reason, wasClean: code !== 1006 });
  }

  ofType(type) {
    return this.sent.filter((m) => m.type === type);
  }

  types() {
    return this.sent.map((m) => m.type);
  }
}

export const HEARTBEAT = { interval_ms: 1000, timeout_ms: 3000 };

export function welcome(overrides = {}) {
  return {
    type: 'welcome',
    seq: 1,
    session: 's_1',
    resume_token: 'tok_1',
    peer: 'p_a',
    room: 'r1',
    peers: [],
    ice_servers: [{ urls: 'stun:127.0.0.1:3478' }],
    heartbeat: HEARTBEAT,
    resumed: false,
    last_cseq: 0,
    node: 'node-1',
    protocol: 1,
    ...overrides,
  };
}

const EVENTS = [
  'state', 'joined', 'resumed', 'rejoined', 'reconnecting', 'peer-joined', 'peer-left',
  'peer-reconnecting', 'peer-resumed', 'signal', 'error', 'candidate-refused', 'closed', 'reconnect',
  'publish-answer', 'subscriber-offer', 'track-published', 'track-unpublished', 'data',
];

/** A client wired to fakes, recording every event as [type, detail]. */
export function harness(options = {}) {
  const clock = new FakeClock();
  /** @type {FakeSocket[]} */
  const sockets = [];
  const client = new SignalingClient({
    url: 'ws://test/ws',
    room: 'r1',
    name: 'alice',
    clock,
    random: () => 0.5,
    createWebSocket: (url) => {
      const socket = new FakeSocket(url);
      sockets.push(socket);
      return socket;
    },
    ...options,
  });
  const events = [];
  for (const type of EVENTS) client.on(type, (detail) => events.push([type, detail]));
  return {
    clock,
    sockets,
    client,
    events,
    socket: () => sockets[sockets.length - 1],
    ofType: (type) => events.filter(([t]) => t === type).map(([, d]) => d),
  };
}

/** Connect and complete the first join; returns the open socket. */
export async function joined(h, welcomeOverrides = {}) {
  const done = h.client.connect();
  const ws = h.socket();
  ws.open();
  ws.receive(welcome(welcomeOverrides));
  await done;
  return ws;
}

/** Let promise continuations run (token providers, SDP operations). */
export function flush() {
  return new Promise((resolve) => setImmediate(resolve));
}

// -- a minimal RTCPeerConnection -------------------------------------------------------------

export class FakeTrack {
  constructor(kind, id) {
    this.kind = kind;
    this.id = id;
    this.enabled = true;
  }
}

export class FakeMediaStream {
  constructor(tracks = []) {
    this.tracks = [...tracks];
  }

  getTracks() {
    return [...this.tracks];
  }

  addTrack(track) {
    if (!this.tracks.includes(track)) this.tracks.push(track);
  }

  removeTrack(track) {
    this.tracks = this.tracks.filter((t) => t !== track);
  }
}

export class FakePeerConnection {
  static instances = [];

  constructor(config) {
    this.config = config;
    this.transceivers = [];
    this.localDescription = null;
    this.remoteDescription = null;
    this.signalingState = 'stable';
    this.connectionState = 'new';
    this.offers = [];
    this.closed = false;
    this.addedCandidates = [];
    this.onicecandidate = null;
    this.ontrack = null;
    this.onconnectionstatechange = null;
    FakePeerConnection.instances.push(this);
  }

  addTransceiver(track, init) {
    const sender = {
      track,
      /** What setParameters was given, in order (RTCRtpSendParameters). */
      parametersSet: [],
      encodings: (init.sendEncodings ?? [{}]).map((e) => ({ active: true, ...e })),
      async replaceTrack(next) {
        sender.track = next;
      },
      getParameters() {
        return { encodings: sender.encodings.map((e) => ({ ...e })) };
      },
      async setParameters(parameters) {
        sender.parametersSet.push(parameters);
        sender.encodings = parameters.encodings.map((e) => ({ ...e }));
      },
    };
    const t = { mid: null, sender, direction: init.direction, init, currentDirection: null, stop() {} };
    this.transceivers.push(t);
    return t;
  }

  getSenders() {
    return this.transceivers.map((t) => t.sender);
  }

  getTransceivers() {
    return this.transceivers;
  }

  async createOffer(options = {}) {
    this.offers.push(options);
    return { type: 'offer', sdp: `v=0 offer ${this.offers.length}${options.iceRestart ? ' ice-restart' : ''}` };
  }

  async createAnswer() {
    return { type: 'answer', sdp: 'v=0 answer' };
  }

  async setLocalDescription(desc) {
    this.localDescription = desc;
    this.signalingState = desc.type === 'offer' ? 'have-local-offer' : 'stable';
    this.transceivers.forEach((t, i) => {
      t.mid = String(i);
    });
  }

  async setRemoteDescription(desc) {
    this.remoteDescription = desc;
    this.signalingState = desc.type === 'offer' ? 'have-remote-offer' : 'stable';
  }

  async addIceCandidate(candidate) {
    this.addedCandidates.push(candidate);
  }

  close() {
    this.closed = true;
    this.signalingState = 'closed';
  }

  // -- test side --

  gather(candidate) {
    this.onicecandidate?.({ candidate });
  }

  fireTrack(mid, track, streamId) {
    const transceiver = { mid };
    this.ontrack?.({ track, transceiver, streams: [{ id: streamId }], receiver: {} });
  }

  setConnectionState(state) {
    this.connectionState = state;
    this.onconnectionstatechange?.();
  }
}
