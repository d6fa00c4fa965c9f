"""Parsing and validation of client frames, and the code tables against docs/protocol.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signaling.core import protocol
from signaling.core.codes import Close, Err
from signaling.core.protocol import Join, ProtocolError, Resume, Signal

ROOT = Path(__file__).resolve().parents[2]


def parse(frame: str) -> protocol.ClientMessage:
    return protocol.parse(frame, max_bytes=1000, max_signal_bytes=200)


def test_join_with_resume() -> None:
    msg = parse('{"type":"join","room":"r","name":"n","resume":{"session":"s","token":"t","last_seq":3}}')
    assert msg == Join(room="r", name="n", resume=Resume("s", "t", 3))


def test_signal() -> None:
    assert parse('{"type":"signal","to":"p_1","data":{"x":[1,2]},"cseq":4}') == Signal("p_1", {"x": [1, 2]}, 4)


def test_publish_with_track_descriptions_and_track_state() -> None:
    msg = parse('{"type":"publish","cseq":1,"sdp":"v=0","tracks":[{"id":"t1","source":"screen","muted":true},'
                '{"id":"t2","source":"microphone"}]}')
    assert msg == protocol.Publish(1, "v=0", (protocol.TrackInfo("t1", "screen", True), protocol.TrackInfo("t2", "microphone")))
    assert parse('{"type":"track-state","cseq":2,"track":"t1","muted":false}') == protocol.TrackState(2, "t1", False)


def test_data_to_some_or_all() -> None:
    assert parse('{"type":"data","cseq":3,"topic":"chat","payload":{"text":"hi"}}') == protocol.Data(3, "chat", {"text": "hi"})
    msg = parse('{"type":"data","cseq":4,"topic":"a/b.c","payload":null,"to":["p_1","p_2"]}')
    assert msg == protocol.Data(4, "a/b.c", None, ("p_1", "p_2"))


def test_data_payload_limit_is_its_own() -> None:
    frame = '{"type":"data","cseq":5,"topic":"chat","payload":"' + "x" * 150 + '"}'
    assert isinstance(protocol.parse(frame, max_bytes=1000, max_signal_bytes=100, max_data_bytes=200), protocol.Data)
    with pytest.raises(ProtocolError) as info:
        protocol.parse(frame, max_bytes=1000, max_signal_bytes=1000, max_data_bytes=100)
    assert info.value.error is Err.TOO_LARGE and info.value.cseq == 5


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ('{"type":"publish","cseq":1,"sdp":"v=0","tracks":[{"id":"t","source":"webcam"}]}', "bad-message"),
        ('{"type":"publish","cseq":1,"sdp":"v=0","tracks":[{"source":"camera"}]}', "bad-message"),
        ('{"type":"track-state","cseq":1,"track":"t"}', "bad-message"),
        ('{"type":"data","cseq":1,"payload":1}', "bad-message"),
        ('{"type":"data","cseq":1,"topic":"","payload":1}', "bad-message"),
        ('{"type":"data","cseq":1,"topic":"a b","payload":1}', "bad-message"),
        ('{"type":"data","cseq":1,"topic":"t","payload":1,"to":[]}', "bad-message"),
        ('{"type":"data","cseq":1,"topic":"t","payload":1,"to":["p","p"]}', "bad-message"),
        ('{"type":"data","cseq":1,"topic":"t","payload":"' + "x" * 300 + '"}', "too-large"),
        ("not json", "bad-json"),
        ("[]", "bad-json"),
        ('"str"', "bad-json"),
        ("{}", "unknown-type"),
        ('{"type":"nope"}', "unknown-type"),
        ('{"type":5}', "unknown-type"),
        ('{"type":"join"}', "bad-message"),
        ('{"type":"join","room":""}', "bad-message"),
        ('{"type":"join","room":"a b"}', "bad-message"),
        ('{"type":"join","room":"r","bogus":1}', "bad-message"),
        ('{"type":"signal","to":"p","data":1}', "bad-message"),
        ('{"type":"signal","to":"p","data":1,"cseq":0}', "bad-message"),
        ('{"type":"signal","to":"p","data":1,"cseq":true}', "bad-message"),
        ('{"type":"ack","seq":-1}', "bad-message"),
        ('{"type":"pong","t":"x"}', "bad-message"),
        ('{"type":"candidate","cseq":1,"target":"x","candidate":null}', "bad-message"),
        ('{"type":"signal","to":"p","data":"' + "x" * 300 + '","cseq":1}', "too-large"),
        ('{"type":"signal","to":"p","data":"' + "x" * 1100 + '","cseq":1}', "too-large"),
    ],
)
def test_bad_frames_get_their_code(frame: str, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse(frame)
    assert info.value.error.code == code


def test_error_names_the_cseq_of_the_failed_message() -> None:
    with pytest.raises(ProtocolError) as info:
        parse('{"type":"signal","to":"p","cseq":7}')
    assert info.value.cseq == 7


def test_deeply_nested_json_is_a_clean_error() -> None:
    with pytest.raises(ProtocolError) as info:
        protocol.parse("[" * 100_000 + "]" * 100_000, max_bytes=10**6, max_signal_bytes=10)
    assert info.value.error.code in ("bad-json", "too-large")


@settings(max_examples=300)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20), lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=20))
def test_any_json_is_either_a_message_or_a_coded_error(value: object) -> None:
    codes = {e.code for e in Err.all()}
    for candidate in (value, {"type": "signal", "to": "p", "cseq": 1, "data": value}, {"type": "join", "room": value}):
        try:
            parse(json.dumps(candidate))
        except ProtocolError as exc:
            assert exc.error.code in codes


def test_every_client_type_has_a_schema_and_a_builder() -> None:
    assert protocol.client_types() == {
        "join", "signal", "ack", "pong", "leave", "publish", "subscriber-answer", "candidate", "unpublish",
        "track-state", "data", "set-subscription",
    }


def test_set_subscription() -> None:
    from signaling.core.protocol import SetSubscription

    assert parse('{"type":"set-subscription","cseq":3,"track":"t1","quality":"low"}') == SetSubscription(
        cseq=3, track="t1", quality="low"
    )
    for bad in ('"ultra"', '""', "1", "null"):
        with pytest.raises(ProtocolError) as raised:
            parse('{"type":"set-subscription","cseq":3,"track":"t1","quality":' + bad + "}")
        assert raised.value.error is Err.BAD_MESSAGE, bad


def test_codes_table_matches_docs() -> None:
    doc = (ROOT / "docs" / "protocol.md").read_text()
    for close in Close.all():
        assert f"| {close.code} | `{close.name}` | {close.action.value} |" in doc, close
    for err in Err.all():
        assert f"| `{err.code}` |" in doc, err
    assert len({c.code for c in Close.all()}) == len(Close.all())
    assert len({e.code for e in Err.all()}) == len(Err.all())


def test_schema_is_valid_and_served_document_is_the_shipped_one() -> None:
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(protocol.schema())
    shipped = json.loads((ROOT / "signaling" / "schema" / "protocol-v1.json").read_text())
    assert protocol.schema() == shipped


def test_join_announces_receive_codecs() -> None:
    message = parse('{"type":"join","room":"r","codecs":["VP8","opus"]}')
    assert message == Join(room="r", codecs=("VP8", "opus"))
    assert parse('{"type":"join","room":"r"}') == Join(room="r", codecs=None)
    for bad in ('["VP8","VP8"]', '["a b"]', '[""]', '"VP8"', json.dumps(["x"] * 33)):
        with pytest.raises(ProtocolError) as raised:
            parse('{"type":"join","room":"r","codecs":' + bad + "}")
        assert raised.value.error is Err.BAD_MESSAGE, bad
