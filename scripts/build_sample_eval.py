"""Build the bundled sample's held-out evaluation files (``sample_data/prefs/heldout_*.jsonl``).

``dpo-tui eval`` on a run of the bundled sample measures three things beyond answer length, and each needs
material the sample model was never *preferred* on (the held-out subjects of ``scripts/build_sample_prefs.py``):

    heldout_facts.jsonl   one fact (its key word) per held-out subject the base model answers right
                          (``{"prompt", "expected", "match"}``; see ``dpo_tui.core.eval.facts``), so "facts
                          kept" shows whether shortening the answers also dropped what they say
    heldout_pairs.jsonl   standard-form pairs on the held-out prompts (concise chosen, verbose rejected, built
                          exactly like ``train.jsonl``), for the held-out pair accuracy of the implicit reward

Both come from the fact tables of ``build_sample_prefs.py`` (imported, never changed) and one seeded
``random.Random``, so a rerun writes identical bytes. The script also adds (or refreshes) their rows in
``README.md`` of the output folder, which ``build_sample_prefs.py`` rewrites without them.

``--check`` loads ``sample_data/tiny-chat`` and prints which facts its greedy answers get right (needs torch
and transformers; nothing is written). Facts the base model never gets right are listed in
:data:`UNKNOWN_TO_BASE` and left out: forgetting what was never known cannot be measured.

Usage: python scripts/build_sample_eval.py [--out sample_data/prefs] [--check]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_sample_prefs as prefs

SEED = 4321
DEFAULT_OUT = prefs.DEFAULT_OUT
FACTS_FILE = "heldout_facts.jsonl"
PAIRS_FILE = "heldout_pairs.jsonl"

# The word of a held-out concise answer that carries the fact, for the kinds whose answer is not a single
# table value (capitals, symbols, legs and years are). Chosen to be absent from the prompt itself.
KEY_WORDS = {
    "a glacier": "ice",
    "a river": "flows",
    "a computer": "information",
    "evaporation": "gas",
    "an ocean": "salt",
    "fry an egg": "pan",
    "change a light bulb": "power",
    "lock a computer": "Windows",
    "make coffee": "filter",
    "a cat vs a dog": "independent",
    "a river vs a lake": "still",
    "a bike vs a car": "pedals",
}

# Held-out subjects whose fact the base sample model does not state when asked the fact's prompt (see --check;
# 26 of 27 right with sample_data/tiny-chat): left out of the facts file. "What is the difference between a
# river and a lake?" gets the definition of a river instead.
UNKNOWN_TO_BASE: frozenset[str] = frozenset({"a river vs a lake"})


def _whole_word(word: str) -> tuple[str, str]:
    # A short key word would "contain"-match inside another word ("ice" in the verbose style's "twice",
    # "K" in "kind"), so those facts match the whole word only.
    return rf"\b{re.escape(word)}\b", "regex"


def _expected(kind: str, subject: str) -> tuple[str, str]:
    """(expected, match) for one held-out subject: city names and years as text, other key words whole."""
    if kind == "capital":
        return dict(prefs.CAPITALS)[subject], "contains"
    if kind == "date":
        return {f"{e} {v}": year for e, v, _vp, year in prefs.EVENTS}[subject], "contains"
    if kind == "symbol":
        return _whole_word(dict(prefs.ELEMENTS)[subject])
    if kind == "legs":
        return _whole_word(dict(prefs.LEGS)[subject])
    return _whole_word(KEY_WORDS[subject])


def build_facts() -> list[dict]:
    """One fact per held-out subject (its first held-out phrasing), in the order of ``heldout_prompts.txt``."""
    _pairs, _extra, heldout = prefs.build_questions()
    rows: list[dict] = []
    seen: set[str] = set()
    for q in heldout:
        if q.subject in seen or q.subject in UNKNOWN_TO_BASE:
            continue
        seen.add(q.subject)
        expected, match = _expected(q.kind, q.subject)
        rows.append({"prompt": q.prompt, "expected": expected, "match": match})
    return rows


def build_heldout_pairs(seed: int = SEED) -> list[dict]:
    """Standard-form pairs (prompt ending with a newline, as in ``train.jsonl``) for every held-out prompt."""
    rng = random.Random(seed)
    _pairs, _extra, heldout = prefs.build_questions()
    return [prefs.to_standard({"prompt": q.prompt, "chosen": q.answer, "rejected": prefs.verbose_answer(rng, q.answer)})
            for q in heldout]


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


README_ROWS_AFTER = "| `heldout_prompts.txt` |"


def readme_with_rows(readme: str, facts: list[dict], pairs: list[dict]) -> str:
    """``readme`` with this script's table rows placed after the held-out prompts row (replacing old ones)."""
    rows = [
        f"| `{FACTS_FILE}` | {len(facts)} | one fact per held-out subject the base model knows "
        f"(`{{\"prompt\", \"expected\", \"match\"}}`; written by `scripts/build_sample_eval.py`) |",
        f"| `{PAIRS_FILE}` | {len(pairs)} | standard-form pairs on the held-out prompts, built like `train.jsonl` "
        f"(written by `scripts/build_sample_eval.py`) |",
    ]
    lines = [ln for ln in readme.split("\n") if not ln.startswith((f"| `{FACTS_FILE}`", f"| `{PAIRS_FILE}`"))]
    at = next((i for i, ln in enumerate(lines) if ln.startswith(README_ROWS_AFTER)), None)
    if at is None:
        raise SystemExit(f"README has no {README_ROWS_AFTER} row; run scripts/build_sample_prefs.py first")
    return "\n".join(lines[: at + 1] + rows + lines[at + 1 :])


