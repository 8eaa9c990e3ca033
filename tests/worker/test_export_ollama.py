"""Ollama Modelfile from a real tokenizer: Jinja chat templates translated to Go templates, checked against it.

The translation is derived by rendering the template with marker messages (no Jinja parsing), then
verified on real conversations. Where Go is installed, the generated TEMPLATE is executed with Go's
text/template (what Ollama uses) and must produce the same prompt as the Jinja template.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from dpo_tui.core.ollama_template import ChatShape, go_quote, go_template
from dpo_tui.worker.export import Progress, chat_shape, modelfile_text, stop_tokens

SAMPLE_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}{{ raise_exception('bad role') }}{% endif %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
TEMPLATES = {
    "sample": SAMPLE_TEMPLATE,
    # Qwen2.5-style ChatML with a default system prompt when none is given.
    "chatml_default_system": (
        "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
        "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
        "{%- for message in messages %}{%- if not (message.role == 'system' and loop.first) %}"
        "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endif %}{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
    ),
    "llama3": (
        "{{- bos_token }}{%- for message in messages %}"
        "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
        "{%- endfor %}{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
    ),
    "zephyr": (
        "{% for message in messages %}{% if message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + eos_token }}"
        "{% elif message['role'] == 'system' %}{{ '<|system|>\\n' + message['content'] + eos_token }}"
        "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\\n'  + message['content'] + eos_token }}{% endif %}"
        "{% if loop.last and add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}{% endfor %}"
    ),
    # Mistral-instruct: no system role at all.
    "mistral_inst": (
        "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('Conversation roles must alternate') }}{% endif %}"
        "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
        "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
        "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
    ),
}
CONVERSATIONS = [
    ([{"role": "user", "content": "Hi"}], True),
    ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say \"yes\"\\n\tplease"}], True),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}], True),
    ([{"role": "system", "content": "S"}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
      {"role": "user", "content": "ünï 🙂"}], True),
]


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<|bos|>", "<|end|>", "<|user|>", "a", "b"])}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|end|>",
                                   extra_special_tokens=["<|user|>"])


def shape_for(tokenizer, template: str) -> ChatShape | None:
    tokenizer.chat_template = template
    return chat_shape(tokenizer)


def jinja(tokenizer, messages, gen: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_role_marker_templates_are_cut_up_exactly(tokenizer, name: str) -> None:
    shape = shape_for(tokenizer, TEMPLATES[name])
    assert shape is not None
    for messages, gen in CONVERSATIONS:
        if shape.system is None and messages[0]["role"] == "system":
            continue
        assert shape.render(messages, gen) == jinja(tokenizer, messages, gen)
    assert (shape.system is None) == (name == "mistral_inst")


def test_sample_template_pieces(tokenizer) -> None:
    shape = shape_for(tokenizer, SAMPLE_TEMPLATE)
    assert shape == ChatShape(head="<|bos|>", default_head="", system=("<|system|>\n", "<|end|>\n"),
                              user=("<|user|>\n", "<|end|>\n"), assistant=("<|assistant|>\n", "<|end|>\n"),
                              generation="<|assistant|>\n")
    assert stop_tokens(tokenizer, shape) == ["<|end|>", "<|user|>"]


def test_untranslatable_template_gives_no_template_and_a_warning(tokenizer, tmp_path: Path) -> None:
    # Roles rendered in reverse order: no prefix/suffix cut reproduces it.
    tokenizer.chat_template = "{% for m in messages|reverse %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    assert chat_shape(tokenizer) is None
    progress = Progress()
    text = modelfile_text(tokenizer, tmp_path / "m.gguf", tmp_path, "run-1", progress)
    assert "TEMPLATE" not in text.replace("add a TEMPLATE", "") and 'PARAMETER stop "<|end|>"' in text
    assert any("not a simple role-marker template" in w for w in progress.warnings)
    tokenizer.chat_template = None
    assert chat_shape(tokenizer) is None


def test_modelfile_layout(tokenizer, tmp_path: Path) -> None:
    tokenizer.chat_template = SAMPLE_TEMPLATE
    text = modelfile_text(tokenizer, tmp_path / "o" / "model.gguf", tmp_path / "o", "run-1", Progress())
    assert text.startswith("# Ollama Modelfile for the dpo-tui run run-1\nFROM ./model.gguf\n")
    template = re.search(r'TEMPLATE """(.*?)"""', text, re.S).group(1)
    assert '"""' not in template and "<|bos|>" in template  # this tokenizer does not add BOS itself
    assert text.rstrip().endswith('PARAMETER stop "<|user|>"')
    outside = modelfile_text(tokenizer, tmp_path / "elsewhere.gguf", tmp_path / "o", "run-1", Progress())
    assert f"FROM {tmp_path / 'elsewhere.gguf'}" in outside


def test_go_quote() -> None:
    assert go_quote('a"b\\c\n\t\x01é') == '"a\\x22b\\\\c\\n\\t\\x01é"'


GO_PROGRAM = r"""
package main

import (
	"encoding/json"
	"os"
	"strings"
	"text/template"
)

type Message struct {
	Role    string
	Content string
}

type Data struct {
	Messages []Message
}

func main() {
	text, _ := os.ReadFile(os.Args[1])
	t := template.Must(template.New("t").Parse(string(text)))
	var cases []Data
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		panic(err)
	}
	outs := []string{}
	for _, c := range cases {
		var b strings.Builder
		if err := t.Execute(&b, c); err != nil {
			panic(err)
		}
		outs = append(outs, b.String())
	}
	json.NewEncoder(os.Stdout).Encode(outs)
}
"""


@pytest.mark.skipif(shutil.which("go") is None, reason="Go is not installed (Ollama's templates are Go text/template)")
@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_go_template_renders_like_jinja(tokenizer, tmp_path: Path, name: str) -> None:
    shape = shape_for(tokenizer, TEMPLATES[name])
    assert shape is not None
    (tmp_path / "main.go").write_text(GO_PROGRAM)
    (tmp_path / "t.tmpl").write_text(go_template(shape, strip_bos=None))
    cases = [(m, g) for m, g in CONVERSATIONS if shape.system is not None or m[0]["role"] != "system"]
    payload = json.dumps([{"Messages": [{"Role": x["role"], "Content": x["content"]} for x in m]} for m, _ in cases])
    env = {"GOCACHE": str(tmp_path / "gocache"), "GO111MODULE": "off", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin:/usr/local/go/bin",
           "GOPATH": str(tmp_path / "gopath")}
    proc = subprocess.run(["go", "run", str(tmp_path / "main.go"), str(tmp_path / "t.tmpl")], input=payload,
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rendered = json.loads(proc.stdout)
    assert len(rendered) == len(cases)
    for (messages, gen), go_out in zip(cases, rendered, strict=True):
        assert go_out == jinja(tokenizer, messages, gen)
    # With BOS added by llama.cpp itself, the template leaves it out.
    if shape.head.startswith("<|bos|>"):
        assert "<|bos|>" not in go_template(shape, strip_bos="<|bos|>").split("range")[0]
