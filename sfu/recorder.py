"""Recording without transcoding, the I/O part: one worker thread per file, fed by a bounded queue.

A :class:`TrackSink` hangs on a :class:`~sfu.forwarding.PublishedTrack` like one more
subscriber. On the forwarding path it does one ``put_nowait`` per packet (and per sender
report); everything else (frame assembly, depacketisation, timing, muxing with PyAV, disk
writes) happens on the recording's own thread. When the queue is full (the disk or the thread
cannot keep up) the recording is dropped with an error instead: forwarding never waits for it.

One :class:`Recording` is one file holding every recorded track of one participant: VP8 + Opus
go to WebM, anything with H.264 to Matroska. Timestamps come from the publisher's RTCP sender
reports (:class:`~sfu.recording.MediaClock`), so its audio and video line up in the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from sfu.aiortc_hooks import depayloader
from sfu.h264 import is_h264, parameter_sets, split_annexb, sps_dimensions, vp8_dimensions
from sfu.ingest import MediaPacket
from sfu.keyframe import keyframe_detector
from sfu.packets import SenderReport
from sfu.recording import AudioOrder, Frame, FrameAssembler, MediaClock, Timeline

logger = logging.getLogger(__name__)

#: Frames a stream may hold back waiting for its first sender report before the recording
#: falls back to arrival times for it (about 3 s of video, 6 s of audio).
SYNC_WAIT_FRAMES = 300
_STOP = object()


@dataclass(frozen=True, slots=True)
class RecordedTrack:
    track_id: str
    kind: str
    #: Codec key (``VP8``, ``opus``, ``H264-high``...).
    codec: str


@dataclass(slots=True)
class RecordingCounters:
    """Process-wide recording figures (exported on /metrics)."""

    started: int = 0
    finished: int = 0
    failed: int = 0
    bytes_written: int = 0
    packets_dropped: int = 0


@dataclass(slots=True)
class _Stream:
    index: int
    track: RecordedTrack
    clock: MediaClock
    assembler: FrameAssembler | None
    audio: AudioOrder | None
    pending: list[Frame] = field(default_factory=list)
    last_timestamp: int | None = None
    last_pts: int = -1
    frames_written: int = 0
    av_stream: Any = None
    #: Set by the worker, read by the forwarding path: ask the publisher for a keyframe.
    wants_keyframe: bool = True


class TrackSink:
    """What a published track calls for the recording (on the event loop, never blocking)."""

    __slots__ = ("_index", "_recording")

    def __init__(self, recording: Recording, index: int) -> None:
        self._recording = recording
        self._index = index

    @property
    def recording(self) -> Recording:
        return self._recording

    def on_media(self, media: MediaPacket) -> bool:
        """Queue one packet; return True if the recording wants a keyframe now."""
        rec = self._recording
        rec.offer(("rtp", self._index, media.extended_seq, media.timestamp, media.marker, media.payload, time.time()))
        stream = rec.streams[self._index]
        if stream.wants_keyframe:
            stream.wants_keyframe = False
            return stream.track.kind == "video"
        return False

    def on_sender_report(self, report: SenderReport) -> None:
        self._recording.offer(("sr", self._index, report.ntp_timestamp, report.rtp_timestamp))


def safe_name(value: str) -> str:
    """A file-name-safe rendering of a room, participant or track id."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", value).strip("._") or "_"
    return cleaned[:80]


