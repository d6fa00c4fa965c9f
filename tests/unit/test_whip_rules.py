"""WHIP/WHEP resource rules (signaling/core/whip.py): preconditions, ICE restart, fragments, links."""

from __future__ import annotations

import pytest

from signaling.core.whip import (
    SDPFRAG,
    IceCredentials,
    Problem,
    Resource,
    Resources,
    bearer,
    ice_credentials,
    link_headers,
    media_type,
    parse_sdpfrag,
)

CANDIDATE = "candidate:1 1 udp 2122194687 127.0.0.1 38999 typ host"
FRAG = f"a=ice-ufrag:abcd\r\na=ice-pwd:secretsecret\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na={CANDIDATE}\r\na=end-of-candidates\r\n"


def resource(kind: str = "whip") -> Resource:
    return Resource(kind=kind, room="r", peer="p", ice=IceCredentials("abcd", "secretsecret"))  # type: ignore[arg-type]


def status(call: object) -> int:
    with pytest.raises(Problem) as caught:
        call()  # type: ignore[operator]
    return caught.value.status


def test_trickle_with_the_current_etag() -> None:
    r = resource()
    assert r.check_patch(SDPFRAG, r.etag, FRAG) == [{"candidate": CANDIDATE, "sdpMid": "0"}, None]
    assert r.etag != resource().etag  # per resource (ids differ)
    assert r.etag.startswith('"') and r.etag.endswith('"')


def test_precondition_order() -> None:
    r = resource()
    assert status(lambda: r.check_patch("application/json", r.etag, FRAG)) == 415
    assert status(lambda: r.check_patch(SDPFRAG, None, FRAG)) == 428
    assert status(lambda: r.check_patch(SDPFRAG, '"old"', FRAG)) == 412
    assert status(lambda: r.check_patch(SDPFRAG, "*", FRAG)) == 422
    restart = FRAG.replace("ufrag:abcd", "ufrag:wxyz")
    assert status(lambda: r.check_patch(SDPFRAG, r.etag, restart)) == 422
    assert status(lambda: r.check_patch(SDPFRAG, r.etag, "a=candidate:nonsense\r\n")) == 400


def test_whep_accepts_a_trickle_without_if_match_but_not_a_stale_one() -> None:
    r = resource("whep")
    assert r.check_patch(SDPFRAG, None, FRAG)[-1] is None
    assert status(lambda: r.check_patch(SDPFRAG, '"old"', FRAG)) == 412


def test_restart_problem_says_why() -> None:
    r = resource()
    with pytest.raises(Problem) as caught:
        r.check_patch(SDPFRAG, "*", FRAG)
    body = caught.value.body()
    assert body["status"] == 422 and body["type"].endswith("/ice-restart-unsupported")
    assert "aioice" in body["detail"]


def test_fragments() -> None:
    fragment = parse_sdpfrag(FRAG)
    assert fragment.ice == IceCredentials("abcd", "secretsecret")
    assert fragment.candidates == [("0", CANDIDATE)] and fragment.end_of_candidates
    with pytest.raises(Problem):
        parse_sdpfrag("hello\r\n")
    with pytest.raises(Problem):
        parse_sdpfrag("a=x\r\n" * 500)
    assert ice_credentials("v=0\r\n") is None


def test_link_headers_carry_turn_rest_credentials() -> None:
    links = link_headers([
        {"urls": ["stun:127.0.0.1:3478"]},
        {"urls": ["turn:127.0.0.1:3478?transport=udp", "turns:t.example:5349"],
         "username": "1700000000:p_1", "credential": 'a"b'},
        {"urls": "stun:<bad>"},
    ])
    assert links[0] == '<stun:127.0.0.1:3478>; rel="ice-server"'
    assert links[1] == ('<turn:127.0.0.1:3478?transport=udp>; rel="ice-server"; username="1700000000:p_1"; '
                        'credential="a\\"b"; credential-type="password"')
    assert len(links) == 3


def test_resources_are_bounded_and_scoped() -> None:
    resources = Resources(limit=1)
    r = resource()
    resources.add(r)
    assert status(lambda: resources.add(resource())) == 503
    assert resources.get("whip", "r", r.id) is r
    assert resources.get("whep", "r", r.id) is None and resources.get("whip", "other", r.id) is None
    resources.remove(r)
    assert len(resources) == 0


def test_header_helpers() -> None:
    assert media_type("Application/SDP; charset=utf-8") == "application/sdp"
    assert media_type(None) == ""
    assert bearer("Bearer abc") == "abc" and bearer("Basic abc") is None and bearer(None) is None
    assert bearer("Bearer ") is None
