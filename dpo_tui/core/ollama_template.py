"""An Ollama Modelfile from a chat template: the template cut into literal pieces, written as a Go template.

Pure: the chat template is seen only through a ``render(messages, add_generation_prompt) -> str``
callable (the worker passes the tokenizer's ``apply_chat_template``; tests pass a jinja2 template), so
no tokenizer library is needed here.

A role-marker template (every message is ``prefix + content + suffix`` by role) is recovered by
rendering marker messages and cutting the output at the markers; :func:`shape_from_render` then
checks the cut-up version against the real template on a few conversations and gives up (``None``)
when they differ. :func:`go_template` writes the pieces as an Ollama TEMPLATE (Go ``text/template``
over ``.Messages``), and :func:`render_modelfile` the whole Modelfile.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

Render = Callable[[list[dict[str, str]], bool], str]

UNTRANSLATABLE_WARNING = ("the chat template is not a simple role-marker template; the Modelfile has no TEMPLATE, "
                          "so Ollama will fall back to the template it detects in the GGUF (check replies)")
NO_SYSTEM_WARNING = "the chat template has no system role; system messages are dropped in the Ollama template"


@dataclass
class ChatShape:
    """A role-marker chat template, cut into the literal text around each message."""

    head: str  # before the first message when it is a system message (usually BOS or nothing)
    default_head: str  # extra text before the first message when it is not a system message (a default system prompt)
    system: tuple[str, str] | None
    user: tuple[str, str]
    assistant: tuple[str, str]
    generation: str  # the generation prompt after the last user message

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        out = [self.head]
        if messages and messages[0]["role"] != "system":
            out.append(self.default_head)
        for i, m in enumerate(messages):
            last = i == len(messages) - 1
            if m["role"] == "system":
                assert self.system is not None
                out += [self.system[0], m["content"], self.system[1]]
            elif m["role"] == "user":
                out += [self.user[0], m["content"], self.user[1]]
                if last and add_generation_prompt:
                    out.append(self.generation)
            else:
                out += [self.assistant[0], m["content"]]
                if not last or not add_generation_prompt:
                    out.append(self.assistant[1])
        return "".join(out)


# Private-use characters: no real template or tokenizer treats them specially, so they survive rendering.
_MARK = {"s": "\ue000SYSTEM\ue001", "u1": "\ue000USER1\ue001", "a1": "\ue000ASSISTANT1\ue001",
         "u2": "\ue000USER2\ue001", "a2": "\ue000ASSISTANT2\ue001", "u3": "\ue000USER3\ue001"}


def shape_from_render(render: Render, bos_token: str = "") -> ChatShape | None:
    """Derive the template's literal pieces by rendering marker messages; None when it is not role-marker shaped.

    ``bos_token`` lets the head be split into BOS (always written) and a default system prompt (written
    only when the conversation has no system message).
    """
    u1, a1, u2 = ({"role": "user", "content": _MARK["u1"]}, {"role": "assistant", "content": _MARK["a1"]},
                  {"role": "user", "content": _MARK["u2"]})
    try:
        no_gen = render([u1, a1, u2], False)
        with_gen = render([u1, a1, u2], True)
        one_turn = render([u1, a1], False)
    except Exception:  # noqa: BLE001 - any template failure means "cannot translate"
        return None
    if not with_gen.startswith(no_gen):
        return None
    generation = with_gen[len(no_gen):]
    try:
        i_u1, i_a1, i_u2 = (no_gen.index(_MARK[k]) for k in ("u1", "a1", "u2"))
        j_a1 = one_turn.index(_MARK["a1"])
    except ValueError:
        return None
    t0 = no_gen[:i_u1]
    t1 = no_gen[i_u1 + len(_MARK["u1"]):i_a1]
    t2 = no_gen[i_a1 + len(_MARK["a1"]):i_u2]
    user_suffix = no_gen[i_u2 + len(_MARK["u2"]):]
    assistant_suffix = one_turn[j_a1 + len(_MARK["a1"]):]
    if not (t1.startswith(user_suffix) and t2.startswith(assistant_suffix)):
        return None
    assistant_prefix = t1[len(user_suffix):]
    user_prefix = t2[len(assistant_suffix):]
    if not t0.endswith(user_prefix):
        return None
    head_no_system = t0[: len(t0) - len(user_prefix)]

    system = None
    head = head_no_system
    default_head = ""
    with contextlib.suppress(Exception):  # a template that refuses system messages has no system role
        s = {"role": "system", "content": _MARK["s"]}
        with_system = render([s, u1, a1, u2], False)
        i_s = with_system.index(_MARK["s"])
        rest = no_gen[len(t0) - len(user_prefix):]  # from the first user prefix on
        if with_system.endswith(rest):
            before, after = with_system[:i_s], with_system[i_s + len(_MARK["s"]):len(with_system) - len(rest)]
            bos = bos_token or ""
            head = bos if bos and before.startswith(bos) and head_no_system.startswith(bos) else ""
            system = (before[len(head):], after)
            default_head = head_no_system[len(head):]
    shape = ChatShape(head, default_head, system, (user_prefix, user_suffix), (assistant_prefix, assistant_suffix),
                      generation)
    return shape if _shape_matches(shape, render) else None


def _shape_matches(shape: ChatShape, render: Render) -> bool:
    """Check the cut-up template against the real one on a few conversations."""
    u = [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": "Hi! How can I help?"},
         {"role": "user", "content": "Tell me a joke.\nA short one."}, {"role": "assistant", "content": "No."},
         {"role": "user", "content": "ok"}]
    cases: list[tuple[list[dict[str, str]], bool]] = [(u[:1], True), (u[:3], True), (u[:2], False), (u, True)]
    if shape.system is not None:
        s = [{"role": "system", "content": "Be brief."}]
        cases += [(s + u[:1], True), (s + u, True)]
    try:
        return all(shape.render(msgs, gen) == render(msgs, gen) for msgs, gen in cases)
    except Exception:  # noqa: BLE001 - a template that fails on a plain conversation cannot be translated
        return False


def go_quote(text: str) -> str:
    """A Go string literal for ``text`` (the quote itself as \\x22 so a Modelfile's \"\"\" never appears)."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append("\\x22")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _lit(text: str) -> str:
    """A Go template action printing ``text`` literally (nothing for empty text)."""
    return "{{ " + go_quote(text) + " }}" if text else ""


def go_template(shape: ChatShape, strip_bos: str | None) -> str:
    """An Ollama (Go text/template) TEMPLATE that renders ``.Messages`` like the Jinja chat template.

    ``strip_bos``: the BOS token to leave out of the head because llama.cpp adds it when tokenizing.
    """
    head = shape.head
    if strip_bos and head.startswith(strip_bos):
        head = head[len(strip_bos):]
    lines = []
    if head or shape.default_head:
        inner = _lit(head)
        if shape.default_head:
            inner += '{{ if ne (index .Messages 0).Role "system" }}' + _lit(shape.default_head) + "{{ end }}"
        lines.append("{{- if .Messages }}" + inner + "{{ end }}")
    lines.append("{{- range $i, $_ := .Messages }}")
    lines.append("{{- $last := eq (len (slice $.Messages $i)) 1 }}")
    if shape.system is not None:
        lines.append('{{- if eq .Role "system" }}' + _lit(shape.system[0]) + "{{ .Content }}" + _lit(shape.system[1]))
        lines.append('{{- else if eq .Role "user" }}' + _lit(shape.user[0]) + "{{ .Content }}" + _lit(shape.user[1])
                     + "{{ if $last }}" + _lit(shape.generation) + "{{ end }}")
    else:
        lines.append('{{- if eq .Role "user" }}' + _lit(shape.user[0]) + "{{ .Content }}" + _lit(shape.user[1])
                     + "{{ if $last }}" + _lit(shape.generation) + "{{ end }}")
    lines.append('{{- else if eq .Role "assistant" }}' + _lit(shape.assistant[0]) + "{{ .Content }}"
                 + "{{ if not $last }}" + _lit(shape.assistant[1]) + "{{ end }}")
    lines.append("{{- end }}")
    lines.append("{{- end }}")
    return "\n".join(lines)


def stop_strings(shape: ChatShape | None, *, eos: str | None, bos: str | None, specials: Iterable[str]) -> list[str]:
    """End-of-turn strings: ``eos`` and the special tokens that close an assistant turn or open a user turn.

    Within each piece the specials are taken in the order they appear in it; BOS is never a stop.
    """
    stops: list[str] = []
    if eos:
        stops.append(eos)
    if shape is not None:
        candidates = sorted(set(specials))
        for piece in (shape.assistant[1], shape.user[0]):
            for token in sorted(candidates, key=lambda t: piece.find(t) if t in piece else 1 << 30):
                if token and token in piece and token not in stops and token != bos:
                    stops.append(token)
    return stops


def gguf_source(gguf_path: Path, ollama_dir: Path) -> str:
    """The Modelfile's FROM: relative (``./model.gguf``) when the GGUF is inside the Ollama folder."""
    try:
        return f"./{gguf_path.relative_to(ollama_dir).as_posix()}"
    except ValueError:
        return str(gguf_path)


def render_modelfile(run_id: str, gguf_path: Path, ollama_dir: Path, shape: ChatShape | None,
                     strip_bos: str | None, stops: list[str]) -> tuple[str, list[str]]:
    """The Modelfile text and the warnings an operator should see about it."""
    warnings: list[str] = []
    lines = [f"# Ollama Modelfile for the dpo-tui run {run_id}", f"FROM {gguf_source(gguf_path, ollama_dir)}", ""]
    if shape is None:
        warnings.append(UNTRANSLATABLE_WARNING)
        lines.append("# The chat template could not be translated to a Go template; add a TEMPLATE here if needed.")
    else:
        lines += [f'TEMPLATE """{go_template(shape, strip_bos)}"""', ""]
        if shape.system is None:
            warnings.append(NO_SYSTEM_WARNING)
    for stop in stops:
        lines.append(f"PARAMETER stop {json.dumps(stop, ensure_ascii=False)}")
    return "\n".join(lines) + "\n", warnings
