// @ts-check
/**
 * The Switchboard page: join form, camera/microphone, participant grid, connection badge,
 * per-stream stats. All protocol work is in /static/switchboard.js.
 *
 * Deep link: /?room=R&name=N&autojoin=1 (&mode=auto|p2p|sfu, &cam=0, &mic=0, &token=JWT).
 * With `token` alone the room (and name) come from the token's claims and the page joins at once;
 * the token then leaves the address bar (kept in sessionStorage for this tab only).
 * Media modes: `sfu` publishes through the server's SFU; `p2p` calls every peer directly over
 * `signal` (a small mesh); `auto` (default) tries the SFU and falls back to p2p when the server
 * answers `sfu-unavailable`.
 *
 * `window.switchboard` is a read-only view of the page for tests and debugging.
 */

import { isP2PSignal, P2PCall, Room, SignalingClient } from '/static/switchboard.js';

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

const ui = {
  lobby: $('lobby'),
  form: /** @type {HTMLFormElement} */ ($('join-form')),
  room: /** @type {HTMLInputElement} */ ($('room')),
  name: /** @type {HTMLInputElement} */ ($('name')),
  wantCam: /** @type {HTMLInputElement} */ ($('want-cam')),
  wantMic: /** @type {HTMLInputElement} */ ($('want-mic')),
  formError: $('form-error'),
  joinButton: /** @type {HTMLButtonElement} */ ($('join-button')),
  call: $('call'),
  grid: $('grid'),
  mic: /** @type {HTMLButtonElement} */ ($('mic')),
  cam: /** @type {HTMLButtonElement} */ ($('cam')),
  leave: /** @type {HTMLButtonElement} */ ($('leave')),
  badge: $('badge'),
  badgeText: $('badge-text'),
  badgeDetail: $('badge-detail'),
  roomLabel: $('room-label'),
  notice: $('notice'),
  noticeText: $('notice-text'),
  noticeRetry: /** @type {HTMLButtonElement} */ ($('notice-retry')),
  noticeDismiss: /** @type {HTMLButtonElement} */ ($('notice-dismiss')),
  announcer: $('announcer'),
  template: /** @type {HTMLTemplateElement} */ ($('tile-template')),
};

const params = new URLSearchParams(location.search);
const LONG_GAP_MS = 300;
const now = () => performance.now();

/**
 * @typedef {object} FrameStats
 * @property {number} frames  decoded frames seen
 * @property {number | null} firstFrameAt
 * @property {number | null} lastFrameAt
 * @property {number} maxGapMs  longest time without a new frame since the first one
 * @property {{at: number, ms: number}[]} longGaps  gaps over LONG_GAP_MS (page clock)
 */

/**
 * @typedef {object} Tile
 * @property {string} peer
 * @property {string} name
 * @property {boolean} local
 * @property {HTMLLIElement} el
 * @property {HTMLVideoElement} video
 * @property {HTMLElement} status
 * @property {HTMLButtonElement} statsButton
 * @property {HTMLElement} statsList
 * @property {MediaStream | null} stream
 * @property {FrameStats} frames
 * @property {number} lastDecoded
 * @property {number} lastTime
 * @property {Map<string, {bytes: number, at: number}>} rates
 */

const app = {
  /** @type {SignalingClient | null} */
  client: null,
  /** @type {Room | null} */
  room: null,
  /** @type {Map<string, P2PCall>} */
  calls: new Map(),
  /** @type {Set<string>} peers that were in the room when we joined: we call them */
  olderPeers: new Set(),
  /** @type {Map<string, Tile>} remote tiles by peer id */
  tiles: new Map(),
  /** @type {Tile | null} */
  localTile: null,
  /** @type {MediaStream | null} */
  local: null,
  /** @type {'auto' | 'p2p' | 'sfu'} requested */
  requestedMode: /** @type {any} */ (['auto', 'p2p', 'sfu'].includes(params.get('mode') ?? '') ? params.get('mode') : 'auto'),
  /** @type {'p2p' | 'sfu' | null} in effect */
  mode: /** @type {'p2p' | 'sfu' | null} */ (null),
  /** @type {{t: number, state: string, detail?: string}[]} */
  stateLog: [],
  /** @type {{t: number, code: string | number | null, message: string}[]} */
  errors: [],
  joinStartedAt: /** @type {number | null} */ (null),
  joinedAt: /** @type {number | null} */ (null),
  leaving: false,
  /** @type {ReturnType<typeof setTimeout> | null} */
  resumedTimer: null,
  /** @type {number | null} media round-trip time (ms) from ICE candidate-pair stats */
  rttMs: null,
  /** @type {string | null} access token (deep link `?token=`), asked for on every connect */
  token: /** @type {string | null} */ (null),
};

