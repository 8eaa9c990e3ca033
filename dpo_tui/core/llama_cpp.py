"""Finding llama.cpp's own GGUF tools: ``convert_hf_to_gguf.py`` (every architecture llama.cpp runs) and
``llama-quantize`` (the k-quants such as Q4_K_M that Ollama users want). Pure stdlib, no process started.

Where they are looked for, first match wins: the folder given with ``--llama-cpp DIR``, the folder in
``DPO_TUI_LLAMA_CPP``, then ``PATH``. ``off`` in either place means the built-in writer, even when llama.cpp is
installed. In a folder, the converter is at its top (as in a llama.cpp checkout)
and ``llama-quantize`` at its top, in ``build/bin`` or in ``bin``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

CONVERTER = "convert_hf_to_gguf.py"
QUANTIZE = "llama-quantize"
ENV_DIR = "DPO_TUI_LLAMA_CPP"
# What convert_hf_to_gguf.py writes itself (--outtype); anything else is quantized from its f16 output.
CONVERTER_TYPES: tuple[str, ...] = ("f16", "bf16", "q8_0")
# llama-quantize's types (lowercase; it takes them uppercase).
QUANTIZE_TYPES: tuple[str, ...] = (
    "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m", "q6_k",
)
INSTALL_HINT = (
    f"install llama.cpp and put {CONVERTER} and {QUANTIZE} on PATH, or pass --llama-cpp DIR (a llama.cpp checkout "
    f"with {QUANTIZE} built), or set {ENV_DIR}=DIR"
)


@dataclass(frozen=True)
class LlamaCpp:
    """The tools found and where: ``origin`` is ``--llama-cpp``, ``DPO_TUI_LLAMA_CPP`` or ``PATH``."""

    converter: str
    quantize: str | None
    origin: str

    def describe(self) -> str:
        tools = f"{self.converter}" + (f" and {self.quantize}" if self.quantize else f" (no {QUANTIZE})")
        return f"llama.cpp from {self.origin}: {tools}"


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _in_folder(folder: Path, origin: str) -> LlamaCpp:
    if not folder.is_dir():
        raise UserError(f"The llama.cpp folder {folder} ({origin}) does not exist", hint=INSTALL_HINT)
    converter = folder / CONVERTER
    if not converter.is_file():
        raise UserError(f"The llama.cpp folder {folder} ({origin}) has no {CONVERTER}",
                        hint="point it at the top of a llama.cpp checkout")
    quantize = next((p for p in (folder / QUANTIZE, folder / "build" / "bin" / QUANTIZE, folder / "bin" / QUANTIZE)
                     if _executable(p)), None)
    return LlamaCpp(str(converter), str(quantize) if quantize else None, origin)


OFF = "off"


def find_llama_cpp(folder: str | os.PathLike[str] | None = None) -> LlamaCpp | None:
    """llama.cpp's tools, or None when there are none (or ``off``). A folder named but wrong is a UserError."""
    env = os.environ.get(ENV_DIR, "").strip()
    if str(folder or "").strip().lower() == OFF or (not folder and env.lower() == OFF):
        return None
    if folder:
        return _in_folder(Path(folder).expanduser(), "--llama-cpp")
    if env:
        return _in_folder(Path(env).expanduser(), ENV_DIR)
    converter = shutil.which(CONVERTER)
    if converter is None:
        return None
    return LlamaCpp(converter, shutil.which(QUANTIZE), "PATH")


def check_quantize_type(gguf_type: str, tools: LlamaCpp | None, builtin_types: tuple[str, ...]) -> None:
    """k-quants and the other llama-quantize types exist only with llama.cpp's own tools."""
    if gguf_type not in QUANTIZE_TYPES:
        return
    if tools is None:
        raise UserError(
            f"--gguf-type {gguf_type} needs llama.cpp's {QUANTIZE}, which was not found "
            f"(the built-in writer writes {', '.join(builtin_types)})",
            hint=INSTALL_HINT,
        )
    if tools.quantize is None:
        raise UserError(
            f"--gguf-type {gguf_type} needs {QUANTIZE}; llama.cpp from {tools.origin} has {CONVERTER} but no {QUANTIZE}",
            hint=f"build llama.cpp (cmake -B build && cmake --build build --target {QUANTIZE}) or put {QUANTIZE} on PATH",
        )

