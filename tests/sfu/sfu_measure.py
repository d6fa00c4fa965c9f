"""Frame-accurate delivery measurements shared by the SFU and media tests.

:class:`Window` is the one record of "frames ``first..last`` were sent between two instants";
tests/sfu fills it from an in-process :class:`PublisherClient` (:func:`measure_window`),
tests/media from a publisher behind the signaling server (``tests.media.peers.WindowMeter``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from tests.sfu.sfu_testpeers import PublisherClient, SubscriberClient


@dataclass
class Window:
    """Frames ``first..last`` (generator numbers) the publisher sent between two instants."""

    #: Number of the first frame of the window (drawn into the picture).
    first: int
    #: Number of the last frame of the window, included.
    last: int
    #: ``time.monotonic()`` when the window opened.
    started: float
    #: ``time.monotonic()`` when the window closed.
    ended: float

    @property
    def sent(self) -> int:
        return self.last - self.first + 1

    @property
    def sent_fps(self) -> float:
        return self.sent / max(1e-6, self.ended - self.started)

    def ratio(self, decoded: Iterable[int]) -> float:
        """Share of this window's frames among the frame numbers ``decoded`` (at any time)."""
        inside = {i for i in decoded if self.first <= i <= self.last}
        return len(inside) / self.sent

    def decoded_rate(self, decoded: Iterable[int]) -> float:
        """This window's decoded frames per second of the time the publisher took to send them."""
        return self.ratio(decoded) * self.sent_fps


async def measure_window(
    publisher: PublisherClient, subscribers: list[SubscriberClient], frames: int
) -> Window:
    """Let the publisher send ``frames`` more frames; wait until subscribers are past them.

    Frames are identified by the number drawn into the picture, so the comparison does not
    depend on latency: a frame counts if it was decoded at any time.
    """
    video = publisher.video
    assert video is not None
    first = len(video.sent_at)
    started = time.monotonic()
    await video.pulse.wait_for(lambda: len(video.sent_at) >= first + frames, 30)
    window = Window(first, first + frames - 1, started, time.monotonic())
    # Frames after the window decoded: everything inside it had its chance (NACKs included).
    for subscriber in subscribers:

        def past_window(s: SubscriberClient = subscriber) -> bool:
            return any(i > window.last + 5 for i in s.video().indexes[-20:])

        await subscriber.wait_for(past_window, 30)
    return window


def decoded_ratio(subscriber: SubscriberClient, window: Window) -> float:
    return window.ratio(subscriber.video().indexes)


def decoded_fps(subscriber: SubscriberClient, window: Window) -> float:
    """Frames (of any number) the subscriber decoded per second while the window was open."""
    times = subscriber.video().frame_times
    inside = [t for t in times if window.started <= t <= window.ended]
    return len(inside) / max(1e-6, window.ended - window.started)