// -- small UI helpers -----------------------------------------------------------------------------

/** @param {string} text */
function announce(text) {
  ui.announcer.textContent = '';
  // A separate task so screen readers notice repeated texts.
  setTimeout(() => {
    ui.announcer.textContent = text;
  }, 50);
}

/**
 * @param {string} text
 * @param {{retry?: (() => void) | null, kind?: 'error' | 'warning' | 'network'}} [options]
 */
function showNotice(text, options = {}) {
  ui.notice.hidden = false;
  ui.notice.dataset.kind = options.kind ?? 'error';
  ui.noticeText.textContent = text;
  ui.noticeRetry.hidden = !options.retry;
  ui.noticeRetry.onclick = options.retry
    ? () => {
        hideNotice();
        options.retry?.();
      }
    : null;
}

function hideNotice() {
  ui.notice.hidden = true;
  ui.noticeText.textContent = '';
}

/**
 * @param {string} state
 * @param {string} [detail]
 */
function logState(state, detail) {
  app.stateLog.push({ t: now(), state, detail });
  if (app.stateLog.length > 200) app.stateLog.shift();
}

const BADGE_TEXT = /** @type {Record<string, string>} */ ({
  idle: 'Not connected',
  connecting: 'Connecting…',
  connected: 'Connected',
  reconnecting: 'Reconnecting…',
  resumed: 'Resumed',
  rejoined: 'Rejoined',
  closed: 'Disconnected',
});

/** @param {string} state */
function setBadge(state) {
  if (app.resumedTimer !== null) {
    clearTimeout(app.resumedTimer);
    app.resumedTimer = null;
  }
  ui.badge.dataset.state = state;
  ui.badgeText.textContent = BADGE_TEXT[state] ?? state;
  logState(`badge:${state}`);
  if (state === 'resumed' || state === 'rejoined') {
    // Say it long enough to be seen, then settle back to "Connected".
    app.resumedTimer = setTimeout(() => {
      app.resumedTimer = null;
      if (app.client?.state === 'connected') setBadge('connected');
    }, 4000);
  }
  updateBadgeDetail();
}

function updateBadgeDetail() {
  const client = app.client;
  if (!client || client.state === 'closed') {
    ui.badgeDetail.textContent = '';
    return;
  }
  if (client.state !== 'connected') {
    ui.badgeDetail.textContent = navigator.onLine === false ? 'offline' : '';
    return;
  }
  if (app.rttMs !== null) {
    ui.badgeDetail.textContent = `RTT ${app.rttMs < 10 ? app.rttMs.toFixed(1) : Math.round(app.rttMs)} ms`;
    ui.badgeDetail.title = 'Round-trip time of the media path (ICE)';
    return;
  }
  const health = client.health();
  ui.badgeDetail.textContent = health.status === 'unknown' ? '' : `heartbeat ${health.status}`;
  ui.badgeDetail.title = health.intervalMs ? `Server pings every ${Math.round(health.intervalMs / 1000)} s` : '';
}

// -- access tokens --------------------------------------------------------------------------------

/**
 * The claims of a JWT, read without verifying it (the server verifies): enough to fill in the
 * room, say that a link expired before trying, or that it names another room.
 * @param {string} token
 * @returns {{room?: string, name?: string, exp?: number} | null}
 */
function tokenClaims(token) {
  const part = token.split('.')[1];
  if (!part) return null;
  try {
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '='));
    const claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(json, (c) => c.charCodeAt(0))));
    return claims && typeof claims === 'object' ? claims : null;
  } catch {
    return null;
  }
}

/** Does a room-claim pattern (`team-*`) match a room name? @param {string} pattern @param {string} room */
function roomMatches(pattern, room) {
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
  return re.test(room);
}

/**
 * Why this token cannot work for `room`, or null if it may (the server has the last word).
 * @param {string} token
 * @param {string} room
 */
function tokenProblem(token, room) {
  const claims = tokenClaims(token);
  if (!claims) return 'This access link is damaged (the token cannot be read). Ask the host for a new link.';
  if (typeof claims.exp === 'number' && claims.exp * 1000 < Date.now()) {
    return 'Your access link has expired. Ask the host for a new one.';
  }
  if (typeof claims.room === 'string' && !roomMatches(claims.room, room)) {
    return `Your access link is for room "${claims.room}", not "${room}".`;
  }
  return null;
}

const TOKEN_KEY = 'switchboard.token';

