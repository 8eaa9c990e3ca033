"""Starting a run from a previous run's LoRA adapter (``init_adapter``): find it, check it fits, plan with it.

The operator names a run (id, id prefix or ``--name``) or a folder (an ``adapter/``, a checkpoint, a
run folder). :func:`resolve_init_adapter` runs when the run is planned (``dpo-tui train``, the
console's launch) and returns a config that records the absolute adapter folder and the source run
id, so ``config.json`` alone says where the run started and the run can be repeated. The adapter
fixes the LoRA shape: its rank, alpha and target modules replace the configured ones (a warning
names each that differed), so the VRAM estimate, ``runs`` and the trainer all see the adapter's
real size. Why the reference model stays the base model is in ``docs/training.md``.

Before anything is created this refuses, as a :class:`UserError` on field ``init_adapter``: a
missing folder or run, a run without a finished LoRA adapter, a full-model folder, a non-LoRA
adapter, an adapter without weights, and an adapter whose base model has other sizes than this
run's (the same fingerprint the chat worker compares). When a base's ``config.json`` cannot be read
here (a hub id not in the cache), the trainer checks the adapter's tensor shapes against the loaded
model instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .config import RunConfig, build_config, looks_like_hub_id, resolve_model
from .errors import Problem, UserError
from .hub import cached_snapshot
from .model_config import as_int, read_json
from .model_fingerprint import fingerprint, fingerprint_diffs
from .runs.folder import CHECKPOINTS_DIR, Run, checkpoint_complete
from .runs.listing import is_run_dir, made_by_dpo_tui, printable
from .runs.resolve import resolve_run

FIELD = "init_adapter"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin", "adapter_model.safetensors.index.json")


def _refuse(message: str, hint: str | None = None) -> UserError:
    return UserError("Cannot start from the given adapter:", [Problem(message, field=FIELD, hint=hint)])


def _run_of(folder: Path) -> Run | None:
    """The dpo-tui run a folder belongs to: the run folder itself, its ``adapter/``, or one of its checkpoints."""
    for candidate in (folder, folder.parent, folder.parent.parent if folder.parent.name == CHECKPOINTS_DIR else None):
        if candidate is not None and is_run_dir(candidate) and made_by_dpo_tui(candidate):
            return Run(candidate)
    return None


def _weights_of(run: Run) -> Path:
    weights = run.final_weights_dir()
    if weights is None:
        newest = run.newest_complete_checkpoint()
        hint = (f"start from its newest checkpoint: init_adapter = {newest.path}" if newest is not None
                else "wait for it to finish, or name another run")
        raise _refuse(f"run {printable(run.id)} has no finished adapter", hint)
    if weights == run.model_dir:
        raise _refuse(f"run {printable(run.id)} trained a full model, not a LoRA adapter",
                      "name a LoRA run, or set model to that run's model/ folder and train a fresh adapter")
    return weights


def locate(spec: str, runs_root: Path) -> tuple[Path, Run | None]:
    """The absolute adapter folder ``spec`` names, and the run it belongs to (None for a folder of no run)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        folder = Path(os.path.abspath(path))
        run = _run_of(folder)
        if run is not None and folder == run.path:
            return _weights_of(run), run
        if run is not None and folder.parent.name == CHECKPOINTS_DIR:
            complete, why = checkpoint_complete(folder)
            if not complete:
                raise _refuse(f"checkpoint {folder.name} of run {printable(run.id)} is incomplete ({why})",
                              "name an earlier checkpoint, or the run's finished adapter")
        return folder, run
    if path.exists():
        raise _refuse(f"{printable(spec)} is a file, not an adapter folder", "name the folder that holds adapter_config.json")
    if path.is_absolute() or os.sep in spec or spec.startswith("."):
        raise _refuse(f"no adapter folder at {printable(spec)}", "give a run id, or the folder that holds adapter_config.json")
    try:
        run = resolve_run(runs_root, spec)
    except UserError as exc:
        raise _refuse(f"no adapter folder or run named '{printable(spec)}': {exc.summary}",
                      exc.hint or "`dpo-tui runs` lists the runs") from None
    return _weights_of(run), run


