"""Record readers: turn each file of a source into ``(line or row number, record)`` pairs.

JSON lines are streamed with a fast path for the common case (one UTF-8 value per line); JSON, CSV, Parquet
and Arrow files are read as their formats allow. File-level problems (encoding, broken JSON, cut-off files)
become findings; nothing here raises for bad data.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
import sys
from collections.abc import Iterator
from typing import Any

from ..errors import UserError, first_line
from ..fsutil import JSON_ERRORS
from .findings import Findings
from .sources import Part

NOT_PARSED = object()
_SCAN_ONCE = json.JSONDecoder().scan_once  # the C scanner: (obj, end) for a value starting at an index


class Reader:
    """Turns a source part into (line, obj) pairs. ``obj`` is ``NOT_PARSED`` for rows already reported."""

    def __init__(self, findings: Findings, max_row_bytes: int, multi: bool, *, split: str = "train",
                 decisions: list[str] | None = None) -> None:
        self.f = findings
        self.max_row_bytes = max_row_bytes
        self.multi = multi
        self.split = split  # a JSON object holding one list per split gives this one's rows
        self.decisions = decisions if decisions is not None else []  # what was decided about the layout
        self.bytes = 0

    def _file(self, part: Part) -> str | None:
        return part.label if self.multi else None

    def read(self, part: Part) -> Iterator[tuple[int, Any]]:
        size = regular_file_size(part.path)
        self.bytes += size
        if part.kind in ("jsonl", "json", "csv"):
            sniff_text_file(part)
        if part.kind == "jsonl":
            yield from self._jsonl(part)
        elif part.kind == "json":
            yield from self._json(part)
        elif part.kind == "csv":
            yield from self._csv(part)
        elif part.kind == "parquet":
            yield from self._parquet(part)
        else:
            yield from self._arrow(part)

    def _open(self, part: Part):
        try:
            return open(part.path, "rb")
        except OSError as exc:
            raise UserError(f"cannot read {part.path}: {exc.strerror}") from None

    def _jsonl(self, part: Part, fh=None, first_line: int = 1) -> Iterator[tuple[int, Any]]:
        add = self.f.add
        file = self._file(part)
        loads = json.loads
        cap = self.max_row_bytes
        fh = fh or self._open(part)
        with fh:
            lineno = first_line - 1
            pending_crlf = 0
            scan = _SCAN_ONCE
            # at most cap+1 bytes a read: a line longer than the cap is never held whole (a 60 MB line, or
            # /dev/zero behind a symlink, would otherwise be read into memory before the cap is checked)
            readline = fh.readline
            limit = cap + 1
            while True:
                raw = readline(limit)
                if not raw:
                    break
                lineno += 1
                # fast path: one UTF-8 JSON value filling the line, ended by "\n"
                if len(raw) <= cap:
                    try:
                        text = raw.decode("utf-8")
                        obj, end = scan(text, 0)
                    except (ValueError, StopIteration, RecursionError):
                        pass
                    else:
                        if end == len(text) - 1 and text[end] == "\n":
                            yield lineno, obj
                            continue
                if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                    add("bom", "file starts with a UTF-8 byte-order mark; ignored", line=1, file=file)
                if raw.endswith(b"\r\n"):
                    if not pending_crlf:
                        add("crlf", "CRLF (Windows) line endings; accepted", line=lineno, file=file)
                    pending_crlf += 1
                complete = raw.endswith(b"\n")
                if len(raw) > cap:
                    n = len(raw)
                    if not complete:  # skip the rest of the line in bounded reads, counting its bytes
                        while True:
                            more = readline(limit)
                            n += len(more)
                            if not more or more.endswith(b"\n"):
                                break
                    add("oversize", lambda n=n: f"row is {n:,} bytes, above the {cap:,}-byte cap "
                        "(one huge row multiplies the trainer's memory); shorten or remove it",
                        line=lineno, file=file)
                    yield lineno, NOT_PARSED
                    continue
                stripped = raw.strip()
                if not stripped:
                    add("blank-line", "blank line; skipped", line=lineno, file=file)
                    continue
                try:
                    text = stripped.decode("utf-8")
                except UnicodeDecodeError as exc:
                    bad = stripped[exc.start]
                    col = exc.start + 1 + (len(raw) - len(raw.lstrip()))
                    add("utf8", f"not UTF-8 (byte 0x{bad:02X} at column {col}); re-encode the file as UTF-8",
                        line=lineno, file=file)
                    yield lineno, NOT_PARSED
                    continue
                try:
                    obj = loads(text)
                except RecursionError:
                    add("json", too_deep(), line=lineno, file=file)
                    yield lineno, NOT_PARSED
                    continue
                except ValueError as exc:
                    msg = json_msg(exc)
                    col = getattr(exc, "colno", None)
                    if not complete:
                        add("truncated", f"last line is cut off ({msg} at column {col}); the file was not "
                            "written completely", line=lineno, file=file)
                    else:
                        add("json", f"invalid JSON: {msg} at column {col}", line=lineno, file=file)
                    yield lineno, NOT_PARSED
                    continue
                yield lineno, obj

    def _json(self, part: Part) -> Iterator[tuple[int, Any]]:
        file = self._file(part)
        fh = self._open(part)
        data = fh.read()
        fh.close()
        if len(data.strip()) == 0:
            return
        bom = data.startswith(b"\xef\xbb\xbf")
        if bom:
            self.f.add("bom", "file starts with a UTF-8 byte-order mark; ignored", line=1, file=file)
            data = data[3:]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
            self.f.add("utf8", f"not UTF-8 (byte 0x{data[exc.start]:02X} at column {col}); re-encode the file "
                       "as UTF-8", line=line, file=file)
            return
        if "\r\n" in text:
            self.f.add("crlf", "CRLF (Windows) line endings; accepted", line=text.count("\n", 0, text.index("\r\n")) + 1,
                       file=file)
        start = len(text) - len(text.lstrip())
        if start < len(text) and text[start] == "[":
            yield from self._json_array(text, start, file)
            return
        dec = json.JSONDecoder()
        try:
            obj, end = dec.raw_decode(text, start)
        except RecursionError:
            self.f.add("json", too_deep(), line=text.count("\n", 0, start) + 1, file=file)
            return
        except json.JSONDecodeError as exc:
            self.f.add("json", f"invalid JSON: {json_msg(exc)} at column {exc.colno}", line=exc.lineno, file=file)
            return
        rest = text[end:].strip()
        if rest and isinstance(obj, dict):
            # JSON lines saved with a .json name
            yield from self._jsonl(part, io.BytesIO(data), 1)
            return
        if rest:
            line = text.count("\n", 0, end) + 1
            self.f.add("json", "invalid JSON: extra data after the top-level value", line=line, file=file)
            return
        if isinstance(obj, dict):
            split = self.split
            if isinstance(obj.get(split), list) and not ({"chosen", "rejected"} & obj.keys()):
                self.decisions.append(f"JSON object: rows read from its {split!r} list")
                yield from enumerate(obj[split], 1)
                return
            lists = [(k, v) for k, v in obj.items() if isinstance(v, list) and v and isinstance(v[0], dict)]
            if len(lists) == 1 and not ({"chosen", "rejected"} & obj.keys()):
                key, rows = lists[0]
                self.decisions.append(f"JSON object: rows read from its {key!r} list")
                yield from enumerate(rows, 1)
                return
            yield 1, obj  # a single row
            return
        self.f.add("not-object", "the top-level JSON value is neither a list of rows nor an object", line=1,
                   file=file)

    def _json_array(self, text: str, start: int, file: str | None) -> Iterator[tuple[int, Any]]:
        dec = json.JSONDecoder()
        raw_decode = dec.raw_decode
        ws = re.compile(r"[ \t\r\n]*")
        pos = ws.match(text, start + 1).end()
        line = 1 + text.count("\n", 0, pos)
        last = pos
        if pos < len(text) and text[pos] == "]":
            return
        while True:
            line += text.count("\n", last, pos)
            last = pos
            try:
                obj, end = raw_decode(text, pos)
            except RecursionError:
                self.f.add("json", too_deep(), line=line, file=file)
                return
            except json.JSONDecodeError as exc:
                if exc.pos >= len(text.rstrip()):
                    self.f.add("truncated", f"the file ends inside the list ({exc.msg}); it was not written "
                               "completely", line=exc.lineno, file=file)
                else:
                    self.f.add("json", f"invalid JSON: {json_msg(exc)} at column {exc.colno}", line=exc.lineno,
                               file=file)
                return
            if end - pos > self.max_row_bytes:
                self.f.add("oversize", f"row is {end - pos:,} characters, above the {self.max_row_bytes:,} cap; "
                           "shorten or remove it", line=line, file=file)
                obj = NOT_PARSED
            yield line, obj
            pos = ws.match(text, end).end()
            if pos < len(text) and text[pos] == ",":
                pos = ws.match(text, pos + 1).end()
                continue
            if pos < len(text) and text[pos] == "]":
                return
            lineno = text.count("\n", 0, pos) + 1
            what = "the file ends inside the list" if pos >= len(text) else "expected ',' or ']'"
            code = "truncated" if pos >= len(text) else "json"
            self.f.add(code, f"invalid JSON: {what}", line=lineno, file=file)
            return

    def _csv(self, part: Part) -> Iterator[tuple[int, Any]]:
        file = self._file(part)
        fh = self._open(part)
        with fh:
            head = fh.read(3)
            if head == b"\xef\xbb\xbf":
                self.f.add("bom", "file starts with a UTF-8 byte-order mark; ignored", line=1, file=file)
            else:
                fh.seek(0)
            text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
            if csv.field_size_limit() < self.max_row_bytes:
                # the module's default (128 KiB) would call a long but legal cell "invalid CSV" and stop
                csv.field_size_limit(self.max_row_bytes)
            reader = csv.reader(text)
            try:
                header = next(reader, None)
                if header is None:
                    return
                header = [h.strip() for h in header]
                prev = reader.line_num
                while True:
                    line = prev + 1
                    try:
                        values = next(reader)
                    except StopIteration:
                        break
                    except csv.Error as exc:
                        if "field limit" not in str(exc):
                            raise
                        # the reader gives up on this record only; the next one reads normally
                        prev = reader.line_num
                        self.f.add("oversize", f"a cell is above the {self.max_row_bytes:,}-byte row cap; shorten "
                                   "or remove the row", line=line, file=file)
                        yield line, NOT_PARSED
                        continue
                    prev = reader.line_num
                    if not any(v.strip() for v in values):
                        self.f.add("blank-line", "blank line; skipped", line=line, file=file)
                        continue
                    if len(values) != len(header):
                        self.f.add("type", f"row has {len(values)} cells but the header has {len(header)}",
                                   line=line, file=file)
                        yield line, NOT_PARSED
                        continue
                    yield line, {h: _csv_cell(v) for h, v in zip(header, values, strict=True)}
            except UnicodeDecodeError as exc:
                self.f.add("utf8", f"not UTF-8 (byte 0x{exc.object[exc.start]:02X}) after line {reader.line_num}; "
                           "re-encode the file as UTF-8", line=reader.line_num + 1, file=file)
            except csv.Error as exc:
                self.f.add("json", f"invalid CSV: {first_line(exc)}", line=reader.line_num, file=file)

    def _parquet(self, part: Part) -> Iterator[tuple[int, Any]]:
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(part.path)
        except Exception as exc:  # noqa: BLE001
            self.f.add("json", f"not a readable Parquet file: {first_line(exc)}", line=None, file=part.label)
            return
        n = 0
        for group in range(pf.num_row_groups):
            try:
                rows = [row for batch in pf.iter_batches(batch_size=4096, row_groups=[group])
                        for row in batch.to_pylist()]
            except Exception as exc:  # noqa: BLE001 - pyarrow raises OSError/ArrowInvalid/... for damaged pages
                raise damaged(part, f"row group {group + 1} of {pf.num_row_groups} (after row {n:,})", exc) from None
            for row in rows:
                n += 1
                yield n, row

    def _arrow(self, part: Part) -> Iterator[tuple[int, Any]]:
        import pyarrow as pa

        try:
            source = pa.memory_map(str(part.path), "r")
            try:
                reader = pa.ipc.open_stream(source)
            except pa.ArrowInvalid:
                source = pa.memory_map(str(part.path), "r")
                reader = pa.ipc.open_file(source)
                batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
            else:
                batches = iter(reader)
        except Exception as exc:  # noqa: BLE001
            self.f.add("json", f"not a readable Arrow file: {first_line(exc)}", line=None, file=part.label)
            return
        n = 0
        index = 0
        while True:
            index += 1
            try:
                batch = next(batches, None)
                if batch is None:
                    return
                rows = batch.to_pylist()
            except Exception as exc:  # noqa: BLE001 - a cut-off or damaged IPC file fails mid-iteration
                raise damaged(part, f"record batch {index} (after row {n:,})", exc) from None
            for row in rows:
                n += 1
                yield n, row


def _csv_cell(value: str) -> Any:
    """CSV cells are text; a cell holding a JSON list/object of messages is decoded."""
    s = value.strip()
    if s[:1] in ("[", "{") and s[-1:] in ("]", "}"):
        try:
            return json.loads(s)
        except JSON_ERRORS:
            return value
    return value


def json_msg(exc: ValueError) -> str:
    """The decoder's message without its dangling "at" (it says "Invalid control character at")."""
    msg = getattr(exc, "msg", None) or str(exc)
    return msg[:-3] if msg.endswith(" at") else msg


