// SignalingClient against a fake socket and a fake clock: the reconnect contract of DESIGN.md
// and the sequencing rules of docs/protocol.md. Time is virtual: clock.advance(ms) only.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { Backoff, ClientAction, closeAction, receiveCodecs, SignalingClient } from '../switchboard.js';
import { flush, harness, HEARTBEAT, joined, welcome } from './fakes.mjs';

describe('join', () => {
  test('sends join first, then reports connected and joined', async () => {
    const h = harness();
    const done = h.client.connect();
    assert.equal(h.client.state, 'connecting');
    const ws = h.socket();
    assert.equal(ws.url, 'ws://test/ws');
    ws.open();
    assert.deepEqual(ws.sent, [{ type: 'join', room: 'r1', name: 'alice', subscribe: true }]);
    ws.receive(welcome({ peers: [{ id: 'p_b', name: 'bob' }] }));
    const detail = await done;
    assert.equal(detail.peer, 'p_a');
    assert.deepEqual(detail.peers, [{ id: 'p_b', name: 'bob' }]);
    assert.equal(h.client.state, 'connected');
    assert.equal(h.client.peerId, 'p_a');
    assert.equal(h.client.sessionId, 's_1');
    assert.deepEqual([...h.client.peers], [['p_b', 'bob']]);
    assert.deepEqual(h.client.iceServers, [{ urls: 'stun:127.0.0.1:3478' }]);
    assert.deepEqual(h.client.heartbeat, { intervalMs: 1000, timeoutMs: 3000 });
    assert.deepEqual(h.ofType('state').map((s) => s.state), ['connected']);
    assert.equal(h.ofType('joined').length, 1);
  });

  test('receive codecs from RTCRtpReceiver.getCapabilities go out with join', async () => {
    const codecs = {
      audio: [{ mimeType: 'audio/opus' }, { mimeType: 'audio/telephone-event' }, { mimeType: 'audio/CN' }],
      video: [{ mimeType: 'video/VP8' }, { mimeType: 'video/rtx' }, { mimeType: 'video/H264' }, { mimeType: 'video/H264' }, { mimeType: 'video/ulpfec' }],
    };
    const g = /** @type {any} */ (globalThis);
    g.RTCRtpReceiver = { getCapabilities: (kind) => ({ codecs: codecs[kind] }) };
    try {
      assert.deepEqual(receiveCodecs(), ['opus', 'VP8', 'H264']);
      const h = harness();
      const done = h.client.connect();
      const ws = h.socket();
      ws.open();
      assert.deepEqual(ws.sent[0].codecs, ['opus', 'VP8', 'H264']);
      ws.receive(welcome());
      await done;
    } finally {
      delete g.RTCRtpReceiver;
    }
    assert.equal(receiveCodecs(), null, 'nothing to announce outside a browser');
  });

  test('a token provider is asked for a fresh token on every attempt', async () => {
    let n = 0;
    const h = harness({ token: async () => `t${++n}` });
    h.client.connect();
    h.socket().open();
    await flush();
    assert.equal(h.socket().sent[0].token, 't1');
    h.socket().serverClose(1006);
    h.clock.advance(0);
    h.socket().open();
    await flush();
    assert.equal(h.socket().sent[0].token, 't2');
  });

  test('tokenProvider (sync) is called per attempt, resume included, and wins over token', async () => {
    let n = 0;
    const h = harness({ token: 'static', tokenProvider: () => `p${++n}` });
    h.client.connect();
    h.socket().open();
    await flush();
    assert.equal(h.socket().sent[0].token, 'p1');
    h.socket().receive(welcome());
    h.socket().serverClose(1006);
    h.clock.advance(0);
    h.socket().open();
    await flush();
    const join = h.socket().sent[0];
    assert.equal(join.token, 'p2');
    assert.equal(join.resume.session, 's_1');
  });

  test('messages sent before the first welcome go out after it, in order', async () => {
    const h = harness();
    h.client.connect();
    const ws = h.socket();
    assert.equal(h.client.signal('p_b', { n: 1 }), 1);
    assert.equal(h.client.signal('p_b', { n: 2 }), 2);
    ws.open();
    ws.receive(welcome());
    assert.deepEqual(ws.ofType('signal').map((m) => [m.cseq, m.data.n]), [[1, 1], [2, 2]]);
  });

  test('connect() twice returns the same promise', () => {
    const h = harness();
    const a = h.client.connect();
    assert.equal(h.client.connect(), a);
    assert.equal(h.sockets.length, 1);
  });

  test('no welcome within the connect timeout: the attempt is dropped and retried', async () => {
    const h = harness({ connectTimeoutMs: 5000 });
    h.client.connect();
    h.socket().open();
    h.clock.advance(4999);
    assert.equal(h.sockets.length, 1);
    h.clock.advance(1);
    assert.deepEqual(h.sockets[0].closedWith?.code, 4000);
    assert.equal(h.ofType('reconnecting')[0].reason, 'connect timeout');
    assert.equal(h.sockets.length, 2, 'first retry is immediate');
  });
});

