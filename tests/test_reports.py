"""Reports that cannot mislead: a majority baseline beside every label task's accuracy, progress whose rates are
the grid's wall clock, no arm labelled enforced whose grammar a gateway dropped, one number per arm in a store."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from rich.console import Console

from firsttoken import get_layout
from firsttoken.backends import resolve
from firsttoken.cli._progress import BarProgress
from firsttoken.experiments import Arm

from .engines import EngineStub, Gateway
from .helpers import cli, eval_words, split_by_gateway

SPAM, HAM = 6, 34  # 85% ham: always answering "ham" scores 85%


def spam_file(tmp_path: Path) -> Path:
    path = tmp_path / "sms.csv"
    rows = [f"win a prize now {i},spam" for i in range(SPAM)] + [f"see you at {i},ham" for i in range(HAM)]
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    return path


def spam_eval(tmp_path: Path, *models: str, extra: tuple[str, ...] = ()):
    args = ["eval", "--data", str(spam_file(tmp_path)), "--inputs", "text", "--output", "label", "--labels-from",
            "label", "--metric", "label", "--layouts", "direct", "--quiet", "--json"]
    for m in models:
        args += ["-m", f"scripted:tests.fakes:{m}"]
    return cli(*args, *extra, cwd=tmp_path)


def test_a_label_task_shows_its_majority_baseline_everywhere_and_flags_an_arm_not_above_it(tmp_path):
    res = spam_eval(tmp_path, "always_spam", "spam_words")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    base = summary["baseline"]
    assert (base["majority_label"], base["majority_accuracy"], base["rows"], base["chance_balanced"]) == \
        ("ham", HAM / (SPAM + HAM), SPAM + HAM, 0.5)
    arms = {a["model"].split(":")[-1]: a for a in summary["arms"]}
    assert arms["always_spam"]["accuracy"] == SPAM / (SPAM + HAM) and arms["always_spam"]["above_majority"] is False
    assert arms["always_spam"]["vs_majority"] < 0 and arms["always_spam"]["vs_majority_high"] < 0
    assert arms["spam_words"]["accuracy"] == 1.0 and arms["spam_words"]["above_majority"] is True
    assert base["not_above"] == [arms["always_spam"]["id"]]
    notes = [line for line in res.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "1 of 2 arms are not above the majority baseline" in notes[0], res.stderr
    assert "'ham' scores 85.0%" in notes[0] and "--labels-file" in notes[0] and "--instructions" in notes[0]

    report = cli("report", "runs/sms.db", "--html", "r.html", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "Baseline: always answering 'ham' (the majority label) scores 85.0% on these 40 rows" in report.stdout
    assert "balanced accuracy's chance level is 50.0%" in report.stdout
    row = next(line for line in report.stdout.splitlines() if "always_spam" in line and line.startswith("|"))
    assert row.rstrip(" |").endswith("NOT ABOVE"), row
    good = next(line for line in report.stdout.splitlines() if "spam_words" in line and line.startswith("|"))
    assert "NOT ABOVE" not in good
    assert sum(line.startswith("note:") for line in report.stderr.splitlines()) == 1
    page = (tmp_path / "r.html").read_text()
    assert "always answering &#x27;ham&#x27; (the majority label) scores 85.0%" in page and "NOT ABOVE" in page
    as_json = json.loads(cli("report", "runs/sms.db", "--json", cwd=tmp_path).stdout)
    assert as_json["baseline"]["majority_label"] == "ham"


def test_the_recommendation_never_picks_an_arm_below_the_baseline_silently_and_the_note_follows_the_prompt(tmp_path):
    res = spam_eval(tmp_path, "always_spam")
    summary = json.loads(res.stdout)
    rec = summary["recommendation"]
    assert rec["status"] == "single_arm" and rec["above_majority"] is False
    assert "is not above the majority baseline (always 'ham': 85.0%)" in rec["reason"]
    (tmp_path / "told").mkdir()
    labels = tmp_path / "labels.csv"
    labels.write_text("label,description\nspam,an unsolicited advert or scam\nham,an ordinary personal message\n")
    told = spam_eval(tmp_path / "told", "always_spam", extra=("--labels-file", str(labels), "--instructions",
                                                                 "Is this SMS spam?"))
    assert told.returncode == 0, told.stderr
    notes = [line for line in told.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "not above the majority baseline" in notes[0] and "--labels-file" not in notes[0]
    (tmp_path / "good").mkdir()
    good = spam_eval(tmp_path / "good", "spam_words")
    assert not [line for line in good.stderr.splitlines() if line.startswith("note:")]
    assert "majority" not in json.loads(good.stdout)["recommendation"]["reason"]


# --- progress --------------------------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_gives_each_arm_its_rows_and_accuracy_and_the_grid_its_wall_clock_rate():
    """Three arms decoded together, a row finishing every second, each row's own seconds spanning the batch (12 s):
    a rate per arm from those would read 10/12 tok/s; the grid's is 120 tokens over 12 s of wall clock."""
    clock, text = Clock(), io.StringIO()
    arms = [Arm("t", "m", layout, "json", True, None, enforced="llguidance") for layout in
            ("direct", "thoughts_first", "answer_then_explain")]
    with BarProgress(True, Console(file=text, width=200), clock) as progress:
        for arm in arms:
            progress.arm_started(arm, 4, 0)
        for i in range(4):
            for arm in arms:
                clock.now += 1
                progress.row_done(arm, {"outcome": "correct" if i % 2 else "wrong", "reasoning_tokens": 6,
                                        "answer_tokens": 4, "seconds": 12.0})
        for arm in arms:
            progress.arm_finished(arm)
    lines = text.getvalue().splitlines()
    assert lines[:3] == [f"m {layout}: 4 new rows, acc 50% of 4" for layout in
                         ("direct", "thoughts_first", "answer_then_explain")]
    assert lines[3] == "all arms: 12 new rows in 0:00:12, 10.0 completion tok/s, ~0:00:00 left"


