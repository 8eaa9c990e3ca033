"""The reward-model judge: a local ``AutoModelForSequenceClassification`` scores each answer; higher wins.

An answer is scored as the conversation "user: prompt, assistant: answer" written with the tokenizer's chat
template (``User: …\\n\\nAssistant: …`` when it has none). A model with one label gives the score directly;
one with two labels gives ``logit[1] - logit[0]`` (the "good" class against the "bad" one). Scores are cached
per (prompt, answer), so asking both orders costs one forward per answer, and :meth:`score_many` batches.

Text longer than the model's context loses the start of the prompt, never the answer: the score is what the
model makes of the answer, and the end of the prompt is what the answer replies to.

Building refuses (:class:`UserError`) a folder that is not a sequence-classification model — loading a causal
LM through ``AutoModelForSequenceClassification`` would "work" with a random score head and judge by noise.
"""

from __future__ import annotations

import gc
import threading
from pathlib import Path
from typing import Any

from ..core.errors import Problem, UserError, first_line
from ..core.judge import JudgeSpec, Verdict

TIE_EPS = 1e-6
# Used when neither the tokenizer nor the config states a usable context length.
FALLBACK_MAX_LENGTH = 4096
# Tokenizers without a limit report a huge sentinel (int(1e30)).
_NO_LIMIT = 1_000_000
_HEAD_NAMES = ("score", "classifier", "v_head", "summary")


def _refuse(folder: Path, what: str, hint: str) -> UserError:
    return UserError("Cannot use this folder as a reward-model judge",
                     [Problem(what, file=str(folder / "config.json"), field="--judge rm=")], hint=hint)


