"""The Ollama template translation (pure core): chat templates rendered with jinja2, no torch or tokenizer.

The renderer mirrors how transformers renders chat templates (a sandboxed jinja2 environment with
``trim_blocks``/``lstrip_blocks`` and ``raise_exception``); the worker passes the tokenizer's
``apply_chat_template`` instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from dpo_tui.core.ollama_template import (
    NO_SYSTEM_WARNING,
    UNTRANSLATABLE_WARNING,
    ChatShape,
    gguf_source,
    go_quote,
    go_template,
    render_modelfile,
    shape_from_render,
    stop_strings,
)

BOS, EOS = "<|bos|>", "<|end|>"

SAMPLE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}{{ raise_exception('bad role') }}{% endif %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
CHATML_DEFAULT_SYSTEM = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
LLAMA3 = (
    "{{- bos_token }}{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
ZEPHYR = (
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + eos_token }}"
    "{% elif message['role'] == 'system' %}{{ '<|system|>\\n' + message['content'] + eos_token }}"
    "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\\n'  + message['content'] + eos_token }}{% endif %}"
    "{% if loop.last and add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}{% endfor %}"
)
MISTRAL_INST = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)
REVERSED = "{% for m in messages|reverse %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
BROKEN = "{{ raise_exception('no chat here') }}"

CONVERSATIONS = [
    ([{"role": "user", "content": "Hi"}], True),
    ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say \"yes\"\\n\tplease"}], True),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}], True),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], False),
    ([{"role": "system", "content": "S"}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
      {"role": "user", "content": "ünï 🙂"}], True),
]


def _raise(message: str) -> None:
    raise TemplateError(message)


def renderer(template: str):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    compiled = env.from_string(template)

    def render(messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        return compiled.render(messages=messages, add_generation_prompt=add_generation_prompt,
                               bos_token=BOS, eos_token=EOS)

    return render


# (template, has a system role, exact pieces or None when only the round trip is checked)
TRANSLATABLE = {
    "sample": (SAMPLE, True, ChatShape(head=BOS, default_head="", system=("<|system|>\n", "<|end|>\n"),
                                       user=("<|user|>\n", "<|end|>\n"), assistant=("<|assistant|>\n", "<|end|>\n"),
                                       generation="<|assistant|>\n")),
    "chatml_default_system": (CHATML_DEFAULT_SYSTEM, True, ChatShape(
        head="", default_head="<|im_start|>system\nYou are Qwen, a helpful assistant.<|im_end|>\n",
        system=("<|im_start|>system\n", "<|im_end|>\n"), user=("<|im_start|>user\n", "<|im_end|>\n"),
        assistant=("<|im_start|>assistant\n", "<|im_end|>\n"), generation="<|im_start|>assistant\n")),
    "llama3": (LLAMA3, True, None),
    "zephyr": (ZEPHYR, True, None),
    "mistral_inst": (MISTRAL_INST, False, ChatShape(head=BOS, default_head="", system=None, user=("[INST] ", " [/INST]"),
                                                    assistant=("", EOS), generation="")),
}


@pytest.mark.parametrize("name", sorted(TRANSLATABLE))
def test_role_marker_templates_are_cut_up_exactly(name: str) -> None:
    template, has_system, expected = TRANSLATABLE[name]
    render = renderer(template)
    shape = shape_from_render(render, BOS)
    assert shape is not None
    assert (shape.system is not None) == has_system
    if expected is not None:
        assert shape == expected
    for messages, gen in CONVERSATIONS:
        if shape.system is None and messages[0]["role"] == "system":
            continue
        assert shape.render(messages, gen) == render(messages, gen)


@pytest.mark.parametrize("template", [REVERSED, BROKEN], ids=["reversed", "raises"])
def test_untranslatable_templates_give_none(template: str) -> None:
    assert shape_from_render(renderer(template), BOS) is None


def test_without_a_bos_token_the_whole_head_is_the_default_head() -> None:
    shape = shape_from_render(renderer(SAMPLE), "")
    assert shape is not None and shape.head == "" and shape.default_head == BOS


@pytest.mark.parametrize(("text", "quoted"), [
    ("", '""'),
    ("plain", '"plain"'),
    ('a"b', '"a\\x22b"'),
    ("back\\slash", '"back\\\\slash"'),
    ("line\nnext\ttab\rret", '"line\\nnext\\ttab\\rret"'),
    ("\x01\x7f", '"\\x01\\x7f"'),
    ("é 🙂", '"é 🙂"'),
    ('"""', '"\\x22\\x22\\x22"'),
])
def test_go_quote(text: str, quoted: str) -> None:
    assert go_quote(text) == quoted


SAMPLE_SHAPE = TRANSLATABLE["sample"][2]
NO_SYSTEM_SHAPE = TRANSLATABLE["mistral_inst"][2]