def test_the_live_bars_show_the_rate_once_on_the_grid_row():
    clock, text = Clock(), io.StringIO()
    arms = [Arm("t", "m", layout, "json", True, None, enforced="llguidance") for layout in ("direct", "thoughts_first")]
    with BarProgress(False, Console(file=text, width=160, force_terminal=False), clock) as progress:
        for arm in arms:
            progress.arm_started(arm, 2, 0)
        for arm in arms * 2:
            clock.now += 2
            progress.row_done(arm, {"outcome": "correct", "reasoning_tokens": 10, "answer_tokens": 0, "seconds": 8.0})
        for arm in arms:
            progress.arm_finished(arm)
    screen = [line for line in text.getvalue().splitlines() if line.strip()][-3:]
    assert re.search(r"all arms .* 4/4 .*4 new rows in 0:00:08, 5\.0 completion tok/s", screen[0]), screen
    assert all("tok/s" not in line and "acc 100% of 2" in line for line in screen[1:]), screen


# --- a gateway that drops grammars ------------------------------------------------------------------------------
LABELS = ["zebulon", "quillet"] + [f"placeholder-category-{i:02d}" for i in range(24)]


def test_no_arm_is_labelled_enforced_whose_grammar_a_gateway_dropped(tmp_path):
    """A gateway in front of llama-server (a stub) drops every grammar over 1 KB, silently. The probe asks each
    layout with the task's own outputs, so it meets the same grammars as the rows: every arm whose grammar the
    gateway dropped (step 1 of a continuation, step 2, or the one request) is prompt-only or unverified, and the
    arms whose grammars all passed are labelled by what enforced them."""
    data = tmp_path / "words.jsonl"
    data.write_text("".join(json.dumps({"question": f"word {i}", "answer": "zebulon"}) + "\n" for i in range(4)))
    layouts = "direct,answer_then_explain,thoughts_first,think_then_answer,work_then_answer"
    gateway = None
    with EngineStub("llama-server", thinks=False) as upstream:
        gateway = Gateway(upstream, limit=1024)
        with gateway as url:
            res = cli("eval", "--data", str(data), "--inputs", "question", "--output", "answer", "--labels",
                      ",".join(LABELS), "--metric", "label", "--quiet", "--json", "-m",
                      f"openai:m@{url}/v1?engine=llama-server&schema_mode=gbnf", "--layouts", layouts,
                      "--syntaxes", "json,fields,lines",
                      "--thinking-budgets", "8", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert gateway.dropped and gateway.passed  # the limit falls among the grammars: some dropped, some not
    lost, kept = split_by_gateway(gateway, summary, "runs/words.db", tmp_path, rows=4)
    for arm in lost:
        assert arm["enforced"] in ("prompt-only", "unverified") and not arm["constrained"], arm
        assert "[gbnf" not in arm["label"]
    for arm in kept:
        assert arm["enforced"].startswith("gbnf") and arm["constrained"], arm
    assert lost and kept, (lost, kept)
    probe = next(iter(summary["probe"].values()))
    assert all(f["outcome"] in ("held", "broken", "not sent") for f in probe if f["check"] == "constraint"), probe


def test_a_probe_reply_cut_twice_leaves_its_arm_unverified_never_enforced(tmp_path):
    """Every constrained reply comes back cut at max_tokens: the probe asks again with four times the limit, and
    cut again the layout is "unverified"; its arm is labelled so, compared as unconstrained, and the report says
    why."""
    stub = EngineStub("vllm", thinks=False, cuts=True)
    with stub as url:
        res = eval_words(tmp_path, f"openai:m@{url}/v1?schema_mode=lark", "--layouts", "direct")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    found = [f for f in next(iter(summary["probe"].values())) if f["check"] == "constraint"]
    assert [f["outcome"] for f in found] == ["unverified"] and "160, then 640 tokens" in found[0]["detail"]
    limits = [b["max_tokens"] for b in stub.bodies if "I will not answer" in b["messages"][-1]["content"]]
    assert limits == [160, 640]
    (arm,) = summary["arms"]
    assert arm["enforced"] == "unverified" and arm["constrained"] is False and "[lark]" not in arm["label"]
    assert arm["label"].endswith("direct unverified")
    report = cli("report", "runs/words.db", cwd=tmp_path).stdout
    assert "Unverified: the probe could not tell whether the constraint of" in report
    assert "| constraint | direct/json | unverified |" in report


# --- one number, one arm ------------------------------------------------------------------------------------------
def test_arm_numbers_run_across_a_store_s_tasks_and_each_names_one_arm(tmp_path):
    """Two tasks in one store: `report` numbers their arms 1..N across both; `show`, `export` (and `predict`, by
    the same lookup) take the number report printed for an arm of the second task; a shared part of ids is refused
    with the candidates' numbers."""
    first = spam_eval(tmp_path, "always_spam", "spam_words", extra=("--store", "runs/both.db"))
    assert first.returncode == 0, first.stderr
    words = tmp_path / "words.jsonl"
    words.write_text("".join(json.dumps({"text": f"word {i}", "label": "a" if i % 2 else "b"}) + "\n"
                             for i in range(6)))
    second = cli("eval", "--data", str(words), "--inputs", "text", "--output", "label", "--labels", "a,b",
                 "--metric", "label", "--layouts", "direct,thoughts_first", "--quiet", "--json", "-m",
                 "scripted:tests.fakes:always_spam", "--store", "runs/both.db", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    report = cli("report", "runs/both.db", "--json", cwd=tmp_path)
    tasks = {s["task"]: s["arms"] for s in json.loads(report.stdout)}
    numbers = [a["number"] for arms in tasks.values() for a in arms]
    assert sorted(numbers) == list(range(1, 5)) and [a["number"] for a in tasks["words"]] == [3, 4]
    text = cli("report", "runs/both.db", cwd=tmp_path).stdout
    assert re.search(r"^\| 4 \| scripted:tests\.fakes:always_spam thoughts_first", text, re.M), text
    target = tasks["words"][1]
    shown = json.loads(cli("show", "--run", "runs/both.db", "--arm", "4", "--json", cwd=tmp_path).stdout)
    assert shown["arm"]["id"] == target["id"]
    exported = cli("export", "--run", "runs/both.db", "--arm", "4", "--dspy", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert target["id"] in exported.stdout and "thoughts_first" in exported.stdout
    ids = [a["id"] for arms in tasks.values() for a in arms]
    shared = next(c for c in "abcdef" if sum(c in i for i in ids) > 1)  # a part of several ids
    refused = cli("show", "--run", "runs/both.db", "--arm", shared, cwd=tmp_path)
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    for n, i in enumerate(ids, 1):
        assert (f"{n}: " in refused.stderr) == (shared in i), (n, i, refused.stderr)
    beyond = cli("export", "--run", "runs/both.db", "--arm", "5", "--dspy", cwd=tmp_path)
    assert beyond.returncode == 1 and "the store has arms 1 to 4" in beyond.stderr


def test_a_marked_grammar_allows_exactly_the_word_then_what_the_grammar_allowed():
    """The probe's check that a split grammar reaches the model: the start rule wrapped after a word (hand-worked),
    and every built-in layout's two Lark grammars still valid for llguidance once marked."""
    import llguidance

    from firsttoken.experiments._probe import _marked
    from firsttoken.layouts import layout_classes

    from .signatures import Products

    assert _marked('root ::= a | "b"\na ::= "x"') == 'root ::= "zebulon " (a | "b")\na ::= "x"'
    assert _marked('start: a | "b"') == 'start: "zebulon " (a | "b")'
    assert _marked("%import common\nstart: a") is None  # not a grammar it can mark: the check is skipped
    for cls in layout_classes():
        for syntax in cls.syntaxes:
            constraint = get_layout(cls.name, syntax).constraint(Products)
            for grammar in constraint.split("lark", 0) if constraint.split else ():
                marked = _marked(grammar)
                assert marked is not None
                assert not llguidance.LLMatcher.validate_grammar(llguidance.grammar_from("lark", marked),
                                                                 llguidance.LLTokenizer("byte"))
