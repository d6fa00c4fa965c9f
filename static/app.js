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

import { isP2PSignal, P2PCall, Room, SCREEN_SOURCES, SignalingClient } from '/static/switchboard.js';

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
  preview: $('preview'),
  previewButton: /** @type {HTMLButtonElement} */ ($('preview-button')),
  previewVideo: /** @type {HTMLVideoElement} */ ($('preview-video')),
  previewOff: $('preview-off'),
  camSelect: /** @type {HTMLSelectElement} */ ($('cam-select')),
  micSelect: /** @type {HTMLSelectElement} */ ($('mic-select')),
  micLevel: /** @type {HTMLMeterElement} */ ($('mic-level')),
  stage: $('stage'),
  stageVideo: /** @type {HTMLVideoElement} */ ($('stage-video')),
  stageLabel: $('stage-label'),
  chat: $('chat'),
  chatLog: $('chat-log'),
  chatForm: /** @type {HTMLFormElement} */ ($('chat-form')),
  chatInput: /** @type {HTMLInputElement} */ ($('chat-input')),
  chatToggle: /** @type {HTMLButtonElement} */ ($('chat-toggle')),
  chatUnread: $('chat-unread'),
  share: /** @type {HTMLButtonElement} */ ($('share')),
  devices: /** @type {HTMLButtonElement} */ ($('devices')),
  devicePanel: $('device-panel'),
  callCamSelect: /** @type {HTMLSelectElement} */ ($('call-cam-select')),
  callMicSelect: /** @type {HTMLSelectElement} */ ($('call-mic-select')),
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
 * @property {HTMLElement} note  why there is no picture (camera off, muted by the host, no frames)
 * @property {HTMLElement} micState
 * @property {HTMLElement} quality
 * @property {HTMLButtonElement} playOverlay
 * @property {HTMLButtonElement} statsButton
 * @property {HTMLElement} statsList
 * @property {MediaStream | null} stream
 * @property {FrameStats} frames
 * @property {number} lastDecoded
 * @property {number} presented  frames presented (requestVideoFrameCallback), where supported
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
  /** @type {{track: {id: string, peer: string, kind: string}, reason: string}[]} tracks the SFU will not send us */
  unavailable: [],
  joinStartedAt: /** @type {number | null} */ (null),
  joinedAt: /** @type {number | null} */ (null),
  leaving: false,
  /** @type {ReturnType<typeof setTimeout> | null} */
  resumedTimer: null,
  /** @type {number | null} media round-trip time (ms) from ICE candidate-pair stats */
  rttMs: null,
  /** @type {string | null} access token (deep link `?token=`), asked for on every connect */
  token: /** @type {string | null} */ (null),
  /** @type {MediaStream | null} our screen share, while sharing */
  screen: /** @type {MediaStream | null} */ (null),
  /** @type {{peer: string, level: number}[]} the room's active speakers */
  speakers: /** @type {{peer: string, level: number}[]} */ ([]),
  /** @type {{from: string, name: string, text: string, at: number, mine: boolean, private: boolean}[]} */
  chat: /** @type {any[]} */ ([]),
  chatUnread: 0,
  /** @type {Set<string>} kinds of our tracks an operator muted */
  operatorMuted: new Set(),
  /** @type {MediaStream | null} the lobby's camera/microphone preview */
  previewStream: /** @type {MediaStream | null} */ (null),
  /** @type {(() => void) | null} stops the preview's level meter */
  stopMeter: /** @type {(() => void) | null} */ (null),
  /** @type {{audio: string | null, video: string | null}} chosen device ids */
  deviceIds: { audio: /** @type {string | null} */ (null), video: /** @type {string | null} */ (null) },
  /** @type {Map<string, {rttMs: number | null, loss: number | null, quality: string | null}>} per remote peer */
  quality: new Map(),
  /** Remote media refused to autoplay: waiting for a click. */
  autoplayBlocked: false,
  deviceSwitches: 0,
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
  const quality = qualityOf(app.rttMs, null);
  if (quality) ui.badge.dataset.quality = quality;
  else delete ui.badge.dataset.quality;
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
/** The session of this tab, kept across a reload (it stays resumable this long). */
const SESSION_KEY = 'switchboard.session';
const RELOAD_LINGER_MS = 5000;

/**
 * The session the page held before a reload of this tab, if it is for `room` and recent.
 * Read once: a second reload must not resume a session the first one already took over.
 * @param {string} room
 * @returns {{session: string, resumeToken: string, lastSeq: number, name: string} | null}
 */
