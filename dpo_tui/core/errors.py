"""Errors an operator can act on.

Every error that reaches an operator is a :class:`UserError`: it names where the problem is
(file, line, field), what is wrong and how to fix it. The CLI prints it as one paragraph and
exits with code 2; the UI shows it in a notification. Tracebacks go to logs only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

EXIT_USAGE = 2


@dataclass
class Problem:
    """One finding: where, what, and how to fix it."""

    message: str
    field: str | None = None
    file: str | None = None
    line: int | None = None
    hint: str | None = None

    def render(self) -> str:
        where = []
        if self.file:
            where.append(f"{self.file}:{self.line}" if self.line else self.file)
        elif self.line:
            where.append(f"line {self.line}")
        if self.field:
            where.append(self.field)
        text = (": ".join(where) + ": " if where else "") + self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


@dataclass
class UserError(Exception):
    """An error caused by input the operator controls. Rendered without a traceback."""

    summary: str
    problems: list[Problem] = field(default_factory=list)
    hint: str | None = None

    def __post_init__(self) -> None:
        super().__init__(self.summary)

    def __str__(self) -> str:
        return self.render()

    def render(self) -> str:
        lines = [self.summary]
        lines += [f"  - {p.render()}" for p in self.problems]
        if self.hint:
            lines.append(f"Hint: {self.hint}")
        return "\n".join(lines)


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's text (its class name when it has none), at most ``limit`` chars.

    Operators see one line; the full text and traceback belong in a log.
    """
    for line in str(exc).strip().splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(exc).__name__
