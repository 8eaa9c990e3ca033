"""Security: no code from a model folder or a dataset runs without consent; run files
follow the user's umask; no secret (HF token) lands in a run folder, a log or an event.

The "evil" model folder ships ``auto_map`` + custom ``configuration_/modeling_/tokenization_*.py``
files that write a marker file when imported, a ``pytorch_model.bin`` pickle whose ``__reduce__``
writes a marker, and a chat template that tries to escape the Jinja sandbox. Every entry point that
touches a model (train, chat, export, estimate, data check/preview, the console's model scan) must
leave every marker absent unless the operator passed ``--trust-remote-code`` for that model.
"""

from __future__ import annotations

import ast
import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dpo_tui.core.config import SAMPLE_PRESET, RunConfig, build_config
from tests.support.cli import REPO, SAMPLE_MODEL, dpo_tui_cmd, run_cli, wait_for_state
from tests.support.reliability import record_outcome
from tests.support.uikit import build_fake_model, fake_safetensors

SUITE = "security"
TERMINAL = {"finished", "failed", "crashed", "stopped"}
SECRET = "hf_SECRETtoken123"


# --- 1. trust_remote_code is off unless asked for -------------------------------------------------
def test_trust_remote_code_defaults_off() -> None:
    assert RunConfig().trust_remote_code is False
    assert build_config(dict(SAMPLE_PRESET)).trust_remote_code is False
    assert "trust" in (RunConfig.model_fields["trust_remote_code"].description or "").lower()
    record_outcome(SUITE, "trust-remote-code/default-off", "passed")


