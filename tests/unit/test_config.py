"""RunConfig validation: every bound names the field, the value and the allowed range."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpo_tui.core.config import (
    REMOVED_TRL_KEYS,
    TRL_LOSS_TYPES,
    RunConfig,
    build_config,
    field_help,
    load_config,
)
from dpo_tui.core.errors import UserError


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("beta", 0, "must be > 0"),
        ("beta", -0.5, "must be > 0"),
        ("beta", float("nan"), "must be > 0"),
        ("loss_type", "nonsense", "unknown loss type"),
        ("label_smoothing", 0.5, "[0, 0.5)"),
        ("lora_rank", 0, "≥ 1"),
        ("lora_alpha", 0, "≥ 1"),
        ("lora_dropout", 1.0, "[0, 1)"),
        ("lora_target_modules", ["lm_head"], "lm_head"),
        ("lora_target_modules", [], "at least one"),
        ("learning_rate", 0, "> 0"),
        ("learning_rate", -1e-5, "> 0"),
        ("per_device_batch_size", 0, "≥ 1"),
        ("gradient_accumulation", 0, "≥ 1"),
        ("max_length", 0, "between 1"),
        ("max_steps", 0, "≥ 1, or -1"),
        ("max_steps", -5, "≥ 1, or -1"),
        ("num_epochs", 0, "> 0"),
        ("warmup_ratio", 0.9, "[0, 0.5]"),
        ("eval_fraction", 0.7, "[0, 0.5]"),
        ("save_fraction", 0, "(0, 1]"),
        ("nproc", 0, "≥ 1"),
        ("gpus", [0, 0], "distinct"),
        ("precision", "fp8", "Input should be"),
        ("method", "dora", "Input should be"),
        ("name", "bad name!", "letters"),
        ("model", "/no/such/model/dir", "no model folder"),
        ("beta", "high", "valid number"),
    ],
)
def test_bad_values_name_field_value_and_range(field: str, value: object, fragment: str) -> None:
    with pytest.raises(UserError) as info:
        build_config({field: value})
    text = info.value.render()
    assert field in text and fragment in text


@pytest.mark.parametrize("key", sorted(REMOVED_TRL_KEYS))
def test_removed_trl_keys_are_rejected_with_a_hint(key: str) -> None:
    with pytest.raises(UserError) as info:
        build_config({key: 1})
    assert key in info.value.render() and "removed in TRL 1.x" in info.value.render()


def test_unknown_key_suggests_the_close_one() -> None:
    with pytest.raises(UserError) as info:
        build_config({"lora_rnak": 8})
    assert "did you mean `lora_rank`" in info.value.render()


def test_cross_field_rules() -> None:
    with pytest.raises(UserError, match="exo_pair"):
        build_config({"loss_type": "exo_pair"})
    assert build_config({"loss_type": "exo_pair", "label_smoothing": 1e-3}).loss_type == "exo_pair"
    with pytest.raises(UserError, match="precompute_ref_log_probs"):
        build_config({"precompute_ref_log_probs": True, "method": "lora"})


def test_every_field_has_help() -> None:
    for name in RunConfig.model_fields:
        assert field_help(name), name
    assert "sigmoid" in TRL_LOSS_TYPES


def test_toml_round_trip(tmp_path: Path) -> None:
    config = RunConfig(beta=0.3, lora_rank=4, column_map={"prompt": "question"}, probe_prompts=["Hi?"])
    path = tmp_path / "exp.toml"
    path.write_text(config.to_toml())
    assert load_config(path) == config
    assert load_config(path, {"beta": 0.05}).beta == 0.05


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('beta = "abc"\n', "beta"),
        ("beta = \n", "invalid TOML"),
        ("max_prompt_length = 512\n", "max_prompt_length"),
        ('lora_rank = 8.5\n', "lora_rank"),
    ],
)
def test_bad_toml_is_a_clear_error(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "exp.toml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load_config(path)
    assert fragment in info.value.render() and str(path) in info.value.render()


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "nope.toml")
