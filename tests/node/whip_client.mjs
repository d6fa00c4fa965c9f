// A WHIP publisher or WHEP player the tests drive: the `whip-whep` npm clients (WHIPClient,
// WHEPClient, by Medooze) on native libwebrtc (`@roamhq/wrtc`). Run inside a loopback-only
// network namespace by tests/whip.
//
//   node whip_client.mjs publish URL [TOKEN]   send generated video (+ audio) over WHIP
//   node whip_client.mjs play URL [TOKEN]      play over WHEP and count decoded frames
//
// Prints one JSON object per line on stdout ({"event": ...}); reads commands on stdin, one a
// line: "restart" (ICE restart: the client PATCHes with If-Match: *), "stop" (DELETE, exit).
import readline from "node:readline";
import wrtc from "@roamhq/wrtc";
import { WHIPClient } from "whip-whep/whip.js";
import { WHEPClient } from "whip-whep/whep.js";

const [mode, url, token] = process.argv.slice(2);
const { RTCPeerConnection, nonstandard } = wrtc;
const say = (event, fields = {}) => console.log(JSON.stringify({ event, ...fields }));
const timers = [];

// PATCH bodies and statuses, as the server saw them (the clients hide them).
const realFetch = globalThis.fetch;
globalThis.fetch = async (resource, init = {}) => {
  const response = await realFetch(resource, init);
  if (init.method === "PATCH" || init.method === "DELETE") {
    say("http", {
      method: init.method,
      status: response.status,
      ifMatch: (init.headers || {})["If-Match"] ?? null,
      body: typeof init.body === "string" ? init.body : null,
    });
  }
  if (init.method === "POST") {
    say("http", {
      method: "POST",
      status: response.status,
      etag: response.headers.get("etag"),
      location: response.headers.get("location"),
      links: response.headers.get("link"),
    });
  }
  return response;
};

function videoSource(width, height) {
  const source = new nonstandard.RTCVideoSource();
  const data = new Uint8ClampedArray(width * height * 1.5);
  let n = 0;
  timers.push(setInterval(() => {
    // A moving luma ramp, grey chroma: cheap, and never a constant picture.
    const shift = (n * 4) & 0xff;
    for (let y = 0; y < height; y++) {
      const row = y * width;
      for (let x = 0; x < width; x++) data[row + x] = (x + y + shift) & 0xff;
    }
    data.fill(128, width * height);
    source.onFrame({ width, height, data });
    n++;
  }, 33));
  return source;
}

function audioSource() {
  const source = new nonstandard.RTCAudioSource();
  const sampleRate = 48000;
  const samples = new Int16Array(sampleRate / 100); // 10 ms, mono
  let t = 0;
  timers.push(setInterval(() => {
    for (let i = 0; i < samples.length; i++, t++) samples[i] = Math.round(3000 * Math.sin((2 * Math.PI * 440 * t) / sampleRate));
    source.onData({ samples, sampleRate, bitsPerSample: 16, channelCount: 1, numberOfFrames: samples.length });
  }, 10));
  return source;
}

const pc = new RTCPeerConnection({ iceServers: [] });
pc.addEventListener("connectionstatechange", () => say("state", { state: pc.connectionState }));
let client;

if (mode === "publish") {
  client = new WHIPClient();
  pc.addTransceiver(videoSource(320, 240).createTrack(), { direction: "sendonly" });
  pc.addTransceiver(audioSource().createTrack(), { direction: "sendonly" });
  try {
    await client.publish(pc, url, token || undefined);
    say("published", { resource: String(client.resourceURL), etag: client.etag });
  } catch (error) {
    say("error", { message: String(error.message || error) });
    process.exit(3);
  }
} else if (mode === "play") {
  client = new WHEPClient();
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  let frames = 0;
  let size = null;
  pc.addEventListener("track", ({ track }) => {
    say("track", { kind: track.kind });
    if (track.kind !== "video") return;
    const sink = new nonstandard.RTCVideoSink(track);
    sink.onframe = ({ frame }) => { frames++; size = [frame.width, frame.height]; };
    timers.push(setInterval(() => say("frames", { count: frames, size }), 250));
  });
  try {
    await client.view(pc, url, token || undefined);
    say("playing", { resource: String(client.resourceURL), etag: client.etag });
  } catch (error) {
    say("error", { message: String(error.message || error) });
    process.exit(3);
  }
} else {
  say("error", { message: `unknown mode ${mode}` });
  process.exit(2);
}

const input = readline.createInterface({ input: process.stdin });
input.on("line", async (line) => {
  const command = line.trim();
  try {
    if (command === "restart") {
      await client.restart();
      say("restarted");
    } else if (command === "stop") {
      for (const timer of timers) clearInterval(timer);
      await client.stop();
      say("stopped");
      process.exit(0);
    }
  } catch (error) {
    say("command-failed", { command, message: String(error.message || error) });
  }
});
input.on("close", () => process.exit(0));
