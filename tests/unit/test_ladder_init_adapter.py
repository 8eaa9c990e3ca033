"""A β ladder from a previous run's adapter: ``init_adapter`` is resolved once, and every rung carries the
resolved folder and source run (nothing trains: the runs are built, never launched)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import dpo_tui.cli.ladder as cli_ladder
import dpo_tui.core.init_adapter as init_adapter
from dpo_tui.core.config import RunConfig
from dpo_tui.core.ladder import ladder_configs
from dpo_tui.ui.screens.ladder_dialog import queue_ladder
from tests.support.cli import run_cli_inprocess
from tests.unit.test_init_adapter_config import finished_run


def counting_resolver(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count calls of ``resolve_init_adapter`` wherever a caller imported it from."""
    calls: list[str] = []
    real = init_adapter.resolve_init_adapter

    def resolve(config: RunConfig, root: Path) -> Any:
        calls.append(config.init_adapter)
        return real(config, root)

    monkeypatch.setattr(init_adapter, "resolve_init_adapter", resolve)
    monkeypatch.setattr(cli_ladder, "resolve_init_adapter", resolve)
    return calls


def assert_rungs_start_from(configs: list[RunConfig], folder: Path, run_id: str, betas: list[float]) -> None:
    assert [c.beta for c in configs] == betas
    for config in configs:
        assert config.init_adapter == str(folder)
        assert config.init_adapter_run == run_id
        assert config.lora_rank == 4 and config.lora_alpha == 8  # the adapter's shape, not the defaults


def test_the_cli_ladder_resolves_the_adapter_once(runs_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = finished_run(runs_root, "first")
    calls = counting_resolver(monkeypatch)
    made: list[tuple[Any, ...]] = []
    monkeypatch.setattr(cli_ladder, "make_ladder", lambda *a, **k: made.append(a) or [])
    proc = run_cli_inprocess("ladder", "--runs-dir", str(runs_root), "--betas", "0.05,0.1,0.5",
                             "--init-adapter", "first", "--lora-rank", "16")
    assert proc.returncode == 0, proc.stderr
    assert calls == ["first"]
    assert "lora_rank 16 is ignored" in proc.stderr and "Traceback" not in proc.stderr
    [(root, base, betas, group, spread)] = made
    assert_rungs_start_from(ladder_configs(base, betas, group, spread), source.adapter_dir.resolve(), source.id, betas)


def test_the_cli_ladder_refuses_a_missing_adapter_before_creating_runs(runs_root: Path, tmp_path: Path) -> None:
    proc = run_cli_inprocess("ladder", "--runs-dir", str(runs_root), "--betas", "0.05,0.1",
                             "--init-adapter", str(tmp_path / "gone"))
    assert proc.returncode == 2, proc.stderr
    assert "init_adapter" in proc.stderr and "Traceback" not in proc.stderr
    assert list(runs_root.iterdir()) == []


def test_the_console_ladder_resolves_the_adapter_once(runs_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = finished_run(runs_root, "first")
    calls = counting_resolver(monkeypatch)
    checked: list[RunConfig] = []
    made: list[list[RunConfig]] = []

    def ladder(root: Path, config: RunConfig, betas: list[float], group: str) -> list[Any]:
        configs = ladder_configs(config, betas, group)
        made.append(configs)
        return [SimpleNamespace(id=f"run-{c.beta:g}") for c in configs]

    services = SimpleNamespace(runs_root=runs_root, preflight=checked.append, ladder=ladder)
    run_ids, problem, notes = queue_ladder(services, RunConfig(init_adapter="first", lora_rank=16), [0.1, 0.3], "g")
    assert (run_ids, problem) == (["run-0.1", "run-0.3"], "")
    assert calls == ["first"] and any("lora_rank 16 is ignored" in n for n in notes)
    assert checked[0].init_adapter == str(source.adapter_dir.resolve())  # the checks see the resolved config
    assert_rungs_start_from(made[0], source.adapter_dir.resolve(), source.id, [0.1, 0.3])


def test_the_console_ladder_says_why_an_adapter_cannot_be_used(runs_root: Path, tmp_path: Path) -> None:
    services = SimpleNamespace(runs_root=runs_root, preflight=lambda c: None, ladder=lambda *a: pytest.fail("no ladder"))
    run_ids, problem, notes = queue_ladder(services, RunConfig(init_adapter=str(tmp_path / "gone")), [0.1, 0.3], "g")
    assert run_ids == [] and notes == []
    assert problem.startswith("Could not queue the ladder:") and "init_adapter" in problem