/** The access token of this tab: from the link (then removed from the address bar), or kept. */
function initialToken() {
  const fromLink = params.get('token');
  if (fromLink) {
    sessionStorage.setItem(TOKEN_KEY, fromLink);
    params.delete('token');
    const rest = params.toString();
    history.replaceState(null, '', rest ? `/?${rest}` : '/');
    const claims = tokenClaims(fromLink);
    if (claims && !params.get('room') && typeof claims.room === 'string' && !/[*?[]/.test(claims.room)) {
      params.set('room', claims.room);
      if (!params.has('autojoin')) params.set('autojoin', '1');
    }
    if (claims && !params.get('name') && typeof claims.name === 'string') params.set('name', claims.name);
    return fromLink;
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function wsUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws`;
}

// -- tiles ----------------------------------------------------------------------------------------

/**
 * @param {string} peer
 * @param {string} name
 * @param {boolean} local
 * @returns {Tile}
 */
function createTile(peer, name, local) {
  const el = /** @type {HTMLLIElement} */ (/** @type {Element} */ (ui.template.content.firstElementChild).cloneNode(true));
  const video = /** @type {HTMLVideoElement} */ (el.querySelector('video'));
  const statsButton = /** @type {HTMLButtonElement} */ (el.querySelector('.stats-button'));
  const statsList = /** @type {HTMLElement} */ (el.querySelector('.stats'));
  const display = name || (local ? 'You' : 'Guest');
  el.dataset.peer = peer;
  el.classList.toggle('local', local);
  el.setAttribute('aria-label', local ? `${display} (you)` : display);
  /** @type {HTMLElement} */ (el.querySelector('.name')).textContent = local ? `${display} (you)` : display;
  /** @type {HTMLElement} */ (el.querySelector('.avatar')).textContent = initials(display);
  statsList.id = `stats-${peer.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  statsButton.setAttribute('aria-controls', statsList.id);
  statsButton.setAttribute('aria-label', `Stats for ${display}`);
  video.muted = local; // never play our own microphone back
  video.setAttribute('aria-label', local ? 'Your camera' : `Video of ${display}`);
  /** @type {Tile} */
  const tile = {
    peer, name: display, local, el, video,
    status: /** @type {HTMLElement} */ (el.querySelector('.tile-status')),
    statsButton, statsList, stream: null,
    frames: { frames: 0, firstFrameAt: null, lastFrameAt: null, maxGapMs: 0, longGaps: [] },
    lastDecoded: 0, lastTime: 0, rates: new Map(),
  };
  statsButton.addEventListener('click', () => {
    const open = statsButton.getAttribute('aria-expanded') !== 'true';
    statsButton.setAttribute('aria-expanded', String(open));
    statsList.hidden = !open;
    if (open) refreshStats(tile);
  });
  video.addEventListener('loadedmetadata', () => {
    video.play().catch(() => {});
  });
  return tile;
}

/** @param {string} name */
function initials(name) {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  return (parts.length > 1 ? parts[0][0] + parts[1][0] : (parts[0] ?? '?').slice(0, 2)).toUpperCase();
}

/**
 * One tile per participant, whatever the order of events.
 * @param {string} peer
 * @param {string} [name]
 */
function ensureTile(peer, name) {
  let tile = app.tiles.get(peer);
  if (tile) return tile;
  tile = createTile(peer, name ?? app.client?.peers.get(peer) ?? '', false);
  app.tiles.set(peer, tile);
  ui.grid.append(tile.el);
  layoutGrid();
  return tile;
}

/** @param {string} peer */
function removeTile(peer) {
  const tile = app.tiles.get(peer);
  if (!tile) return;
  app.tiles.delete(peer);
  tile.video.srcObject = null;
  tile.el.remove();
  layoutGrid();
}

function layoutGrid() {
  const count = app.tiles.size + (app.localTile ? 1 : 0);
  ui.grid.dataset.count = String(Math.min(count, 9));
}

/**
 * @param {Tile} tile
 * @param {MediaStream | null} stream
 */
function setTileStream(tile, stream) {
  const tracks = stream ? stream.getTracks() : [];
  const hasVideo = tracks.some((t) => t.kind === 'video');
  tile.el.classList.toggle('has-video', hasVideo);
  // A new MediaStream object per change: the element then reliably picks up added tracks.
  const fresh = tracks.length ? new MediaStream(tracks) : null;
  tile.stream = fresh;
  tile.video.srcObject = fresh;
  if (fresh) tile.video.play().catch(() => {});
}

/** Decoded-frame bookkeeping of every remote video, for the stats and the test hook. */
function sampleFrames() {
  const t = now();
  for (const tile of app.tiles.values()) {
    const v = tile.video;
    const decoded = typeof v.getVideoPlaybackQuality === 'function' ? v.getVideoPlaybackQuality().totalVideoFrames : 0;
    const advanced = decoded > tile.lastDecoded || (v.currentTime > tile.lastTime && v.videoWidth > 0);
    if (advanced && v.videoWidth > 0) {
      const f = tile.frames;
      if (f.lastFrameAt !== null) {
        const gap = t - f.lastFrameAt;
        if (gap > f.maxGapMs) f.maxGapMs = gap;
        if (gap > LONG_GAP_MS) {
          f.longGaps.push({ at: t, ms: Math.round(gap) });
          if (f.longGaps.length > 50) f.longGaps.shift();
        }
      } else {
        f.firstFrameAt = t;
      }
      f.frames += Math.max(1, decoded - tile.lastDecoded);
      f.lastFrameAt = t;
    }
    tile.lastDecoded = decoded;
    tile.lastTime = v.currentTime;
  }
}

// -- stats ----------------------------------------------------------------------------------------

/** The receivers delivering this tile's media. @param {Tile} tile */
function statsSources(tile) {
  /** @type {{getStats: () => Promise<RTCStatsReport>}[]} */
  const sources = [];
  const call = app.calls.get(tile.peer);
  if (call) sources.push(call.pc);
  if (app.room) for (const r of app.room.tracksOf(tile.peer)) if (r.receiver) sources.push(r.receiver);
  return sources;
}

/** @param {Tile} tile */
async function refreshStats(tile) {
  if (tile.statsList.hidden) return;
  /** @type {[string, string][]} */
  const rows = [];
  for (const source of statsSources(tile)) {
    /** @type {RTCStatsReport} */
    let report;
    try {
      report = await source.getStats();
    } catch {
      continue;
    }
    report.forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      const previous = tile.rates.get(s.id);
      const bitrate = previous && s.timestamp > previous.at ? ((s.bytesReceived - previous.bytes) * 8) / (s.timestamp - previous.at) : null;
      tile.rates.set(s.id, { bytes: s.bytesReceived, at: s.timestamp });
      const lost = Math.max(0, s.packetsLost ?? 0);
      const total = lost + (s.packetsReceived ?? 0);
      const loss = total > 0 ? `${((100 * lost) / total).toFixed(1)} %` : '–';
      const rate = bitrate === null ? '…' : `${Math.round(bitrate)} kbps`;
      if (s.kind === 'video') {
        const res = s.frameWidth ? `${s.frameWidth}×${s.frameHeight}` : '–';
        rows.push(['Video', `${res} · ${s.framesPerSecond ?? 0} fps`], ['Video bitrate', rate], ['Video loss', loss]);
      } else if (s.kind === 'audio') {
        rows.push(['Audio bitrate', rate], ['Audio loss', loss]);
      }
    });
  }
  if (rows.length === 0) rows.push(['Media', 'no incoming stream']);
  tile.statsList.replaceChildren(
    ...rows.flatMap(([k, v]) => {
      const dt = document.createElement('dt');
      dt.textContent = k;
      const dd = document.createElement('dd');
      dd.textContent = v;
      return [dt, dd];
    }),
  );
}

async function refreshRtt() {
  /** @type {RTCPeerConnection[]} */
  const pcs = [...app.calls.values()].map((c) => c.pc);
  if (app.room?.publisher) pcs.unshift(app.room.publisher);
  for (const pc of pcs) {
    try {
      const report = await pc.getStats();
      /** @type {number | null} */
      let rtt = null;
      report.forEach((s) => {
        if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded' && typeof s.currentRoundTripTime === 'number') {
          rtt = s.currentRoundTripTime * 1000;
        }
      });
      if (rtt !== null) {
        app.rttMs = rtt;
        return;
      }
    } catch {
      // a closed PC: try the next
    }
  }
  // No media path yet: the signaling RTT the server measured from our pongs.
  app.rttMs = app.client?.rttMs ?? null;
}

