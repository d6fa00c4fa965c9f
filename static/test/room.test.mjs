// Room (SFU media) against a fake RTCPeerConnection and the fake socket.

import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';

import { candidateInit, parseMsids, Room } from '../switchboard.js';
import { FakeMediaStream, FakePeerConnection, FakeTrack, flush, harness, joined, welcome } from './fakes.mjs';

const SUBSCRIBER_OFFER = [
  'v=0',
  'o=- 1 1 IN IP4 127.0.0.1',
  's=-',
  't=0 0',
  'm=audio 9 UDP/TLS/RTP/SAVPF 111',
  'a=mid:0',
  'a=sendonly',
  'a=msid:p_b t_audio_b',
  'm=video 9 UDP/TLS/RTP/SAVPF 96',
  'a=mid:1',
  'a=sendonly',
  'a=msid:p_b t_video_b',
  'm=video 9 UDP/TLS/RTP/SAVPF 96',
  'a=mid:2',
  'a=sendonly',
  'a=msid:p_c t_video_c',
  '',
].join('\r\n');

async function setup() {
  FakePeerConnection.instances = [];
  const h = harness();
  const ws = await joined(h, { tracks: [{ id: 't_video_c', peer: 'p_c', kind: 'video' }] });
  const room = new Room(h.client, { RTCPeerConnection: /** @type {any} */ (FakePeerConnection), MediaStream: /** @type {any} */ (FakeMediaStream), clock: h.clock });
  const events = [];
  for (const type of ['track', 'track-removed', 'published', 'error', 'subscriber-failed', 'media-reset', 'track-unavailable']) {
    room.on(type, (d) => events.push([type, d]));
  }
  const of = (type) => events.filter(([t]) => t === type).map(([, d]) => d);
  return { h, ws, room, of };
}

describe('sdp helpers', () => {
  test('parseMsids maps mid to msid stream and track', () => {
    const msids = parseMsids(SUBSCRIBER_OFFER);
    assert.deepEqual(msids.get('1'), { stream: 'p_b', track: 't_video_b', kind: 'video' });
    assert.deepEqual(msids.get('2'), { stream: 'p_c', track: 't_video_c', kind: 'video' });
    assert.equal(msids.size, 3);
  });

  test('candidateInit keeps only RTCIceCandidateInit fields', () => {
    const candidate = { toJSON: () => ({ candidate: 'candidate:1 1 udp 1 127.0.0.1 5000 typ host', sdpMid: '0', sdpMLineIndex: 0, usernameFragment: 'u', extra: 1 }) };
    assert.deepEqual(candidateInit(/** @type {any} */ (candidate)), {
      candidate: 'candidate:1 1 udp 1 127.0.0.1 5000 typ host', sdpMid: '0', sdpMLineIndex: 0, usernameFragment: 'u',
    });
    assert.equal(candidateInit(null), null);
  });
});