# The sample template's messages loop, as Go template lines.
SAMPLE_LOOP = [
    "{{- range $i, $_ := .Messages }}",
    "{{- $last := eq (len (slice $.Messages $i)) 1 }}",
    '{{- if eq .Role "system" }}{{ "<|system|>\\n" }}{{ .Content }}{{ "<|end|>\\n" }}',
    '{{- else if eq .Role "user" }}{{ "<|user|>\\n" }}{{ .Content }}{{ "<|end|>\\n" }}'
    '{{ if $last }}{{ "<|assistant|>\\n" }}{{ end }}',
    '{{- else if eq .Role "assistant" }}{{ "<|assistant|>\\n" }}{{ .Content }}{{ if not $last }}{{ "<|end|>\\n" }}{{ end }}',
    "{{- end }}",
    "{{- end }}",
]


@pytest.mark.parametrize(("shape", "strip_bos", "expected"), [
    (SAMPLE_SHAPE, None, ['{{- if .Messages }}{{ "<|bos|>" }}{{ end }}', *SAMPLE_LOOP]),
    (SAMPLE_SHAPE, BOS, SAMPLE_LOOP),  # llama.cpp adds BOS itself: the head is empty and left out
    (NO_SYSTEM_SHAPE, BOS, [
        "{{- range $i, $_ := .Messages }}",
        "{{- $last := eq (len (slice $.Messages $i)) 1 }}",
        '{{- if eq .Role "user" }}{{ "[INST] " }}{{ .Content }}{{ " [/INST]" }}{{ if $last }}{{ end }}',
        '{{- else if eq .Role "assistant" }}{{ .Content }}{{ if not $last }}{{ "<|end|>" }}{{ end }}',
        "{{- end }}",
        "{{- end }}",
    ]),
], ids=["sample", "sample-strip-bos", "no-system"])
def test_go_template(shape: ChatShape, strip_bos: str | None, expected: list[str]) -> None:
    assert go_template(shape, strip_bos).split("\n") == expected


def test_go_template_writes_a_default_system_prompt_only_without_a_system_message() -> None:
    shape = TRANSLATABLE["chatml_default_system"][2]
    first = go_template(shape, None).split("\n")[0]
    assert first == ('{{- if .Messages }}{{ if ne (index .Messages 0).Role "system" }}'
                     '{{ "<|im_start|>system\\nYou are Qwen, a helpful assistant.<|im_end|>\\n" }}{{ end }}{{ end }}')


@pytest.mark.parametrize(("shape", "eos", "bos", "specials", "expected"), [
    (None, EOS, BOS, [EOS, "<|user|>"], [EOS]),
    (None, None, None, ["<|user|>"], []),
    (SAMPLE_SHAPE, EOS, BOS, [BOS, EOS, "<|user|>", "<|assistant|>"], [EOS, "<|user|>"]),
    (SAMPLE_SHAPE, "</s>", BOS, {EOS, "<|user|>", "<|unused|>"}, ["</s>", EOS, "<|user|>"]),
    (ChatShape("", "", None, ("<s><u>", ""), ("", "<e>"), ""), None, "<s>", ["<u>", "<s>", "<e>"], ["<e>", "<u>"]),
    (ChatShape("", "", None, ("<a><b>", ""), ("", ""), ""), None, None, ["<b>", "<a>"], ["<a>", "<b>"]),
], ids=["no-shape", "nothing", "sample", "eos-not-special", "bos-never", "in-order-of-appearance"])
def test_stop_strings(shape, eos, bos, specials, expected) -> None:
    assert stop_strings(shape, eos=eos, bos=bos, specials=specials) == expected


@pytest.mark.parametrize(("gguf", "folder", "source"), [
    ("/o/model.gguf", "/o", "./model.gguf"),
    ("/o/sub/m.gguf", "/o", "./sub/m.gguf"),
    ("/elsewhere/m.gguf", "/o", "/elsewhere/m.gguf"),
])
def test_gguf_source(gguf: str, folder: str, source: str) -> None:
    assert gguf_source(Path(gguf), Path(folder)) == source


@pytest.mark.parametrize(("shape", "warnings"), [
    (SAMPLE_SHAPE, []),
    (NO_SYSTEM_SHAPE, [NO_SYSTEM_WARNING]),
    (None, [UNTRANSLATABLE_WARNING]),
], ids=["sample", "no-system", "untranslatable"])
def test_render_modelfile(shape: ChatShape | None, warnings: list[str]) -> None:
    text, got = render_modelfile("run-1", Path("/o/model.gguf"), Path("/o"), shape, None, [EOS, "<|user|>"])
    assert got == warnings
    assert text.startswith("# Ollama Modelfile for the dpo-tui run run-1\nFROM ./model.gguf\n\n")
    assert text.endswith('PARAMETER stop "<|end|>"\nPARAMETER stop "<|user|>"\n')
    if shape is None:
        assert "TEMPLATE" not in text.replace("add a TEMPLATE", "")
    else:
        assert f'TEMPLATE """{go_template(shape, None)}"""\n' in text


def test_modelfile_stop_strings_are_json_quoted() -> None:
    text, _ = render_modelfile("r", Path("/m.gguf"), Path("/o"), None, None, ['a"b', "ü"])
    assert 'PARAMETER stop "a\\"b"' in text and 'PARAMETER stop "ü"' in text and "FROM /m.gguf" in text