def _calls(tree: ast.AST) -> list[tuple[ast.Call, ast.AST]]:
    """(call, enclosing function) for every ``X.from_pretrained(...)`` / ``pipeline(...)`` call."""
    found = []

    def visit(node: ast.AST, func: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            scope = child if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else func
            if isinstance(child, ast.Call):
                f = child.func
                if (isinstance(f, ast.Attribute) and f.attr == "from_pretrained") or (isinstance(f, ast.Name) and f.id == "pipeline"):
                    found.append((child, scope))
            visit(child, scope)

    visit(tree, tree)
    return found


def test_every_hf_loader_call_passes_trust_remote_code_explicitly() -> None:
    """Every transformers loader call in the workers names trust_remote_code, and never as a literal True.

    PEFT's ``PeftModel.from_pretrained`` has no such switch (it loads safetensors into an existing model).
    """
    checked, problems = 0, []
    for path in sorted((REPO / "dpo_tui").rglob("*.py")):
        source = path.read_text()
        if "trust_remote_code=True" in source.replace(" ", ""):
            problems.append(f"{path.relative_to(REPO)}: a literal trust_remote_code=True")
        tree = ast.parse(source)
        for call, scope in _calls(tree):
            owner = call.func.value if isinstance(call.func, ast.Attribute) else None
            name = owner.id if isinstance(owner, ast.Name) else (owner.attr if isinstance(owner, ast.Attribute) else "pipeline")
            if name.startswith("Peft") or name.startswith("AutoPeft"):
                continue
            checked += 1
            keywords = {k.arg: k.value for k in call.keywords}
            where = f"{path.relative_to(REPO)}:{call.lineno} {name}.from_pretrained"
            if "trust_remote_code" in keywords:
                value = keywords["trust_remote_code"]
                if isinstance(value, ast.Constant) and value.value is True:
                    problems.append(f"{where}: trust_remote_code=True")
                continue
            # **kwargs: the dict it unpacks must carry the switch (same function).
            star = [k.value for k in call.keywords if k.arg is None]
            scope_src = ast.get_source_segment(source, scope) or ""
            if star and "trust_remote_code" in scope_src:
                continue
            problems.append(f"{where}: no trust_remote_code= (transformers would decide for the operator)")
    assert checked >= 5, f"found only {checked} loader calls; did the workers move?"
    record_outcome(SUITE, "trust-remote-code/every-loader-call", "passed" if not problems else "gaps", calls=checked,
                   gaps=len(problems))
    assert problems == [], "\n".join(problems)


# --- the evil model ---------------------------------------------------------------------------------
MARKERS = ("configuration", "modeling", "tokenization", "pickle", "template")


def _marker_code(marker: Path) -> str:
    return f"from pathlib import Path as _P\n_P({str(marker)!r}).write_text('executed ' + __name__)\n"


def build_evil_model(folder: Path, markers: Path) -> Path:
    """A Llama-shaped folder whose loading asks for custom code (auto_map) that writes a marker when imported."""
    build_fake_model(folder)
    (folder / "configuration_evil.py").write_text(
        _marker_code(markers / "configuration") + "from transformers import LlamaConfig\n\n\nclass EvilConfig(LlamaConfig):\n    model_type = 'evil'\n"
    )
    (folder / "modeling_evil.py").write_text(
        _marker_code(markers / "modeling") + "from transformers import LlamaForCausalLM\n\nfrom .configuration_evil import EvilConfig\n\n\n"
        "class EvilForCausalLM(LlamaForCausalLM):\n    config_class = EvilConfig\n"
    )
    (folder / "tokenization_evil.py").write_text(
        _marker_code(markers / "tokenization") + "from transformers import PreTrainedTokenizerFast\n\n\nclass EvilTokenizer(PreTrainedTokenizerFast):\n    pass\n"
    )
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update({"model_type": "evil", "architectures": ["EvilForCausalLM"],
                "auto_map": {"AutoConfig": "configuration_evil.EvilConfig", "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}})
    (folder / "config.json").write_text(json.dumps(cfg))
    tok = json.loads((folder / "tokenizer_config.json").read_text())
    tok.update({"auto_map": {"AutoTokenizer": [None, "tokenization_evil.EvilTokenizer"]}, "tokenizer_class": "EvilTokenizer"})
    (folder / "tokenizer_config.json").write_text(json.dumps(tok))
    return folder


PICKLE_PAYLOAD = (
    "import os, pickle, sys\n"
    "class Evil:\n"
    "    def __reduce__(self):\n"
    "        return (open, (sys.argv[2], 'w'))\n"
    "with open(sys.argv[1], 'wb') as fh:\n"
    "    pickle.dump({'model.embed_tokens.weight': Evil()}, fh)\n"
)


def build_pickle_model(folder: Path, markers: Path) -> Path:
    """Config and tokenizer, and a ``pytorch_model.bin`` pickle whose loading would create a marker file."""
    build_fake_model(folder)
    (folder / "model.safetensors").unlink()
    subprocess.run([sys.executable, "-c", PICKLE_PAYLOAD, str(folder / "pytorch_model.bin"), str(markers / "pickle")], check=True)
    return folder


SSTI_TEMPLATE = (
    "{{ cycler.__init__.__globals__.os.popen('touch MARKER').read() }}"
    "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    "{% for m in messages %}{{ m['content'] }}{% endfor %}"
)


def build_template_model(folder: Path, markers: Path) -> Path:
    """A normal model whose chat template tries to run a shell command (a Jinja sandbox escape)."""
    build_fake_model(folder)
    tok = json.loads((folder / "tokenizer_config.json").read_text())
    tok["chat_template"] = SSTI_TEMPLATE.replace("MARKER", str(markers / "template"))
    (folder / "tokenizer_config.json").write_text(json.dumps(tok))
    return folder


def finished_run_on(root: Path, model: Path, dataset: Path, run_id: str) -> Path:
    """A finished run (no training) whose base is ``model``, with a complete (zero) LoRA adapter."""
    from dpo_tui.core.runs import RunStatus, create_run

    run = create_run(root, build_config({"model": str(model), "dataset": str(dataset)}), run_id=run_id)
    run.write_status(RunStatus(state="finished", created_at=time.time(), host="elsewhere", exit_code=0, step=1, max_steps=1))
    run.adapter_dir.mkdir()
    (run.adapter_dir / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "base_model_name_or_path": str(model), "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"],
         "task_type": "CAUSAL_LM"}))
    fake_safetensors(run.adapter_dir / "adapter_model.safetensors", {
        f"base_model.model.model.layers.{i}.self_attn.q_proj.lora_{ab}.weight": ([2, 32] if ab == "A" else [32, 2])
        for i in range(2) for ab in "AB"})
    (run.adapter_dir / "COMPLETE").write_text("")
    return run.path


@pytest.fixture(scope="module")
def evil(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("evil")
    markers = base / "markers"
    markers.mkdir()
    data = base / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"w{i} w{i + 1}\n", "chosen": f" w{i + 2}", "rejected": f" w{i + 3} w{i + 4}"}) + "\n"
                            for i in range(16)))
    conv = base / "conv.jsonl"
    conv.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": f"w{i}"}], "chosen": [{"role": "assistant", "content": "w1"}],
                                        "rejected": [{"role": "assistant", "content": "w2 w3"}]}) + "\n" for i in range(8)))
    return {
        "base": base, "markers": markers, "data": data, "conv": conv,
        "remote": build_evil_model(base / "remote-code-model", markers),
        "pickle": build_pickle_model(base / "pickle-model", markers),
        "template": build_template_model(base / "template-model", markers),
        "good": build_fake_model(base / "plain" / "good-model"),
    }


