// A native libwebrtc (M106, @roamhq/wrtc) media client for the interop tests, speaking the JSON
// lines of tests/interop/gst_client.py: server messages in on stdin (publish-answer,
// subscriber-offer, ...), client messages out on stdout (publish, subscriber-answer, candidate,
// without cseq), plus {"type": "x-stats"} reports of decoded frames per subscriber mid.
// --publish: a synthetic 320x240 I420 video at 30 fps and a 48 kHz tone; --subscribe: counts
// frames delivered by the decoder (RTCVideoSink) and audio callbacks (RTCAudioSink), and the
// size of the last decoded frame per mid. --simulcast WxH: publish the video at WxH, 15 fps, in three
// simulcast layers (rids q/h/f, scaleResolutionDownBy 4/2/1, as the JS SDK does), with moving
// content so that the encoder needs real bitrate. --ice-servers JSON: use these ICE servers
// with iceTransportPolicy "relay" (every packet through TURN, e.g. an impairment relay in
// front of coturn). --single (with --simulcast WxH): one encoding instead. The publisher's outbound-rtp per rid (bytesSent, frameWidth,
// framesEncoded) is reported in x-stats as `sent`; `publish-layers` (dynacast) sets the
// encodings active or not.
import readline from 'node:readline';
import wrtc from '@roamhq/wrtc';

const { RTCPeerConnection, nonstandard } = wrtc;
const args = new Set(process.argv.slice(2));
const send = (m) => process.stdout.write(JSON.stringify(m) + '\n');
const timers = [];
const video = {};
const audio = {};
const first = {};
const sizes = {};
const argv = process.argv.slice(2);
const simulcastAt = argv.indexOf('--simulcast');
const simulcastSize = simulcastAt >= 0 ? argv[simulcastAt + 1].split('x').map(Number) : null;
const iceAt = argv.indexOf('--ice-servers');
const pcConfig = iceAt >= 0
  ? { iceServers: JSON.parse(argv[iceAt + 1]), iceTransportPolicy: 'relay' }
  : { iceServers: [] };
const sent = {};

function trickle(pc, target) {
  /** Candidates gathered before our SDP went out are held (the SFU drops those). */
  let held = [];
  pc.onicecandidate = (e) => {
    const candidate = e.candidate ? { candidate: e.candidate.candidate, sdpMid: e.candidate.sdpMid, sdpMLineIndex: e.candidate.sdpMLineIndex } : null;
    if (held) held.push(candidate);
    else send({ type: 'candidate', target, candidate });
  };
  pc.onconnectionstatechange = () => send({ type: 'x-state', target, state: pc.connectionState });
  return () => {
    for (const candidate of held) send({ type: 'candidate', target, candidate });
    held = null;
  };
}

let publisher = null;
if (args.has('--publish')) {
  publisher = new RTCPeerConnection(pcConfig);
  const release = trickle(publisher, 'publisher');
  const source = new nonstandard.RTCVideoSource();
  const track = source.createTrack();
  const stream = new wrtc.MediaStream([track]);
  const [width, height] = simulcastSize ?? [320, 240];
  const data = new Uint8ClampedArray(width * height * 1.5);
  let n = 0;
  if (simulcastSize) {
    // Capped bitrates (libwebrtc lowers a layer's minimum to its cap): every layer is enabled
    // once ~0.5 Mbps is estimated, which aiortc's slow REMB ramp reaches in seconds.
    // --single: the same picture in one encoding capped at the layers' sum (a baseline).
    const sendEncodings = args.has('--single') ? [{ maxBitrate: 480_000 }] : [
      { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 80_000 },
      { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 150_000 },
      { rid: 'f', maxBitrate: 250_000 },
    ];
    const transceiver = publisher.addTransceiver(track, { direction: 'sendonly', streams: [stream], sendEncodings });
    // On a busy machine libwebrtc's CPU adaptation would drop the upper layers' resolution.
    const parameters = transceiver.sender.getParameters();
    parameters.degradationPreference = 'maintain-resolution';
    await transceiver.sender.setParameters(parameters).catch(() => {});
    // Moving diagonal stripes plus noise, precomputed (a few frames, cycled): the encoder
    // needs real bitrate per layer, and the generator must not eat the CPU the encoder needs.
    let seed = 1;
    const frames = [];
    for (let f = 0; f < 16; f++) {
      const frame = new Uint8ClampedArray(width * height * 1.5).fill(128);
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
          seed = (seed * 1103515245 + 12345) & 0x7fffffff;
          frame[y * width + x] = (((x + y + f * 8) >> 5) & 1) * 160 + (seed & 31);
        }
      }
      frames.push(frame);
    }
    timers.push(setInterval(() => {
      source.onFrame({ width, height, data: frames[n++ % frames.length] });
    }, 1000 / 15));
  } else {
    publisher.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
    timers.push(setInterval(() => {
      data.fill((n++ * 4) % 256, 0, width * height);
      source.onFrame({ width, height, data });
    }, 1000 / 30));
  }
  const tone = new nonstandard.RTCAudioSource();
  const toneTrack = tone.createTrack();
  publisher.addTransceiver(toneTrack, { direction: 'sendonly', streams: [stream] });
  const samples = new Int16Array(480);
  let phase = 0;
  timers.push(setInterval(() => {
    for (let i = 0; i < samples.length; i++) samples[i] = Math.round(8000 * Math.sin((phase++ * 2 * Math.PI * 440) / 48000));
    tone.onData({ samples, sampleRate: 48000, bitsPerSample: 16, channelCount: 1, numberOfFrames: samples.length });
  }, 10));
  await publisher.setLocalDescription(await publisher.createOffer());
  send({ type: 'publish', sdp: publisher.localDescription.sdp });
  release();
}

