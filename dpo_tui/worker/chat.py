"""The chat worker: one base model in memory, LoRA adapters by name, side-by-side streaming replies.

Run as ``python -m dpo_tui.worker.chat``; it speaks the JSON-lines protocol of
``dpo_tui.core.chat_protocol`` (requests on stdin, events on stdout; its stderr is a log). The UI
and ``dpo-tui chat`` start it through ``dpo_tui.core.chat_client.ChatClient``.

How one request for N sides becomes one batched generation
-----------------------------------------------------------
Every side is a row of one left-padded batch with a shared KV cache; a manual decode loop picks
each row's next token (greedy, or its own seeded sampler), streams that side's new text, and drops
a row from the batch (and from the cache) when the side ends at EOS, a stop string or its token
limit. Rows may use different adapters: PEFT loads the adapters into the one base model, and for
the duration of a request each LoRA ``Linear`` computes its low-rank update per row (a broadcast
matmul for one adapter, batched matmuls for several, a zero row for ``"__base__"``). That costs
about what a single tuned reply costs, and holds one copy of the base weights. Adapters whose
layers this per-row path does not cover (DoRA, LoRA on embeddings, modules_to_save, quantised
bases, non-LoRA PEFT types) are answered the plain PEFT way, one side after another
(``mode: "sequential"``), and the ``started`` event says so.

Nothing heavy is imported at module import: torch, transformers and peft load inside ``main()``
after the worker has said ``hello``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
import traceback
from typing import Any

from ..core import chat_protocol as P
from ..core.errors import first_line
from .chat_engine import Engine
from .chat_io import Channel, Inbox, RequestError, is_oom, private_stdout

HANDLERS = {
    P.LOAD_MODEL: ("load_model", P.MODEL_LOADED),
    P.LOAD_ADAPTER: ("load_adapter", P.ADAPTER_LOADED),
    P.UNLOAD_ADAPTER: ("unload_adapter", P.ADAPTER_UNLOADED),
    P.GENERATE: ("generate", P.DONE),
    P.SCORE: ("score", P.SCORES),
}



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dpo_tui.worker.chat", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="load this base model at start (same as a load_model request)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args(argv)

    channel = Channel(private_stdout())
    stdin = open(sys.stdin.fileno(), encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    channel.emit(P.event(P.HELLO, pid=os.getpid(), v=P.PROTOCOL_VERSION))
    inbox = Inbox(stdin, channel)
    inbox.start()
    try:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import torch
        import transformers

        transformers.logging.set_verbosity_error()
        import peft

        engine = Engine(channel, inbox)
    except Exception as exc:  # noqa: BLE001 - a broken install: say so and exit
        traceback.print_exc()
        channel.emit(P.error_event("internal", f"cannot import the ML stack: {first_line(exc)}"))
        return 1
    channel.emit(P.event(
        P.READY, torch=torch.__version__, transformers=transformers.__version__, peft=peft.__version__,
        cuda=torch.cuda.is_available(), cuda_devices=torch.cuda.device_count() if torch.cuda.is_available() else 0,
    ))
    if args.model:
        _handle(engine, channel, {"op": P.LOAD_MODEL, "id": "startup", "model": args.model, "device": args.device, "dtype": args.dtype})
    while True:
        req = inbox.requests.get()
        if req is None or req.get("op") == P.SHUTDOWN:
            break
        _handle(engine, channel, req)
    channel.emit(P.event(P.BYE))
    return 0


def _handle(engine: Engine, channel: Channel, req: dict[str, Any]) -> None:
    op, rid = req.get("op"), req.get("id")
    try:
        if op == P.MEMORY:
            channel.emit(P.event(P.MEMORY_INFO, rid, **engine.memory()))
            return
        if op not in HANDLERS:
            raise RequestError("bad_request", f"unknown op {op!r}; one of {', '.join(sorted(P.OPS))}")
        method, reply = HANDLERS[op]
        fields = getattr(engine, method)(req)
        channel.emit(P.event(reply, rid, **fields))
    except RequestError as exc:
        channel.emit(P.error_event(exc.kind, exc.message, rid, exc.hint))
    except Exception as exc:  # noqa: BLE001 - the worker outlives any one request
        traceback.print_exc()
        if is_oom(exc):
            with contextlib.suppress(Exception):
                gc.collect()
                if engine.torch.cuda.is_available():
                    engine.torch.cuda.empty_cache()
            channel.emit(P.error_event("oom", f"out of memory during {op}: {first_line(exc)}", rid))
        else:
            kind = "generation" if op in (P.GENERATE, P.SCORE) else "internal"
            channel.emit(P.error_event(kind, f"{op} failed: {type(exc).__name__}: {first_line(exc)}", rid))
    finally:
        sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