def executed(markers: Path) -> list[str]:
    return sorted(p.name for p in markers.iterdir())


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


# --- 2. nothing from a model folder runs without consent ----------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("which", ["remote", "pickle"])
def test_train_never_runs_model_code_without_consent(which: str, evil: dict[str, Path], runs_root: Path) -> None:
    started = time.perf_counter()
    proc = run_cli("train", "--runs-dir", str(runs_root), "--model", str(evil[which]), "--dataset", str(evil["data"]), "--max-steps", "1")
    no_traceback(proc)
    if proc.returncode == 0:
        run = runs_root / proc.stdout.split()[0]
        status = wait_for_state(run, TERMINAL, timeout=300)
        assert status["state"] == "failed" and status["kind"] == "config", status
        text = (status.get("message") or "") + (status.get("hint") or "")
        if which == "remote":
            assert "custom code" in text or "trust" in text.lower(), text
        outcome = f"refused-late ({status['kind']})"
    else:
        assert proc.returncode == 2 and not list(runs_root.iterdir()), proc.stderr
        outcome = "rejected"
    assert executed(evil["markers"]) == [], "model code ran without --trust-remote-code"
    record_outcome(SUITE, f"no-consent/train-{which}", outcome, seconds=round(time.perf_counter() - started, 2))


@pytest.mark.slow
@pytest.mark.parametrize("command", ["chat", "export"])
def test_chat_and_export_never_run_model_code_without_consent(command: str, evil: dict[str, Path], runs_root: Path, tmp_path: Path) -> None:
    run = finished_run_on(runs_root, evil["remote"], evil["data"], f"20250101-000000-evil-{command}")
    args = ["chat", "--run", run.name, "--prompt", "w1 w2", "--max-new-tokens", "2", "--greedy"] if command == "chat" else [
        "export", run.name, "--merged", str(tmp_path / "merged")]
    proc = run_cli(args[0], "--runs-dir", str(runs_root), *args[1:], timeout=300)
    no_traceback(proc)
    assert proc.returncode != 0, proc.stdout
    assert "custom code" in (proc.stdout + proc.stderr) or "trust" in (proc.stdout + proc.stderr).lower(), proc.stderr
    assert executed(evil["markers"]) == [], f"{command} ran model code without consent"
    assert not (tmp_path / "merged").exists(), "a refused export left an output behind"
    record_outcome(SUITE, f"no-consent/{command}-remote", "refused", exit_code=proc.returncode)
    assert proc.returncode == 2 and "internal error" not in proc.stderr, f"`{command}` refused with exit {proc.returncode}: {proc.stderr}"


@pytest.mark.parametrize("command", ["estimate", "data-check", "data-preview"])
@pytest.mark.parametrize("which", ["remote", "pickle", "template"])
def test_light_commands_never_run_model_code(command: str, which: str, evil: dict[str, Path]) -> None:
    """Reading facts about a model (estimate, token counts, a rendered pair) reads files, never code."""
    model = str(evil[which])
    if command == "estimate":
        proc = run_cli("estimate", "--model", model, "--free-gib", "10")
    elif command == "data-check":
        proc = run_cli("data", "check", str(evil["conv"]), "--model", model)
    else:
        proc = run_cli("data", "preview", str(evil["conv"]), "--model", model)
    no_traceback(proc)
    assert proc.returncode in (0, 2), proc.stderr
    assert executed(evil["markers"]) == [], f"{command} ran code from {which}"
    record_outcome(SUITE, f"no-consent/{command}-{which}", "no-code-run", exit_code=proc.returncode)