describe('seq and ack', () => {
  test('acks cumulatively 50 ms after the first unacknowledged message', async () => {
    const h = harness();
    const ws = await joined(h);
    h.clock.advance(50);
    assert.deepEqual(ws.ofType('ack'), [{ type: 'ack', seq: 1 }], 'the welcome (seq 1) is acked');
    ws.receive({ type: 'signal', seq: 2, from: 'p_b', data: 1 });
    h.clock.advance(20);
    ws.receive({ type: 'signal', seq: 3, from: 'p_b', data: 2 });
    h.clock.advance(29);
    assert.equal(ws.ofType('ack').length, 1);
    h.clock.advance(1);
    assert.deepEqual(ws.ofType('ack').at(-1), { type: 'ack', seq: 3 });
    h.clock.advance(1000);
    assert.equal(ws.ofType('ack').length, 2, 'nothing new: no ack');
  });

  test('acks at once every 16 messages', async () => {
    const h = harness();
    const ws = await joined(h);
    // The welcome is seq 1: 15 more make 16 unacknowledged messages.
    for (let seq = 2; seq <= 15; seq += 1) ws.receive({ type: 'signal', seq, from: 'p_b', data: seq });
    assert.equal(ws.ofType('ack').length, 0);
    ws.receive({ type: 'signal', seq: 16, from: 'p_b', data: 16 });
    assert.deepEqual(ws.ofType('ack'), [{ type: 'ack', seq: 16 }]);
    for (let seq = 17; seq <= 32; seq += 1) ws.receive({ type: 'signal', seq, from: 'p_b', data: seq });
    assert.deepEqual(ws.ofType('ack').at(-1), { type: 'ack', seq: 32 });
    assert.equal(ws.ofType('ack').length, 2);
  });

  test('drops duplicates by seq', async () => {
    const h = harness();
    const ws = await joined(h);
    ws.receive({ type: 'signal', seq: 2, from: 'p_b', data: 'x' });
    ws.receive({ type: 'signal', seq: 2, from: 'p_b', data: 'x' });
    ws.receive({ type: 'signal', seq: 1, from: 'p_b', data: 'old' });
    assert.deepEqual(h.ofType('signal'), [{ from: 'p_b', data: 'x', seq: 2 }]);
    assert.equal(h.client.lastSeq, 2);
  });

  test('a gap in seq drops the socket and resumes from the last seq', async () => {
    const h = harness();
    const ws = await joined(h);
    ws.receive({ type: 'signal', seq: 2, from: 'p_b', data: 'x' });
    ws.receive({ type: 'signal', seq: 4, from: 'p_b', data: 'y' });
    assert.equal(h.ofType('signal').length, 1);
    assert.equal(ws.closedWith?.code, 4000);
    h.clock.advance(0);
    h.socket().open();
    assert.deepEqual(h.socket().sent[0].resume, { session: 's_1', token: 'tok_1', last_seq: 2 });
  });

  test('answers ping with pong and drops what last_cseq confirms', async () => {
    const h = harness();
    const ws = await joined(h);
    h.client.signal('p_b', 1);
    h.client.signal('p_b', 2);
    assert.equal(h.client.unconfirmed, 2);
    ws.receive({ type: 'ping', t: 123.5, last_cseq: 1 });
    assert.deepEqual(ws.ofType('pong'), [{ type: 'pong', t: 123.5 }]);
    assert.equal(h.client.unconfirmed, 1);
    assert.equal(h.client.health().status, 'ok');
  });

  test('keeps the RTT the server measured (rtt_ms in ping)', async () => {
    const h = harness();
    const ws = await joined(h);
    assert.equal(h.client.rttMs, null);
    ws.receive({ type: 'ping', t: 1, last_cseq: 0, rtt_ms: 3.25 });
    assert.equal(h.client.rttMs, 3.25);
  });

  test('membership events are de-duplicated', async () => {
    const h = harness();
    const ws = await joined(h, { peers: [{ id: 'p_b', name: 'bob' }] });
    ws.receive({ type: 'peer-joined', seq: 2, peer: { id: 'p_b', name: 'bob' } });
    ws.receive({ type: 'peer-joined', seq: 3, peer: { id: 'p_c', name: 'carol' } });
    ws.receive({ type: 'peer-reconnecting', seq: 4, peer: 'p_c' });
    assert.deepEqual([...h.client.reconnectingPeers], ['p_c']);
    ws.receive({ type: 'peer-left', seq: 5, peer: 'p_c', reason: 'timeout' });
    ws.receive({ type: 'peer-left', seq: 6, peer: 'p_c', reason: 'timeout' });
    assert.deepEqual(h.ofType('peer-joined'), [{ peer: { id: 'p_c', name: 'carol' } }]);
    assert.deepEqual(h.ofType('peer-left'), [{ peer: 'p_c', reason: 'timeout' }]);
    assert.deepEqual([...h.client.reconnectingPeers], []);
    assert.deepEqual([...h.client.peers.keys()], ['p_b']);
  });

  test('SFU messages are emitted by type', async () => {
    const h = harness();
    const ws = await joined(h);
    ws.receive({ type: 'track-published', seq: 2, track: { id: 't1', peer: 'p_b', kind: 'video' } });
    ws.receive({ type: 'subscriber-offer', seq: 3, sdp: 'v=0' });
    ws.receive({ type: 'reconnect', seq: 4, mode: 'rejoin', delay_ms: 0, scope: 'media' });
    assert.equal(h.ofType('track-published')[0].track.id, 't1');
    assert.equal(h.ofType('subscriber-offer')[0].sdp, 'v=0');
    assert.equal(h.ofType('reconnect')[0].scope, 'media');
    assert.equal(h.client.state, 'connected', 'a media reconnect leaves signaling alone');
    assert.equal(h.sockets.length, 1);
  });
});

