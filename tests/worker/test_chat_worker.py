"""The chat worker protocol, in a real subprocess, on the tiny model (CPU).

One worker serves most tests (module scope): starting one costs a few seconds of imports.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from dpo_tui.core import chat_protocol as P
from dpo_tui.core.chat_client import ChatClient, ChatError
from tests.worker.test_chat_support import ChatAssets, build_assets

Q1 = [{"role": "user", "content": "What is the capital of Kenya?"}]
Q2 = [{"role": "user", "content": "How many legs does a spider have? Answer in one sentence please."}]
GREEDY = P.GenerationSettings(max_new_tokens=24, greedy=True)


@pytest.fixture(scope="session")
def assets(tmp_path_factory) -> ChatAssets:
    return build_assets(tmp_path_factory.mktemp("chat-assets"))


@pytest.fixture(scope="module")
def worker(assets, tmp_path_factory):
    client = ChatClient(log_path=tmp_path_factory.mktemp("chat-log") / "worker.log")
    client.start()
    client.load_model(str(assets.base))
    client.load_adapter("a", assets.adapter_a)
    client.load_adapter("b", assets.adapter_b)
    yield client
    client.close()


def texts(result) -> list[str]:
    return [s["text"] for s in result["sides"]]


def test_streaming_order_two_sides(worker):
    events = list(worker.generate([P.side(P.BASE, Q1), P.side("a", Q1)], GREEDY))
    kinds = [e["type"] for e in events]
    assert kinds[0] == P.STARTED and kinds[-1] == P.DONE
    started = events[0]
    assert started["mode"] == "batched" and started["sides"] == 2 and len(started["prompt_tokens"]) == 2
    for side in (0, 1):
        mine = [e for e in events if e.get("side") == side]
        assert mine[-1]["type"] == P.SIDE_DONE, "a side's tokens all come before its side_done"
        assert all(e["type"] == P.TOKEN for e in mine[:-1])
        streamed = "".join(e["text"] for e in mine[:-1])
        done = mine[-1]
        assert streamed == done["text"]
        assert done["tokens"] >= 1 and done["finish_reason"] in ("eos", "length", "stop")
        assert done["ttft_s"] > 0 and done["tokens_per_s"] > 0 and done["elapsed_s"] >= done["ttft_s"]
        ns = [e["n"] for e in mine[:-1]]
        assert ns == sorted(ns)
    assert sum(1 for e in events if e["type"] == P.SIDE_DONE) == 2
    assert events[-1]["cancelled"] is False and events[-1]["memory"]["rss"] > 0


def test_batched_equals_single_and_sequential(worker):
    """Three sides (base, a, b; prompts of different lengths: left padding) = each side alone."""
    sides = [P.side(P.BASE, Q1), P.side("a", Q2), P.side("b", Q1)]
    batched = worker.reply(sides, GREEDY)
    sequential = worker.reply(sides, GREEDY, mode="sequential")
    singles = [worker.reply([s], GREEDY)["sides"][0]["text"] for s in sides]
    assert batched["started"]["mode"] == "batched"
    assert sequential["started"]["mode"] == "sequential"
    assert texts(batched) == singles == texts(sequential)
    assert len(set(texts(batched))) >= 2, "the adapters change the answers"


def test_adapters_of_different_ranks_and_targets_in_one_batch(worker, assets):
    worker.load_adapter("c", assets.adapter_c)
    try:
        sides = [P.side("a", Q1), P.side(P.BASE, Q1), P.side("c", Q2), P.side("b", Q1)]
        batched = worker.reply(sides, GREEDY)
        assert batched["started"]["mode"] == "batched"
        assert texts(batched) == [worker.reply([s], GREEDY)["sides"][0]["text"] for s in sides]
    finally:
        worker.unload_adapter("c")


def test_greedy_and_seeded_sampling_are_deterministic(worker):
    sides = [P.side(P.BASE, Q1), P.side("a", Q1)]
    assert texts(worker.reply(sides, GREEDY)) == texts(worker.reply(sides, GREEDY))
    sampled = P.GenerationSettings(max_new_tokens=24, temperature=1.5, top_p=0.98, seed=7)
    first = texts(worker.reply(sides, sampled))
    assert first == texts(worker.reply(sides, sampled))
    others = {tuple(texts(worker.reply(sides, P.GenerationSettings(max_new_tokens=24, temperature=1.5, seed=s)))) for s in range(1, 5)}
    assert len(others | {tuple(first)}) > 1, "a new seed gives a new answer"


def test_adapter_switch_and_unload(worker, assets):
    worker.load_adapter("switch", assets.adapter_a)
    with_a = worker.reply([P.side("switch", Q1)], GREEDY)["sides"][0]["text"]
    info = worker.load_adapter("switch", assets.adapter_b)  # same name, other weights
    assert info["mixable"] is True and "switch" in info["adapters"]
    with_b = worker.reply([P.side("switch", Q1)], GREEDY)["sides"][0]["text"]
    assert with_a == worker.reply([P.side("a", Q1)], GREEDY)["sides"][0]["text"]
    assert with_b == worker.reply([P.side("b", Q1)], GREEDY)["sides"][0]["text"]
    worker.unload_adapter("switch")
    with pytest.raises(ChatError) as exc:
        worker.reply([P.side("switch", Q1)], GREEDY)
    assert exc.value.kind == "unknown_adapter"


def test_errors_are_answers_and_the_worker_stays_up(worker, assets, tmp_path):
    with pytest.raises(ChatError) as exc:
        worker.load_adapter("other", assets.adapter_other)
    assert exc.value.kind == "adapter_mismatch" and "differs from the loaded base" in exc.value.message
    # the recorded base path often does not exist here: the tensor shapes still tell
    moved = tmp_path / "adapter-other-moved"
    shutil.copytree(assets.adapter_other, moved)
    cfg = json.loads((moved / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "/nonexistent/elsewhere/model"
    (moved / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ChatError) as exc:
        worker.load_adapter("other2", moved)
    assert exc.value.kind == "adapter_mismatch"
    with pytest.raises(ChatError) as exc:
        worker.load_adapter("nope", tmp_path)
    assert exc.value.kind == "adapter_load"
    with pytest.raises(ChatError) as exc:
        worker.load_adapter("bad.name", assets.adapter_a)
    assert exc.value.kind == "bad_request"
    with pytest.raises(ChatError) as exc:
        worker.reply([P.side(P.BASE, Q1)], {"temperature": 0})
    assert exc.value.kind == "bad_request" and "temperature" in exc.value.message
    with pytest.raises(ChatError) as exc:
        worker.reply([P.side(P.BASE, [{"role": "assistant", "content": "x"}])], GREEDY)
    assert exc.value.kind == "bad_request"
    with pytest.raises(ChatError) as exc:
        worker.request({"op": "dance"})
    assert exc.value.kind == "bad_request"
    assert worker.reply([P.side("a", Q1)], GREEDY)["sides"][0]["tokens"] >= 1


def test_stop_strings_end_a_side(worker):
    full = worker.reply([P.side(P.BASE, Q1)], P.GenerationSettings(max_new_tokens=40, greedy=True))["sides"][0]
    text = full["text"]
    if len(text.strip()) < 6:
        pytest.skip("greedy answer too short to cut")
    stop = text[3:6]
    cut = worker.reply([P.side(P.BASE, Q1)], P.GenerationSettings(max_new_tokens=40, greedy=True, stop=[stop]))["sides"][0]
    assert cut["finish_reason"] == "stop"
    assert cut["text"] == text[: text.find(stop)]


def test_cancel_stops_a_reply(worker):
    settings = P.GenerationSettings(max_new_tokens=480, greedy=True, ignore_eos=True)
    rid = None
    events = []
    for ev in worker.generate([P.side(P.BASE, Q1), P.side("a", Q1)], settings):
        events.append(ev)
        if ev["type"] == P.TOKEN and rid is None:
            rid = ev["id"]
            worker.cancel(rid)
    done = events[-1]
    assert done["type"] == P.DONE and done["cancelled"] is True
    finished = [e for e in events if e["type"] == P.SIDE_DONE]
    assert {e["finish_reason"] for e in finished} == {"cancelled"}
    assert all(e["tokens"] < 480 for e in finished)
    assert worker.reply([P.side(P.BASE, Q1)], GREEDY)["done"]["cancelled"] is False


def test_implicit_reward_matches_an_independent_computation(worker, assets):
    result = worker.reply([P.side(P.BASE, Q1), P.side("a", Q1)], GREEDY)
    rid = result["id"]
    by_ref = worker.score([{"adapter": "a", "beta": 0.1, "ref": {"request": rid, "side": s}} for s in (0, 1)])
    assert all(r["tokens"] >= 1 and r["adapter"] == "a" for r in by_ref)
    for r in by_ref:
        assert r["reward"] == pytest.approx(0.1 * (r["logp_policy"] - r["logp_base"]), rel=1e-5, abs=1e-6)
    # the tuned answer is more likely under the tuned model than under the base (it was sampled from it)
    assert by_ref[1]["reward"] > by_ref[0]["reward"]
    answer = "The capital of Kenya is Nairobi."
    got = worker.score([{"adapter": "a", "beta": 0.5, "messages": Q1, "answer": answer}])[0]
    want_policy, want_base = _reference_logps(assets, Q1, answer)
    assert got["logp_policy"] == pytest.approx(want_policy, rel=1e-4)
    assert got["logp_base"] == pytest.approx(want_base, rel=1e-4)
    assert got["reward"] == pytest.approx(0.5 * (want_policy - want_base), rel=1e-3, abs=1e-4)
    with pytest.raises(ChatError) as exc:
        worker.score([{"adapter": P.BASE, "beta": 0.1, "ref": {"request": rid, "side": 0}}])
    assert exc.value.kind == "unknown_adapter"


def _reference_logps(assets: ChatAssets, messages, answer: str) -> tuple[float, float]:
    """Sum of answer-token log-probs (incl. EOS) with plain transformers + PEFT, adapter on and off."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(assets.base)
    prompt = tok(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False), add_special_tokens=False)["input_ids"]
    ans = tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(assets.base), assets.adapter_a).eval()
    ids = torch.tensor([prompt + ans])

    def logp() -> float:
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
        return float(torch.log_softmax(logits, -1).gather(1, torch.tensor(ans)[:, None]).sum())

    policy = logp()
    with model.disable_adapter():
        base = logp()
    return policy, base


