"""The endpoint judge: asks an OpenAI-compatible chat-completions server (vLLM, llama.cpp server, Ollama) which
of two answers is better. Standard library only (``urllib``), so ``core`` stays free of new dependencies.

One :meth:`EndpointJudge.compare` is one POST to ``{url}/chat/completions`` with the judge prompt (the
operator's ``prompt=FILE`` or :data:`DEFAULT_PROMPT`) filled in, ``temperature`` 0 and ``max_tokens`` 256.
The reply must say who won (``Winner: A``/``B``/``tie``; ``[[A]]``-style and a bare ``A`` on the last line
are accepted too). Anything that goes wrong at call time — a timeout, an HTTP error, a body that is not
JSON or has no ``choices``, a reply that names no winner — is a :class:`Verdict` with ``winner=None``
("no verdict: why"), never an exception: one bad judgement must not end an evaluation of hundreds.

The API key is read from the environment variable ``spec.key_env`` at every call and only ever placed in
the ``Authorization`` header: it is not stored on the object, and any reason text that would contain it
(a server echoing the header back in an error body) has it masked.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import Problem, UserError, first_line
from .fsutil import JSON_ERRORS
from .judge import JudgeSpec, Verdict, Winner

DEFAULT_PROMPT = """\
You are a careful, impartial judge. Compare two answers to the same prompt and decide which one is better.
Judge helpfulness, correctness, relevance and clarity. Do not let the order of the answers, their length
or their style sway you; a shorter answer that is right beats a longer one that is not.

[Prompt]
{prompt}

[Answer A]
{answer_a}

[Answer B]
{answer_b}