// -- media ----------------------------------------------------------------------------------------

/**
 * Ask for camera/microphone. Never throws: on failure the call goes on receive-only, with a
 * message saying why and how to fix it.
 * @returns {Promise<MediaStream | null>}
 */
async function acquireMedia() {
  const wantVideo = ui.wantCam.checked;
  const wantAudio = ui.wantMic.checked;
  if (!wantVideo && !wantAudio) return null;
  if (!navigator.mediaDevices?.getUserMedia) {
    showNotice('This browser cannot capture camera or microphone here (a secure https:// page is required). You can still watch and listen.', { kind: 'warning' });
    return null;
  }
  try {
    return await navigator.mediaDevices.getUserMedia({
      video: wantVideo ? { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } } : false,
      audio: wantAudio,
    });
  } catch (error) {
    const name = error instanceof DOMException ? error.name : '';
    app.errors.push({ t: now(), code: `media:${name || 'error'}`, message: String(error) });
    if (name === 'NotAllowedError' || name === 'SecurityError') {
      showNotice(
        'Camera and microphone access was denied, so you joined without sending audio or video. ' +
          'Allow access for this site in your browser (the camera icon in the address bar), then try again.',
        { retry: retryMedia, kind: 'warning' },
      );
    } else if (name === 'NotFoundError' || name === 'OverconstrainedError') {
      showNotice('No camera or microphone was found. You joined without sending audio or video.', { retry: retryMedia, kind: 'warning' });
    } else if (name === 'NotReadableError') {
      showNotice('Your camera or microphone is in use by another application. Close it and try again.', { retry: retryMedia, kind: 'warning' });
    } else {
      showNotice(`Could not start camera or microphone (${name || 'unknown error'}).`, { retry: retryMedia, kind: 'warning' });
    }
    return null;
  }
}

