"""The one loader, proven against the real TRL 1.16 trainer (issue 3 §4, §5, §7, §9).

- ``ChatTokenizer.prepare`` (core, no transformers) gives exactly the ``prompt_ids/chosen_ids/rejected_ids`` that
  ``DPOTrainer`` puts in ``train_dataset``, and drops the same rows, for standard and conversational rows.
- The trainer's ``load_data`` sees exactly the loader's normalized rows.
- Every supported shape trains for a few steps through ``dpo-tui train``.

A tiny Llama with a byte-level BPE tokenizer and a chat template is built here (seeded), so these tests do not
depend on sample_data.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dpo_tui.core.config import build_config
from dpo_tui.core.data import load_preference_data
from dpo_tui.core.runs import create_run
from dpo_tui.core.tokenstats import ChatTokenizer
from tests.support.cli import run_cli, start_run, wait_for_state
from tests.support.data import LLAMAFACTORY

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

BUILD_MODEL = textwrap.dedent('''
    import sys, torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    torch.manual_seed(0)
    BOS, EOS, PAD = "<|bos|>", "<|end|>", "<|pad|>"
    T = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\\n{{ m['content'] }}{{ eos_token }}\\n{% endfor %}"
         "{% if add_generation_prompt %}<|assistant|>\\n{% endif %}")
    corpus = ["What is an atom? An atom is the smallest unit of matter.", "Human: hello Assistant: the sky is blue",
              "Translate to French: cat -> chat. Be kind, be brief."] * 30
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=400, special_tokens=[PAD, BOS, EOS, "<|user|>", "<|assistant|>", "<|system|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                 add_bos_token=True, add_eos_token=False, chat_template=T)
    cfg = LlamaConfig(vocab_size=len(hf), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
                      bos_token_id=hf.bos_token_id, eos_token_id=hf.eos_token_id, pad_token_id=hf.pad_token_id)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(sys.argv[1])
    hf.save_pretrained(sys.argv[1])
''')

TRL_IDS = textwrap.dedent('''
    import copy, json, sys
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer
    model_dir, rows_path, max_length, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    rows = [dict(json.loads(l), idx=i) for i, l in enumerate(open(rows_path))]
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    args = DPOConfig(output_dir=out + ".d", report_to=[], max_length=max_length, bf16=False, use_cpu=True)
    tr = DPOTrainer(model=model, ref_model=copy.deepcopy(model), args=args, train_dataset=Dataset.from_list(rows),
                    processing_class=tok)
    got = [{k: ex[k] for k in ("idx", "prompt_ids", "chosen_ids", "rejected_ids")} for ex in tr.train_dataset]
    json.dump(got, open(out, "w"))
''')

LOAD_DATA = textwrap.dedent('''
    import json, sys
    from dpo_tui.core.config import build_config
    from dpo_tui.worker import train as worker
    class R:
        def __init__(self): self.events = []
        def emit(self, type_, **fields): self.events.append({"type": type_, **fields})
    cfg = build_config({"dataset": sys.argv[1], "eval_fraction": 0.0, "column_map": json.loads(sys.argv[2])})
    rep = R()
    train, evald, n = worker.load_data(cfg, rep)
    json.dump({"rows": train.to_list(), "n": n, "events": rep.events}, open(sys.argv[3], "w"))
''')


def _py(code: str, *args: str, timeout: float = 300) -> None:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny-model")
    _py(BUILD_MODEL, str(out))
    return out


def U(t):
    return {"role": "user", "content": t}


def A(t):
    return {"role": "assistant", "content": t}


LONG = "What is an atom? " * 12

SHAPES: dict[str, tuple[str, list, dict]] = {
    # name: (file name, rows, column_map)
    "standard-explicit": ("d.jsonl", [{"prompt": f"What is an atom {i}?\n", "chosen": "An atom is small.",
                                       "rejected": "The sky is blue." + "<|end|>" * (i % 2)} for i in range(6)], {}),
    "standard-implicit": ("d.jsonl", [{"chosen": f"Human {i}: hello Assistant: the sky is blue",
                                       "rejected": f"Human {i}: hello Assistant: an atom"} for i in range(6)], {}),
    "hh-rlhf": ("d.jsonl", [{"chosen": f"\n\nHuman: hello {i}\n\nAssistant: hi\n\nHuman: sky?\n\nAssistant: blue",
                             "rejected": f"\n\nHuman: hello {i}\n\nAssistant: hi\n\nHuman: sky?\n\nAssistant: red"}
                            for i in range(6)], {}),
    "conversational-explicit": ("d.jsonl", [{"prompt": [{"role": "system", "content": "Be kind."}, U(f"Atom {i}?")],
                                             "chosen": [A("Small.")], "rejected": [A("The sky is blue.")]}
                                            for i in range(6)], {}),
    "conversational-implicit": ("d.jsonl", [{"chosen": [U(f"Atom {i}?"), A("Small.")],
                                             "rejected": [U(f"Atom {i}?"), A("Blue.")]} for i in range(6)], {}),
    "ultrafeedback": ("d.jsonl", [{"prompt": f"Atom {i}?", "chosen": [U(f"Atom {i}?"), A("Small.")],
                                   "rejected": [U(f"Atom {i}?"), A("Blue.")], "score_chosen": 8.0,
                                   "score_rejected": 3.0} for i in range(6)], {}),
    "sharegpt": ("d.json", [{"conversations": [{"from": "human", "value": f"Atom {i}?"}],
                             "chosen": {"from": "gpt", "value": "Small."},
                             "rejected": {"from": "gpt", "value": "Blue."}} for i in range(6)], {}),
    "mapped-columns": ("d.csv", [{"question": f"Atom {i}?\n", "good": "Small.", "bad": "Blue.", "system": "Be kind."}
                                 for i in range(6)],
                       {"prompt": "question", "chosen": "good", "rejected": "bad"}),
}


def write_rows(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".json":
        path.write_text(json.dumps(rows, indent=1))
    elif path.suffix == ".csv":
        import csv

        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _without_post_processor(model_dir: Path, dest: Path) -> Path:
    """A copy whose tokenizer.json has no post-processor while the config asks for BOS/EOS: transformers 5
    ignores those config flags when tokenizer.json exists, and so must the core."""
    import shutil

    shutil.copytree(model_dir, dest)
    tj = json.loads((dest / "tokenizer.json").read_text())
    tj["post_processor"] = None
    (dest / "tokenizer.json").write_text(json.dumps(tj))
    cfg = json.loads((dest / "tokenizer_config.json").read_text())
    cfg.update(add_bos_token=True, add_eos_token=True)
    (dest / "tokenizer_config.json").write_text(json.dumps(cfg))
    return dest


@pytest.mark.parametrize("kind", ["standard", "conversational", "standard-no-post-processor"])
def test_token_ids_equal_trl(tmp_path, tiny_model, kind):
    if kind == "standard-no-post-processor":
        tiny_model = _without_post_processor(tiny_model, tmp_path / "model")
        kind = "standard"
    if kind == "standard":
        raw = (SHAPES["standard-explicit"][1] + SHAPES["standard-implicit"][1][:0]
               + [{"prompt": LONG, "chosen": "x", "rejected": "y"},  # prompt alone fills max_length: dropped
                  {"prompt": "Translate to French: cat ->", "chosen": " chat.", "rejected": " cat<|end|>"}])
    else:
        raw = (SHAPES["conversational-explicit"][1]
               + [{"prompt": [U(LONG)], "chosen": [A("x")], "rejected": [A("y")]},
                  {"prompt": [U("hello"), A("hi"), U("sky?")], "chosen": [A("blue")], "rejected": [A("red")]}])
    src = write_rows(tmp_path / "src.jsonl", raw)
    rows = load_preference_data(str(src)).rows  # the loader's normalized rows are what TRL gets
    norm = write_rows(tmp_path / "rows.jsonl", rows)
    tok = ChatTokenizer.from_dir(tiny_model)
    ours = tok.prepare(rows)
    max_length = 40
    assert len(ours[len(rows) - 2].prompt_ids) >= max_length  # the LONG row really is dropped
    out = tmp_path / "trl.json"
    _py(TRL_IDS, str(tiny_model), str(norm), str(max_length), str(out))
    trl = json.loads(out.read_text())
    kept = [i for i, pp in enumerate(ours) if len(pp.prompt_ids) < max_length]
    assert [ex["idx"] for ex in trl] == kept
    for ex in trl:
        pp = ours[ex["idx"]]
        assert (pp.prompt_ids, pp.chosen_ids, pp.rejected_ids) == (ex["prompt_ids"], ex["chosen_ids"],
                                                                   ex["rejected_ids"]), ex["idx"]


@pytest.mark.parametrize("shape", ["standard-explicit", "hh-rlhf", "sharegpt", "mapped-columns"])
def test_trainer_sees_exactly_the_loader_rows(tmp_path, shape):
    fname, raw, cmap = SHAPES[shape]
    src = write_rows(tmp_path / fname, raw)
    out = tmp_path / "seen.json"
    _py(LOAD_DATA, str(src), json.dumps(cmap), str(out))
    seen = json.loads(out.read_text())
    loaded = load_preference_data(str(src), column_map=cmap)
    assert loaded.report.ok, loaded.report.render()
    assert seen["rows"] == loaded.rows and seen["n"] == len(loaded.rows) == len(raw)
    assert [e["code"] for e in seen["events"]] == [w.code for w in loaded.report.warnings]


def test_trainer_refuses_data_with_errors(tmp_path, tiny_model, runs_root):
    src = write_rows(tmp_path / "bad.jsonl", [{"prompt": "Q?\n", "chosen": "same", "rejected": "same"}] * 3)
    # `dpo-tui train` lints first: refused with exit 2, nothing created.
    proc = run_cli("train", "--runs-dir", str(runs_root), "--model", str(tiny_model), "--dataset", str(src), "--max-steps", "2")
    assert proc.returncode == 2 and "identical" in proc.stderr and "Traceback" not in proc.stderr
    assert list(runs_root.iterdir()) == []
    # The trainer refuses the same data on its own (a run created some other way, or data changed after launch).
    run = create_run(runs_root, build_config({"model": str(tiny_model), "dataset": str(src), "max_steps": 2}))
    trainer = subprocess.run([sys.executable, "-m", "dpo_tui.worker.train", str(run.path)], capture_output=True, text=True, timeout=300)
    assert trainer.returncode == 4
    events = [json.loads(line) for line in run.events_path.read_text().splitlines()]
    failed = [e for e in events if e["type"] == "failed"]
    assert failed and failed[0]["kind"] == "data" and "identical" in json.dumps(failed[0])


@pytest.mark.parametrize("shape", list(SHAPES))
def test_each_shape_trains(tmp_path, tiny_model, runs_root, shape):
    fname, raw, cmap = SHAPES[shape]
    src = write_rows(tmp_path / fname, raw)
    maps = [f"--map={k}={v}" for k, v in cmap.items()]
    run = start_run(runs_root, "--model", str(tiny_model), "--dataset", str(src), "--max-steps", "2",
                    "--batch-size", "2", "--max-length", "64", *maps)
    status = wait_for_state(run, {"finished", "failed", "crashed"}, timeout=300)
    log = (run / "trainer.log").read_text(errors="replace")[-3000:] if (run / "trainer.log").exists() else ""
    assert status["state"] == "finished", f"{shape}: {status}\n{log}"
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    started = next(e for e in events if e["type"] == "started")
    assert started["examples"] == len(raw)
    assert [e["step"] for e in events if e["type"] == "log" and not e.get("summary")][-1] == 2


def test_llamafactory_v1_sample_ids_equal_trl(tmp_path, tiny_model):
    rows = load_preference_data(str(LLAMAFACTORY / "llamafactory_v1_dpo_demo.jsonl")).rows
    norm = write_rows(tmp_path / "rows.jsonl", rows)
    out = tmp_path / "trl.json"
    _py(TRL_IDS, str(tiny_model), str(norm), "100000", str(out))
    trl = json.loads(out.read_text())
    ours = ChatTokenizer.from_dir(tiny_model).prepare(rows)
    assert len(trl) == len(rows) == 10
    for ex in trl:
        pp = ours[ex["idx"]]
        assert (pp.prompt_ids, pp.chosen_ids, pp.rejected_ids) == (ex["prompt_ids"], ex["chosen_ids"],
                                                                   ex["rejected_ids"])