def test_chat_template_sandbox_escape_is_refused(evil: dict[str, Path]) -> None:
    from dpo_tui.core import tokenstats

    tok = tokenstats.ChatTokenizer.from_model(str(evil["template"]))
    with pytest.raises(Exception) as info:  # any refusal will do, as long as nothing ran
        tok.render([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert "Traceback" not in str(info.value)
    assert executed(evil["markers"]) == []
    record_outcome(SUITE, "no-consent/chat-template-sandbox", "refused", error=type(info.value).__name__)


async def test_console_model_scan_never_runs_model_code(evil: dict[str, Path], tmp_path: Path) -> None:
    from dpo_tui.ui.app import DpoTuiApp
    from dpo_tui.ui.screens.models import ModelScreen
    from tests.support.uikit import make_services

    settings = type("S", (), {"model_root_paths": lambda self: [evil["base"]], "keymap": {}, "theme": "textual-dark"})()
    app = DpoTuiApp(make_services(tmp_path / "runs", load_settings=lambda: settings), model=str(evil["remote"]))
    async with app.run_test(size=(100, 30)) as pilot:
        deadline = time.monotonic() + 10
        while not (isinstance(app.screen, ModelScreen) and app.screen.scanned and len(app.screen.models) >= 3):
            assert time.monotonic() < deadline, "the model scan did not finish"
            await pilot.pause(0.05)
        names = {m.name for m in app.screen.models}
        assert {"remote-code-model", "pickle-model", "template-model"} <= names
    assert executed(evil["markers"]) == []
    record_outcome(SUITE, "no-consent/console-model-scan", "no-code-run")


def test_dataset_loading_script_is_never_run(evil: dict[str, Path], tmp_path: Path) -> None:
    """A dataset folder that ships a `datasets` loading script: the loader reads the data files only."""
    folder = tmp_path / "scripted-dataset"
    folder.mkdir()
    marker = evil["markers"] / "dataset-script"
    (folder / "scripted_dataset.py").write_text(_marker_code(marker) + "import datasets\n")
    (folder / "train.jsonl").write_bytes(evil["data"].read_bytes())
    (folder / "evil.pkl").write_bytes(b"\x80\x04garbage")
    proc = run_cli("data", "check", str(folder))
    no_traceback(proc)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run_cli("data", "preview", str(folder), "--model", str(evil["good"]))
    no_traceback(proc)
    assert not marker.exists()
    record_outcome(SUITE, "no-consent/dataset-loading-script", "no-code-run")


@pytest.mark.slow
def test_trust_remote_code_flag_warns(evil: dict[str, Path], runs_root: Path, tmp_path: Path) -> None:
    """With consent the code may run, but the operator is told so, once, naming the model."""
    markers = tmp_path / "markers"
    markers.mkdir()
    model = build_evil_model(tmp_path / "consented-model", markers)
    proc = run_cli("train", "--runs-dir", str(runs_root), "--model", str(model), "--dataset", str(evil["data"]), "--max-steps", "1",
                   "--trust-remote-code")
    no_traceback(proc)
    if proc.returncode == 0:
        wait_for_state(runs_root / proc.stdout.split()[0], TERMINAL, timeout=300)
    warned = re.search(r"(remote code|trust[-_ ]remote[-_ ]code)", proc.stderr, re.I) is not None and str(model.name) in proc.stderr
    record_outcome(SUITE, "consent/trust-remote-code-warns", "warned" if warned else "no-warning", ran=executed(markers))
    assert warned, f"`train --trust-remote-code` prints no warning that the model folder's Python code will run:\n{proc.stderr}"
    assert executed(markers), "with consent the custom code is used"


# --- 3. files follow the user's umask ----------------------------------------------------------
def _training_model(tmp_path: Path) -> Path:
    return SAMPLE_MODEL if (SAMPLE_MODEL / "config.json").exists() else build_fake_model(tmp_path / "fake-model")


def _train(runs_root: Path, model: Path, data: Path, env: dict[str, str] | None = None, umask: int | None = None,
           steps: int = 2) -> tuple[subprocess.CompletedProcess[str], Path]:
    old = os.umask(umask) if umask is not None else None  # inherited by the CLI, its supervisor and trainer
    try:
        proc = subprocess.run(
            [*dpo_tui_cmd(), "train", "--runs-dir", str(runs_root), "--model", str(model), "--dataset", str(data),
             "--max-steps", str(steps), "--save-fraction", "0.5", "--batch-size", "2", "--max-length", "64"],
            capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
        )
    finally:
        if old is not None:
            os.umask(old)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = runs_root / proc.stdout.split()[0]
    status = wait_for_state(run, TERMINAL, timeout=600)
    assert status["state"] == "finished", f"{status}\n" + (run / "trainer.log").read_text()[-3000:]
    return proc, run


@pytest.mark.slow
def test_run_files_follow_the_umask(evil: dict[str, Path], tmp_path: Path) -> None:
    runs_root = tmp_path / "fresh" / "runs"  # created by dpo-tui itself, under the umask
    _, run = _train(runs_root, _training_model(tmp_path), evil["data"], umask=0o027)
    old = os.umask(0o027)
    try:
        run_cli("runs", "--runs-dir", str(runs_root), check=True)  # writes .seen.json in the root
    finally:
        os.umask(old)
    expected = {"config.json", "status.json", "events.jsonl", "trainer.log", "supervisor.log", ".seen.json"}
    seen, bad = set(), []
    for path in [runs_root.parent, runs_root, *runs_root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        seen.add(path.name)
        if mode & 0o027:
            bad.append(f"{path.relative_to(runs_root.parent)}: {oct(mode)}")
    assert expected <= seen, seen
    assert any(p.suffix == ".lock" for p in (runs_root / ".locks").iterdir()), "no lock file was created"
    assert (run / "adapter").is_dir() and any((run / "checkpoints").iterdir())
    assert bad == [], "group-writable or world-accessible with umask 027:\n" + "\n".join(bad)
    # The weights are for the group too (umask 027 allows group read): safetensors writes 0600 itself.
    weights = list(run.rglob("*.safetensors"))
    assert weights and all(stat.S_IMODE(w.stat().st_mode) == 0o640 for w in weights), \
        {str(w.relative_to(run)): oct(stat.S_IMODE(w.stat().st_mode)) for w in weights}
    record_outcome(SUITE, "umask/027", "passed", files=len(seen))


def test_atomic_writes_follow_the_umask_without_changing_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """status.json/config.json get the umask's mode, and the process umask is never changed to read it:
    ``os.umask(0)`` even for a moment lets another thread (the console has several) create a 0666 file."""
    from dpo_tui.core import fsutil

    calls: list[int] = []
    real_umask = os.umask

    def spy(mask: int) -> int:
        calls.append(mask)
        return real_umask(mask)

    old = real_umask(0o027)
    try:
        monkeypatch.setattr(os, "umask", spy)
        fsutil.atomic_write_json(tmp_path / "status.json", {"state": "running"})
        mode = stat.S_IMODE((tmp_path / "status.json").stat().st_mode)
    finally:
        monkeypatch.undo()
        real_umask(old)
    assert mode == 0o640, oct(mode)
    widened = [oct(m) for m in calls if m != 0o027]
    record_outcome(SUITE, "umask/atomic-write-no-umask-change", "passed" if not widened else "umask-changed", calls=[oct(m) for m in calls])
    assert widened == [], (f"atomic_write_bytes sets the process umask to {widened} while it reads it; a file another thread "
                           "creates meanwhile gets mode 0666/0777")


# --- 4. no secret is written anywhere ------------------------------------------------------------
@pytest.mark.slow
def test_hf_token_is_never_written(evil: dict[str, Path], runs_root: Path, tmp_path: Path) -> None:
    env = {"HF_TOKEN": SECRET, "HUGGING_FACE_HUB_TOKEN": SECRET, "DPO_TUI_DEBUG": ""}
    proc, run = _train(runs_root, _training_model(tmp_path), evil["data"], env=env)
    outputs = [proc.stdout, proc.stderr]
    for args in (("runs", "--json"), ("attach", run.name), ("compare", run.name, run.name)):
        more = run_cli(args[0], "--runs-dir", str(runs_root), *args[1:], env=env)
        outputs += [more.stdout, more.stderr]
    merged = tmp_path / "merged"
    export = run_cli("export", "--runs-dir", str(runs_root), run.name, "--merged", str(merged), env=env, timeout=300)
    outputs += [export.stdout, export.stderr]
    leaks = [f"{p}" for p in [*runs_root.rglob("*"), *merged.rglob("*")] if p.is_file() and SECRET.encode() in p.read_bytes()]
    leaks += [f"command output #{i}" for i, text in enumerate(outputs) if SECRET in text]
    assert leaks == [], f"the HF token was written to: {leaks}"
    scanned = sum(1 for p in [*runs_root.rglob("*"), *merged.rglob("*")] if p.is_file())
    record_outcome(SUITE, "secrets/hf-token", "passed", files_scanned=scanned, export_exit=export.returncode)