async function retryMedia() {
  const stream = await acquireMedia();
  if (!stream) return;
  setLocalStream(stream);
  if (app.mode === 'p2p') for (const call of app.calls.values()) call.addStream(stream);
  else if (app.room) publishToSfu();
}

/** @param {MediaStream | null} stream */
function setLocalStream(stream) {
  app.local = stream;
  if (app.localTile) setTileStream(app.localTile, stream);
  const hasAudio = !!stream?.getAudioTracks().length;
  const hasVideo = !!stream?.getVideoTracks().length;
  ui.mic.disabled = !hasAudio;
  ui.cam.disabled = !hasVideo;
  syncControls();
}

function syncControls() {
  const audio = app.local?.getAudioTracks() ?? [];
  const video = app.local?.getVideoTracks() ?? [];
  const micMuted = audio.length > 0 && audio.every((t) => !t.enabled);
  const camOff = video.length > 0 && video.every((t) => !t.enabled);
  ui.mic.setAttribute('aria-pressed', String(micMuted));
  /** @type {HTMLElement} */ (ui.mic.querySelector('.label')).textContent = micMuted ? 'Unmute' : 'Mute';
  ui.cam.setAttribute('aria-pressed', String(camOff));
  /** @type {HTMLElement} */ (ui.cam.querySelector('.label')).textContent = camOff ? 'Start video' : 'Stop video';
  app.localTile?.el.classList.toggle('camera-off', camOff || video.length === 0);
  app.localTile?.el.classList.toggle('mic-off', micMuted || audio.length === 0);
}

/** @param {'audio' | 'video'} kind */
function toggle(kind) {
  const tracks = kind === 'audio' ? app.local?.getAudioTracks() : app.local?.getVideoTracks();
  if (!tracks?.length) return;
  const enable = tracks.every((t) => !t.enabled);
  for (const t of tracks) t.enabled = enable;
  syncControls();
  announce(kind === 'audio' ? (enable ? 'Microphone on' : 'Microphone muted') : enable ? 'Camera on' : 'Camera off');
}

/**
 * The direct call with `peer`, created if needed. `initiate`: we joined after them, so we offer
 * (they answer); peers that join after us call us.
 * @param {string} peer
 * @param {boolean} initiate
 */
function ensureCall(peer, initiate) {
  const client = app.client;
  if (!client || client.peerId === null || peer === client.peerId) return null;
  let call = app.calls.get(peer);
  if (call) return call;
  call = new P2PCall(client, peer, { localStream: app.local, initiate });
  app.calls.set(peer, call);
  const current = call;
  call.on('track', ({ stream }) => setTileStream(ensureTile(peer), stream));
  call.on('state', ({ state }) => {
    const tile = app.tiles.get(peer);
    if (tile) tile.el.dataset.media = state;
  });
  call.on('closed', () => {
    if (app.calls.get(peer) === current) app.calls.delete(peer);
  });
  call.on('error', ({ message }) => app.errors.push({ t: now(), code: 'p2p', message }));
  return call;
}

/** @param {boolean} notify */
function closeCalls(notify) {
  for (const call of app.calls.values()) {
    if (notify) call.close();
    else call._shutdown();
  }
  app.calls.clear();
}

function startP2P() {
  app.mode = 'p2p';
  logState('mode:p2p');
  if (app.room) {
    app.room.close();
    app.room = null;
  }
  for (const peer of app.olderPeers) if (app.client?.peers.has(peer)) ensureCall(peer, true);
}

