"""The monitor's health panel: one line saying what the metrics mean right now."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from ...core.health import Finding

ICONS = {"ok": "✓", "info": "i", "warn": "!", "bad": "✗"}


class HealthPanel(Widget):
    """Shows the headline finding; the level is a CSS class (``-ok``, ``-info``, ``-warn``, ``-bad``)."""

    finding: reactive[Finding | None] = reactive(None)
    more: reactive[int] = reactive(0)

    def watch_finding(self, finding: Finding | None) -> None:
        for level in ICONS:
            self.set_class(finding is not None and finding.level == level, f"-{level}")
        if finding is not None:
            self.tooltip = finding.message

    def render(self) -> Text:
        if self.finding is None:
            return Text(" … reading the event log")
        text = Text(f" {ICONS[self.finding.level]} {self.finding.message}")
        if self.more:
            text.append(f"  (+{self.more} more: h)")
        return text