describe('resume', () => {
  test('resumes, replays, and resends only what the server did not confirm, in order', async () => {
    const h = harness();
    const ws = await joined(h, { peers: [{ id: 'p_b', name: 'bob' }] });
    ws.receive({ type: 'signal', seq: 2, from: 'p_b', data: 'a' });
    h.client.signal('p_b', 'one');
    h.client.signal('p_b', 'two');
    h.client.signal('p_b', 'three');
    ws.receive({ type: 'ping', t: 1, last_cseq: 1 });
    ws.serverClose(1006); // network loss: no close frame
    assert.equal(h.client.state, 'reconnecting');
    const [reconnecting] = h.ofType('reconnecting');
    assert.equal(reconnecting.delayMs, 0, 'first retry immediate');
    assert.equal(reconnecting.action, ClientAction.RESUME_BACKOFF);
    // Queued while reconnecting: gets the next cseq, goes out after the resends.
    assert.equal(h.client.signal('p_b', 'four'), 4);
    h.clock.advance(0);
    const ws2 = h.socket();
    assert.notEqual(ws2, ws);
    ws2.open();
    assert.deepEqual(ws2.sent, [
      { type: 'join', room: 'r1', name: 'alice', subscribe: true, resume: { session: 's_1', token: 'tok_1', last_seq: 2 } },
    ]);
    ws2.receive(welcome({ seq: undefined, resumed: true, last_cseq: 2, replayed: 2, peers: [{ id: 'p_b', name: 'bob' }] }));
    assert.deepEqual(ws2.ofType('signal').map((m) => [m.cseq, m.data]), [[3, 'three'], [4, 'four']]);
    assert.deepEqual(h.ofType('resumed').map(({ replayed, resent }) => ({ replayed, resent })), [{ replayed: 2, resent: 2 }]);
    assert.equal(h.client.state, 'connected');
    ws2.receive({ type: 'signal', seq: 2, from: 'p_b', data: 'a' }); // already had it
    ws2.receive({ type: 'signal', seq: 3, from: 'p_b', data: 'b' });
    ws2.receive({ type: 'signal', seq: 4, from: 'p_b', data: 'c' });
    assert.deepEqual(h.ofType('signal').map((s) => s.data), ['a', 'b', 'c']);
    assert.equal(h.client.peerId, 'p_a');
    assert.equal(h.client.resumes, 1);
    assert.deepEqual(h.ofType('state').map((s) => s.state), ['connected', 'reconnecting', 'connected']);
    assert.equal(h.ofType('rejoined').length, 0);
  });

  test('membership after a resume: nobody twice, nobody missing', async () => {
    const h = harness();
    const ws = await joined(h, { peers: [{ id: 'p_b', name: 'bob' }, { id: 'p_c', name: 'carol' }] });
    ws.serverClose(1001);
    h.clock.advance(0);
    const ws2 = h.socket();
    ws2.open();
    // While away: d joined (replayed), c left and that was acked before (not replayed), e joined
    // and left (both replayed).
    ws2.receive(welcome({
      seq: undefined, resumed: true, replayed: 3,
      peers: [{ id: 'p_b', name: 'bob' }, { id: 'p_d', name: 'dave' }],
    }));
    ws2.receive({ type: 'peer-joined', seq: 2, peer: { id: 'p_d', name: 'dave' } });
    ws2.receive({ type: 'peer-joined', seq: 3, peer: { id: 'p_e', name: 'eve' } });
    ws2.receive({ type: 'peer-left', seq: 4, peer: 'p_e', reason: 'left' });
    assert.deepEqual([...h.client.peers.keys()].sort(), ['p_b', 'p_d']);
    assert.deepEqual(h.ofType('peer-joined').map((e) => e.peer.id), ['p_d', 'p_e']);
    assert.deepEqual(h.ofType('peer-left').map((e) => e.peer), ['p_e', 'p_c']);
  });

  test('1001 (drain) resumes at once', async () => {
    const h = harness();
    const ws = await joined(h);
    ws.serverClose(1001, 'draining');
    assert.equal(h.ofType('reconnecting')[0].delayMs, 0);
    assert.equal(h.ofType('reconnecting')[0].action, ClientAction.RESUME_NOW);
    h.clock.advance(0);
    assert.equal(h.sockets.length, 2);
  });

  test('4011: the session is gone, the client joins afresh and says so', async () => {
    const h = harness();
    const ws = await joined(h, { peers: [{ id: 'p_b', name: 'bob' }] });
    h.client.signal('p_b', 'lost');
    ws.serverClose(1006);
    h.clock.advance(0);
    const ws2 = h.socket();
    ws2.open();
    assert.ok(ws2.sent[0].resume);
    ws2.receive({ type: 'error', code: 'resume-failed', message: 'unknown or expired session' });
    ws2.serverClose(4011, 'resume failed');
    assert.equal(h.ofType('error').length, 0, 'errors before welcome are not events');
    assert.equal(h.ofType('reconnecting').at(-1).action, ClientAction.REJOIN);
    h.clock.advance(h.ofType('reconnecting').at(-1).delayMs);
    const ws3 = h.socket();
    ws3.open();
    assert.equal(ws3.sent[0].resume, undefined, 'a rejoin is a plain join');
    ws3.receive(welcome({ session: 's_2', resume_token: 'tok_2', peer: 'p_a2', peers: [{ id: 'p_c', name: 'carol' }] }));
    const [rejoined] = h.ofType('rejoined');
    assert.equal(rejoined.peer, 'p_a2');
    assert.equal(rejoined.dropped, 1);
    assert.equal(h.client.peerId, 'p_a2');
    assert.equal(h.client.lastSeq, 1);
    assert.equal(h.client.signal('p_c', 'new'), 1, 'cseq starts over');
    assert.deepEqual(h.ofType('peer-left'), [{ peer: 'p_b', reason: 'gone' }]);
    assert.deepEqual(h.ofType('peer-joined'), [{ peer: { id: 'p_c', name: 'carol' } }]);
    // The next drop resumes the new session.
    ws3.serverClose(1006);
    h.clock.advance(10_000);
    h.socket().open();
    assert.equal(h.socket().sent[0].resume.session, 's_2');
  });

  test('server-directed reconnect: drop, wait delay_ms, resume', async () => {
    const h = harness();
    const ws = await joined(h);
    ws.receive({ type: 'reconnect', seq: 2, mode: 'resume', delay_ms: 700, scope: 'session' });
    assert.equal(ws.closedWith?.code, 4000);
    assert.deepEqual(ws.ofType('ack').at(-1), { type: 'ack', seq: 2 });
    assert.equal(h.ofType('reconnecting')[0].delayMs, 700);
    h.clock.advance(699);
    assert.equal(h.sockets.length, 1);
    h.clock.advance(1);
    h.socket().open();
    assert.equal(h.socket().sent[0].resume.last_seq, 2);
  });

  test('reconnectNow() skips the backoff wait, and only then', async () => {
    const h = harness({ random: () => 1 });
    const ws = await joined(h);
    h.client.reconnectNow();
    assert.equal(h.sockets.length, 1, 'connected: nothing to do');
    ws.serverClose(1006);
    h.clock.advance(0);
    h.socket().serverClose(1006);
    assert.equal(h.ofType('reconnecting').at(-1).delayMs, 250);
    h.client.reconnectNow();
    assert.equal(h.sockets.length, 3);
    h.client.reconnectNow();
    assert.equal(h.sockets.length, 3, 'an attempt is under way');
    h.clock.advance(250);
    assert.equal(h.sockets.length, 3, 'the skipped timer does not fire later');
  });

  test('server-directed rejoin forgets the session', async () => {
    const h = harness();
    const ws = await joined(h);
    ws.receive({ type: 'reconnect', seq: 2, mode: 'rejoin', delay_ms: 0 });
    h.clock.advance(0);
    h.socket().open();
    assert.equal(h.socket().sent[0].resume, undefined);
  });
});

