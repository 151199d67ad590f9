"""The render-and-judge reward against a local OpenAI-compatible server (loopback only).

``FakeServer`` speaks the chat-completions protocol on 127.0.0.1 (port 0) in a thread, answers a
bounded number of requests and stops by itself (or when the test ends). It records each request,
the number of calls and the most requests it had in flight at once.
"""

import base64
import io
import json
import logging
import pickle
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from spacelm.arrange.judge import (
    RUBRIC,
    Judge,
    JudgeConfig,
    JudgeParseError,
    parse_grades,
    score_of,
)
from spacelm.arrange.rewards import ArrangeReward

GRADES = (8, 7, 7, 9, 8)  # IDesign's example grades: S = 39
ANSWER = "Here is my evaluation.\n```json\n" + json.dumps(
    {key: {"grade": g, "comment": "fine"} for (key, _, _), g in zip(RUBRIC, GRADES)}) + "\n```"


class FakeServer:
    """Modes: ``ok``; ``flaky`` (``status`` for the first ``failures`` calls, then ok);
    ``error`` (always ``status``); ``garbage`` (prose, no JSON); ``slow`` (answers after 1 s)."""

    def __init__(self, mode="ok", *, status=500, failures=2, delay=0.0, max_requests=40):
        self.mode, self.status, self.failures, self.delay = mode, status, failures, delay
        self.max_requests = max_requests
        self.calls = self.in_flight = self.max_in_flight = 0
        self.requests = []
        self.lock, self.stop = threading.Lock(), threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.httpd.timeout = 0.05
        self.httpd.handle_error = lambda request, address: None  # clients that timed out
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        deadline = time.monotonic() + 60
        while not self.stop.is_set() and self.calls < self.max_requests \
                and time.monotonic() < deadline:
            self.httpd.handle_request()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.calls += 1
                    call = server.calls
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    server.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()},
                                            body))
                try:
                    server.stop.wait(server.delay)
                    self._respond(call)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _respond(self, call):
                mode = server.mode
                if mode == "error" or (mode == "flaky" and call <= server.failures):
                    return self._send(server.status, {"error": {"message": "overloaded"}})
                if mode == "slow":
                    server.stop.wait(1.0)
                content = "I cannot grade this room, sorry." if mode == "garbage" else ANSWER
                self._send(200, {"id": "x", "object": "chat.completion", "choices": [{
                    "index": 0, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": content}}]})

            def _send(self, status, data):
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(raw)

        return Handler

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=5)
        self.httpd.server_close()


@pytest.fixture
def task(make_task):
    objects = [{"id": "bed_1", "size": [2, 1.6, 0.5]}, {"id": "desk_1", "size": [1.2, 0.6, 0.75]}]
    return make_task(objects, room=(5.0, 4.0, 2.8))


@pytest.fixture
def layout(completion):
    """A valid completion for ``task``; ``x`` moves the desk (distinct layouts, distinct keys)."""
    def build(x=3.5):
        return completion([{"id": "bed_1", "x": 1.0, "y": 0.8, "z": 0.25, "rotation": 0},
                           {"id": "desk_1", "x": x, "y": 3.7, "z": 0.375, "rotation": 180}])
    return build


def config(server, **overrides):
    return JudgeConfig(**{"base_url": server.url, "model": "test-vlm", "api_key": "sk-test",
                          "backoff_s": 0.01, "timeout_s": 5.0, **overrides})


def run(judge, completions, task):
    return judge.judge_completions(completions, task=[task] * len(completions))


def test_scores_and_request(task, layout):
    with FakeServer() as server:
        [result] = run(Judge(config(server)), [layout()], task)
    assert (result.score, result.reason, result.attempts, result.cached) == (39.0, None, 1, False)
    assert result.grades["layout_and_furniture"] == 7.0 and result.comments
    path, headers, body = server.requests[0]
    assert path == "/v1/chat/completions" and headers["authorization"] == "Bearer sk-test"
    assert body["model"] == "test-vlm" and body["temperature"] == 0.0
    text, *images = body["messages"][0]["content"]
    assert task.preference in text["text"] and "JSON" in text["text"]
    assert len(images) == 2  # corner and top views
    for part in images:
        url = part["image_url"]["url"]
        assert url.startswith("data:image/png;base64,")
        png = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
        assert (png.format, png.size) == ("PNG", (512, 512))


@pytest.mark.parametrize("status", [500, 429])
def test_retries_then_succeeds(task, layout, status):
    with FakeServer("flaky", status=status, failures=2) as server:
        [result] = run(Judge(config(server)), [layout()], task)
    assert (result.score, result.attempts, server.calls) == (39.0, 3, 3)


def test_gives_up_after_retries(task, layout, caplog):
    with FakeServer("error", status=503) as server, caplog.at_level(logging.WARNING):
        [result] = run(Judge(config(server, max_retries=2)), [layout()], task)
    assert result.score is None and server.calls == 3
    assert "HTTP 503" in result.reason and "after 3 attempts" in result.reason
    assert "no score for task t" in caplog.text


def test_client_errors_are_not_retried(task, layout):
    with FakeServer("error", status=401) as server:
        [result] = run(Judge(config(server)), [layout()], task)
    assert result.score is None and "HTTP 401" in result.reason and server.calls == 1


def test_garbage_answer_is_missing_with_reason(task, layout):
    with FakeServer("garbage") as server:
        [result] = run(Judge(config(server)), [layout()], task)
    assert result.score is None and result.reason.startswith("unusable answer: no JSON object")
    assert server.calls == 1  # a bad answer is not a transient failure


def test_timeout_is_missing(task, layout):
    start = time.monotonic()
    with FakeServer("slow") as server:
        [result] = run(Judge(config(server, timeout_s=0.2, max_retries=1)), [layout()], task)
    assert result.score is None and "timed out" in result.reason
    assert server.calls == 2 and time.monotonic() - start < 3


def test_cache_answers_without_a_request(task, layout, tmp_path):
    with FakeServer() as server:
        [first] = run(Judge(config(server, cache_dir=str(tmp_path))), [layout()], task)
        [second] = run(Judge(config(server, cache_dir=str(tmp_path))), [layout()], task)
    assert server.calls == 1
    assert (first.cached, second.cached) == (False, True) and first.score == second.score == 39.0
    assert len(list(tmp_path.rglob("*.json"))) == 1 and not list(tmp_path.rglob("*.tmp"))


def test_failures_are_not_cached(task, layout, tmp_path):
    with FakeServer("garbage") as server:
        for _ in range(2):
            run(Judge(config(server, cache_dir=str(tmp_path))), [layout()], task)
    assert server.calls == 2 and not list(tmp_path.rglob("*.json"))


def test_concurrency_limit(task, layout):
    completions = [layout(x) for x in (1.5, 2.0, 2.5, 3.0, 3.5, 4.0)]
    with FakeServer(delay=0.2) as server:
        results = run(Judge(config(server, max_concurrency=2)), completions, task)
    assert [r.score for r in results] == [39.0] * 6
    assert server.calls == 6 and server.max_in_flight == 2


def test_identical_layouts_are_asked_once(task, layout):
    with FakeServer() as server:
        results = run(Judge(config(server)), [layout(), layout()], task)
    assert [r.score for r in results] == [39.0, 39.0] and server.calls == 1


def test_wild_coordinates_still_render(task, completion):
    """A box 1e300 m away is drawn one room size out, so the room stays visible and finite."""
    wild = completion([{"id": "bed_1", "x": 1e300, "y": 0.8, "z": -1e300, "rotation": 0},
                       {"id": "desk_1", "x": 3.5, "y": 3.7, "z": 0.375, "rotation": 1e9}])
    with FakeServer() as server:
        [result] = run(Judge(config(server)), [wild], task)
    assert result.score == 39.0 and server.calls == 1


def test_unreadable_layout_needs_no_request(task):
    with FakeServer() as server:
        [result] = run(Judge(config(server)), ["<think>x</think><answer>[]</answer>"], task)
    assert result.score is None and "could not be read" in result.reason and server.calls == 0


def test_environment_is_read_at_call_time(task, layout, monkeypatch):
    judge = Judge(JudgeConfig(backoff_s=0.01))  # built before the variables exist
    with FakeServer() as server:
        monkeypatch.setenv("SPACELM_JUDGE_BASE_URL", server.url)
        monkeypatch.setenv("SPACELM_JUDGE_MODEL", "env-vlm")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
        [result] = run(judge, [layout()], task)
    _, headers, body = server.requests[0]
    assert result.score == 39.0 and body["model"] == "env-vlm"
    assert headers["authorization"] == "Bearer sk-env"


def test_no_key_sends_no_authorization(task, layout, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeServer() as server:
        [result] = run(Judge(config(server, api_key=None)), [layout()], task)
    assert result.score == 39.0 and "authorization" not in server.requests[0][1]


def test_fits_arrange_reward(task, layout):
    """MetaSpatial's R = 0.5 F + S / 50 - 0.2 C - 0.2 V for a clean layout: 0.5 + 39 / 50."""
    with FakeServer() as server:
        reward = ArrangeReward(judge=Judge(config(server)))
        scores = reward(["p"] * 2, [layout(), "no tags"], completion_ids=None, task=[task] * 2)
    assert scores == [pytest.approx(1.28), 0.0] and server.calls == 1
    assert pickle.loads(pickle.dumps(reward)).judge.config.model == "test-vlm"


def test_outage_leaves_the_reward_missing(task, layout):
    with FakeServer("error", status=500) as server:
        reward = ArrangeReward(judge=Judge(config(server, max_retries=0)))
        assert reward(["p"], [layout()], task=[task]) == [None]


@pytest.mark.parametrize("field, value", [("max_concurrency", 0), ("timeout_s", 0),
                                          ("max_retries", -1), ("views", ())])
def test_config_is_checked(field, value):
    with pytest.raises(ValueError, match=f"invalid JudgeConfig: {field}="):
        JudgeConfig(**{field: value})


@pytest.mark.parametrize("text, grades", [
    (('{"realism_and_3d_geometric_consistency": {"grade": 8, "comment": "ok"}, '
      '"functionality_and_activity_based_alignment": {"grade": 7}, "layout_and_furniture": 6, '
      '"color_scheme_and_material_choices": {"grade": "unknown"}, '
      '"overall_aesthetic_and_atmosphere": {"grade": 9}}'), [8, 7, 6, None, 9]),
    # prose around a fence, display-style keys, a trailing comma, "8/10" and numeric text
    (('Grades:\n```\n{"Realism and 3D Geometric Consistency": {"grade": "8/10"}, '
      '"Functionality": "5", "Layout and furniture": 4.5, "Colour scheme": 3, '
      '"Overall": {"score": 10},}\n```\nBye'), [8, 5, 4.5, 3, 10]),
])
def test_parse_grades(text, grades):
    parsed, _ = parse_grades(text)
    assert list(parsed.values()) == grades


def test_unknown_grades_count_as_the_mean_of_the_known():
    assert score_of({"a": 8.0, "b": 6.0, "c": None, "d": 7.0, "e": None}) == 35.0


@pytest.mark.parametrize("text, message", [
    ("no json here", "no JSON object"),
    ('{"realism": 8, "functionality": 7, "layout": 7, "color": 11, "overall": 8}', "outside 1-10"),
    ('{"realism": 8, "functionality": 7, "layout": 7, "color": 0, "overall": 8}', "outside 1-10"),
    ('{"realism": 8, "functionality": 7, "layout": 7, "overall": 8}', "no grade for color"),
    ('{"realism": "great", "functionality": 7, "layout": 7, "color": 7, "overall": 8}',
     "not a number"),
    ('{"realism": true, "functionality": 7, "layout": 7, "color": 7, "overall": 8}',
     "not a number"),
    (('{"realism": "unknown", "functionality": "unknown", "layout": "unknown", '
      '"color": "unknown", "overall": "unknown"}'), "every grade is unknown"),
])
def test_parse_grades_rejects(text, message):
    with pytest.raises(JudgeParseError, match=message):
        parse_grades(text)
