"""The pair-generation worker: ``python -m dpo_tui.worker.pairs generate --job DIR``.

Reads the plan :func:`dpo_tui.core.pairs.plan.start_pairs` wrote, loads one :class:`BatchGenerator` (the
base, plus the run's tuned adapter for round two) and samples ``n`` candidates per prompt. Prompts go in
chunks of ``batch_size // n``; all candidates of a prompt are in the same batch, each with its own seed
(``seed·1000 + index·n + k``), so a candidate is the same whatever the chunking or a resume.

Each finished prompt's line is appended to ``candidates.jsonl``, flushed and fsynced per chunk. A resume
first cuts a torn last line (a crash mid-write), then skips every index already in the file, so after a
SIGKILL no prompt is duplicated or lost. SIGTERM sets the generator's stop: the chunk's finished prompts
are written, the state is ``stopped`` and the worker exits 0.

Exit codes: 0 done or stopped, 2 refused (UserError, a generation error), 1 internal error.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ... import __version__
from ...core.errors import UserError, first_line
from ...core.job_folder import PLAN_FILE, ProgressWriter, mark_running, write_status
from ...core.pairs.candidates import (
    CANDIDATES_FILE,
    Candidate,
    CandidateRow,
    scan_candidates,
    truncate_torn_tail,
)
from ...core.pairs.plan import PairsPlan
from ...core.prompts_file import PromptItem, read_prompts

ADAPTER_NAME = "tuned"


def steered(messages: list[dict[str, str]], instruction: str | None) -> list[dict[str, str]]:
    """The conversation the model answers: the instruction appended to the last user turn (generation only)."""
    if instruction is None:
        return messages
    out = [dict(m) for m in messages]
    out[-1]["content"] = f"{out[-1]['content'].rstrip()}\n\n{instruction}"
    return out


class Counts:
    def __init__(self) -> None:
        self.prompts = self.candidates = self.empty = self.truncated = 0

    def add(self, row: CandidateRow) -> None:
        self.prompts += 1
        for c in row.candidates:
            self.candidates += 1
            self.empty += not c.text.strip()
            self.truncated += c.finish == "length"

    def fields(self) -> dict[str, int]:
        return {"done": self.prompts, "candidates": self.candidates, "empty": self.empty, "truncated": self.truncated}


def generate(job_dir: Path, stop: threading.Event) -> str:
    """Run the job to its end (``done``) or to a stop (``stopped``); UserError for anything refused."""
    from ...core import chat_protocol as P
    from ..batch_gen import BatchGenerator, GenItem

    plan = PairsPlan.from_json((job_dir / PLAN_FILE).read_text(encoding="utf-8"))
    prompts = read_prompts(plan.prompts_file)
    if len(prompts) != plan.prompts_count:
        raise UserError(f"{plan.prompts_file} now has {len(prompts)} prompts, the job planned {plan.prompts_count}",
                        hint="put the original prompts file back, or start a new job with another --out")
    cut = truncate_torn_tail(job_dir)
    scan = scan_candidates(job_dir)
    counts = Counts()
    for row in scan.rows:
        counts.add(row)
    done = scan.indices
    todo = [(i, item) for i, item in enumerate(prompts) if i not in done]
    mark_running(job_dir, total=len(prompts), done_at_start=counts.prompts, **counts.fields())
    _reserve(job_dir)
    progress = ProgressWriter(job_dir)
    progress.emit({"type": "start", "total": len(prompts), "done": counts.prompts, "torn_bytes_cut": cut,
                   "skipped_lines": scan.skipped})
    if not todo:
        progress.close()
        return "done"
    settings = P.GenerationSettings(max_new_tokens=plan.max_new_tokens, temperature=plan.temperature, top_p=plan.top_p,
                                    seed=plan.seed, system_prompt=plan.system)
    gen = BatchGenerator(plan.model_path, device=plan.device, stop=stop)
    try:
        adapter = P.BASE
        if plan.adapter_path:
            gen.load_adapter(ADAPTER_NAME, plan.adapter_path)
            adapter = ADAPTER_NAME
        provenance = {"model": plan.model, "adapter": plan.adapter, "adapter_path": plan.adapter_path,
                      "checkpoint": plan.adapter_label, "temperature": plan.temperature, "top_p": plan.top_p,
                      "max_new_tokens": plan.max_new_tokens, "system": plan.system, "dpo_tui": __version__}
        step = plan.prompts_per_chunk
        started = time.time()
        out = os.open(job_dir / CANDIDATES_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            for start in range(0, len(todo), step):
                if stop.is_set():
                    break
                chunk = todo[start : start + step]
                items = [GenItem(steered(item.as_messages(), plan.instruction(k)), adapter,
                                 plan.candidate_seed(index, k), (index, k))
                         for index, item in chunk for k in range(plan.n)]
                results = gen.generate(items, settings, batch_size=len(items))
                rows = _rows(plan, chunk, results, provenance)
                append_whole(out, job_dir / CANDIDATES_FILE, "".join(row.to_line() for row in rows).encode("utf-8"))
                for row in rows:
                    counts.add(row)
                write_status(job_dir, **counts.fields())
                made = counts.prompts - len(done)
                progress.emit({"type": "progress", "done": counts.prompts, "total": len(prompts),
                               "candidates": counts.candidates,
                               "rate": round(made * plan.n / max(1e-9, time.time() - started), 3)})
                for warning in gen.warnings():
                    progress.emit({"type": "warning", "message": warning})
        finally:
            os.close(out)
        state = "done" if counts.prompts >= len(prompts) else "stopped"
        progress.emit({"type": state, **counts.fields(), "total": len(prompts)})
        write_status(job_dir, **counts.fields())
        return state
    finally:
        progress.close()
        gen.close()


def append_whole(fd: int, path: Path, data: bytes) -> None:
    """Append ``data`` (whole lines) and fsync, or leave the file as it was: a write cut by a full disk is
    truncated away, so every line already there stays valid and a resume redoes only the lost chunk."""
    start = os.lseek(fd, 0, os.SEEK_END)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, start)
        raise disk_error(exc, path) from None


def disk_error(exc: OSError, path: Path) -> UserError:
    """A write that failed, as the operator's problem: a full disk or quota says so, with the folder."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return UserError(f"The disk holding {path.parent} is full: could not write {path.name}",
                         hint=f"free space there, then continue with: dpo-tui pairs resume {path.parent}")
    return UserError(f"Cannot write {path}: {exc.strerror or exc}",
                     hint=f"fix the folder, then continue with: dpo-tui pairs resume {path.parent}")