describe('close codes', () => {
  for (const code of [4001, 4003, 4006, 4010, 4012, 4999]) {
    test(`${code} is fatal: closed, never retried`, async () => {
      const h = harness();
      const ws = await joined(h);
      ws.serverClose(code);
      assert.equal(h.client.state, 'closed');
      assert.equal(h.client.closeCode, code);
      assert.deepEqual(h.ofType('closed').map((c) => [c.code, c.action]), [[code, ClientAction.FATAL]]);
      h.clock.advance(60_000);
      assert.equal(h.sockets.length, 1);
      assert.equal(h.ofType('reconnecting').length, 0);
      assert.throws(() => h.client.signal('p_b', 1), /closed/);
    });
  }

  test('a fatal close before the first welcome rejects connect()', async () => {
    const h = harness();
    const done = h.client.connect();
    h.socket().open();
    h.socket().receive({ type: 'error', code: 'unauthorized', message: 'no token' });
    h.socket().serverClose(4001);
    await assert.rejects(done, (error) => error.code === 4001 && /unauthorized/.test(error.message));
    const { code, reason } = await h.client.closed;
    assert.equal(code, 4001);
    assert.match(reason, /unauthorized/);
  });

  test('a refused ICE candidate is its own event, not an error', async () => {
    const h = harness();
    const ws = await joined(h);
    ws.receive({ type: 'error', seq: 2, code: 'candidate-refused', message: 'candidate address 10.0.0.5 refused (private)', cseq: 3 });
    assert.deepEqual(h.ofType('candidate-refused'), [{ message: 'candidate address 10.0.0.5 refused (private)', cseq: 3 }]);
    assert.equal(h.ofType('error').length, 0);
  });

  test('4008 waits for the announced retry_after_ms', async () => {
    const h = harness();
    const ws = await joined(h);
    ws.receive({ type: 'error', seq: 2, code: 'rate-limited', message: 'slow down', retry_after_ms: 5000 });
    assert.equal(h.ofType('error')[0].retryAfterMs, 5000);
    ws.serverClose(4008);
    assert.equal(h.ofType('reconnecting')[0].delayMs, 5000);
    h.clock.advance(4999);
    assert.equal(h.sockets.length, 1);
    h.clock.advance(1);
    assert.equal(h.sockets.length, 2);
    h.socket().open();
    assert.ok(h.socket().sent[0].resume, '4008 resumes');
  });

  test('1000 from the server ends the client', async () => {
    const h = harness();
    const ws = await joined(h);
    ws.serverClose(1000);
    assert.equal(h.client.state, 'closed');
    assert.equal(h.ofType('closed')[0].action, ClientAction.DONE);
  });

  test('the action table', () => {
    assert.equal(closeAction(null), ClientAction.RESUME_BACKOFF);
    assert.equal(closeAction(1006), ClientAction.RESUME_BACKOFF);
    assert.equal(closeAction(1011), ClientAction.RESUME_BACKOFF);
    assert.equal(closeAction(4009), ClientAction.RESUME_BACKOFF);
    assert.equal(closeAction(4013), ClientAction.RESUME_BACKOFF);
    assert.equal(closeAction(4011), ClientAction.REJOIN);
    assert.equal(closeAction(4008), ClientAction.RESUME_AFTER_DELAY);
    assert.equal(closeAction(1001), ClientAction.RESUME_NOW);
    assert.equal(closeAction(1000), ClientAction.DONE);
    assert.equal(closeAction(4500), ClientAction.FATAL);
  });
});