def too_deep() -> str:
    return (f"JSON nested deeper than {sys.getrecursionlimit():,} levels (the parser's limit); no preference row "
            "needs that: flatten or remove it")


def damaged(part: Part, where: str, exc: BaseException) -> UserError:
    kind = "Parquet" if part.kind == "parquet" else "Arrow"
    return UserError(
        f"{part.path}: the {kind} file is damaged in {where}: {first_line(exc)}",
        hint=f"re-export or re-download {part.path.name}; the rows before it are readable, but a damaged file is "
        "not trained on",
    )


_FILE_TYPES = {
    stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder",
}


def regular_file_size(path: os.PathLike[str] | str) -> int:
    """The size of a regular file (symlinks followed); anything else is refused before it is opened, so a FIFO
    never blocks and a device never streams endless bytes."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        what = _FILE_TYPES.get(stat.S_IFMT(st.st_mode), "not a regular file")
        target = f" (a link to {os.path.realpath(path)})" if os.path.islink(path) else ""
        raise UserError(f"{path} is {what}{target}, not a data file",
                        hint="point at a regular .jsonl/.json/.csv/.parquet file or a dataset folder")
    return st.st_size


# (magic bytes, what the file is, how to fix it)
_MAGIC = (
    (b"PAR1", "a Parquet file", "rename it to {stem}.parquet"),
    (b"ARROW1", "an Arrow IPC file", "rename it to {stem}.arrow"),
    (b"\xff\xff\xff\xff", "an Arrow IPC stream", "rename it to {stem}.arrow"),
    (b"\x1f\x8b", "gzip-compressed", "decompress it first (gunzip -c {name} > {stem}.jsonl)"),
    (b"PK\x03\x04", "a zip archive", "unzip it and point at the data file inside"),
    (b"\xff\xfe", "UTF-16 text", "re-encode it as UTF-8 (iconv -f UTF-16 -t UTF-8 {name} > {stem}.utf8{suffix})"),
    (b"\xfe\xff", "UTF-16 text", "re-encode it as UTF-8 (iconv -f UTF-16 -t UTF-8 {name} > {stem}.utf8{suffix})"),
)


def sniff_text_file(part: Part) -> None:
    """A file named like text that is really Parquet, Arrow, gzip, zip or UTF-16 is named as what it is (its
    bytes would otherwise read as "not UTF-8" on line 1, with no hint why)."""
    try:
        with open(part.path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise UserError(f"cannot read {part.path}: {exc.strerror}") from None
    for magic, what, fix in _MAGIC:
        if head.startswith(magic):
            name = part.path.name
            stem, suffix = name.split(".")[0], part.path.suffix
            raise UserError(f"{part.path} is {what}, not {_KIND_NAMES[part.kind]}",
                            hint=fix.format(name=name, stem=stem, suffix=suffix))


_KIND_NAMES = {"jsonl": "JSON lines", "json": "JSON", "csv": "CSV"}


