"""Write docs/config.md from RunConfig's field docstrings (a test keeps the two in sync).

Usage: python scripts/gen_config_docs.py [--check]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dpo_tui.core.config import REMOVED_TRL_KEYS, SAMPLE_PRESET, RunConfig  # noqa: E402

DOC = ROOT / "docs" / "config.md"


def render() -> str:
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


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if DOC.read_text() == text else 1)
    DOC.write_text(text)
    print(f"wrote {DOC}")
