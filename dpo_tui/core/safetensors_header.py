"""Read safetensors headers without torch: tensor names, dtypes, shapes, and whether the file is whole."""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from .fsutil import JSON_ERRORS

DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
    "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8,
}
MAX_HEADER_BYTES = 100 * 1024 * 1024


class SafetensorsError(ValueError):
    """The file is not a readable safetensors file (reason in the message)."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class SafetensorsHeader:
    path: Path
    tensors: tuple[TensorInfo, ...]
    metadata: dict[str, str]
    data_bytes: int

    @property
    def parameter_count(self) -> int:
        return sum(t.numel for t in self.tensors)

    def dtypes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.tensors:
            counts[t.dtype] = counts.get(t.dtype, 0) + t.numel
        return counts


def read_header(path: str | os.PathLike[str]) -> SafetensorsHeader:
    """Parse the header and check that the data section is as long as the header says (no truncation)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            raw_len = fh.read(8)
            if len(raw_len) < 8:
                raise SafetensorsError("file shorter than the 8-byte header length")
            (header_len,) = struct.unpack("<Q", raw_len)
            if header_len > MAX_HEADER_BYTES or 8 + header_len > size:
                raise SafetensorsError("invalid header length (file truncated or not safetensors)")
            header = json.loads(fh.read(header_len))
    except OSError as exc:
        raise SafetensorsError(f"cannot read: {exc.strerror}") from None
    except JSON_ERRORS:
        raise SafetensorsError("header is not valid JSON") from None
    if not isinstance(header, dict):
        raise SafetensorsError("header is not a JSON object")
    metadata = header.pop("__metadata__", {}) or {}
    tensors = []
    data_end = 0
    for name, info in header.items():
        try:
            dtype, shape, (_start, end) = info["dtype"], tuple(int(d) for d in info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise SafetensorsError(f"malformed entry for tensor '{name}'") from None
        tensors.append(TensorInfo(name, dtype, shape))
        data_end = max(data_end, int(end))
    if 8 + header_len + data_end > size:
        raise SafetensorsError(f"truncated: data needs {8 + header_len + data_end} bytes, file has {size}")
    return SafetensorsHeader(path, tuple(tensors), metadata, data_end)