Explain your decision in one or two sentences. Then write a last line that is exactly one of:
Winner: A
Winner: B
Winner: tie
"""

PLACEHOLDERS = ("prompt", "answer_a", "answer_b")
REQUIRED_PLACEHOLDERS = ("answer_a", "answer_b")
MAX_TOKENS = 256
REASON_CHARS = 300
# A chat-completions body for a 256-token reply is a few KB; more than this is not a judge answering.
MAX_BODY_BYTES = 1 << 20
MAX_TEMPLATE_BYTES = 256 * 1024
MAX_REDIRECTS = 3
BACKOFF_FIRST_S = 0.5
BACKOFF_CAP_S = 8.0
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")
_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
# "Winner: A", "**Winner:** answer b", "The winner is A", "Winner: a tie" (the article is skipped only when
# something follows it, so "Winner: a" is still A).
_WINNER_LINE = re.compile(r"winner\W{0,5}(?:is\s+)?(?:an?\s+)?(?:(?:answer|assistant|response)\s*)?(tie|a|b|c)\b", re.I)
_BRACKETS = re.compile(r"\[\[\s*(a|b|tie|c)\s*\]\]", re.I)
_BARE = re.compile(r"^(?:answer|assistant|response)?\s*(a|b|tie)$", re.I)
_WINNER_OF: dict[str, Winner] = {"a": "a", "b": "b", "tie": "tie", "c": "tie"}
# Worth another try: the server or the path to it may recover. Anything else in 4xx will not.
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def load_template(path: str) -> str:
    """The judge prompt in ``path`` (UTF-8); a :class:`UserError` when it cannot be used."""
    where = str(Path(path).expanduser())
    try:
        raw = Path(where).read_bytes()
    except OSError as exc:
        raise UserError("Cannot read the judge prompt file", [Problem(first_line(exc), file=where, field="prompt=")],
                        hint="give a readable UTF-8 text file, or leave prompt= out for the default prompt") from None
    if len(raw) > MAX_TEMPLATE_BYTES:
        raise UserError("The judge prompt file is too large", [Problem(f"{len(raw)} bytes (at most {MAX_TEMPLATE_BYTES})",
                        file=where, field="prompt=")], hint="a judge prompt is a page of text with {answer_a} and {answer_b}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError("The judge prompt file is not UTF-8 text", [Problem(f"byte {exc.start} cannot be decoded",
                        file=where, field="prompt=")], hint="save it as UTF-8") from None
    missing = [name for name in REQUIRED_PLACEHOLDERS if "{" + name + "}" not in text]
    if missing:
        raise UserError("The judge prompt file lacks a placeholder",
                        [Problem(f"no {', '.join('{' + m + '}' for m in missing)} in the text", file=where, field="prompt=")],
                        hint="write {prompt}, {answer_a} and {answer_b} where the prompt and the two answers go "
                             "(see docs/judges.md for the default prompt)")
    return text


def render(template: str, prompt: str, a: str, b: str) -> str:
    """Fill the placeholders in one pass, so braces inside an answer are never filled in themselves."""
    values = {"prompt": prompt, "answer_a": a, "answer_b": b}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def parse_reply(text: str) -> tuple[Winner | None, str]:
    """(winner, reason) from a judge model's reply; winner None when the reply names none.

    The last ``Winner: X`` line wins, then the last ``[[X]]``, then a bare ``A``/``B``/``tie`` as the last
    line. Case, markdown emphasis and trailing punctuation do not matter; ``C`` (the MT-bench tie) is a tie.
    A reasoning model's ``<think>`` block is ignored. The reason is the rest of the reply, one line.
    """
    body = _THINK.sub(" ", text or "").strip()
    lines = [line for line in body.splitlines() if line.strip()]
    winner: Winner | None = None
    drop: int | None = None
    bare = False
    for index in range(len(lines) - 1, -1, -1):
        match = _WINNER_LINE.search(lines[index].replace("*", ""))
        if match:
            winner, drop = _WINNER_OF[match.group(1).lower()], index
            break
    if winner is None:
        for index in range(len(lines) - 1, -1, -1):
            found = _BRACKETS.findall(lines[index])
            if found:
                winner, drop = _WINNER_OF[found[-1].lower()], index
                break
    if winner is None and lines:
        last = re.sub(r"[^\w\s]", " ", lines[-1]).strip()
        match = _BARE.match(re.sub(r"\s+", " ", last))
        if match:
            winner, drop = _WINNER_OF[match.group(1).lower()], len(lines) - 1
            bare = True
    rest = [line for i, line in enumerate(lines) if i != drop]
    if drop is not None and not bare:
        # Text on the verdict line besides the verdict itself ("[[A]] because ...") is part of the reason;
        # a lone word left over ("The winner is A") is not.
        leftover = _BRACKETS.sub(" ", _WINNER_LINE.sub(" ", lines[drop].replace("*", ""))).strip(" :-()[]")
        if len(leftover.split()) >= 2:
            rest.append(leftover)
    reason = re.sub(r"\s+", " ", " ".join(rest)).strip()[:REASON_CHARS]
    return winner, reason


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects come back as errors: :meth:`EndpointJudge._post` decides which (if any) to follow."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        return None


class _Failure(Exception):
    """One failed attempt: why, and whether another attempt could help."""

    def __init__(self, why: str, retry: bool, wait_s: float | None = None) -> None:
        super().__init__(why)
        self.why, self.retry, self.wait_s = why, retry, wait_s


class EndpointJudge:
    """A judge behind an OpenAI-compatible ``/chat/completions`` endpoint.

    ``sleep`` and ``backoff_s`` exist so tests can retry without waiting; the wait before retry ``n``
    (1-based) is ``backoff_s * 2**(n-1)`` capped at ``backoff_cap_s`` (a numeric ``Retry-After`` within the
    cap is honoured). Counters for job reports: ``calls`` (comparisons asked), ``retries_used`` (extra
    attempts), ``failures`` (comparisons that ended without a verdict).
    """

    def __init__(self, spec: JudgeSpec, *, sleep: Callable[[float], None] = time.sleep,
                 backoff_s: float = BACKOFF_FIRST_S, backoff_cap_s: float = BACKOFF_CAP_S) -> None:
        if spec.kind != "endpoint":
            raise ValueError(f"not an endpoint spec: {spec.label}")
        self.spec = spec
        self.name = spec.label
        self.template = load_template(spec.prompt_file) if spec.prompt_file else DEFAULT_PROMPT
        self.endpoint = spec.url.rstrip("/") + "/chat/completions"
        self._sleep, self._backoff_s, self._backoff_cap_s = sleep, backoff_s, backoff_cap_s
        self._opener = urllib.request.build_opener(_NoRedirect())
        self._lock = threading.Lock()
        self.calls = 0
        self.retries_used = 0
        self.failures = 0

    def __repr__(self) -> str:
        return f"EndpointJudge({self.name!r}, key_env={self.spec.key_env!r})"

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"calls": self.calls, "retries_used": self.retries_used, "failures": self.failures}

    def close(self) -> None:
        """Nothing is held between calls (one connection per request); here for the judge protocol."""

    def compare(self, prompt: str, a: str, b: str) -> Verdict:
        with self._lock:
            self.calls += 1
        key = os.environ.get(self.spec.key_env) or ""
        verdict = self._judge(render(self.template, prompt, a, b), key)
        if key:
            verdict = Verdict(verdict.winner, verdict.reason.replace(key, "***"))
        if verdict.winner is None:
            with self._lock:
                self.failures += 1
        return verdict

    def _judge(self, content: str, key: str) -> Verdict:
        payload = json.dumps({"model": self.spec.model, "messages": [{"role": "user", "content": content}],
                              "temperature": 0, "max_tokens": MAX_TOKENS}).encode("utf-8")
        attempt = 0
        while True:
            try:
                reply = self._post(payload, key)
                break
            except _Failure as failure:
                if not failure.retry or attempt >= self.spec.retries:
                    tries = f" after {attempt + 1} attempts" if attempt else ""
                    return Verdict(None, f"no verdict: {failure.why}{tries}")
                attempt += 1
                with self._lock:
                    self.retries_used += 1
                wait = min(self._backoff_s * 2 ** (attempt - 1), self._backoff_cap_s)
                if failure.wait_s is not None:
                    wait = min(max(wait, failure.wait_s), self._backoff_cap_s)
                self._sleep(wait)
        winner, reason = parse_reply(reply)
        if winner is None:
            shown = re.sub(r"\s+", " ", reply).strip()[:120]
            return Verdict(None, f"no verdict: the reply names no winner ({shown!r})")
        return Verdict(winner, reason or f"the judge chose {winner}")

    def _post(self, payload: bytes, key: str) -> str:
        """The reply text of one request (following same-origin 307/308 redirects); :class:`_Failure` otherwise."""
        url = self.endpoint
        for _ in range(MAX_REDIRECTS + 1):
            headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "dpo-tui-judge"}
            if key:
                headers["Authorization"] = f"Bearer {key}"
            request = urllib.request.Request(url, data=payload, headers=headers, method="POST")
            try:
                with self._opener.open(request, timeout=self.spec.timeout_s) as response:
                    body = response.read(MAX_BODY_BYTES + 1)
            except urllib.error.HTTPError as exc:
                location = exc.headers.get("Location") if exc.headers else None
                if exc.code in (301, 302, 303, 307, 308) and location:
                    url = self._redirect_target(url, location, exc.code)
                    continue
                raise _Failure(f"HTTP {exc.code} {exc.reason}{_error_detail(exc)}", exc.code in RETRY_STATUS or exc.code >= 500,
                               _retry_after(exc)) from None
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, TimeoutError):
                    raise _Failure(f"no reply within {self.spec.timeout_s:g} s", True) from None
                why = first_line(exc.reason) if isinstance(exc.reason, BaseException) else str(exc.reason)
                raise _Failure(f"cannot reach {self.spec.url}: {why}", True) from None
            except TimeoutError:
                raise _Failure(f"no reply within {self.spec.timeout_s:g} s", True) from None
            except (http.client.HTTPException, ConnectionError, OSError) as exc:
                raise _Failure(f"connection failed: {first_line(exc)}", True) from None
            return _reply_text(body)
        raise _Failure(f"more than {MAX_REDIRECTS} redirects", False)

    def _redirect_target(self, url: str, location: str, code: int) -> str:
        target = urllib.parse.urljoin(url, location)
        old, new = urllib.parse.urlsplit(url), urllib.parse.urlsplit(target)
        if (old.scheme, old.netloc) != (new.scheme, new.netloc):
            # The key travels in the Authorization header: it must not go to a host the operator did not name.
            raise _Failure(f"the endpoint redirected to another host ({new.scheme}://{new.hostname}); put the final "
                           "address in url=", False)
        if code not in (307, 308):
            raise _Failure(f"the endpoint answered HTTP {code} (a redirect that drops the request body); put the "
                           f"final address in url=", False)
        return target


def _reply_text(body: bytes) -> str:
    if len(body) > MAX_BODY_BYTES:
        raise _Failure(f"the reply is larger than {MAX_BODY_BYTES // 1024} KiB", False)
    try:
        data = json.loads(body.decode("utf-8"))
    except JSON_ERRORS:
        shown = body[:80].decode("utf-8", "replace").strip()
        raise _Failure(f"the reply is not JSON ({shown!r})", False) from None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        error = data.get("error") if isinstance(data, dict) else None
        detail = f": {first_line(Exception(str(error.get('message', error) if isinstance(error, dict) else error)))}" if error else ""
        raise _Failure(f"the reply has no choices{detail}", False)
    choice = choices[0]
    message = choice.get("message")
    text = message.get("content") if isinstance(message, dict) else choice.get("text")
    if not isinstance(text, str):
        raise _Failure("the reply's first choice has no text", False)
    return text


def _error_detail(exc: urllib.error.HTTPError) -> str:
    """The first line of an error body ("model 'x' not found"), when it says something."""
    try:
        raw = exc.read(2000).decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        return ""
    try:
        data = json.loads(raw)
        error = data.get("error", data) if isinstance(data, dict) else data
        raw = str(error.get("message", error)) if isinstance(error, dict) else str(error)
    except JSON_ERRORS:
        pass
    line = next((line.strip() for line in raw.splitlines() if line.strip()), "")
    return f": {line[:160]}" if line else ""


def _retry_after(exc: urllib.error.HTTPError) -> float | None:
    value = exc.headers.get("Retry-After") if exc.headers else None
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