function takeSavedSession(room) {
  const raw = sessionStorage.getItem(SESSION_KEY);
  sessionStorage.removeItem(SESSION_KEY);
  try {
    const saved = raw ? JSON.parse(raw) : null;
    if (saved && saved.room === room && Date.now() - saved.at < RELOAD_LINGER_MS) return saved;
  } catch {
    // not ours
  }
  return null;
}

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
    note: /** @type {HTMLElement} */ (el.querySelector('.tile-note')),
    micState: /** @type {HTMLElement} */ (el.querySelector('.mic-state')),
    quality: /** @type {HTMLElement} */ (el.querySelector('.quality')),
    playOverlay: /** @type {HTMLButtonElement} */ (el.querySelector('.play-overlay')),
    statsButton, statsList, stream: null,
    frames: { frames: 0, firstFrameAt: null, lastFrameAt: null, maxGapMs: 0, longGaps: [] },
    lastDecoded: 0, presented: 0, lastTime: 0, rates: new Map(),
  };
  // Frames as presented: Firefox's getVideoPlaybackQuality().totalVideoFrames stays 0 for live
  // streams, so without this its counter only saw currentTime move (one frame per sample).
  const anyVideo = /** @type {any} */ (video);
  if (typeof anyVideo.requestVideoFrameCallback === 'function') {
    /** @param {number} _now @param {{presentedFrames: number}} meta */
    const onFrame = (_now, meta) => {
      tile.presented = meta.presentedFrames;
      anyVideo.requestVideoFrameCallback(onFrame);
    };
    anyVideo.requestVideoFrameCallback(onFrame);
  }
  statsButton.addEventListener('click', () => {
    const open = statsButton.getAttribute('aria-expanded') !== 'true';
    statsButton.setAttribute('aria-expanded', String(open));
    statsList.hidden = !open;
    if (open) refreshStats(tile);
  });
  video.addEventListener('loadedmetadata', () => playVideo(tile.video));
  tile.playOverlay.addEventListener('click', () => unblockAutoplay());
  return tile;
}

/**
 * Play a media element; a browser that refuses without a user gesture (autoplay policy, a
 * receive-only participant who never granted camera access) gets a "click to start" overlay
 * instead of a silent black tile.
 * @param {HTMLVideoElement} video
 */
function playVideo(video) {
  if (!video.srcObject) return;
  video.play().catch((/** @type {unknown} */ error) => {
    if (error instanceof DOMException && error.name === 'NotAllowedError') {
      app.autoplayBlocked = true;
      logState('autoplay-blocked');
      renderAllTiles();
    }
  });
}

/**
 * A receive-only participant never captured media, so the browser may refuse to play sound
 * until a click. Whether a play() is refused depends on which remote track came first (a
 * video-only stream may start, an audible one not): ask the browser up front instead — an
 * AudioContext created without a user gesture stays "suspended" exactly when autoplay with
 * sound is not allowed.
 */
function probeAutoplay() {
  if (app.local || typeof AudioContext === 'undefined') return;
  try {
    const context = new AudioContext();
    if (context.state === 'suspended') {
      app.autoplayBlocked = true;
      logState('autoplay-blocked');
      renderAllTiles();
    }
    context.close().catch(() => {});
  } catch {
    // no Web Audio: play() refusals still show the overlay
  }
}

function unblockAutoplay() {
  app.autoplayBlocked = false;
  for (const tile of app.tiles.values()) tile.video.play().catch(() => {});
  if (ui.stageVideo.srcObject) ui.stageVideo.play().catch(() => {});
  logState('autoplay-unblocked');
  renderAllTiles();
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
  tile = createTile(peer, distinctName(name ?? app.client?.peers.get(peer) ?? ''), false);
  app.tiles.set(peer, tile);
  ui.grid.append(tile.el);
  layoutGrid();
  renderTile(tile);
  return tile;
}

/**
 * Two people called "Alex" must not look like one: the second gets "Alex (2)", and so on.
 * @param {string} name
 */
function distinctName(name) {
  const base = name || 'Guest';
  const taken = new Set([...app.tiles.values()].map((t) => t.name));
  if (app.localTile) taken.add(app.localTile.name);
  if (!taken.has(base)) return base;
  for (let n = 2; ; n += 1) if (!taken.has(`${base} (${n})`)) return `${base} (${n})`;
}

/**
 * What we know about a peer's camera and microphone (SFU mode): the published TrackInfo.
 * @param {string} peer
 */
function peerTracks(peer) {
  /** @type {{audio: import('/static/switchboard.js').TrackInfo | null, video: import('/static/switchboard.js').TrackInfo | null}} */
  const out = { audio: null, video: null };
  for (const info of app.room?.published.values() ?? []) {
    if (info.peer !== peer || SCREEN_SOURCES.includes(info.source ?? '')) continue;
    if (info.kind === 'audio' || info.kind === 'video') out[info.kind] = info;
  }
  return out;
}

const CAM_NOTE = /** @type {Record<string, string>} */ ({
  off: 'Camera off',
  'operator-off': 'Video stopped by the host',
  none: 'No camera',
  stalled: 'Video paused: no frames are arriving',
  connecting: 'Connecting video…',
});

/**
 * The tile says why it shows no picture (camera off, stopped by the host, no frames, no
 * camera at all) and whether the microphone is muted, by the person or by the host.
 * @param {Tile} tile
 */
