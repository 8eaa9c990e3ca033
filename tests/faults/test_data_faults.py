"""Hostile data and input files (issue 14: items 13, 14, 15, 16, 20, 30, 31, the data parts, and ``data convert``
onto a full filesystem), each run in-process through ``dpo_tui.cli.main`` or the core.

The contract for every case: exit 2 (or a finding in the report) with a message that names the file, the line
(or row group / batch) and what is wrong and how to fix it; never "internal error" and never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from dpo_tui.core.data import check_data
from tests.support.cli import SAMPLE_MODEL, run_cli_inprocess
from tests.support.mounts import tmpfs
from tests.support.reliability import record_outcome

SUITE = "bad-input"
DEEP = 5000


def cli(*args: str) -> tuple[int, str]:
    proc = run_cli_inprocess(*args)
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    assert "internal error" not in out, out
    return proc.returncode, out


def rejected(case: str, *args: str, needles: tuple[str, ...] = ()) -> str:
    code, out = cli(*args)
    assert code == 2, f"exit {code}\n{out}"
    for needle in needles:
        assert needle.lower() in out.lower(), f"{needle!r} not in:\n{out}"
    record_outcome(SUITE, case, "rejected", category="data", exit_code=code)
    return out


def row(i: int = 0, **kw: object) -> dict:
    return {"prompt": f"Question {i}?\n", "chosen": f" good answer {i}", "rejected": f" bad answer {i}", **kw}


def lines(*rows: object) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


# --- 13: deeply nested JSON ------------------------------------------------------------------------------
def test_deeply_nested_jsonl_line_is_a_finding_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_text(lines(row(1)) + '{"prompt": ' + "[" * DEEP + "]" * DEEP + ', "chosen": "a", "rejected": "b"}\n'
                    + lines(row(3)))
    out = rejected("data-check/deep-nesting-jsonl", "data", "check", str(path), needles=("deep.jsonl:2", "nested deeper than"))
    assert "flatten" in out


def test_deeply_nested_json_file_is_a_finding(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * DEEP + "]" * DEEP)
    rejected("data-check/deep-nesting-json", "data", "check", str(path), needles=("deep.json:1", "nested deeper than"))


def test_deeply_nested_json_array_row_is_a_finding(tmp_path: Path) -> None:
    path = tmp_path / "rows.json"
    path.write_text("[\n" + json.dumps(row(1)) + ",\n" + "[" * DEEP + "]" * DEEP + "\n]")
    rejected("data-check/deep-nesting-json-row", "data", "check", str(path), needles=("rows.json:3", "nested deeper than"))


def test_deeply_nested_json_config_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"beta": ' + "[" * DEEP + "]" * DEEP + "}")
    rejected("train-config/deep-nesting", "train", "--config", str(path), "--runs-dir", str(tmp_path / "runs"),
             needles=("x.json:1", "nested deeper than"))
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_dataset_screen_shows_an_error_instead_of_loading_forever(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from dpo_tui.ui.app import DpoTuiApp
    from tests.support.uikit import build_fake_sample_data, make_services, screen_text, until

    monkeypatch.setenv("DPO_TUI_SAMPLE_DATA", str(build_fake_sample_data(tmp_path_factory.mktemp("sample_data"))))
    deep = tmp_path / "deep.json"
    deep.write_text("[" * DEEP + "]" * DEEP)

    async def drive() -> None:
        from dpo_tui.ui.screens.dataset import DatasetScreen
        from dpo_tui.ui.screens.models import ModelScreen

        app = DpoTuiApp(make_services(tmp_path / "runs"), dataset=str(deep))
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, ModelScreen) and app.screen.scanned)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, DatasetScreen))
            screen = app.screen
            await until(pilot, lambda: not screen.loading)
            assert screen.report is not None and not screen.report.ok
            assert "nested deeper" in " ".join(f.message for f in screen.report.errors)
            assert "reading" not in screen_text(app)

    asyncio.run(drive())


# --- 14: bounded reads, non-regular files ----------------------------------------------------------------
def test_symlink_to_dev_zero_is_refused_before_reading(tmp_path: Path) -> None:
    link = tmp_path / "x.jsonl"
    link.symlink_to("/dev/zero")
    tracemalloc.start()
    try:
        rejected("data-check/dev-zero", "data", "check", str(link), needles=("x.jsonl", "character device", "/dev/zero"))
        assert tracemalloc.get_traced_memory()[1] < 64 << 20
    finally:
        tracemalloc.stop()


def test_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    done: list[tuple[int, str]] = []
    t = threading.Thread(target=lambda: done.append(cli("data", "check", str(fifo))), daemon=True)
    t.start()
    t.join(5)
    if not done:  # unblock the reader so the thread ends, then fail
        with contextlib.suppress(OSError):
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
        pytest.fail("data check blocked on a FIFO")
    code, out = done[0]
    assert code == 2 and "pipe.jsonl" in out and "FIFO" in out and "regular" in out, out
    record_outcome(SUITE, "data-check/fifo", "rejected", category="data", exit_code=code)


def test_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(path))
        rejected("data-check/socket", "data", "check", str(path), needles=("s.jsonl", "socket"))
    finally:
        sock.close()


def test_a_60_mb_line_is_skipped_in_bounded_reads(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    with open(path, "wb") as fh:
        fh.write((json.dumps(row(1)) + "\n").encode())
        fh.write(b'{"prompt": "' + b"x" * (60 << 20) + b'", "chosen": "a", "rejected": "b"}\n')
        fh.write((json.dumps(row(3)) + "\n").encode())
    tracemalloc.start()
    try:
        report = check_data(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"peak {peak:,} bytes for a 60 MB line"
    oversize = [f for f in report.errors if f.code == "oversize"]
    assert oversize and oversize[0].lines == [2], report.render()
    assert "62,914," in oversize[0].message  # the whole line's size, counted while skipping it
    assert report.rows_usable == 2 and report.rows_total == 3


# --- 20: wording and files named as something they are not -----------------------------------------------
def test_nul_byte_message_says_at_column_once(tmp_path: Path) -> None:
    path = tmp_path / "nul.jsonl"
    path.write_bytes(lines(row(1)).encode() + b'{"prompt": "a\x00b", "chosen": "c", "rejected": "d"}\n')
    out = rejected("data-check/nul-byte", "data", "check", str(path), needles=("nul.jsonl:2", "control character"))
    assert "at at" not in out


def _parquet(path: Path, n: int = 2000, group: int = 500) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([row(i) for i in range(n)])
    pq.write_table(table, path, row_group_size=group, compression="NONE", use_dictionary=False)
    return path


@pytest.mark.parametrize(("case", "make", "what", "fix"), [
    ("parquet", lambda p: _parquet(p).read_bytes(), "Parquet", "rename it to p.parquet"),
    ("gzip", lambda p: __import__("gzip").compress(lines(row(1)).encode()), "gzip", "gunzip"),
    ("zip", lambda p: b"PK\x03\x04" + b"\x00" * 40, "zip", "unzip"),
    ("utf16", lambda p: lines(row(1)).encode("utf-16"), "UTF-16", "iconv"),
])
def test_a_binary_file_named_jsonl_is_named_as_what_it_is(case: str, make, what: str, fix: str, tmp_path: Path) -> None:
    data = make(tmp_path / "src")
    path = tmp_path / "p.jsonl"
    path.write_bytes(data)
    out = rejected(f"data-check/{case}-named-jsonl", "data", "check", str(path), needles=("p.jsonl", what, fix))
    assert "not UTF-8" not in out


def test_arrow_named_jsonl_is_named(tmp_path: Path) -> None:
    import pyarrow as pa

    path = tmp_path / "a.jsonl"
    table = pa.Table.from_pylist([row(1)])
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    rejected("data-check/arrow-named-jsonl", "data", "check", str(path), needles=("a.jsonl", "Arrow", "a.arrow"))


# --- 30: damaged Parquet and Arrow files -----------------------------------------------------------------
def _corrupt_parquet(tmp_path: Path) -> Path:
    path = _parquet(tmp_path / "bad.parquet")
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    col = meta.row_group(2).column(1)  # a data page in the middle of the file
    start = col.data_page_offset
    data = bytearray(path.read_bytes())
    data[start:start + 64] = b"\xff" * 64  # the page header: unreadable
    path.write_bytes(bytes(data))
    return path


def _truncated_arrow(tmp_path: Path, stream: bool) -> Path:
    import pyarrow as pa

    path = tmp_path / "cut.arrow"
    table = pa.Table.from_pylist([row(i) for i in range(3000)])
    with pa.OSFile(str(path), "wb") as sink:
        writer = pa.ipc.new_stream(sink, table.schema) if stream else pa.ipc.new_file(sink, table.schema)
        with writer:
            for batch in table.to_batches(max_chunksize=500):
                writer.write_batch(batch)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    return path


def test_corrupt_parquet_page_names_the_row_group(tmp_path: Path) -> None:
    path = _corrupt_parquet(tmp_path)
    for case, argv in (("data-check", ("data", "check", str(path))),
                       ("data-convert", ("data", "convert", str(path), str(tmp_path / "out.jsonl")))):
        rejected(f"{case}/corrupt-parquet", *argv, needles=("bad.parquet", "damaged", "row group 3"))
    assert not (tmp_path / "out.jsonl").exists()


def test_corrupt_parquet_refused_by_train_before_a_run_exists(tmp_path: Path) -> None:
    path = _corrupt_parquet(tmp_path)
    root = tmp_path / "runs"
    rejected("train-data/corrupt-parquet", "train", "--runs-dir", str(root), "--model", str(SAMPLE_MODEL),
             "--dataset", str(path), "--max-steps", "2", needles=("bad.parquet", "row group 3"))
    assert not root.exists() or not [p for p in root.iterdir() if not p.name.startswith(".")]


@pytest.mark.parametrize("stream", [False, True], ids=["ipc-file", "ipc-stream"])
def test_truncated_arrow_file_names_the_batch(stream: bool, tmp_path: Path) -> None:
    path = _truncated_arrow(tmp_path, stream)
    code, out = cli("data", "check", str(path))
    assert code == 2 and "cut.arrow" in out, out
    assert "record batch" in out or "not a readable Arrow file" in out, out
    record_outcome(SUITE, f"data-check/truncated-arrow-{'stream' if stream else 'file'}", "rejected", category="data",
                   exit_code=code)


# --- 16, 31, 15: the token-level check -------------------------------------------------------------------
def _tok_check(tmp_path: Path, rows: list[dict], *extra: str) -> tuple[int, dict]:
    path = tmp_path / "pairs.jsonl"
    path.write_text(lines(*rows))
    code, out = cli("data", "check", str(path), "--model", str(SAMPLE_MODEL), "--json", *extra)
    return code, json.loads(out.strip().splitlines()[-1])


def test_pair_identical_after_eos_is_flagged(tmp_path: Path) -> None:
    rows = [row(1), {"prompt": "Say yes.\n", "chosen": " yes", "rejected": " yes<|end|>"}, row(3)]
    code, rep = _tok_check(tmp_path, rows)
    found = {e["code"]: e["lines"] for e in rep["errors"]}
    assert code == 2 and found.get("identical-tokens") == [2], rep["errors"]
    assert rep["rows"] == 2 and rep["rows_total"] == 3


def test_conversational_pair_identical_after_template_trim_is_flagged(tmp_path: Path) -> None:
    """The template trims contents: " yes" and "yes " render to the same text."""
    model = tmp_path / "trim-model"
    model.mkdir()
    for f in SAMPLE_MODEL.iterdir():
        if f.name != "tokenizer_config.json":
            (model / f.name).symlink_to(f)
    cfg = json.loads((SAMPLE_MODEL / "tokenizer_config.json").read_text())
    cfg["chat_template"] = cfg["chat_template"].replace("message['content']", "message['content'] | trim")
    (model / "tokenizer_config.json").write_text(json.dumps(cfg))
    user = [{"role": "user", "content": "Say yes."}]
    rows = [{"prompt": user, "chosen": [{"role": "assistant", "content": "yes, sure"}],
             "rejected": [{"role": "assistant", "content": "no"}]},
            {"prompt": user, "chosen": [{"role": "assistant", "content": " yes"}],
             "rejected": [{"role": "assistant", "content": "yes "}]}]
    path = tmp_path / "conv.jsonl"
    path.write_text(lines(*rows))
    code, out = cli("data", "check", str(path), "--model", str(model))
    assert code == 2 and "conv.jsonl:2" in out and "identical-tokens" in out, out
    assert "1 usable of 2 rows" in out, out


def test_pair_identical_after_truncation_is_flagged(tmp_path: Path) -> None:
    same = " the same long opening words of both answers" * 3
    rows = [row(1), {"prompt": "Q?\n", "chosen": same + " then yes", "rejected": same + " then no"}]
    code, rep = _tok_check(tmp_path, rows, "--max-length", "20")
    found = {e["code"]: e["lines"] for e in rep["errors"]}
    assert code == 2 and found.get("identical-after-cut") == [2], rep["errors"]
    assert rep["rows"] == 1
    code, rep = _tok_check(tmp_path, rows, "--max-length", "1024")  # room enough: the pair differs
    assert code == 0, rep["errors"]


def test_max_length_2_report_does_not_contradict_itself(tmp_path: Path) -> None:
    code, out = cli("data", "check", "sample", "--model", str(SAMPLE_MODEL), "--max-length", "2")
    assert code == 2, out
    head = out.splitlines()[0]
    assert "0 usable of" in head, head
    assert "no room for a response" in out and "NOT USABLE" in out


def test_train_max_length_2_refused_before_a_run_folder(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    out = rejected("train-flags/max-length-2", "train", "--runs-dir", str(root), "--model", str(SAMPLE_MODEL),
                   "--dataset", "sample", "--max-length", "2", "--max-steps", "2",
                   needles=("max_length 2", "no room for a response", "--max-length"))
    assert "nothing was started" in out
    assert not root.exists() or not [p for p in root.iterdir() if not p.name.startswith(".")]


# --- 10 (part): data convert onto a full filesystem ------------------------------------------------------
@pytest.fixture
def tiny_fs(tmp_path: Path):
    with tmpfs(tmp_path / "tiny", "64k") as mnt:
        yield mnt


def test_data_convert_onto_a_full_filesystem(tiny_fs: Path, tmp_path: Path) -> None:
    src = tmp_path / "many.jsonl"
    src.write_text(lines(*(row(i) for i in range(3000))))
    out = tiny_fs / "out.jsonl"
    text = rejected("data-convert/disk-full", "data", "convert", str(src), str(out),
                    needles=("disk full", str(out), "needs about", "free"))
    assert "KiB" in text or "MiB" in text
    assert list(tiny_fs.iterdir()) == [], list(tiny_fs.iterdir())


# --- further hostile inputs nobody listed ----------------------------------------------------------------
def test_directory_named_jsonl(tmp_path: Path) -> None:
    (tmp_path / "x.jsonl").mkdir()
    rejected("data-check/dir-named-jsonl", "data", "check", str(tmp_path / "x.jsonl"), needles=("x.jsonl", "no data files"))


@pytest.mark.parametrize("body", ['"just a string"', "42", "null", "true"])
def test_json_file_that_is_a_bare_scalar(body: str, tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(body)
    rejected("data-check/json-scalar", "data", "check", str(path), needles=("s.json:1", "neither a list"))


def test_csv_with_a_10_mb_field(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_text('prompt,chosen,rejected\n"Q?\n", a, b\n' + '"Q2?\n",' + "x" * (10 << 20) + ', b\n"Q3?\n", c, d\n')
    code, out = cli("data", "check", str(path))
    assert code == 2 and "big.csv:4" in out and "oversize" in out, out
    report = check_data(str(path))
    assert report.rows_total == 3 and report.rows_usable == 2, report.render()


def test_rows_with_100000_keys(tmp_path: Path) -> None:
    path = tmp_path / "wide.jsonl"
    wide = {**row(2), **{f"k{i}": i for i in range(100_000)}}
    path.write_text(lines(row(1), wide, row(3)))
    started = time.perf_counter()
    report = check_data(str(path))
    assert time.perf_counter() - started < 10
    assert report.rows_usable == 3 or any(f.code == "oversize" for f in report.errors), report.render()
    assert len("\n".join(report.decisions)) < 2000, "the decisions list every ignored column"


def test_empty_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"prompt": pa.array([], pa.string()), "chosen": pa.array([], pa.string()),
                             "rejected": pa.array([], pa.string())}), path)
    rejected("data-check/empty-parquet", "data", "check", str(path), needles=("empty.parquet", "empty"))


def test_zero_byte_parquet(tmp_path: Path) -> None:
    path = tmp_path / "zero.parquet"
    path.write_bytes(b"")
    rejected("data-check/zero-byte-parquet", "data", "check", str(path), needles=("zero.parquet",))


def test_jsonl_gz_names_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl.gz"
    path.write_bytes(b"not gzip at all\n")
    rejected("data-check/jsonl-gz", "data", "check", str(path), needles=("x.jsonl.gz", "gunzip"))