def write_all(out: Path) -> tuple[list[dict], list[dict]]:
    """Write both files into ``out`` and refresh the README rows; returns (facts, pairs)."""
    facts, pairs = build_facts(), build_heldout_pairs()
    out.mkdir(parents=True, exist_ok=True)
    (out / FACTS_FILE).write_text(_jsonl(facts), encoding="utf-8", newline="\n")
    (out / PAIRS_FILE).write_text(_jsonl(pairs), encoding="utf-8", newline="\n")
    readme = out / "README.md"
    if readme.is_file():
        readme.write_text(readme_with_rows(readme.read_text(encoding="utf-8"), facts, pairs), encoding="utf-8",
                          newline="\n")
    return facts, pairs


def check(model_dir: Path, max_new_tokens: int = 60) -> int:
    """Print each fact with the base model's greedy answer; returns how many it gets right."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dpo_tui.core.eval.facts import fact_ok

    torch.set_num_threads(2)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    _pairs, _extra, heldout = prefs.build_questions()
    firsts = list({q.subject: q for q in reversed(heldout)}.values())[::-1]
    right = 0
    for q in firsts:
        subject, prompt = q.subject, q.prompt
        expected, match = _expected(q.kind, subject)
        enc = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
        answer = tokenizer.decode(gen[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip()
        ok = fact_ok(answer, expected, match)
        right += ok
        skipped = " (left out)" if subject in UNKNOWN_TO_BASE else ""
        print(f"{'OK ' if ok else 'NO '} {subject!r}{skipped}: {prompt} -> {answer}")
    print(f"base model right on {right} of {len(firsts)} held-out subjects")
    return right


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--check", action="store_true", help="only print what the sample model knows")
    parser.add_argument("--model", type=Path, default=prefs.DEFAULT_OUT.parent / "tiny-chat")
    args = parser.parse_args()
    if args.check:
        check(args.model)
        return
    facts, pairs = write_all(args.out)
    print(f"wrote {len(facts)} facts and {len(pairs)} held-out pairs to {args.out}")


if __name__ == "__main__":
    main()
