"""A checkbox whose on and off states differ without colour: ``▐✓▌`` on, ``▐ ▌`` off.

Textual's Checkbox draws ``▐X▌`` in both states and tells them apart by colour only, which a
monochrome terminal, a colour-blind operator or a screenshot in a bug report loses.
"""

from __future__ import annotations

from textual.widgets import Checkbox


class FieldCheckbox(Checkbox):
    @property
    def BUTTON_INNER(self) -> str:  # type: ignore[override]  # the name Textual reads
        return "✓" if self.value else " "