let subscriber = null;
let releaseSubscriber = null;
function newSubscriber() {
  subscriber = new RTCPeerConnection(pcConfig);
  releaseSubscriber = trickle(subscriber, 'subscriber');
  subscriber.ontrack = (e) => {
    const mid = e.transceiver?.mid ?? e.track.id;
    if (e.track.kind === 'video') {
      const sink = new nonstandard.RTCVideoSink(e.track);
      sink.onframe = ({ frame }) => {
        video[mid] = (video[mid] ?? 0) + 1;
        first[mid] ??= Date.now() / 1000;
        sizes[mid] = [frame.width, frame.height];
      };
    } else {
      const sink = new nonstandard.RTCAudioSink(e.track);
      sink.ondata = () => { audio[mid] = (audio[mid] ?? 0) + 1; };
    }
  };
}
if (args.has('--subscribe')) newSubscriber();

async function outbound() {
  if (!publisher) return;
  const report = await publisher.getStats();
  report.forEach((s) => {
    if (s.type === 'outbound-rtp' && s.kind === 'video') {
      sent[s.rid ?? String(s.ssrc)] = { bytes: s.bytesSent, width: s.frameWidth ?? 0, frames: s.framesEncoded ?? 0 };
    }
  });
}
timers.push(setInterval(() => {
  outbound().catch(() => {}).finally(() => send({ type: 'x-stats', video, audio, sizes, sent, first_frame: first, t: Date.now() / 1000 }));
}, 250));
send({ type: 'x-ready' });

const lines = readline.createInterface({ input: process.stdin });
let chain = Promise.resolve();
for await (const line of lines) {
  if (!line.trim()) continue;
  const m = JSON.parse(line);
  if (m.type === 'x-quit') break;
  chain = chain.then(async () => {
    if (m.type === 'publish-answer' && publisher) {
      await publisher.setRemoteDescription({ type: 'answer', sdp: m.sdp });
    } else if (m.type === 'publish-layers' && publisher) {
      // Dynacast (docs/protocol.md): send only the encodings somebody receives. @roamhq/wrtc
      // 0.10 refuses it (its getParameters omits the encodings' SSRCs, and setParameters then
      // fails with "modified SSRC"): logged, and the publisher keeps sending every layer.
      const transceiver = publisher.getTransceivers().find((t) => t.mid === m.mid);
      if (transceiver) {
        const parameters = transceiver.sender.getParameters();
        for (const encoding of parameters.encodings) encoding.active = m.active.includes(encoding.rid);
        try {
          await transceiver.sender.setParameters(parameters);
          send({ type: 'x-log', text: `publish-layers ${m.mid}: ${m.active.join(',')}` });
        } catch (e) {
          send({ type: 'x-log', text: `publish-layers ${m.mid}: ${m.active.join(',')} refused: ${e?.name} ${e?.message}` });
        }
      }
    } else if (m.type === 'error' && m.code === 'media-failed' && m.target === 'subscriber' && subscriber) {
      // docs/protocol.md: the SFU closed its side; the next offer is for a fresh connection.
      send({ type: 'x-log', text: `subscriber connection reset by the SFU: ${m.message}` });
      subscriber.close();
      newSubscriber();
    } else if (m.type === 'subscriber-offer' && subscriber) {
      await subscriber.setRemoteDescription({ type: 'offer', sdp: m.sdp });
      await subscriber.setLocalDescription(await subscriber.createAnswer());
      send({ type: 'subscriber-answer', sdp: subscriber.localDescription.sdp });
      releaseSubscriber?.();
      releaseSubscriber = null;
    }
  }).catch((e) => send({ type: 'x-log', text: String(e?.stack ?? e) }));
}
for (const t of timers) clearInterval(t);
publisher?.close();
subscriber?.close();
process.exit(0);