describe('backoff', () => {
  test('first retry immediate, then exponential with full jitter, capped', () => {
    const draws = [0.999, 0.5, 0, 1 - 1e-9, 0.5, 0.5, 0.5, 0.5];
    const b = new Backoff({ random: () => draws.shift() });
    assert.equal(b.nextDelay(), 0);
    assert.ok(Math.abs(b.nextDelay() - 0.999 * 250) < 1e-9);
    assert.equal(b.nextDelay(), 0.5 * 500);
    assert.equal(b.nextDelay(), 0);
    assert.ok(b.nextDelay() < 2000);
    assert.equal(b.nextDelay(), 0.5 * 4000);
    assert.equal(b.nextDelay(), 0.5 * 8000);
    assert.equal(b.nextDelay(), 0.5 * 10_000, 'capped at 10 s');
  });

  test('resets only after a stable connection', () => {
    const b = new Backoff({ random: () => 1 });
    b.nextDelay();
    b.nextDelay();
    b.connected(0);
    b.disconnected(9_999);
    assert.equal(b.nextDelay(), 500, 'not stable: keeps growing');
    b.connected(20_000);
    b.disconnected(30_000);
    assert.equal(b.nextDelay(), 0, 'stable for 10 s: immediate again');
  });

  test('the client backs off between failed attempts and resets after a stable period', async () => {
    const h = harness({ random: () => 1 });
    const ws = await joined(h);
    ws.serverClose(1011);
    const delays = () => h.ofType('reconnecting').map((r) => r.delayMs);
    for (let i = 0; i < 4; i += 1) {
      h.clock.advance(delays().at(-1));
      h.socket().serverClose(1006); // fails before welcome
    }
    assert.deepEqual(delays(), [0, 250, 500, 1000, 2000]);
    h.clock.advance(2000);
    h.socket().open();
    h.socket().receive(welcome({ seq: undefined, resumed: true }));
    h.clock.advance(2000);
    h.socket().receive({ type: 'ping', t: 1 });
    h.socket().serverClose(1006);
    assert.equal(delays().at(-1), 4000, 'up 2 s only: not stable');
    h.clock.advance(4000);
    h.socket().open();
    h.socket().receive(welcome({ seq: undefined, resumed: true }));
    for (let i = 0; i < 5; i += 1) {
      h.clock.advance(2000);
      h.socket().receive({ type: 'ping', t: i });
    }
    h.socket().serverClose(1006);
    assert.equal(delays().at(-1), 0, 'stable for 10 s: immediate');
  });
});