function startSfu() {
  const client = /** @type {SignalingClient} */ (app.client);
  app.mode = 'sfu';
  logState('mode:sfu');
  const room = new Room(client);
  app.room = room;
  room.on('track', (/** @type {import('/static/switchboard.js').RemoteTrack} */ r) => setTileStream(ensureTile(r.peer), r.stream));
  room.on('track-removed', (/** @type {import('/static/switchboard.js').RemoteTrack} */ r) => {
    const tile = app.tiles.get(r.peer);
    if (tile) setTileStream(tile, r.stream);
  });
  room.on('error', ({ code, message, op }) => {
    app.errors.push({ t: now(), code, message });
    if (op === 'publish' && code === 'sfu-unavailable' && app.requestedMode === 'auto') {
      announce('Media server unavailable: calling participants directly.');
      startP2P();
    } else if (code !== 'abandoned') {
      showNotice(`Media problem (${code ?? op}): ${message}`, { kind: 'warning' });
    }
  });
  room.on('subscriber-failed', () => showNotice('Lost the incoming media connection; waiting for the server to restore it.', { kind: 'warning' }));
  publishToSfu();
}

function publishToSfu() {
  const room = app.room;
  if (!room || !app.local) return;
  room.publish(app.local).catch((/** @type {any} */ error) => {
    room.emit('error', { op: 'publish', code: error?.code ?? null, message: error?.message ?? String(error) });
  });
}

// -- the session ----------------------------------------------------------------------------------

/** @param {SignalingClient} client */
function wireClient(client) {
  client.on('state', ({ state }) => {
    logState(state);
    if (state === 'reconnecting') setBadge('reconnecting');
    else if (state === 'connecting') setBadge('connecting');
  });
  client.on('joined', ({ peers }) => {
    app.joinedAt = now();
    app.olderPeers = new Set(peers.map((/** @type {{id: string}} */ p) => p.id));
    setBadge('connected');
    if (ui.notice.dataset.kind === 'network') hideNotice();
    for (const p of peers) ensureTile(p.id, p.name);
    const peerCount = peers.length;
    announce(`Joined ${client.room}. ${peerCount === 0 ? 'Nobody else is here yet.' : `${peerCount} other${peerCount === 1 ? '' : 's'} here.`}`);
    if (app.requestedMode === 'p2p') startP2P();
    else startSfu();
  });
  client.on('reconnecting', ({ attempt, delayMs, reason }) => {
    logState('reconnecting-attempt', `${attempt} ${Math.round(delayMs)}ms ${reason}`);
    ui.badgeDetail.textContent = navigator.onLine === false ? 'offline' : attempt > 1 ? `attempt ${attempt}` : '';
    networkNotice(attempt);
  });
  client.on('resumed', ({ replayed, resent }) => {
    logState('resumed', `replayed ${replayed}, resent ${resent}`);
    setBadge('resumed');
    if (ui.notice.dataset.kind === 'network') hideNotice();
  });
  client.on('rejoined', ({ peers }) => {
    // A new session: our peer id changed, so every direct call is redone (the Room redoes SFU media).
    logState('rejoined');
    setBadge('rejoined');
    closeCalls(false);
    app.olderPeers = new Set(peers.map((/** @type {{id: string}} */ p) => p.id));
    for (const p of peers) ensureTile(p.id, p.name);
    if (app.mode === 'p2p') for (const p of peers) ensureCall(p.id, true);
    if (ui.notice.dataset.kind === 'network') hideNotice();
  });
  client.on('peer-joined', ({ peer }) => {
    ensureTile(peer.id, peer.name);
    announce(`${peer.name || 'Someone'} joined`); // they will call us in p2p mode
  });
  client.on('peer-left', ({ peer, reason }) => {
    const name = app.tiles.get(peer)?.name ?? 'Someone';
    const call = app.calls.get(peer);
    if (call) call._shutdown(); // gone: nobody to say goodbye to
    app.calls.delete(peer);
    removeTile(peer);
    announce(reason === 'timeout' ? `${name} lost their connection` : `${name} left`);
  });
  client.on('peer-reconnecting', ({ peer }) => {
    const tile = app.tiles.get(peer);
    if (tile) {
      tile.el.classList.add('reconnecting');
      tile.status.textContent = 'reconnecting…';
    }
  });
  client.on('peer-resumed', ({ peer }) => {
    const tile = app.tiles.get(peer);
    if (tile) {
      tile.el.classList.remove('reconnecting');
      tile.status.textContent = '';
    }
  });
  client.on('signal', ({ from, data }) => {
    if (!isP2PSignal(data)) return;
    if (data.bye) {
      app.calls.get(from)?.handle(data);
      return;
    }
    if (app.mode !== 'p2p') startP2P(); // a peer calls us directly: the SFU path is not in use
    ensureCall(from, false)?.handle(data);
  });
  client.on('error', ({ code, message, cseq }) => {
    app.errors.push({ t: now(), code, message });
    logState('error', `${code} ${cseq ?? ''}`);
  });
  client.on('closed', ({ code, reason }) => {
    logState('closed', `${code} ${reason}`);
    setBadge('closed');
    if (!app.leaving) {
      // Trying again cannot help after an auth failure or a kick: no "Try again" then.
      const final = code === 4001 || code === 4003 || code === 4006;
      showNotice(fatalMessage(code, reason), { retry: final ? null : () => join(), kind: 'error' });
      teardown();
    }
  });
}

