"""A GGUF written by llama.cpp's own tools: ``convert_hf_to_gguf.py`` on the merged folder, then ``llama-quantize``
for the types the converter does not write itself (Q4_K_M and the other k-quants).

:mod:`dpo_tui.core.llama_cpp` finds the tools and the plan records them; this runs them as child processes.
The converter is a Python script run by this interpreter, which already has what it imports (``gguf``,
``numpy``, ``torch``, ``transformers``). A tool that fails is a :class:`UserError` carrying its last
line of output, so the operator sees llama.cpp's own reason (an unknown architecture, a missing package).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ...core.errors import UserError
from ...core.export_plan import ExportPlan
from ...core.llama_cpp import CONVERTER_TYPES, QUANTIZE
from .merge import Loaded, save_merged
from .staging import Progress


def gguf_via_llama_cpp(plan: ExportPlan, loaded: Loaded, merged_dir: Path | None, target: Path, facts: dict[str, Any],
                       progress: Progress) -> int:
    """The GGUF from the merged folder being exported, or from a temporary one beside ``target`` when none is."""
    if merged_dir is not None:
        return convert_with_llama_cpp(plan, merged_dir, target, progress)
    with tempfile.TemporaryDirectory(prefix=".merged-for-gguf-", dir=target.parent) as tmp:
        progress.stage("save", "writing the merged weights for llama.cpp's converter")
        save_merged(plan, loaded, Path(tmp), facts)
        return convert_with_llama_cpp(plan, Path(tmp), target, progress)


def convert_with_llama_cpp(plan: ExportPlan, merged_dir: Path, target: Path, progress: Progress) -> int:
    """Write ``target`` from the merged Hugging Face folder ``merged_dir``. Returns the GGUF's size in bytes."""
    assert plan.llama_cpp_converter, "the plan chose llama.cpp, so it recorded the converter"
    quantize = plan.gguf_type not in CONVERTER_TYPES
    converted = target.with_name(target.name + ".f16") if quantize else target
    out_type = "f16" if quantize else plan.gguf_type
    progress.stage("gguf", f"converting with llama.cpp's {Path(plan.llama_cpp_converter).name} ({out_type})")
    _run([sys.executable, plan.llama_cpp_converter, str(merged_dir), "--outfile", str(converted), "--outtype", out_type],
         Path(plan.llama_cpp_converter).name)
    if quantize:
        assert plan.llama_cpp_quantize, "the plan refuses a k-quant without llama-quantize"
        progress.stage("gguf", f"quantizing to {plan.gguf_type.upper()} with {QUANTIZE}")
        try:
            _run([plan.llama_cpp_quantize, str(converted), str(target), plan.gguf_type.upper()], QUANTIZE)
        finally:
            converted.unlink(missing_ok=True)
    if not target.is_file():
        raise UserError(f"llama.cpp finished without writing {target}", hint="run the converter by hand to see why")
    return target.stat().st_size


def _run(command: list[str], tool: str) -> None:
    proc = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
        last = lines[-1].strip() if lines else f"exit status {proc.returncode}"
        raise UserError(f"llama.cpp's {tool} failed: {last}",
                        hint="the full command: " + " ".join(command))