describe('dead server', () => {
  test('silence past the announced timeout drops the link and resumes', async () => {
    const h = harness();
    const ws = await joined(h);
    h.clock.advance(HEARTBEAT.timeout_ms - 1);
    assert.equal(h.client.state, 'connected');
    assert.equal(h.client.health().status, 'late');
    h.clock.advance(1);
    assert.equal(ws.closedWith?.code, 4000);
    assert.equal(h.ofType('reconnecting')[0].reason, 'server heartbeat timeout');
    h.clock.advance(0);
    h.socket().open();
    assert.ok(h.socket().sent[0].resume);
  });

  test('the dead-link timer follows the timeout announced in ping', async () => {
    const h = harness();
    const ws = await joined(h);
    ws.receive({ type: 'ping', t: 1, timeout_ms: HEARTBEAT.timeout_ms + 4000 });
    assert.equal(h.client.health().timeoutMs, HEARTBEAT.timeout_ms + 4000);
    h.clock.advance(HEARTBEAT.timeout_ms + 3999);
    assert.equal(h.client.state, 'connected', 'a longer announced timeout keeps a slow link');
    h.clock.advance(1);
    assert.equal(h.client.state, 'reconnecting');
  });

  test('an announced timeout that is not a positive integer is ignored', async () => {
    const h = harness();
    const ws = await joined(h);
    for (const bad of [0, -5, 1.5, '9000', null]) ws.receive({ type: 'ping', t: 1, timeout_ms: bad });
    assert.equal(h.client.health().timeoutMs, HEARTBEAT.timeout_ms);
    h.clock.advance(HEARTBEAT.timeout_ms);
    assert.equal(h.client.state, 'reconnecting');
  });

  test('any inbound frame resets the dead-link timer, duplicates included', async () => {
    const h = harness();
    const ws = await joined(h);
    ws.receive({ type: 'signal', seq: 2, from: 'p_b', data: 1 });
    for (let i = 0; i < 5; i += 1) {
      h.clock.advance(2500);
      ws.receive({ type: 'signal', seq: 2, from: 'p_b', data: 1 }); // a duplicate still proves life
    }
    h.clock.advance(2500);
    ws.receive({ type: 'ping', t: 1 });
    h.clock.advance(2999);
    assert.equal(h.client.state, 'connected');
    assert.equal(ws.closedWith, null);
    h.clock.advance(1);
    assert.equal(h.client.state, 'reconnecting');
  });
});

