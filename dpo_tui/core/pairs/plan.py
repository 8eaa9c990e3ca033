"""A pair-generation job: the validated plan, starting and resuming its detached worker, reading its state.

The job folder is ``--out`` itself (:mod:`dpo_tui.core.job_folder` for plan.json, status.json,
progress.jsonl, worker.log; :mod:`.candidates` for candidates.jsonl). Everything an operator can get wrong
is checked here, before a worker (and torch) starts: the model, the adapter's run, the prompts file (every
bad line with its number), the settings, the folder, free disk.

Starting into a folder that already holds a pairs job with the same plan continues it (done prompts are
skipped); a different plan is refused, naming each setting that differs. ``batch_size`` and ``device``
change speed, not answers (every candidate has its own seed), so they may differ on a resume.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import Problem, UserError
from ..fsutil import JSON_ERRORS, atomic_write_text
from ..job_folder import (
    ACTIVE_STATES,
    LOCK_FILE,
    LOG_FILE,
    PLAN_FILE,
    STATUS_FILE,
    claimed,
    effective_state,
    eta_seconds,
    launch_detached,
    lock_held,
    read_status,
    write_status,
)
from .candidates import CANDIDATES_FILE, count_lines

WORKER_MODULE = "dpo_tui.worker.pairs"
N_MIN, N_MAX = 2, 8
BYTES_PER_TOKEN = 8
"""Room per answer token in candidates.jsonl (JSON escaping of non-ASCII text included)."""
SAME_PLAN_FIELDS = ("model", "adapter", "adapter_path", "prompts_file", "prompts_sha256", "n", "temperature", "top_p",
                    "max_new_tokens", "system", "instruction_a", "instruction_b", "seed")
FLAG_OF = {"model": "--model", "adapter": "--adapter", "adapter_path": "--adapter (its weights)",
           "prompts_file": "--prompts", "prompts_sha256": "--prompts (the file's content)", "n": "--n",
           "temperature": "--temperature", "top_p": "--top-p", "max_new_tokens": "--max-new-tokens",
           "system": "--system", "instruction_a": "--instruction-a", "instruction_b": "--instruction-b",
           "seed": "--seed"}


class PairsPlan(BaseModel):
    """What a generate worker does; written to ``DIR/plan.json`` before it starts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    out: str
    """The job folder (absolute)."""
    model: str
    """The base model as given (``sample``, a folder, a hub id)."""
    model_path: str
    """What the worker loads: the folder, or the hub id (read from the HF cache)."""
    adapter: str | None = None
    """The run whose tuned adapter the candidates are sampled from (round two), else None."""
    adapter_path: str | None = None
    adapter_label: str | None = None
    """``final`` or ``checkpoint-N``: which weights of the run."""
    prompts_file: str
    prompts_sha256: str
    prompts_count: int
    n: int = 2
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 128
    system: str = ""
    instruction_a: str | None = None
    instruction_b: str | None = None
    seed: int = 0
    batch_size: int = 16
    device: str = "auto"
    created_at: float = 0.0

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str) -> PairsPlan:
        return cls.model_validate_json(text)

    @property
    def prompts_per_chunk(self) -> int:
        """Prompts per batch: all ``n`` candidates of a prompt go in the same batch."""
        return max(1, self.batch_size // self.n)

    def instruction(self, k: int) -> str | None:
        """The instruction candidate ``k`` is steered with (A for even, B for odd), None without a pair."""
        if self.instruction_a is None:
            return None
        return self.instruction_a if k % 2 == 0 else self.instruction_b

    def candidate_seed(self, index: int, k: int) -> int:
        return self.seed * 1000 + index * self.n + k

    def differences(self, other: PairsPlan) -> list[str]:
        """``--n: 2 in the folder, 4 now`` for each result-changing setting that differs."""
        out = []
        for name in SAME_PLAN_FIELDS:
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                if name == "prompts_sha256":
                    out.append(f"{FLAG_OF[name]}: the prompts file changed since the job started")
                else:
                    out.append(f"{FLAG_OF[name]}: {theirs!r} in the folder, {mine!r} now")
        return out


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _model_path(model: str) -> str:
    """The base model resolved the way ``train`` resolves ``--model``; refused when nothing usable is there."""
    from ..config import looks_like_hub_id, resolve_model
    from ..models import find_in_cache, inspect_model

    if looks_like_hub_id(model.partition("@")[0]):
        repo, _, revision = model.partition("@")
        cached = find_in_cache(repo, revision or None)
        if cached is None or cached.error:
            raise UserError(f"{model} is not in the Hugging Face cache",
                            hint=f"download it first (huggingface-cli download {repo}), or give a model folder")
        return resolve_model(model)
    info = inspect_model(model)
    if info.error:
        raise UserError(f"Cannot use the model {model}: {info.error}", hint="give a model folder, a cached hub id, or 'sample'")
    if info.is_adapter:
        raise UserError(f"{model} is an adapter, not a base model",
                        hint="give its base as --model and the run that trained it as --adapter RUN_ID")
    return resolve_model(model)


def _adapter(runs_root: Path, run_handle: str, model: str | None) -> tuple[str, str, str, str, str]:
    """(run id, adapter path, which weights, base model spec, base path) for ``--adapter RUN_ID``."""
    from ..chat_client import run_adapter
    from ..config import resolve_model
    from ..runs.resolve import resolve_run

    run = resolve_run(runs_root, run_handle)
    choice = run_adapter(run)  # the final adapter, else the newest complete checkpoint
    label = "final" if choice.path == run.adapter_dir else choice.path.name
    if model is not None and resolve_model(model) != choice.base_path:
        raise UserError(f"Run {run.id} was trained on {choice.model}, not on {model}",
                        hint=f"drop --model (the run's base is used) or pass --model {choice.model}")
    return run.id, str(choice.path), label, choice.model, choice.base_path


def plan_pairs(*, model: str | None, prompts: str | Path, out: str | Path, n: int = 2, adapter: str | None = None,
               runs_root: Path | None = None, temperature: float = 0.8, top_p: float = 0.95, max_new_tokens: int = 128,
               system: str = "", instruction_a: str | None = None, instruction_b: str | None = None, seed: int = 0,
               batch_size: int = 16, device: str = "auto", free_of: Any = None) -> PairsPlan:
    """Validate everything and return the plan; :class:`UserError` naming what is wrong and how to fix it."""
    from ..disk_space import check_space
    from ..paths import runs_root as default_runs_root
    from ..prompts_file import read_prompts

    problems = []
    if not N_MIN <= n <= N_MAX:
        problems.append(Problem(f"--n {n}: candidates per prompt must be {N_MIN}..{N_MAX}", field="n"))
    if (instruction_a is None) != (instruction_b is None):
        problems.append(Problem("give both --instruction-a and --instruction-b (or neither)", field="instruction"))
    elif instruction_a is not None:
        if not instruction_a.strip() or not (instruction_b or "").strip():
            problems.append(Problem("--instruction-a/-b must not be empty", field="instruction"))
        if n % 2:
            problems.append(Problem(f"--n {n}: with two instructions the candidates alternate A/B, so n must be even",
                                    field="n"))
    if not (temperature > 0 and temperature == temperature and temperature < float("inf")):
        problems.append(Problem(f"--temperature {temperature}: must be > 0", field="temperature"))
    if not 0 < top_p <= 1:
        problems.append(Problem(f"--top-p {top_p}: must be in (0, 1]", field="top_p"))
    if not 1 <= max_new_tokens <= 65536:
        problems.append(Problem(f"--max-new-tokens {max_new_tokens}: must be 1..65536", field="max_new_tokens"))
    if batch_size < 1:
        problems.append(Problem(f"--batch-size {batch_size}: must be ≥ 1", field="batch_size"))
    if problems:
        raise UserError("Bad pair-generation settings", problems)

    run_id: str | None = None
    adapter_path: str | None = None
    adapter_label: str | None = None
    if adapter:
        run_id, adapter_path, adapter_label, model_spec, model_path = _adapter(
            Path(runs_root) if runs_root else default_runs_root(), adapter, model)
    elif model:
        model_spec, model_path = model, _model_path(model)
    else:
        raise UserError("No model given", hint="pass --model (a folder, a cached hub id, or 'sample') or --adapter RUN_ID")

    prompts_path = Path(prompts).expanduser().resolve()
    items = read_prompts(prompts_path)
    out_dir = Path(out).expanduser().resolve()
    plan = PairsPlan(
        out=str(out_dir), model=model_spec, model_path=model_path, adapter=run_id, adapter_path=adapter_path,
        adapter_label=adapter_label, prompts_file=str(prompts_path), prompts_sha256=_file_sha256(prompts_path),
        prompts_count=len(items), n=n, temperature=float(temperature), top_p=float(top_p),
        max_new_tokens=max_new_tokens, system=system, instruction_a=instruction_a, instruction_b=instruction_b,
        seed=seed, batch_size=batch_size, device=device, created_at=time.time(),
    )
    existing = existing_plan(out_dir)
    if existing is not None:
        diffs = plan.differences(existing)
        if diffs:
            raise UserError(f"{out_dir} holds a pairs job with a different plan", [Problem(d) for d in diffs],
                            hint=f"choose another --out, or continue it as planned with: dpo-tui pairs resume {out_dir}")
        plan = plan.model_copy(update={"created_at": existing.created_at})
    # Answers as JSON: each prompt's n answers at the token limit, plus the prompt and provenance per line.
    need = len(items) * (n * max_new_tokens * BYTES_PER_TOKEN + 2048) - count_lines(out_dir) * 2048
    check_space([("candidates", out_dir / CANDIDATES_FILE, max(0, need))], free_of)
    return plan


def existing_plan(out_dir: Path) -> PairsPlan | None:
    """The plan of a pairs folder; None for a new or empty folder; refused for anything else."""
    if not out_dir.exists():
        return None
    if not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file", hint="give a folder for the pairs job (new, or an earlier pairs job)")
    plan_file = out_dir / PLAN_FILE
    if not plan_file.exists():
        try:
            # A lock file alone is what a launch that failed before writing the plan leaves.
            if next((p for p in out_dir.iterdir() if p.name != LOCK_FILE), None) is None:
                return None
        except OSError as exc:
            raise UserError(f"Cannot read {out_dir}: {exc.strerror or exc}") from None
        if lock_held(out_dir):
            # Another `pairs generate` into this folder has claimed it and is writing its plan right now.
            raise UserError(f"The pairs job in {out_dir} is already running (another launch holds its lock)",
                            hint=f"follow it with: dpo-tui pairs status {out_dir}")
        raise UserError(f"{out_dir} is not empty and is not a pairs job folder (no {PLAN_FILE})",
                        hint="give a new folder for --out; nothing was written")
    try:
        return PairsPlan.from_json(plan_file.read_text(encoding="utf-8"))
    except (OSError, ValidationError, ValueError) as exc:
        raise UserError(f"{plan_file} is damaged: {str(exc).splitlines()[0]}",
                        hint="give a new folder for --out; the candidates already made stay in this one") from None


def _launch(plan: PairsPlan, out_dir: Path) -> Path:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"Cannot create the pairs job folder {out_dir}: {exc.strerror or exc}",
                        hint="--out must be a writable folder with free space") from None
    with claimed(out_dir, "pairs") as lock_fd:
        status = read_status(out_dir)
        state = effective_state(status) if status else None
        if state in ACTIVE_STATES:
            raise UserError(f"The pairs job in {out_dir} is already running (pid {status.get('pid') if status else '?'})",
                            hint=f"follow it with: dpo-tui pairs status {out_dir}")
        if state == "done" and count_lines(out_dir) >= plan.prompts_count:
            raise UserError(f"The pairs job in {out_dir} is already done",
                            hint=f"its candidates are in {out_dir / CANDIDATES_FILE}; label them with dpo-tui pairs label")
        try:
            if not (out_dir / PLAN_FILE).exists():
                atomic_write_text(out_dir / PLAN_FILE, plan.to_json())
            write_status(out_dir, state="starting", created_at=time.time(), pid=None, pid_start=None, ended_at=None,
                         error=None, done=count_lines(out_dir), total=plan.prompts_count)
        except OSError as exc:
            raise UserError(f"Cannot write the pairs job {out_dir}: {exc.strerror or exc}",
                            hint="--out must be a writable folder with free space") from None
    launch_detached(out_dir, WORKER_MODULE, ["generate", "--job", str(out_dir)], "pair generation", lock_fd=lock_fd)
    return out_dir


