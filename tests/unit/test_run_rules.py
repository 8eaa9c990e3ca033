"""The rules the CLI and the console share, each defined once in core: run states, ``--map`` items,
field kinds, β lists, and the CLI's subcommand modules."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from dpo_tui.core.errors import UserError
from dpo_tui.core.mapping import parse_map


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["prompt=question"], {"prompt": "question"}),
        (["prompt=q,chosen=good", " system = sys "], {"prompt": "q", "chosen": "good", "system": "sys"}),
        ("prompt=q, ,chosen=good", {"prompt": "q", "chosen": "good"}),
        ([], {}),
        (None, {}),
        ("", {}),
    ],
)
def test_parse_map_accepts_pairs(items: list[str] | str | None, expected: dict[str, str]) -> None:
    assert parse_map(items) == expected


@pytest.mark.parametrize("bad", ["question", "prompt=", "=question", " = "])
def test_parse_map_names_the_bad_item(bad: str) -> None:
    with pytest.raises(UserError) as info:
        parse_map(["chosen=good", f"prompt=q,{bad}"])
    assert repr(bad.strip()) in info.value.summary
    assert "FIELD=COLUMN" in info.value.summary and info.value.summary.startswith("bad --map ")


def test_the_form_reports_a_map_item_without_equals() -> None:
    from dpo_tui.core.config import SAMPLE_PRESET
    from dpo_tui.ui import form

    spec = form.field_spec("column_map")
    typed = form.from_text(spec, "prompt=question, chosen")
    config, problems = form.problems_by_field({**SAMPLE_PRESET, "column_map": typed, "beta": "-1"})
    assert config is None
    assert "'chosen'" in problems["column_map"] and "FIELD=COLUMN" in problems["column_map"]
    assert "beta" in problems, "the other fields are still checked"
    assert form.from_text(spec, "prompt=question") == {"prompt": "question"}


def test_train_rejects_a_map_item_without_equals() -> None:
    from dpo_tui.cli import build_parser
    from dpo_tui.cli.runs_cmd import config_from_args

    args = build_parser().parse_args(["train", "--map", "prompt=question", "--map", "chosen"])
    with pytest.raises(UserError, match="bad --map 'chosen'"):
        config_from_args(args)


def test_field_kinds_drive_flags_and_widgets() -> None:
    from dpo_tui.core.config_fields import field_kind
    from dpo_tui.ui import form

    assert field_kind("gradient_checkpointing").kind == "bool"
    method = field_kind("method")
    assert method.kind == "choice" and method.closed and method.choices == ("lora", "qlora", "full")
    loss = field_kind("loss_type")
    assert loss.kind == "choice" and not loss.closed and loss.scalar is str
    assert field_kind("gpus").kind == "list" and field_kind("gpus").item_type is int
    assert field_kind("column_map").kind == "dict"
    revision = field_kind("model_revision")
    assert revision.kind == "text" and revision.optional and revision.scalar is str
    assert field_kind("lora_rank").scalar is int
    for name in ("method", "gpus", "model_revision", "loss_type", "column_map"):
        spec, kind = form.field_spec(name), field_kind(name)
        assert (spec.kind, spec.choices, spec.item_type, spec.optional) == (kind.kind, kind.choices, kind.item_type, kind.optional)


@pytest.mark.parametrize(
    ("text", "needle"),
    [("0.1", "at least two"), ("0.1,x", "comma-separated numbers"), ("0.1,0", "> 0"), ("0.05,0.05", "each value once")],
)
def test_beta_lists_are_checked_once_for_cli_and_dialog(text: str, needle: str) -> None:
    from dpo_tui.core.ladder import parse_betas
    from dpo_tui.ui.screens.ladder_dialog import check_betas

    with pytest.raises(UserError, match="--betas") as info:
        parse_betas(text)
    assert needle in info.value.summary
    betas, problem = check_betas(text)
    assert betas is None and needle in problem and problem.startswith("β list")
    assert parse_betas("0.05, 0.5") == [0.05, 0.5] and check_betas("0.05, 0.5") == ([0.05, 0.5], "")


def test_run_states_have_one_definition() -> None:
    from dpo_tui.core import run_states, runs
    from dpo_tui.ui import notify

    assert runs.ACTIVE_STATES is run_states.ACTIVE_STATES
    assert runs.TERMINAL_STATES is run_states.TERMINAL_STATES is notify.TERMINAL
    assert run_states.ACTIVE_STATES.isdisjoint(run_states.TERMINAL_STATES)
    assert run_states.RESUMABLE_STATES <= run_states.TERMINAL_STATES


def test_a_broken_subcommand_module_fails_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An ImportError inside one of our own subcommand modules is a bug: it surfaces, never a silently missing command."""
    import dpo_tui.cli as cli

    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", (*cli.SUBCOMMAND_MODULES, "no_such_subcommand"))
    with pytest.raises(ModuleNotFoundError, match="no_such_subcommand"):
        cli.build_parser()

    broken = tmp_path / "broken_cmd.py"
    broken.write_text("import dpo_tui_missing_dependency\n")
    monkeypatch.setattr(cli, "__path__", [*cli.__path__, str(tmp_path)])
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ("broken_cmd",))
    monkeypatch.delitem(sys.modules, "dpo_tui.cli.broken_cmd", raising=False)
    with pytest.raises(ModuleNotFoundError, match="dpo_tui_missing_dependency"):
        cli.build_parser()


def test_every_subcommand_registers() -> None:
    from dpo_tui.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {"train", "runs", "attach", "stop", "resume", "delete", "data", "ladder", "compare"} <= set(sub.choices)
