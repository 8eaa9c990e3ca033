"""What an export will do, checked before any weight is touched (pure: no torch, no transformers).

``plan_export`` turns "export run X to these places" into an :class:`ExportPlan`: which weights
(the final adapter, a checkpoint, or a full fine-tune's ``model/``), which base model, and where each
output goes. Everything an operator can get wrong is refused here with a :class:`UserError` that says
what and how to fix it, so ``dpo-tui export`` fails in milliseconds instead of after loading a model:

- the run is still running, failed, crashed or was stopped (an explicit ``--checkpoint N`` is allowed);
- the checkpoint does not exist or is incomplete;
- a destination exists (``force`` replaces it), sits under a file, is not writable, or would swallow
  the run or the base model if replaced;
- the GGUF type or the model's architecture is not supported (by the built-in writer, when llama.cpp's own
  converter is not there: :mod:`.llama_cpp` finds it, and the plan says which converter will run);
- ``push_to_hub`` without a token, or with the hub turned off (``DPO_TUI_OFFLINE``, ``HF_HUB_OFFLINE``,
  ``TRANSFORMERS_OFFLINE``).

The heavy work is :mod:`dpo_tui.worker.export`: ``dpo-tui export`` runs it in-process, and
:func:`worker_command` builds the command line that runs it as a child process (the plan as JSON with
``--plan``, JSON-line progress on stdout).
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .config import looks_like_hub_id, resolve_model
from .errors import Problem, UserError, first_line
from .fsutil import JSON_ERRORS
from .hub import offline, offline_reason
from .llama_cpp import INSTALL_HINT, QUANTIZE_TYPES, check_quantize_type, find_llama_cpp
from .runs import ACTIVE_STATES, Run
from .safetensors_header import SafetensorsError, read_header

GGUF_TYPES: tuple[str, ...] = ("f16", "bf16", "q8_0")
# Hugging Face ``model_type`` → the llama.cpp architecture the GGUF is written as.
GGUF_ARCHITECTURES: dict[str, str] = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2"}
SUPPORTED_GGUF_TEXT = "Llama, Mistral and Qwen2 (model_type llama, mistral, qwen2)"

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
)

_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_OLLAMA_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}(?::[a-z0-9._-]{1,64})?$")


@dataclass
class ExportPlan:
    """Everything the export worker needs, already validated. JSON-serialisable (``to_json``)."""

    run_path: str
    run_id: str
    method: str  # lora | qlora | full
    source: str  # folder holding the weights to export
    source_label: str  # "final adapter", "checkpoint-40", "final model"
    step: int | None
    base_model: str  # resolved: an absolute folder or a hub id
    base_model_spec: str  # as the run's config says it ("sample", a path, a hub id)
    base_revision: str | None
    trust_remote_code: bool
    merged: str | None = None
    gguf: str | None = None
    gguf_type: str = "f16"
    ollama: str | None = None
    ollama_name: str = ""
    push_to_hub: str | None = None
    private: bool = False
    force: bool = False
    model_type: str | None = None
    notes: list[str] = field(default_factory=list)
    converter: str = "builtin"
    """Who writes the GGUF: ``builtin`` (:mod:`dpo_tui.worker.export.gguf_writer`) or ``llama.cpp``."""
    llama_cpp_converter: str | None = None
    llama_cpp_quantize: str | None = None

    # --- derived --------------------------------------------------------------------------
    @property
    def is_full(self) -> bool:
        return self.method == "full"

    @property
    def needs_merged_model(self) -> bool:
        """Whether the worker has to build the merged model in memory."""
        return bool(self.merged or self.gguf)

    @property
    def push_source(self) -> str:
        """What ``--push-to-hub`` uploads: the merged folder when one is written, else the adapter (or model)."""
        return "merged" if self.merged else ("model" if self.is_full else "adapter")

    def destinations(self) -> list[tuple[str, Path]]:
        out: list[tuple[str, Path]] = []
        for label, value in (("merged folder", self.merged), ("GGUF file", self.gguf), ("Ollama folder", self.ollama)):
            if value:
                out.append((label, Path(value)))
        return out

    def describe(self) -> list[str]:
        """Human-readable lines: what is exported from where to where."""
        lines = [f"run {self.run_id}: {self.source_label} ({self.source})", f"base model: {self.base_model}"]
        if self.merged:
            lines.append(f"merged weights → {self.merged}")
        if self.gguf:
            via = ", llama.cpp" if self.converter == "llama.cpp" else ""
            lines.append(f"GGUF ({self.gguf_type}{via}) → {self.gguf}")
        if self.ollama:
            lines.append(f"Ollama Modelfile → {Path(self.ollama) / 'Modelfile'}")
        if self.push_to_hub:
            lines.append(f"push {self.push_source} → hub repo {self.push_to_hub}{' (private)' if self.private else ''}")
        return lines + list(self.notes)

    # --- I/O ------------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ExportPlan:
        """The plan a job folder holds; a UserError when it is damaged (a file anyone may edit)."""
        try:
            data = json.loads(text)
            known = set(cls.__dataclass_fields__)
            return cls(**{k: v for k, v in data.items() if k in known})
        except (AttributeError, TypeError, *JSON_ERRORS) as exc:
            raise UserError(f"The export plan is damaged ({first_line(exc)})",
                            hint="plan the export again with `dpo-tui export`") from None


def worker_command(plan_file: Path | str) -> list[str]:
    """The command line that runs an export as a child process (JSON-line progress on stdout)."""
    return [sys.executable, "-m", "dpo_tui.worker.export", "--plan", str(plan_file)]


# --- planning ---------------------------------------------------------------------------------------
def plan_export(
    run: Run,
    *,
    checkpoint: int | None = None,
    merged: str | os.PathLike[str] | None = None,
    gguf: str | os.PathLike[str] | None = None,
    gguf_type: str = "f16",
    ollama: str | os.PathLike[str] | None = None,
    ollama_name: str | None = None,
    push_to_hub: str | None = None,
    private: bool = False,
    force: bool = False,
    check_hub_token: bool = True,
    llama_cpp: str | os.PathLike[str] | None = None,
) -> ExportPlan:
    """Validate an export request against the run folder and the file system. Raises :class:`UserError`.

    ``llama_cpp`` is a llama.cpp folder (``--llama-cpp DIR``); without it llama.cpp is looked for in
    ``DPO_TUI_LLAMA_CPP`` and on ``PATH``, and preferred for the GGUF when found.
    """
    if not (merged or gguf or ollama or push_to_hub):
        raise UserError(
            "Nothing to export: say where the weights should go",
            hint="give --merged DIR, --gguf FILE, --ollama DIR and/or --push-to-hub REPO",
        )
    gguf_type = (gguf_type or "f16").lower()
    if gguf_type not in GGUF_TYPES + QUANTIZE_TYPES:
        raise UserError(f"Unknown GGUF type '{gguf_type}'",
                        hint=f"one of: {', '.join(GGUF_TYPES)}; with llama.cpp also {', '.join(QUANTIZE_TYPES)}")
    if gguf_type != "f16" and not (gguf or ollama):
        raise UserError("--gguf-type applies to a GGUF export", hint="add --gguf FILE or --ollama DIR")
    tools = find_llama_cpp(llama_cpp) if (gguf or ollama) else None
    check_quantize_type(gguf_type, tools, GGUF_TYPES)
    if private and not push_to_hub:
        raise UserError("--private applies to --push-to-hub", hint="add --push-to-hub REPO")

    config = run.config()
    status = run.status()
    method = config.method
    notes: list[str] = []

    source, label, step = _pick_source(run, method, status.state, status.kind, checkpoint)
    base_spec = config.model
    base_model = resolve_model(base_spec)

    # Destinations: absolute, not clobbering anything precious, writable.
    merged_p = _abs(merged)
    ollama_p = _abs(ollama)
    gguf_p = _abs(gguf)
    if ollama_p is not None and gguf_p is None:
        gguf_p = ollama_p / "model.gguf"
    precious = [run.path, run.path.parent, source]
    if Path(base_model).exists():
        precious.append(Path(base_model).resolve())
    _check_destinations(merged_p, gguf_p, ollama_p, precious, force)

    # Code shipped with the base model runs only with the consent given when the run was trained.
    base_config = Path(base_model) / "config.json"
    if not config.trust_remote_code and base_config.is_file():
        try:
            auto_map = json.loads(base_config.read_text(encoding="utf-8")).get("auto_map")
        except (OSError, AttributeError, *JSON_ERRORS):
            auto_map = None
        if auto_map:
            raise UserError(
                f"The base model {base_spec} ships its own Python code (custom code via auto_map), and this run was "
                "not trained with trust_remote_code; export will not run that code",
                hint="train with --trust-remote-code if you trust the model's authors, then export that run",
            )

    # Architecture (early, when the model's config.json is on disk).
    model_type = _model_type(Path(source) if method == "full" else None, base_model, config.model_revision)
    if gguf_p is not None and tools is not None:
        notes.append(f"GGUF written by {tools.describe()}")
    elif gguf_p is not None:
        if model_type is not None and model_type not in GGUF_ARCHITECTURES:
            raise unsupported_architecture(model_type)
        if model_type is None:
            notes.append("the base model's config.json is not on disk yet; its architecture is checked after loading")

    name = ollama_name or default_ollama_name(run.id)
    if ollama_p is not None and not _OLLAMA_NAME.match(name):
        raise UserError(
            f"'{name}' is not a valid Ollama model name",
            hint="use lowercase letters, digits, '.', '_' or '-' (optionally ':tag')",
        )

    if push_to_hub:
        push_to_hub = push_to_hub.strip()
        if not _REPO_ID.match(push_to_hub) or ".." in push_to_hub:
            raise UserError(f"'{push_to_hub}' is not a hub repo id", hint="use 'name' or 'org/name' (letters, digits, '.', '_', '-')")
        if check_hub_token:
            check_hub_access()

    return ExportPlan(
        run_path=str(run.path),
        run_id=run.id,
        method=method,
        source=str(source),
        source_label=label,
        step=step,
        base_model=base_model,
        base_model_spec=base_spec,
        base_revision=config.model_revision,
        trust_remote_code=config.trust_remote_code,
        merged=str(merged_p) if merged_p else None,
        gguf=str(gguf_p) if gguf_p else None,
        gguf_type=gguf_type,
        ollama=str(ollama_p) if ollama_p else None,
        ollama_name=name,
        push_to_hub=push_to_hub or None,
        private=private,
        force=force,
        model_type=model_type,
        notes=notes,
        converter="llama.cpp" if tools is not None and gguf_p is not None else "builtin",
        llama_cpp_converter=tools.converter if tools and gguf_p is not None else None,
        llama_cpp_quantize=tools.quantize if tools and gguf_p is not None else None,
    )


def unsupported_architecture(model_type: str) -> UserError:
    return UserError(
        f"Cannot write a GGUF for architecture '{model_type}': not supported (supported: {SUPPORTED_GGUF_TEXT})",
        hint=f"llama.cpp's own converter knows it: {INSTALL_HINT}; or export --merged DIR only",
    )


def default_ollama_name(run_id: str) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "-", run_id.lower()).strip("-._")
    return (name or "dpo-model")[:64]


def check_hub_access() -> str:
    """The token to push with. Raises a clear UserError when offline or not logged in (no network call)."""
    if offline("model"):
        reason = offline_reason("model")
        raise UserError(
            f"Cannot push to the hub: offline mode is on ({reason})",
            hint=f"unset {reason} on a machine with network access, or export locally with --merged/--gguf",
        )
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if not token:
        try:
            from huggingface_hub import get_token

            token = get_token()
        except Exception:  # noqa: BLE001 - a broken token store reads as "no token"
            token = None
    if not token:
        raise UserError(
            "Cannot push to the hub: no Hugging Face token found",
            hint="run `hf auth login` (or set HF_TOKEN) with a token that can write, then try again",
        )
    return token


# --- which weights ----------------------------------------------------------------------------------
def _pick_source(run: Run, method: str, state: str, kind: str | None, checkpoint: int | None) -> tuple[Path, str, int | None]:
    checkpoints = run.checkpoints()
    complete = [c.step for c in checkpoints if c.complete]
    listing = ", ".join(str(s) for s in complete) if complete else ""
    ckpt_hint = (
        f"export a saved checkpoint with --checkpoint N (complete: {listing})"
        if listing
        else "it saved no complete checkpoint either, so there is nothing to export"
    )
    if checkpoint is not None:
        match = [c for c in checkpoints if c.step == checkpoint]
        if not match:
            raise UserError(
                f"Run {run.id} has no checkpoint-{checkpoint}",
                hint=f"complete checkpoints: {listing}" if listing else "this run saved no checkpoint",
            )
        ckpt = match[0]
        if not ckpt.complete:
            raise UserError(
                f"checkpoint-{checkpoint} of run {run.id} is incomplete ({ckpt.reason})",
                hint=f"pick a complete one: {listing}" if listing else "this run has no complete checkpoint",
            )
        _check_weights(ckpt.path, method, f"checkpoint-{checkpoint}")
        return ckpt.path, f"checkpoint-{checkpoint}", checkpoint

    what = "model" if method == "full" else "adapter"
    if state in ACTIVE_STATES:
        raise UserError(
            f"Run {run.id} is still {state}: its final {what} is written when it finishes",
            hint=f"wait for it (`dpo-tui attach {run.id}`)"
            + (f", or {ckpt_hint}" if listing else "; it has no complete checkpoint yet"),
        )
    if state != "finished":
        detail = f" ({kind})" if kind and kind != state else ""
        raise UserError(f"Run {run.id} {state}{detail}: it has no final {what} to export", hint=ckpt_hint)
    final = run.final_weights_dir()
    if final is None:
        raise UserError(
            f"Run {run.id} finished but its final {what} is incomplete (no {what}/COMPLETE marker)",
            hint=ckpt_hint,
        )
    _check_weights(final, method, f"final {what}")
    return final, f"final {what}", None


def _check_weights(folder: Path, method: str, label: str) -> None:
    if method == "full":
        weights = sorted(folder.glob("*.safetensors"))
        if not (folder / "config.json").exists() or not weights:
            raise UserError(f"The {label} in {folder} has no config.json or safetensors weights")
    else:
        missing = [name for name in ADAPTER_FILES if not (folder / name).exists()]
        if missing:
            raise UserError(f"The {label} in {folder} has no {', '.join(missing)}", hint="it was not saved completely")
        weights = [folder / "adapter_model.safetensors"]
    for w in weights:
        try:
            read_header(w)
        except SafetensorsError as exc:
            raise UserError(f"The {label} weights are unreadable: {w}: {exc}") from None


def _model_type(full_model: Path | None, base_model: str, revision: str | None) -> str | None:
    """The ``model_type`` from config.json when it is on disk (a folder, or the hub cache); else None."""
    candidates: list[Path] = []
    if full_model is not None:
        candidates.append(full_model / "config.json")
    base = Path(base_model)
    if base.is_dir():
        candidates.append(base / "config.json")
    elif looks_like_hub_id(base_model):
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(base_model, "config.json", revision=revision)
            if isinstance(cached, str):
                candidates.append(Path(cached))
        except Exception:  # noqa: BLE001 - the worker checks again after loading
            pass
    for path in candidates:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, *JSON_ERRORS):
            continue
        if isinstance(data, dict) and isinstance(data.get("model_type"), str):
            return data["model_type"]
    return None


# --- destinations -----------------------------------------------------------------------------------
def _abs(path: str | os.PathLike[str] | None) -> Path | None:
    if path is None or str(path) == "":
        return None
    return Path(os.path.abspath(Path(path).expanduser()))


def _is_within(child: Path, parent: Path) -> bool:
    try:
        child.relative_to(parent)
        return True
    except ValueError:
        return False


def _check_destinations(merged: Path | None, gguf: Path | None, ollama: Path | None, precious: list[Path], force: bool) -> None:
    dests = [(label, p) for label, p in (("merged folder", merged), ("GGUF file", gguf), ("Ollama folder", ollama)) if p]
    if merged and ollama and (_is_within(merged, ollama) or _is_within(ollama, merged)):
        raise UserError("--merged and --ollama must be separate folders", hint="the GGUF may go inside either one")
    if gguf and gguf.suffix.lower() != ".gguf":
        raise UserError(f"The GGUF file name should end in .gguf: {gguf}")
    home = Path.home().resolve()
    problems: list[Problem] = []
    for label, dest in dests:
        inside_other = any(dest != other and _is_within(dest, other) for _, other in dests)
        real = Path(os.path.realpath(dest))
        for keep in precious:
            keep_real = Path(os.path.realpath(keep))
            if _is_within(keep_real, real):
                raise UserError(
                    f"The {label} {dest} would contain {keep}; replacing it would destroy the run or its base model",
                    hint="choose a new folder outside the runs folder and the model folder",
                )
        if real in (Path("/"), home):
            raise UserError(f"Refusing to write the {label} to {dest}", hint="choose a new, dedicated folder")
        if inside_other:
            continue  # written inside another destination, which is checked itself
        if dest.exists() or dest.is_symlink():
            if not force:
                problems.append(Problem(f"{dest} already exists", field=label, hint="--force replaces it"))
                continue
            if label == "GGUF file" and dest.is_dir():
                problems.append(Problem(f"{dest} is a folder, not a file", field=label))
                continue
        problem = _writable_problem(dest, label)
        if problem:
            problems.append(problem)
    if len(problems) == 1:
        only = problems[0]
        if only.message.startswith("cannot"):
            raise UserError(f"Cannot write the {only.field}: {only.message}", hint=only.hint)
        raise UserError(f"The {only.field} {only.message}", hint=only.hint)
    if problems:
        raise UserError("Cannot write the export destinations", problems=problems)


def _writable_problem(dest: Path, label: str) -> Problem | None:
    """Whether ``dest`` can be created: its nearest existing ancestor must be a writable folder."""
    ancestor = dest.parent
    while not ancestor.exists():
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return Problem(f"cannot create {dest}: {ancestor} is a file, not a folder", field=label)
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return Problem(
            f"cannot create {dest}: {ancestor} is not writable",
            field=label,
            hint="choose a folder you can write to (or check that the file system is not read-only)",
        )
    return None


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def outputs_summary(outputs: dict[str, Any]) -> list[str]:
    """Lines ``dpo-tui export`` prints when an export finished."""
    lines = []
    if outputs.get("merged"):
        lines.append(f"merged: {outputs['merged']}")
    if outputs.get("gguf"):
        size = outputs.get("gguf_bytes")
        extra = f" ({outputs.get('gguf_type')}, {human_bytes(size)})" if size else ""
        lines.append(f"gguf: {outputs['gguf']}{extra}")
    if outputs.get("modelfile"):
        lines.append(f"ollama: {outputs['modelfile']}")
        if outputs.get("ollama_command"):
            lines.append(f"  create it with: {outputs['ollama_command']}")
    if outputs.get("hub_url"):
        lines.append(f"pushed: {outputs['hub_url']}")
    return lines
