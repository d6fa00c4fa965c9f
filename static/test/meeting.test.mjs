// Meeting features of the SDK: data messages, track sources and mute state, active speakers,
// device switching, screen share streams (fake socket, fake RTCPeerConnection).

import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';

import { Room } from '../switchboard.js';
import { FakeMediaStream, FakePeerConnection, FakeTrack, flush, harness, joined, welcome } from './fakes.mjs';

async function setup() {
  FakePeerConnection.instances = [];
  const h = harness();
  const ws = await joined(h);
  const room = new Room(h.client, { RTCPeerConnection: /** @type {any} */ (FakePeerConnection), MediaStream: /** @type {any} */ (FakeMediaStream), clock: h.clock });
  const events = [];
  for (const type of ['track', 'track-state', 'operator-muted', 'active-speakers']) room.on(type, (d) => events.push([type, d]));
  const of = (type) => events.filter(([t]) => t === type).map(([, d]) => d);
  return { h, ws, room, of };
}

describe('data messages', () => {
  test('sendData to all or some, resent after a resume; data events in order, once', async () => {
    const h = harness();
    const ws = await joined(h);
    h.client.sendData('chat', { text: 'hi' });
    h.client.sendData('chat', 'psst', { to: ['p_b'] });
    assert.deepEqual(ws.ofType('data'), [
      { type: 'data', topic: 'chat', payload: { text: 'hi' }, cseq: 1 },
      { type: 'data', topic: 'chat', payload: 'psst', to: ['p_b'], cseq: 2 },
    ]);
    ws.receive({ type: 'data', seq: 2, from: 'p_b', topic: 'chat', payload: 'one' });
    ws.receive({ type: 'data', seq: 3, from: 'p_b', topic: 'chat', payload: 'two', to: ['p_a'] });
    ws.serverClose(1006);
    h.clock.advance(0);
    const ws2 = h.socket();
    ws2.open();
    ws2.receive(welcome({ seq: undefined, resumed: true, last_cseq: 1, replayed: 2 }));
    // Unconfirmed data is resent; a replayed duplicate is dropped, the next one delivered.
    assert.deepEqual(ws2.ofType('data').map((m) => m.cseq), [2]);
    ws2.receive({ type: 'data', seq: 3, from: 'p_b', topic: 'chat', payload: 'two', to: ['p_a'] });
    ws2.receive({ type: 'data', seq: 4, from: 'p_b', topic: 'chat', payload: 'three' });
    assert.deepEqual(h.ofType('data').map((d) => [d.payload, d.to]), [['one', null], ['two', ['p_a']], ['three', null]]);
  });
});

describe('track state', () => {
  /** @type {Awaited<ReturnType<typeof setup>>} */
  let s;
  beforeEach(async () => {
    s = await setup();
  });

  test('publish describes every track: source and muted', async () => {
    const mic = new FakeTrack('audio', 'a1');
    mic.enabled = false;
    s.room.publish(/** @type {any} */ (new FakeMediaStream([mic, new FakeTrack('video', 'v1')])));
    await flush();
    assert.deepEqual(s.ws.ofType('publish')[0].tracks, [
      { id: 'a1', source: 'microphone', muted: true },
      { id: 'v1', source: 'camera', muted: false },
    ]);
    s.ws.receive({ type: 'publish-answer', seq: 2, sdp: 'v=0 answer', cseq: 1 });
    await flush();
    const screen = new FakeTrack('video', 's1');
    s.room.publish(/** @type {any} */ (new FakeMediaStream([screen])), undefined, { screen: true });
    await flush();
    assert.deepEqual(s.ws.ofType('publish')[1].tracks.map((t) => t.source), ['microphone', 'camera', 'screen']);
  });

  test('setMuted tells the room once per change; replaceTrack keeps the id and the state', async () => {
    const cam = new FakeTrack('video', 'v1');
    s.room.publish(/** @type {any} */ (new FakeMediaStream([cam])));
    await flush();
    s.room.setMuted(cam, true);
    s.room.setMuted(cam, true);
    assert.equal(cam.enabled, false);
    assert.deepEqual(s.ws.ofType('track-state').map((m) => [m.track, m.muted]), [['v1', true]]);
    const other = new FakeTrack('video', 'v2');
    await s.room.replaceTrack(cam, other);
    assert.equal(other.enabled, false, 'the new device starts muted too');
    assert.equal(FakePeerConnection.instances[0].getSenders()[0].track, other);
    s.room.setMuted(other, false);
    assert.deepEqual(s.ws.ofType('track-state').map((m) => [m.track, m.muted]), [['v1', true], ['v1', false]]);
    assert.equal(s.ws.ofType('publish').length, 1, 'no renegotiation');
  });

  test('remote state: track-state, operator mute of others and of our own track', async () => {
    s.ws.receive({ type: 'track-published', seq: 2, track: { id: 't1', peer: 'p_b', kind: 'audio', source: 'microphone', muted: false } });
    s.ws.receive({ type: 'track-state', seq: 3, track: { id: 't1', peer: 'p_b', kind: 'audio', muted: true }, muted: true });
    assert.equal(s.room.published.get('t1').muted, true);
    assert.equal(s.room.published.get('t1').source, 'microphone');
    s.ws.receive({ type: 'track-muted', seq: 4, track: { id: 't1', peer: 'p_b', kind: 'audio' }, muted: true });
    assert.equal(s.room.published.get('t1').operator_muted, true);
    s.ws.receive({ type: 'track-muted', seq: 5, track: { id: 'mine', peer: 'p_a', kind: 'audio' }, muted: true });
    assert.deepEqual(s.of('operator-muted').map((e) => [e.track.id, e.muted]), [['mine', true]]);
    assert.equal(s.of('track-state').length, 2);
    s.ws.receive({ type: 'active-speakers', seq: 6, speakers: [{ peer: 'p_b', level: 0.5 }] });
    assert.deepEqual(s.room.speakers, [{ peer: 'p_b', level: 0.5 }]);
    assert.equal(s.of('active-speakers').length, 1);
  });

  test('a screen share arrives in a stream of its own', async () => {
    const offer = ['v=0', 'm=video 9 UDP/TLS/RTP/SAVPF 96', 'a=mid:0', 'a=msid:p_b cam', 'm=video 9 UDP/TLS/RTP/SAVPF 96', 'a=mid:1', 'a=msid:p_b scr', ''].join('\r\n');
    s.ws.receive({ type: 'track-published', seq: 2, track: { id: 'cam', peer: 'p_b', kind: 'video', source: 'camera' } });
    s.ws.receive({ type: 'track-published', seq: 3, track: { id: 'scr', peer: 'p_b', kind: 'video', source: 'screen' } });
    s.ws.receive({ type: 'subscriber-offer', seq: 4, sdp: offer });
    await flush();
    const pc = FakePeerConnection.instances[0];
    pc.fireTrack('0', new FakeTrack('video', 'x'), 'p_b');
    pc.fireTrack('1', new FakeTrack('video', 'y'), 'p_b');
    const [camera, screen] = s.of('track');
    assert.equal(camera.source, 'camera');
    assert.equal(screen.source, 'screen');
    assert.notEqual(camera.stream, screen.stream);
    assert.equal(s.room.peerStreams.get('p_b#screen'), screen.stream);
  });
});