describe('Room', () => {
  /** @type {Awaited<ReturnType<typeof setup>>} */
  let s;
  beforeEach(async () => {
    s = await setup();
  });

  test('publish: offer with cseq, answer applied, then the held candidates', async () => {
    const stream = new FakeMediaStream([new FakeTrack('audio', 'a1'), new FakeTrack('video', 'v1')]);
    const done = s.room.publish(/** @type {any} */ (stream));
    const pc = FakePeerConnection.instances[0];
    assert.deepEqual(pc.config, { iceServers: [{ urls: 'stun:127.0.0.1:3478' }] });
    assert.deepEqual(pc.transceivers.map((t) => t.direction), ['sendonly', 'sendonly']);
    await flush();
    const [publish] = s.ws.ofType('publish');
    assert.equal(publish.sdp, 'v=0 offer 1');
    pc.gather({ candidate: 'candidate:1', sdpMid: '0', sdpMLineIndex: 0 });
    assert.equal(s.ws.ofType('candidate').length, 0, 'held until the SFU answered');
    s.ws.receive({ type: 'publish-answer', seq: 2, sdp: 'v=0 answer', cseq: publish.cseq });
    await done;
    assert.deepEqual(pc.remoteDescription, { type: 'answer', sdp: 'v=0 answer' });
    assert.equal(s.of('published').length, 1);
    pc.gather(null);
    const candidates = s.ws.ofType('candidate');
    assert.deepEqual(candidates.map((c) => [c.target, c.candidate?.candidate ?? null]), [['publisher', 'candidate:1'], ['publisher', null]]);
    assert.ok(candidates[0].cseq > publish.cseq);
  });

  test('camera video is published in three simulcast layers; screens and audio in one', async () => {
    const camera = new FakeMediaStream([new FakeTrack('audio', 'a1'), new FakeTrack('video', 'v1')]);
    s.room.publish(/** @type {any} */ (camera)).catch(() => {});
    const screen = new FakeMediaStream([new FakeTrack('video', 's1')]);
    s.room.publish(/** @type {any} */ (screen), undefined, { screen: true }).catch(() => {});
    const pc = FakePeerConnection.instances[0];
    assert.deepEqual(pc.transceivers.map((t) => t.init.sendEncodings?.map((e) => [e.rid, e.scaleResolutionDownBy]) ?? null), [
      null,
      [['q', 4], ['h', 2], ['f', 1]],
      null,
    ]);
    const single = new Room(s.h.client, { RTCPeerConnection: /** @type {any} */ (FakePeerConnection), simulcast: false });
    single.publish(/** @type {any} */ (new FakeMediaStream([new FakeTrack('video', 'v2')]))).catch(() => {});
    assert.equal(FakePeerConnection.instances[1].transceivers[0].init.sendEncodings, undefined);
    single.close();
  });

  test('setSubscription sends set-subscription once per change; track-layer is an event', async () => {
    const layers = [];
    s.room.on('track-layer', (l) => layers.push(l));
    s.room.setSubscription('t_video_c', 'high');
    assert.equal(s.ws.ofType('set-subscription').length, 0, 'high is the default: nothing to say');
    s.room.setSubscription('t_video_c', 'low');
    s.room.setSubscription('t_video_c', 'low');
    assert.deepEqual(s.ws.ofType('set-subscription').map((m) => [m.track, m.quality]), [['t_video_c', 'low']]);
    const layer = { track: 't_video_c', quality: 'low', requested: 'low', rid: 'q', width: 320, height: 180 };
    s.ws.receive({ type: 'track-layer', seq: 2, ...layer });
    assert.deepEqual(layers, [layer]);
    assert.deepEqual(s.room.layers.get('t_video_c'), layer);
    s.ws.receive({ type: 'track-unpublished', seq: 3, track: { id: 't_video_c', peer: 'p_c', kind: 'video' } });
    assert.equal(s.room.layers.has('t_video_c'), false);
  });

  test('publish-layers (dynacast) sets the camera encodings active or not, once per change', async () => {
    const events = [];
    s.room.on('publish-layers', (e) => events.push(e));
    s.room.publish(/** @type {any} */ (new FakeMediaStream([new FakeTrack('video', 'v1')]))).catch(() => {});
    const pc = FakePeerConnection.instances[0];
    const [camera] = pc.transceivers;
    camera.mid = '0';
    s.ws.receive({ type: 'publish-layers', seq: 2, track: 'v1', mid: '0', active: ['q'] });
    await flush();
    assert.deepEqual(camera.sender.encodings.map((e) => [e.rid, e.active]), [['q', true], ['h', false], ['f', false]]);
    s.ws.receive({ type: 'publish-layers', seq: 3, track: 'v1', mid: '0', active: ['q'] });
    await flush();
    assert.equal(camera.sender.parametersSet.length, 1, 'nothing changed: no setParameters');
    s.ws.receive({ type: 'publish-layers', seq: 4, track: 'v1', mid: '0', active: ['q', 'f'] });
    await flush();
    assert.deepEqual(camera.sender.encodings.map((e) => [e.rid, e.active]), [['q', true], ['h', false], ['f', true]]);
    assert.deepEqual(events.map((e) => e.active), [['q'], ['q'], ['q', 'f']]);
    s.ws.receive({ type: 'publish-layers', seq: 5, track: 'x', mid: '9', active: ['q'] });
    await flush();
    assert.equal(events.length, 3, 'an unknown mid is ignored');
  });

  test('an error naming the publish cseq rejects it', async () => {
    const done = s.room.publish(/** @type {any} */ (new FakeMediaStream([new FakeTrack('video', 'v1')])));
    await flush();
    const [publish] = s.ws.ofType('publish');
    FakePeerConnection.instances[0].gather({ candidate: 'candidate:1', sdpMid: '0', sdpMLineIndex: 0 });
    s.ws.receive({ type: 'error', seq: 2, code: 'sfu-unavailable', message: 'no SFU', cseq: publish.cseq });
    await assert.rejects(done, (e) => e.code === 'sfu-unavailable');
    assert.equal(s.ws.ofType('candidate').length, 0, 'a refused publish sends no candidates');
  });

  test('a recycled m-line (new msid, no track event) is mapped to its new track', async () => {
    s.ws.receive({ type: 'track-published', seq: 2, track: { id: 't_video_b', peer: 'p_b', kind: 'video' } });
    s.ws.receive({ type: 'subscriber-offer', seq: 3, sdp: SUBSCRIBER_OFFER });
    await flush();
    const pc = FakePeerConnection.instances[0];
    const receiverTrack = new FakeTrack('video', 'browser-id');
    pc.fireTrack('1', receiverTrack, 'p_b');
    s.ws.receive({ type: 'track-unpublished', seq: 4, track: { id: 't_video_b', peer: 'p_b', kind: 'video' } });
    s.ws.receive({ type: 'track-published', seq: 5, track: { id: 't_video_d', peer: 'p_d', kind: 'video' } });
    // The browser keeps its receiver (and fires no track event); only the msid changed.
    pc.transceivers = [
      { mid: '0', currentDirection: 'recvonly', receiver: { track: new FakeTrack('audio', 'a') } },
      { mid: '1', currentDirection: 'recvonly', receiver: { track: receiverTrack } },
    ];
    const recycled = SUBSCRIBER_OFFER.replace('a=msid:p_b t_video_b', 'a=msid:p_d t_video_d');
    s.ws.receive({ type: 'subscriber-offer', seq: 6, sdp: recycled });
    await flush();
    await flush();
    const tracks = s.of('track');
    assert.deepEqual(tracks.map((t) => [t.peer, t.trackId]), [['p_b', 't_video_b'], ['p_d', 't_video_d']]);
    assert.equal(tracks[1].track, receiverTrack);
  });

  test('track-unavailable is an event; media-failed for the subscriber drops its connection', async () => {
    s.ws.receive({ type: 'subscriber-offer', seq: 2, sdp: SUBSCRIBER_OFFER });
    await flush();
    const first = FakePeerConnection.instances[0];
    const track = { id: 't_h264', peer: 'p_b', kind: 'video' };
    s.ws.receive({ type: 'track-unavailable', seq: 3, track, reason: 'rejected' });
    assert.deepEqual(s.of('track-unavailable'), [{ track, reason: 'rejected' }]);
    s.ws.receive({ type: 'error', seq: 4, code: 'media-failed', message: 'reset', target: 'subscriber' });
    assert.equal(first.closed, true);
    assert.equal(s.room.subscriber, null);
    s.ws.receive({ type: 'subscriber-offer', seq: 5, sdp: SUBSCRIBER_OFFER });
    await flush();
    assert.equal(FakePeerConnection.instances.length, 2, 'the next offer is answered on a new connection');
    assert.equal(FakePeerConnection.instances[1].remoteDescription.sdp, SUBSCRIBER_OFFER);
  });

  test('subscriber: answers the offer and maps tracks to peers by msid', async () => {
    s.ws.receive({ type: 'track-published', seq: 2, track: { id: 't_video_b', peer: 'p_b', kind: 'video' } });
    s.ws.receive({ type: 'subscriber-offer', seq: 3, sdp: SUBSCRIBER_OFFER });
    await flush();
    const pc = FakePeerConnection.instances[0];
    assert.equal(pc.remoteDescription.sdp, SUBSCRIBER_OFFER);
    assert.deepEqual(s.ws.ofType('subscriber-answer').map((m) => m.sdp), ['v=0 answer']);
    // The browser's track ids are its own: the mapping goes through the mid.
    const video = new FakeTrack('video', 'browser-random-id');
    pc.fireTrack('1', video, 'p_b');
    pc.fireTrack('2', new FakeTrack('video', 'x'), 'p_c');
    const tracks = s.of('track');
    assert.deepEqual(tracks.map((t) => [t.peer, t.trackId, t.kind]), [['p_b', 't_video_b', 'video'], ['p_c', 't_video_c', 'video']]);
    assert.deepEqual(s.room.peerStreams.get('p_b').getTracks(), [video]);
    s.ws.receive({ type: 'track-unpublished', seq: 4, track: { id: 't_video_b', peer: 'p_b', kind: 'video' } });
    assert.deepEqual(s.of('track-removed').map((t) => t.trackId), ['t_video_b']);
    assert.deepEqual(s.room.peerStreams.get('p_b').getTracks(), []);
    s.ws.receive({ type: 'peer-joined', seq: 5, peer: { id: 'p_c', name: 'carol' } });
    s.ws.receive({ type: 'peer-left', seq: 6, peer: 'p_c', reason: 'left' });
    assert.deepEqual(s.of('track-removed').map((t) => t.peer), ['p_b', 'p_c']);
  });

  test('a failed publisher gets an ICE restart offer; deferred while signaling is down', async () => {
    const done = s.room.publish(/** @type {any} */ (new FakeMediaStream([new FakeTrack('video', 'v1')])));
    await flush();
    s.ws.receive({ type: 'publish-answer', seq: 2, sdp: 'v=0 answer', cseq: s.ws.ofType('publish')[0].cseq });
    await done;
    const pc = FakePeerConnection.instances[0];
    s.ws.serverClose(1006);
    pc.setConnectionState('failed');
    await flush();
    assert.equal(pc.offers.length, 1, 'no restart while reconnecting');
    s.h.clock.advance(0);
    const ws2 = s.h.socket();
    ws2.open();
    ws2.receive(welcome({ seq: undefined, resumed: true, last_cseq: 1 }));
    await flush();
    assert.deepEqual(pc.offers.at(-1), { iceRestart: true });
    assert.match(ws2.ofType('publish')[0].sdp, /ice-restart/);
  });

  test('a rejoin redoes the peer connections and publishes again', async () => {
    const stream = new FakeMediaStream([new FakeTrack('video', 'v1')]);
    const done = s.room.publish(/** @type {any} */ (stream));
    await flush();
    s.ws.receive({ type: 'publish-answer', seq: 2, sdp: 'v=0 answer', cseq: 1 });
    await done;
    const old = FakePeerConnection.instances[0];
    s.ws.serverClose(4011);
    s.h.clock.advance(0);
    const ws2 = s.h.socket();
    ws2.open();
    ws2.receive(welcome({ session: 's_2', peer: 'p_a2' }));
    s.h.clock.advance(0);
    await flush();
    assert.ok(old.closed);
    assert.equal(FakePeerConnection.instances.length, 2);
    assert.equal(s.of('media-reset').length, 1);
    assert.deepEqual(ws2.ofType('publish').map((m) => m.cseq), [1]);
  });

  test('SFU failover: reconnect {scope: media} with delay 0 republishes the same tracks at once', async () => {
    const video = new FakeTrack('video', 'v1');
    const audio = new FakeTrack('audio', 'a1');
    s.room.publish(/** @type {any} */ (new FakeMediaStream([video, audio]))).catch(() => {});
    await flush();
    const [first] = s.ws.ofType('publish');
    // The SFU died with this publish in flight: no answer; the room moved, the server says so.
    s.ws.receive({ type: 'reconnect', seq: 2, mode: 'rejoin', delay_ms: 0, scope: 'media' });
    s.h.clock.advance(0);
    await flush();
    const [old, fresh] = FakePeerConnection.instances;
    assert.ok(old.closed);
    assert.deepEqual(fresh.transceivers.map((t) => t.sender.track), [video, audio]);
    const second = s.ws.ofType('publish')[1];
    assert.ok(second.cseq > first.cseq);
    // A late refusal of the abandoned publish changes nothing and is not reported.
    s.ws.receive({ type: 'error', seq: 3, code: 'sfu-unavailable', message: 'gone', cseq: first.cseq });
    s.ws.receive({ type: 'publish-answer', seq: 4, sdp: 'v=0 new sfu', cseq: second.cseq });
    await flush();
    assert.deepEqual(fresh.remoteDescription, { type: 'answer', sdp: 'v=0 new sfu' });
    assert.equal(s.of('error').length, 0);
    assert.equal(s.of('published').length, 1);
    assert.equal(s.of('media-reset').length, 1);
    assert.equal(s.h.client.sessionId, 's_1', 'the signaling session is untouched');
  });

  test('SFU failover: offers queued from the old SFU never reach the fresh subscriber connection', async () => {
    const offer = (n) => SUBSCRIBER_OFFER.replace('o=- 1 1', `o=- 1 ${n}`);
    s.ws.receive({ type: 'subscriber-offer', seq: 2, sdp: offer(1) });
    await flush();
    const old = FakePeerConnection.instances[0];
    assert.equal(old.remoteDescription.sdp, offer(1));
    // In one tick: an offer of the old SFU (queued, not applied yet), the move, the new SFU's.
    s.ws.receive({ type: 'subscriber-offer', seq: 3, sdp: offer(2) });
    s.ws.receive({ type: 'reconnect', seq: 4, mode: 'rejoin', delay_ms: 0, scope: 'media' });
    s.ws.receive({ type: 'subscriber-offer', seq: 5, sdp: offer(3) });
    await flush();
    const [, fresh, ...more] = FakePeerConnection.instances;
    assert.ok(old.closed);
    assert.equal(more.length, 0, 'one fresh subscriber connection');
    assert.equal(s.room.subscriber, fresh);
    assert.equal(fresh.remoteDescription.sdp, offer(3));
    assert.equal(s.ws.ofType('subscriber-answer').length, 2, 'offer 2 (old SFU, after the move) is not answered');
  });

  test('reconnect with scope media redoes media only', async () => {
    s.room.publish(/** @type {any} */ (new FakeMediaStream([new FakeTrack('video', 'v1')]))).catch(() => {});
    await flush();
    s.ws.receive({ type: 'reconnect', seq: 2, mode: 'rejoin', delay_ms: 500, scope: 'media' });
    assert.ok(FakePeerConnection.instances[0].closed);
    s.h.clock.advance(500);
    await flush();
    assert.equal(FakePeerConnection.instances.length, 2);
    assert.equal(s.ws.ofType('publish').length, 2);
    assert.equal(s.h.client.state, 'connected');
  });
});
