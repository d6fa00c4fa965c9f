"""Frame-accurate delivery measurements shared by the media tests."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sfu_testpeers import PublisherClient, SubscriberClient


@dataclass
class Window:
    """Frames ``first..last`` (generator indexes) sent between ``started`` and ``ended``."""

    first: int
    last: int
    started: float
    ended: float

    @property
    def sent(self) -> int:
        return self.last - self.first + 1

    @property
    def sent_fps(self) -> float:
        return self.sent / max(1e-6, self.ended - self.started)


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
    decoded = {i for i in subscriber.video().indexes if window.first <= i <= window.last}
    return len(decoded) / window.sent


def decoded_fps(subscriber: SubscriberClient, window: Window) -> float:
    times = subscriber.video().frame_times
    inside = [t for t in times if window.started <= t <= window.ended]
    return len(inside) / max(1e-6, window.ended - window.started)
