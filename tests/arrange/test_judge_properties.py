"""Hostile judge replies and servers: ``parse_grades`` raises only ``JudgeParseError`` and a
request never outlives ``timeout_s``. The regressions are J1-J5 of
research/reliability-2026-12.md; the servers are raw sockets on 127.0.0.1, bounded in time."""

import json
import socketserver
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacelm.arrange.judge import (
    RUBRIC,
    Judge,
    JudgeConfig,
    JudgeParseError,
    parse_grades,
)
from spacelm.errors import SpacelmError

FIVE = {key: {"grade": 8} for key, _, _ in RUBRIC}


@pytest.mark.parametrize("reply, message", [
    ("Grades: { realism: 8", "no JSON object"),  # J1: '{' without '}'
    ("} realism {", "no JSON object"),
    ('{"realism": ' + "9" * 4301 + "}", "no JSON object"),  # J2: past the int digit limit
    ("[" * 100000 + "{}", "no grade for realism"),  # the object after the brackets is read
    ("{" + '"a":' * 1 + "[" * 100000 + "}", "no JSON object"),  # J2: deep nesting
])
def test_unreadable_replies_are_parse_errors(reply, message):
    with pytest.raises(JudgeParseError, match=message):
        parse_grades(reply)


def test_an_aspect_without_a_grade_fails_the_reply():  # J5: it used to count as "unknown"
    reply = json.dumps({**FIVE, "realism_and_3d_geometric_consistency": {"rating": 1}})
    with pytest.raises(JudgeParseError, match='realism_and_3d_geometric_consistency: no "grade"'):
        parse_grades(reply)
    # An explicit unknown is still unknown, and "score" is accepted for "grade".
    grades, _ = parse_grades(json.dumps({**FIVE, "layout_and_furniture": {"grade": "unknown"},
                                         "overall_aesthetic_and_atmosphere": {"score": 6}}))
    assert list(grades.values()) == [8.0, 8.0, None, 8.0, 6.0]
    assert issubclass(JudgeParseError, SpacelmError)


# --- servers ------------------------------------------------------------------------------------

OK_BODY = json.dumps({"choices": [{"message": {"content": json.dumps(FIVE)}}]}).encode()


class RawServer:
    """Answers every POST on 127.0.0.1 by ``mode``: ``ok``; ``drip_body`` (headers, then one body
    byte per 0.05 s); ``drip_headers`` (the status line a byte per 0.05 s); ``deep`` (a 200 whose
    body nests 100,000 lists). Each connection ends within 10 s, and all of them at exit."""

    def __init__(self, mode):
        self.mode, self.stop, self.calls = mode, threading.Event(), 0
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                length = 0
                while (line := self.rfile.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                self.rfile.read(length)
                server.calls += 1
                server.respond(self.wfile)

        self.tcp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.tcp.daemon_threads = True
        self.tcp.handle_error = lambda request, address: None  # clients that gave up
        self.url = f"http://127.0.0.1:{self.tcp.server_address[1]}/v1"

    def respond(self, out):
        body = b"[" * 100000 if self.mode == "deep" else OK_BODY
        head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body))
        drip = {"drip_body": body, "drip_headers": head}.get(self.mode)
        if drip is None:
            return out.write(head + body)
        if self.mode == "drip_body":
            out.write(head)
        deadline = time.monotonic() + 10
        for i in range(len(drip)):
            if self.stop.wait(0.05) or time.monotonic() > deadline:
                return
            out.write(drip[i:i + 1])
            out.flush()
        if self.mode == "drip_headers":
            out.write(body)

    def __enter__(self):
        threading.Thread(target=self.tcp.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.tcp.shutdown()
        self.tcp.server_close()


@pytest.fixture
def placed(make_task):
    from spacelm.arrange.answer import Placement

    task = make_task([{"id": "bed_1", "size": [2, 1.6, 0.5]}], room=(5.0, 4.0, 2.8))
    return [(task, [Placement("bed_1", 1.0, 0.8, 0.25, 0.0)])]


def _judge(server, **overrides):
    return Judge(JudgeConfig(**{"base_url": server.url, "model": "m", "views": ("top",),
                                "image_size": 64, "timeout_s": 0.5, "max_retries": 0,
                                **overrides}))


def test_raw_server_answers(placed):
    with RawServer("ok") as server:
        [result] = _judge(server).judge_layouts(placed)
    assert result.score == 40.0 and result.attempts == 1


@pytest.mark.parametrize("mode", ["drip_body", "drip_headers"])
def test_a_dripping_server_cannot_hold_a_request_past_the_deadline(placed, mode):  # J4
    with RawServer(mode) as server:
        start = time.monotonic()
        [result] = _judge(server, max_retries=1, backoff_s=0.0).judge_layouts(placed)
        elapsed = time.monotonic() - start
    # Without a deadline an attempt lasted as long as the server dripped: 4 s (headers), 10 s (body).
    assert result.score is None and "timed out" in result.reason and server.calls == 2
    assert elapsed < 5  # two attempts of 0.5 s, plus rendering on a loaded machine


def test_a_deeply_nested_body_is_a_malformed_reply(placed):  # J3
    with RawServer("deep") as server:
        [result] = _judge(server, max_retries=3).judge_layouts(placed)
    assert result.score is None and "malformed reply" in result.reason and server.calls == 1


# --- properties ---------------------------------------------------------------------------------

_GRADES = st.sampled_from([8, 0, 11, 5.5, "7", "7/10", "unknown", "", None, True, "x", [], {},
                           {"grade": 3}, {"score": "9"}, {"rating": 2}, {"grade": {"a": 1}},
                           10**400, float("nan")])
_KEYS = st.sampled_from(["realism", "functionality", "layout", "colour", "color", "overall",
                         "Overall Aesthetic", "x", "", "1"])


@st.composite
def replies(draw):
    data = {draw(_KEYS): draw(_GRADES) for _ in range(draw(st.integers(0, 7)))}
    text = json.dumps(data)
    wrap = draw(st.sampled_from(["{}", "```json\n{}\n```", "Sure! {} Thanks", "```{}", "{}}", "{{}"]))
    cut = draw(st.integers(0, len(text)))
    text = draw(st.sampled_from([text, text[:cut], text.replace('"', "", 1)]))
    return wrap.replace("{}", text, 1) + draw(st.text(max_size=3))


@settings(max_examples=300, deadline=None)
@given(st.one_of(replies(), st.text(max_size=30)))
def test_parse_grades_raises_only_judge_parse_error(reply):
    try:
        grades, _ = parse_grades(reply)
    except JudgeParseError:
        return
    assert len(grades) == len(RUBRIC)
    assert all(g is None or 1 <= g <= 10 for g in grades.values())
    assert any(g is not None for g in grades.values())