def start_pairs(plan: PairsPlan) -> Path:
    """Write the plan (or keep the folder's identical one) and start the worker detached. Returns the folder."""
    return _launch(plan, Path(plan.out))


def resume_pairs(job_dir: Path | str) -> Path:
    """Continue a stopped, failed or crashed job as it was planned (its done prompts are skipped)."""
    from ..prompts_file import read_prompts

    out_dir = Path(job_dir).expanduser().resolve()
    plan = existing_plan(out_dir)
    if plan is None:
        raise UserError(f"{out_dir} is not a pairs job folder (no {PLAN_FILE})", hint="dpo-tui pairs list shows the jobs")
    prompts = Path(plan.prompts_file)
    if not prompts.is_file():
        raise UserError(f"The job's prompts file {prompts} is gone", hint="put it back to continue this job")
    if _file_sha256(prompts) != plan.prompts_sha256:
        raise UserError(f"The job's prompts file {prompts} changed since the job started",
                        hint="put the original back, or start a new job with another --out")
    read_prompts(prompts)
    if plan.adapter_path and not Path(plan.adapter_path, "adapter_config.json").is_file():
        raise UserError(f"The adapter {plan.adapter_path} of run {plan.adapter} is gone")
    return _launch(plan.model_copy(update={"out": str(out_dir)}), out_dir)


