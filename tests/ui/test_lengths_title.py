"""The Lengths histogram says what it counts: pairs, by tokens of the prompt plus the longer side."""

from __future__ import annotations

from dpo_tui.ui.widgets.pairs import histogram_renderable


def test_histogram_has_a_title_and_axis_labels() -> None:
    tokens = {"max_length": 12, "histogram": [{"lo": 4, "hi": 7, "count": 3}, {"lo": 8, "hi": 15, "count": 1}],
              "sequence": {"p50": 6, "p99": 14, "max": 15}}
    lines = str(histogram_renderable(tokens, None, width=60)).splitlines()
    assert lines[0] == "Pairs by length in tokens: prompt + the longer of chosen and rejected"
    assert lines[1].split() == ["tokens", "pairs", "(✂", "past", "max_length)"]
    assert lines[3].endswith(" 1 ✂")


def test_without_a_tokenizer_the_title_says_characters() -> None:
    text = str(histogram_renderable(None, {"chosen": {"p50": 40, "p99": 90, "max": 120}}))
    assert text.startswith("Lengths in characters (no tokenizer yet)\n") and "chosen    characters p50" in text