def adapter_config(folder: Path) -> dict[str, Any]:
    """The folder's ``adapter_config.json`` of a LoRA adapter with weights, or a refusal saying what the folder is."""
    acfg, err = read_json(folder / ADAPTER_CONFIG)
    if acfg is None:
        if err == "file not found" and (folder / "config.json").is_file():
            raise _refuse(f"{folder} is a full model, not a LoRA adapter (no {ADAPTER_CONFIG})",
                          "to train on that model, set model to it; init_adapter takes a LoRA run's adapter or checkpoint")
        raise _refuse(f"{folder}: {ADAPTER_CONFIG}: {err}", "name a LoRA run, its adapter/ folder, or one of its checkpoints")
    if str(acfg.get("peft_type", "LORA")).upper() != "LORA":
        raise _refuse(f"{folder} is a {acfg.get('peft_type')} adapter; only LoRA adapters can be trained on here")
    if not any((folder / name).is_file() for name in ADAPTER_WEIGHTS):
        raise _refuse(f"{folder} has {ADAPTER_CONFIG} but no adapter weights (adapter_model.safetensors)")
    if not as_int(acfg.get("r")):
        raise _refuse(f"{folder}/{ADAPTER_CONFIG} gives no LoRA rank (r)")
    return acfg


def _base_config(model: str, revision: str | None = None) -> dict[str, Any] | None:
    """A base model's ``config.json`` from its folder or the hub cache; None when it cannot be read here."""
    path = Path(resolve_model(model)).expanduser()
    if not path.is_dir() and looks_like_hub_id(model):
        snapshot = cached_snapshot(model, "model", revision)
        path = snapshot if snapshot is not None else path
    cfg, _err = read_json(path / "config.json")
    return cfg


def check_base(config: RunConfig, folder: Path, acfg: dict[str, Any], run: Run | None) -> None:
    """Refuse an adapter whose base model has other sizes than this run's base model."""
    adapter_base, adapter_revision = str(acfg.get("base_model_name_or_path") or ""), None
    if run is not None:
        try:
            source = run.config()
            adapter_base, adapter_revision = source.model, source.model_revision
        except (UserError, OSError, ValueError):
            pass  # the adapter's own record of its base still says
    if not adapter_base:
        return  # nothing recorded: the trainer compares tensor shapes with the loaded model
    mine = _base_config(config.model, config.model_revision)
    theirs = _base_config(adapter_base, adapter_revision)
    if mine is None or theirs is None:
        return
    diffs = fingerprint_diffs(fingerprint(theirs), fingerprint(mine))
    if diffs:
        raise _refuse(
            f"the adapter {folder} was trained on {adapter_base}, but this run's base model is {config.model} "
            f"({'; '.join(diffs)})",
            f"set model to {adapter_base}, or pick an adapter trained on {config.model}",
        )


def adapter_lora(acfg: dict[str, Any]) -> dict[str, Any]:
    """The LoRA settings the adapter fixes, as RunConfig values."""
    targets = acfg.get("target_modules")
    if isinstance(targets, str):
        targets = [targets]
    rank = as_int(acfg.get("r")) or 0
    return {
        "lora_rank": rank,
        "lora_alpha": as_int(acfg.get("lora_alpha")) or rank,
        "lora_target_modules": sorted(str(t) for t in targets or []) or ["all-linear"],
    }


def resolve_init_adapter(config: RunConfig, runs_root: Path) -> tuple[RunConfig, list[str]]:
    """``config`` planned with its ``init_adapter``: the absolute folder, the source run, the adapter's LoRA shape.

    Returns the new config and one warning per configured LoRA value the adapter overrides. A config
    without ``init_adapter`` comes back unchanged. Raises :class:`UserError` (field ``init_adapter``).
    """
    if not config.init_adapter:
        return config, []
    if config.method == "full":
        raise _refuse("needs method 'lora' or 'qlora' (use_lora): a full fine-tune has no adapter to start from")
    folder, run = locate(config.init_adapter, runs_root)
    acfg = adapter_config(folder)
    check_base(config, folder, acfg, run)
    lora = adapter_lora(acfg)
    warnings = []
    for name, value in lora.items():
        mine = getattr(config, name)
        if (sorted(mine) if isinstance(mine, list) else mine) != value:
            shown = ", ".join(value) if isinstance(value, list) else value
            was = ", ".join(mine) if isinstance(mine, list) else mine
            warnings.append(f"init_adapter: {name} {was} is ignored; the adapter's {shown} is used")
    data = config.model_dump(mode="json")
    data.update(lora, init_adapter=str(folder), init_adapter_run=run.id if run is not None else "")
    return build_config(data), warnings