/**
 * What a person should know while the link is down: offline, or (once a few quick retries
 * failed) that we keep trying.
 * @param {number} attempt
 */
function networkNotice(attempt) {
  const client = app.client;
  if (!client || client.state === 'closed' || client.state === 'connected') return;
  if (navigator.onLine === false) {
    showNotice('You are offline. Switchboard will reconnect as soon as the network is back.', { kind: 'network' });
  } else if (attempt >= 3) {
    showNotice(
      client.peerId === null
        ? 'Cannot reach the Switchboard server. Retrying…'
        : 'Connection to the server lost. Reconnecting… direct calls keep going meanwhile.',
      { kind: 'network' },
    );
  }
}

/**
 * @param {number | null} code
 * @param {string} reason
 */
function fatalMessage(code, reason) {
  switch (code) {
    case 4001:
      if (reason.includes('required')) {
        return 'This room needs an access link. Open the link you were given (it contains ?token=…), or ask the host for one.';
      }
      if (reason.includes('expired')) return 'Your access link has expired. Ask the host for a new one.';
      return 'Your access link was not accepted (invalid token). Ask the host for a new one.';
    case 4003:
      return reason.includes('grant room')
        ? `Your access link is for another room, not "${app.client?.room ?? ''}".`
        : 'You do not have access to this room.';
    case 4006: return 'You were removed from the room.';
    case 4010: return 'The connection was closed after a protocol error. Reload the page to join again.';
    case 4012: return 'This session was taken over by another tab or device.';
    case 1000: return reason.includes('room full') ? 'The room is full.' : 'The session ended.';
    default: return `The connection to the server ended (${code ?? 'network'}: ${reason}).`;
  }
}

function teardown() {
  closeCalls(false);
  app.room?.close();
  app.room = null;
  app.mode = null;
  for (const peer of [...app.tiles.keys()]) removeTile(peer);
  if (app.localTile) {
    app.localTile.el.remove();
    app.localTile = null;
  }
  for (const track of app.local?.getTracks() ?? []) track.stop();
  app.local = null;
  ui.call.hidden = true;
  ui.lobby.hidden = false;
  ui.roomLabel.hidden = true;
  ui.joinButton.disabled = false;
  document.title = 'Switchboard';
}

async function join() {
  const roomName = ui.room.value.trim();
  const name = ui.name.value.trim();
  if (!ui.room.checkValidity() || !roomName) {
    ui.formError.hidden = false;
    ui.formError.textContent = 'Enter a room name: 1–128 letters, digits or _ . : @ + -';
    ui.room.setAttribute('aria-invalid', 'true');
    ui.room.focus();
    return;
  }
  ui.room.removeAttribute('aria-invalid');
  ui.formError.hidden = true;
  const problem = app.token ? tokenProblem(app.token, roomName) : null;
  if (problem) {
    showNotice(problem, { kind: 'error' });
    return;
  }
  ui.joinButton.disabled = true;
  hideNotice();
  app.leaving = false;
  app.joinStartedAt = now();
  app.joinedAt = null;
  const shareable = new URLSearchParams(location.search);
  shareable.set('room', roomName);
  if (name) shareable.set('name', name);
  else shareable.delete('name');
  shareable.delete('autojoin');
  history.replaceState(null, '', `/?${shareable}`);

  ui.lobby.hidden = true;
  ui.call.hidden = false;
  ui.roomLabel.hidden = false;
  ui.roomLabel.textContent = roomName;
  document.title = `${roomName} · Switchboard`;
  app.localTile = createTile('local', name, true);
  ui.grid.prepend(app.localTile.el);
  layoutGrid();
  setBadge('connecting');
  setLocalStream(await acquireMedia());

  const client = new SignalingClient({
    url: wsUrl(),
    room: roomName,
    name,
    subscribe: app.requestedMode !== 'p2p',
    // Asked on every connection attempt: a resume presents the token this tab holds now.
    tokenProvider: () => app.token,
  });
  app.client = client;
  wireClient(client);
  try {
    await client.connect();
  } catch {
    // `closed` shows the reason
  }
}

async function leave() {
  const client = app.client;
  app.leaving = true;
  closeCalls(false);
  teardown();
  if (client) await client.leave();
  setBadge('idle');
  announce('You left the room.');
  ui.room.focus();
}

// -- wiring ---------------------------------------------------------------------------------------