function renderTile(tile) {
  let cam = 'none';
  let mic = 'none';
  const videoTrack = tile.stream?.getVideoTracks()[0] ?? null;
  if (tile.local) {
    const v = app.local?.getVideoTracks()[0];
    const a = app.local?.getAudioTracks()[0];
    if (v) cam = app.operatorMuted.has('video') ? 'operator-off' : v.enabled ? 'on' : 'off';
    if (a) mic = app.operatorMuted.has('audio') ? 'operator-muted' : a.enabled ? 'on' : 'muted';
  } else {
    const info = peerTracks(tile.peer);
    if (info.video) cam = info.video.operator_muted ? 'operator-off' : info.video.muted ? 'off' : 'on';
    else if (videoTrack) cam = 'on'; // a direct call: no track state, the track itself tells
    if (info.audio) mic = info.audio.operator_muted ? 'operator-muted' : info.audio.muted ? 'muted' : 'on';
    else if (tile.stream?.getAudioTracks().length) mic = 'on';
    if (cam === 'on' && !videoTrack) cam = 'connecting';
    else if (cam === 'on' && videoTrack && videoTrack.muted) cam = 'stalled';
  }
  tile.el.dataset.cam = cam;
  tile.el.dataset.mic = mic;
  tile.el.classList.toggle('has-video', cam === 'on' && !!videoTrack);
  tile.note.textContent = cam === 'on' ? '' : CAM_NOTE[cam] ?? '';
  const micLabel = mic === 'operator-muted' ? 'Muted by the host' : mic === 'muted' ? 'Microphone muted' : '';
  tile.micState.setAttribute('aria-label', micLabel);
  tile.micState.title = micLabel;
  tile.el.classList.toggle('speaking', app.speakers.some((s) => s.peer === (tile.local ? app.client?.peerId : tile.peer)));
  tile.playOverlay.hidden = tile.local || !app.autoplayBlocked || !tile.stream;
  const q = tile.local ? null : app.quality.get(tile.peer);
  if (q?.quality) {
    tile.quality.dataset.quality = q.quality;
    const label = `Connection ${q.quality}${q.rttMs !== null ? `, RTT ${Math.round(q.rttMs)} ms` : ''}${q.loss !== null ? `, loss ${q.loss.toFixed(1)} %` : ''}`;
    tile.quality.setAttribute('aria-label', label);
    tile.quality.title = label;
  } else {
    delete tile.quality.dataset.quality;
  }
}

function renderAllTiles() {
  if (app.localTile) renderTile(app.localTile);
  for (const tile of app.tiles.values()) renderTile(tile);
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
  // A new MediaStream object per change: the element then reliably picks up added tracks.
  const fresh = tracks.length ? new MediaStream(tracks) : null;
  tile.stream = fresh;
  tile.video.srcObject = fresh;
  for (const track of tracks) {
    // A remote track is "muted" while no media arrives: the tile then says so.
    track.onmute = track.onunmute = () => renderTile(tile);
  }
  if (fresh) playVideo(tile.video);
  renderTile(tile);
}

