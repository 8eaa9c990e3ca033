"""Token statistics and the trainer-exact preview (dpo_tui.core.tokenstats), with a tokenizer built here from
``tokenizers`` alone (no transformers). tests/worker/test_data_shapes_train.py proves the same ids equal what
TRL's DPOTrainer produces."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dpo_tui.core.data import FINDING_CODES, check_data, load_preference_data
from dpo_tui.core.errors import UserError
from dpo_tui.core.tokenstats import ChatTokenizer, TokenStats, add_token_stats, preview_pair

REPO = Path(__file__).resolve().parents[2]
BOS, EOS, PAD = "<|bos|>", "<|end|>", "<|pad|>"
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'user' and loop.previtem is defined and loop.previtem['role'] == 'user' %}"
    "{{ raise_exception('roles must alternate') }}{% endif %}"
    "<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
CORPUS = ["What is an atom? An atom is the smallest unit of matter.", "hello world, the sky is blue"] * 20


def build_tokenizer(folder: Path, template: str | None = TEMPLATE) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=[PAD, BOS, EOS, "<|user|>", "<|assistant|>",
                                                                  "<|system|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B",
                                                       special_tokens=[(BOS, tok.token_to_id(BOS))])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD, "tokenizer_class": "TokenizersBackend"}))
    if template is not None:
        (folder / "chat_template.jinja").write_text(template)
    return folder


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    return build_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def tok(tok_dir) -> ChatTokenizer:
    return ChatTokenizer.from_dir(tok_dir)


def U(t):
    return {"role": "user", "content": t}


def A(t):
    return {"role": "assistant", "content": t}


def ids(tok, text, special):
    return tok.tok.encode(text, add_special_tokens=special).ids


def test_standard_row_matches_trl_semantics(tok):
    row = {"prompt": "What is an atom?\n", "chosen": "An atom.", "rejected": "hello world" + EOS}
    (pp,) = tok.prepare([row])
    full_c = ids(tok, row["prompt"] + row["chosen"] + EOS, True)  # eos appended as text
    full_r = ids(tok, row["prompt"] + row["rejected"], True)  # already ends with eos: not appended twice
    p = ids(tok, row["prompt"], True)
    assert p[0] == tok.bos_id and pp.prompt_ids == p
    assert pp.prompt_ids + pp.chosen_ids == full_c and pp.chosen_ids[-1] == tok.eos_id
    assert pp.prompt_ids + pp.rejected_ids == full_r and pp.rejected_ids[-2:] != [tok.eos_id, tok.eos_id]


def test_conversational_row_uses_the_chat_template(tok):
    row = {"prompt": [U("What is an atom?")], "chosen": [A("An atom.")], "rejected": [A("hello")]}
    assert tok.render(row["prompt"], add_generation_prompt=True) == f"{BOS}<|user|>\nWhat is an atom?{EOS}\n<|assistant|>\n"
    (pp,) = tok.prepare([row])
    assert pp.prompt_ids == ids(tok, tok.render(row["prompt"], add_generation_prompt=True), False)
    assert pp.prompt_ids.count(tok.bos_id) == 1  # one BOS: rendered text tokenized without special tokens
    assert pp.prompt_ids + pp.chosen_ids == ids(tok, tok.render(row["prompt"] + row["chosen"]), False)
    assert tok.decode(pp.chosen_ids) == f"An atom.{EOS}\n"


def test_prompt_not_prefix_is_counted(tok):
    # the generation prompt "<|assistant|>\n" is not how the full conversation continues when the completion
    # is rendered by a template that differs: force it with a template that renders the prompt differently
    t = ChatTokenizer(tok.tok, tok.special, "{% for m in messages %}{{ m['content'] }}{% endfor %}"
                                            "{% if add_generation_prompt %} >>{% endif %}")
    (pp,) = t.prepare([{"prompt": [U("hello")], "chosen": [A(" world")], "rejected": [A(" sky")]}])
    assert pp.prompt_left_out > 0


def test_token_stats_percentiles_truncation_drop_and_padding(tmp_path, tok):
    rows = [{"prompt": "What is an atom?\n" * k, "chosen": "An atom is the smallest unit of matter.", "rejected": "hello"}
            for k in (1, 1, 2, 8)]
    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rep = check_data(str(p))
    lens = [len(pp.prompt_ids) for pp in tok.prepare(rows)]
    max_len = lens[3]  # the longest prompt alone fills max_length: dropped
    res = add_token_stats(rep, str(p), tok, max_length=max_len, batch_size=2)
    assert res["rows"] == 4 and res["prompt"]["max"] == lens[3] and res["dropped"] == 1
    assert res["dropped_lines"] == [4]
    codes = {f.code: f.lines for f in rep.warnings}
    assert codes["rows-dropped"] == [4]
    assert res["padded"]["batch_size"] == 2 and res["padded"]["n"] == 2  # 3 kept rows → 2 batches
    assert res["padded"]["max"] <= max_len
    assert sum(b["count"] for b in res["histogram"]) == 4
    assert rep.stats["tokens"] is res


@pytest.mark.parametrize("case,rows,max_length,errors,warnings", [
    ("all-dropped", [{"prompt": "What is an atom?\n" * 5, "chosen": "a", "rejected": "b"}], 4,
     {"all-dropped": [1]}, {}),
    ("completion-cut", [{"prompt": "Hi\n", "chosen": "An atom is the smallest unit of matter." * 3,
                         "rejected": "b"}], 12, {}, {"completion-cut": [1]}),
    ("double-bos", [{"prompt": BOS + "What is an atom?\n", "chosen": "a", "rejected": "b"}], None, {},
     {"double-bos": [1]}),
    ("template-error", [{"prompt": [U("a"), U("b")], "chosen": [A("c")], "rejected": [A("d")]}], None,
     {"template-error": [1]}, {}),
])
def test_token_findings(tok, case, rows, max_length, errors, warnings):
    from dpo_tui.core.data import DataReport

    rep = DataReport(source="x")
    add_token_stats(rep, None, tok, rows=list(enumerate(rows, 1)), max_length=max_length)
    assert {f.code: f.lines for f in rep.errors} == errors
    assert {f.code: f.lines for f in rep.warnings} == warnings
    for f in rep.findings:
        assert FINDING_CODES[f.code].startswith(f.severity)


def test_conversational_without_chat_template_is_an_error(tmp_path):
    t = ChatTokenizer.from_dir(build_tokenizer(tmp_path / "tok", template=None))
    assert t.chat_template is None
    stats = TokenStats(t)
    stats.add([1], [{"prompt": [U("a")], "chosen": [A("b")], "rejected": [A("c")]}])
    (f,) = stats.findings()
    assert f.code == "no-chat-template" and f.severity == "error"


def test_chat_template_from_tokenizer_config(tmp_path):
    d = build_tokenizer(tmp_path / "tok", template=None)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg["chat_template"] = [{"name": "default", "template": "{{ messages[0]['content'] }}"},
                            {"name": "tool_use", "template": "x"}]
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    assert ChatTokenizer.from_dir(d).render([U("hi")]) == "hi"


def test_preview_marks_trained_and_cut_tokens(tok):
    row = {"prompt": [U("What is an atom?")], "chosen": [A("An atom is the smallest unit of matter.")],
           "rejected": [A("hello")]}
    (pp,) = tok.prepare([row])
    max_len = len(pp.prompt_ids) + 3
    pv = preview_pair(row, tok, max_length=max_len)
    kinds = [k for _, k in pv.chosen]
    assert kinds == ["prompt", "trained", "cut"]
    assert "".join(t for t, _ in pv.chosen) == tok.render(row["prompt"] + row["chosen"])
    assert pv.chosen[0][0] == tok.render(row["prompt"], add_generation_prompt=True)
    assert pv.chosen_kept == 3 and pv.chosen_tokens == len(pp.chosen_ids)
    assert [k for _, k in pv.rejected] == ["prompt", "trained"]  # short enough: nothing cut
    assert not pv.dropped
    text = pv.render_text()
    assert "[[" in text and "{{cut:" in text


def test_preview_standard_row_shows_appended_eos(tok):
    row = {"prompt": "What is an atom?\n", "chosen": "An atom.", "rejected": "hello"}
    pv = preview_pair(row, tok)
    assert pv.chosen[-1] == ("An atom." + EOS, "trained")
    assert pv.chosen[0] == ("What is an atom?\n", "prompt")


def test_resolve_tokenizer_from_hub_cache(tmp_path, monkeypatch):
    snap = tmp_path / "hub" / "models--org--tiny" / "snapshots" / "r1"
    build_tokenizer(snap)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    assert ChatTokenizer.from_model("org/tiny").name == str(snap)
    with pytest.raises(UserError, match="model not found"):
        ChatTokenizer.from_model("org/other")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "dpo_tui", *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO)


def test_cli_check_with_model_and_preview(tmp_path, tok_dir):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps({"prompt": [U("What is an atom?")], "chosen": [A("An atom.")],
                             "rejected": [A("hello")]}) + "\n")
    out = _cli("data", "check", str(p), "--model", str(tok_dir), "--max-length", "64", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["rows"] == 1 and data["stats"]["tokens"]["max_length"] == 64
    out = _cli("data", "preview", str(p), "--model", str(tok_dir), "--max-length", "64", "--ids")
    assert out.returncode == 0, out.stderr
    assert "[[An atom." in out.stdout and "prompt_ids" in out.stdout


def test_loaded_rows_feed_the_stats(tmp_path, tok):
    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps({"chosen": f"Q{i}: hello A: yes", "rejected": f"Q{i}: hello A: no"}) + "\n"
                         for i in range(3)))
    loaded = load_preference_data(str(p))
    res = add_token_stats(loaded.report, None, tok, rows=list(enumerate(loaded.rows, 1)))
    assert res["rows"] == 3


def test_token_stats_and_preview_read_the_chosen_split(tmp_path, tok):
    """A JSON object with one list per split: the counted rows and the previewed row are the split's."""
    from dpo_tui.core.tokenstats import preview_from_source

    train = {"prompt": "hello world\n", "chosen": "the sky is blue", "rejected": "no"}
    test = {"prompt": "What is an atom?\n", "chosen": "An atom is the smallest unit of matter.", "rejected": "no"}
    p = tmp_path / "d.json"
    p.write_text(json.dumps({"train": [train], "test": [test]}))
    report = check_data(str(p), split="test")
    add_token_stats(report, str(p), tok, split="test")
    expected = tok.prepare([test])[0]
    assert report.stats["tokens"]["prompt"]["max"] == len(expected.prompt_ids)
    _, pv = preview_from_source(str(p), tok, split="test")
    assert "atom" in "".join(text for text, _ in pv.chosen)
