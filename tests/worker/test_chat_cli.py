"""``dpo-tui chat``: scripted side-by-side comparisons, and judgement files as training data."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from dpo_tui.core import chat_protocol as P
from dpo_tui.core.config import build_config
from dpo_tui.core.paths import sample_heldout_prompts_path
from dpo_tui.core.runs import Run, RunStatus, create_run
from tests.support.cli import run_cli
from tests.worker.test_chat_support import ChatAssets, build_assets


@pytest.fixture(scope="session")
def assets(tmp_path_factory) -> ChatAssets:
    return build_assets(tmp_path_factory.mktemp("chat-assets"))


def adapter_run(root: Path, assets: ChatAssets, with_adapter: bool = True) -> Run:
    run = create_run(root, build_config({"model": str(assets.base), "beta": 0.2}), run_id="20251126-212000-tiny-b0.2")
    if with_adapter:
        shutil.copytree(assets.adapter_a, run.adapter_dir)
        (run.adapter_dir / "COMPLETE").write_text("")
    run.write_status(RunStatus(state="finished", created_at=0.0, exit_code=0))
    return run


def test_json_answers_each_prompt_with_base_and_tuned(runs_root, assets, tmp_path):
    run = adapter_run(runs_root, assets)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("What is the capital of Kenya?\n\nHow many legs does a spider have?\nWhat is water made of?\n")
    proc = run_cli("chat", "--run", run.id[:12], "--runs-dir", str(runs_root), "--prompts", str(prompts),
                   "--greedy", "--max-new-tokens", "24", "--batch-size", "2", "--reward", "--json", timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["prompt"] for r in rows] == ["What is the capital of Kenya?", "How many legs does a spider have?",
                                           "What is water made of?"]
    for r in rows:
        assert isinstance(r["base"], str) and isinstance(r["tuned"], str)
        assert 1 <= r["base_tokens"] <= 24 and 1 <= r["tuned_tokens"] <= 24
        assert r["base_finish"] in ("eos", "length") and r["tuned_tokens_per_s"] > 0 and r["base_ttft_s"] > 0
        assert r["tuned_reward"] > r["base_reward"], "the tuned answer scores higher under its own adapter"
    # the same prompt alone, greedy: identical answers (batching does not change them)
    one = run_cli("chat", "--run", run.id, "--runs-dir", str(runs_root), "--prompt", "What is water made of?",
                  "--greedy", "--max-new-tokens", "24", "--json", timeout=300)
    assert one.returncode == 0, one.stderr
    alone = json.loads(one.stdout)[0]
    assert (alone["base"], alone["tuned"]) == (rows[2]["base"], rows[2]["tuned"])


def test_text_output(runs_root, assets):
    run = adapter_run(runs_root, assets)
    proc = run_cli("chat", "--run", run.id, "--runs-dir", str(runs_root), "--prompt", "Hello", "--prompt", "Why?",
                   "--max-new-tokens", "8", "--seed", "3", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "[1/2] Hello" in proc.stdout and "[2/2] Why?" in proc.stdout
    assert re.search(r"base +\(\d+ tok\): ", proc.stdout) and re.search(r"tuned \(\d+ tok\): ", proc.stdout)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--run", "nope", "--prompt", "x"], "No run 'nope'"),
        (["--run", "RUN", "--prompts", "/nonexistent/prompts.txt"], "No prompts file"),
        (["--run", "RUN", "--prompt", "x", "--max-new-tokens", "0"], "--max-new-tokens"),
        (["--run", "RUN", "--prompt", "x", "--temperature", "0"], "temperature"),
        (["--run", "NOADAPTER", "--prompt", "x"], "has no adapter yet"),
    ],
)
def test_operator_errors_exit_2_without_a_traceback(runs_root, assets, args, message):
    run = adapter_run(runs_root, assets)
    bare = create_run(runs_root, build_config({"model": str(assets.base)}), run_id="20251126-220000-bare")
    args = [a.replace("NOADAPTER", bare.id).replace("RUN", run.id) for a in args]
    proc = run_cli("chat", "--runs-dir", str(runs_root), *args, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_jsonl_prompts_file_and_bad_lines(runs_root, assets, tmp_path):
    from dpo_tui.cli.chat import read_prompts
    from dpo_tui.core.errors import UserError

    good = tmp_path / "p.jsonl"
    good.write_text(json.dumps({"prompt": "Hi"}) + "\n" + json.dumps({"prompt": [{"role": "user", "content": "Yo"}]}) + "\n")
    assert read_prompts(good) == ["Hi", [{"role": "user", "content": "Yo"}]]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"question": "x"}\nnot json\n')
    with pytest.raises(UserError) as exc:
        read_prompts(bad)
    assert "2 bad line(s)" in exc.value.summary and exc.value.problems[0].line == 2


def test_judgement_files_pass_the_data_check(tmp_path):
    single = [{"role": "user", "content": "What is the capital of Kenya?"}]
    path = P.judgements_path(tmp_path, "sample")
    for i in range(3):
        P.append_judgement(path, P.judgement_row([{"role": "user", "content": f"Question {i}?"}], f"Short {i}.",
                                                 f"Well, a long answer {i}."))
    proc = run_cli("data", "check", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    conv = P.judgements_path(tmp_path, "sample", conversational=True)
    history = single + [{"role": "assistant", "content": "It is X."}, {"role": "user", "content": "Are you sure?"}]
    for i in range(3):
        P.append_judgement(conv, P.judgement_row(history, f"Yes {i}.", f"Well, maybe {i}.", system_prompt="Be brief."))
    proc = run_cli("data", "check", str(conv))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
def test_tuned_answers_on_heldout_prompts_are_shorter(trained_run):
    """The sample data teaches concise answers: after DPO, greedy answers to held-out prompts are shorter."""
    proc = run_cli("chat", "--run", str(trained_run.path), "--prompts", str(sample_heldout_prompts_path()),
                   "--greedy", "--max-new-tokens", "96", "--batch-size", "16", "--json", timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) == len([x for x in sample_heldout_prompts_path().read_text().splitlines() if x.strip()])
    base_words = sum(len(r["base"].split()) for r in rows) / len(rows)
    tuned_words = sum(len(r["tuned"].split()) for r in rows) / len(rows)
    assert tuned_words < base_words, f"tuned {tuned_words:.1f} words vs base {base_words:.1f}"
