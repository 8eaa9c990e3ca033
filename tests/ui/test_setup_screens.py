"""Model → dataset → experiment, driven by keys on a fixed fake sample (model + pairs)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from dpo_tui.core.config import TRL_LOSS_TYPES, load_config
from dpo_tui.ui.app import DpoTuiApp
from dpo_tui.ui.screens.dataset import DatasetScreen
from dpo_tui.ui.screens.experiment import ExperimentScreen
from dpo_tui.ui.screens.models import ModelScreen
from tests.support.uikit import build_fake_model, make_services, screen_text, to_dataset, to_experiment, until

pytestmark = pytest.mark.usefixtures("fake_sample")


async def test_newcomer_path_model_dataset_experiment(ui_root: Path) -> None:
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ModelScreen) and app.screen.scanned)
        models = app.screen
        assert models.highlighted.name == "tiny-chat (sample)"
        assert "bundled sample" in screen_text(app)
        dataset = await to_dataset(pilot, app)
        assert app.setup.model == "sample" and app.setup.dataset == "sample"
        assert dataset.report.ok and "✓ usable  40 of 40 rows" in screen_text(app)
        await pilot.press("p")
        await until(pilot, lambda: "pair 1/40" in screen_text(app))
        await pilot.press("right_square_bracket")
        await until(pilot, lambda: "pair 2/40" in screen_text(app))
        await pilot.press("l")
        await until(pilot, lambda: "max_length 256" in screen_text(app))
        await pilot.press("ctrl+n")
        await until(pilot, lambda: isinstance(app.screen, ExperimentScreen))
        exp = app.screen
        assert exp.config is not None and exp.problems == {}
        assert exp.config.max_steps == 30 and exp.config.lora_rank == 8  # the sample preset
        assert "$ dpo-tui train" in screen_text(app)
        await pilot.press("escape")  # leaves the β field for the form, then goes back
        assert exp.focused is exp.query_one("#experiment-form")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, DatasetScreen))
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, ModelScreen))


async def test_filter_path_entry_and_broken_folders(ui_root: Path, tmp_path: Path) -> None:
    extra = tmp_path / "models"
    build_fake_model(extra / "good-llama")
    broken = extra / "broken-one"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text("{not json")
    typed = build_fake_model(tmp_path / "elsewhere" / "typed-model")
    settings = SimpleNamespace(model_root_paths=lambda: [extra], keymap={}, theme="textual-dark")
    app = DpoTuiApp(make_services(ui_root, load_settings=lambda: settings))
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ModelScreen))
        screen = app.screen
        # Settings arrive after the first paint; their model roots trigger a second scan.
        await until(pilot, lambda: len(screen.models) >= 3)
        names = [m.name for m in screen.models]
        assert names[0] == "tiny-chat (sample)" and "good-llama" in names and "broken-one" in names
        text = screen_text(app)
        assert "✗ config.json" in text
        await pilot.press("b")
        assert "broken-one" not in screen_text(app)
        await pilot.press("b")
        await pilot.press("slash")
        await pilot.press(*"llama")
        await pilot.pause()
        rows = screen.visible_rows()
        assert [screen.models[i].name for i in rows] == ["tiny-chat (sample)", "good-llama"] or all(
            "llama" in (screen.models[i].architecture or "").lower() + screen.models[i].name for i in rows
        )
        await pilot.press("escape")
        await pilot.press("slash")
        # A long tmp path is pasted (one press per character costs seconds); its last character is typed,
        # so the filter still sees a keystroke complete the path before enter takes it.
        filt = screen.query_one("#model-filter")
        filt.value = str(typed)[:-1]
        filt.cursor_position = len(filt.value)
        await pilot.press(str(typed)[-1])
        assert filt.value == str(typed)
        await pilot.press("enter")
        await until(pilot, lambda: screen.highlighted is not None and screen.highlighted.name == "typed-model")
        assert "typed-model" in screen_text(app)
        # A broken folder cannot be chosen; ctrl+n spells out the reason instead of doing nothing.
        broken_index = next(i for i, m in enumerate(screen.models) if m.name == "broken-one")
        screen._fill(highlight=broken_index)
        await pilot.pause()
        assert screen.check_action("next", ()) is None  # dimmed in the footer
        notes: list[str] = []
        app.notify = lambda message, **kw: notes.append(message)  # type: ignore[method-assign]
        await pilot.press("ctrl+n")
        assert isinstance(app.screen, ModelScreen)
        assert notes and "broken-one cannot be used" in notes[-1]


async def test_dataset_lint_errors_block_next(ui_root: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"prompt": "w1 w2\n", "chosen": "w3", "rejected": "w4"}) + "\n"
        + "{not json\n"
        + json.dumps({"prompt": "w1\n", "chosen": "w5", "rejected": "w5"}) + "\n"
    )
    app = DpoTuiApp(make_services(ui_root), dataset=str(bad))
    async with app.run_test(size=(100, 30)) as pilot:
        dataset = await to_dataset(pilot, app)
        codes = {f.code: f.lines for f in dataset.report.errors}
        assert codes.get("json") == [2] and codes.get("identical-pair") == [3]
        text = screen_text(app)
        assert "✗ not usable" in text and "error" in text
        assert dataset.check_action("next", ()) is None  # dimmed in the footer, and ctrl+n says why
        notes: list[str] = []
        app.notify = lambda message, **kw: notes.append(message)  # type: ignore[method-assign]
        await pilot.press("ctrl+n")
        assert isinstance(app.screen, DatasetScreen)
        assert notes and "is not usable: 2 errors on the Report tab (r)" in notes[-1]


async def test_experiment_validates_as_you_type(ui_root: Path) -> None:
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=(100, 30)) as pilot:
        exp = await to_experiment(pilot, app)
        beta = exp.query_one("#f-beta")
        beta.focus()
        beta.value = ""
        await pilot.press("minus", "1")
        await pilot.pause()
        assert "beta" in exp.problems and "must be > 0" in exp.problems["beta"]
        assert exp.query_one("#row-beta").has_class("-invalid")
        assert exp.check_action("launch", ()) is None
        assert "fix the problems" in screen_text(app)
        beta.value = ""
        await pilot.press("0", "full_stop", "3")
        await pilot.pause()
        assert exp.problems == {} and exp.config.beta == 0.3
        assert "--beta 0.3" in screen_text(app)
        await pilot.press("ctrl+b")
        assert exp.config.beta == 0.5 and beta.value == "0.5"
        await pilot.press("ctrl+b")
        assert exp.config.beta == 0.01
        loss = exp.query_one("#f-loss_type")
        assert tuple(v for _, v in loss._options) == TRL_LOSS_TYPES
        # Cross-field problems are named too.
        loss.value = "exo_pair"
        await pilot.pause()
        assert exp.config is None and "label_smoothing" in " ".join(exp.problems.values())


async def test_save_as_toml_round_trips(ui_root: Path, tmp_path: Path) -> None:
    target = tmp_path / "saved.toml"
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=(100, 30)) as pilot:
        exp = await to_experiment(pilot, app)
        await pilot.press("ctrl+b")
        await pilot.press("ctrl+s")
        await pilot.pause()
        path_input = app.screen.query_one("#save-path")
        path_input.value = str(target)
        await pilot.press("enter")
        await pilot.pause()
        assert target.exists()
        assert load_config(target) == exp.config


async def test_launch_switches_to_the_monitor(ui_root: Path) -> None:
    launched = []

    def fake_launcher(run) -> int:
        launched.append(run.id)
        with open(run.events_path, "a") as fh:
            fh.write(json.dumps({"v": 1, "seq": 1, "t": 1.0, "type": "started", "max_steps": 30}) + "\n")
        run.update_status(state="running", host="elsewhere")
        return 4242

    app = DpoTuiApp(make_services(ui_root, launcher=fake_launcher))
    async with app.run_test(size=(100, 30)) as pilot:
        exp = await to_experiment(pilot, app)
        expected = exp.config
        await pilot.press("ctrl+r")
        await until(pilot, lambda: app.current_mode == "monitor")
        assert launched and app.screen.run_id == launched[0]
        run_dir = ui_root / launched[0]
        frozen = json.loads((run_dir / "config.json").read_text())
        assert frozen == expected.model_dump(mode="json")
        await pilot.press("1")
        await pilot.pause()
        assert isinstance(app.screen, ExperimentScreen), "the setup stack is kept for the next run"


async def test_vram_bar_follows_changes_within_100ms(ui_root: Path) -> None:
    pytest.importorskip("dpo_tui.core.vram")
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=(100, 30)) as pilot:
        exp = await to_experiment(pilot, app)
        await until(pilot, lambda: exp.estimate is not None)
        batch = exp.query_one("#f-per_device_batch_size")
        batch.focus()
        batch.value = ""
        await pilot.press("6")
        before = exp.estimate
        started = time.perf_counter()
        await pilot.press("4")  # 6 → 64
        assert batch.value == "64"
        assert exp.last_vram_update is not None and exp.last_vram_update - started < 0.1
        assert exp.estimate is not before and exp.estimate.total_bytes > before.total_bytes


async def test_a_failing_worker_becomes_a_notification(ui_root: Path) -> None:
    def broken_discovery(roots):
        raise RuntimeError("scanner exploded")

    notes: list[str] = []
    app = DpoTuiApp(make_services(ui_root, discover_models=broken_discovery))
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ModelScreen))
        app.screen.notify = lambda message, **kw: notes.append(message)  # type: ignore[method-assign]
        app.screen.rescan()
        await until(pilot, lambda: bool(notes))
        assert "scanner exploded" in notes[0] and "Traceback" not in notes[0]
        assert app.screen.highlighted.name == "tiny-chat (sample)"  # still usable


async def test_dataset_workers_post_messages_in_order(ui_root: Path) -> None:
    """Load → count tokens → render a pair: each worker posts one message; handlers own the state."""
    seen: list[str] = []
    kept: list[object] = []
    wanted = (DatasetScreen.DataLoaded, DatasetScreen.TokensCounted, DatasetScreen.PreviewReady)

    def hook(message) -> None:
        # Messages bubble, so the hook sees one at each node it passes: count each once. Keep the
        # objects themselves: an id() alone can be reused by a later message once one is freed.
        if isinstance(message, wanted) and not any(m is message for m in kept):
            kept.append(message)
            seen.append(type(message).__name__)

    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=(100, 30), message_hook=hook) as pilot:
        dataset = await to_dataset(pilot, app)
        await until(pilot, lambda: "PreviewReady" in seen)
        assert seen[:2] == ["DataLoaded", "TokensCounted"]
        assert dataset.tokens["rows"] == 40
        assert app.setup.data_report is dataset.report


async def test_truncation_follows_max_length(ui_root: Path) -> None:
    app = DpoTuiApp(make_services(ui_root))
    async with app.run_test(size=(100, 30)) as pilot:
        exp = await to_experiment(pilot, app)
        exp.apply_changes({"max_length": 5})
        await pilot.press("escape", "escape")  # out of the β field, then back
        await until(pilot, lambda: isinstance(app.screen, DatasetScreen))
        dataset = app.screen
        await until(pilot, lambda: dataset.tokens is not None and dataset.tokens.get("max_length") == 5)
        assert dataset.tokens["truncated"] > 0
        await pilot.press("p")
        await until(pilot, lambda: "cut at max_length 5" in screen_text(app))


async def test_long_findings_wrap_at_80_columns(ui_root: Path, tmp_path: Path) -> None:
    """A finding longer than its column wraps onto more rows instead of being cut at the screen edge."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "w1\n", "chosen": "w5", "rejected": "w5"}) + "\n"
                   + json.dumps({"prompt": "w1 w2\n", "chosen": "w3", "rejected": "w4"}) + "\n")
    app = DpoTuiApp(make_services(ui_root), dataset=str(bad))
    async with app.run_test(size=(80, 24)) as pilot:
        dataset = await to_dataset(pilot, app)
        assert dataset.report is not None and dataset.report.errors
        flat = " ".join(line.strip() for line in screen_text(app).splitlines())
        assert "fix or drop the row" in flat, screen_text(app)
        assert all(len(line.rstrip()) <= 80 for line in screen_text(app).splitlines())