class RewardModelJudge:
    """Scores answers with a sequence-classification model; :meth:`compare` says the higher score wins."""

    def __init__(self, spec: JudgeSpec, device: str = "auto", batch_size: int = 8) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        if spec.kind != "reward_model":
            raise ValueError(f"not a reward-model spec: {spec.label}")
        self.spec = spec
        self.name = spec.label
        self.batch_size = max(1, batch_size)
        self._torch = torch
        folder = Path(spec.path).expanduser()
        fix = "give the folder of a saved AutoModelForSequenceClassification (a reward model), e.g. one trained with TRL's RewardTrainer"
        try:
            config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
        except (OSError, ValueError, KeyError) as exc:
            raise _refuse(folder, f"the config cannot be read: {first_line(exc)}", fix) from None
        architectures = list(getattr(config, "architectures", None) or [])
        if not any(name.endswith("ForSequenceClassification") for name in architectures):
            named = ", ".join(architectures) or "no architecture"
            raise _refuse(folder, f"the model is {named}, not a sequence-classification model", fix)
        num_labels = int(getattr(config, "num_labels", 1) or 1)
        if num_labels not in (1, 2):
            raise _refuse(folder, f"the model has {num_labels} labels (a reward model has 1, or 2 for bad/good)", fix)
        self.device = self._pick_device(device, folder)
        dtype = torch.float32
        if self.device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
            model, info = AutoModelForSequenceClassification.from_pretrained(
                folder, dtype=dtype, trust_remote_code=False, output_loading_info=True)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise _refuse(folder, f"the model or tokenizer cannot be loaded: {first_line(exc)}", fix) from None
        missing = [key for key in info.get("missing_keys", ()) if key.split(".")[0] in _HEAD_NAMES]
        if missing:
            raise _refuse(folder, f"the weights have no score head ({', '.join(sorted(missing)[:3])} missing)", fix)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        if tokenizer.pad_token_id is None:
            raise _refuse(folder, "the tokenizer has no pad, end or unknown token to pad a batch with", fix)
        if model.config.pad_token_id is None:
            # Sequence-classification heads read the last non-pad token; without a pad id they refuse batches.
            model.config.pad_token_id = tokenizer.pad_token_id
        # Right padding keeps every token at the position it has when scored alone: a batched score equals a single one.
        tokenizer.padding_side = "right"
        tokenizer.truncation_side = "left"
        self.tokenizer = tokenizer
        self.model = model.to(self.device).eval()
        self.num_labels = num_labels
        self.max_length = self._max_length(tokenizer, config)
        self._has_template = bool(getattr(tokenizer, "chat_template", None))
        self._cache: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self.forwards = 0
        self.calls = 0
        self.failures = 0

    def __repr__(self) -> str:
        return f"RewardModelJudge({self.name!r}, device={str(self.device)!r})"

    # --- setup -------------------------------------------------------------------------------------
    def _pick_device(self, spec: str, folder: Path) -> Any:
        torch = self._torch
        if spec == "auto":
            return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
        try:
            device = torch.device(spec)
        except (RuntimeError, ValueError):
            raise _refuse(folder, f"unknown device {spec!r}", "use auto, cpu or cuda:N") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise _refuse(folder, f"device {spec} asked for, but no CUDA GPU is visible", "use auto or cpu")
        return device

    @staticmethod
    def _max_length(tokenizer: Any, config: Any) -> int:
        limits = [value for value in (getattr(tokenizer, "model_max_length", None), getattr(config, "max_position_embeddings", None))
                  if isinstance(value, int) and 0 < value < _NO_LIMIT]
        return min(limits) if limits else FALLBACK_MAX_LENGTH

    # --- text ---------------------------------------------------------------------------------------
    def format(self, prompt: str, answer: str) -> str:
        """The text the model scores for ``answer`` to ``prompt``."""
        if self._has_template:
            messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
            try:
                return str(self.tokenizer.apply_chat_template(messages, tokenize=False))
            except Exception:  # noqa: BLE001 - a template that rejects this conversation falls back to plain text
                self._has_template = False
        return f"User: {prompt}\n\nAssistant: {answer}"

    def _encode(self, text: str) -> list[int]:
        # A chat template writes its own BOS; plain text gets the tokenizer's special tokens.
        return list(self.tokenizer(text, add_special_tokens=not self._has_template)["input_ids"])

    def _ids(self, prompt: str, answer: str) -> list[int]:
        """Token ids of one scored text, the prompt shortened from its start until the whole fits."""
        ids = self._encode(self.format(prompt, answer))
        prompt_ids = list(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        margin = 0
        while len(ids) > self.max_length and prompt_ids:
            # Tokenization is not additive across a cut: drop a little extra and measure again.
            margin += 4
            prompt_ids = prompt_ids[len(ids) - self.max_length + margin:]
            shortened = self.tokenizer.decode(prompt_ids, skip_special_tokens=True)
            ids = self._encode(self.format(shortened, answer))
        if len(ids) > self.max_length:
            # The answer alone is too long: keep its end, where the head reads the score.
            ids = ids[-self.max_length:]
        return ids

    # --- scoring ------------------------------------------------------------------------------------
    def score_many(self, pairs: list[tuple[str, str]]) -> list[float]:
        """Scores for (prompt, answer) pairs, in order; cached ones cost nothing, the rest go in batches."""
        with self._lock:
            todo = list(dict.fromkeys(pair for pair in pairs if pair not in self._cache))
            encoded = sorted(((self._ids(*pair), pair) for pair in todo), key=lambda item: len(item[0]))
            for start in range(0, len(encoded), self.batch_size):
                chunk = encoded[start:start + self.batch_size]
                for pair, score in zip((pair for _, pair in chunk), self._forward([ids for ids, _ in chunk]), strict=True):
                    self._cache[pair] = score
            return [self._cache[pair] for pair in pairs]

    def score(self, prompt: str, answer: str) -> float:
        return self.score_many([(prompt, answer)])[0]

    def _forward(self, batch: list[list[int]]) -> list[float]:
        torch = self._torch
        width = max(len(ids) for ids in batch)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids in batch], device=self.device)
        mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in batch], device=self.device)
        with torch.inference_mode():
            logits = self.model(input_ids=input_ids, attention_mask=mask).logits.float()
        self.forwards += len(batch)
        values = logits[:, 1] - logits[:, 0] if self.num_labels == 2 else logits[:, 0]
        return [float(value) for value in values.cpu()]

    def compare(self, prompt: str, a: str, b: str) -> Verdict:
        self.calls += 1
        try:
            score_a, score_b = self.score_many([(prompt, a), (prompt, b)])
        except (RuntimeError, ValueError) as exc:
            # Out of memory on a very long answer, a tokenizer that chokes on one text: that pair only.
            self.failures += 1
            return Verdict(None, f"no verdict: scoring failed: {first_line(exc)}")
        reason = f"score {score_a:.2f} vs {score_b:.2f}"
        if abs(score_a - score_b) <= TIE_EPS:
            return Verdict("tie", reason)
        return Verdict("a" if score_a > score_b else "b", reason)

    def close(self) -> None:
        """Free the model (and its GPU memory) now rather than at garbage collection."""
        self.model = None
        self._cache.clear()
        gc.collect()
        if self._torch.cuda.is_available():
            self._torch.cuda.empty_cache()
