"""How much thinking a task needs: the curve over budgets, its knee, and the rows side by side (a backend that
reasons better with more room, scripted)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import firsttoken as ft
from firsttoken.experiments import Store, evaluate, html_page, markdown, summarize
from firsttoken.tasks import file_task


class Reasoner(ft.BackendBase):
    """A work_then_answer reply that gets row i right when the budget is at least ``need(i)``: a budget below a
    row's need closes its region (closed_by budget) with a wrong answer; otherwise the model closes it."""

    label = "reasoner"

    def __init__(self, need):
        self.need, self.calls = need, 0

    def enforcement(self, constraint):
        return "script" if constraint is not None else None

    def generate(self, request):
        self.calls += 1
        i = int(re.search(r"(\d+)\+1", request.messages[-1]["content"]).group(1))
        budget, need = request.options.max_thinking_tokens, self.need(i)
        used = min(budget, need)
        answer = i + 1 if budget >= need else -1
        return ft.Generation(text=f"{'so ' * used}\nAnswer: {answer}", prompt_tokens=10, completion_tokens=used + 3,
                             reasoning_tokens=used, closed_by="budget" if budget < need else "model")


def sums(path, n):
    path.write_text("".join(json.dumps({"question": f"{i}+1", "answer": i + 1}) + "\n" for i in range(n)))
    return file_task(path, ["question"], "answer", metric="numeric")


def test_the_curve_names_the_smallest_budget_within_the_margin_of_the_best(tmp_path):
    # every row needs 20 tokens but one in 50, which needs 200: budget 64 is within 2 points of budget 256
    summary = evaluate(sums(tmp_path / "s.jsonl", 200), [Reasoner(lambda i: 200 if i % 50 == 0 else 20)],
                       ["work_then_answer"], budgets=[0, 16, 64, 256], store=tmp_path / "s.db", margin=0.05)
    [curve] = summary["curves"]
    points = {p["budget"]: p for p in curve["points"]}
    assert [p["budget"] for p in curve["points"]] == [0, 16, 64, 256]
    assert points[0]["accuracy"] == 0.0 and points[64]["accuracy"] == 0.98 and points[256]["accuracy"] == 1.0
    assert curve["best"] == 256 and curve["knee"] == 64 and curve["undecided"] == []
    assert points[0]["budget_closed"] == 1.0 and points[64]["budget_closed"] == 0.02
    assert points[64]["mean_reasoning_tokens"] == (196 * 20 + 4 * 64) / 200  # what the rows really used
    assert points[64]["vs_best_low"] > -0.05 and points[16]["inferior"]
    knee = summary["recommendation"]["knees"][0]
    assert knee["budget"] == 64 and "the knee is budget 64" in knee["sentence"]
    text = markdown(summary)
    assert "How much thinking" in text and "| 64 | 21 | " in text and "Knee of" in text
    assert json.loads(json.dumps(summary, default=str))["curves"][0]["knee"] == 64  # --json carries it


def test_a_budget_short_of_the_margin_on_too_few_rows_is_undecided(tmp_path):
    summary = evaluate(sums(tmp_path / "s.jsonl", 24), [Reasoner(lambda i: 200 if i % 8 == 0 else 20)],
                       ["work_then_answer"], budgets=[64, 256], store=tmp_path / "s.db", margin=0.05)
    [curve] = summary["curves"]
    assert curve["knee"] == 256 and curve["undecided"] == [64]
    assert "more rows could move the knee down" in summary["recommendation"]["knees"][0]["sentence"]


def test_budgets_as_arms_until_decided_stop_and_keep_the_curve(tmp_path):
    # budgets 64 and 256 make the same replies (the model stops at 20): proving them within the margin of each
    # other takes rows even so, since the confidence sequences know nothing of that
    backend = Reasoner(lambda i: 20)
    summary = evaluate(sums(tmp_path / "s.jsonl", 1000), [backend], ["work_then_answer"], budgets=[0, 64, 256],
                       store=tmp_path / "s.db", until_decided=True, margin=0.05)
    rec = summary["recommendation"]
    assert summary["sequential"]["status"] == "recommended" and rec["label"].endswith("b64")  # the smallest right
    assert summary["sequential"]["rows"] < 1000 and summary["sequential"]["arms"][0]["stopped_after"] < 50
    assert summary["curves"][0]["knee"] == 64


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.rows, self.radios = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "tr" and "row" in (attrs.get("class") or "").split():
            self.rows.append(attrs["class"].split()[1:])
        if tag == "input":
            self.radios.append(attrs["id"])


def test_rows_side_by_side_put_disagreements_first_and_filter_by_pair(tmp_path):
    evaluate(sums(tmp_path / "s.jsonl", 30), [Reasoner(lambda i: 100 if i % 3 == 0 else 10)], ["work_then_answer"],
             budgets=[16, 128], store=tmp_path / "s.db")
    db = Store(tmp_path / "s.db")
    summary = summarize(db, "s")
    page = html_page([summary], db)
    parser = _Page()
    parser.feed(page)
    assert "script" not in parser.tags
    assert len(parser.rows) == 30  # each data row once, every arm beside it
    assert [bool(c) for c in parser.rows] == [True] * 10 + [False] * 20  # where the budgets disagree: first
    assert all(c == ["p0b"] for c in parser.rows[:10])  # budget 128 right, 16 not (the pair's order: a=16, b=128)
    assert {"t0all", "t0p0a", "t0p0b"} <= set(parser.radios)
    assert "#t0p0b:checked~table tr.row:not(.p0b){display:none}" in page
    assert "How much thinking" in page and "budget-closed" in page
    db.close()
