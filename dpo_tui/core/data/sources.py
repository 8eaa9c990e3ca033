"""Where a dataset's rows live: a file, a folder (with train/test splits), a ``datasets.save_to_disk`` folder,
or a Hugging Face dataset id (the local hub cache first, a download only while the hub is on)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import Problem, UserError, first_line
from ..hub import cached_snapshot, hub_cache_dir, offline, offline_reason


@dataclass
class Part:
    path: Path
    kind: str  # jsonl | json | csv | parquet | arrow
    label: str  # shown in findings when the source has several files


def kind_of(path: Path) -> str | None:
    name = path.name.lower()
    for suffix, kind in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json"), (".csv", "csv"),
                         (".parquet", "parquet"), (".arrow", "arrow")):
        if name.endswith(suffix):
            return kind
    return None


_SPLIT_ALIASES = {
    "train": ("train", "training"),
    "test": ("test", "testing", "eval", "evaluation"),
    "validation": ("validation", "valid", "val", "dev"),
}


def split_of(rel: Path) -> str | None:
    """The split a file belongs to, from its folder or name (``train/x.jsonl``, ``train-0000.parquet``)."""
    tokens: list[str] = []
    for part in rel.parts[:-1]:
        tokens.append(part.lower())
    stem = rel.name.lower().split(".")[0]
    tokens += [t for t in re.split(r"[-_.]", stem) if t]
    for split, aliases in _SPLIT_ALIASES.items():
        if any(t in aliases for t in tokens):
            return split
    return None


_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def _download_hub(repo_id: str) -> Path:
    if offline("dataset"):
        raise UserError(
            f"dataset {repo_id!r} is not in the local Hugging Face cache ({hub_cache_dir()}) and the hub is offline "
            f"({offline_reason('dataset')} is set)",
            hint="download it on a machine with network (huggingface-cli download --repo-type dataset "
            f"{repo_id}) or point --dataset at a local file",
        )
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(
            repo_id, repo_type="dataset",
            allow_patterns=["*.jsonl", "*.json", "*.csv", "*.parquet", "*.arrow", "*/*", "*/*/*"],
        )
    except Exception as exc:  # noqa: BLE001 - network/auth errors become one operator message
        raise UserError(
            f"could not fetch dataset {repo_id!r} from the Hugging Face hub: {type(exc).__name__}: {first_line(exc)}",
            hint="check the id and your network/token, or pass a local file",
        ) from None
    return Path(path)


def resolve_source(source: str, split: str = "train") -> tuple[str, list[Part], list[str]]:
    """Map a source spec to the files to read, in order. Returns (display, parts, decisions)."""
    decisions: list[str] = []
    if not source or not str(source).strip():
        raise UserError("no dataset given", hint="pass a .jsonl/.json/.csv/.parquet file, a folder or a hub id")
    path = Path(source).expanduser()
    if not path.exists():
        if _HUB_ID.match(source) and not source.startswith((".", "/", "~")) and kind_of(path) is None:
            snap = cached_snapshot(source, "dataset")
            if snap is None:
                snap = _download_hub(source)
                decisions.append(f"downloaded {source} from the Hugging Face hub")
            else:
                decisions.append(f"hub dataset {source} read from the local cache ({snap})")
            parts, more = _folder_parts(snap, split, source)
            return source, parts, decisions + more
        raise UserError(
            f"dataset not found: {source}",
            problems=[Problem("no such file or folder", file=source)],
            hint="pass a .jsonl/.json/.csv/.parquet file, a folder, a datasets.save_to_disk folder or a hub id",
        )
    if path.is_dir():
        parts, more = _folder_parts(path, split, source)
        return source, parts, decisions + more
    kind = kind_of(path)
    if kind is None:
        raise UserError(
            f"unsupported dataset file type: {path.name}",
            problems=[Problem("expected .jsonl, .json, .csv, .parquet or .arrow", file=source)],
            hint=_ARCHIVE_HINTS.get(path.suffix.lower(), "").format(name=path.name, stem=path.name[:-len(path.suffix)])
            or None,
        )
    if not os.access(path, os.R_OK):
        raise UserError(f"dataset is not readable: {source}", problems=[Problem("permission denied", file=source)])
    file_split = split_of(Path(path.name))
    if split != "train" and split != file_split and kind != "json":
        raise UserError(
            f"{source}: a single file has no split {split!r}",
            hint="use split 'train' for a single file, or point at a folder with train/test files",
        )
    return source, [Part(path, kind, path.name)], decisions


_ARCHIVE_HINTS = {
    ".gz": "compressed files are not read; decompress it first (gunzip -k {name}) and point at {stem}",
    ".zst": "compressed files are not read; decompress it first (zstd -d {name}) and point at {stem}",
    ".bz2": "compressed files are not read; decompress it first (bunzip2 -k {name}) and point at {stem}",
    ".xz": "compressed files are not read; decompress it first (xz -dk {name}) and point at {stem}",
    ".zip": "archives are not read; unzip {name} and point at the data file or folder inside",
    ".tar": "archives are not read; extract {name} and point at the data file or folder inside",
}


def _folder_parts(folder: Path, split: str, display: str) -> tuple[list[Part], list[str]]:
    decisions: list[str] = []
    # datasets.save_to_disk: a DatasetDict (dataset_dict.json + split folders) or a Dataset (state.json)
    dd = folder / "dataset_dict.json"
    if dd.is_file():
        try:
            splits = json.loads(dd.read_text())["splits"]
        except Exception:  # noqa: BLE001
            splits = [p.name for p in folder.iterdir() if (p / "state.json").is_file()]
        if split not in splits:
            raise UserError(
                f"{display}: no split {split!r} (splits: {', '.join(splits)})",
                hint="choose one with --split / dataset_split",
            )
        decisions.append(f"datasets.save_to_disk folder; split {split!r} of {', '.join(splits)}")
        return _arrow_parts(folder / split), decisions
    if (folder / "state.json").is_file():
        decisions.append("datasets.save_to_disk folder (a single Dataset)")
        return _arrow_parts(folder), decisions

    files = sorted(
        p for p in folder.rglob("*")
        if p.is_file() and kind_of(p) and not any(x.startswith(".") for x in p.relative_to(folder).parts)
        and p.name not in ("dataset_info.json", "dataset_infos.json", "state.json", "config.json")
    )
    if not files:
        raise UserError(f"{display}: no data files (.jsonl/.json/.csv/.parquet/.arrow) in this folder")
    by_split: dict[str | None, list[Path]] = {}
    for p in files:
        by_split.setdefault(split_of(p.relative_to(folder)), []).append(p)
    named = {k: v for k, v in by_split.items() if k is not None}
    if named:
        chosen = named.get(split)
        if chosen is None:
            raise UserError(
                f"{display}: no split {split!r} (splits: {', '.join(sorted(named))})",
                hint="choose one with --split / dataset_split",
            )
        decisions.append(f"split {split!r} of {', '.join(sorted(named))}: {len(chosen)} file(s)")
    else:
        if split != "train":
            raise UserError(f"{display}: files are not split; only 'train' is available, not {split!r}")
        chosen = by_split[None]
        if len({kind_of(p) for p in chosen}) > 1:
            raise UserError(
                f"{display}: the folder mixes file types ({', '.join(sorted({p.suffix for p in chosen}))})",
                hint="point at one file, or keep one file type per folder",
            )
        decisions.append(f"folder without splits: {len(chosen)} file(s) read as 'train'")
    return [Part(p, kind_of(p) or "jsonl", str(p.relative_to(folder))) for p in chosen], decisions


def _arrow_parts(folder: Path) -> list[Part]:
    state = folder / "state.json"
    names: list[str] = []
    if state.is_file():
        try:
            names = [d["filename"] for d in json.loads(state.read_text())["_data_files"]]
        except Exception:  # noqa: BLE001
            names = []
    if not names:
        names = sorted(p.name for p in folder.glob("*.arrow"))
    if not names:
        raise UserError(f"{folder}: a save_to_disk folder without .arrow files")
    return [Part(folder / n, "arrow", n) for n in names]


