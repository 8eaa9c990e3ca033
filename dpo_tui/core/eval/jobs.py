"""An evaluation as a detached job: the plan (checked here, before any process starts) and its folder.

``dpo-tui eval`` and the console call :func:`plan_eval`, which resolves every run, its adapter, the base
model and the held-out files, and raises a :class:`~dpo_tui.core.errors.UserError` for anything an
operator can get wrong. :func:`start_eval` writes the plan into a job folder and starts
``python -m dpo_tui.worker.eval --job DIR`` in its own session (:mod:`dpo_tui.core.job_folder`)::

    RUNS_ROOT/.eval/EVAL_ID/
        plan.json        the EvalPlan
        status.json      state, pid, run_ids, done_at_start, reports {run_id: RUN/eval/EVAL_ID.json}, error
        progress.jsonl   stage / progress / warning / done / error events
        answers.jsonl    one line per finished (section, index) with the answers of base and every target;
                         a resumed job skips the items found here
        worker.log       the worker's output (a traceback only for a bug)

The runs root's listing skips dot-folders, so ``.eval`` is never taken for a run.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from ..errors import Problem, UserError
from ..fsutil import JSON_ERRORS, make_unique_dir
from ..job_folder import (
    ACTIVE_STATES,
    PLAN_FILE,
    PROGRESS_FILE,
    claim_job,
    claimed,
    effective_state,
    eta_seconds,
    launch_detached,
    read_status,
    write_status,
)

JOBS_DIR = ".eval"
ANSWERS_FILE = "answers.jsonl"
WORKER_MODULE = "dpo_tui.worker.eval"
EVAL_SPLIT = "eval split"
"""``prompts_file`` when the prompts are those of the first run's eval split (the rows its trainer held out)."""
CHECKPOINT_RE = re.compile(r"checkpoint-(\d{1,15})")
MAX_SAMPLES = 32
MAX_NEW_TOKENS = 8192
MAX_BATCH = 1024
MAX_ANSWERS_BYTES = 512 << 20
"""An answer log is read whole on resume; a real one stays far below this (a few KiB per prompt)."""


class EvalTarget(BaseModel):
    """One tuned adapter to evaluate against the shared base."""

    model_config = ConfigDict(extra="ignore")
    run_id: str
    run_path: str
    adapter_path: str
    checkpoint: str
    """``final`` or ``checkpoint-N``."""
    beta: float
    name: str
    """The adapter's name inside the worker (``[A-Za-z0-9_-]``, 1-64 characters)."""