describe('restore after a reload', () => {
  test('resumes with fresh_media, emits joined (restored), continues cseq; leave can linger', async () => {
    const h = harness({ restore: { session: 's_1', resumeToken: 'tok_1', lastSeq: 7 } });
    const done = h.client.connect();
    const ws = h.socket();
    ws.open();
    await flush();
    assert.deepEqual(ws.sent[0].resume, { session: 's_1', token: 'tok_1', last_seq: 7, fresh_media: true });
    ws.receive(welcome({ seq: undefined, resumed: true, last_cseq: 4, replayed: 1, peers: [{ id: 'p_b', name: 'bob' }] }));
    const joined = await done;
    assert.equal(joined.restored, true);
    assert.equal(h.client.peerId, 'p_a');
    assert.deepEqual([...h.client.peers.keys()], ['p_b']);
    ws.receive({ type: 'peer-joined', seq: 8, peer: { id: 'p_b', name: 'bob' } }); // replayed: known already
    assert.equal(h.ofType('peer-joined').length, 0);
    h.client.sendData('chat', 'hi');
    assert.equal(ws.ofType('data')[0].cseq, 5);
    assert.deepEqual(h.client.snapshot(), { session: 's_1', resumeToken: 'tok_1', lastSeq: 8, peer: 'p_a' });
    h.client.leave({ lingerMs: 5000 });
    assert.deepEqual(ws.ofType('leave'), [{ type: 'leave', linger_ms: 5000 }]);
  });

  test("the replay's SFU messages about the old page's connections are not handed on", async () => {
    const h = harness({ restore: { session: 's_1', resumeToken: 'tok_1', lastSeq: 7 } });
    const done = h.client.connect();
    const ws = h.socket();
    ws.open();
    await flush();
    ws.receive(welcome({ seq: undefined, resumed: true, last_cseq: 0, replayed: 4, peers: [{ id: 'p_b', name: 'bob' }] }));
    await done;
    // Written before the reload: an offer for the old subscriber connection, its failure, an
    // answer to the old page's publish, and a signal, which is not about media.
    ws.receive({ type: 'subscriber-offer', seq: 8, sdp: 'old' });
    ws.receive({ type: 'error', seq: 9, code: 'media-failed', message: 'reset', target: 'subscriber' });
    ws.receive({ type: 'publish-answer', seq: 10, sdp: 'old', cseq: 3 });
    ws.receive({ type: 'signal', seq: 11, from: 'p_b', data: 'hello' });
    // After the replay: the offer for this page's connection.
    ws.receive({ type: 'subscriber-offer', seq: 12, sdp: 'new' });
    assert.deepEqual(h.ofType('subscriber-offer').map((m) => m.sdp), ['new']);
    assert.deepEqual(h.ofType('error'), []);
    assert.deepEqual(h.ofType('publish-answer'), []);
    assert.deepEqual(h.ofType('signal').map((m) => m.data), ['hello']);
    assert.equal(h.client.snapshot().lastSeq, 12); // every one counted (and so acknowledged)
  });

  test('a refused restore joins afresh', async () => {
    const h = harness({ restore: { session: 's_old', resumeToken: 'tok_old', lastSeq: 3 } });
    const done = h.client.connect();
    h.socket().open();
    await flush();
    h.socket().receive({ type: 'error', code: 'resume-failed', message: 'unknown or expired session' });
    h.socket().serverClose(4011);
    h.clock.advance(0);
    const ws = h.socket();
    ws.open();
    await flush();
    assert.equal(ws.sent[0].resume, undefined);
    ws.receive(welcome({ session: 's_2', peer: 'p_new' }));
    const joined = await done;
    assert.equal(joined.peer, 'p_new');
    assert.equal(joined.restored, undefined);
  });
});
