"""core/numfmt: compact forms that stay true in a narrow column."""

from __future__ import annotations

from decimal import Decimal

import pytest

from dpo_tui.core.numfmt import column_widths, count, ellipsize, num, steps

VALUES = [0.0, -0.0, 0.1, -0.1, 0.693147, 1.3e-5, -1.3e-5, 1.26e-5, 7e-4, 12345.678, -12345.678, 1e300, -1e300,
          1e-300, -1e-300, 5e-324, 1.7976931348623157e308, 123456789.0, 2.651, -0.832, 1.0, 42.0]


@pytest.mark.parametrize(("value", "text"), [
    (None, "–"), (float("nan"), "NaN"), (float("inf"), "inf"), (float("-inf"), "-inf"), (0.0, "0"), (0, "0"),
    (0.1, "0.1"), (1.3e-5, "1.3e-5"), (-1.3e-5, "-1.3e-5"), (0.693147, "0.693"), (1e300, "1e300"),
    (12345.678, "1.23e4"), (-0.832, "-0.832"), (5e-4, "0.0005"), (3, "3"),
])
def test_num_shortest(value, text) -> None:
    assert num(value) == text


@pytest.mark.parametrize(("value", "text"), [(0.25, "0.250"), (1.3e-5, "1.30e-5"), (100.0, "100"), (1.4, "1.40")])
def test_num_keeps_zeros_for_metrics(value, text) -> None:
    assert num(value, zeros=True) == text


@pytest.mark.parametrize("width", [3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("zeros", [False, True])
def test_num_fits_and_never_reads_as_another_value(value, width, zeros) -> None:
    text = num(value, width, zeros=zeros)
    assert len(text) <= width, text
    if text == "…":
        return  # said it does not fit; never a cut number
    if "≈0" in text:
        assert abs(value) < 1e-9 and (text.startswith("-") == (value < 0))
        return
    shown = Decimal(text)  # not float: 2e308 (1.8e308 rounded) is a true reading, but overflows a float
    assert shown == 0 or (shown < 0) == (value < 0)
    # Within the rounding of one significant digit: the magnitude is never lost.
    if value:
        assert abs(shown - Decimal(value)) <= abs(Decimal(value)) / 2, (value, text)


def test_num_falls_back_to_exponent_form() -> None:
    assert num(7e-4, 4) == "7e-4"
    assert num(1.3e-5, 5) == "1e-5"
    assert num(-1e-300, 6) == "-≈0"
    assert num(1e300, 4) == "…"


@pytest.mark.parametrize(("n", "width", "text"), [
    (None, None, "–"), (0, None, "0"), (999, None, "999"), (1000, None, "1k"), (1500, None, "1.5k"),
    (12345, None, "12.3k"), (2_500_000, None, "2.5M"), (-1500, None, "-1.5k"), (1000, 4, "1000"), (12345, 4, "12k"),
    (3 * 10**12, None, "3T"),
])
def test_count(n, width, text) -> None:
    assert count(n, width) == text


@pytest.mark.parametrize(("step", "total", "width", "text"), [
    (162, 1000, 7, "162/1k"), (162, 1000, None, "162/1000"), (162, 1000, 8, "162/1000"), (1234, 5000, 7, "1234/5k"),
    (1234, 5000, 6, "1k/5k"), (1234, 5000, 7, "1234/5k"), (12345, 50000, 9, "12345/50k"), (12345, 50000, 8, "12k/50k"), (0, 0, 7, "–"), (5, None, 7, "5"), (0, 30, 7, "0/30"), (None, 30, 7, "0/30"),
])
def test_steps(step, total, width, text) -> None:
    assert steps(step, total, width) == text
    if width:
        assert len(text) <= width


def test_ellipsize_marks_every_cut() -> None:
    assert ellipsize("ladder-20261205-143012", 30) == "ladder-20261205-143012"
    assert ellipsize("ladder-20261205-143012", 16) == "ladder-20261205…"
    cut = ellipsize("ladder-20261205-143012", 16, keep_end=True)
    assert len(cut) == 16 and "…" in cut and cut.endswith("143012") and cut.startswith("ladder")
    assert ellipsize("abc", 1) == "…" and ellipsize("abc", 0) == "" and ellipsize(None, 5) == "–"


def test_column_widths() -> None:
    assert column_widths(["ID", "LOSS"], [["a-very-long-run-id", "1"], ["b", "1.3e-5"]]) == [18, 6]