class EvalPlan(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str
    runs_root: str
    base_model: str
    targets: list[EvalTarget]
    prompts_file: str
    """A prompts file, or :data:`EVAL_SPLIT`."""
    facts_file: str | None = None
    pairs_file: str | None = None
    pairs_from_eval_split: bool = False
    """Score each target on its own run's eval split (the trainer's split, recomputed by the worker)."""
    judge: str | None = None
    samples: int = 3
    max_new_tokens: int = 128
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int = 0
    device: str = "auto"
    batch_size: int = 16

    @property
    def run_ids(self) -> list[str]:
        return [t.run_id for t in self.targets]


# --- planning ---------------------------------------------------------------------------------------
def _check_range(name: str, value: int, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise UserError(f"{name} must be a whole number in {lo}..{hi} (got {value!r})",
                        [Problem(f"got {value!r}", field=name)], hint=f"pass {name} N with {lo} <= N <= {hi}")


def _target(run: Any, index: int, checkpoint: str) -> tuple[EvalTarget, Any]:
    from ..checkpoints import best_checkpoint
    from ..run_states import ACTIVE_STATES as RUN_ACTIVE

    config = run.config()
    if config.method == "full":
        raise UserError(f"Run {run.id} fine-tuned every weight: it has no adapter to switch on and off",
                        hint="evaluation compares a LoRA adapter with its base in one model; evaluate a lora or qlora run")
    status = run.status()
    complete = [c for c in run.checkpoints() if c.complete]
    final = run.final_weights_dir()
    if final is None and not complete:
        why = "is still training and saved no checkpoint yet" if status.state in RUN_ACTIVE else "saved no adapter"
        raise UserError(f"Run {run.id} {why}", hint="wait for its first checkpoint (or the end of the run), then evaluate it")
    if checkpoint == "final":
        if final is None:
            raise UserError(f"Run {run.id} has no final adapter yet",
                            hint=f"evaluate a checkpoint: --checkpoint best or --checkpoint {complete[-1].path.name}")
        path, name = final, "final"
    elif checkpoint == "best":
        best = best_checkpoint(run)
        if best is None:
            raise UserError(f"Run {run.id} saved no complete weights yet", hint="wait for its first checkpoint")
        path, name = best.candidate.path, ("final" if best.is_final else best.candidate.name)
    else:
        m = CHECKPOINT_RE.fullmatch(checkpoint) or re.fullmatch(r"(\d{1,15})", checkpoint)
        found = [c for c in complete if m and c.step == int(m.group(1))]
        if not found:
            names = ", ".join(c.path.name for c in complete[-6:]) or "none"
            raise UserError(f"Run {run.id} has no complete {checkpoint}",
                            [Problem(f"complete checkpoints: {names}", field="--checkpoint")],
                            hint="use final, best or one of the checkpoints listed")
        path, name = found[0].path, found[0].path.name
    if not (Path(path) / "adapter_config.json").is_file():
        raise UserError(f"Run {run.id}: {path} holds no LoRA adapter (no adapter_config.json)",
                        hint="evaluation needs a LoRA adapter; this run's weights are a full model")
    target = EvalTarget(run_id=run.id, run_path=str(run.path), adapter_path=str(path), checkpoint=name,
                        beta=float(config.beta), name=f"t{index}")
    return target, config


def _check_pairs(path: str) -> None:
    from ..data import load_preference_data

    if not Path(path).expanduser().is_file():
        raise UserError(f"No pairs file at {path}", hint="give a preference file (prompt, chosen, rejected per line)")
    loaded = load_preference_data(str(Path(path).expanduser()))
    if loaded.report.errors:
        problems = [Problem(e.message, file=path, line=(e.lines[0] if getattr(e, "lines", None) else None))
                    for e in loaded.report.errors[:20]]
        raise UserError(f"{path} has {len(loaded.report.errors)} bad pair(s)", problems,
                        hint=f"run `dpo-tui data check {path}` for the full report; nothing was started")
    if not loaded.rows:
        raise UserError(f"{path} has no usable pairs", hint="one {\"prompt\", \"chosen\", \"rejected\"} per line")


def _check_facts(path: str) -> None:
    if not Path(path).expanduser().is_file():
        raise UserError(f"No facts file at {path}", hint='one {"prompt", "expected"} object per line (.jsonl)')
    try:
        from .facts import read_facts
    except ImportError:  # pragma: no cover - the facts reader ships with the report builder
        return
    read_facts(Path(path).expanduser())


def plan_eval(runs_root: Path | str, run_ids: list[str], prompts: str | None = None, facts: str | None = None,
              pairs: str | None = None, judge: str | None = None, samples: int = 3, max_new_tokens: int = 128,
              checkpoint: str = "final", device: str = "auto", *, batch_size: int = 16, seed: int = 0,
              now: float | None = None) -> EvalPlan:
    """Everything the worker needs, checked; a :class:`UserError` for any run, file or setting that is wrong."""
    from .. import paths
    from ..judge import parse_judge_spec
    from ..prompts_file import read_prompts
    from ..runs.resolve import resolve_run
    from .report import new_eval_id

    _check_range("--samples", samples, 0, MAX_SAMPLES)
    _check_range("--max-new-tokens", max_new_tokens, 1, MAX_NEW_TOKENS)
    _check_range("--batch-size", batch_size, 1, MAX_BATCH)
    if not run_ids:
        raise UserError("Name at least one run to evaluate", hint="dpo-tui eval RUN_ID [RUN_ID …] (`dpo-tui runs` lists them)")
    root = Path(runs_root)
    targets: list[EvalTarget] = []
    configs: list[Any] = []
    seen: set[str] = set()
    for handle in run_ids:
        run = resolve_run(root, handle)
        if run.id in seen:
            continue
        seen.add(run.id)
        target, config = _target(run, len(targets), checkpoint)
        targets.append(target)
        configs.append(config)
    bases = {t.run_id: (c.resolved_model(), c.model_revision) for t, c in zip(targets, configs, strict=True)}
    if len(set(bases.values())) > 1:
        problems = [Problem(f"{rid}: {model}" + (f"@{rev}" if rev else "")) for rid, (model, rev) in bases.items()]
        raise UserError("These runs were trained on different base models; one evaluation loads one base", problems,
                        hint="evaluate the runs of each base model separately")
    first = configs[0]
    pairs_from_split = False
    if prompts is None:
        if first.dataset == "sample":
            prompts = str(paths.sample_heldout_prompts_path())
            facts = facts or str(paths.sample_heldout_facts_path())
            pairs = pairs or str(paths.sample_heldout_pairs_path())
        elif first.eval_fraction > 0:
            prompts = EVAL_SPLIT
        else:
            raise UserError(f"Run {targets[0].run_id} has no held-out prompts (no eval split)",
                            hint="give --prompts FILE (one prompt a line, or .jsonl), never the training rows")
    if pairs is None and first.dataset != "sample":
        pairs_from_split = all(c.eval_fraction > 0 for c in configs)
    if prompts != EVAL_SPLIT:
        prompts = str(Path(prompts).expanduser().resolve())
        read_prompts(prompts)
    if facts is not None:
        facts = str(Path(facts).expanduser().resolve())
        _check_facts(facts)
    if pairs is not None:
        pairs = str(Path(pairs).expanduser().resolve())
        _check_pairs(pairs)
    judge_text = parse_judge_spec(judge).text if judge is not None else None
    return EvalPlan(id=new_eval_id(now), runs_root=str(root.resolve()), base_model=first.resolved_model(),
                    targets=targets, prompts_file=prompts, facts_file=facts, pairs_file=pairs,
                    pairs_from_eval_split=pairs_from_split, judge=judge_text, samples=samples,
                    max_new_tokens=max_new_tokens, seed=seed, device=device, batch_size=batch_size)


# --- the job folder -----------------------------------------------------------------------------------
def jobs_root(runs_root: Path | str) -> Path:
    return Path(runs_root) / JOBS_DIR


def _launch(job_dir: Path, lock_fd: int) -> None:
    launch_detached(job_dir, WORKER_MODULE, ["--job", str(job_dir)], "evaluation", lock_fd=lock_fd)


def start_eval(plan: EvalPlan) -> Path:
    """Write the plan into a fresh job folder and start the worker detached; returns the folder."""
    root = jobs_root(plan.runs_root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        job_dir = make_unique_dir(root, plan.id)
    except OSError as exc:
        raise UserError(f"Cannot create an evaluation folder in {root}: {exc.strerror or exc}",
                        hint="the runs root must be writable") from None
    if job_dir is None:
        raise UserError(f"Too many evaluations named {plan.id} in {root}")
    plan = plan.model_copy(update={"id": job_dir.name})
    try:
        (job_dir / PLAN_FILE).write_text(plan.model_dump_json(indent=2), encoding="utf-8")
        write_status(job_dir, state="starting", created_at=time.time(), run_ids=plan.run_ids)
        lock_fd = claim_job(job_dir, "evaluation")
    except (OSError, UserError) as exc:
        shutil.rmtree(job_dir, ignore_errors=True)
        if isinstance(exc, UserError):
            raise
        raise UserError(f"Cannot write the evaluation job {job_dir}: {exc.strerror or exc}", hint="free disk space") from None
    _launch(job_dir, lock_fd)
    return job_dir


def read_plan(job_dir: Path) -> EvalPlan:
    path = Path(job_dir) / PLAN_FILE
    try:
        plan = EvalPlan.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not a readable evaluation plan: {str(exc).splitlines()[0] if str(exc) else exc}",
                        hint="start a new evaluation with `dpo-tui eval RUN_ID`") from None
    # The plan is a file anyone may edit between the start and a resume: the worker gets only what
    # plan_eval would have accepted.
    try:
        _check_range("samples", plan.samples, 0, MAX_SAMPLES)
        _check_range("max_new_tokens", plan.max_new_tokens, 1, MAX_NEW_TOKENS)
        _check_range("batch_size", plan.batch_size, 1, MAX_BATCH)
        if not plan.targets:
            raise UserError("it names no run to evaluate")
    except UserError as exc:
        raise UserError(f"{path} is not a usable evaluation plan: {exc.summary}",
                        hint="start a new evaluation with `dpo-tui eval RUN_ID`") from None
    return plan


def resume_eval(job_dir: Path) -> Path:
    """Start the worker again on a stopped, failed or crashed job; it skips the items already answered."""
    job_dir = Path(job_dir)
    read_plan(job_dir)
    check_answers_file(job_dir)
    with claimed(job_dir, "evaluation") as lock_fd:
        state = effective_state(read_status(job_dir))
        if state in ACTIVE_STATES:
            raise UserError(f"Evaluation {job_dir.name} is still {state}", hint=f"follow it: dpo-tui eval --follow {job_dir.name}")
        if state == "done":
            raise UserError(f"Evaluation {job_dir.name} is already done", hint="start a new one with `dpo-tui eval RUN_ID`")
        try:
            write_status(job_dir, state="starting", created_at=time.time(), pid=None, error=None, ended_at=None)
        except OSError as exc:
            raise UserError(f"Cannot write the evaluation job {job_dir}: {exc.strerror or exc}",
                            hint="free disk space; the runs root must be writable") from None
    _launch(job_dir, lock_fd)
    return job_dir


def check_answers_file(job_dir: Path) -> None:
    """Refuse a job whose ``answers.jsonl`` is no answer log: a folder, a device or FIFO (a symlink to
    /dev/zero reads forever), or larger than any evaluation writes (reading it would exhaust memory)."""
    path = Path(job_dir) / ANSWERS_FILE
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UserError(f"Cannot read {path}: {exc.strerror or exc}") from None
    fix = f"move it aside (mv {path} {path}.bad) to answer every prompt again, then resume"
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"{path} is not a regular file", hint=fix)
    if info.st_size > MAX_ANSWERS_BYTES:
        raise UserError(f"{path} is {info.st_size / 2**30:.1f} GiB, larger than any evaluation writes "
                        f"(at most {MAX_ANSWERS_BYTES >> 20} MiB is read)", hint=fix)


def eval_job_dirs(runs_root: Path | str) -> list[Path]:
    """Evaluation job folders, newest first."""
    root = jobs_root(runs_root)
    try:
        found = [p for p in root.iterdir() if p.is_dir() and (p / PLAN_FILE).is_file()]
    except OSError:
        return []
    return sorted(found, key=lambda p: p.name, reverse=True)


def find_eval_job(runs_root: Path | str, handle: str) -> Path:
    """A job by its folder or id (a unique id prefix too)."""
    as_path = Path(handle).expanduser()
    if ("/" in handle or as_path.is_dir()) and (as_path / PLAN_FILE).is_file():
        return as_path
    jobs = eval_job_dirs(runs_root)
    exact = [p for p in jobs if p.name == handle]
    matches = exact or [p for p in jobs if p.name.startswith(handle)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UserError(f"No evaluation job {handle!r} in {jobs_root(runs_root)}", hint="`dpo-tui eval --list` lists them")
    raise UserError(f"{len(matches)} evaluation jobs start with {handle!r}", hint="give more of the id")


TAIL_BYTES = 64 << 10


@dataclass
class EvalJobView:
    path: Path
    id: str
    state: str
    stage: str = ""
    done: int = 0
    total: int = 0
    eta_s: float | None = None
    error: str = ""
    run_ids: list[str] = field(default_factory=list)
    reports: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _tail_events(job_dir: Path) -> list[dict[str, Any]]:
    """The events in the last :data:`TAIL_BYTES` of progress.jsonl (the newest stage and count are there)."""
    try:
        with open(job_dir / PROGRESS_FILE, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - TAIL_BYTES))
            data = fh.read()
    except OSError:
        return []
    lines = data.split(b"\n")
    if size > TAIL_BYTES:
        lines = lines[1:]  # the first one is probably cut
    out = []
    for raw in lines:
        try:
            event = json.loads(raw)
        except JSON_ERRORS:
            continue
        if isinstance(event, dict):
            out.append(event)
    return out


def read_eval_job(job_dir: Path | str) -> EvalJobView:
    """The job's state, stage, count and ETA (cheap: status.json and the tail of progress.jsonl)."""
    job_dir = Path(job_dir)
    status = read_status(job_dir) or {}
    view = EvalJobView(job_dir, job_dir.name, effective_state(status) if status else "unreadable")
    view.run_ids = [str(r) for r in status.get("run_ids") or []]
    view.reports = {str(k): str(v) for k, v in (status.get("reports") or {}).items()}
    view.error = str(status.get("error") or "")
    for event in _tail_events(job_dir):
        kind = event.get("type")
        if kind == "stage":
            view.stage = str(event.get("stage", ""))
        elif kind == "progress":
            view.stage = str(event.get("stage", view.stage))
            view.done, view.total = int(event.get("done") or 0), int(event.get("total") or 0)
        elif kind == "warning":
            view.warnings.append(str(event.get("message", "")))
    if view.state == "crashed" and not view.error:
        view.error = f"the evaluation worker ended without a result (see {job_dir / 'worker.log'})"
    if view.state in ACTIVE_STATES:
        view.eta_s = eta_seconds(view.done, view.total, status.get("started_at"), int(status.get("done_at_start") or 0))
    return view
