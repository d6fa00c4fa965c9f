"""Active-speaker detection from audio levels: pure logic, no packets, no clock."""

from __future__ import annotations

import pytest

from sfu.speakers import LevelAccumulator, SpeakerConfig, SpeakerDetector, linear

LOUD, QUIET = 10, 127  # RFC 6464 levels (-dBov)


def interval(peer: str, levels: list[int]) -> tuple[str, int, int, int]:
    acc = LevelAccumulator()
    for level in levels:
        acc.add(level)
    return (peer, *acc.take())


def talk(peer: str, share: float, packets: int = 50) -> tuple[str, int, int, int]:
    loud = round(packets * share)
    return interval(peer, [LOUD] * loud + [QUIET] * (packets - loud))


def test_accumulator_counts_and_resets() -> None:
    acc = LevelAccumulator(threshold=35)
    for level in (0, 35, 36, 127):
        acc.add(level)
    assert acc.take() == (4, 2, 35)
    assert acc.take() == (0, 0, 0)


def test_linear_level() -> None:
    assert linear(0) == 1.0
    assert linear(20) == pytest.approx(0.1)
    assert linear(127) < 1e-6


def test_a_speaker_is_announced_once_and_released_after_quiet_intervals() -> None:
    detector = SpeakerDetector(SpeakerConfig(release=2))
    assert detector.tick([talk("a", 0.0), talk("b", 0.0)]) is None  # nobody: nothing new
    first = detector.tick([talk("a", 0.9), talk("b", 0.0)])
    assert first is not None and [p for p, _ in first] == ["a"]
    assert 0 < first[0][1] <= linear(LOUD)
    assert detector.tick([talk("a", 0.9), talk("b", 0.0)]) is None  # same set: silent
    assert detector.tick([talk("a", 0.0), talk("b", 0.0)]) is None  # a pause between words
    assert detector.tick([talk("a", 0.0), talk("b", 0.0)]) == []  # two quiet intervals: released


def test_short_noise_below_min_active_is_not_speech() -> None:
    detector = SpeakerDetector(SpeakerConfig(min_active=0.4))
    assert detector.tick([talk("a", 0.3)]) is None  # a click, a door: 30 % of the packets
    # Level: the voice packets' level, weighted by their share, smoothed (weight 0.5).
    assert detector.tick([talk("a", 0.5)]) == [("a", pytest.approx(0.5 * 0.5 * linear(LOUD)))]


def test_loudest_first_and_tracks_of_one_peer_are_summed() -> None:
    detector = SpeakerDetector()
    speakers = detector.tick([
        interval("soft", [30] * 50),
        interval("loud", [5] * 50),
        ("loud", 0, 0, 0),  # the same peer's silent second track (screen audio, say)
    ])
    assert speakers is not None and [p for p, _ in speakers] == ["loud", "soft"]


def test_a_peer_that_is_gone_stops_speaking_and_is_forgotten() -> None:
    detector = SpeakerDetector(SpeakerConfig(release=1))
    assert detector.tick([talk("a", 1.0)]) is not None
    assert detector.tick([]) == []
    assert detector.speakers == []
    assert detector.tick([]) is None


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="speaker"):
        SpeakerConfig(min_active=0)
    with pytest.raises(ValueError, match="speaker"):
        SpeakerConfig(release=0)
