"""Write ``docs/config.md`` from ``RunConfig``'s field docstrings, or check that it is current.

``make lint`` runs ``--check`` and ``tests/unit/test_config_docs.py`` asserts the same, so a field
added or reworded in ``dpo_tui/core/config.py`` fails both until the doc is regenerated.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dpo_tui.core.config import REMOVED_TRL_KEYS, SAMPLE_PRESET, RunConfig  # noqa: E402

DOC = ROOT / "docs" / "config.md"


def render() -> str:
    """The whole of ``docs/config.md``."""
    defaults = RunConfig()
    lines = [
        "# Config reference",
        "",
        "Every setting of a run, as written in a TOML file (`dpo-tui train --config exp.toml`), shown on the",
        "experiment screen, and frozen into the run folder's `config.json`. Each is also a `dpo-tui train` flag:",
        "`lora_rank` is `--lora-rank`. Generated from `dpo_tui/core/config.py` by `scripts/gen_config_docs.py`.",
        "",
        "| setting | default | meaning |",
        "|---|---|---|",
    ]
    for name, info in RunConfig.model_fields.items():
        value = getattr(defaults, name)
        shown = f"`{value!r}`" if value not in ("", [], {}) else "—"
        doc = (info.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{name}` | {shown} | {doc} |")
    lines += [
        "",
        "## The sample experiment",
        "",
        "`dpo-tui train` with no model, dataset or config trains the bundled tiny-chat model on the bundled",
        "concise-over-verbose pairs with these settings (other fields keep their defaults):",
        "",
        "```toml",
        *[f"{k} = {v!r}".replace("'", '"').replace("False", "false").replace("True", "true") for k, v in SAMPLE_PRESET.items()],
        "```",
        "",
        "## Keys TRL 1.x removed",
        "",
        "These are rejected with a message naming the key:",
        "",
        *[f"- `{k}`: {v}" for k, v in REMOVED_TRL_KEYS.items()],
        "",
    ]
    return "\n".join(lines)


def stale_summary(current: str, wanted: str, limit: int = 20) -> str:
    """A short unified diff from the file on disk to what it should be (at most ``limit`` changed lines)."""
    diff = difflib.unified_diff(current.splitlines(), wanted.splitlines(), "docs/config.md", "generated", lineterm="", n=0)
    lines = list(diff)
    changed = [ln for ln in lines if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    shown = "\n".join(lines[: limit + 3])
    more = f"\n… {len(changed) - limit} more changed lines" if len(changed) > limit else ""
    return f"{len(changed)} changed lines:\n{shown}{more}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gen_config_docs.py", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 with a diff summary when the doc is stale")
    parser.add_argument("--output", type=Path, default=DOC, help=f"file to write or check (default: {DOC.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    wanted = render()
    if args.check:
        try:
            current = args.output.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = ""
        if current == wanted:
            return 0
        print(f"{args.output} is stale; run `python scripts/gen_config_docs.py`. {stale_summary(current, wanted)}", file=sys.stderr)
        return 1
    args.output.write_text(wanted, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
