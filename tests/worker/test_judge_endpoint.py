"""The endpoint judge against a real HTTP server in the test (chat-completions shape, 127.0.0.1, a free port).

Nothing is mocked in the client: requests go through urllib and sockets. The stub answers from a script
(one response per request, the last repeated) and records what it was sent.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dpo_tui.core.errors import UserError
from dpo_tui.core.judge import judge_both_orders, parse_judge_spec
from dpo_tui.core.judge_endpoint import DEFAULT_PROMPT, EndpointJudge
from dpo_tui.worker.judges import build_judge

KEY_ENV = "DPO_TUI_TEST_JUDGE_KEY"
SECRET = "sk-test-5ecret-4242"

# (status, body, extra headers) or a callable of the request's message text returning the reply content.
Step = tuple[int, bytes, dict[str, str]] | Callable[[str], str]


def completion(content: str) -> tuple[int, bytes, dict[str, str]]:
    body = {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": content}}]}
    return 200, json.dumps(body).encode(), {"Content-Type": "application/json"}


@dataclass
class Stub:
    url: str
    script: list[Step] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    hang: bool = False

    def content(self, index: int = -1) -> str:
        return str(self.requests[index]["body"]["messages"][0]["content"])


def _handler(stub: Stub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            stub.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(raw)})
            if stub.hang:
                stub.release.wait(30)
                return
            step = stub.script[min(len(stub.requests) - 1, len(stub.script) - 1)]
            if callable(step):
                step = completion(step(stub.content()))
            status, body, headers = step
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stub]:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(KEY_ENV, raising=False)
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server.daemon_threads = True
    stub = Stub(url=f"http://127.0.0.1:{server.server_address[1]}/v1")
    server.RequestHandlerClass = _handler(stub)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        stub.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


def make(stub_url: str, extra: str = "", sleeps: list[float] | None = None) -> EndpointJudge:
    spec = parse_judge_spec(f"url={stub_url},model=judge-model,key_env={KEY_ENV}{extra}")
    return EndpointJudge(spec, sleep=(sleeps.append if sleeps is not None else lambda s: None))


def prefers_oslo(content: str) -> str:
    answer_a = content.split("[Answer A]")[1].split("[Answer B]")[0]
    return ("Oslo is the capital.\nWinner: A" if "Oslo" in answer_a else "Oslo is the capital.\nWinner: B")


def test_clear_winner_both_orders_and_the_request_shape(stub: Stub) -> None:
    stub.script = [prefers_oslo]
    judge = build_judge(parse_judge_spec(f"url={stub.url}/,model=judge-model"))
    combined, first, second = judge_both_orders(judge, "What is the capital of Norway?", "Oslo.", "Paris.")
    assert (combined.winner, first.winner, second.winner) == ("a", "a", "a")
    assert combined.reason == "Oslo is the capital."
    assert len(stub.requests) == 2
    request = stub.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["body"]["model"] == "judge-model"
    assert request["body"]["temperature"] == 0 and request["body"]["max_tokens"] == 256
    assert request["body"]["messages"][0]["role"] == "user"
    assert stub.content(0) == DEFAULT_PROMPT.format(prompt="What is the capital of Norway?", answer_a="Oslo.", answer_b="Paris.")
    assert "Paris." in stub.content(1).split("[Answer A]")[1].split("[Answer B]")[0]
    assert "Authorization" not in request["headers"]
    assert (judge.calls, judge.retries_used, judge.failures) == (2, 0, 0)  # type: ignore[attr-defined]


def test_a_judge_that_always_says_a_gives_a_position_bias_tie(stub: Stub) -> None:
    stub.script = [completion("Both are fine.\n[[A]]")]
    combined, first, second = judge_both_orders(make(stub.url), "p", "one", "two")
    assert (first.winner, second.winner, combined.winner) == ("a", "b", "tie")
    assert combined.reason == "the judge preferred whichever answer came first"


def test_two_500s_then_an_answer_is_retried_with_backoff(stub: Stub) -> None:
    fail = (500, b'{"error": {"message": "overloaded"}}', {"Content-Type": "application/json"})
    stub.script = [fail, fail, completion("Winner: B")]
    sleeps: list[float] = []
    judge = make(stub.url, ",retries=2", sleeps)
    verdict = judge.compare("p", "one", "two")
    assert verdict.winner == "b"
    assert len(stub.requests) == 3
    assert sleeps == [0.5, 1.0]
    assert (judge.calls, judge.retries_used, judge.failures) == (1, 2, 0)


def test_500_forever_is_no_verdict_after_the_retries(stub: Stub) -> None:
    stub.script = [(500, b'{"error": {"message": "overloaded"}}', {})]
    judge = make(stub.url, ",retries=2")
    verdict = judge.compare("p", "one", "two")
    assert verdict.winner is None
    assert verdict.reason.startswith("no verdict: HTTP 500") and "overloaded" in verdict.reason
    assert "after 3 attempts" in verdict.reason
    assert len(stub.requests) == 3
    assert (judge.calls, judge.retries_used, judge.failures) == (1, 2, 1)
    combined, _, _ = judge_both_orders(judge, "p", "one", "two")
    assert combined.winner is None and combined.reason.startswith("no verdict: HTTP 500")
    assert not combined.reason.startswith("no verdict: no verdict")


def test_a_4xx_is_not_retried(stub: Stub) -> None:
    stub.script = [(404, b'{"error": {"message": "model judge-model not found"}}', {})]
    judge = make(stub.url, ",retries=3")
    verdict = judge.compare("p", "one", "two")
    assert verdict.winner is None and "HTTP 404" in verdict.reason and "not found" in verdict.reason
    assert len(stub.requests) == 1 and judge.retries_used == 0


@pytest.mark.parametrize(("step", "why"), [
    (completion("Both answers have merit; it depends."), "names no winner"),
    ((200, b"<html>502 Bad Gateway</html>", {"Content-Type": "text/html"}), "not JSON"),
    ((200, b'{"error": {"message": "no such model"}}', {}), "no choices: no such model"),
    ((200, b'{"choices": []}', {}), "no choices"),
    ((200, b'{"choices": [{"message": {"role": "assistant"}}]}', {}), "no text"),
])
def test_bad_replies_are_no_verdict(stub: Stub, step: Step, why: str) -> None:
    stub.script = [step]
    judge = make(stub.url)
    verdict = judge.compare("p", "one", "two")
    assert verdict.winner is None and verdict.reason.startswith("no verdict: ") and why in verdict.reason
    assert len(stub.requests) == 1 and judge.failures == 1


def test_a_timeout_is_no_verdict(stub: Stub) -> None:
    stub.hang = True
    judge = make(stub.url, ",timeout=0.5,retries=1")
    verdict = judge.compare("p", "one", "two")
    assert verdict.winner is None and "no reply within 0.5 s" in verdict.reason
    assert judge.retries_used == 1 and len(stub.requests) == 2


def test_an_unreachable_endpoint_is_no_verdict() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    judge = make(f"http://127.0.0.1:{port}/v1", ",retries=1")
    verdict = judge.compare("p", "one", "two")
    assert verdict.winner is None and "cannot reach" in verdict.reason and judge.retries_used == 1


def test_the_key_goes_in_the_header_and_nowhere_else(stub: Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    stub.script = [prefers_oslo]
    judge = make(stub.url)
    verdict = judge.compare("capital?", "Oslo", "Rome")
    assert stub.requests[0]["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert verdict.winner == "a"
    # A server that echoes the header back in its error: the reason masks it.
    stub.script = [(401, f'{{"error": {{"message": "bad key Bearer {SECRET}"}}}}'.encode(), {})]
    refused = judge.compare("capital?", "Oslo", "Rome")
    assert refused.winner is None and "HTTP 401" in refused.reason
    for text in (repr(judge), judge.name, judge.spec.label, judge.spec.text, repr(judge.spec), str(judge.__dict__),
                 verdict.reason, refused.reason):
        assert SECRET not in text


def test_the_custom_prompt_file_is_used(stub: Stub, tmp_path: Path) -> None:
    template = tmp_path / "judge.txt"
    template.write_text("HOUSE-RULES {{keep}} Q={prompt} | A={answer_a} | B={answer_b}\nSay Winner: A or B.\n")
    stub.script = [completion("Winner: b")]
    judge = make(stub.url, f",prompt={template}")
    assert judge.compare("What?", "one {answer_b}", "two").winner == "b"
    assert stub.content(0) == "HOUSE-RULES {{keep}} Q=What? | A=one {answer_b} | B=two\nSay Winner: A or B.\n"


def test_a_prompt_file_without_the_answers_is_refused(tmp_path: Path) -> None:
    template = tmp_path / "judge.txt"
    template.write_text("Which is better? {prompt}\n")
    with pytest.raises(UserError) as err:
        make("http://127.0.0.1:9/v1", f",prompt={template}")
    text = str(err.value)
    assert str(template) in text and "{answer_a}" in text and "{answer_b}" in text


def test_redirects_to_another_host_are_not_followed(stub: Stub) -> None:
    port = stub.url.split(":")[2].split("/")[0]
    stub.script = [(307, b"", {"Location": f"http://localhost:{port}/v1/chat/completions"})]
    verdict = make(stub.url).compare("p", "one", "two")
    assert verdict.winner is None and "another host" in verdict.reason
    assert len(stub.requests) == 1


def test_a_same_host_307_is_followed_with_the_body(stub: Stub) -> None:
    stub.script = [(307, b"", {"Location": "/v2/chat/completions"}), completion("Winner: A")]
    assert make(stub.url).compare("p", "one", "two").winner == "a"
    assert [r["path"] for r in stub.requests] == ["/v1/chat/completions", "/v2/chat/completions"]
    assert stub.requests[1]["body"]["model"] == "judge-model"