def _rows(plan: PairsPlan, chunk: list[tuple[int, PromptItem]], results: list[Any],
          provenance: dict[str, Any]) -> list[CandidateRow]:
    """One row per prompt whose every candidate finished (a stop mid-batch leaves the rest ``cancelled``)."""
    by_key = {r.item.key: r for r in results}
    rows = []
    for index, item in chunk:
        got = [by_key.get((index, k)) for k in range(plan.n)]
        if any(r is None or r.finish_reason == "cancelled" for r in got):
            continue
        cands = [Candidate(f"c{k}", r.text, r.tokens, r.finish_reason, r.item.seed, plan.instruction(k))
                 for k, r in enumerate(got) if r is not None]
        rows.append(CandidateRow(index, item.line, item.text, item.as_messages(), item.conversational, cands,
                                 {**provenance, "created_at": round(time.time(), 3)}))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dpo_tui.worker.pairs",
                                     description="Generate candidate answers for a pairs job folder.")
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="run the job in DIR (plan.json written by dpo-tui pairs generate)")
    g.add_argument("--job", type=Path, required=True)
    args = parser.parse_args(argv)
    job_dir: Path = args.job.resolve()
    stop = threading.Event()

    def on_term(signum: int, frame: Any) -> None:
        stop.set()  # the current batch ends early; its finished prompts are still written

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        state = generate(job_dir, stop)
    except UserError as exc:
        _fail(job_dir, exc.render())
        return 2
    except OSError as exc:  # a status or progress write: the disk, not a bug
        _fail(job_dir, disk_error(exc, Path(exc.filename or job_dir / "status.json")).render())
        return 2
    except Exception as exc:  # noqa: BLE001 - a generation error the operator must see; the traceback goes to worker.log
        from ..chat_io import RequestError

        if isinstance(exc, RequestError):
            _fail(job_dir, f"generation failed ({exc.kind}): {exc.message}")
            return 2
        import traceback

        traceback.print_exc()
        _fail(job_dir, f"internal error: {type(exc).__name__}: {first_line(exc)} (a bug; see worker.log)")
        return 1
    with contextlib.suppress(OSError):
        (job_dir / RESERVE_FILE).unlink(missing_ok=True)
    write_status(job_dir, state=state, ended_at=time.time(), error=None)
    return 0


RESERVE_FILE = ".reserve"
RESERVE_BYTES = 256 << 10
"""Room kept for the last status write: on a full disk the failure itself must still reach status.json."""


def _reserve(job_dir: Path) -> None:
    with contextlib.suppress(OSError), open(job_dir / RESERVE_FILE, "wb") as fh:
        fh.write(b"\0" * RESERVE_BYTES)
        fh.flush()
        os.fsync(fh.fileno())


def _fail(job_dir: Path, error: str) -> None:
    sys.stderr.write(error + "\n")
    with contextlib.suppress(OSError):
        (job_dir / RESERVE_FILE).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        write_status(job_dir, state="failed", ended_at=time.time(), error=error)