@dataclass
class PairsJobView:
    """What a status line or the console shows about one pairs job (cheap: status.json and a line count)."""

    path: Path
    state: str = "unreadable"
    done: int = 0
    total: int = 0
    eta_s: float | None = None
    error: str = ""
    candidates: int = 0
    rate: float | None = None
    """Candidates per second in this attempt."""
    empty: int = 0
    truncated: int = 0
    plan: PairsPlan | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def line(self) -> str:
        """``NAME  running  12/40 prompts  24 candidates  3.1/s  ETA 1m05s``."""
        parts = [self.name, self.state, f"{self.done}/{self.total or '?'} prompts", f"{self.candidates} candidates"]
        if self.active and self.rate:
            parts.append(f"{self.rate:.1f}/s")
        if self.active and self.eta_s is not None:
            secs = int(self.eta_s)
            parts.append(f"ETA {secs // 3600}h{secs % 3600 // 60:02d}m" if secs >= 3600 else f"ETA {secs // 60}m{secs % 60:02d}s")
        if self.state == "done" and (self.empty or self.truncated):
            parts.append(f"{self.empty} empty, {self.truncated} cut at the token limit")
        if self.state in ("failed", "crashed") or (self.error and not self.active):
            parts.append(self.error or f"see {self.path / LOG_FILE}")
        return "  ".join(parts)


