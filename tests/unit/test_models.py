"""Model discovery on fake folders and a fake Hugging Face cache: facts, exact counts, broken folders."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest

from dpo_tui.core import hub, models
from dpo_tui.core.errors import UserError

DTYPE_BYTES = {"BF16": 2, "F16": 2, "F32": 4}

LLAMA_CFG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 176,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 300,
    "max_position_embeddings": 512,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
}


def write_safetensors(path: Path, tensors: dict[str, tuple[str, tuple[int, ...]]]) -> int:
    """A valid safetensors file of zeros; returns its parameter count."""
    header: dict = {}
    offset = 0
    count = 0
    for name, (dtype, shape) in tensors.items():
        n = 1
        for d in shape:
            n *= d
        size = n * DTYPE_BYTES[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
        count += n
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)
    return count


def llama_tensors(cfg: dict, tied: bool = True) -> dict[str, tuple[str, tuple[int, ...]]]:
    h, i, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    a, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = h // a
    t: dict[str, tuple[str, tuple[int, ...]]] = {"model.embed_tokens.weight": ("BF16", (V, h)), "model.norm.weight": ("BF16", (h,))}
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        t[p + "self_attn.q_proj.weight"] = ("BF16", (a * hd, h))
        t[p + "self_attn.k_proj.weight"] = ("BF16", (kv * hd, h))
        t[p + "self_attn.v_proj.weight"] = ("BF16", (kv * hd, h))
        t[p + "self_attn.o_proj.weight"] = ("BF16", (h, a * hd))
        t[p + "mlp.gate_proj.weight"] = ("BF16", (i, h))
        t[p + "mlp.up_proj.weight"] = ("BF16", (i, h))
        t[p + "mlp.down_proj.weight"] = ("BF16", (h, i))
        t[p + "input_layernorm.weight"] = ("BF16", (h,))
        t[p + "post_attention_layernorm.weight"] = ("BF16", (h,))
    if not tied:
        t["lm_head.weight"] = ("BF16", (V, h))
    return t


def make_model(folder: Path, cfg: dict | None = None, *, tokenizer: bool = True, template: bool = True, weights: bool = True) -> int:
    cfg = dict(cfg or LLAMA_CFG)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    if tokenizer:
        (folder / "tokenizer.json").write_text("{}")
        tok_cfg = {"eos_token": "</s>"}
        if template:
            tok_cfg["chat_template"] = "{{ messages }}"
        (folder / "tokenizer_config.json").write_text(json.dumps(tok_cfg))
    if weights:
        return write_safetensors(folder / "model.safetensors", llama_tensors(cfg, tied=cfg.get("tie_word_embeddings", True)))
    return 0


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No real cache, no network, a fake bundled sample."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    sample_root = tmp_path / "sample_data"
    monkeypatch.setenv("DPO_TUI_SAMPLE_DATA", str(sample_root))
    make_model(sample_root / "tiny-chat")
    return tmp_path


def make_cache_repo(cache: Path, repo_id: str, files: dict[str, bytes], rev: str = "a" * 40) -> Path:
    """models--org--name/{blobs,refs/main,snapshots/<rev>/<file> → ../../blobs/<sha>}."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(rev)
    snap = repo / "snapshots" / rev
    snap.mkdir(parents=True, exist_ok=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for i, (name, data) in enumerate(files.items()):
        blob = repo / "blobs" / f"{i:040x}"
        blob.write_bytes(data)
        (snap / name).symlink_to(Path("../../blobs") / blob.name)
    return snap


def test_folder_facts_and_exact_param_count(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    count = make_model(folder)
    info = models.inspect_dir(folder)
    assert info.error is None, info.error
    assert info.param_count == count and info.param_source == "safetensors"
    assert info.architecture == "LlamaForCausalLM" and info.model_type == "llama"
    assert (info.num_layers, info.hidden_size, info.intermediate_size) == (2, 64, 176)
    assert (info.num_heads, info.num_kv_heads, info.head_dim) == (4, 2, 16)
    assert info.vocab_size == 300 and info.context_length == 512
    assert info.tied_embeddings is True and info.dtype == "bfloat16"
    assert info.has_chat_template and info.has_tokenizer
    assert info.size_bytes and info.size_bytes > count * 2
    q = info.linear_groups["q_proj"]
    assert (q.count, q.in_features, q.out_features) == (2, 128, 128)
    assert info.linear_groups["down_proj"].d_in == 176
    # config arithmetic agrees with the headers for a Llama
    assert models.config_param_count(models.info_from_config(LLAMA_CFG)) == count


def test_untied_detected_from_weights_when_config_is_silent(tmp_path: Path) -> None:
    cfg = {k: v for k, v in LLAMA_CFG.items() if k != "tie_word_embeddings"}
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "tokenizer.json").write_text("{}")
    write_safetensors(folder / "model.safetensors", llama_tensors(LLAMA_CFG, tied=False))
    info = models.inspect_dir(folder)
    assert info.tied_embeddings is False
    assert not info.has_chat_template


def test_sharded_weights_and_missing_shard(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    make_model(folder, weights=False)
    tensors = llama_tensors(LLAMA_CFG)
    names = list(tensors)
    half = len(names) // 2
    a = write_safetensors(folder / "model-00001-of-00002.safetensors", {n: tensors[n] for n in names[:half]})
    b = write_safetensors(folder / "model-00002-of-00002.safetensors", {n: tensors[n] for n in names[half:]})
    index = {"weight_map": {n: ("model-00001-of-00002.safetensors" if k < half else "model-00002-of-00002.safetensors") for k, n in enumerate(names)}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    assert models.inspect_dir(folder).param_count == a + b
    (folder / "model-00002-of-00002.safetensors").unlink()
    info = models.inspect_dir(folder)
    assert info.error and "missing shard" in info.error


def test_broken_folders_are_listed_with_reasons(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_model(root / "good")
    make_model(root / "no-tokenizer", tokenizer=False)
    no_cfg = root / "no-config"
    no_cfg.mkdir(parents=True)
    write_safetensors(no_cfg / "model.safetensors", {"w": ("BF16", (2, 2))})
    corrupt = root / "corrupt"
    make_model(corrupt, weights=False)
    (corrupt / "model.safetensors").write_bytes(struct.pack("<Q", 10_000) + b"{not json")
    bad_json = root / "bad-json"
    bad_json.mkdir()
    (bad_json / "config.json").write_text("{oops")
    (bad_json / "tokenizer.json").write_text("{}")
    found = {m.name: m for m in models.scan_root(root)}
    assert set(found) == {"good", "no-tokenizer", "no-config", "corrupt", "bad-json"}
    assert found["good"].error is None
    assert "tokenizer" in found["no-tokenizer"].error
    assert found["no-tokenizer"].param_count  # facts still there for an estimate
    assert "no config.json" in found["no-config"].error
    assert "corrupt safetensors header" in found["corrupt"].error
    assert "config.json" in found["bad-json"].error and "line" in found["bad-json"].error
    assert all(m.source == "settings-root" for m in found.values())


def test_truncated_safetensors_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    make_model(folder)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    info = models.inspect_dir(folder)
    assert info.error and "truncated" in info.error


def test_scan_depth_two_and_adapters_linked(tmp_path: Path) -> None:
    root = tmp_path / "root"
    base = root / "org" / "base-model"
    make_model(base)
    adapter = root / "runs" / "run1" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8, "target_modules": ["q_proj", "v_proj"], "base_model_name_or_path": str(base)}))
    write_safetensors(adapter / "adapter_model.safetensors", {"a.lora_A.weight": ("F32", (8, 64)), "a.lora_B.weight": ("F32", (64, 8))})
    too_deep = root / "a" / "b" / "c" / "model"
    make_model(too_deep)
    found = models.discover_models(extra_roots=[root], include_cache=False)
    names = [m.name for m in found]
    assert names[0] == models.SAMPLE_NAME and found[0].source == "sample"
    by_path = {m.path: m for m in found}
    assert str(base) in by_path
    assert str(too_deep) not in by_path  # more than two levels below the root
    # the adapter three levels down is not scanned, but inspecting it works and links by path
    info = models.inspect_dir(adapter)
    assert info.is_adapter and info.base_model == str(base) and info.adapter_rank == 8
    assert info.param_count == 8 * 64 * 2
    models.link_adapters([by_path[str(base)], info])
    assert by_path[str(base)].adapters == [str(adapter)]


def test_adapter_inside_model_folder_is_found(tmp_path: Path) -> None:
    root = tmp_path / "root"
    base = root / "base"
    make_model(base)
    adapter = base / "my-adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "base_model_name_or_path": str(base)}))
    write_safetensors(adapter / "adapter_model.safetensors", {"x.lora_A.weight": ("F32", (4, 64))})
    found = models.discover_models(extra_roots=[root], include_cache=False)
    base_info = next(m for m in found if m.path == str(base))
    assert base_info.adapters == [str(adapter)]
    broken = base / "broken-adapter"
    broken.mkdir()
    (broken / "adapter_config.json").write_text("{}")
    info = models.inspect_dir(broken)
    assert info.is_adapter and "adapter_model" in info.error


def test_hf_cache_repo_id_revision_size(isolated: Path) -> None:
    cache = isolated / "hf" / "hub"
    rev = "0123456789abcdef0123456789abcdef01234567"
    tmp = isolated / "build"
    count = make_model(tmp)
    files = {p.name: p.read_bytes() for p in tmp.iterdir()}
    snap = make_cache_repo(cache, "acme/tiny-llama", files, rev=rev)
    make_cache_repo(cache, "acme/config-only", {"config.json": json.dumps(LLAMA_CFG).encode()}, rev="b" * 40)
    (cache / "datasets--acme--prefs").mkdir(parents=True)
    found = {m.name: m for m in models.discover_models()}
    assert models.SAMPLE_NAME in found
    tiny = found["acme/tiny-llama"]
    assert tiny.source == "hf-cache" and tiny.repo_id == "acme/tiny-llama" and tiny.revision == rev
    assert tiny.path == str(snap)
    assert tiny.param_count == count and tiny.error is None
    assert tiny.size_bytes == sum(len(b) for b in files.values())
    partial = found["acme/config-only"]
    assert partial.error is None  # a config-only snapshot is usable for estimates
    assert partial.param_source == "config" and partial.param_count == count
    assert any("not downloaded" in w for w in partial.warnings)
    assert not any(m.name.startswith("acme/prefs") for m in found.values())


def test_hf_hub_cache_env_wins(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = isolated / "elsewhere"
    tmp = isolated / "build"
    make_model(tmp)
    make_cache_repo(other, "x/y", {p.name: p.read_bytes() for p in tmp.iterdir()})
    monkeypatch.setenv("HF_HUB_CACHE", str(other))
    assert hub.hub_cache_dir() == other
    assert [m.name for m in models.scan_hf_cache()] == ["x/y"]


def test_inspect_model_specs(isolated: Path) -> None:
    assert models.inspect_model("sample").source == "sample"
    tmp = isolated / "build"
    make_model(tmp)
    make_cache_repo(isolated / "hf" / "hub", "acme/tiny", {p.name: p.read_bytes() for p in tmp.iterdir()})
    hub = models.inspect_model("acme/tiny")
    assert hub.source == "hf-cache" and hub.error is None
    missing = models.inspect_model("acme/not-cached")
    assert missing.error and "cache" in missing.error  # offline: no network attempt
    cfg = models.inspect_model(str(tmp / "config.json"))
    assert cfg.param_source == "config" and cfg.num_layers == 2
    assert models.inspect_model(str(tmp)).param_source == "safetensors"
    with pytest.raises(UserError):
        models.inspect_model("./definitely/not/here")
    with pytest.raises(UserError):
        models.inspect_model("")


def test_sample_missing_is_listed_not_hidden(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DPO_TUI_SAMPLE_DATA", str(tmp_path / "none"))
    first = models.discover_models(include_cache=False)[0]
    assert first.name == models.SAMPLE_NAME and first.error


def test_config_arithmetic_matches_published_counts() -> None:
    qwen05 = {"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
              "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True}
    assert models.info_from_config(qwen05).param_count == 494_032_768
    llama8 = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
              "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False}
    assert models.info_from_config(llama8).param_count == 8_030_261_248
    gpt2 = {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "vocab_size": 50257, "n_positions": 1024}
    info = models.info_from_config(gpt2)
    assert info.hidden_size == 768 and info.intermediate_size == 3072 and info.tied_embeddings
    assert info.context_length == 1024 and not info.mlp_gated
    multimodal = {"model_type": "llava", "architectures": ["LlavaForConditionalGeneration"], "text_config": llama8}
    assert models.info_from_config(multimodal).num_layers == 32


def test_quantized_checkpoint_counts_from_config(tmp_path: Path) -> None:
    cfg = dict(LLAMA_CFG, quantization_config={"quant_method": "bitsandbytes", "load_in_4bit": True})
    folder = tmp_path / "q"
    make_model(folder, cfg)
    info = models.inspect_dir(folder)
    assert info.quantization and info.quantization["quant_method"] == "bitsandbytes"
    assert info.param_source == "config" and info.weight_bytes


def test_discovery_is_fast(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for k in range(30):
        make_model(root / f"m{k}")
    start = time.perf_counter()
    found = models.discover_models(extra_roots=[root], include_cache=False)
    assert len(found) == 31
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("var", ["DPO_TUI_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_offline_variables_stop_the_config_fetch(var: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    for name in ("DPO_TUI_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(var, "1")

    def no_network(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("fetched while offline")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    info = models.inspect_model("acme/not-cached")
    assert info.error is not None and var in info.error