def test_memory_request(worker):
    mem = worker.memory()
    assert mem["type"] == P.MEMORY_INFO and mem["rss"] > 10 * 2**20


def test_fresh_worker_hello_errors_and_oom_recovery(assets, tmp_path):
    """A new worker says hello, answers requests made too early, and survives an OOM (injected once)."""
    env = dict(os.environ, DPO_TUI_CHAT_FAULT="oom@generate")
    with ChatClient(log_path=tmp_path / "w.log", env=env) as client:
        first = client.recv(timeout=60)
        assert first["type"] == P.HELLO and first["v"] == P.PROTOCOL_VERSION and first["pid"] == client.pid
        with pytest.raises(ChatError) as exc:
            client.reply([P.side(P.BASE, Q1)], GREEDY)
        assert exc.value.kind == "no_model"
        with pytest.raises(ChatError) as exc:
            client.load_model(str(tmp_path / "missing-model"))
        assert exc.value.kind == "not_found"
        info = client.load_model(str(assets.base))
        assert client.ready and "torch" in client.ready
        assert info["chat_template"] == "model"
        assert info["device"] == "cpu" and info["dtype"] == "float32"
        assert info["parameters"] > 100_000 and info["memory"]["rss"] > 0
        with pytest.raises(ChatError) as exc:
            client.reply([P.side(P.BASE, Q1)], GREEDY)
        assert exc.value.kind == "oom" and "out of memory" in exc.value.message
        assert "max new tokens" in exc.value.hint
        assert client.reply([P.side(P.BASE, Q1)], GREEDY)["sides"][0]["tokens"] >= 1
    assert client.proc.returncode == 0


