"""Preference data loader and lint (dpo_tui.core.data): one case per shape and per bad input.

Each bad-input case asserts the exact finding (code, severity) and its line numbers; the D-numbers refer to
the bad-input catalogue in tests/faults/test_bad_inputs.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from dpo_tui.core.data import FINDING_CODES, check_data, iter_preference_rows, load_preference_data
from dpo_tui.core.errors import UserError
from tests.support.data import LLAMAFACTORY

REPO = Path(__file__).resolve().parents[2]


def J(*rows) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def S(p, c, r):
    return {"prompt": p, "chosen": c, "rejected": r}


def U(text):
    return {"role": "user", "content": text}


def A(text):
    return {"role": "assistant", "content": text}


def C(p, c, r):
    return {"prompt": p, "chosen": c, "rejected": r}


GOOD = S("Q1?\n", "Yes.", "No.")
GOOD2 = S("Q2?\n", "Sure.", "Nope.")
CONV = C([U("Hi?")], [A("Hello.")], [A("Go away.")])
CONV2 = C([U("Hey?")], [A("Hi there.")], [A("What.")])

# (id, file name, content, kwargs, errors {code: lines}, warnings {code: lines}, usable rows)
BAD_CASES = [
    ("D1-empty-file", "d.jsonl", b"", {}, {"empty": []}, {}, 0),
    ("D1-only-blank-lines", "d.jsonl", b"\n\n", {}, {"empty": []}, {"blank-line": [1, 2]}, 0),
    ("D2-invalid-json", "d.jsonl", J(GOOD) + b'{"prompt": "x" "chosen": 1}\n' + J(GOOD2), {}, {"json": [2]}, {}, 2),
    ("D2-truncated-last-line", "d.jsonl", J(GOOD, GOOD2) + b'{"prompt": "Q", "cho', {}, {"truncated": [3]}, {}, 2),
    ("D3-non-utf8", "d.jsonl", J(GOOD) + b'{"prompt": "caf\xe9?\\n", "chosen": "a", "rejected": "b"}\n', {},
     {"utf8": [2]}, {}, 1),
    ("D4-bom", "d.jsonl", b"\xef\xbb\xbf" + J(GOOD, GOOD2), {}, {}, {"bom": [1]}, 2),
    ("D4-crlf", "d.jsonl", J(GOOD, GOOD2).replace(b"\n", b"\r\n"), {}, {}, {"crlf": [1]}, 2),
    ("D4-blank-lines", "d.jsonl", J(GOOD) + b"\n  \n" + J(GOOD2), {}, {}, {"blank-line": [2, 3]}, 2),
    ("D5-missing-rejected", "d.jsonl", J({"prompt": "Q?\n", "chosen": "a"}, {"prompt": "R?\n", "chosen": "b"}), {},
     {"missing-field": [1, 2]}, {}, 0),
    ("D7-null-chosen", "d.jsonl", J(GOOD, GOOD2, S("Q3?\n", None, "x")), {}, {"null-field": [3]}, {}, 2),
    ("wrong-type-int", "d.jsonl", J(GOOD, S("Q3?\n", 5, "x")), {}, {"type": [2]}, {}, 1),
    ("D8-empty-chosen", "d.jsonl", J(GOOD, S("Q3?\n", "", "x")), {}, {"empty-chosen": [2]}, {}, 1),
    ("D8-empty-rejected", "d.jsonl", J(S("Q3?\n", "a", "  "), GOOD), {}, {"empty-rejected": [1]}, {}, 1),
    ("empty-prompt", "d.jsonl", J(GOOD, S("", "a", "b")), {}, {"empty-prompt": [2]}, {}, 1),
    ("D9-identical-explicit", "d.jsonl", J(GOOD, S("Q?\n", "same", "same")), {}, {"identical-pair": [2]}, {}, 1),
    ("D9-identical-implicit", "d.jsonl", J({"chosen": "Q: a A: b", "rejected": "Q: a A: c"},
                                            {"chosen": "Q: x A: y", "rejected": "Q: x A: y"}), {},
     {"identical-pair": [2]}, {}, 1),
    ("D10-mixed-shapes", "d.jsonl", J(GOOD, GOOD2, CONV, S("Q4?\n", "a", "b")), {},
     {"mixed-shapes": [3]}, {}, 3),
    ("D11-message-without-content", "d.jsonl", J(CONV, C([U("Hi?")], [{"role": "assistant"}], [A("x")])), {},
     {"message": [2]}, {}, 1),
    ("D11-unknown-role", "d.jsonl", J(CONV, C([{"role": "narrator", "content": "x"}], [A("a")], [A("b")])), {},
     {"unknown-role": [2]}, {}, 1),
    ("D11-empty-chosen-list", "d.jsonl", J(CONV, C([U("Hi?")], [], [A("b")])), {}, {"empty-chosen": [2]}, {}, 1),
    ("D11-prompt-ends-assistant", "d.jsonl", J(CONV, C([U("Hi?"), A("Hello.")], [A("a")], [A("b")])), {},
     {"prompt-ends-assistant": [2]}, {}, 1),
    ("completion-not-assistant", "d.jsonl", J(CONV, C([U("Hi?")], [U("a")], [A("b")])), {},
     {"completion-role": [2]}, {}, 1),
    ("roles-not-alternating", "d.jsonl", J(CONV, C([U("Hi?"), U("Again?")], [A("a")], [A("b")])), {}, {},
     {"roles-not-alternating": [2]}, 2),
    ("message-null-content", "d.jsonl", J(CONV, C([U(None)], [A("a")], [A("b")])), {}, {"null-field": [2]}, {}, 1),
    ("duplicate-pair", "d.jsonl", J(GOOD, GOOD2, GOOD, GOOD), {}, {}, {"duplicate-pair": [3, 4]}, 4),
    ("D16-oversize-row", "d.jsonl", J(GOOD, S("Q?\n", "x" * 3000, "y"), GOOD2), {"max_row_bytes": 1000},
     {"oversize": [2]}, {}, 2),
    ("length-ratio", "d.jsonl", J(GOOD, S("Q?\n", "short", "long " * 100)), {}, {}, {"length-ratio": [2]}, 2),
    ("D13-template-markers", "d.jsonl", J(GOOD, S("<|im_start|>user\nQ<|im_end|>\n", "a", "b")), {}, {},
     {"template-markers": [2]}, 2),
    ("no-separator", "d.jsonl", J(GOOD, S("Q?", "Yes.", "No.")), {}, {}, {"no-separator": [2]}, 2),
    ("score-inverted", "d.jsonl", J({**GOOD, "score_chosen": 8.0, "score_rejected": 2.0},
                                     {**GOOD2, "score_chosen": 1.0, "score_rejected": 5.0}), {}, {},
     {"score-inverted": [2]}, 2),
    ("D6-ambiguous-columns", "d.jsonl", J({"question": "Q", "instruction": "I", "chosen": "a", "rejected": "b"}),
     {}, {"ambiguous-columns": [1]}, {}, 0),
    ("not-an-object", "d.jsonl", J(GOOD, [1, 2, 3]), {}, {"not-object": [2]}, {}, 1),
    ("implicit-no-common-prefix", "d.jsonl", J({"chosen": "A b", "rejected": "C d"}), {}, {"empty-prompt": [1]},
     {}, 0),
    ("json-array-bad-element", "d.json", b'[\n  {"prompt": "Q?\\n", "chosen": "a", "rejected": "b"},\n  {"prompt": }\n]',
     {}, {"json": [3]}, {}, 1),
    ("json-array-truncated", "d.json", b'[\n  {"prompt": "Q?\\n", "chosen": "a", "rejected": "b"},\n', {},
     {"truncated": [3]}, {}, 1),
    ("csv-ragged-row", "d.csv", b'prompt,chosen,rejected\n"Q?\n",a,b\nR?,c\n', {}, {"type": [4]}, {}, 1),
    ("mapped-column-missing", "d.jsonl", J(GOOD), {"column_map": {"prompt": "question"}},
     {"missing-field": [1]}, {}, 0),
    ("images-unsupported", "d.jsonl", J({**GOOD, "images": ["a.png"]}), {}, {"images": [1]}, {}, 0),
]


@pytest.mark.parametrize(
    "name,fname,content,kwargs,errors,warnings,usable", BAD_CASES, ids=[c[0] for c in BAD_CASES]
)
def test_bad_inputs(tmp_path, name, fname, content, kwargs, errors, warnings, usable):
    path = tmp_path / fname
    path.write_bytes(content)
    loaded = load_preference_data(str(path), **kwargs)
    rep = loaded.report
    got_errors = {f.code: f.lines for f in rep.errors}
    got_warnings = {f.code: f.lines for f in rep.warnings}
    assert got_errors == errors, rep.render()
    assert got_warnings == warnings, rep.render()
    assert rep.rows_usable == usable == len(loaded.rows), rep.render()
    assert rep.ok == (not errors)
    for f in rep.findings:
        assert f.code in FINDING_CODES and f.severity == FINDING_CODES[f.code].split(":")[0]
        assert f.count >= max(1, len(f.lines))
        assert f.message
    # the streaming check agrees with the loader
    rep2 = check_data(str(path), **kwargs)
    assert rep2.to_json() == rep.to_json()


def test_messages_name_the_problem(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(J(GOOD) + b'{"prompt": "caf\xe9?\\n", "chosen": "a", "rejected": "b"}\n' + b'{"prompt": 1,}\n')
    rep = check_data(str(p))
    utf8 = next(f for f in rep.errors if f.code == "utf8")
    assert "0xE9" in utf8.message and "column 16" in utf8.message
    bad = next(f for f in rep.errors if f.code == "json")
    assert bad.lines == [3] and "column" in bad.message
    p.write_bytes(J({"question": "Q", "response_x": "a", "chosen": "c"}))
    miss = check_data(str(p)).errors[0]
    assert miss.code == "missing-field" and miss.field == "rejected" and "--map rejected=" in miss.message


def test_finding_counts_and_first_lines_cap(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(J(*[S(f"Q{i}?\n", "same", "same") for i in range(30)]))
    rep = check_data(str(p))
    (f,) = rep.errors
    assert f.code == "identical-pair" and f.count == 30 and f.lines == list(range(1, 11))


def test_mixed_shapes_majority_and_first_differing_line(tmp_path):
    # the first row is the odd one out: the shape is decided from all rows, not the first
    p = tmp_path / "d.jsonl"
    p.write_bytes(J(GOOD, CONV, CONV2, CONV))
    rep = check_data(str(p))
    assert rep.format == "conversational" and rep.shape == "conversational-explicit"
    (f,) = rep.errors
    assert f.code == "mixed-shapes" and f.lines == [1] and "line 2" in f.message


# ------------------------------------------------------------------------------------------------------------
# Shapes: detected and normalized to what TRL 1.16 accepts
# ------------------------------------------------------------------------------------------------------------

HH_CHOSEN = "\n\nHuman: What is 2+2?\n\nAssistant: 4.\n\nHuman: And 3+3?\n\nAssistant: 6."
HH_REJECTED = "\n\nHuman: What is 2+2?\n\nAssistant: 4.\n\nHuman: And 3+3?\n\nAssistant: I don't know."

SHAPE_CASES = [
    ("standard-explicit", J(GOOD), {}, "standard", S("Q1?\n", "Yes.", "No.")),
    ("conversational-explicit", J(CONV), {}, "conversational", CONV),
    ("standard-implicit",
     J({"chosen": "Q: what colour? A: blue", "rejected": "Q: what colour? A: green"}), {}, "standard",
     S("Q: what colour? A:", " blue", " green")),
    ("hh-rlhf", J({"chosen": HH_CHOSEN, "rejected": HH_REJECTED}), {}, "conversational",
     C([U("What is 2+2?"), A("4."), U("And 3+3?")], [A("6.")], [A("I don't know.")])),
    ("conversational-implicit",
     J({"chosen": [U("Hi?"), A("Hello.")], "rejected": [U("Hi?"), A("Go away.")]}), {}, "conversational", CONV),
    ("ultrafeedback",
     J({"prompt": "Hi?", "prompt_id": "x1", "chosen": [U("Hi?"), A("Hello.")], "rejected": [U("Hi?"), A("Go away.")],
        "messages": [U("Hi?"), A("Hello.")], "score_chosen": 9.0, "score_rejected": 3.0}),
     {}, "conversational", CONV),
    ("sharegpt",
     J({"conversations": [{"from": "system", "value": "Be kind."}, {"from": "human", "value": "Hi?"}],
        "chosen": {"from": "gpt", "value": "Hello."}, "rejected": {"from": "gpt", "value": "Go away."}}), {},
     "conversational", C([{"role": "system", "content": "Be kind."}, U("Hi?")], [A("Hello.")], [A("Go away.")])),
    ("stack-exchange-paired", J({"question": "Q?\n", "response_j": "Good.", "response_k": "Bad.", "qid": 7}), {},
     "standard", S("Q?\n", "Good.", "Bad.")),
    ("chosen_response-columns",
     J({"prompt": "Q?\n", "chosen_response": "Good.", "rejected_response": "Bad."}), {}, "standard",
     S("Q?\n", "Good.", "Bad.")),
    ("alpaca-instruction-input",
     J({"instruction": "Translate.", "input": "chat", "chosen": " cat", "rejected": " dog"}), {}, "standard",
     S("Translate.\nchat", " cat", " dog")),
    ("system-column",
     J({"system": "Be brief.", "prompt": "Q?", "chosen": "A.", "rejected": "B."}), {}, "conversational",
     C([{"role": "system", "content": "Be brief."}, U("Q?")], [A("A.")], [A("B.")])),
    ("explicit-map",
     J({"question": "Q?\n", "instruction": "ignored", "chosen": "A.", "rejected": "B."}),
     {"column_map": {"prompt": "question"}}, "standard", S("Q?\n", "A.", "B.")),
    ("content-parts",
     J({"chosen_messages": [{"role": "user", "content": [{"type": "text", "value": "Hi?"}], "loss_weight": 0.0},
                            {"role": "assistant", "content": [{"type": "text", "value": "Hello."}]}],
        "rejected_messages": [{"role": "user", "content": [{"type": "text", "value": "Hi?"}], "loss_weight": 0.0},
                              {"role": "assistant", "content": [{"type": "text", "value": "Go away."}]}]}), {},
     "conversational", CONV),
    ("prompt-messages-string-completions", J(C([U("Hi?")], "Hello.", "Go away.")), {}, "conversational", CONV),
]


@pytest.mark.parametrize("shape,content,kwargs,fmt,row", SHAPE_CASES, ids=[c[0] for c in SHAPE_CASES])
def test_shapes(tmp_path, shape, content, kwargs, fmt, row):
    p = tmp_path / "d.jsonl"
    p.write_bytes(content)
    loaded = load_preference_data(str(p), **kwargs)
    rep = loaded.report
    assert rep.ok, rep.render()
    assert rep.format == fmt
    expected_shape = {"stack-exchange-paired": "standard-explicit", "chosen_response-columns": "standard-explicit",
                      "alpaca-instruction-input": "standard-explicit", "system-column": "standard-explicit",
                      "explicit-map": "standard-explicit", "content-parts": "conversational-implicit",
                      "prompt-messages-string-completions": "conversational-explicit"}.get(shape, shape)
    assert rep.shape == expected_shape
    assert loaded.rows == [row]
    assert rep.decisions or shape in ("standard-explicit", "conversational-explicit",
                                      "prompt-messages-string-completions")


def test_decisions_say_what_was_mapped(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(J({"question": "Q?\n", "response_j": "Good.", "response_k": "Bad.", "qid": 7}))
    rep = check_data(str(p))
    text = "\n".join(rep.decisions)
    assert "prompt <- column 'question'" in text and "chosen <- column 'response_j'" in text
    assert "ignored columns: qid" in text


def test_bad_column_map_target_is_a_user_error(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(J(GOOD))
    with pytest.raises(UserError, match="unknown column mapping"):
        load_preference_data(str(p), column_map={"question": "prompt"})


# ------------------------------------------------------------------------------------------------------------
# Sources
# ------------------------------------------------------------------------------------------------------------

ROWS = [S(f"Q{i}?\n", f"Yes {i}.", f"No {i}.") for i in range(5)]


def test_json_list_and_object_holding_list(tmp_path):
    a = tmp_path / "list.json"
    a.write_text(json.dumps(ROWS, indent=2))
    b = tmp_path / "obj.json"
    b.write_text(json.dumps({"version": 1, "data": ROWS}))
    c = tmp_path / "lines.json"  # JSON lines under a .json name
    c.write_bytes(J(*ROWS))
    for path in (a, b, c):
        loaded = load_preference_data(str(path))
        assert loaded.report.ok and loaded.rows == ROWS, loaded.report.render()
    d = tmp_path / "splits.json"  # an object holding one list per split
    d.write_text(json.dumps({"train": ROWS[:3], "test": ROWS[3:]}))
    assert load_preference_data(str(d)).rows == ROWS[:3]
    assert load_preference_data(str(d), split="test").rows == ROWS[3:]
    # line numbers of a pretty-printed list point at each element
    a.write_text(json.dumps(ROWS[:2] + [S("Q?\n", "x", "x")], indent=2))
    (f,) = check_data(str(a)).errors
    assert f.code == "identical-pair" and f.lines == [12]


def test_csv(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text('prompt,chosen,rejected\n"Q0?\n",Yes 0.,No 0.\n"multi\nline?\n",a,b\n')
    loaded = load_preference_data(str(p))
    assert loaded.report.ok and loaded.rows == [ROWS[0], S("multi\nline?\n", "a", "b")]


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), p)
    loaded = load_preference_data(str(p))
    assert loaded.report.ok and loaded.rows == ROWS


def _save_to_disk(rows, path, dict_splits=None):
    """datasets.save_to_disk in a child process (the core must not need `datasets`)."""
    code = (
        "import json,sys\nfrom datasets import Dataset, DatasetDict\n"
        "rows=json.loads(sys.argv[1]); splits=json.loads(sys.argv[3])\n"
        "ds=Dataset.from_list(rows)\n"
        "(DatasetDict({s: ds for s in splits}) if splits else ds).save_to_disk(sys.argv[2])\n"
    )
    subprocess.run([sys.executable, "-c", code, json.dumps(rows), str(path), json.dumps(dict_splits or [])],
                   check=True, capture_output=True, timeout=120)


def test_save_to_disk_dataset_and_datasetdict(tmp_path):
    conv = [C([U(f"Hi {i}?")], [A("Hello.")], [A("Go away.")]) for i in range(3)]
    _save_to_disk(conv, tmp_path / "one")
    loaded = load_preference_data(str(tmp_path / "one"))
    assert loaded.report.ok and loaded.rows == conv, loaded.report.render()
    _save_to_disk(ROWS, tmp_path / "dd", ["train", "test"])
    assert load_preference_data(str(tmp_path / "dd"), split="test").rows == ROWS
    with pytest.raises(UserError, match="no split 'validation'"):
        load_preference_data(str(tmp_path / "dd"), split="validation")


def test_folder_with_splits(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "train.jsonl").write_bytes(J(*ROWS[:3]))
    (d / "test.jsonl").write_bytes(J(*ROWS[3:]))
    (d / "README.md").write_text("x")
    assert load_preference_data(str(d)).rows == ROWS[:3]
    assert load_preference_data(str(d), split="test").rows == ROWS[3:]
    # hub layout: data/train-00000-of-00002.parquet ... several shards, line numbers name the file
    hub = tmp_path / "hub"
    (hub / "data").mkdir(parents=True)
    (hub / "data" / "train-00000-of-00002.jsonl").write_bytes(J(*ROWS[:2]))
    (hub / "data" / "train-00001-of-00002.jsonl").write_bytes(J(ROWS[2], S("Q?\n", "x", "x")))
    rep = check_data(str(hub))
    (f,) = rep.errors
    assert f.file == "data/train-00001-of-00002.jsonl" and f.lines == [2]
    assert "data/train-00001-of-00002.jsonl:2" in f.render()


def test_hub_dataset_id_from_local_cache(tmp_path, monkeypatch):
    home = tmp_path / "hf"
    snap = home / "hub" / "datasets--someorg--prefs" / "snapshots" / "abc123"
    (snap / "data").mkdir(parents=True)
    (snap / "data" / "train-00000-of-00001.jsonl").write_bytes(J(*ROWS))
    (home / "hub" / "datasets--someorg--prefs" / "refs").mkdir()
    (home / "hub" / "datasets--someorg--prefs" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HOME", str(home))
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    loaded = load_preference_data("someorg/prefs")
    assert loaded.rows == ROWS and any("local cache" in d for d in loaded.report.decisions)
    with pytest.raises(UserError, match="not in the local Hugging Face cache"):
        load_preference_data("someorg/missing")


def test_offline_switch_stops_dataset_downloads(tmp_path, monkeypatch):
    """DPO_TUI_OFFLINE turns the hub off for datasets too: a missing dataset is refused, never fetched."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("DPO_TUI_OFFLINE", "1")
    hub = types.ModuleType("huggingface_hub")

    def snapshot_download(*args, **kwargs):
        pytest.fail("a dataset was downloaded although DPO_TUI_OFFLINE is set")

    hub.snapshot_download = snapshot_download
    monkeypatch.setitem(sys.modules, "huggingface_hub", hub)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="not in the local Hugging Face cache.*DPO_TUI_OFFLINE"):
        load_preference_data("someorg/prefs")