def read_pairs_job(job_dir: Path | str, alive: Any = None) -> PairsJobView:
    """The job's state and counts; never raises (a damaged folder reads ``unreadable`` with a reason)."""
    path = Path(job_dir)
    view = PairsJobView(path)
    try:
        view.plan = PairsPlan.from_json((path / PLAN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValidationError, ValueError):
        view.error = f"no readable {PLAN_FILE}"
    status = read_status(path)
    view.state = effective_state(status, alive)
    status = status or {}
    view.total = int(status.get("total") or (view.plan.prompts_count if view.plan else 0))
    view.done = count_lines(path)
    view.candidates = int(status.get("candidates") or 0)
    if view.plan is not None and not view.candidates:
        view.candidates = view.done * view.plan.n
    view.empty, view.truncated = int(status.get("empty") or 0), int(status.get("truncated") or 0)
    if status.get("error"):
        view.error = str(status["error"])
    elif view.state == "crashed":
        view.error = f"the worker ended without a result (see {path / LOG_FILE})"
    started, at_start = status.get("started_at"), int(status.get("done_at_start") or 0)
    if view.active and isinstance(started, (int, float)):
        view.eta_s = eta_seconds(view.done, view.total, started, at_start)
        elapsed = time.time() - started
        if elapsed > 0 and view.done > at_start and view.plan is not None:
            view.rate = (view.done - at_start) * view.plan.n / elapsed
    return view


def pairs_job_dirs(root: Path | None = None) -> list[Path]:
    """The pairs job folders under ``root`` (default ``$DPO_TUI_HOME/pairs``), newest first."""
    from ..paths import pairs_root

    root = Path(root) if root is not None else pairs_root()
    try:
        found = [p for p in root.iterdir() if p.is_dir() and (p / PLAN_FILE).is_file()]
    except OSError:
        return []

    def created(p: Path) -> float:
        try:
            value = json.loads((p / PLAN_FILE).read_text(encoding="utf-8")).get("created_at")
            return float(value) if isinstance(value, (int, float)) else os.stat(p / STATUS_FILE).st_mtime
        except (OSError, AttributeError, *JSON_ERRORS):
            return 0.0

    return sorted(found, key=lambda p: (created(p), p.name), reverse=True)
