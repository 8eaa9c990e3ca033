"""Judge specs, rule judges, the both-orders rule and reading a judge model's reply (all pure, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpo_tui.core.errors import UserError
from dpo_tui.core.judge import (
    DEFAULT_KEY_ENV,
    RuleJudge,
    Verdict,
    Winner,
    judge_both_orders,
    parse_judge_spec,
    words,
)
from dpo_tui.core.judge_endpoint import DEFAULT_PROMPT, MAX_TEMPLATE_BYTES, load_template, parse_reply, render


# --- spec forms -----------------------------------------------------------------------------------
def test_rule_and_regex_forms() -> None:
    for rule in ("shorter", "longer", "  shorter  "):
        spec = parse_judge_spec(rule)
        assert (spec.kind, spec.rule, spec.label) == ("rule", rule.strip(), rule.strip())
    spec = parse_judge_spec(r"regex:\bOslo\b")
    assert (spec.kind, spec.pattern, spec.label) == ("regex", r"\bOslo\b", r"regex:\bOslo\b")


@pytest.mark.parametrize("prefix", ["rm=", "reward-model="])
def test_reward_model_forms(tmp_path: Path, prefix: str) -> None:
    folder = tmp_path / "my-rm"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    spec = parse_judge_spec(f"{prefix}{folder}")
    assert (spec.kind, spec.path, spec.label) == ("reward_model", str(folder), "rm:my-rm")


def test_endpoint_forms(tmp_path: Path) -> None:
    spec = parse_judge_spec("url=http://127.0.0.1:8000/v1/,model=llama3")
    assert (spec.kind, spec.url, spec.model, spec.prompt_file) == ("endpoint", "http://127.0.0.1:8000/v1", "llama3", "")
    assert (spec.key_env, spec.timeout_s, spec.retries) == (DEFAULT_KEY_ENV, 60.0, 2)
    assert spec.label == "llama3@http://127.0.0.1:8000/v1"
    prompt = tmp_path / "judge.txt"
    prompt.write_text("{answer_a} {answer_b}")
    full = parse_judge_spec(f"url=https://judge.example/v1, model=gpt-x, prompt={prompt}, key_env=MY_KEY, timeout=2.5, retries=0")
    assert (full.url, full.model, full.prompt_file, full.key_env, full.timeout_s, full.retries) == (
        "https://judge.example/v1", "gpt-x", str(prompt), "MY_KEY", 2.5, 0)
    assert parse_judge_spec("url=http://h/v1,model=m,key_env=").key_env == DEFAULT_KEY_ENV


def test_the_label_drops_credentials_in_the_url() -> None:
    spec = parse_judge_spec("url=https://user:hunter2@judge.example/v1,model=m")
    assert spec.label == "m@https://judge.example/v1" and "hunter2" not in spec.label


@pytest.mark.parametrize(("text", "what"), [
    ("", "empty judge"),
    ("   ", "empty judge"),
    ("regex:", "regex: needs a pattern"),
    ("regex:(unclosed", "the pattern does not compile"),
    ("rm=", "rm= needs a folder"),
    ("rm=/no/such/folder", "/no/such/folder is not a folder"),
    ("url=http://h/v1,model=m,colour=red", "unknown part 'colour=red'"),
    ("url=http://h/v1,model", "unknown part 'model'"),
    ("url=ftp://h/v1,model=m", "url must start with http:// or https://"),
    ("url=,model=m", "url must start with http:// or https://"),
    ("url=http://h/v1", "model= is missing"),
    ("url=http://h/v1,model=", "model= is missing"),
    ("url=http://h/v1,model=m,timeout=soon", "timeout must be seconds and retries a whole number"),
    ("url=http://h/v1,model=m,retries=1.5", "timeout must be seconds and retries a whole number"),
    ("url=http://h/v1,model=m,timeout=0", "timeout must be in (0, 3600] s and retries in 0..10"),
    ("url=http://h/v1,model=m,timeout=3601", "timeout must be in (0, 3600] s and retries in 0..10"),
    ("url=http://h/v1,model=m,retries=11", "timeout must be in (0, 3600] s and retries in 0..10"),
    ("url=http://h/v1,model=m,retries=-1", "timeout must be in (0, 3600] s and retries in 0..10"),
    ("url=http://h/v1,model=m,prompt=/no/such/prompt.txt", "prompt file /no/such/prompt.txt does not exist"),
    ("url=http://h/v1,model=m,key_env=1BAD", "key_env must name an environment variable"),
    ("url=http://h/v1,model=m,key_env=A-B", "key_env must name an environment variable"),
    ("longest", "not a judge spec"),
    ("gpt-4", "not a judge spec"),
])
def test_refusals_say_what_and_how(text: str, what: str) -> None:
    with pytest.raises(UserError) as err:
        parse_judge_spec(text)
    rendered = str(err.value)
    assert rendered.startswith("Bad --judge value") and "--judge" in rendered.splitlines()[1]
    assert what in rendered and "Hint: " in rendered


def test_a_folder_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="has no config.json") as err:
        parse_judge_spec(f"rm={tmp_path}")
    assert "AutoModelForSequenceClassification" in str(err.value)


# --- rule judges ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("rule", "a", "b", "winner", "reason"), [
    ("shorter", "one two", "one two three", "a", "2 vs 3 words"),
    ("shorter", "one two three", "one", "b", "3 vs 1 words"),
    ("longer", "one two", "one two three", "b", "2 vs 3 words"),
    ("longer", "one two three", "one", "a", "3 vs 1 words"),
    ("shorter", "same  words", "same\nwords", "tie", "both 2 words"),
    ("longer", "", "", "tie", "both 0 words"),
])
def test_length_rules(rule: str, a: str, b: str, winner: Winner, reason: str) -> None:
    assert RuleJudge(parse_judge_spec(rule)).compare("p", a, b) == Verdict(winner, reason)


@pytest.mark.parametrize(("a", "b", "winner", "reason"), [
    ("It is Oslo.", "It is Bergen.", "a", "matches the pattern"),
    ("Bergen", "Oslo", "b", "matches the pattern"),
    ("Oslo", "Oslo!", "tie", "both match"),
    ("Bergen", "Paris", "tie", "neither matches"),
])
def test_regex_rule(a: str, b: str, winner: Winner, reason: str) -> None:
    assert RuleJudge(parse_judge_spec(r"regex:\bOslo\b")).compare("p", a, b) == Verdict(winner, reason)


def test_rule_judge_refuses_other_specs() -> None:
    with pytest.raises(ValueError):
        RuleJudge(parse_judge_spec("url=http://h/v1,model=m"))
    assert words("  a b\tc\n") == 3


# --- both orders ----------------------------------------------------------------------------------
class Scripted:
    """Answers from a fixed list, one per compare (the first order, then the swapped one)."""

    name = "scripted"

    def __init__(self, *verdicts: Verdict) -> None:
        self.verdicts = list(verdicts)
        self.asked: list[tuple[str, str]] = []

    def compare(self, prompt: str, a: str, b: str) -> Verdict:
        self.asked.append((a, b))
        return self.verdicts[len(self.asked) - 1]


@pytest.mark.parametrize(("first", "swapped", "winner", "reason"), [
    (Verdict("a", "x is right"), Verdict("b", "x is right again"), "a", "x is right"),
    (Verdict("b", "y is right"), Verdict("a", "y again"), "b", "y is right"),
    (Verdict("tie", "same"), Verdict("tie", "same again"), "tie", "same"),
    (Verdict("a", "first"), Verdict("a", "first again"), "tie", "the judge preferred whichever answer came first"),
    (Verdict("b", "second"), Verdict("b", "second again"), "tie", "the judge preferred whichever answer came second"),
    (Verdict("a", "x"), Verdict("tie", "even"), "tie", "the two orders disagree (a tie one way, a winner the other)"),
    (Verdict("tie", "even"), Verdict("a", "y"), "tie", "the two orders disagree (a tie one way, a winner the other)"),
    (Verdict(None, "no verdict: HTTP 500"), Verdict("a", "y"), None, "no verdict: HTTP 500"),
    (Verdict("a", "x"), Verdict(None, "timed out"), None, "no verdict: timed out"),
    (Verdict(None, "no verdict: one"), Verdict(None, "no verdict: two"), None, "no verdict: one"),
])
def test_judge_both_orders(first: Verdict, swapped: Verdict, winner: Winner | None, reason: str) -> None:
    judge = Scripted(first, swapped)
    combined, got_first, got_second = judge_both_orders(judge, "p", "x", "y")
    assert judge.asked == [("x", "y"), ("y", "x")]
    assert combined == Verdict(winner, reason)
    assert got_first == first
    flipped = {"a": "b", "b": "a", "tie": "tie", None: None}[swapped.winner]
    assert got_second == Verdict(flipped, swapped.reason)  # type: ignore[arg-type]
    assert combined.decided == (winner is not None)


# --- the endpoint judge's text handling -----------------------------------------------------------
@pytest.mark.parametrize(("reply", "winner", "reason"), [
    ("Winner: A", "a", ""),
    ("A is correct and B is not.\nWinner: B", "b", "A is correct and B is not."),
    ("Fine.\n**Winner:** Answer B.", "b", "Fine."),
    ("winner - tie", "tie", ""),
    ("WINNER: a tie", "tie", ""),
    ("The winner is A", "a", ""),
    ("Winner: A\nWinner: B", "b", "Winner: A"),
    ("Better grounded. [[A]]", "a", "Better grounded."),
    ("Both fine.\n[[C]]", "tie", "Both fine."),
    ("Short and right.\nB", "b", "Short and right."),
    ("Short and right.\n(a).", "a", "Short and right."),
    ("ok\nAnswer A", "a", "ok"),
    ("<think>Winner: B for sure</think>Actually the first.\nWinner: A", "a", "Actually the first."),
    ("Both answers have merit.", None, "Both answers have merit."),
    ("The winner is clear: the first one.", None, "The winner is clear: the first one."),
    ("", None, ""),
])
def test_parse_reply(reply: str, winner: Winner | None, reason: str) -> None:
    assert parse_reply(reply) == (winner, reason)


def test_parse_reply_keeps_the_reason_short() -> None:
    winner, reason = parse_reply("word " * 200 + "\nWinner: A")
    assert winner == "a" and len(reason) == 300


def test_render_fills_each_placeholder_once() -> None:
    text = render("Q={prompt} A={answer_a} B={answer_b} {other} {{prompt}}", "p {answer_a}", "x {prompt}", "y")
    assert text == "Q=p {answer_a} A=x {prompt} B=y {other} {p {answer_a}}"
    assert all("{" + name + "}" in DEFAULT_PROMPT for name in ("prompt", "answer_a", "answer_b"))


def test_load_template_refusals(tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text("{prompt}\n{answer_a}\n{answer_b}\n")
    assert load_template(str(good)) == good.read_text()
    cases = {
        "missing.txt": (None, "Cannot read the judge prompt file"),
        "latin1.txt": ("Caf\xe9 {answer_a} {answer_b}".encode("latin-1"), "not UTF-8"),
        "huge.txt": (b"{answer_a}{answer_b}" + b"x" * MAX_TEMPLATE_BYTES, "too large"),
        "no_b.txt": (b"{prompt} {answer_a}", "no {answer_b}"),
    }
    for name, (content, what) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(UserError) as err:
            load_template(str(path))
        assert what in str(err.value) and str(path) in str(err.value) and "prompt=" in str(err.value)


def test_docs_show_the_default_prompt_verbatim() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "judges.md").read_text()
    assert "```text\n" + DEFAULT_PROMPT + "```" in doc
