"""The recorder bot writes the tone bot's audio to a WAV file; the speaker logger prints who
speaks and what is said in the chat."""

from __future__ import annotations

import array
import itertools
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path

from switchboard import Room
from tests.conftest import RunningServer
from tests.sdk.bots import Bot
from tests.sdk.conftest import LOOPBACK_ICE

LOOPBACK = ("--ice-host", "127.0.0.1")


async def test_recorder_bot_writes_the_expected_duration_of_the_tone(
    sdk_server: RunningServer, bots: Callable[..., Awaitable[Bot]], tmp_path: Path
) -> None:
    out = tmp_path / "call.wav"
    recorder = await bots("recorder_bot.py", "--url", sdk_server.url, "--room", "rec", *LOOPBACK,
                          "--participant", "tone-bot", "--out", str(out), "--duration", "3")
    await recorder.wait_line("recording in rec")
    tone = await bots("tone_bot.py", "--url", sdk_server.url, "--room", "rec", *LOOPBACK, "--no-video")
    await tone.wait_line("publishing in rec")
    assert await recorder.wait_exit() == 0, recorder.output
    await recorder.wait_line("recorded 3.000 s")
    with wave.open(str(out), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (48_000, 1, 2)
        duration = wav.getnframes() / wav.getframerate()
        samples = array.array("h", wav.readframes(wav.getnframes()))
    assert abs(duration - 3.0) <= 0.02 * 3.0, duration
    # It is the tone: loud, and 440 Hz by its zero crossings (Opus keeps the pitch).
    crossings = sum(1 for a, b in itertools.pairwise(samples) if (a < 0) != (b < 0))
    frequency = crossings / 2 / duration
    assert 420 <= frequency <= 460, frequency
    assert max(abs(s) for s in samples) > 5000
    print(f"recorded {duration:.3f} s, {frequency:.1f} Hz")


async def test_speaker_logger_prints_the_speaking_bot_and_the_chat(
    sdk_server: RunningServer, bots: Callable[..., Awaitable[Bot]]
) -> None:
    logger = await bots("speaker_logger.py", "--url", sdk_server.url, "--room", "talk", *LOOPBACK)
    await logger.wait_line("logging talk")
    tone = await bots("tone_bot.py", "--url", sdk_server.url, "--room", "talk", *LOOPBACK, "--no-video")
    await tone.wait_line("publishing in talk")
    await logger.wait_line("speakers: tone-bot")
    chatter = await Room.connect(sdk_server.url, room="talk", name="alice", ice=LOOPBACK_ICE, auto_subscribe=False)
    try:
        await chatter.send_data({"text": "héllo"}, topic="chat")
        await logger.wait_line('chat: alice: {"text": "h\\u00e9llo"}')
    finally:
        await chatter.close()