def test_crash_restart_and_a_model_without_chat_template(assets, tmp_path):
    env = dict(os.environ, DPO_TUI_CHAT_FAULT="crash@generate")
    client = ChatClient(log_path=tmp_path / "w.log", env=env)
    try:
        client.start()
        client.load_model(str(assets.base))
        with pytest.raises(ChatError) as exc:
            client.reply([P.side(P.BASE, Q1)], GREEDY)
        assert exc.value.kind == "crashed"
        assert "exit code 70" in exc.value.message and "simulated crash" in exc.value.message
        client.env = None  # the restarted worker runs without the fault
        client.restart()
        warnings: list[dict] = []
        info = client.load_model(str(assets.no_template), on_other=warnings.append)
        assert info["chat_template"] == "plain"
        assert any(w.get("kind") == "no_chat_template" and "plain" in w["message"] for w in warnings)
        assert client.reply([P.side(P.BASE, Q1)], GREEDY)["sides"][0]["tokens"] >= 1
        # a kill from outside (the OOM killer) reads the same way
        pid = client.pid
        client.kill()
        with pytest.raises(ChatError) as exc:
            client.reply([P.side(P.BASE, Q1)], GREEDY)
        assert exc.value.kind == "crashed" and "signal 9" in exc.value.message
        assert _zombie_or_gone(pid)
    finally:
        client.close()


def _zombie_or_gone(pid: int) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def test_close_ends_the_process_group(assets, tmp_path):
    client = ChatClient(log_path=tmp_path / "w.log").start()
    assert client.recv(timeout=60)["type"] == P.HELLO
    pid = client.pid
    assert os.getpgid(pid) == pid, "the worker leads its own process group"
    client.close()
    assert client.proc.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