ui.form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  join();
});
ui.mic.addEventListener('click', () => toggle('audio'));
ui.cam.addEventListener('click', () => toggle('video'));
ui.leave.addEventListener('click', () => leave());
ui.noticeDismiss.addEventListener('click', hideNotice);
window.addEventListener('offline', () => {
  if (!app.client || app.client.state === 'closed') return;
  // The socket may look fine for a while yet; the heartbeat timeout will tell.
  showNotice('You are offline. Switchboard will reconnect as soon as the network is back.', { kind: 'network' });
});
window.addEventListener('online', () => {
  if (ui.notice.dataset.kind === 'network' && app.client?.state === 'connected') hideNotice();
  app.client?.reconnectNow(); // no need to sit out the backoff
});
window.addEventListener('pagehide', () => {
  // Best effort: tell the room now instead of letting the grace period run out.
  if (app.client && app.client.state === 'connected') {
    app.leaving = true;
    app.client.leave();
  }
});

setInterval(sampleFrames, 100);
setInterval(() => {
  refreshRtt().finally(updateBadgeDetail);
  for (const tile of app.tiles.values()) if (!tile.statsList.hidden) refreshStats(tile);
}, 1000);

app.token = initialToken();
ui.room.value = params.get('room') ?? '';
ui.name.value = params.get('name') ?? '';
if (params.get('cam') === '0') ui.wantCam.checked = false;
if (params.get('mic') === '0') ui.wantMic.checked = false;
if (params.get('autojoin') === '1' && ui.room.value) join();
else (ui.room.value ? ui.name : ui.room).focus();

// -- read-only test hook --------------------------------------------------------------------------

/** @param {Tile} tile */
function tileView(tile) {
  const v = tile.video;
  return {
    peer: tile.peer,
    name: tile.name,
    hasVideo: tile.el.classList.contains('has-video'),
    reconnecting: tile.el.classList.contains('reconnecting'),
    videoWidth: v.videoWidth,
    videoHeight: v.videoHeight,
    currentTime: v.currentTime,
    paused: v.paused,
  };
}

Object.defineProperty(window, 'switchboard', {
  configurable: false,
  writable: false,
  value: Object.freeze({
    get state() { return app.client?.state ?? 'idle'; },
    get badge() { return ui.badge.dataset.state ?? 'idle'; },
    get badgeText() { return `${ui.badgeText.textContent} ${ui.badgeDetail.textContent}`.trim(); },
    get stateLog() { return app.stateLog.map((e) => ({ ...e })); },
    get peerId() { return app.client?.peerId ?? null; },
    get sessionId() { return app.client?.sessionId ?? null; },
    get room() { return app.client?.room ?? null; },
    get mode() { return app.mode; },
    get peers() { return [...(app.client?.peers ?? new Map())].map(([id, name]) => ({ id, name })); },
    get tiles() { return [...app.tiles.values()].map(tileView); },
    get calls() {
      return [...app.calls.values()].map((c) => ({
        peer: c.peer,
        polite: c.polite,
        connectionState: c.pc.connectionState,
        iceConnectionState: c.pc.iceConnectionState,
        signalingState: c.pc.signalingState,
        iceGatheringState: c.pc.iceGatheringState,
        ...c.counters,
      }));
    },
    get tileElements() { return ui.grid.querySelectorAll('.tile:not(.local)').length; },
    get frameStats() {
      /** @type {Record<string, any>} */
      const out = {};
      for (const tile of app.tiles.values()) {
        const f = tile.frames;
        out[tile.peer] = {
          ...tileView(tile),
          frames: f.frames,
          maxGapMs: Math.round(f.maxGapMs),
          longGaps: f.longGaps.map((g) => ({ ...g })),
          lastFrameAgoMs: f.lastFrameAt === null ? null : Math.round(now() - f.lastFrameAt),
          firstFrameMs: f.firstFrameAt === null || app.joinedAt === null ? null : Math.round(f.firstFrameAt - app.joinedAt),
        };
      }
      return out;
    },
    get resumes() { return app.client?.resumes ?? 0; },
    get rejoins() { return app.client?.rejoins ?? 0; },
    get errors() { return app.errors.map((e) => ({ ...e })); },
    get notice() { return ui.notice.hidden ? null : ui.noticeText.textContent; },
    get rttMs() { return app.rttMs; },
    /** Inbound audio through the SFU (packets and decoded samples), for tests and debugging. */
    async audioStats() {
      const pc = app.room?.subscriber;
      if (!pc) return { packets: 0, samples: 0 };
      let packets = 0;
      let samples = 0;
      (await pc.getStats()).forEach((/** @type {any} */ r) => {
        if (r.type === 'inbound-rtp' && r.kind === 'audio') {
          packets += r.packetsReceived ?? 0;
          samples += r.totalSamplesReceived ?? 0;
        }
      });
      return { packets, samples };
    },
    get health() { return app.client?.health() ?? null; },
    now,
  }),
});
