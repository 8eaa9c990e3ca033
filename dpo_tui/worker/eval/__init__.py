"""The evaluation worker: ``python -m dpo_tui.worker.eval --job DIR`` runs the plan in ``DIR/plan.json``.

The base loads once (:class:`dpo_tui.worker.batch_gen.BatchGenerator`) with every target's adapter under
its ``EvalTarget.name``. Work goes in chunks of ``batch_size`` items, and each chunk's answers are
appended to ``answers.jsonl`` (:mod:`.answers`) before the next starts:

1. ``prompts``: a greedy answer from the base and every adapter in one mixed batch, then ``samples``
   sampled answers each; sample ``k`` uses seed ``plan.seed + k`` for base and tuned alike, so the
   comparison is paired by prompt and seed. With a judge, each target's greedy answer is judged against
   the base's in both orders (``a`` = tuned).
2. ``facts``: greedy answers only; the report checks them against the expected answers.
3. ``pairs``: implicit rewards β·(log π_tuned − log π_base) of chosen and rejected (adapter on/off).

Then per target :func:`dpo_tui.core.eval.build.build_report` → ``RUN/eval/ID.json``. SIGTERM ends the
current batch; the unfinished chunk is dropped (a resume answers it), the state becomes ``stopped`` and
the exit code 0. A resume skips every item already in ``answers.jsonl``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ...core import chat_protocol as P
from ...core.errors import UserError, first_line
from ...core.eval.jobs import EvalPlan, read_plan
from ...core.job_folder import ProgressWriter, mark_running, read_status, write_status
from ...core.judge import judge_both_orders
from .answers import AnswerLog, Key, answer_json, pair_scores, read_answers, results_for
from .material import Pair, Prompt, load_facts, load_pairs, load_prompts, pairs_source


class Stopped(Exception):
    """SIGTERM arrived; the chunk in progress was not written."""


class EvalJob:
    def __init__(self, plan: EvalPlan, job_dir: Path, progress: ProgressWriter, stop: threading.Event) -> None:
        self.plan, self.job_dir, self.progress, self.stop = plan, job_dir, progress, stop
        self._gen: Any = None
        self.judge: Any = None
        self.log = AnswerLog(job_dir)
        self.done: dict[Key, dict[str, Any]] = read_answers(job_dir)
        self.total = 0
        self.no_verdict = 0

    # --- the model, loaded only when some work is left ------------------------------------------------
    @property
    def gen(self) -> Any:
        if self._gen is None:
            from ..batch_gen import BatchGenerator

            self.progress.emit({"type": "stage", "stage": "load", "message": f"loading {self.plan.base_model}"})
            self._gen = BatchGenerator(self.plan.base_model, device=self.plan.device, stop=self.stop)
            for t in self.plan.targets:
                self._gen.load_adapter(t.name, t.adapter_path)
        return self._gen

    @property
    def device(self) -> str:
        info = getattr(self._gen, "info", None) or {}
        return str(info.get("device") or self.plan.device)

    def _settings(self, greedy: bool) -> P.GenerationSettings:
        p = self.plan
        return P.GenerationSettings(max_new_tokens=p.max_new_tokens, temperature=p.temperature, top_p=p.top_p,
                                    seed=p.seed, greedy=greedy)

    def _generate(self, items: list[Any], greedy: bool) -> list[Any]:
        results = self.gen.generate(items, self._settings(greedy), batch_size=self.plan.batch_size)
        if self.stop.is_set() or len(results) < len(items) or any(r.finish_reason == "cancelled" for r in results):
            raise Stopped
        return results

    def _count(self) -> int:
        return len(self.done)

    def _tick(self, stage: str) -> None:
        self.progress.emit({"type": "progress", "stage": stage, "done": self._count(), "total": self.total})

    # --- sections -----------------------------------------------------------------------------------
    def answer(self, section: str, prompts: list[Prompt], samples: int) -> None:
        from ..batch_gen import GenItem

        todo = [i for i in range(len(prompts)) if (section, i) not in self.done]
        if not todo:
            return
        models = [P.BASE] + [t.name for t in self.plan.targets]
        self.progress.emit({"type": "stage", "stage": section, "message": f"{len(todo)} {section} to answer"})
        for start in range(0, len(todo), self.plan.batch_size):
            if self.stop.is_set():
                raise Stopped
            chunk = todo[start : start + self.plan.batch_size]
            greedy = [GenItem(prompts[i].messages, adapter=m, seed=self.plan.seed, key=(i, m))
                      for i in chunk for m in models]
            by_key = {r.item.key: r for r in self._generate(greedy, greedy=True)}
            sampled: dict[Any, list[Any]] = {}
            if samples:
                items = [GenItem(prompts[i].messages, adapter=m, seed=self.plan.seed + k, key=(i, m))
                         for i in chunk for m in models for k in range(samples)]
                for r in self._generate(items, greedy=False):
                    sampled.setdefault(r.item.key, []).append(answer_json(r.text, r.tokens, r.finish_reason))
            lines = [self._line(section, i, prompts[i], by_key, sampled) for i in chunk]
            self.log.append(lines)
            self.done.update({(section, line["index"]): line for line in lines})
            self._tick(section)

    def _line(self, section: str, i: int, prompt: Prompt, greedy: dict[Any, Any], sampled: dict[Any, list[Any]]) -> dict[str, Any]:
        base = greedy[(i, P.BASE)]
        line: dict[str, Any] = {"section": section, "index": i, "prompt": prompt.text,
                                "base": answer_json(base.text, base.tokens, base.finish_reason),
                                "base_samples": sampled.get((i, P.BASE), []), "targets": {}}
        if prompt.expected is not None:
            line["expected"], line["match"] = prompt.expected, prompt.match
        for t in self.plan.targets:
            r = greedy[(i, t.name)]
            mine: dict[str, Any] = {"greedy": answer_json(r.text, r.tokens, r.finish_reason),
                                    "samples": sampled.get((i, t.name), []), "verdict": None}
            if self.judge is not None and section == "prompts":
                verdict, _first, _second = judge_both_orders(self.judge, prompt.text, r.text, base.text)
                mine["verdict"] = {"winner": verdict.winner, "reason": verdict.reason}
                if verdict.winner is None:
                    self.no_verdict += 1
            line["targets"][t.name] = mine
        return line

    def score_pairs(self, pairs: dict[str, list[Pair]]) -> None:
        n = max((len(v) for v in pairs.values()), default=0)
        todo = [i for i in range(n) if ("pairs", i) not in self.done]
        if not todo:
            return
        self.progress.emit({"type": "stage", "stage": "pairs", "message": f"{len(todo)} held-out pairs to score"})
        for start in range(0, len(todo), self.plan.batch_size):
            lines = []
            for i in todo[start : start + self.plan.batch_size]:
                if self.stop.is_set():
                    raise Stopped
                line: dict[str, Any] = {"section": "pairs", "index": i, "targets": {}}
                for t in self.plan.targets:
                    mine = pairs.get(t.name, [])
                    if i < len(mine):
                        pair = mine[i]
                        lc_t, lc_b = self.gen.answer_logps(pair.messages, pair.chosen, t.name)
                        lr_t, lr_b = self.gen.answer_logps(pair.messages, pair.rejected, t.name)
                        line["targets"][t.name] = {"chosen_reward": t.beta * (lc_t - lc_b),
                                                   "rejected_reward": t.beta * (lr_t - lr_b)}
                lines.append(line)
            self.log.append(lines)
            self.done.update({("pairs", line["index"]): line for line in lines})
            self._tick("pairs")

    # --- the whole job --------------------------------------------------------------------------------
    def run(self) -> dict[str, str]:
        plan = self.plan
        prompts, facts, pairs = load_prompts(plan), load_facts(plan), load_pairs(plan)
        self.total = len(prompts) + len(facts) + max((len(v) for v in pairs.values()), default=0)
        if plan.judge:
            from ..judges import build_judge

            self.judge = build_judge(plan.judge)
        try:
            self._tick("start")
            self.answer("prompts", prompts, plan.samples)
            if self.no_verdict:
                self.progress.emit({"type": "warning", "message": f"the judge gave no verdict on {self.no_verdict} "
                                    "comparison(s); they are left out of the win rate"})
            self.answer("facts", facts, 0)
            self.score_pairs(pairs)
        finally:
            close = getattr(self.judge, "close", None)
            if callable(close):
                close()
        return self.write_reports(bool(facts), bool(pairs))

    def write_reports(self, has_facts: bool, has_pairs: bool) -> dict[str, str]:
        from ...core.eval.build import build_report
        from ...core.eval.report import EvalSettings, write_report
        from ...core.judge import parse_judge_spec

        plan = self.plan
        self.progress.emit({"type": "stage", "stage": "report", "message": "writing the reports"})
        status = read_status(self.job_dir) or {}
        elapsed = float(status.get("work_s") or 0.0) + (time.time() - float(status.get("started_at") or time.time()))
        judge_name = parse_judge_spec(plan.judge).label if plan.judge else None
        reports = {}
        for t in plan.targets:
            prompts = results_for(plan, self.done, t.name, "prompts")
            settings = EvalSettings(prompts_file=plan.prompts_file, prompts=len(prompts), pairs_file=pairs_source(plan, t.run_id),
                                    facts_file=plan.facts_file, judge=judge_name, samples=plan.samples,
                                    max_new_tokens=plan.max_new_tokens, temperature=plan.temperature, top_p=plan.top_p,
                                    seed=plan.seed)
            report = build_report(
                eval_id=plan.id, run_id=t.run_id, checkpoint=t.checkpoint, base_model=plan.base_model,
                adapter_path=t.adapter_path, beta=t.beta, created_at=time.time(), elapsed_s=round(elapsed, 2),
                device=self.device, settings=settings, prompts=prompts,
                facts=results_for(plan, self.done, t.name, "facts") if has_facts else None,
                facts_source=plan.facts_file if has_facts else None,
                pairs=pair_scores(self.done, t.name) if has_pairs else None,
                pairs_source=pairs_source(plan, t.run_id) if has_pairs else None,
                judge_name=judge_name, seed=plan.seed)
            reports[t.run_id] = str(write_report(Path(t.run_path), report))
        return reports

    def close(self) -> None:
        self.log.close()
        if self._gen is not None:
            self._gen.close()


def _operator_error(exc: BaseException, plan: EvalPlan | None) -> UserError:
    from ..chat_io import RequestError, is_oom

    if isinstance(exc, UserError):
        return exc
    if is_oom(exc) or (isinstance(exc, RequestError) and exc.kind == "oom"):
        size = plan.batch_size if plan else "N"
        return UserError(f"Out of memory during the evaluation ({first_line(exc)})",
                         hint=f"lower --batch-size (it was {size}) or --max-new-tokens, then resume the job")
    if isinstance(exc, RequestError):
        return UserError(exc.message, hint=exc.hint)
    return UserError(f"The evaluation failed: {type(exc).__name__}: {first_line(exc)}", hint="see worker.log in the job folder")


def one_line(exc: UserError) -> str:
    text = exc.summary
    if exc.problems:
        text += f": {exc.problems[0].render()}"
    return text + (f" ({exc.hint})" if exc.hint else "")


def run_job(job_dir: Path) -> int:
    """Run (or resume) the job in ``job_dir``; its status says the outcome. Exit 0 done or stopped, 2 failed."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda _s, _f: stop.set())
    try:
        answered_before = len(read_answers(job_dir))
    except UserError as exc:
        write_status(job_dir, state="failed", ended_at=time.time(), error=one_line(exc))
        signal.signal(signal.SIGTERM, previous)
        return 2
    mark_running(job_dir, done_at_start=answered_before, error=None, ended_at=None)
    started = time.time()
    progress = ProgressWriter(job_dir)
    plan: EvalPlan | None = None
    job: EvalJob | None = None
    try:
        plan = read_plan(job_dir)
        job = EvalJob(plan, job_dir, progress, stop)
        reports = job.run()
        progress.emit({"type": "done", "reports": reports})
        write_status(job_dir, state="done", ended_at=time.time(), reports=reports)
        return 0
    except Stopped:
        status = read_status(job_dir) or {}
        progress.emit({"type": "stopped", "done": job._count() if job else 0})
        write_status(job_dir, state="stopped", ended_at=time.time(),
                     work_s=float(status.get("work_s") or 0.0) + time.time() - started)
        return 0
    except BaseException as exc:  # noqa: BLE001 - every failure becomes one operator line in status.json
        from ..chat_io import RequestError

        # A refused request (a missing adapter, a bad model folder) is the operator's to fix: no traceback.
        if not isinstance(exc, (UserError, RequestError)) or getattr(exc, "kind", "") == "generation":
            import traceback

            traceback.print_exc()
        err = _operator_error(exc, plan)
        progress.emit({"type": "error", "summary": err.summary, "hint": err.hint, "text": err.render()})
        write_status(job_dir, state="failed", ended_at=time.time(), error=one_line(err))
        return 2
    finally:
        if job is not None:
            job.close()
        progress.close()
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dpo_tui.worker.eval",
                                     description="Run an evaluation job (plan from dpo_tui.core.eval.jobs).")
    parser.add_argument("--job", type=Path, required=True, help="the job folder (plan.json, status.json, …)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return run_job(args.job)