/** Decoded-frame bookkeeping of every remote video, for the stats and the test hook. */
function sampleFrames() {
  const t = now();
  for (const tile of app.tiles.values()) {
    const v = tile.video;
    const quality = typeof v.getVideoPlaybackQuality === 'function' ? v.getVideoPlaybackQuality().totalVideoFrames : 0;
    const decoded = Math.max(quality, tile.presented);
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

// -- simulcast quality -----------------------------------------------------------------------------

/**
 * The camera layer a tile can show (`set-subscription`): by its width in device pixels, and
 * nothing while the page is hidden. Screen shares always get their full quality.
 * @param {Tile} tile
 */
function wantedQuality(tile) {
  if (document.visibilityState === 'hidden') return 'off';
  const width = tile.video.clientWidth * (window.devicePixelRatio || 1);
  if (!width) return 'high'; // not laid out yet: the next resize decides
  return width >= 480 ? 'high' : width >= 240 ? 'medium' : 'low';
}

function updateQualities() {
  const room = app.room;
  if (!room) return;
  for (const tile of app.tiles.values()) {
    for (const r of room.tracksOf(tile.peer)) {
      if (r.kind === 'video' && !SCREEN_SOURCES.includes(r.source)) room.setSubscription(r.trackId, wantedQuality(tile));
    }
  }
}

new ResizeObserver(() => updateQualities()).observe(ui.grid);
document.addEventListener('visibilitychange', () => updateQualities());

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
        // Simulcast: the layer the SFU forwards, and the one this page asked for.
        for (const r of app.room ? app.room.tracksOf(tile.peer) : []) {
          const layer = r.kind === 'video' ? app.room?.layers.get(r.trackId) : undefined;
          if (layer) rows.push(['Layer', `${layer.quality} (asked ${layer.requested})`]);
        }
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
  // The publisher's path first; a receive-only participant has only the subscriber's.
  if (app.room?.subscriber) pcs.unshift(app.room.subscriber);
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
  const preview = app.previewStream;
  app.previewStream = null;
  if (preview && (!wantVideo || preview.getVideoTracks().length) && (!wantAudio || preview.getAudioTracks().length)) {
    // The lobby's preview, with the devices chosen there.
    for (const track of preview.getTracks()) {
      if ((track.kind === 'video' && !wantVideo) || (track.kind === 'audio' && !wantAudio)) {
        preview.removeTrack(track);
        track.stop();
      }
    }
    return preview;
  }
  for (const track of preview?.getTracks() ?? []) track.stop();
  try {
    const stream = await navigator.mediaDevices.getUserMedia(constraints(wantVideo, wantAudio));
    rememberDevices(stream);
    return stream;
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
  if (app.localTile) renderTile(app.localTile);
}

/** @param {'audio' | 'video'} kind */
function toggle(kind) {
  const tracks = kind === 'audio' ? app.local?.getAudioTracks() : app.local?.getVideoTracks();
  if (!tracks?.length) return;
  const enable = tracks.every((t) => !t.enabled);
  // Through the Room the others are told (track-state); in a direct call the track alone.
  for (const t of tracks) {
    if (app.room) app.room.setMuted(t, !enable);
    else t.enabled = enable;
  }
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
  // Simulcast (three camera layers, one chosen per viewer) is opt-in on this page for now
  // (`?simulcast=1`): a Firefox viewer of a simulcast Chromium camera decoded as few as 35 % of
  // the frames in one test run (layer switches as Chromium's estimate moves); see docs/sfu.md.
  const room = new Room(client, { simulcast: params.get('simulcast') === '1' });
  app.room = room;
  room.on('track', (/** @type {import('/static/switchboard.js').RemoteTrack} */ r) => {
    if (SCREEN_SOURCES.includes(r.source)) showStage(r.peer, r.stream);
    else setTileStream(ensureTile(r.peer), r.stream);
    updateQualities();
  });
  room.on('track-layer', () => {
    for (const tile of app.tiles.values()) refreshStats(tile);
  });
  room.on('track-removed', (/** @type {import('/static/switchboard.js').RemoteTrack} */ r) => {
    if (SCREEN_SOURCES.includes(r.source)) {
      if (!r.stream.getVideoTracks().length) hideStage(r.peer);
      return;
    }
    const tile = app.tiles.get(r.peer);
    if (tile) setTileStream(tile, r.stream);
  });
  room.on('track-published', () => renderAllTiles());
  room.on('track-unpublished', () => renderAllTiles());
  room.on('track-state', ({ track }) => {
    renderAllTiles();
    const name = app.tiles.get(track.peer)?.name ?? 'Someone';
    if (track.kind === 'audio' && !SCREEN_SOURCES.includes(track.source ?? '')) announce(`${name} ${track.muted ? 'muted' : 'unmuted'} their microphone`);
  });
  room.on('operator-muted', ({ track, muted }) => {
    const kind = track.kind === 'audio' ? 'audio' : 'video';
    if (muted) app.operatorMuted.add(kind);
    else app.operatorMuted.delete(kind);
    const what = kind === 'audio' ? 'microphone' : 'camera';
    if (muted) {
      showNotice(`The host muted your ${what}: the others cannot ${kind === 'audio' ? 'hear' : 'see'} you until the host unmutes it.`, { kind: 'warning' });
    } else {
      announce(`The host unmuted your ${what}.`);
      if (ui.notice.dataset.kind === 'warning' && ui.noticeText.textContent?.startsWith('The host muted')) hideNotice();
    }
    renderAllTiles();
  });
  room.on('active-speakers', ({ speakers }) => {
    app.speakers = speakers;
    renderAllTiles();
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
  room.on('track-unavailable', (/** @type {any} */ e) => {
    app.unavailable.push(e);
    showNotice(`Cannot receive a ${e.track.kind} track of ${e.track.peer} (${e.reason === 'codec' ? 'unsupported codec' : 'refused by this browser'}).`, { kind: 'warning' });
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

// -- screen share ---------------------------------------------------------------------------------

/** @type {string | null} whose screen the stage shows ('local' for our own) */
let stagePeer = null;

/**
 * @param {string} peer
 * @param {MediaStream} stream
 */
function showStage(peer, stream) {
  stagePeer = peer;
  ui.stage.hidden = false;
  ui.stageVideo.srcObject = stream;
  ui.stage.dataset.peer = peer;
  const name = peer === 'local' ? 'You are' : `${app.tiles.get(peer)?.name ?? 'Someone'} is`;
  ui.stageLabel.textContent = `${name} sharing the screen`;
  playVideo(ui.stageVideo);
  announce(ui.stageLabel.textContent);
}

/** @param {string} peer */
function hideStage(peer) {
  if (stagePeer !== peer) return;
  stagePeer = null;
  ui.stage.hidden = true;
  ui.stageVideo.srcObject = null;
  delete ui.stage.dataset.peer;
}

async function toggleShare() {
  if (app.screen) {
    await stopShare();
    return;
  }
  const room = app.room;
  if (!room || !navigator.mediaDevices?.getDisplayMedia) {
    showNotice('Screen sharing needs the media server (it is not available in direct calls) and a browser that can capture the screen.', { kind: 'warning' });
    return;
  }
  /** @type {MediaStream} */
  let stream;
  try {
    stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15 } }, audio: false });
  } catch (error) {
    const name = error instanceof DOMException ? error.name : '';
    if (name !== 'NotAllowedError' && name !== 'AbortError') showNotice(`Could not share the screen (${name || 'error'}).`, { kind: 'warning' });
    return;
  }
  app.screen = stream;
  for (const track of stream.getTracks()) track.addEventListener('ended', () => stopShare());
  syncShare();
  showStage('local', stream);
  try {
    await room.publish(stream, stream.getTracks(), { screen: true });
  } catch (/** @type {any} */ error) {
    app.errors.push({ t: now(), code: error?.code ?? 'share', message: error?.message ?? String(error) });
    showNotice(`Screen sharing failed: ${error?.message ?? error}`, { kind: 'warning' });
    await stopShare();
  }
}

async function stopShare() {
  const stream = app.screen;
  if (!stream) return;
  app.screen = null;
  syncShare();
  hideStage('local');
  for (const track of stream.getTracks()) {
    track.stop();
    await app.room?.unpublish(track).catch(() => {});
  }
}

function syncShare() {
  const on = !!app.screen;
  ui.share.setAttribute('aria-pressed', String(on));
  /** @type {HTMLElement} */ (ui.share.querySelector('.label')).textContent = on ? 'Stop sharing' : 'Share screen';
}

// -- chat -----------------------------------------------------------------------------------------

const CHAT_TOPIC = 'chat';
const CHAT_MAX = 500;

/**
 * @param {{from: string, name: string, text: string, at: number, mine: boolean, private: boolean}} entry
 */
function appendChat(entry) {
  app.chat.push(entry);
  if (app.chat.length > CHAT_MAX) {
    app.chat.shift();
    ui.chatLog.firstElementChild?.remove();
  }
  const li = document.createElement('li');
  li.classList.toggle('mine', entry.mine);
  const who = document.createElement('span');
  who.className = 'who';
  who.textContent = entry.mine ? 'You' : entry.name;
  const text = document.createElement('span');
  text.className = 'text';
  text.textContent = entry.text;
  const time = document.createElement('time');
  time.textContent = new Date(entry.at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  li.append(who, text, time);
  ui.chatLog.append(li);
  li.scrollIntoView({ block: 'end' });
  if (!entry.mine && ui.chat.hidden) {
    app.chatUnread += 1;
    ui.chatUnread.hidden = false;
    ui.chatUnread.textContent = String(app.chatUnread);
    ui.chatUnread.setAttribute('aria-label', `${app.chatUnread} unread`);
  }
}

/** @param {{from: string, topic: string, payload: any, to: string[] | null}} message */
function onData(message) {
  if (message.topic !== CHAT_TOPIC) return;
  const text = typeof message.payload?.text === 'string' ? message.payload.text.slice(0, 2000) : null;
  if (text === null) return;
  const name = app.tiles.get(message.from)?.name ?? app.client?.peers.get(message.from) ?? 'Someone';
  appendChat({ from: message.from, name, text, at: Date.now(), mine: false, private: message.to !== null });
}

/** Our recent chat messages by cseq, so a refusal (rate limit, size) can be shown on them. */
const sentChat = /** @type {Map<number, HTMLElement>} */ (new Map());

function sendChat() {
  const text = ui.chatInput.value.trim();
  const client = app.client;
  if (!text || !client || client.state === 'closed') return;
  /** @type {number} */
  let cseq;
  try {
    cseq = client.sendData(CHAT_TOPIC, { text });
  } catch (error) {
    showNotice(`Message not sent: ${error instanceof Error ? error.message : error}`, { kind: 'warning' });
    return;
  }
  ui.chatInput.value = '';
  appendChat({ from: client.peerId ?? '', name: 'You', text, at: Date.now(), mine: true, private: false });
  const li = /** @type {HTMLElement | null} */ (ui.chatLog.lastElementChild);
  if (li) sentChat.set(cseq, li);
  if (sentChat.size > 100) sentChat.delete(/** @type {number} */ (sentChat.keys().next().value));
}

/**
 * The server refused one of our chat messages: say so on the message itself.
 * @param {string} code
 * @param {number | null} cseq
 */
function chatRefused(code, cseq) {
  const li = cseq === null ? undefined : sentChat.get(cseq);
  if (!li) return false;
  sentChat.delete(/** @type {number} */ (cseq));
  li.classList.add('failed');
  const why = document.createElement('small');
  why.className = 'failed-why';
  why.textContent = code === 'rate-limited' ? ' not sent: too many messages, wait a moment' : code === 'too-large' ? ' not sent: too long' : ` not sent (${code})`;
  li.append(why);
  return true;
}

function toggleChat() {
  const open = ui.chat.hidden;
  ui.chat.hidden = !open;
  ui.chatToggle.setAttribute('aria-expanded', String(open));
  if (open) {
    app.chatUnread = 0;
    ui.chatUnread.hidden = true;
    ui.chatInput.focus();
  }
}

// -- devices --------------------------------------------------------------------------------------

/**
 * Fill a device select with the inputs of `kind` (labels appear once access was granted).
 * @param {HTMLSelectElement} select
 * @param {'audioinput' | 'videoinput'} kind
 * @param {string | null} current
 */
async function fillDevices(select, kind, current) {
  const devices = (await navigator.mediaDevices?.enumerateDevices?.()) ?? [];
  const inputs = devices.filter((d) => d.kind === kind);
  select.replaceChildren(...inputs.map((d, i) => {
    const option = document.createElement('option');
    option.value = d.deviceId;
    option.textContent = d.label || `${kind === 'videoinput' ? 'Camera' : 'Microphone'} ${i + 1}`;
    option.selected = d.deviceId === current;
    return option;
  }));
  select.disabled = inputs.length === 0;
}

/**
 * A level meter on a stream's microphone (Web Audio analyser); returns its stop function.
 * @param {MediaStream} stream
 * @param {HTMLMeterElement} meter
 */
function startMeter(stream, meter) {
  const track = stream.getAudioTracks()[0];
  if (!track || typeof AudioContext === 'undefined') return () => {};
  const context = new AudioContext();
  const analyser = context.createAnalyser();
  analyser.fftSize = 512;
  context.createMediaStreamSource(new MediaStream([track])).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  let running = true;
  const tick = () => {
    if (!running) return;
    analyser.getFloatTimeDomainData(samples);
    let peak = 0;
    for (const v of samples) peak = Math.max(peak, Math.abs(v));
    meter.value = Math.min(1, peak);
    meter.dataset.level = peak.toFixed(3);
    setTimeout(tick, 100);
  };
  tick();
  return () => {
    running = false;
    context.close().catch(() => {});
    meter.value = 0;
  };
}

function stopPreview() {
  app.stopMeter?.();
  app.stopMeter = null;
  ui.previewVideo.srcObject = null;
}

/** The pre-join preview: camera picture, device choice, microphone level. */
async function startPreview() {
  ui.preview.hidden = false;
  ui.previewButton.hidden = true;
  stopPreview();
  for (const track of app.previewStream?.getTracks() ?? []) track.stop();
  app.previewStream = null;
  const wantVideo = ui.wantCam.checked;
  const wantAudio = ui.wantMic.checked;
  ui.previewOff.hidden = wantVideo;
  if (!wantVideo && !wantAudio) return;
  try {
    app.previewStream = await navigator.mediaDevices.getUserMedia(constraints(wantVideo, wantAudio));
  } catch (error) {
    const name = error instanceof DOMException ? error.name : 'error';
    ui.previewOff.hidden = false;
    ui.previewOff.textContent = name === 'NotAllowedError' ? 'Camera and microphone access denied' : `No preview (${name})`;
    return;
  }
  rememberDevices(app.previewStream);
  ui.previewVideo.srcObject = app.previewStream;
  ui.previewVideo.play().catch(() => {});
  app.stopMeter = startMeter(app.previewStream, ui.micLevel);
  await Promise.all([
    fillDevices(ui.camSelect, 'videoinput', app.deviceIds.video),
    fillDevices(ui.micSelect, 'audioinput', app.deviceIds.audio),
  ]);
}

/**
 * @param {boolean} video
 * @param {boolean} audio
 * @returns {MediaStreamConstraints}
 */
function constraints(video, audio) {
  const ids = app.deviceIds;
  return {
    video: video ? { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 }, ...(ids.video ? { deviceId: { exact: ids.video } } : {}) } : false,
    audio: audio ? (ids.audio ? { deviceId: { exact: ids.audio } } : true) : false,
  };
}

/** @param {MediaStream} stream */
function rememberDevices(stream) {
  for (const track of stream.getTracks()) {
    const id = track.getSettings?.().deviceId;
    if (id) app.deviceIds[track.kind === 'audio' ? 'audio' : 'video'] = id;
  }
}

/**
 * Switch the camera or microphone during the call: a new track from the chosen device replaces
 * the old one on its sender (`replaceTrack`, no renegotiation); mute state carries over.
 * @param {'audio' | 'video'} kind
 * @param {string} deviceId
 */
async function switchDevice(kind, deviceId) {
  const local = app.local;
  const old = kind === 'audio' ? local?.getAudioTracks()[0] : local?.getVideoTracks()[0];
  if (!local || !old || old.getSettings?.().deviceId === deviceId) return;
  app.deviceIds[kind] = deviceId;
  /** @type {MediaStreamTrack} */
  let fresh;
  try {
    const stream = await navigator.mediaDevices.getUserMedia(kind === 'audio' ? constraints(false, true) : constraints(true, false));
    fresh = kind === 'audio' ? stream.getAudioTracks()[0] : stream.getVideoTracks()[0];
  } catch (error) {
    showNotice(`Could not switch to that ${kind === 'audio' ? 'microphone' : 'camera'} (${error instanceof DOMException ? error.name : error}).`, { kind: 'warning' });
    return;
  }
  fresh.enabled = old.enabled;
  if (app.room) await app.room.replaceTrack(old, fresh);
  for (const call of app.calls.values()) {
    const sender = call.pc.getSenders().find((x) => x.track === old);
    if (sender) await sender.replaceTrack(fresh);
  }
  local.removeTrack(old);
  local.addTrack(fresh);
  old.stop();
  app.deviceSwitches += 1;
  logState(`device:${kind}`, deviceId);
  if (app.localTile) setTileStream(app.localTile, local);
  syncControls();
  announce(`Switched ${kind === 'audio' ? 'microphone' : 'camera'}`);
}

async function toggleDevicePanel() {
  const open = ui.devicePanel.hidden;
  ui.devicePanel.hidden = !open;
  ui.devices.setAttribute('aria-expanded', String(open));
  if (open) {
    const v = app.local?.getVideoTracks()[0]?.getSettings?.().deviceId ?? app.deviceIds.video;
    const a = app.local?.getAudioTracks()[0]?.getSettings?.().deviceId ?? app.deviceIds.audio;
    await Promise.all([fillDevices(ui.callCamSelect, 'videoinput', v ?? null), fillDevices(ui.callMicSelect, 'audioinput', a ?? null)]);
    ui.callCamSelect.disabled ||= !app.local?.getVideoTracks().length;
    ui.callMicSelect.disabled ||= !app.local?.getAudioTracks().length;
  }
}

// -- connection quality ---------------------------------------------------------------------------

/**
 * good / fair / poor from RTT and loss: never "good" past 1 s of RTT, whatever the loss.
 * @param {number | null} rttMs
 * @param {number | null} lossPct
 */
function qualityOf(rttMs, lossPct) {
  if (rttMs === null && lossPct === null) return null;
  const rtt = rttMs ?? 0;
  const loss = lossPct ?? 0;
  if (rtt > 1000 || loss > 10) return 'poor';
  if (rtt > 300 || loss > 3) return 'fair';
  return 'good';
}

/** Per-tile quality: loss of what we receive from that peer, RTT of our media path to the SFU. */
async function refreshQuality() {
  const room = app.room;
  for (const tile of app.tiles.values()) {
    let lost = 0;
    let received = 0;
    const sources = statsSources(tile);
    for (const source of sources) {
      try {
        (await source.getStats()).forEach((/** @type {any} */ s) => {
          if (s.type !== 'inbound-rtp') return;
          lost += Math.max(0, s.packetsLost ?? 0);
          received += s.packetsReceived ?? 0;
        });
      } catch {
        // a receiver that went away
      }
    }
    const previous = app.quality.get(tile.peer);
    const loss = received + lost > 0 ? (100 * lost) / (received + lost) : null;
    const rtt = app.rttMs;
    const quality = sources.length || room === null ? qualityOf(rtt, loss) : null;
    if (!previous || previous.quality !== quality || previous.rttMs !== rtt) {
      app.quality.set(tile.peer, { rttMs: rtt, loss, quality });
      renderTile(tile);
    }
  }
}

// -- the session ----------------------------------------------------------------------------------

/** @param {SignalingClient} client */
function wireClient(client) {
  client.on('state', ({ state }) => {
    logState(state);
    if (state === 'reconnecting') setBadge('reconnecting');
    else if (state === 'connecting') setBadge('connecting');
  });
  client.on('joined', ({ peers, restored }) => {
    app.joinedAt = now();
    if (restored) logState('restored');
    probeAutoplay();
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
  client.on('data', onData);
  client.on('error', ({ code, message, cseq }) => {
    app.errors.push({ t: now(), code, message });
    chatRefused(code, cseq);
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
    case 4006: {
      const why = /kicked: (.*)$/.exec(reason)?.[1]?.trim();
      return why && why !== 'kicked' ? `You were removed from the room: ${why}.` : 'You were removed from the room.';
    }
    case 4010: return 'The connection was closed after a protocol error. Reload the page to join again.';
    case 4012: return 'This session was taken over by another tab or device.';
    case 1000: return reason.includes('room full') ? 'The room is full.' : 'The session ended.';
    default: return `The connection to the server ended (${code ?? 'network'}: ${reason}).`;
  }
}

function teardown() {
  if (app.screen) {
    for (const track of app.screen.getTracks()) track.stop();
    app.screen = null;
    syncShare();
  }
  hideStage(stagePeer ?? '');
  app.speakers = [];
  app.operatorMuted.clear();
  app.quality.clear();
  app.autoplayBlocked = false;
  ui.devicePanel.hidden = true;
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

/** @param {{session: string, resumeToken: string, lastSeq: number} | null} [restore] a session before a reload */
async function join(restore = null) {
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

  stopPreview();
  ui.preview.hidden = true;
  ui.previewButton.hidden = false;
  app.chat = [];
  ui.chatLog.replaceChildren();
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

  // ?codecs=off: announce no receive codecs (an old client; the SFU then offers everything).
  const codecs = params.get('codecs') === 'off' ? { codecs: null } : {};
  const client = new SignalingClient({
    url: wsUrl(),
    room: roomName,
    name,
    subscribe: app.requestedMode !== 'p2p',
    // Asked on every connection attempt: a resume presents the token this tab holds now.
    tokenProvider: () => app.token,
    restore,
    ...codecs,
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
  sessionStorage.removeItem(SESSION_KEY);
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
ui.share.addEventListener('click', () => toggleShare());
ui.chatToggle.addEventListener('click', () => toggleChat());
ui.chatForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  sendChat();
});
ui.devices.addEventListener('click', () => toggleDevicePanel());
ui.callCamSelect.addEventListener('change', () => switchDevice('video', ui.callCamSelect.value));
ui.callMicSelect.addEventListener('change', () => switchDevice('audio', ui.callMicSelect.value));
ui.previewButton.addEventListener('click', () => startPreview());
ui.camSelect.addEventListener('change', () => {
  app.deviceIds.video = ui.camSelect.value;
  startPreview();
});
ui.micSelect.addEventListener('change', () => {
  app.deviceIds.audio = ui.micSelect.value;
  startPreview();
});
ui.wantCam.addEventListener('change', () => {
  if (!ui.preview.hidden) startPreview();
});
ui.wantMic.addEventListener('change', () => {
  if (!ui.preview.hidden) startPreview();
});
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
  // A reload or a closed tab, we cannot tell which: keep what a reload needs to resume the
  // session, and leave with a short linger. A reload comes back within it (same peer id, media
  // redone); a closed tab is reported as left when it runs out, instead of a 20 s grace period.
  const client = app.client;
  if (client && client.state === 'connected') {
    app.leaving = true;
    const snapshot = client.snapshot();
    if (snapshot) sessionStorage.setItem(SESSION_KEY, JSON.stringify({ ...snapshot, room: client.room, name: client.name, at: Date.now() }));
    client.leave({ lingerMs: RELOAD_LINGER_MS });
  }
});

setInterval(sampleFrames, 100);
setInterval(() => {
  refreshRtt().finally(() => {
    updateBadgeDetail();
    refreshQuality();
  });
  for (const tile of app.tiles.values()) if (!tile.statsList.hidden) refreshStats(tile);
}, 1000);

app.token = initialToken();
ui.room.value = params.get('room') ?? '';
ui.name.value = params.get('name') ?? '';
if (params.get('cam') === '0') ui.wantCam.checked = false;
if (params.get('mic') === '0') ui.wantMic.checked = false;
const saved = ui.room.value ? takeSavedSession(ui.room.value) : null;
if (saved) {
  // Reloaded mid-call: resume the session instead of landing in the lobby.
  ui.name.value = saved.name ?? ui.name.value;
  join(saved);
} else if (params.get('autojoin') === '1' && ui.room.value) join();
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
    cam: tile.el.dataset.cam ?? null,
    mic: tile.el.dataset.mic ?? null,
    note: tile.note.textContent,
    speaking: tile.el.classList.contains('speaking'),
    quality: tile.quality.dataset.quality ?? null,
    playOverlay: !tile.playOverlay.hidden,
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
    get restored() { return app.stateLog.some((e) => e.state === 'restored'); },
    get rejoins() { return app.client?.rejoins ?? 0; },
    get errors() { return app.errors.map((e) => ({ ...e })); },
    get unavailable() { return app.unavailable.map((e) => ({ ...e })); },
    get notice() { return ui.notice.hidden ? null : ui.noticeText.textContent; },
    get rttMs() { return app.rttMs; },
    /** Video frames our publisher connection sent so far (0 without one); a simulcast track
     * counts its busiest layer (a subscriber receives one layer, never their sum). */
    async framesSent() {
      const pc = app.room?.publisher;
      if (!pc) return 0;
      /** @type {Map<string, number>} media source → frames of its busiest encoding */
      const bySource = new Map();
      (await pc.getStats()).forEach((s) => {
        if (s.type !== 'outbound-rtp' || s.kind !== 'video') return;
        const key = s.mediaSourceId ?? s.id;
        bySource.set(key, Math.max(bySource.get(key) ?? 0, s.framesSent ?? 0));
      });
      let sent = 0;
      for (const frames of bySource.values()) sent += frames;
      return sent;
    },
    /** Our publisher's simulcast encodings by rid: `{active, bytes, width}` (outbound-rtp;
     * `active` false once dynacast paused the layer). */
    async sentEncodings() {
      const pc = app.room?.publisher;
      /** @type {Record<string, {active: boolean, bytes: number, width: number}>} */
      const out = {};
      if (!pc) return out;
      (await pc.getStats()).forEach((s) => {
        if (s.type === 'outbound-rtp' && s.kind === 'video' && s.rid) {
          out[s.rid] = { active: s.active, bytes: s.bytesSent ?? 0, width: s.frameWidth ?? 0 };
        }
      });
      return out;
    },
    /** Video frames decoded on the subscriber connection so far (every remote video). */
    async framesDecoded() {
      const pc = app.room?.subscriber;
      if (!pc) return 0;
      let decoded = 0;
      (await pc.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') decoded += s.framesDecoded ?? 0;
      });
      return decoded;
    },
    /** Inbound audio through the SFU (packets and decoded samples), for tests and debugging. */
    async audioStats() {
      const pc = app.room?.subscriber;
      if (!pc) return { packets: 0, samples: 0, level: 0, videoPackets: 0, framesDecoded: 0, audioLost: 0, concealed: 0, videoLost: 0, framesReceived: 0 };
      let packets = 0;
      let samples = 0;
      let level = 0;
      let videoPackets = 0;
      let framesDecoded = 0;
      // Also what did not make it: lost packets, concealed samples, frames received undecoded.
      let audioLost = 0;
      let concealed = 0;
      let videoLost = 0;
      let framesReceived = 0;
      (await pc.getStats()).forEach((/** @type {any} */ r) => {
        if (r.type === 'inbound-rtp' && r.kind === 'audio') {
          packets += r.packetsReceived ?? 0;
          samples += r.totalSamplesReceived ?? 0;
          level = Math.max(level, r.audioLevel ?? 0);
          audioLost += r.packetsLost ?? 0;
          concealed += r.concealedSamples ?? 0;
        } else if (r.type === 'inbound-rtp' && r.kind === 'video') {
          videoPackets += r.packetsReceived ?? 0;
          framesDecoded += r.framesDecoded ?? 0;
          videoLost += r.packetsLost ?? 0;
          framesReceived += r.framesReceived ?? 0;
        }
      });
      return { packets, samples, level, videoPackets, framesDecoded, audioLost, concealed, videoLost, framesReceived };
    },
    /** Outbound media on the publisher connection (per kind), for tests and debugging. */
    async publisherStats() {
      const pc = app.room?.publisher;
      /** @type {Record<string, any>} */
      const out = {};
      if (!pc) return out;
      (await pc.getStats()).forEach((/** @type {any} */ r) => {
        if (r.type === 'outbound-rtp') {
          out[r.kind] = { packetsSent: r.packetsSent ?? 0, framesEncoded: r.framesEncoded ?? null, limitation: r.qualityLimitationReason ?? null };
        }
      });
      out.senders = pc.getSenders().map((x) => ({ kind: x.track?.kind ?? null, readyState: x.track?.readyState ?? null, muted: x.track?.muted ?? null }));
      return out;
    },
    get health() { return app.client?.health() ?? null; },
    get local() { return app.localTile ? tileView(app.localTile) : null; },
    get speakers() { return app.speakers.map((x) => ({ ...x })); },
    get chat() { return app.chat.map((m) => ({ from: m.from, name: m.name, text: m.text, mine: m.mine, private: m.private })); },
    get stage() {
      return { visible: !ui.stage.hidden, peer: ui.stage.dataset.peer ?? null, videoWidth: ui.stageVideo.videoWidth, label: ui.stageLabel.textContent };
    },
    get sharing() { return !!app.screen; },
    get autoplayBlocked() { return app.autoplayBlocked; },
    get deviceSwitches() { return app.deviceSwitches; },
    get localTracks() {
      return (app.local?.getTracks() ?? []).map((t) => ({ kind: t.kind, id: t.id, enabled: t.enabled, deviceId: t.getSettings?.().deviceId ?? null, label: t.label }));
    },
    get micLevel() { return Number(ui.micLevel.dataset.level ?? 0); },
    get badgeQuality() { return ui.badge.dataset.quality ?? null; },
    now,
  }),
});
