"""The scanner: one pass over a source's records, linting each row and normalizing it to what TRL trains on.

:class:`Scan` is the one pass behind every entry point (load, check, stream). Its rows are normalized by
:class:`_Scanner`, which holds the per-row rules of every shape; they share state (the plans, the shape counts,
the duplicate set, the length arrays) on a hot path, so this stays one cohesive module of about 600 lines
rather than being cut apart mid-rule.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from dataclasses import field as _field
from typing import Any

from ..errors import UserError
from .findings import (
    LENGTH_RATIO,
    LENGTH_RATIO_MIN_CHARS,
    MAX_FINDING_LINES,
    VALID_ROLES,
    DataReport,
    Finding,
    Findings,
    percentiles,
)
from .plan import (
    ROLE_CONTENT,
    ROLE_MAP,
    ROLES,
    SPACE,
    TEMPLATE_MARKERS,
    Plan,
    common_prefix,
    is_hh,
    make_plan,
    parse_hh,
    type_name,
    value_kind,
)
from .readers import NOT_PARSED, Reader
from .sources import resolve_source


class _Scanner:
    def __init__(self, column_map: dict[str, str] | None, keep: bool,
                 on_row: Callable[[int, dict], None] | None = None) -> None:
        self.column_map = dict(column_map or {})
        bad = [k for k in self.column_map if k not in ROLES]
        if bad:
            raise UserError(
                f"unknown column mapping target(s): {', '.join(bad)}",
                hint="map one of prompt, chosen, rejected, system, e.g. --map prompt=question",
            )
        self.f = Findings()
        self.keep = keep
        self.on_row = on_row
        self.rows: list[dict] = []
        self.plans: dict[tuple, Plan] = {}
        self.decisions: list[str] = []
        self._decided: set[str] = set()
        self.shape: str | None = None
        self.fmt: str | None = None
        self.shapes: dict[tuple[str, str], _ShapeCount] = {}
        self.row_sig = array("b")
        self._sig: tuple[str, str] = ("unknown", "standard")
        self._row_sharegpt = False
        self._fast_rec: _ShapeCount | None = None
        self.total = 0
        self.usable = 0
        self.seen: set[int] = set()
        self.lp, self.lc, self.lr = array("I"), array("I"), array("I")  # 4 bytes a row each
        self.file: str | None = None
        self.sharegpt = False
        self.parts_content = False
        self.dropped_keys: set[str] = set()

    # -- helpers -------------------------------------------------------------------------------------------
    def decide(self, text: str) -> None:
        if text not in self._decided:
            self._decided.add(text)
            self.decisions.append(text)

    def err(self, code: str, message: str, line: int, fld: str | None = None) -> None:
        self.f.add(code, message, line=line, field=fld, file=self.file)

    def _plan(self, obj: dict, line: int) -> Plan:
        key = tuple(obj)
        plan = self.plans.get(key)
        if plan is None:
            plan = make_plan(key, self.column_map)
            first = not self.plans
            self.plans[key] = plan
            where = "" if first else f"rows with columns {', '.join(key)} (first at line {line}): "
            for d in plan.decisions:
                self.decide(where + d)
        return plan

    def _msgs(self, value: Any, fld: str, line: int, role_default: str | None = None) -> list[dict] | None:
        """Normalize a message list (or one message object) to [{"role", "content"}]; None after an error."""
        if type(value) is list:  # already {"role", "content"} with a known role and text: keep as is
            for m in value:
                if type(m) is not dict or len(m) != 2 or type(m.get("content")) is not str or (
                        m.get("role") not in VALID_ROLES):
                    break
            else:
                return value
        items = [value] if isinstance(value, dict) else value
        out = []
        for m in items:
            if not isinstance(m, dict):
                self.err("message", f"a message is {type_name(m)}, not an object with role and content", line, fld)
                return None
            if "role" in m:
                role, content = m.get("role"), m.get("content", NOT_PARSED)
                if content is NOT_PARSED and "value" in m:
                    content = m["value"]
            elif "from" in m:
                self.sharegpt = self._row_sharegpt = True
                role, content = m.get("from"), m.get("value", NOT_PARSED)
            else:
                self.err("message", "a message without 'role' (or ShareGPT 'from')", line, fld)
                return None
            if len(m) > 2:
                extra = [k for k, v in m.items() if k not in ("role", "content", "from", "value") and v is not None]
                if extra:
                    self.dropped_keys.update(extra)
            norm_role = ROLE_MAP.get(role.lower() if isinstance(role, str) else role)
            if norm_role is None:
                self.err("unknown-role", f"unknown role {role!r} (expected system, user, assistant or tool)",
                         line, fld)
                return None
            if content is NOT_PARSED:
                self.err("message", f"a {norm_role} message without 'content'", line, fld)
                return None
            if isinstance(content, list):
                texts = []
                for part in content:
                    if isinstance(part, dict) and part.get("type", "text") == "text":
                        t = part.get("text", part.get("value"))
                        if isinstance(t, str):
                            texts.append(t)
                            continue
                    if isinstance(part, str):
                        texts.append(part)
                        continue
                    self.err("message", "message content holds a non-text part (only text is supported)", line, fld)
                    return None
                self.parts_content = True
                content = "".join(texts)
            elif content is None:
                self.err("null-field", f"a {norm_role} message has null content", line, fld)
                return None
            elif not isinstance(content, str):
                self.err("message", f"a {norm_role} message content is {type_name(content)}, not text", line, fld)
                return None
            out.append({"role": norm_role, "content": content})
        return out

    # -- the per-row work ----------------------------------------------------------------------------------
    def feed(self, line: int, obj: Any) -> None:
        """Lint and normalize one record. The common case (plain standard row) stays on a short path."""
        if type(obj) is dict:
            plan = self.plans.get(tuple(obj))
            if plan is not None and plan.fast:
                p = obj["prompt"]
                c = obj["chosen"]
                r = obj["rejected"]
                if (
                    type(p) is str and type(c) is str and type(r) is str
                    and p and c and r and c != r
                    and not (p.isspace() or c.isspace() or r.isspace())
                    and "<" not in p and "<" not in c and "<" not in r and "[INST]" not in p
                    and (p[-1] in SPACE or (c[0] in SPACE and r[0] in SPACE))
                ):
                    lc = len(c)
                    lr = len(r)
                    if lc < LENGTH_RATIO_MIN_CHARS and lr < LENGTH_RATIO_MIN_CHARS:
                        key = hash((p, c, r))
                        if key not in self.seen:
                            self.seen.add(key)
                            self.total += 1
                            self.usable += 1
                            self.lp.append(len(p))
                            self.lc.append(lc)
                            self.lr.append(lr)
                            rec = self._fast_rec
                            if rec is None:
                                self._sig = ("standard-explicit", "standard")
                                rec = self._shape_record(line)
                                self._fast_rec = rec
                            rec.count += 1
                            if rec.count <= MAX_FINDING_LINES:
                                rec.lines.append(line)
                            if self.keep:
                                self.rows.append({"prompt": p, "chosen": c, "rejected": r})
                                self.row_sig.append(rec.index)
                            if self.on_row is not None:
                                self.on_row(line, self.rows[-1] if self.keep else
                                            {"prompt": p, "chosen": c, "rejected": r})
                            return
        self._feed_slow(line, obj)

    def _shape_record(self, line: int) -> _ShapeCount:
        rec = self.shapes.get(self._sig)
        if rec is None:
            rec = self.shapes[self._sig] = _ShapeCount(len(self.shapes), line, self.file)
        return rec

    def _feed_slow(self, line: int, obj: Any) -> None:
        self.total += 1
        self._row_sharegpt = False
        if obj is NOT_PARSED:
            return
        if not isinstance(obj, dict):
            self.err("not-object", f"row is {type_name(obj)}, not a JSON object with prompt/chosen/rejected", line)
            return
        plan = self._plan(obj, line)
        if plan.ambiguous:
            self.err("ambiguous-columns", plan.ambiguous, line)
            return
        if plan.missing:
            for fld, msg in plan.missing:
                self.err("missing-field", msg, line, fld)
            return
        if plan.images and obj.get("images", obj.get("image")) is not None:
            self.err("images", "rows with images (vision DPO) are not supported", line, "images")
            return
        for code, fld, msg in plan.warnings:
            if obj.get(fld) is not None:
                self.err(code, msg, line, fld)
        c = obj[plan.chosen]
        r = obj[plan.rejected]
        p = obj[plan.prompt] if plan.prompt else NOT_PARSED
        bad = False
        for col, v in ((plan.prompt, p), (plan.chosen, c), (plan.rejected, r)):
            if v is None:
                self.err("null-field", f"'{col}' is null", line, col)
                bad = True
        if bad:
            return
        kc, kr = value_kind(c), value_kind(r)
        kp = value_kind(p) if p is not NOT_PARSED else "-"
        if plan.input is not None and kp == "s":
            extra = obj.get(plan.input)
            if isinstance(extra, str) and extra.strip():
                p = p + "\n" + extra
        system = obj.get(plan.system) if plan.system else None
        if system is not None and not isinstance(system, str):
            self.err("type", f"'{plan.system}' is {type_name(system)}, expected text", line, plan.system)
            return

        # ---- fast path: standard explicit strings ----------------------------------------------------
        if kp == "s" and kc == "s" and kr == "s" and not plan.system:
            self._standard(line, p, c, r, "standard-explicit", obj, plan)
            return
        for col, k, v in ((plan.prompt, kp, p), (plan.chosen, kc, c), (plan.rejected, kr, r)):
            if k == "x":
                self.err("type", f"'{col}' is {type_name(v)}, expected text or a list of messages", line, col)
                bad = True
        if bad:
            return
        if kp == "-" and kc == "s" and kr == "s":
            if is_hh(c) and is_hh(r):
                self._conversational(line, None, parse_hh(c), parse_hh(r), "hh-rlhf", obj, plan, system)
            else:
                self._implicit_standard(line, c, r, obj, plan, system)
            return
        if kp == "s" and kc == "s" and kr == "s":  # with a system column
            self._conversational(line, [{"role": "user", "content": p}], [{"role": "assistant", "content": c}],
                                 [{"role": "assistant", "content": r}], "standard-explicit", obj, plan, system)
            return
        # conversational in some way; 'e' (empty list) is compatible with messages
        pm = None
        if kp in ("m", "d", "e"):
            pm = self._msgs(p, plan.prompt, line) if kp != "e" else []
            if pm is None:
                return
        cm = self._completion(c, kc, plan.chosen, line)
        rm = self._completion(r, kr, plan.rejected, line)
        if cm is None or rm is None:
            return
        if kp == "-":
            shape = "conversational-implicit"
            self._conversational(line, None, cm, rm, shape, obj, plan, system)
        elif kp == "s":
            self._ultrafeedback(line, p, cm, rm, obj, plan, system)
        else:
            shape = "sharegpt" if self._row_sharegpt else "conversational-explicit"
            self._conversational(line, pm, cm, rm, shape, obj, plan, system)

    def _completion(self, v: Any, k: str, col: str, line: int) -> list[dict] | None:
        if k == "s":
            return [{"role": "assistant", "content": v}]
        if k == "e":
            return []
        return self._msgs(v, col, line)

    def _finish(self, line: int, row: dict, key: int, lp: int, lc: int, lr: int) -> None:
        rec = self._shape_record(line)
        rec.count += 1
        if len(rec.lines) < MAX_FINDING_LINES:
            rec.lines.append(line)
        if key in self.seen:
            self.err("duplicate-pair", "duplicate pair (same prompt, chosen and rejected as an earlier row)", line)
        else:
            self.seen.add(key)
        big, small = (lc, lr) if lc >= lr else (lr, lc)
        if big >= LENGTH_RATIO_MIN_CHARS and big >= LENGTH_RATIO * max(small, 1):
            longer = "chosen" if lc >= lr else "rejected"
            self.err("length-ratio", f"{longer} is over {LENGTH_RATIO:g}x longer than the other completion "
                     "(DPO learns length bias from such pairs)", line)
        self.lp.append(lp)
        self.lc.append(lc)
        self.lr.append(lr)
        self.usable += 1
        if self.keep:
            self.rows.append(row)
            self.row_sig.append(rec.index)
        if self.on_row is not None:
            self.on_row(line, row)

    def _scores(self, line: int, obj: dict, plan: Plan) -> None:
        a, b = obj.get(plan.scores[0]), obj.get(plan.scores[1])
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
            if a < b:
                self.err("score-inverted", f"{plan.scores[0]} ({a}) is below {plan.scores[1]} ({b}); is the "
                         "pair swapped?", line)
            elif a == b:
                self.err("score-tie", f"{plan.scores[0]} equals {plan.scores[1]} ({a}); the preference is "
                         "a tie", line)

    def _standard(self, line: int, p: str, c: str, r: str, shape: str, obj: dict, plan: Plan) -> None:
        self._sig = (shape, "standard")
        bad = False
        if not p.strip():
            self.err("empty-prompt", "prompt is empty", line, plan.prompt or "prompt")
            bad = True
        if not c.strip():
            self.err("empty-chosen", "chosen is empty", line, plan.chosen)
            bad = True
        if not r.strip():
            self.err("empty-rejected", "rejected is empty", line, plan.rejected)
            bad = True
        if c == r and not bad:
            self.err("identical-pair", "chosen is identical to rejected: no learning signal (loss stays at "
                     "0.693); fix or drop the row", line, plan.chosen)
            bad = True
        if bad:
            return
        if "<" in p or "<" in c or "[INST]" in p:
            found = [m for m in TEMPLATE_MARKERS if m in p or m in c or m in r]
            if found:
                self.err("template-markers", f"plain-text row contains {', '.join(found[:3])}: pre-rendered chat "
                         "text gets a second BOS/EOS from the trainer; use conversational rows instead", line)
        if p[-1] not in SPACE and (c[0] not in SPACE or r[0] not in SPACE):
            self.err("no-separator", "prompt and completion join without a space or newline (the trainer "
                     "concatenates the texts as they are, e.g. 'Hi?Hello'); end the prompt with a newline or "
                     "start completions with a space", line, plan.prompt or "prompt")
        if plan.scores:
            self._scores(line, obj, plan)
        self._finish(line, {"prompt": p, "chosen": c, "rejected": r}, hash((p, c, r)), len(p), len(c), len(r))

    def _implicit_standard(self, line: int, c: str, r: str, obj: dict, plan: Plan, system: str | None) -> None:
        if c == r:
            self.err("identical-pair", "chosen is identical to rejected: no learning signal; fix or drop the "
                     "row", line, plan.chosen)
            return
        # TRL extract_prompt: longest common character prefix; a trailing space moves into the completions
        n = min(len(c), len(r))
        idx = 0
        while idx < n and c[idx] == r[idx]:
            idx += 1
        if idx > 0 and c[idx - 1] == " ":
            idx -= 1
        if system:
            # keep the system prompt: the pair becomes conversational
            return self._conversational(line, [{"role": "user", "content": c[:idx]}],
                                        [{"role": "assistant", "content": c[idx:]}],
                                        [{"role": "assistant", "content": r[idx:]}],
                                        "standard-implicit", obj, plan, system)
        if idx == 0:
            self.err("empty-prompt", "chosen and rejected share no common prefix, so there is no prompt; add a "
                     "prompt column", line, "prompt")
            return
        self._standard(line, c[:idx], c[idx:], r[idx:], "standard-implicit", obj, plan)

    def _ultrafeedback(self, line: int, p: str, cm: list, rm: list, obj: dict, plan: Plan,
                       system: str | None) -> None:
        starts_user = bool(cm) and cm[0]["role"] in ("user", "system") and bool(rm) and rm[0]["role"] in (
            "user", "system")
        if starts_user:
            idx = common_prefix(cm, rm)
            prompt, cm2, rm2 = cm[:idx], cm[idx:], rm[idx:]
            users = [m["content"] for m in prompt if m["role"] == "user"]
            if users and p.strip() and users[0].strip() != p.strip() and users[-1].strip() != p.strip():
                self.err("prompt-mismatch", f"'{plan.prompt}' differs from the first user message in the "
                         "conversations; the conversations are used", line, plan.prompt)
            self._conversational(line, prompt, cm2, rm2, "ultrafeedback", obj, plan, system)
        else:
            self._conversational(line, [{"role": "user", "content": p}], cm, rm, "conversational-explicit",
                                 obj, plan, system)

    def _conversational(self, line: int, prompt: list | None, cm: list, rm: list, shape: str, obj: dict,
                        plan: Plan, system: str | None) -> None:
        self._sig = (shape, "conversational")
        pcol = plan.prompt or "prompt"
        if prompt is None:  # implicit: the common message prefix is the prompt
            if cm == rm:
                self.err("identical-pair", "chosen is identical to rejected: no learning signal; fix or drop "
                         "the row", line, plan.chosen)
                return
            idx = common_prefix(cm, rm)
            if idx == 0:
                self.err("empty-prompt", "chosen and rejected conversations share no first message, so there is "
                         "no prompt", line, "prompt")
                return
            prompt, cm, rm = cm[:idx], cm[idx:], rm[idx:]
        if system and not (prompt and prompt[0]["role"] == "system"):
            prompt = [{"role": "system", "content": system}, *prompt]
        bad = False
        plen = 0
        has_text = False
        prev = None
        twice = None
        for m in prompt:
            role, content = m["role"], m["content"]
            plen += len(content)
            if role == "system":
                continue
            if not has_text and content and not content.isspace():
                has_text = True
            if role == prev and twice is None and role in ("user", "assistant"):
                twice = role
            prev = role
        if not has_text:
            self.err("empty-prompt", "prompt has no non-empty user message", line, pcol)
            bad = True
        elif prompt[-1]["role"] == "assistant":
            self.err("prompt-ends-assistant", "the prompt ends with an assistant message; the completion should "
                     "answer a user (or tool) turn", line, pcol)
            bad = True
        lens = []
        for col, name, msgs in ((plan.chosen, "chosen", cm), (plan.rejected, "rejected", rm)):
            n = 0
            text = False
            roles_ok = True
            for m in msgs:
                content = m["content"]
                n += len(content)
                if not text and content and not content.isspace():
                    text = True
                if m["role"] != "assistant":
                    roles_ok = False
            lens.append(n)
            if not text:
                self.err(f"empty-{name}", f"{name} is empty", line, col)
                bad = True
            elif not roles_ok:
                roles = ", ".join(m["role"] for m in msgs)
                self.err("completion-role", f"{name} holds non-assistant messages ({roles}); completions must be "
                         "assistant turns", line, col)
                bad = True
        if not bad and cm == rm:
            self.err("identical-pair", "chosen is identical to rejected: no learning signal; fix or drop the row",
                     line, plan.chosen)
            bad = True
        if bad:
            return
        if twice is not None:
            self.err("roles-not-alternating", f"two {twice} messages in a row in the prompt; many chat "
                     "templates reject this", line, pcol)
        if plan.scores:
            self._scores(line, obj, plan)
        row = {"prompt": prompt, "chosen": cm, "rejected": rm}
        key = hash((tuple(map(ROLE_CONTENT, prompt)), tuple(map(ROLE_CONTENT, cm)), tuple(map(ROLE_CONTENT, rm))))
        self._finish(line, row, key, plen, lens[0], lens[1])

    # -- the report ----------------------------------------------------------------------------------------
    def _settle_shape(self) -> None:
        """The majority shape wins; rows of any other shape are a ``mixed-shapes`` error."""
        if not self.shapes:
            return
        ranked = sorted(self.shapes.items(), key=lambda kv: (-kv[1].count, kv[1].index))
        (self.shape, self.fmt), main = ranked[0]
        if len(ranked) == 1:
            return
        main_where = f"{main.file}:{main.first}" if main.file else f"line {main.first}"
        for (shape, fmt), rec in sorted(ranked[1:], key=lambda kv: kv[1].index):
            f = Finding("error", "mixed-shapes",
                        f"{rec.count} row(s) are {shape} ({fmt}) but most rows ({main.count}) are {self.shape} "
                        f"({self.fmt}, first at {main_where}); use one shape per dataset",
                        None, list(rec.lines), rec.count, rec.file)
            self.f.put(f, ("mixed-shapes", shape, rec.file))
            self.usable -= rec.count
        if self.keep:
            keep = main.index
            self.rows = [row for row, sig in zip(self.rows, self.row_sig, strict=True) if sig == keep]

    def report(self, source: str, nbytes: int, decisions: list[str]) -> DataReport:
        self._settle_shape()
        if self.total == 0 and not self.f.errors():
            self.f.add("empty", "dataset is empty: no rows", line=None)
        if self.sharegpt:
            self.decide("ShareGPT messages ('from'/'value'): human -> user, gpt -> assistant")
        if self.parts_content:
            self.decide("message content given as a list of text parts: parts joined into one string")
        if self.dropped_keys:
            self.decide(f"message keys dropped: {', '.join(sorted(self.dropped_keys))}")
        if self.shape in ("standard-implicit", "conversational-implicit", "hh-rlhf", "ultrafeedback"):
            self.decide({
                "standard-implicit": "no prompt column: the prompt is the longest common prefix of chosen and "
                                     "rejected (as TRL's extract_prompt)",
                "conversational-implicit": "no prompt column: the prompt is the common message prefix of the "
                                           "chosen and rejected conversations",
                "hh-rlhf": "Anthropic HH-RLHF transcripts ('\\n\\nHuman: ... \\n\\nAssistant: ...') parsed into "
                           "messages; the shared turns are the prompt",
                "ultrafeedback": "prompt string plus chosen/rejected conversations that repeat it: the shared "
                                 "messages are the prompt",
            }[self.shape])
        rep = DataReport(
            source=source,
            format=self.fmt or "standard",
            shape=self.shape or "unknown",
            decisions=[*decisions, *self.decisions],
            rows_total=self.total,
            rows_usable=self.usable,
            errors=sorted(self.f.errors(), key=_finding_order),
            warnings=sorted(self.f.warnings(), key=_finding_order),
        )
        rep.stats = {
            "bytes": nbytes,
            "rows_total": self.total,
            "rows_usable": self.usable,
            "chars": {k: percentiles(v) for k, v in (("prompt", self.lp), ("chosen", self.lc), ("rejected", self.lr))},
        }
        return rep


def _finding_order(f: Finding) -> tuple:
    return (f.file or "", f.lines[0] if f.lines else 0)


@dataclass
class _ShapeCount:
    index: int
    first: int
    file: str | None
    count: int = 0
    lines: list[int] = _field(default_factory=list)


class Scan:
    """One pass over a source: resolve it, read every record, lint and normalize each row, then report.

    Iterating yields ``(line, normalized row)`` for each usable row as it passes when ``stream`` is set
    (and nothing otherwise, so a lint-only pass pays no per-row hand-off). After the pass, :meth:`report`
    gives the report and :attr:`rows` the kept rows (``keep``; rows of a minority shape are left out).
    The reader gets the split and the decisions list up front, so every entry point reads the same rows.
    """

    def __init__(self, source: str, *, split: str = "train", column_map: dict[str, str] | None = None,
                 max_row_bytes: int, keep: bool = False, stream: bool = False) -> None:
        self.display, self.parts, self.decisions = resolve_source(str(source), split)
        self._buf: list[tuple[int, dict]] | None = [] if stream else None
        on_row = self._buf.append if self._buf is not None else None
        self.scanner = _Scanner(column_map, keep, None if on_row is None else lambda line, row: on_row((line, row)))
        self.reader = Reader(self.scanner.f, max_row_bytes, multi=len(self.parts) > 1, split=split,
                             decisions=self.decisions)

    def __iter__(self) -> Iterator[tuple[int, dict]]:
        scanner, reader, buf = self.scanner, self.reader, self._buf
        multi = len(self.parts) > 1
        for part in self.parts:
            scanner.file = part.label if multi else None
            feed = scanner.feed
            for line, obj in reader.read(part):
                feed(line, obj)
                if buf:
                    yield from buf
                    buf.clear()

    def run(self) -> Scan:
        """Read the whole source (when nothing consumes the rows as they pass)."""
        for _ in self:
            pass
        return self

    @property
    def rows(self) -> list[dict]:
        return self.scanner.rows

    def report(self) -> DataReport:
        report = self.scanner.report(self.display, self.reader.bytes, self.decisions)
        report.stats["files"] = [p.label for p in self.parts]
        return report
