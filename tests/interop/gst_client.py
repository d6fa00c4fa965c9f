"""A GStreamer webrtcbin media client for the interop tests (run by Debian's /usr/bin/python3).

Only Debian's interpreter can import ``gi``, and it has no WebSocket client, so signaling goes
through the test process: this script reads Switchboard server messages (``publish-answer``,
``subscriber-offer``, ``error``, ...) as JSON lines on stdin and writes the client messages it
wants sent (``publish``, ``subscriber-answer``, ``candidate``) as JSON lines on stdout, without
``cseq`` (the test's SDK client adds it). It also writes ``{"type": "x-stats", ...}`` lines: decoded
video frames and audio buffers per subscriber mid, with the wall-clock time of the first frame.

Stock settings on purpose: webrtcbin's own RSA DTLS certificate, ``max-bundle`` (its offer puts
``port 0`` + ``a=bundle-only`` on the second m-line), VP8 + Opus. ``--no-trickle`` sends the SDP
only once gathering completed (candidates inside); by default candidates trickle.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

_out_lock = threading.Lock()


def send(message: dict[str, Any]) -> None:
    with _out_lock:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


def log(text: str) -> None:
    send({"type": "x-log", "text": text})


#: PyGObject drops a reference it does not own when the ``ice-agent`` wrapper is finalized,
#: destroying webrtcbin's agent: keep every wrapper alive for the life of the process.
_ice_agents: list[Any] = []


def _add_loopback(webrtc: Gst.Element) -> None:
    """libnice skips ``lo`` unless told about the address."""
    agent = webrtc.get_property("ice-agent")
    _ice_agents.append(agent)
    agent.emit("add-local-ip-address", "127.0.0.1")


def _sdp(text: str, kind: GstWebRTC.WebRTCSDPType) -> GstWebRTC.WebRTCSessionDescription:
    ok, message = GstSdp.SDPMessage.new_from_text(text)
    assert ok == GstSdp.SDPResult.OK, f"unparsable SDP: {ok}"
    return GstWebRTC.WebRTCSessionDescription.new(kind, message)


def _call(webrtc: Gst.Element, action: str, field: str | None, *args: Any) -> Any:
    """Run a webrtcbin action and wait for its promise, on the main loop (never from inside a
    webrtcbin callback: its thread runs the operation). Returns the SDP text of the reply's ``field``, or True;
    None/False (logged) on an error."""
    promise = Gst.Promise.new()
    if field is not None:  # create-offer / create-answer: (options, promise)
        webrtc.emit(action, *args, None, promise)
    else:  # set-local-description / set-remote-description: (description, promise)
        webrtc.emit(action, *args, promise)
    promise.wait()
    reply = promise.get_reply()
    if reply is not None and reply.has_field("error"):
        log(f"{action} failed: {reply.get_value('error')}")
        return None if field is not None else False
    if field is None:
        return True
    # The reply dies with the promise: copy the SDP text out while both are alive.
    description = reply.get_value(field) if reply is not None else None
    return description.sdp.as_text() if description is not None else None


class Leg:
    """One webrtcbin (publisher or subscriber) and its SDP exchange."""

    def __init__(self, pipeline: Gst.Pipeline, target: str, trickle: bool) -> None:
        self.target = target
        self.trickle = trickle
        self.webrtc = Gst.ElementFactory.make("webrtcbin", target)
        self.webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        pipeline.add(self.webrtc)
        _add_loopback(self.webrtc)
        self._pending_sdp: tuple[str, str] | None = None
        #: Candidates gathered before our SDP went out (the SFU drops those): sent after it.
        self._held: list[dict[str, Any]] | None = []
        self._lock = threading.Lock()
        self.webrtc.connect("on-ice-candidate", self._on_candidate)
        self.webrtc.connect("notify::ice-gathering-state", self._on_gathering)
        self.webrtc.connect("notify::connection-state", self._on_state)
        self.webrtc.connect("notify::ice-connection-state", self._on_ice_state)

    def _on_state(self, webrtc: Gst.Element, _spec: Any) -> None:
        state = webrtc.get_property("connection-state")
        send({"type": "x-state", "target": self.target, "state": state.value_nick})

    def _on_ice_state(self, webrtc: Gst.Element, _spec: Any) -> None:
        state = webrtc.get_property("ice-connection-state")
        send({"type": "x-state", "target": self.target, "state": "ice-" + state.value_nick})

    def _on_candidate(self, _webrtc: Gst.Element, index: int, candidate: str) -> None:
        if self.trickle:
            self._candidate({"candidate": candidate, "sdpMLineIndex": index})

    def _candidate(self, candidate: dict[str, Any] | None) -> None:
        message = {"type": "candidate", "target": self.target, "candidate": candidate}
        with self._lock:
            if self._held is not None:
                self._held.append(message)
                return
        send(message)

    def _on_gathering(self, webrtc: Gst.Element, _spec: Any) -> None:
        state = webrtc.get_property("ice-gathering-state")
        if state == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            if self.trickle:
                self._candidate(None)
            elif self._pending_sdp is not None:
                self._send_local()

    def set_local(self, message_type: str, sdp: str) -> None:
        """Apply our description; send it now (trickle) or once gathering completes."""
        kind = GstWebRTC.WebRTCSDPType.OFFER if message_type == "publish" else GstWebRTC.WebRTCSDPType.ANSWER
        description = _sdp(sdp, kind)
        if getattr(self, "passive", False):
            sdp = sdp.replace("a=setup:actpass", "a=setup:passive")
            description = _sdp(sdp, kind)
        self._pending_sdp = (message_type, sdp)
        log(f"local {message_type}: {self._pending_sdp[1][:60]!r}")
        _call(self.webrtc, "set-local-description", None, description)
        gathering = self.webrtc.get_property("ice-gathering-state")
        if self.trickle or gathering == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            self._send_local()

    def _send_local(self) -> None:
        assert self._pending_sdp is not None
        message_type, sdp = self._pending_sdp
        self._pending_sdp = None
        if not self.trickle:  # with every gathered candidate in it
            sdp = self.webrtc.get_property("local-description").sdp.as_text()
        with self._lock:
            send({"type": message_type, "sdp": sdp})
            held, self._held = self._held or [], None
        for message in held:
            send(message)


class Publisher(Leg):
    def __init__(self, pipeline: Gst.Pipeline, trickle: bool, audio: bool) -> None:
        super().__init__(pipeline, "publisher", trickle)
        video = Gst.parse_bin_from_description(
            "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1"
            " ! videoconvert ! vp8enc deadline=1 keyframe-max-dist=60 ! rtpvp8pay"
            ' ! capsfilter caps="application/x-rtp,media=video,encoding-name=VP8,payload=96"',
            True,
        )
        pipeline.add(video)
        video.link(self.webrtc)
        if audio:
            sound = Gst.parse_bin_from_description(
                "audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! opusenc"
                ' ! rtpopuspay ! capsfilter caps="application/x-rtp,media=audio,encoding-name=OPUS,payload=111"',
                True,
            )
            pipeline.add(sound)
            sound.link(self.webrtc)
        self.webrtc.connect("on-negotiation-needed", self._on_negotiation_needed)

    def _on_negotiation_needed(self, _webrtc: Gst.Element) -> None:
        GLib.idle_add(self._offer)

    def _offer(self) -> bool:
        offer = _call(self.webrtc, "create-offer", "offer")
        if offer is not None:
            self.set_local("publish", offer)
        return False

    def on_answer(self, sdp: str) -> None:
        _call(self.webrtc, "set-remote-description", None, _sdp(sdp, GstWebRTC.WebRTCSDPType.ANSWER))


class Subscriber(Leg):
    def __init__(self, pipeline: Gst.Pipeline, trickle: bool) -> None:
        super().__init__(pipeline, "subscriber", trickle)
        self.pipeline = pipeline
        self.video: dict[str, int] = {}
        self.audio: dict[str, int] = {}
        self.first_frame: dict[str, float] = {}
        self.mids: list[str] = []
        self._lock = threading.Lock()
        self.webrtc.connect("pad-added", self._on_pad)

    def on_offer(self, sdp: str) -> None:
        self.mids = [line[6:].strip() for line in sdp.splitlines() if line.startswith("a=mid:")]
        if not _call(self.webrtc, "set-remote-description", None, _sdp(sdp, GstWebRTC.WebRTCSDPType.OFFER)):
            send({"type": "x-refused"})
            return
        answer = _call(self.webrtc, "create-answer", "answer")
        if answer is not None:
            self.set_local("subscriber-answer", answer)

    def _on_pad(self, _webrtc: Gst.Element, pad: Gst.Pad) -> None:
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        # src_<m-line index>; reading the pad's "transceiver" property from Python frees it.
        index = int(pad.get_name().rsplit("_", 1)[-1])
        mid = self.mids[index] if index < len(self.mids) else pad.get_name()
        caps = pad.get_current_caps() or pad.query_caps(None)
        media = caps.get_structure(0).get_string("media") if caps else None
        decode = Gst.ElementFactory.make("decodebin")
        decode.connect("pad-added", self._on_decoded, mid, media or "")
        self.pipeline.add(decode)
        decode.sync_state_with_parent()
        pad.link(decode.get_static_pad("sink"))

    def _on_decoded(self, _decode: Gst.Element, pad: Gst.Pad, mid: str, media: str) -> None:
        sink = Gst.ElementFactory.make("fakesink")
        sink.set_property("sync", False)
        self.pipeline.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))
        counters = self.video if media == "video" else self.audio

        def probe(_pad: Gst.Pad, _info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
            with self._lock:
                counters[mid] = counters.get(mid, 0) + 1
                self.first_frame.setdefault(mid, time.time())
            return Gst.PadProbeReturn.OK

        pad.add_probe(Gst.PadProbeType.BUFFER, probe)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "type": "x-stats", "video": dict(self.video), "audio": dict(self.audio),
                "first_frame": dict(self.first_frame), "t": time.time(),
            }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--publish", action="store_true")
    parser.add_argument("--no-audio", action="store_true")
    parser.add_argument("--subscribe", action="store_true")
    parser.add_argument("--no-trickle", action="store_true")
    parser.add_argument("--offer-passive", action="store_true", help="offer a=setup:passive (forces a DTLS failure)")
    args = parser.parse_args()

    Gst.init(None)
    loop = GLib.MainLoop()
    pipeline = Gst.Pipeline.new("client")
    trickle = not args.no_trickle
    publisher = Publisher(pipeline, trickle, not args.no_audio) if args.publish else None
    if publisher is not None and args.offer_passive:
        publisher.passive = True
    subscriber = Subscriber(pipeline, trickle) if args.subscribe else None

    def on_message(line: str) -> bool:
        message = json.loads(line)
        kind = message.get("type")
        log(f"got {kind} {message.get('code', '')} {message.get('message', '')}")
        if kind == "publish-answer" and publisher is not None:
            publisher.on_answer(message["sdp"])
        elif kind == "subscriber-offer" and subscriber is not None:
            subscriber.on_offer(message["sdp"])
        elif kind == "x-quit":
            loop.quit()
        return False

    def read_stdin() -> None:
        for line in sys.stdin:
            if line.strip():
                GLib.idle_add(on_message, line)
        GLib.idle_add(loop.quit)

    def report() -> bool:
        if subscriber is not None:
            send(subscriber.stats())
        return True

    def on_bus(_bus: Gst.Bus, message: Gst.Message) -> None:
        if message.type == Gst.MessageType.ERROR:
            error, debug = message.parse_error()
            log(f"pipeline error: {error.message} ({debug})")

    bus = pipeline.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_bus)
    threading.Thread(target=read_stdin, daemon=True).start()
    GLib.timeout_add(250, report)
    pipeline.set_state(Gst.State.PLAYING)
    send({"type": "x-ready"})
    try:
        loop.run()
    finally:
        pipeline.set_state(Gst.State.NULL)


if __name__ == "__main__":
    main()