describe('close and leave', () => {
  test('close() is idempotent in every state', async () => {
    const idle = harness();
    await idle.client.close();
    await idle.client.close();
    assert.equal(idle.ofType('closed').length, 1);
    await assert.rejects(idle.client.connect(), /closed/);

    const h = harness();
    const ws = await joined(h);
    const a = h.client.close();
    const b = h.client.close();
    await Promise.all([a, b]);
    assert.equal(ws.closedWith?.code, 1000);
    assert.equal(h.ofType('closed').length, 1);
    assert.equal(h.client.state, 'closed');

    const r = harness();
    const rws = await joined(r);
    rws.serverClose(1006);
    assert.equal(r.client.state, 'reconnecting');
    r.client.close();
    r.client.close();
    r.clock.advance(60_000);
    assert.equal(r.sockets.length, 1, 'no attempt after close during backoff');
    assert.equal(r.ofType('closed').length, 1);
  });

  test('close() from inside a listener stops everything', async () => {
    const h = harness();
    const ws = await joined(h);
    h.client.on('signal', () => h.client.close());
    ws.receive({ type: 'signal', seq: 2, from: 'p_b', data: 1 });
    ws.receive({ type: 'signal', seq: 3, from: 'p_b', data: 2 });
    assert.equal(h.ofType('signal').length, 1);
    h.clock.advance(60_000);
    assert.equal(h.sockets.length, 1);
  });

  test('leave() sends leave and ends on the server close', async () => {
    const h = harness();
    const ws = await joined(h);
    const done = h.client.leave();
    assert.deepEqual(ws.sent.at(-1), { type: 'leave' });
    ws.serverClose(1000, 'left');
    assert.deepEqual(await done, { code: 1000, reason: 'left' });
    h.clock.advance(60_000);
    assert.equal(h.sockets.length, 1);
  });

  test('leave() does not wait forever for the server', async () => {
    const h = harness({ connectTimeoutMs: 2000 });
    await joined(h);
    const done = h.client.leave();
    h.clock.advance(2000);
    assert.equal((await done).reason, 'left');
  });

  test('backpressure: too many unconfirmed messages throw', async () => {
    const h = harness({ maxUnconfirmed: 2 });
    await joined(h);
    h.client.signal('p_b', 1);
    h.client.signal('p_b', 2);
    assert.throws(() => h.client.signal('p_b', 3), { name: 'BackpressureError' });
  });

  test('a throwing listener does not break the protocol', async () => {
    const h = harness();
    const errors = [];
    h.client.onListenerError = (e) => errors.push(e);
    const ws = await joined(h);
    h.client.on('signal', () => {
      throw new Error('app bug');
    });
    ws.receive({ type: 'signal', seq: 2, from: 'p_b', data: 1 });
    ws.receive({ type: 'signal', seq: 3, from: 'p_b', data: 2 });
    assert.equal(errors.length, 2);
    assert.equal(h.client.lastSeq, 3);
  });

  test('constructor validates its options', () => {
    assert.throws(() => new SignalingClient(/** @type {any} */ ({ url: 'ws://x/ws' })), TypeError);
  });
});
