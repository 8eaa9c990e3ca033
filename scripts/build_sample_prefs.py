"""Build the bundled sample preference data set (``sample_data/prefs/``).

The console ships a built-in "sample experiment" that must run end to end on a laptop CPU in a
couple of minutes, so the data has to teach one preference that a tiny model can pick up in a few
dozen DPO steps and that is easy to measure: *concise over verbose*. Every pair asks the same
question twice; ``chosen`` is a short direct answer (6-16 words), ``rejected`` is a padded answer
to the same question (preamble, hedging, the answer, often a repeat, a sign-off; 25-42 words). The
effect of training is then simply "mean words per answer goes down" on held-out prompts.

Everything comes from the fact tables and phrasing templates below and one ``random.Random`` with
a fixed seed, so a rerun writes byte-identical files. Vocabulary is kept small on purpose: the
tiny sample model (``scripts/build_sample_model.py``) trains its own ~1.5k-token BPE vocabulary
on this text and imports the tables from this module.

Outputs:
    train.jsonl                 standard form  {"prompt": str, "chosen": str, "rejected": str}
    train_conversational.jsonl  TRL conversational form (lists of {"role", "content"} messages)
    heldout_prompts.txt         prompts absent from the pairs (held-out subjects), one per line
    README.md                   what the files are and how they were made

Usage: python scripts/build_sample_prefs.py [--out sample_data/prefs]
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path

SEED = 1234
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "sample_data" / "prefs"

# --------------------------------------------------------------------------------------------
# Fact tables. The last few rows of each table are the held-out subjects (see HELDOUT_PER_KIND):
# they never appear in a pair, only in heldout_prompts.txt and (with other phrasings) in the
# sample model's pretraining text, so the model knows the fact but has never been *preferred*
# on that question.
# --------------------------------------------------------------------------------------------

CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Japan", "Tokyo"), ("China", "Beijing"), ("Egypt", "Cairo"), ("Canada", "Ottawa"),
    ("Russia", "Moscow"), ("Peru", "Lima"), ("Sweden", "Stockholm"), ("Greece", "Athens"),
    ("Ireland", "Dublin"), ("Poland", "Warsaw"), ("Cuba", "Havana"), ("Mexico", "Mexico City"),
    ("Australia", "Canberra"), ("Turkey", "Ankara"), ("Thailand", "Bangkok"), ("Finland", "Helsinki"),
    ("Denmark", "Copenhagen"), ("Belgium", "Brussels"), ("Hungary", "Budapest"), ("Iran", "Tehran"),
    ("India", "New Delhi"), ("Brazil", "Brasilia"), ("Argentina", "Buenos Aires"), ("Iceland", "Reykjavik"),
    ("South Korea", "Seoul"), ("Colombia", "Bogota"),
    # held out
    ("Norway", "Oslo"), ("Portugal", "Lisbon"), ("Kenya", "Nairobi"), ("Austria", "Vienna"),
    ("Chile", "Santiago"), ("Vietnam", "Hanoi"),
]

ELEMENTS = [
    ("gold", "Au"), ("silver", "Ag"), ("iron", "Fe"), ("oxygen", "O"), ("carbon", "C"),
    ("hydrogen", "H"), ("sodium", "Na"), ("helium", "He"), ("copper", "Cu"), ("lead", "Pb"),
    ("nitrogen", "N"), ("calcium", "Ca"), ("zinc", "Zn"),
    # held out
    ("tin", "Sn"), ("potassium", "K"), ("neon", "Ne"),
]

# (noun phrase with article, legs)
LEGS = [
    ("a spider", "eight"), ("an ant", "six"), ("a dog", "four"), ("a horse", "four"),
    ("a chicken", "two"), ("a crab", "ten"), ("a beetle", "six"), ("a goat", "four"),
    ("a duck", "two"), ("a frog", "four"), ("a cow", "four"), ("a fly", "six"), ("an owl", "two"),
    # held out
    ("a bee", "six"), ("a cat", "four"), ("a sheep", "four"),
]

# (subject, verb, past-tense verb phrase, year)
EVENTS = [
    ("World War II", "end", "ended", "1945"),
    ("World War I", "begin", "began", "1914"),
    ("the Titanic", "sink", "sank", "1912"),
    ("the Berlin Wall", "fall", "fell", "1989"),
    ("the French Revolution", "begin", "began", "1789"),
    ("the first moon landing", "happen", "happened", "1969"),
    ("the Soviet Union", "collapse", "collapsed", "1991"),
    ("the American Civil War", "end", "ended", "1865"),
    ("the Wright brothers", "first fly", "first flew", "1903"),
    ("the United States", "declare independence", "declared independence", "1776"),
    ("Columbus", "reach America", "reached America", "1492"),
    # held out (subjects unlike the ones above, so the tiny model cannot mix them up)
    ("the Eiffel Tower", "open", "opened", "1889"),
    ("the first modern Olympics", "take place", "took place", "1896"),
    ("the Great Fire of London", "happen", "happened", "1666"),
]

# (task, concise answer)
HOWTOS = [
    ("boil an egg", "Put the egg in boiling water for nine minutes, then cool it."),
    ("reset a password", "Click Forgot Password, open the email link, and choose a new password."),
    ("make tea", "Pour boiling water over a tea bag and wait three minutes."),
    ("cook rice", "Simmer one cup of rice in two cups of water for twenty minutes."),
    ("tie a shoelace", "Make two loops, cross them, and pull one through the gap."),
    ("plant a tree", "Dig a wide hole, set the tree in, fill with soil, and water it."),
    ("clean a screen", "Wipe it gently with a soft dry cloth."),
    ("save a file", "Press Control and S, then pick a name and a folder."),
    ("charge a phone", "Plug the cable into the phone and into a wall charger."),
    ("wash a shirt", "Wash it in cold water with a little soap, then hang it to dry."),
    ("boil pasta", "Cook the pasta in salted boiling water for about ten minutes."),
    ("open a tight jar", "Run the lid under hot water, then twist it with a dry towel."),
    ("fix a flat tire", "Remove the wheel, patch or replace the tube, and pump it up."),
    ("make toast", "Put the bread in a toaster for about two minutes."),
    ("water a plant", "Pour water on the soil until it is damp, not soaked."),
    ("back up a phone", "Turn on cloud backup in the settings and connect to wifi."),
    # held out
    ("fry an egg", "Heat oil in a pan, crack the egg in, and cook for three minutes."),
    ("change a light bulb", "Turn off the power, twist out the old bulb, and twist in a new one."),
    ("lock a computer", "Press the Windows key and L at the same time."),
    ("make coffee", "Pour hot water over ground coffee in a filter."),
]

# (term, concise definition)
TERMS = [
    ("photosynthesis", "Photosynthesis is how plants use sunlight to make food from water and air."),
    ("gravity", "Gravity is the force that pulls objects toward each other."),
    ("an atom", "An atom is the smallest unit of a chemical element."),
    ("a cell", "A cell is the smallest living unit of a plant or animal."),
    ("an island", "An island is land with water all around it."),
    ("democracy", "Democracy is a system where people choose their leaders by voting."),
    ("a volcano", "A volcano is a mountain where hot rock comes up from inside the earth."),
    ("a desert", "A desert is a dry place that gets very little rain."),
    ("a planet", "A planet is a large body that moves around a star."),
    ("a comet", "A comet is a ball of ice and dust that moves around the sun."),
    ("a mammal", "A mammal is a warm blooded animal that feeds its young milk."),
    ("a virus", "A virus is a tiny germ that can only grow inside living cells."),
    ("an engine", "An engine is a machine that turns fuel into motion."),
    ("a battery", "A battery is a device that stores energy and gives out electricity."),
    ("a verb", "A verb is a word that shows an action or a state."),
    ("a noun", "A noun is a word for a person, place, or thing."),
    ("inflation", "Inflation is the general rise of prices over time."),
    ("a password", "A password is a secret word that protects an account."),
    ("a bridge", "A bridge is a structure that lets people cross over water or a road."),
    # held out
    ("a glacier", "A glacier is a large mass of ice that moves slowly over land."),
    ("a river", "A river is a large stream of water that flows to the sea."),
    ("a computer", "A computer is a machine that stores and processes information."),
    ("evaporation", "Evaporation is when a liquid turns into a gas."),
    ("an ocean", "An ocean is a very large body of salt water."),
]

# (a, b, concise comparison)
COMPARISONS = [
    ("tea", "coffee", "Tea is made from leaves, while coffee is made from roasted beans."),
    ("a lake", "a sea", "A lake is fresh water inside land, while a sea is salt water."),
    ("weather", "climate", "Weather is the daily state of the air, while climate is the long term pattern."),
    ("a virus", "a bacterium", "A bacterium is a living cell, while a virus needs a host cell to grow."),
    ("a frog", "a toad", "A frog has smooth wet skin, while a toad has dry bumpy skin."),
    ("a laptop", "a desktop", "A laptop is portable, while a desktop stays on a desk."),
    ("a crocodile", "an alligator", "A crocodile has a narrow snout, while an alligator has a wide one."),
    ("a town", "a city", "A city is larger and has more people than a town."),
    ("speed", "velocity", "Speed is how fast something moves, while velocity also includes direction."),
    ("a noun", "a verb", "A noun names a thing, while a verb describes an action."),
    ("rain", "snow", "Rain is liquid water, while snow is frozen water that falls as flakes."),
    ("a star", "a planet", "A star makes its own light, while a planet reflects light."),
    ("a monkey", "an ape", "Most monkeys have tails, while apes do not."),
    # held out
    ("a cat", "a dog", "Cats are small and independent, while dogs are more social and need walks."),
    ("a river", "a lake", "A river flows in one direction, while a lake stays still."),
    ("a bike", "a car", "A bike uses pedals and human power, while a car uses an engine."),
]

HELDOUT_PER_KIND = {
    "capital": 6, "symbol": 3, "legs": 3, "date": 3, "howto": 4, "definition": 5, "comparison": 3,
}

# Phrasing templates per kind. The placeholders are filled from the tables above.
TEMPLATES = {
    "capital": [
        "What is the capital of {c}?",
        "Tell me the capital of {c}.",
        "Which city is the capital of {c}?",
        "Name the capital city of {c}.",
    ],
    "symbol": [
        "What is the chemical symbol for {x}?",
        "Which chemical symbol stands for {x}?",
        "Tell me the chemical symbol of {x}.",
    ],
    "legs": [
        "How many legs does {x} have?",
        "Tell me how many legs {x} has.",
        "What is the number of legs on {x}?",
    ],
    "date": [
        "When did {e} {v}?",
        "In what year did {e} {v}?",
        "Tell me the year {e} {vp}.",
    ],
    "howto": [
        "How do I {t}?",
        "What is the best way to {t}?",
        "Tell me how to {t}.",
        "Can you explain how to {t}?",
    ],
    "definition": [
        "What is {x}?",
        "Define {x}.",
        "What is meant by {x}?",
        "Can you explain what {x} is?",
    ],
    "comparison": [
        "What is the difference between {a} and {b}?",
        "How is {a} different from {b}?",
        "Compare {a} and {b}.",
        "Tell me the difference between {a} and {b}.",
    ],
}

# Template indices used for the held-out prompts of held-out subjects; the other templates of a
# held-out subject go to the "extra" pool (pretraining text only, never a pair).
HELDOUT_TEMPLATES = {
    "capital": (0, 2), "symbol": (0, 2), "legs": (0, 1), "date": (0, 1), "howto": (0, 3),
    "definition": (0, 3), "comparison": (0, 1),
}

# --------------------------------------------------------------------------------------------
# Verbose padding. A rejected answer is: preamble + hedge + the answer + (repeat) + sign-off.
# The pieces are generic so the "verbose" habit is one shared style the model can unlearn.
# --------------------------------------------------------------------------------------------

# All preambles open the same way on purpose: the base model's greedy choice between a direct and a
# padded answer is then one clear first-token decision that DPO can move.
PREAMBLES = [
    "Great question! Let me explain this in detail.",
    "Great question! I am happy to help with that.",
    "Great question! Many people wonder about this.",
    "Great question! Let me walk you through it.",
    "Great question! I will do my best to explain.",
]
HEDGES = [
    "To be honest, it can depend on a few things.",
    "There are many ways to look at this.",
    "Keep in mind that details can vary.",
    "It helps to think about the question carefully.",
]
REPEATS = [
    "That is the main point, and it is worth saying twice.",
    "So, once again, that is the short version.",
    "In other words, that really is the whole answer.",
]
CLOSINGS = [
    "I hope this helps!",
    "Let me know if you have any other questions.",
    "Feel free to ask for more details.",
    "I hope that makes it clear!",
]

MIN_VERBOSE_WORDS, MAX_VERBOSE_WORDS = 25, 42


@dataclass(frozen=True)
class Question:
    """One prompt with its short correct answer."""

    kind: str
    subject: str
    template: int
    prompt: str
    answer: str


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _subject_rows(kind: str) -> list[tuple[str, list[str], str]]:
    """(subject, prompts for every template, answer) rows for one kind, in table order."""
    rows: list[tuple[str, list[str], str]] = []
    tpls = TEMPLATES[kind]
    if kind == "capital":
        for c, cap in CAPITALS:
            rows.append((c, [t.format(c=c) for t in tpls], f"The capital of {c} is {cap}."))
    elif kind == "symbol":
        for x, s in ELEMENTS:
            rows.append((x, [t.format(x=x) for t in tpls], f"The chemical symbol for {x} is {s}."))
    elif kind == "legs":
        for x, n in LEGS:
            rows.append((x, [t.format(x=x) for t in tpls], f"{_cap(x)} has {n} legs."))
    elif kind == "date":
        for e, v, vp, year in EVENTS:
            subject = f"{e} {v}"
            rows.append((subject, [t.format(e=e, v=v, vp=vp) for t in tpls], f"{_cap(e)} {vp} in {year}."))
    elif kind == "howto":
        for t_, ans in HOWTOS:
            rows.append((t_, [t.format(t=t_) for t in tpls], ans))
    elif kind == "definition":
        for x, ans in TERMS:
            rows.append((x, [t.format(x=x) for t in tpls], ans))
    elif kind == "comparison":
        for a, b, ans in COMPARISONS:
            rows.append((f"{a} vs {b}", [t.format(a=a, b=b) for t in tpls], ans))
    else:  # pragma: no cover - guarded by TEMPLATES keys
        raise ValueError(kind)
    return rows


def build_questions() -> tuple[list[Question], list[Question], list[Question]]:
    """Split every (subject, phrasing) into (pair questions, extra questions, held-out questions).

    Pair questions become preference pairs. Held-out subjects never appear in a pair: some of
    their phrasings are the held-out prompts, the rest are "extra" questions that only the
    sample model's pretraining sees (so it knows the fact, e.g. the capital of Kenya).
    """
    pairs: list[Question] = []
    extra: list[Question] = []
    heldout: list[Question] = []
    for kind in TEMPLATES:
        rows = _subject_rows(kind)
        n_held = HELDOUT_PER_KIND[kind]
        for i, (subject, prompts, answer) in enumerate(rows):
            is_held = i >= len(rows) - n_held
            for j, prompt in enumerate(prompts):
                q = Question(kind, subject, j, prompt, answer)
                if not is_held:
                    pairs.append(q)
                elif j in HELDOUT_TEMPLATES[kind]:
                    heldout.append(q)
                else:
                    extra.append(q)
    return pairs, extra, heldout


def verbose_answer(rng: random.Random, answer: str) -> str:
    """Pad a concise answer into a 25-42 word verbose one (deterministic given ``rng``)."""
    for _ in range(100):
        parts = [rng.choice(PREAMBLES), rng.choice(HEDGES), answer]
        if rng.random() < 0.5 or len(answer.split()) < 10:
            parts.append(rng.choice(REPEATS))
        parts.append(rng.choice(CLOSINGS))
        text = " ".join(parts)
        if MIN_VERBOSE_WORDS <= len(text.split()) <= MAX_VERBOSE_WORDS:
            return text
    raise RuntimeError(f"could not pad {answer!r} into {MIN_VERBOSE_WORDS}-{MAX_VERBOSE_WORDS} words")


def build_pairs(seed: int = SEED) -> tuple[list[dict], list[str]]:
    """Return (standard-form pair rows in a seeded shuffled order, held-out prompts)."""
    rng = random.Random(seed)
    pair_qs, _extra, held_qs = build_questions()
    rows = [{"prompt": q.prompt, "chosen": q.answer, "rejected": verbose_answer(rng, q.answer)} for q in pair_qs]
    rng.shuffle(rows)
    return rows, [q.prompt for q in held_qs]


def to_standard(row: dict) -> dict:
    """The plain-text form TRL trains on as ``prompt + completion``: the prompt ends with a newline,
    so question and answer never run together ("…a sea?A lake is…"; the data lint's no-separator)."""
    return {**row, "prompt": row["prompt"] + "\n"}


def to_conversational(row: dict) -> dict:
    """Standard-form row -> TRL conversational (implicit-prompt-free) form."""
    return {
        "prompt": [{"role": "user", "content": row["prompt"]}],
        "chosen": [{"role": "assistant", "content": row["chosen"]}],
        "rejected": [{"role": "assistant", "content": row["rejected"]}],
    }


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _readme(rows: list[dict], heldout: list[str]) -> str:
    def mean_words(key: str) -> float:
        return sum(len(r[key].split()) for r in rows) / len(rows)

    return f"""# Sample preference data: concise over verbose

Generated by `scripts/build_sample_prefs.py` (seed {SEED}; rerunning it writes identical bytes)
from small fact tables and phrasing templates: capitals, chemical symbols, animal legs, dates,
how-tos, definitions and comparisons, with 3-4 phrasings per question kind.

| file | rows | content |
|------|-----:|---------|
| `train.jsonl` | {len(rows)} | standard form `{{"prompt", "chosen", "rejected"}}` (strings; each prompt ends with a newline) |
| `train_conversational.jsonl` | {len(rows)} | the same pairs in TRL conversational form (message lists) |
| `heldout_prompts.txt` | {len(heldout)} | prompts about held-out subjects, never in a pair (one per line) |

`chosen` is a short direct answer (mean {mean_words("chosen"):.1f} words); `rejected` answers the same
question with a preamble, hedging, the answer, often a filler "once again" line, and a sign-off (mean
{mean_words("rejected"):.1f} words). DPO on these pairs should shorten the answers of
`sample_data/tiny-chat` on the held-out prompts; "mean words per greedy answer" is the metric.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args()

    rows, heldout = build_pairs()
    prompts = {r["prompt"] for r in rows}
    assert len(prompts) == len(rows), "duplicate prompt in pairs"
    assert not prompts & set(heldout), "held-out prompt leaked into the pairs"

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    _write_jsonl(out / "train.jsonl", [to_standard(r) for r in rows])
    _write_jsonl(out / "train_conversational.jsonl", [to_conversational(r) for r in rows])
    (out / "heldout_prompts.txt").write_text("\n".join(heldout) + "\n", encoding="utf-8")
    (out / "README.md").write_text(_readme(rows, heldout), encoding="utf-8")
    print(f"wrote {len(rows)} pairs and {len(heldout)} held-out prompts to {out}")


if __name__ == "__main__":
    main()