def test_streamed_rows_come_from_the_chosen_split(tmp_path):
    """A JSON object holding one list per split: the streamed rows (token stats, preview) are the split's."""
    p = tmp_path / "d.json"
    p.write_text(json.dumps({"train": [GOOD], "test": [GOOD2]}))
    assert load_preference_data(str(p), split="test").rows == [GOOD2]
    assert [row for _, row in iter_preference_rows(str(p), split="test")] == [GOOD2]
    assert [row for _, row in iter_preference_rows(str(p))] == [GOOD]
    assert any("'test' list" in d for d in check_data(str(p), split="test").decisions)


def test_missing_source_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="dataset not found"):
        load_preference_data(str(tmp_path / "nope.jsonl"))
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(UserError, match="unsupported dataset file type"):
        check_data(str(tmp_path / "x.txt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no data files"):
        check_data(str(tmp_path / "empty"))


@pytest.mark.parametrize("name,rows,shape", [
    ("llamafactory_dpo_en_demo.json", 20, "sharegpt"),
    ("llamafactory_dpo_zh_demo.json", 20, "sharegpt"),
    ("llamafactory_v1_dpo_demo.jsonl", 10, "conversational-implicit"),
])
def test_llamafactory_samples(name, rows, shape):
    loaded = load_preference_data(str(LLAMAFACTORY / name))
    rep = loaded.report
    assert rep.ok, rep.render()
    assert rep.rows_total == rows and rep.rows_usable == rows and len(loaded.rows) == rows
    assert rep.shape == shape and rep.format == "conversational"
    for row in loaded.rows:
        assert row["prompt"][-1]["role"] == "user"
        assert [m["role"] for m in row["chosen"]] == ["assistant"] == [m["role"] for m in row["rejected"]]
        assert all(set(m) == {"role", "content"} and isinstance(m["content"], str)
                   for m in row["prompt"] + row["chosen"] + row["rejected"])


def test_to_json_contract(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(J(GOOD, S("Q?\n", None, "x")))
    out = check_data(str(p)).to_json()
    assert out["format"] == "standard" and out["rows"] == 1
    assert out["errors"][0]["line"] == 2 and out["errors"][0]["field"] == "chosen"
    assert "message" in out["errors"][0] and out["warnings"] == []
    assert out["stats"]["chars"]["prompt"]["max"] == 4
    json.dumps(out)


def test_large_file_is_streamed(tmp_path):
    """check_data keeps no rows: memory stays flat while a big file is linted."""
    p = tmp_path / "big.jsonl"
    with open(p, "w") as fh:
        for i in range(60_000):
            fh.write(json.dumps(S(f"Question number {i} " + "x" * 1000 + "?\n", f"A{i}", f"B{i}")) + "\n")
    code = (
        "import resource,sys\nfrom dpo_tui.core.data import check_data\n"
        "before=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "r=check_data(sys.argv[1]); assert r.ok and r.rows_usable==60000\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss-before)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    grown_kb = int(out.stdout.strip())
    assert grown_kb < os.path.getsize(p) / 1024 / 2, f"RSS grew {grown_kb} KB for a {os.path.getsize(p)} B file"
