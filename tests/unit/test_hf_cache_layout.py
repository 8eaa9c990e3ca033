"""A real model in the Hugging Face cache layout, offline, picked by its hub id: the picker, estimate, data check
and train all find it without a download.

The layout is what ``huggingface_hub`` writes: ``models--org--name/blobs/<sha256>`` holding the bytes,
``snapshots/<rev>/<file>`` symlinks to ``../../blobs/<sha256>``, and ``refs/main`` naming the revision.
(``tests/unit/test_models.py`` covers the picker's cache scan with header-only files; here the model loads.)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from dpo_tui.core import models
from tests.support.archs import FAMILIES, build_model
from tests.support.cli import SAMPLE_PREFS, run_cli_inprocess, start_run, wait_for_state

REPO_ID = "acme/llama3-narrow"
REV = "0123456789abcdef0123456789abcdef01234567"


def lay_out_in_cache(source: Path, cache: Path, repo_id: str, rev: str) -> Path:
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    blobs, snapshot = repo / "blobs", repo / "snapshots" / rev
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev)
    for item in sorted(source.iterdir()):
        data = item.read_bytes()
        blob = blobs / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / item.name).symlink_to(Path("../..") / "blobs" / blob.name)
    return snapshot


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hf")
    source = build_model(FAMILIES["llama3"], root / "source")
    cache = root / "hub"
    lay_out_in_cache(source, cache, REPO_ID, REV)
    return cache


@pytest.fixture
def offline_cache(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {"HF_HUB_CACHE": str(hub_cache), "HF_HUB_OFFLINE": "1", "HF_HOME": str(hub_cache.parent / "home")}
    for key in ("HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def test_picker_finds_it_by_hub_id(offline_cache: dict[str, str]) -> None:
    snapshot = Path(offline_cache["HF_HUB_CACHE"]) / f"models--{REPO_ID.replace('/', '--')}" / "snapshots" / REV
    assert (snapshot / "model.safetensors").is_symlink()
    info = models.inspect_model(REPO_ID)
    assert info.ok, info.error
    assert (info.source, info.repo_id, info.revision) == ("hf-cache", REPO_ID, REV)
    assert info.model_type == "llama" and info.has_chat_template and info.tied_embeddings
    assert info.param_source == "safetensors" and info.param_count == 8_278_336
    listed = {m.repo_id: m for m in models.scan_hf_cache()}
    assert listed[REPO_ID].param_count == info.param_count


def test_estimate_and_data_check_by_hub_id(offline_cache: dict[str, str]) -> None:
    proc = run_cli_inprocess("estimate", "--model", REPO_ID, "--method", "lora", "--max-length", "128", env=offline_cache)
    assert proc.returncode == 0, proc.stderr
    assert "8.3M" in proc.stdout
    proc = run_cli_inprocess("data", "check", str(SAMPLE_PREFS), "--model", REPO_ID, "--json", env=offline_cache)
    assert proc.returncode == 0, proc.stderr
    assert '"tokens"' in proc.stdout and '"notes": []' in proc.stdout


def test_train_by_hub_id_offline(offline_cache: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(SAMPLE_PREFS.read_text().splitlines(keepends=True)[:8]))
    path = start_run(tmp_path / "runs", "--model", REPO_ID, "--dataset", str(data), "--max-steps", "1", "--max-length", "64",
                     "--batch-size", "1", "--probe-prompts", "0", env=offline_cache)
    status = wait_for_state(path, {"finished", "failed", "crashed"}, timeout=240)
    assert status["state"] == "finished", (path / "trainer.log").read_text()[-2000:]
    assert (path / "adapter" / "adapter_model.safetensors").exists()
