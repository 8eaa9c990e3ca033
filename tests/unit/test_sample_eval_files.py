"""The sample's held-out evaluation files: they parse, stay out of the training pairs, and rebuild byte for byte."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from dpo_tui.core.eval.facts import fact_ok, read_facts
from dpo_tui.core.paths import (
    sample_dataset_path,
    sample_heldout_facts_path,
    sample_heldout_pairs_path,
    sample_heldout_prompts_path,
)
from dpo_tui.core.prompts_file import read_prompts

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("build_sample_eval", REPO / "scripts" / "build_sample_eval.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_files_parse_and_stay_out_of_the_training_pairs():
    train = {row["prompt"].strip() for row in _jsonl(sample_dataset_path())}
    heldout = [line for line in sample_heldout_prompts_path().read_text(encoding="utf-8").splitlines() if line]
    facts = read_facts(sample_heldout_facts_path())
    pairs = _jsonl(sample_heldout_pairs_path())
    assert len(facts) >= 20
    assert [f.line for f in facts] == list(range(1, len(facts) + 1))
    assert not {f.prompt for f in facts} & train
    assert {f.prompt for f in facts} <= set(heldout)
    assert len({f.prompt for f in facts}) == len(facts)
    for row in pairs:
        assert set(row) == {"prompt", "chosen", "rejected"}
        assert row["prompt"].endswith("\n") and row["prompt"].strip() not in train
        assert len(row["chosen"].split()) < len(row["rejected"].split())
        assert row["chosen"] in row["rejected"]
    assert [row["prompt"].strip() for row in pairs] == heldout
    assert [p.text for p in read_prompts(sample_heldout_pairs_path())] == [r["prompt"] for r in pairs]


def test_each_fact_is_in_its_concise_answer_and_nowhere_else(script):
    prefs = script.prefs
    answers = {q.prompt: q.answer for q in prefs.build_questions()[2]}
    padding = " ".join(prefs.PREAMBLES + prefs.HEDGES + prefs.REPEATS + prefs.CLOSINGS)
    for fact in read_facts(sample_heldout_facts_path()):
        assert fact_ok(answers[fact.prompt], fact.expected, fact.match), fact
        assert not fact_ok(fact.prompt, fact.expected, fact.match), fact
        # The verbose style alone never counts as knowing the fact ("twice" holds "ice").
        assert not fact_ok(padding, fact.expected, fact.match), fact


def test_rerun_reproduces_the_bytes(script, tmp_path):
    readme = sample_heldout_facts_path().parent / "README.md"
    shutil.copy(readme, tmp_path / "README.md")
    facts, pairs = script.write_all(tmp_path)
    assert (tmp_path / "heldout_facts.jsonl").read_bytes() == sample_heldout_facts_path().read_bytes()
    assert (tmp_path / "heldout_pairs.jsonl").read_bytes() == sample_heldout_pairs_path().read_bytes()
    assert (tmp_path / "README.md").read_bytes() == readme.read_bytes()
    assert f"| `heldout_facts.jsonl` | {len(facts)} |" in readme.read_text(encoding="utf-8")
    assert f"| `heldout_pairs.jsonl` | {len(pairs)} |" in readme.read_text(encoding="utf-8")
    # Refreshing a README that already has the rows replaces them instead of adding a second copy.
    script.write_all(tmp_path)
    assert (tmp_path / "README.md").read_bytes() == readme.read_bytes()
