"""Push to the Hugging Face hub: the merged folder when one was written, else the adapter (or full model).

An adapter is uploaded with its tokenizer and the model card; the base path it recorded on the training
machine is replaced by the base model's hub id when it has one. Every hub failure becomes one :class:`UserError` naming the repo and what to check.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ...core.config import looks_like_hub_id
from ...core.errors import UserError, first_line
from ...core.export_plan import ADAPTER_FILES, TOKENIZER_FILES, ExportPlan, check_hub_access
from ...core.fsutil import JSON_ERRORS
from ...core.model_card import model_card
from .merge import TRAINING_STATE
from .staging import Progress


def push_to_hub(plan: ExportPlan, facts: dict[str, Any], progress: Progress) -> str:
    """Upload the merged folder (or the adapter / full model) with its card. Returns the repo URL."""
    token = check_hub_access()
    assert plan.push_to_hub
    progress.stage("push", f"uploading the {plan.push_source} to {plan.push_to_hub}")
    with tempfile.TemporaryDirectory(prefix="dpo-tui-push-") as tmp:
        if plan.merged:
            folder = Path(plan.merged)
        else:
            folder = Path(tmp)
            source = Path(plan.source)
            names = set(TOKENIZER_FILES) | (
                set(ADAPTER_FILES) if not plan.is_full else {p.name for p in source.iterdir()} - TRAINING_STATE)
            for name in sorted(names):
                if (source / name).is_file():
                    shutil.copy2(source / name, folder / name)
            if not plan.is_full:
                _rewrite_adapter_base(folder / "adapter_config.json", plan)
            (folder / "README.md").write_text(model_card(plan, facts, "model" if plan.is_full else "adapter"),
                                              encoding="utf-8")
        return _upload(folder, plan, token)


def _rewrite_adapter_base(path: Path, plan: ExportPlan) -> None:
    """The adapter's recorded base path is from the training box; name the hub id when there is one."""
    with contextlib.suppress(OSError, TypeError, *JSON_ERRORS):
        data = json.loads(path.read_text(encoding="utf-8"))
        if looks_like_hub_id(plan.base_model_spec):
            data["base_model_name_or_path"] = plan.base_model_spec
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _upload(folder: Path, plan: ExportPlan, token: str) -> str:
    from huggingface_hub import HfApi
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()

    assert plan.push_to_hub
    endpoint = os.environ.get("HF_ENDPOINT") or None
    api = HfApi(endpoint=endpoint, token=token)
    where = endpoint or "https://huggingface.co"
    try:
        repo = api.create_repo(plan.push_to_hub, private=plan.private, exist_ok=True, repo_type="model")
        repo_id = getattr(repo, "repo_id", None) or plan.push_to_hub
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                          commit_message=f"Upload {plan.run_id} ({plan.push_source}) from dpo-tui")
    except Exception as exc:  # noqa: BLE001 - every hub failure becomes one clear message
        status = getattr(getattr(exc, "response", None), "status_code", None)
        first = first_line(exc)
        if status in (401, 403):
            hint = "the token was refused: log in again with a token that has write access (`hf auth login`)"
        elif status is None:
            hint = f"check the network connection to {where} (and HF_ENDPOINT if you set it)"
        else:
            hint = None
        local = f"; the local export at {plan.merged} is complete" if plan.merged else ""
        raise UserError(f"Push to the hub repo {plan.push_to_hub} failed: {first}{local}", hint=hint) from None
    return f"{where.rstrip('/')}/{repo_id}"