class Recording:
    """One file: the recorded tracks of one participant, muxed on a worker thread."""

    def __init__(
        self,
        *,
        room: str,
        participant: str,
        tracks: list[RecordedTrack],
        directory: Path,
        counters: RecordingCounters,
        queue_size: int = 2000,
        single_track: bool = False,
    ) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.room = room
        self.participant = participant
        self.tracks = tracks
        self.container = "mkv" if any(is_h264(t.codec) for t in tracks) else "webm"
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        label = safe_name(participant)
        if single_track:
            label += "_" + safe_name(tracks[0].track_id)
        self.path = directory / safe_name(room) / f"{label}_{stamp}_{self.id}.{self.container}"
        self.state = "recording"
        self.error: str | None = None
        self.started_at = time.time()
        self.stopped_at: float | None = None
        #: When the first frame written arrived (the keyframe asked for at the start, usually).
        self.media_started_at: float | None = None
        self.duration = 0.0
        self.bytes_written = 0
        self._counters = counters
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._abort = threading.Event()
        self.streams = [
            _Stream(
                index=i,
                track=t,
                clock=MediaClock(90000 if t.kind == "video" else 48000),
                assembler=_assembler(t.codec) if t.kind == "video" else None,
                audio=AudioOrder() if t.kind == "audio" else None,
            )
            for i, t in enumerate(tracks)
        ]
        self._sinks = [TrackSink(self, i) for i in range(len(tracks))]
        self._timeline = Timeline()
        self._container: Any = None
        self._loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, name=f"recording-{self.id}", daemon=True)
        counters.started += 1

    def sink(self, index: int) -> TrackSink:
        return self._sinks[index]

    def start(self) -> None:
        self._thread.start()

    # -- event loop side --------------------------------------------------------------------

    def offer(self, item: tuple[Any, ...]) -> None:
        if self.state != "recording":
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._counters.packets_dropped += 1
            self.fail("the recording could not keep up (queue full: disk or CPU too slow)")

    def fail(self, error: str) -> None:
        """Drop the recording (forwarding carries on); the worker closes the file."""
        if self.state != "recording":
            return
        self.state = "failed"
        self.error = error
        self._abort.set()
        self._stop_worker()
        logger.warning("recording %s of %s in %s dropped: %s", self.id, self.participant, self.room, error)

    def stop(self) -> None:
        if self.state == "recording":
            self.state = "stopping"
            self._stop_worker()

    def _stop_worker(self) -> None:
        self.stopped_at = self.stopped_at or time.time()
        try:
            self._queue.put_nowait(_STOP)
        except queue.Full:
            self._abort.set()  # the worker checks it before every item

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "room": self.room,
            "participant": self.participant,
            "tracks": [{"id": t.track_id, "kind": t.kind, "codec": t.codec} for t in self.tracks],
            "file": str(self.path),
            "container": self.container,
            "state": self.state,
            "error": self.error,
            "started_at": round(self.started_at, 3),
            "stopped_at": round(self.stopped_at, 3) if self.stopped_at is not None else None,
            "media_started_at": round(self.media_started_at, 3) if self.media_started_at is not None else None,
            "duration": round(self.duration, 3),
            "bytes": self.bytes_written,
        }

    # -- worker thread ----------------------------------------------------------------------

    def _run(self) -> None:
        error: str | None = None
        try:
            while not self._abort.is_set():
                item = self._queue.get()
                if item is _STOP or self._abort.is_set():
                    break
                self._handle(item)
            if not self._abort.is_set():
                self._open_if_ready(final=True)
        except Exception as exc:  # the worker's boundary: report, never kill the process
            logger.exception("recording %s failed", self.id)
            error = f"{type(exc).__name__}: {exc}"
        finally:
            try:
                self._close()
            except Exception as exc:  # noqa: BLE001 - closing a broken container: keep the first error
                error = error or f"closing the file failed: {exc}"
        self._loop.call_soon_threadsafe(self._finished, error)

    def _finished(self, error: str | None) -> None:
        if error is not None and self.state != "failed":
            self.state = "failed"
            self.error = error
        if self.state == "failed":
            self._counters.failed += 1
        else:
            self.state = "finished"
            self._counters.finished += 1
        if not self.done.done():
            self.done.set_result(None)

    def _handle(self, item: tuple[Any, ...]) -> None:
        stream = self.streams[item[1]]
        if item[0] == "sr":
            stream.clock.on_report(item[2], item[3], stream.last_timestamp)
        else:
            _, _, seq, timestamp, marker, payload, arrival = item
            if stream.assembler is not None:
                before = stream.assembler.resyncs
                frames = stream.assembler.push(seq, timestamp, marker, payload, arrival)
                if stream.assembler.resyncs != before:
                    stream.wants_keyframe = True
            else:
                assert stream.audio is not None
                frames = stream.audio.push(seq, timestamp, payload, arrival)
            for frame in frames:
                stream.last_timestamp = frame.timestamp
                if self._container is None:
                    stream.pending.append(frame)
                else:
                    self._write(stream, frame)
        if self._container is None:
            self._open_if_ready(final=False)

    def _open_if_ready(self, *, final: bool) -> None:
        """Open the file once every stream with media can be placed in time."""
        if self._container is not None:
            return
        with_media = [s for s in self.streams if s.pending]
        if not with_media:
            return
        waited = any(len(s.pending) >= SYNC_WAIT_FRAMES for s in with_media)
        everyone = len(with_media) == len(self.streams)
        if not final and not waited and not (everyone and all(s.clock.synced for s in with_media)):
            return
        for s in with_media:
            if not s.clock.synced:
                first = s.pending[0]
                s.clock.assume(first.timestamp, first.arrival)
                logger.info("recording %s: no sender report for %s, using arrival times", self.id, s.track.track_id)
        # Time zero: the first video frame (a keyframe) when there is video, so the file's audio
        # and video start together; audio from before it is dropped.
        starters = [s for s in with_media if s.track.kind == "video"] or with_media
        walls = [s.clock.wall(s.pending[0].timestamp) for s in starters]
        self._timeline.start(min(w for w in walls if w is not None))
        self.media_started_at = min(s.pending[0].arrival for s in starters)
        self._open(with_media)
        ordered = sorted(
            ((s.clock.wall(f.timestamp) or 0.0, s.index, f) for s in with_media for f in s.pending),
            key=lambda x: (x[0], x[1]),
        )
        for s in with_media:
            s.pending = []
        for _, index, frame in ordered:
            self._write(self.streams[index], frame)

    def _open(self, streams: list[_Stream]) -> None:
        import av  # PyAV: an aiortc dependency; imported on the worker thread only

        self.path.parent.mkdir(parents=True, exist_ok=True)
        container = av.open(str(self.path), "w", format="webm" if self.container == "webm" else "matroska")
        try:
            for s in streams:
                first = s.pending[0]
                out: Any
                if s.track.kind == "audio":
                    out = container.add_stream("libopus", rate=48000)
                    out.codec_context.layout = "stereo"
                elif s.track.codec == "VP8":
                    out = container.add_stream("libvpx", rate=30)
                    width, height = vp8_dimensions(first.data) or (640, 480)
                    out.codec_context.width, out.codec_context.height = width, height
                    out.codec_context.pix_fmt = "yuv420p"
                else:
                    out = container.add_stream("libx264", rate=30)
                    width, height = _h264_size(first.data)
                    ctx = out.codec_context
                    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
                    # The encoder context is opened only so the muxer has parameters; the
                    # stream's own SPS/PPS replace what it generated. It never encodes.
                    ctx.open()
                    extradata = parameter_sets(first.data)
                    if extradata is not None:
                        ctx.extradata = extradata
                s.av_stream = out
        except Exception:
            container.close()
            raise
        self._container = container

    def _write(self, stream: _Stream, frame: Frame) -> None:
        import av

        if stream.av_stream is None:
            return  # this stream had no media when the file was opened
        wall = stream.clock.wall(frame.timestamp)
        at = self._timeline.position(wall) if wall is not None else None
        if at is None:
            return
        rate = stream.clock.clock_rate
        pts = max(round(at * rate), stream.last_pts + 1)
        stream.last_pts = pts
        packet = av.Packet(frame.data)
        packet.stream = stream.av_stream
        packet.time_base = Fraction(1, rate)
        packet.pts = packet.dts = pts
        packet.is_keyframe = frame.keyframe
        if stream.track.kind == "audio":
            packet.duration = 960  # 20 ms Opus frames (WebRTC's default ptime)
        self._container.mux(packet)
        stream.frames_written += 1
        size = len(frame.data)
        self.bytes_written += size
        self._counters.bytes_written += size
        self.duration = max(self.duration, pts / rate)

    def _close(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            container.close()
            with contextlib.suppress(OSError):
                self.bytes_written = os.path.getsize(self.path)


def _assembler(codec: str) -> FrameAssembler:
    detector = keyframe_detector(codec)
    assert detector is not None
    return FrameAssembler(detector, depayloader(codec))


def _h264_size(access_unit: bytes) -> tuple[int, int]:
    for unit in split_annexb(access_unit):
        if unit[0] & 0x1F == 7:
            try:
                return sps_dimensions(unit)
            except ValueError:
                break
    return 640, 480
