"""``dpo-tui pairs generate`` end to end on the sample model: the detached worker, stop, SIGKILL and resume."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from dpo_tui.core.job_folder import read_status, stop_job
from dpo_tui.core.pairs.candidates import CANDIDATES_FILE, count_lines, read_candidates, scan_candidates
from dpo_tui.core.pairs.plan import read_pairs_job
from dpo_tui.core.runs.status import process_alive
from tests.support.cli import run_cli_inprocess, wait_until

SHORT, LONG = "Answer in one sentence.", "Answer at length, with detail."


def _prompts(path: Path, count: int) -> Path:
    path.write_text("".join(f"What is {i} plus {i}?\n" + ("\n" if i % 7 == 0 else "") for i in range(count)))
    return path


def _worker_gone(job: Path) -> bool:
    status = read_status(job) or {}
    pid = status.get("pid")
    return bool(pid) and not process_alive(pid, status.get("pid_start"))


def test_instruction_pair_runs_to_done_with_provenance(tmp_path: Path) -> None:
    prompts, out = _prompts(tmp_path / "p.txt", 5), tmp_path / "job"
    proc = run_cli_inprocess("pairs", "generate", "--model", "sample", "--prompts", str(prompts), "--n", "2",
                             "--instruction-a", SHORT, "--instruction-b", LONG, "--max-new-tokens", "16",
                             "--seed", "7", "--batch-size", "4", "--device", "cpu", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr + (out / "worker.log").read_text()
    assert "done" in proc.stdout and "Traceback" not in proc.stderr
    rows = read_candidates(out)
    assert [r.index for r in rows] == [0, 1, 2, 3, 4]
    assert [r.line for r in rows] == [1, 3, 4, 5, 6]  # line 2 is blank
    for row in rows:
        assert row.prompt == f"What is {row.index} plus {row.index}?"  # stored without the instruction
        assert row.messages == [{"role": "user", "content": row.prompt}] and not row.conversational
        assert [c.id for c in row.candidates] == ["c0", "c1"]
        assert [c.instruction for c in row.candidates] == [SHORT, LONG]
        assert [c.seed for c in row.candidates] == [7000 + row.index * 2, 7000 + row.index * 2 + 1]
        assert all(c.finish in ("eos", "stop", "length") and c.tokens <= 16 for c in row.candidates)
        prov = row.provenance
        assert prov["model"] == "sample" and prov["adapter"] is None and prov["temperature"] == 0.8
        assert prov["top_p"] == 0.95 and prov["max_new_tokens"] == 16 and "dpo_tui" in prov and prov["created_at"] > 0
    status = read_status(out) or {}
    assert status["state"] == "done" and status["done"] == 5 and status["candidates"] == 10
    assert status["truncated"] == sum(c.finish == "length" for r in rows for c in r.candidates)
    again = run_cli_inprocess("pairs", "generate", "--model", "sample", "--prompts", str(prompts), "--n", "2",
                              "--instruction-a", SHORT, "--instruction-b", LONG, "--max-new-tokens", "16",
                              "--seed", "7", "--out", str(out))
    assert again.returncode == 2 and "already done" in again.stderr


def test_stop_then_sigkill_then_resume_makes_every_prompt_exactly_once(tmp_path: Path) -> None:
    total = 90
    prompts, out = _prompts(tmp_path / "p.txt", total), tmp_path / "job"
    args = ["pairs", "generate", "--model", "sample", "--prompts", str(prompts), "--n", "2", "--max-new-tokens", "24",
            "--batch-size", "2", "--device", "cpu", "--out", str(out)]
    proc = run_cli_inprocess(*args, "--detach")
    assert proc.returncode == 0, proc.stderr
    wait_until(lambda: count_lines(out) >= 1, timeout=180, what="the first candidates line")

    # SIGTERM: the chunk in flight is finished or dropped whole, the state is stopped.
    assert stop_job(out, wait_s=60) == "stopped", (out / "worker.log").read_text()
    stopped_at = count_lines(out)
    assert 1 <= stopped_at < total
    assert not scan_candidates(out).skipped

    # The same folder with another --n is refused, naming the setting.
    refused = run_cli_inprocess(*[a if a != "2" else "4" for a in args[:-1]], str(out), "--detach")
    assert refused.returncode == 2 and "--n: 2 in the folder, 4 now" in refused.stderr, refused.stderr

    # Resume, then SIGKILL mid-job, with a torn line left behind as a crash mid-write would.
    assert run_cli_inprocess(*args, "--detach").returncode == 0
    wait_until(lambda: count_lines(out) > stopped_at, timeout=180, what="a line after the resume")
    pid = (read_status(out) or {})["pid"]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    wait_until(lambda: _worker_gone(out), timeout=30, what="the killed worker to be gone")
    assert read_pairs_job(out).state == "crashed"
    killed_at = count_lines(out)
    assert killed_at < total, "the job finished before the kill: use more prompts"
    with open(out / CANDIDATES_FILE, "a") as fh:
        fh.write('{"index": 9999, "line": 1, "prompt": "tor')

    resumed = run_cli_inprocess("pairs", "resume", str(out))  # follows it to the end
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr + (out / "worker.log").read_text()
    scan = scan_candidates(out)
    assert not scan.skipped and not scan.torn_tail
    indices = [r.index for r in scan.rows]
    assert sorted(indices) == list(range(total)) and len(indices) == total  # none lost, none twice
    assert read_pairs_job(out).state == "done"


def test_adapter_round_two_samples_from_the_tuned_adapter(tmp_path: Path, trained_run, session_runs_root: Path) -> None:
    prompts = _prompts(tmp_path / "p.txt", 4)
    common = ["--prompts", str(prompts), "--n", "2", "--max-new-tokens", "24", "--temperature", "1.0",
              "--device", "cpu", "--runs-dir", str(session_runs_root)]
    tuned = run_cli_inprocess("pairs", "generate", "--adapter", trained_run.id, *common, "--out", str(tmp_path / "tuned"))
    assert tuned.returncode == 0, tuned.stderr + (tmp_path / "tuned" / "worker.log").read_text()
    assert f"Sampling from run {trained_run.id}: its final adapter" in tuned.stderr
    base = run_cli_inprocess("pairs", "generate", "--model", "sample", *common, "--out", str(tmp_path / "base"))
    assert base.returncode == 0, base.stderr
    rows_t, rows_b = read_candidates(tmp_path / "tuned"), read_candidates(tmp_path / "base")
    for row in rows_t:
        assert row.provenance["adapter"] == trained_run.id and row.provenance["checkpoint"] == "final"
        assert Path(row.provenance["adapter_path"]) == trained_run.adapter_dir
        assert row.provenance["model"] == "sample"
    # Same seeds, same prompts: only the adapter differs, so the answers must too.
    assert [c.seed for r in rows_t for c in r.candidates] == [c.seed for r in rows_b for c in r.candidates]
    assert [c.text for r in rows_t for c in r.candidates] != [c.text for r in rows_b for c in r.candidates]
    mismatch = run_cli_inprocess("pairs", "generate", "--adapter", trained_run.id, "--model", str(tmp_path), *common,
                                 "--out", str(tmp_path / "x"))
    assert mismatch.returncode == 2 and "was trained on" in mismatch.stderr, mismatch.stderr
