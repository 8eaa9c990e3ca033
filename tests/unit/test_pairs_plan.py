"""The pairs plan (core, no torch): refusals before any worker starts, the folder rules, candidates reading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dpo_tui.core.errors import UserError
from dpo_tui.core.job_folder import write_status
from dpo_tui.core.pairs.candidates import (
    CANDIDATES_FILE,
    read_candidates,
    scan_candidates,
    truncate_torn_tail,
)
from dpo_tui.core.pairs.plan import PairsPlan, pairs_job_dirs, plan_pairs, read_pairs_job
from dpo_tui.core.paths import pairs_root
from tests.support.cli import run_cli_inprocess

PLENTY = 1 << 40


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("What is the capital of Norway?\n\nName a colour.\n# a comment\nWhat is 2+2?\n")
    return path


def _plan(prompts: Path, out: Path, **kw) -> PairsPlan:
    return plan_pairs(model="sample", prompts=prompts, out=out, free_of=lambda p: PLENTY, **kw)


def _row(index: int, n: int = 2) -> dict:
    return {"index": index, "line": index + 1, "prompt": f"p{index}", "messages": [{"role": "user", "content": f"p{index}"}],
            "conversational": False, "candidates": [{"id": f"c{k}", "text": f"answer {k}", "tokens": 2, "finish": "eos",
                                                    "seed": k, "instruction": None} for k in range(n)],
            "provenance": {"model": "sample"}}


def test_plan_reads_prompts_and_resolves_the_model(prompts: Path, tmp_path: Path) -> None:
    plan = _plan(prompts, tmp_path / "out", n=4, seed=3, batch_size=16)
    assert plan.prompts_count == 3  # the blank line and the comment are skipped
    assert Path(plan.model_path).name == "tiny-chat"
    assert plan.prompts_per_chunk == 4
    assert plan.candidate_seed(2, 1) == 3 * 1000 + 2 * 4 + 1
    assert plan.instruction(0) is None


@pytest.mark.parametrize("n", [1, 9])
def test_n_out_of_range_is_refused(prompts: Path, tmp_path: Path, n: int) -> None:
    proc = run_cli_inprocess("pairs", "generate", "--model", "sample", "--prompts", str(prompts), "--n", str(n),
                             "--out", str(tmp_path / "out"), "--detach")
    assert proc.returncode == 2, proc.stderr
    assert "--n" in proc.stderr and "2..8" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_instruction_pair_needs_both_and_an_even_n(prompts: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="both"):
        _plan(prompts, tmp_path / "o", instruction_a="short")
    with pytest.raises(UserError) as exc:
        _plan(prompts, tmp_path / "o", n=3, instruction_a="short", instruction_b="long")
    assert "even" in exc.value.render()
    plan = _plan(prompts, tmp_path / "o", n=4, instruction_a="short", instruction_b="long")
    assert [plan.instruction(k) for k in range(4)] == ["short", "long", "short", "long"]


@pytest.mark.parametrize(("content", "expect"), [
    (b"ok prompt\n" + b"x" * 40_000 + b"\n", "p.txt:2:"),
    (b"ok prompt\nbad \xff\xfe utf8\n", "p.txt:2:"),
    (b"ok\nfine\nnul \x00 here\n", "p.txt:3:"),
    (b"\n\n\n", "no prompts"),
], ids=["huge-line", "bad-utf8", "nul", "only-empty-lines"])
def test_bad_prompt_files_are_refused_with_line_numbers(tmp_path: Path, content: bytes, expect: str) -> None:
    path = tmp_path / "p.txt"
    path.write_bytes(content)
    proc = run_cli_inprocess("pairs", "generate", "--model", "sample", "--prompts", str(path), "--out",
                             str(tmp_path / "out"), "--detach")
    assert proc.returncode == 2, proc.stderr
    assert expect in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_different_plan_in_the_same_folder_is_refused_naming_the_setting(prompts: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    plan = _plan(prompts, out, n=2)
    out.mkdir()
    (out / "plan.json").write_text(plan.to_json())
    same = _plan(prompts, out, n=2, batch_size=4, device="cpu")  # speed settings may change on a resume
    assert same.created_at == plan.created_at
    with pytest.raises(UserError) as exc:
        _plan(prompts, out, n=4)
    text = exc.value.render()
    assert "--n: 2 in the folder, 4 now" in text and "pairs resume" in text
    prompts.write_text(prompts.read_text() + "One more?\n")
    with pytest.raises(UserError, match="different plan") as exc:
        _plan(prompts, out, n=2)
    assert "prompts file changed" in exc.value.render()


def test_a_non_empty_folder_that_is_not_a_pairs_job_is_refused(prompts: Path, tmp_path: Path) -> None:
    out = tmp_path / "stuff"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a pairs job folder"):
        _plan(prompts, out)
    (tmp_path / "empty").mkdir()
    assert _plan(prompts, tmp_path / "empty").prompts_count == 3
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        _plan(prompts, tmp_path / "afile")


def test_too_little_disk_is_refused(prompts: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="Not enough disk space"):
        plan_pairs(model="sample", prompts=prompts, out=tmp_path / "out", free_of=lambda p: 1024)


def test_missing_model_and_adapter_base_mismatch(prompts: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="No model"):
        plan_pairs(model=None, prompts=prompts, out=tmp_path / "o")
    with pytest.raises(UserError, match="Hugging Face cache"):
        plan_pairs(model="nobody-org/not-cached-model", prompts=prompts, out=tmp_path / "o")
    proc = run_cli_inprocess("pairs", "generate", "--model", str(tmp_path / "nowhere"), "--prompts", str(prompts),
                             "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr


def test_read_candidates_skips_and_counts_damaged_lines_and_a_torn_tail(tmp_path: Path) -> None:
    lines = [json.dumps(_row(0)), "{not json", json.dumps({"index": 5}), json.dumps(_row(1)), json.dumps(_row(0))]
    torn = json.dumps(_row(2))[:30]
    (tmp_path / CANDIDATES_FILE).write_text("\n".join(lines) + "\n" + torn)
    scan = scan_candidates(tmp_path)
    assert [r.index for r in scan.rows] == [0, 1]
    assert scan.skipped == 4 and scan.torn_tail  # bad JSON, no fields, a repeated index, the torn last line
    assert scan.rows[0].candidates[1].text == "answer 1"
    assert truncate_torn_tail(tmp_path) == len(torn)
    assert not scan_candidates(tmp_path).torn_tail
    assert truncate_torn_tail(tmp_path) == 0
    assert read_candidates(tmp_path / "missing") == []


def test_job_view_and_listing(prompts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DPO_TUI_HOME", str(tmp_path / "home"))
    assert pairs_root() == tmp_path / "home" / "pairs"
    older, newer = pairs_root() / "older", pairs_root() / "newer"
    for i, out in enumerate((older, newer)):
        out.mkdir(parents=True)
        plan = _plan(prompts, out).model_copy(update={"created_at": 1000.0 + i})
        (out / "plan.json").write_text(plan.to_json())
    (pairs_root() / "junk").mkdir()
    assert pairs_job_dirs() == [newer, older]
    (newer / CANDIDATES_FILE).write_text(json.dumps(_row(0)) + "\n")
    write_status(newer, state="stopped", total=3, candidates=2)
    view = read_pairs_job(newer)
    assert (view.state, view.done, view.total, view.candidates) == ("stopped", 1, 3, 2)
    assert "1/3 prompts" in view.line()
    proc = run_cli_inprocess("pairs", "list", env={"DPO_TUI_HOME": str(tmp_path / "home")})
    assert proc.returncode == 0 and proc.stdout.splitlines()[0].startswith("newer"), proc.stdout
    proc = run_cli_inprocess("pairs", "status", "newer", env={"DPO_TUI_HOME": str(tmp_path / "home")})
    assert proc.returncode == 0 and "stopped" in proc.stdout, proc.stderr
    assert read_pairs_job(tmp_path / "nothing").state == "unreadable"
