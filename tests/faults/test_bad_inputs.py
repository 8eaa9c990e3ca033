"""Bad input, everywhere an operator types or points.

Every case runs ``dpo_tui.cli.main(argv)`` in-process (an interpreter start per case would cost
minutes) and checks the contract; a handful run the installed ``dpo-tui`` in a subprocess too
(``test_installed_command_refuses_without_a_traceback``), which proves the entry point and the
no-traceback rule end to end:

- exit code 2 and a message that names the file / line / field / value at fault;
- no ``Traceback`` on the terminal;
- nothing half-written: ``train`` leaves the runs root empty, nothing anywhere ends in ``.tmp``.

Cases that are caught only *after* a run folder was created (the trainer fails the run) are
"late": every case is rejected in pre-flight today (``dpo_tui/core/preflight.py:check_inputs``), so a late
failure fails the test, after checking it was at least clean (``failed`` with a kind and a one-line
message, no traceback on the terminal). Each case records
its outcome (``rejected`` / ``failed-late``) for ``scripts/reliability_report.py``.

One module over ~500 lines on purpose: it is the single catalogue of bad inputs, section by section.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dpo_tui.core.config import REMOVED_TRL_KEYS
from tests.support.cli import run_cli, run_cli_inprocess, wait_for_state
from tests.support.reliability import record_outcome
from tests.support.uikit import build_fake_model, fake_safetensors

SUITE = "bad-input"
# Refusing bad input must never need the ML stack: it would cost seconds per refusal.
ML_MODULES = {"torch", "transformers", "trl", "peft"}
TERMINAL = {"finished", "failed", "crashed", "stopped"}


# --- helpers ---------------------------------------------------------------------------------------
def leftovers(*folders: Path) -> list[Path]:
    """Half-written files: temp files of atomic writes, folders of an interrupted delete."""
    found = []
    for folder in folders:
        if folder.exists():
            found += [p for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".deleting-")]
    return found


def run_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if not p.name.startswith(".")) if root.is_dir() else []


def names_line(text: str, line: int) -> bool:
    """``file:3``, ``line 3`` or ``lines 3`` in a message."""
    return re.search(rf"(:{line}\b|\blines? {line}\b)", text) is not None


def assert_rejected(
    proc: subprocess.CompletedProcess[str],
    case: str,
    category: str,
    needles: list[str] | tuple[str, ...] = (),
    *,
    root: Path | None = None,
    before: list[Path] | None = None,
    line: int | None = None,
    seconds: float | None = None,
    extra_dirs: tuple[Path, ...] = (),
) -> str:
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    assert proc.returncode == 2, f"exit {proc.returncode}\n{out}"
    low = out.lower()
    for needle in needles:
        assert needle.lower() in low, f"{needle!r} not in:\n{out}"
    if line is not None:
        assert names_line(out, line), f"line {line} not named in:\n{out}"
    if root is not None:
        assert run_dirs(root) == (before or []), f"run folders left behind: {run_dirs(root)}"
    assert leftovers(*(p for p in (root, *extra_dirs) if p is not None)) == []
    record_outcome(SUITE, case, "rejected", category=category, seconds=seconds, exit_code=proc.returncode)
    return out


def timed_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[subprocess.CompletedProcess[str], float]:
    """The command in-process (a relative path needs its own working directory: then the installed command)."""
    started = time.perf_counter()
    if cwd is not None:
        proc = run_cli(*args, env=env, cwd=cwd)
        return proc, time.perf_counter() - started
    ml_loaded = ML_MODULES & set(sys.modules)
    proc = run_cli_inprocess(*args, env=env)
    seconds = time.perf_counter() - started
    loaded = (ML_MODULES & set(sys.modules)) - ml_loaded
    assert not loaded or proc.returncode == 0, f"refusing `dpo-tui {' '.join(args)}` imported {sorted(loaded)}"
    return proc, seconds


def check_late_failure(proc: subprocess.CompletedProcess[str], root: Path, case: str, category: str, kinds: set[str],
                       needles: tuple[str, ...] = (), line: int | None = None, started: float | None = None) -> None:
    """``train`` accepted the input and the run failed later: check that failure is clean, then fail.

    Every case is rejected in pre-flight today; a late failure is a regression (it costs a trainer start)."""
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    assert proc.returncode == 0, out
    runs = run_dirs(root)
    assert len(runs) == 1, runs
    status = wait_for_state(runs[0], TERMINAL, timeout=240)
    message = f"{status.get('message') or ''} {status.get('hint') or ''}"
    assert status["state"] == "failed", status
    assert message.strip() and "Traceback" not in message and "\n" not in (status.get("message") or "")
    for needle in needles:
        assert needle.lower() in message.lower(), f"{needle!r} not in {message!r}"
    if line is not None:
        assert names_line(message, line), message
    attach = run_cli("attach", "--runs-dir", str(root), runs[0].name)
    assert "Traceback" not in attach.stdout + attach.stderr
    assert attach.returncode == 1 and status["kind"] in attach.stdout, attach.stdout
    assert leftovers(root) == []
    elapsed = (status.get("ended_at") or time.time()) - (status.get("created_at") or time.time())
    kind_note = "" if status["kind"] in kinds else f" [kind {status['kind']!r}, expected {'/'.join(sorted(kinds))}]"
    record_outcome(SUITE, case, "failed-late", category=category, kind=status["kind"], kind_expected=sorted(kinds),
                   seconds=round(elapsed, 2), launch_seconds=round(time.perf_counter() - started, 2) if started else None)
    pytest.fail(f"caught late: a run folder was created and the trainer failed it ({status['kind']}: "
                f"{status.get('message')}){kind_note} after {elapsed:.1f} s; should be rejected in pre-flight")


# --- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A fake tiny model, broken copies of it, good and bad data, and a runs root with fixture runs."""
    base = tmp_path_factory.mktemp("bad-inputs")
    good_model = build_fake_model(base / "models" / "good")
    w: dict[str, Path] = {"base": base, "model": good_model}
    rows = [{"prompt": f"w{i} w{i + 1}", "chosen": f"w{i + 2}", "rejected": f"w{i + 3} w{i + 4} w{i + 5}"} for i in range(24)]
    w["data"] = base / "good.jsonl"
    w["data"].write_text("".join(json.dumps(r) + "\n" for r in rows))

    def model_variant(name: str, drop: tuple[str, ...] = (), **files: bytes | str) -> Path:
        folder = build_fake_model(base / "models" / name)
        for n in drop:
            (folder / n).unlink()
        for n, content in files.items():
            target = folder / n.replace("__", ".")
            target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content)
        return folder

    cfg = json.loads((good_model / "config.json").read_text())
    w["m-no-config"] = model_variant("no-config", drop=("config.json",))
    w["m-no-tokenizer"] = model_variant("no-tokenizer", drop=("tokenizer.json", "tokenizer_config.json"))
    w["m-corrupt-weights"] = model_variant("corrupt-weights", model__safetensors=struct.pack("<Q", 1 << 40) + b"{garbage")
    w["m-truncated-weights"] = model_variant("truncated-weights", model__safetensors=(good_model / "model.safetensors").read_bytes()[:200])
    w["m-no-weights"] = model_variant("no-weights", drop=("model.safetensors",))
    w["m-config-not-json"] = model_variant("config-not-json", config__json='{"model_type": "llama",')
    bert = {"architectures": ["BertForMaskedLM"], "model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 64, "vocab_size": cfg["vocab_size"], "max_position_embeddings": 512,
            "type_vocab_size": 2}
    w["m-not-causal-lm"] = model_variant("bert", config__json=json.dumps(bert))
    t5 = {"architectures": ["T5ForConditionalGeneration"], "model_type": "t5", "d_model": 32, "d_ff": 64, "num_layers": 2,
          "num_heads": 4, "d_kv": 8, "vocab_size": cfg["vocab_size"], "is_encoder_decoder": True}
    w["m-seq2seq"] = model_variant("t5", config__json=json.dumps(t5))
    w["m-regular-file"] = base / "models" / "model.safetensors"
    w["m-regular-file"].write_bytes((good_model / "model.safetensors").read_bytes())
    adapter = base / "models" / "lora-out"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": str(good_model), "r": 8,
                                                             "lora_alpha": 16, "target_modules": ["q_proj"], "task_type": "CAUSAL_LM"}))
    fake_safetensors(adapter / "adapter_model.safetensors", {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": [8, 32]})
    w["m-adapter-as-base"] = adapter
    parent = base / "models" / "parent"
    build_fake_model(parent / "child")
    w["m-parent-folder"] = parent
    no_template = build_fake_model(base / "models" / "no-template")
    tok_cfg = json.loads((no_template / "tokenizer_config.json").read_text())
    tok_cfg.pop("chat_template")
    (no_template / "tokenizer_config.json").write_text(json.dumps(tok_cfg))
    w["m-no-chat-template"] = no_template
    return w


# ===================================================================================================
# 1. Configs: every field's bounds, wrong TOML types, removed TRL keys, broken files
# ===================================================================================================
# (id, TOML body, words the message must contain)
CONFIG_CASES: list[tuple[str, str, tuple[str, ...]]] = [
    ("beta-zero", "beta = 0.0", ("beta", "must be > 0")),
    ("beta-negative", "beta = -0.1", ("beta", "-0.1")),
    ("beta-nan", "beta = nan", ("beta", "nan")),
    ("beta-inf", "beta = inf", ("beta", "inf")),
    ("beta-string", 'beta = "abc"', ("beta", "'abc'", "number")),
    ("loss-type-unknown", 'loss_type = "dpo"', ("loss_type", "'dpo'", "sigmoid")),
    ("loss-type-list", 'loss_type = ["sigmoid", "sft"]', ("loss_type",)),
    ("label-smoothing-half", "label_smoothing = 0.5", ("label_smoothing", "0.5")),
    ("exo-pair-without-smoothing", 'loss_type = "exo_pair"', ("exo_pair", "label_smoothing")),
    ("lora-rank-zero", "lora_rank = 0", ("lora_rank", "≥ 1")),
    ("lora-rank-float", "lora_rank = 1.5", ("lora_rank", "1.5")),
    ("lora-alpha-negative", "lora_alpha = -16", ("lora_alpha", "-16")),
    ("lora-dropout-one", "lora_dropout = 1.0", ("lora_dropout", "[0, 1)")),
    ("lora-targets-lm-head", 'lora_target_modules = ["q_proj", "lm_head"]', ("lora_target_modules", "lm_head")),
    ("lora-targets-empty", "lora_target_modules = []", ("lora_target_modules", "at least one")),
    ("lora-targets-string", 'lora_target_modules = "q_proj"', ("lora_target_modules", "list")),
    ("learning-rate-zero", "learning_rate = 0.0", ("learning_rate", "> 0")),
    ("learning-rate-negative", "learning_rate = -1e-5", ("learning_rate", "-1e-05")),
    ("batch-size-zero", "per_device_batch_size = 0", ("per_device_batch_size", "≥ 1")),
    ("grad-accum-zero", "gradient_accumulation = 0", ("gradient_accumulation", "≥ 1")),
    ("max-steps-zero", "max_steps = 0", ("max_steps", "-1")),
    ("max-steps-negative", "max_steps = -5", ("max_steps", "-5")),
    ("max-length-zero", "max_length = 0", ("max_length", "between 1")),
    ("num-epochs-zero", "num_epochs = 0", ("num_epochs", "> 0")),
    ("warmup-ratio-high", "warmup_ratio = 0.9", ("warmup_ratio", "0.9")),
    ("eval-fraction-high", "eval_fraction = 0.7", ("eval_fraction", "0.7")),
    ("save-fraction-zero", "save_fraction = 0.0", ("save_fraction", "(0, 1]")),
    ("weight-decay-negative", "weight_decay = -0.1", ("weight_decay", "≥ 0")),
    ("max-grad-norm-zero", "max_grad_norm = 0.0", ("max_grad_norm", "> 0")),
    ("method-unknown", 'method = "dora"', ("method", "'dora'", "lora")),
    ("precision-unknown", 'precision = "fp8"', ("precision", "'fp8'", "bf16")),
    ("gpus-negative", "gpus = [-1]", ("gpus", "≥ 0")),
    ("gpus-duplicate", "gpus = [0, 0]", ("gpus", "distinct")),
    ("nproc-gpus-mismatch", "nproc = 2\ngpus = [0]", ("nproc", "gpu")),
    ("precompute-with-lora", "precompute_ref_log_probs = true", ("precompute_ref_log_probs", "full")),
    ("name-path-traversal", 'name = "../../evil"', ("name", "'../../evil'", "letters")),
    ("name-with-space", 'name = "my run"', ("name", "'my run'")),
    ("bool-as-word", 'gradient_checkpointing = "maybe"', ("gradient_checkpointing", "'maybe'", "bool")),
    ("column-map-list", 'column_map = ["prompt"]', ("column_map", "dictionary")),
    ("seed-string", 'seed = "forty-two"', ("seed", "'forty-two'", "integer")),
    ("unknown-key-typo", "betta = 0.1", ("betta", "unknown setting", "did you mean `beta`")),
    ("two-bad-fields-both-named", "beta = -1.0\nlora_rank = 0", ("beta = -1.0", "lora_rank = 0")),
    *[(f"removed-trl-key-{key}", f"{key} = 1", (key, "removed in trl 1.x")) for key in REMOVED_TRL_KEYS],
    ("toml-syntax-missing-value", "beta =", ("invalid toml", "line 3")),
    ("toml-syntax-unclosed-string", 'name = "abc', ("invalid toml", "line 3")),
    ("toml-duplicate-key", "beta = 0.1\nbeta = 0.2", ("invalid toml", "line 4")),
]


@pytest.mark.parametrize(("case", "body", "needles"), CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_train_rejects_bad_config_file(case: str, body: str, needles: tuple[str, ...], world: dict[str, Path],
                                       runs_root: Path, tmp_path: Path) -> None:
    path = tmp_path / "experiment.toml"
    # A config that is valid except for the case's line(s), so the message is about them alone.
    path.write_text(f'model = "{world["model"]}"\ndataset = "{world["data"]}"\n{body}\n')
    proc, seconds = timed_cli("train", "--runs-dir", str(runs_root), "--config", str(path))
    out = assert_rejected(proc, f"config/{case}", "config", needles, root=runs_root, seconds=seconds, extra_dirs=(tmp_path,))
    assert "experiment.toml" in out, "the message names the file"


JSON_CONFIG_CASES = [
    ("json-syntax", '{"beta": 0.1,\n "lora_rank": }', ("invalid json", ":2:")),
    ("json-top-level-list", "[1, 2]", ("table of settings",)),
    ("json-wrong-type", '{"max_length": "long"}', ("max_length", "'long'")),
]


@pytest.mark.parametrize(("case", "body", "needles"), JSON_CONFIG_CASES, ids=[c[0] for c in JSON_CONFIG_CASES])
def test_train_rejects_bad_json_config(case: str, body: str, needles: tuple[str, ...], runs_root: Path, tmp_path: Path) -> None:
    path = tmp_path / "experiment.json"
    path.write_text(body)
    proc, seconds = timed_cli("train", "--runs-dir", str(runs_root), "--config", str(path))
    assert_rejected(proc, f"config/{case}", "config", (*needles, "experiment.json"), root=runs_root, seconds=seconds)


def test_train_rejects_config_that_is_not_utf8(runs_root: Path, tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    proc, seconds = timed_cli("train", "--runs-dir", str(runs_root), "--config", str(path))
    assert_rejected(proc, "config/not-utf8", "config", ("latin1.toml", "not utf-8"), root=runs_root, seconds=seconds)


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_train_rejects_config_path_that_is_not_a_file(kind: str, runs_root: Path, tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    if kind == "directory":
        path.mkdir()
    proc, seconds = timed_cli("train", "--runs-dir", str(runs_root), "--config", str(path))
    assert_rejected(proc, f"config/path-{kind}", "config", ("nope.toml",), root=runs_root, seconds=seconds)


# The same bounds through flags (what a script types).
FLAG_CASES: list[tuple[str, list[str], tuple[str, ...]]] = [
    ("flag-beta-not-a-number", ["--beta", "abc"], ("--beta", "'abc'")),
    ("flag-beta-zero", ["--beta", "0"], ("beta = 0.0",)),
    ("flag-lora-rank-zero", ["--lora-rank", "0"], ("lora_rank = 0",)),
    ("flag-lr-negative", ["--lr", "-1"], ("learning_rate = -1.0",)),
    ("flag-batch-size-zero", ["--batch-size", "0"], ("per_device_batch_size = 0",)),
    ("flag-method-choice", ["--method", "dora"], ("--method", "invalid choice")),
    ("flag-gpus-not-ints", ["--gpus", "a,b"], ("--gpus", "list of int")),
    ("flag-targets-empty", ["--lora-targets", ","], ("lora_target_modules",)),
    ("flag-map-no-equals", ["--map", "question"], ("--map", "field=column")),
    ("flag-loss-type-unknown", ["--loss-type", "orpo"], ("loss_type", "'orpo'")),
    ("flag-name-slash", ["--name", "a/b"], ("name", "'a/b'")),
    ("flag-max-steps-not-int", ["--max-steps", "1.5"], ("--max-steps", "'1.5'")),
]


@pytest.mark.parametrize(("case", "flags", "needles"), FLAG_CASES, ids=[c[0] for c in FLAG_CASES])
def test_train_rejects_bad_flags(case: str, flags: list[str], needles: tuple[str, ...], world: dict[str, Path], runs_root: Path) -> None:
    proc, seconds = timed_cli("train", "--runs-dir", str(runs_root), "--model", str(world["model"]), "--dataset", str(world["data"]), *flags)
    assert_rejected(proc, f"config/{case}", "config", needles, root=runs_root, seconds=seconds)


@pytest.mark.parametrize("command", ["ladder", "estimate"])
@pytest.mark.parametrize(("case", "body", "needles"), [CONFIG_CASES[1], CONFIG_CASES[9], CONFIG_CASES[-4]],
                         ids=["beta-negative", "lora-rank-zero", "removed-key"])
def test_other_config_commands_reject_the_same_files(command: str, case: str, body: str, needles: tuple[str, ...],
                                                     world: dict[str, Path], runs_root: Path, tmp_path: Path) -> None:
    path = tmp_path / "experiment.toml"
    path.write_text(f'model = "{world["model"]}"\ndataset = "{world["data"]}"\n{body}\n')
    args = ["ladder", "--runs-dir", str(runs_root), "--betas", "0.1,0.3", "--config", str(path)] if command == "ladder" else [
        "estimate", "--model", str(world["model"]), "--config", str(path), "--free-gib", "10"]
    if command == "ladder" and case == "beta-negative":
        pytest.skip("a ladder sets β itself")
    proc, seconds = timed_cli(*args)
    assert_rejected(proc, f"config/{command}-{case}", "config", needles, root=runs_root, seconds=seconds)


LADDER_CASES = [
    ("betas-one-value", "0.1", ("at least two",)),
    ("betas-not-numbers", "a,b", ("comma-separated numbers",)),
    ("betas-negative", "0.1,-0.5", ("> 0",)),
]


@pytest.mark.parametrize(("case", "betas", "needles"), LADDER_CASES, ids=[c[0] for c in LADDER_CASES])
def test_ladder_rejects_bad_betas_and_queues_nothing(case: str, betas: str, needles: tuple[str, ...], world: dict[str, Path], runs_root: Path) -> None:
    proc, seconds = timed_cli("ladder", "--runs-dir", str(runs_root), "--betas", betas, "--model", str(world["model"]), "--dataset", str(world["data"]))
    assert_rejected(proc, f"config/ladder-{case}", "config", ("--betas", *needles), root=runs_root, seconds=seconds)


# ===================================================================================================
# 2. Data files, through `data check` and through `train --dataset`
# ===================================================================================================
def _row(i: int = 0, **override: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"prompt": f"w{i} w{i + 1}", "chosen": f"w{i + 2}", "rejected": f"w{i + 3} w{i + 4}"}
    row.update(override)
    return row


def _lines(*rows: Any) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


def _conv(prompt: list[dict[str, Any]], chosen: Any = None, rejected: Any = None) -> dict[str, Any]:
    return {
        "prompt": prompt,
        "chosen": chosen if chosen is not None else [{"role": "assistant", "content": "w5"}],
        "rejected": rejected if rejected is not None else [{"role": "assistant", "content": "w6 w7"}],
    }


USER = [{"role": "user", "content": "w1 w2"}]

# (id, file name, bytes, words the message must contain, the line it must name or None)
DATA_CASES: list[tuple[str, str, bytes, tuple[str, ...], int | None]] = [
    ("D1-empty-file", "d.jsonl", b"", ("empty",), None),
    ("D2-malformed-json-line-2", "d.jsonl", _lines(_row(0), b'{"prompt": "w1", "chosen": ', _row(2)), ("json",), 2),
    ("D3-non-utf8-byte-line-2", "d.jsonl", _lines(_row(0), b'{"prompt": "caf\xe9", "chosen": "w1", "rejected": "w2"}', _row(2)), ("utf-8",), 2),
    ("D5-missing-rejected", "d.jsonl", _lines(*[{"prompt": "w1", "chosen": "w2"} for _ in range(4)]), ("rejected",), 1),
    ("D6-unknown-column-names", "d.jsonl", _lines(*[{"q": "w1", "good": "w2", "bad": "w3"} for _ in range(3)]), ("--map",), 1),
    ("D7-null-chosen-line-3", "d.jsonl", _lines(_row(0), _row(1), _row(2, chosen=None)), ("chosen", "null"), 3),
    ("D7-int-rejected-line-2", "d.jsonl", _lines(_row(0), _row(1, rejected=7), _row(2)), ("rejected",), 2),
    ("D8-empty-chosen-line-2", "d.jsonl", _lines(_row(0), _row(1, chosen=""), _row(2)), ("chosen", "empty"), 2),
    ("D9-chosen-equals-rejected-line-2", "d.jsonl", _lines(_row(0), _row(1, chosen="w9", rejected="w9"), _row(2)), ("identical",), 2),
    ("D10-mixed-standard-and-conversational", "d.jsonl", _lines(_row(0), _row(1), _conv(USER)), ("shape",), 3),
    ("D11-message-without-content", "d.jsonl", _lines(_conv(USER), _conv([{"role": "user"}])), ("content",), 2),
    ("D11-unknown-role", "d.jsonl", _lines(_conv(USER), _conv([{"role": "wizard", "content": "w1"}])), ("role",), 2),
    ("D11-prompt-ends-with-assistant", "d.jsonl",
     _lines(_conv(USER), _conv([*USER, {"role": "assistant", "content": "w3"}])), ("assistant",), 2),
    ("D11-empty-chosen-list", "d.jsonl", _lines(_conv(USER), _conv(USER, chosen=[])), ("chosen",), 2),
    ("D16-oversize-row-line-2", "d.jsonl", _lines(_row(0), _row(1, chosen="w1 " * 400_000), _row(2)), ("cap",), 2),
    ("row-not-an-object-line-2", "d.jsonl", _lines(_row(0), b'["w1", "w2", "w3"]', _row(2)), ("object",), 2),
    ("truncated-last-line", "d.jsonl", _lines(_row(0), _row(1)) + b'{"prompt": "w1", "cho', ("cut off",), 3),
    ("json-array-with-bad-row", "d.json", json.dumps([_row(0), {"prompt": "w1"}]).encode(), ("chosen",), None),
    ("csv-missing-column", "d.csv", b"prompt,chosen\nw1,w2\nw3,w4\n", ("rejected",), None),
]


def _write_case(folder: Path, name: str, content: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(("case", "name", "content", "needles", "line"), DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_data_check_rejects_bad_file(case: str, name: str, content: bytes, needles: tuple[str, ...], line: int | None, tmp_path: Path) -> None:
    path = _write_case(tmp_path / "data", name, content)
    proc, seconds = timed_cli("data", "check", str(path))
    assert_rejected(proc, f"data-check/{case}", "data", needles, line=line, seconds=seconds, extra_dirs=(tmp_path,))


# The data cases `train` must refuse before it creates a run folder (a subset keeps the suite quick
# while the late path costs a trainer start each; the rest are covered by `data check` above).
TRAIN_DATA_CASES = [c for c in DATA_CASES if c[0] in {
    "D1-empty-file", "D2-malformed-json-line-2", "D3-non-utf8-byte-line-2", "D5-missing-rejected", "D6-unknown-column-names",
    "D7-null-chosen-line-3", "D8-empty-chosen-line-2", "D9-chosen-equals-rejected-line-2", "D10-mixed-standard-and-conversational",
    "D11-prompt-ends-with-assistant", "D16-oversize-row-line-2", "truncated-last-line",
}]


@pytest.mark.parametrize(("case", "name", "content", "needles", "line"), TRAIN_DATA_CASES, ids=[c[0] for c in TRAIN_DATA_CASES])
def test_train_refuses_bad_data_before_creating_a_run(case: str, name: str, content: bytes, needles: tuple[str, ...], line: int | None,
                                                      world: dict[str, Path], runs_root: Path, tmp_path: Path) -> None:
    path = _write_case(tmp_path / "data", name, content)
    started = time.perf_counter()
    proc, seconds = timed_cli("train", "--runs-dir", str(runs_root), "--model", str(world["model"]), "--dataset", str(path), "--max-steps", "2")
    if proc.returncode == 0 and run_dirs(runs_root):
        check_late_failure(proc, runs_root, f"train-data/{case}", "data", {"data"}, line=line, started=started)
    assert_rejected(proc, f"train-data/{case}", "data", (path.name, *needles), root=runs_root, line=line, seconds=seconds)


def test_train_refuses_conversational_data_for_a_model_without_chat_template(world: dict[str, Path], runs_root: Path, tmp_path: Path) -> None:
    """D12: TRL raw raises after both models loaded; the console knows from tokenizer_config.json."""
    path = _write_case(tmp_path / "data", "conv.jsonl", _lines(*[_conv(USER) for _ in range(8)]))
    started = time.perf_counter()
    proc, seconds = timed_cli("train", "--runs-dir", str(runs_root), "--model", str(world["m-no-chat-template"]), "--dataset", str(path),
                              "--max-steps", "2")
    if proc.returncode == 0 and run_dirs(runs_root):
        check_late_failure(proc, runs_root, "train-data/D12-no-chat-template", "data", {"data", "config"}, needles=("template",), started=started)
    assert_rejected(proc, "train-data/D12-no-chat-template", "data", ("chat template",), root=runs_root, seconds=seconds)


@pytest.mark.parametrize("kind", ["missing-file", "hub-id-offline", "folder-without-data"])
def test_train_refuses_dataset_it_cannot_read(kind: str, world: dict[str, Path], runs_root: Path, tmp_path: Path) -> None:
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    if kind == "missing-file":
        source, needles = str(tmp_path / "nope.jsonl"), ("not found", "nope.jsonl")
    elif kind == "hub-id-offline":
        source, needles = "no-such-org/no-such-dataset", ("no-such-org/no-such-dataset",)
    else:
        (tmp_path / "empty-folder").mkdir()
        (tmp_path / "empty-folder" / "notes.txt").write_text("nothing to train on")
        source, needles = str(tmp_path / "empty-folder"), ("empty-folder",)
    started = time.perf_counter()
    proc, seconds = timed_cli("train", "--runs-dir", str(runs_root), "--model", str(world["model"]), "--dataset", source, "--max-steps", "2", env=env)
    if proc.returncode == 0 and run_dirs(runs_root):
        check_late_failure(proc, runs_root, f"train-data/{kind}", "data", {"data"}, started=started)
    assert_rejected(proc, f"train-data/{kind}", "data", needles, root=runs_root, seconds=seconds)


def test_train_freezes_a_relative_dataset_path(world: dict[str, Path], runs_root: Path, tmp_path: Path) -> None:
    """A relative --dataset is relative to the operator's directory, not the run folder the trainer runs in."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "pairs.jsonl").write_bytes(world["data"].read_bytes())
    proc, _ = timed_cli("train", "--runs-dir", str(runs_root), "--model", str(world["model"]), "--dataset", "pairs.jsonl", "--max-steps", "1",
                        cwd=work)
    assert "Traceback" not in proc.stdout + proc.stderr
    if proc.returncode == 2:
        record_outcome(SUITE, "paths/relative-dataset", "rejected", category="paths")
        return
    assert proc.returncode == 0, proc.stderr
    run = run_dirs(runs_root)[0]
    frozen = json.loads((run / "config.json").read_text())["dataset"]
    status = wait_for_state(run, TERMINAL, timeout=300)
    if not Path(frozen).is_absolute():
        record_outcome(SUITE, "paths/relative-dataset", "failed-late", category="paths", kind=status.get("kind"))
    assert Path(frozen).is_absolute(), (f"config.json froze the relative path {frozen!r}; the trainer (cwd = run folder) ended "
                                        f"{status['state']}/{status.get('kind')}: {status.get('message')}")
    assert status["state"] == "finished", status
    record_outcome(SUITE, "paths/relative-dataset", "accepted", category="paths")


def test_train_freezes_a_relative_model_path(world: dict[str, Path], runs_root: Path, tmp_path: Path) -> None:
    """A relative --model must not poison the run: config.json must still validate from any directory."""
    work = world["model"].parent
    proc, _ = timed_cli("train", "--runs-dir", str(runs_root), "--model", world["model"].name, "--dataset", str(world["data"]),
                        "--max-steps", "1", cwd=work)
    assert "Traceback" not in proc.stdout + proc.stderr
    if proc.returncode == 2:
        record_outcome(SUITE, "paths/relative-model", "rejected", category="paths")
        return
    run = run_dirs(runs_root)[0]
    frozen = json.loads((run / "config.json").read_text())["model"]
    listing = run_cli("runs", "--runs-dir", str(runs_root), "--json")
    state = json.loads(listing.stdout)[0]["state"] if listing.returncode == 0 else "?"
    wait_for_state(run, TERMINAL | {"unreadable"}, timeout=300) if state != "unreadable" else None
    if not Path(frozen).is_absolute():
        record_outcome(SUITE, "paths/relative-model", "failed-late", category="paths", listed_as=state)
    assert Path(frozen).is_absolute(), (f"config.json froze the relative model path {frozen!r}: the supervisor (cwd = run folder) "
                                        f"cannot load the config and `dpo-tui runs` lists the run as {state!r}")
    record_outcome(SUITE, "paths/relative-model", "accepted", category="paths")


# ===================================================================================================
# 3. Model folders: missing or broken config, tokenizer or weights, adapters, remote code
# ===================================================================================================
# (id, key in world or a literal spec, words the message must contain, expected late failure kinds)
MODEL_CASES: list[tuple[str, str, tuple[str, ...]]] = [
    ("M1-no-such-folder", "/nonexistent/model-folder", ("no model folder",)),
    ("M2-no-config-json", "m-no-config", ("config.json",)),
    ("parent-folder-of-models", "m-parent-folder", ("config.json",)),
    ("M2-no-tokenizer", "m-no-tokenizer", ("tokenizer",)),
    ("corrupt-safetensors-header", "m-corrupt-weights", ("safetensors",)),
    ("truncated-safetensors", "m-truncated-weights", ("safetensors",)),
    ("no-weight-files", "m-no-weights", ("weight",)),
    ("config-json-not-json", "m-config-not-json", ("config.json",)),
    ("not-a-causal-lm-bert", "m-not-causal-lm", ("BertForMaskedLM",)),
    ("not-a-causal-lm-t5", "m-seq2seq", ("T5ForConditionalGeneration",)),
    ("model-is-a-regular-file", "m-regular-file", ("model.safetensors",)),
    ("adapter-given-as-base-model", "m-adapter-as-base", ("lora-out",)),
    ("hub-id-while-offline", "no-such-org/no-such-model", ("no-such-org/no-such-model",)),
]


@pytest.mark.parametrize(("case", "spec", "needles"), MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_train_refuses_bad_model_folder(case: str, spec: str, needles: tuple[str, ...], world: dict[str, Path], runs_root: Path,
                                        tmp_path: Path) -> None:
    model = str(world[spec]) if spec in world else spec
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    started = time.perf_counter()
    proc, seconds = timed_cli("train", "--runs-dir", str(runs_root), "--model", model, "--dataset", str(world["data"]), "--max-steps", "2", env=env)
    if proc.returncode == 0 and run_dirs(runs_root):
        check_late_failure(proc, runs_root, f"model/{case}", "model", {"config"}, started=started)
    assert_rejected(proc, f"model/{case}", "model", needles, root=runs_root, seconds=seconds)


@pytest.mark.parametrize(("case", "spec", "needles"), [
    ("no-config-json", "m-no-config", ("config.json",)),
    ("config-json-not-json", "m-config-not-json", ("config.json",)),
    ("hub-id-while-offline", "no-such-org/no-such-model", ("offline",)),
    ("regular-file", "m-regular-file", ("not a model folder",)),
    ("adapter-given-as-base-model", "m-adapter-as-base", ("adapter",)),
], ids=lambda v: v if isinstance(v, str) and "/" not in v and not v.startswith("m-") else None)
def test_estimate_refuses_bad_model(case: str, spec: str, needles: tuple[str, ...], world: dict[str, Path], tmp_path: Path) -> None:
    model = str(world[spec]) if spec in world else spec
    proc, seconds = timed_cli("estimate", "--model", model, "--free-gib", "10", env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert_rejected(proc, f"model/estimate-{case}", "model", needles, seconds=seconds)


# ===================================================================================================
# 4. Run ids and paths
# ===================================================================================================
@pytest.fixture(scope="module")
def fixture_runs(world: dict[str, Path]) -> Path:
    """A runs root with finished/stopped/failed runs (no training), and two broken folders."""
    from dpo_tui.core.config import build_config
    from dpo_tui.core.runs import RunStatus, create_run

    root = world["base"] / "fixture-runs"
    cfg = build_config({"model": str(world["model"]), "dataset": str(world["data"])})
    for rid, state in (("20250101-000000-fake-b0.1", "finished"), ("20250101-000001-fake-b0.1", "stopped"),
                       ("20250102-000000-fake-b0.2", "failed")):
        run = create_run(root, cfg, run_id=rid)
        run.write_status(RunStatus(state=state, created_at=1.0, host="elsewhere", exit_code=0))
    bad_status = create_run(root, cfg, run_id="20250103-000000-bad-status")
    bad_status.status_path.write_text('{"state": "runn')
    bad_config = create_run(root, cfg, run_id="20250104-000000-bad-config")
    bad_config.write_status(RunStatus(state="stopped", created_at=1.0, host="elsewhere"))
    bad_config.config_path.write_text("garbage")
    with_adapter = create_run(root, cfg, run_id=ADAPTER)
    with_adapter.write_status(RunStatus(state="finished", created_at=1.0, host="elsewhere", exit_code=0))
    with_adapter.adapter_dir.mkdir()
    (with_adapter.adapter_dir / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "base_model_name_or_path": str(world["model"]), "r": 8, "lora_alpha": 16,
         "target_modules": ["q_proj"], "task_type": "CAUSAL_LM"}))
    fake_safetensors(with_adapter.adapter_dir / "adapter_model.safetensors",
                     {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": [8, 32]})
    (with_adapter.adapter_dir / "COMPLETE").write_text("")
    return root


FINISHED, STOPPED, FAILED = "20250101-000000-fake-b0.1", "20250101-000001-fake-b0.1", "20250102-000000-fake-b0.2"
ADAPTER = "20250105-000000-adapter-b0.1"
# (id, argv after the command name, words the message must contain)
RUN_ID_CASES: list[tuple[str, list[str], tuple[str, ...]]] = [
    *[(f"unknown-id-{cmd}", [cmd, *pre, "no-such-run", *post], ("no run 'no-such-run'",)) for cmd, pre, post in (
        ("attach", [], []), ("stop", [], []), ("resume", [], []), ("delete", [], ["--yes"]),
        ("chat", ["--run"], ["--prompt", "hi"]), ("export", [], ["--merged", "OUT"]), ("compare", [FINISHED], []))],
    *[(f"ambiguous-prefix-{cmd}", [cmd, *pre, "20250101", *post], ("ambiguous", FINISHED, STOPPED)) for cmd, pre, post in (
        ("attach", [], []), ("resume", [], []), ("delete", [], ["--yes"]), ("chat", ["--run"], ["--prompt", "hi"]),
        ("export", [], ["--merged", "OUT"]))],
    ("traversal-dotdot-slash", ["resume", "../x"], ("no run folder at ../x",)),
    ("traversal-dotdot", ["delete", "..", "--yes"], ("no run '..'",)),
    ("traversal-into-parent-run", ["delete", "../fixture-runs", "--yes"], ("no run folder",)),
    ("absolute-path-not-a-run", ["attach", "/tmp"], ("no run folder at /tmp",)),
    ("empty-id", ["attach", ""], ("no run id",)),
    ("resume-finished-run", ["resume", FINISHED], ("already finished",)),
    ("resume-without-checkpoint", ["resume", STOPPED], ("no complete checkpoint",)),
    ("stop-finished-run", ["stop", FINISHED], ("not running", "finished")),
    ("delete-without-yes", ["delete", FAILED], ("--yes",)),
    ("chat-run-without-adapter", ["chat", "--run", FINISHED, "--prompt", "hi"], ("no adapter",)),
    ("export-stopped-run-without-checkpoint", ["export", STOPPED, "--merged", "OUT"], ("no final adapter",)),
    ("export-unknown-checkpoint", ["export", FINISHED, "--checkpoint", "7", "--merged", "OUT"], ("checkpoint-7",)),
    ("compare-one-run", ["compare", FINISHED], ("at least two",)),
    ("attach-corrupt-status", ["attach", "20250103"], ("status.json is unreadable",)),
    ("resume-corrupt-status", ["resume", "20250103"], ("status.json is unreadable",)),
    ("export-corrupt-config", ["export", "20250104", "--merged", "OUT"], ("config.json is unreadable",)),
    ("chat-corrupt-config", ["chat", "--run", "20250104", "--prompt", "hi"], ("config.json is unreadable",)),
    ("compare-corrupt-config", ["compare", "20250104", FINISHED], ("config.json is unreadable",)),
    ("chat-max-new-tokens-zero", ["chat", "--run", ADAPTER, "--prompt", "hi", "--max-new-tokens", "0"], ("--max-new-tokens",)),
    ("chat-temperature-negative", ["chat", "--run", ADAPTER, "--prompt", "hi", "--temperature", "-1"], ("temperature",)),
    ("chat-prompts-file-missing", ["chat", "--run", ADAPTER, "--prompts", "OUT"], ("no prompts file",)),
    ("export-nothing-to-do", ["export", ADAPTER], ("nothing to export",)),
    ("export-gguf-wrong-suffix", ["export", ADAPTER, "--gguf", "OUT"], (".gguf",)),
    ("export-into-the-run-folder", ["export", ADAPTER, "--merged", "RUNS"], ("would contain",)),
    ("export-into-the-base-model", ["export", ADAPTER, "--merged", "MODEL"], ("would contain",)),
    ("export-under-a-regular-file", ["export", ADAPTER, "--merged", "FILE/merged"], ("cannot write",)),
    ("export-existing-destination", ["export", ADAPTER, "--merged", "EXISTING"], ("already exists", "--force")),
    ("export-bad-ollama-name", ["export", ADAPTER, "--ollama", "OUT", "--ollama-name", "Bad Name!"], ("ollama model name",)),
    ("export-bad-hub-repo", ["export", ADAPTER, "--push-to-hub", "../../etc"], ("not a hub repo id",)),
    ("export-private-without-push", ["export", ADAPTER, "--merged", "OUT", "--private"], ("--push-to-hub",)),
]


@pytest.mark.parametrize(("case", "argv", "needles"), RUN_ID_CASES, ids=[c[0] for c in RUN_ID_CASES])
def test_run_commands_reject_bad_run_ids(case: str, argv: list[str], needles: tuple[str, ...], fixture_runs: Path, tmp_path: Path) -> None:
    before = {p.name: sorted(q.name for q in p.iterdir()) for p in run_dirs(fixture_runs)}
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "existing").mkdir()
    (tmp_path / "existing" / "keep.txt").write_text("keep")
    subst = {"OUT": str(tmp_path / "out"), "RUNS": str(fixture_runs), "MODEL": str(fixture_runs.parent / "models" / "good"),
             "FILE/merged": str(tmp_path / "a-file" / "merged"), "EXISTING": str(tmp_path / "existing")}
    argv = [subst.get(a, a) for a in argv]
    proc, seconds = timed_cli(argv[0], "--runs-dir", str(fixture_runs), *argv[1:])
    assert_rejected(proc, f"run-id/{case}", "run-id", needles, seconds=seconds, extra_dirs=(fixture_runs, tmp_path))
    after = {p.name: sorted(q.name for q in p.iterdir()) for p in run_dirs(fixture_runs)}
    assert after == before, "a refused command changed the runs root"
    assert not (tmp_path / "out").exists(), "a refused export left an output behind"
    assert (tmp_path / "existing" / "keep.txt").read_text() == "keep" and (tmp_path / "a-file").read_text() == "x"


def test_runs_lists_broken_folders_without_failing(fixture_runs: Path) -> None:
    proc = run_cli("runs", "--runs-dir", str(fixture_runs))
    assert proc.returncode == 0 and "Traceback" not in proc.stdout + proc.stderr
    assert "unreadable" in proc.stdout and "20250103-000000-bad-status" in proc.stdout and "20250104-000000-bad-config" in proc.stdout
    record_outcome(SUITE, "run-id/runs-lists-broken-folders", "accepted-with-warning", category="run-id")


@pytest.mark.parametrize("kind", ["root-under-a-regular-file", "root-is-a-regular-file"])
def test_train_with_unusable_runs_root(kind: str, world: dict[str, Path], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    root = blocker / "runs" if kind == "root-under-a-regular-file" else blocker
    proc, seconds = timed_cli("train", "--runs-dir", str(root), "--model", str(world["model"]), "--dataset", str(world["data"]))
    assert_rejected(proc, f"paths/{kind}", "paths", ("cannot create the runs root", str(root)), seconds=seconds)
    assert blocker.read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_train_with_read_only_runs_root(world: dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o555)
    try:
        proc, seconds = timed_cli("train", "--runs-dir", str(root), "--model", str(world["model"]), "--dataset", str(world["data"]))
        assert_rejected(proc, "paths/read-only-runs-root", "paths", ("permission denied",), root=root, seconds=seconds)
    finally:
        root.chmod(0o755)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_data_check_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.jsonl"
    path.write_bytes(_lines(_row(0)))
    path.chmod(0o000)
    try:
        proc, seconds = timed_cli("data", "check", str(path))
        assert_rejected(proc, "paths/unreadable-data-file", "paths", ("secret.jsonl",), seconds=seconds)
    finally:
        path.chmod(0o644)


def test_data_convert_refuses_to_overwrite_and_into_missing_folder(world: dict[str, Path], tmp_path: Path) -> None:
    existing = tmp_path / "out.jsonl"
    existing.write_text("keep me\n")
    proc, seconds = timed_cli("data", "convert", str(world["data"]), str(existing))
    assert_rejected(proc, "paths/convert-existing-output", "paths", ("exists", "--force"), seconds=seconds, extra_dirs=(tmp_path,))
    assert existing.read_text() == "keep me\n"
    proc, seconds = timed_cli("data", "convert", str(world["data"]), str(tmp_path / "no" / "such" / "out.jsonl"))
    assert_rejected(proc, "paths/convert-into-missing-folder", "paths", ("no such folder",), seconds=seconds, extra_dirs=(tmp_path,))


# ===================================================================================================
# 5. The console: a bad value typed in the experiment form is named on its row and blocks launch
# ===================================================================================================
UI_CASES: list[tuple[str, str, str, str]] = [
    # (id, field, typed text, words of the reason shown on the field's row)
    ("beta-negative", "beta", "-1", "must be > 0"),
    ("lora-rank-zero", "lora_rank", "0", "≥ 1"),
    ("learning-rate-not-a-number", "learning_rate", "fast", ""),
    ("max-length-zero", "max_length", "0", "between 1"),
    ("lora-dropout-one", "lora_dropout", "1", "[0, 1)"),
    ("targets-lm-head", "lora_target_modules", "lm_head", "lm_head"),
    ("name-path-traversal", "name", "../evil", "letters"),
]


@pytest.mark.parametrize(("case", "field", "typed", "reason"), UI_CASES, ids=[c[0] for c in UI_CASES])
async def test_experiment_form_names_the_bad_value_and_blocks_launch(case: str, field: str, typed: str, reason: str, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from dpo_tui.ui.app import DpoTuiApp
    from dpo_tui.ui.screens.dataset import DatasetScreen
    from dpo_tui.ui.screens.experiment import ExperimentScreen
    from dpo_tui.ui.screens.models import ModelScreen
    from tests.support.uikit import build_fake_sample_data, make_services

    monkeypatch.setenv("DPO_TUI_SAMPLE_DATA", str(build_fake_sample_data(tmp_path / "sample_data")))
    root = tmp_path / "runs"
    launched: list[str] = []
    app = DpoTuiApp(make_services(root, launcher=lambda run: launched.append(run.id) or 1))

    async def until(pilot: Any, condition: Any, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "condition not met in time"
            await pilot.pause(0.02)
        await pilot.pause()

    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ModelScreen) and app.screen.scanned)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DatasetScreen) and app.screen.report is not None)
        await pilot.press("ctrl+n")
        await until(pilot, lambda: isinstance(app.screen, ExperimentScreen))
        exp = app.screen
        widget = exp.query_one(f"#f-{field}")
        widget.focus()
        widget.value = ""
        await pilot.press(*[{"-": "minus", ".": "full_stop", "/": "slash", "_": "underscore"}.get(ch, ch) for ch in typed])
        await pilot.pause()
        assert field in exp.problems, exp.problems
        assert reason in exp.problems[field]
        assert exp.query_one(f"#row-{field}").has_class("-invalid")
        shown = str(exp.query_one(f"#e-{field}").render())
        assert exp.problems[field] in shown or reason in shown
        assert exp.check_action("launch", ()) is None
        await pilot.press("ctrl+r")
        await pilot.pause(0.2)
        assert isinstance(app.screen, ExperimentScreen) and not launched
    assert not root.exists() or run_dirs(root) == []
    record_outcome(SUITE, f"ui/{case}", "rejected", category="ui")


UI_DATA_CASES: list[tuple[str, bytes | None, str]] = [
    # (id, file content or None for a missing path, words shown in the dataset summary)
    ("missing-path", None, "not found"),
    ("empty-file", b"", "error"),
    ("non-utf8", _lines(_row(0), b'{"prompt": "caf\xe9", "chosen": "w1", "rejected": "w2"}'), "error"),
    ("null-chosen", _lines(_row(0), _row(1, chosen=None)), "error"),
]


@pytest.mark.parametrize(("case", "content", "shown"), UI_DATA_CASES, ids=[c[0] for c in UI_DATA_CASES])
async def test_dataset_screen_names_the_problem_and_blocks_next(case: str, content: bytes | None, shown: str, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from dpo_tui.ui.app import DpoTuiApp
    from dpo_tui.ui.screens.dataset import DatasetScreen
    from dpo_tui.ui.screens.models import ModelScreen
    from tests.support.uikit import build_fake_sample_data, make_services, screen_text

    monkeypatch.setenv("DPO_TUI_SAMPLE_DATA", str(build_fake_sample_data(tmp_path / "sample_data")))
    path = tmp_path / "bad.jsonl"
    if content is not None:
        path.write_bytes(content)
    app = DpoTuiApp(make_services(tmp_path / "runs"), dataset=str(path))
    async with app.run_test(size=(100, 30)) as pilot:
        deadline = time.monotonic() + 10
        while not (isinstance(app.screen, ModelScreen) and app.screen.scanned):
            assert time.monotonic() < deadline
            await pilot.pause(0.02)
        await pilot.press("enter")
        while not (isinstance(app.screen, DatasetScreen) and not app.screen.loading):
            assert time.monotonic() < deadline
            await pilot.pause(0.02)
        await pilot.pause(0.1)
        screen = app.screen
        text = screen_text(app)
        assert shown in text.lower(), text
        assert "Traceback" not in text
        assert screen.check_action("next", ()) is None
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, DatasetScreen), "bad data must not reach the experiment screen"
    record_outcome(SUITE, f"ui/dataset-{case}", "rejected", category="ui")


def test_a_run_outlives_its_base_model_folder(world: dict[str, Path], tmp_path: Path) -> None:
    """The base model folder is moved or deleted after training: the run must still list, attach and delete."""
    from dpo_tui.core.config import build_config
    from dpo_tui.core.runs import RunStatus, create_run

    model = build_fake_model(tmp_path / "models" / "short-lived")
    root = tmp_path / "runs"
    run = create_run(root, build_config({"model": str(model), "dataset": str(world["data"])}), run_id="20250101-000000-short-lived")
    run.write_status(RunStatus(state="finished", created_at=1.0, host="elsewhere", exit_code=0))
    for child in model.iterdir():
        child.unlink()
    model.rmdir()
    listing = run_cli("runs", "--runs-dir", str(root), "--json")
    assert listing.returncode == 0 and "Traceback" not in listing.stdout + listing.stderr
    state = json.loads(listing.stdout)[0]["state"]
    chat = run_cli("chat", "--runs-dir", str(root), "--run", run.id, "--prompt", "hi")
    assert chat.returncode == 2 and "Traceback" not in chat.stdout + chat.stderr, chat.stderr
    record_outcome(SUITE, "paths/base-model-deleted-after-run", "listed" if state == "finished" else "unreadable", category="paths",
                   listed_as=state)
    assert state == "finished", f"`dpo-tui runs` lists the finished run as {state!r} once its base model folder is gone"


@pytest.mark.parametrize("command", ["delete", "attach", "resume", "stop", "export", "chat"])
def test_a_model_folder_is_never_taken_for_a_run(command: str, tmp_path: Path) -> None:
    """A path given as a run id that is a model folder (it has a config.json too) must be refused untouched:
    nothing deleted, no status.json written into it."""
    model = build_fake_model(tmp_path / "models" / "precious-model")
    old = time.time() - 7200
    for p in (model, *model.iterdir()):
        os.utime(p, (old, old))  # an old folder: a "never started" run would be reconciled (and written) at once
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    extra = {"delete": ["--yes"], "export": ["--merged", str(tmp_path / "out")], "chat": ["--prompt", "hi"]}.get(command, [])
    argv = ["chat", "--run", str(model), *extra] if command == "chat" else [command, str(model), *extra]
    proc, seconds = timed_cli(argv[0], "--runs-dir", str(tmp_path / "runs"), *argv[1:])
    after = {p.name: p.read_bytes() for p in model.iterdir()} if model.exists() else {}
    if after != before:
        record_outcome(SUITE, f"run-id/model-folder-as-run-{command}", "deleted" if not after else "wrote-into-folder", category="run-id",
                       exit_code=proc.returncode)
    assert after == before, f"`dpo-tui {command} {model}` changed the model folder (exit {proc.returncode}): " \
                            f"{sorted(set(before) ^ set(after)) or 'deleted'}\n{proc.stdout}{proc.stderr}"
    assert_rejected(proc, f"run-id/model-folder-as-run-{command}", "run-id", ("no run folder",), seconds=seconds)


# The same refusals through the installed command, in a real process: the entry point, the exit code
# and the no-traceback rule end to end (argparse, a config file, a data file, a run id, a model folder).
INSTALLED_CASES = [
    ("flag-method-choice", ["train", "--method", "dora"], ("--method", "invalid choice")),
    ("config-beta-negative", ["train", "--config", "CONFIG"], ("beta", "-0.1", "experiment.toml")),
    ("data-malformed-line-2", ["data", "check", "DATA"], ("json",)),
    ("unknown-run-id", ["attach", "no-such-run"], ("no run 'no-such-run'",)),
    ("no-such-model-folder", ["estimate", "--model", "/nonexistent/model-folder", "--free-gib", "10"], ("no model folder",)),
]


@pytest.mark.parametrize(("case", "argv", "needles"), INSTALLED_CASES, ids=[c[0] for c in INSTALLED_CASES])
def test_installed_command_refuses_without_a_traceback(case: str, argv: list[str], needles: tuple[str, ...], world: dict[str, Path],
                                                       runs_root: Path, tmp_path: Path) -> None:
    config = tmp_path / "experiment.toml"
    config.write_text(f'model = "{world["model"]}"\ndataset = "{world["data"]}"\nbeta = -0.1\n')
    data = _write_case(tmp_path / "data", "d.jsonl", _lines(_row(0), b'{"prompt": "w1", "chosen": ', _row(2)))
    argv = [{"CONFIG": str(config), "DATA": str(data)}.get(a, a) for a in argv]
    if argv[0] in ("train", "attach"):
        argv = [argv[0], "--runs-dir", str(runs_root), *argv[1:]]
    if argv[0] == "train" and "--config" not in argv:
        argv += ["--model", str(world["model"]), "--dataset", str(world["data"])]
    started = time.perf_counter()
    proc = run_cli(*argv)
    assert_rejected(proc, f"installed/{case}", "installed", needles, root=runs_root, seconds=time.perf_counter() - started,
                    line=2 if case.startswith("data") else None)
