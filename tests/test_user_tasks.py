"""Your task, your data: a signature from the command line (firsttoken or DSPy, nested outputs included),
columns of any name, label descriptions in the prompt, output types, demo selection, more file formats, and
the public ``ft.Task``. The support-ticket case of the README, end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pytest

import firsttoken as ft
from firsttoken.tasks import read_records

from .fakes import ticket_triage
from .helpers import HEADER, MODEL, TICKETS, cli, write_tickets


def write_labels(path: Path) -> Path:
    path.write_text("label,description\nbilling,Payments: charges and refunds\nbug,Something is broken: "
                    "errors and crashes\nother,Anything else\n", encoding="utf-8")
    return path


# --- a reasoning field, and a Prediction that never shadows a field ------------------------------------
class Seed(ft.Signature):
    """Classify the product into one category."""

    item_name: str = ft.InputField()
    thoughts: str = ft.OutputField(desc="Think about what the product is used for.")
    category: str = ft.OutputField(desc="One of: beauty, groceries, furniture")


def test_a_users_thoughts_field_is_read_as_itself_under_direct():
    pred = ft.Predictor(Seed, layout="direct", model=ft.Scripted(['{"thoughts": "a lipstick", "category": "beauty"}'])
                        )(item_name="Red Lipstick")
    assert pred.thoughts == "a lipstick" and pred.category == "beauty"  # the field, not the layout's (none)
    assert pred.layout_reasoning is None


@pytest.mark.parametrize("layout,reply", [
    ("thoughts_first", '{"thoughts": "used on lips", "category": "beauty"}'),
    ("think_then_answer", '<think>\nused on lips\n</think>\n{"category": "beauty"}'),
    ("work_then_answer", "used on lips\nAnswer: beauty")])
def test_a_reasoning_field_is_the_layouts_reasoning_region(layout, reply):
    predictor = ft.Predictor(Seed, layout=layout, model=ft.Scripted([reply]))
    system = predictor.messages(item_name="x")[0]["content"]
    assert "Think about what the product is used for." in system  # its description reaches the prompt
    assert system.count("thoughts") <= 2 or layout == "thoughts_first"  # not asked for twice
    pred = predictor(item_name="Red Lipstick")
    assert pred.thoughts == "used on lips" == pred.layout_reasoning and pred.category == "beauty"
    assert list(pred.outputs) == ["thoughts", "category"]


def test_output_names_that_a_prediction_uses_are_refused_and_choices_in_a_str_are_noted():
    with pytest.raises(ft.ConfigError, match="may not be named 'usage'"):
        class Bad(ft.Signature):  # noqa: F841
            """-"""
            q: str = ft.InputField()
            usage: int = ft.OutputField()
    (note,) = Seed.notes()
    assert "Seed.category" in note and "Literal" in note and "--labels" in note


def test_label_descriptions_of_a_signature_are_listed_in_the_prompt():
    class Triage(ft.Signature):
        """Triage the ticket."""
        body: str = ft.InputField()
        category: Literal["billing", "bug"] = ft.OutputField(labels={"billing": "charges and refunds"})

    system = ft.Predictor(Triage, layout="direct", model=ft.Scripted([])).messages(body="x")[0]["content"]
    assert "- category (one of 'billing', 'bug')\n  - billing: charges and refunds" in system
    with pytest.raises(ft.ConfigError, match="not one of its labels"):
        class Wrong(ft.Signature):  # noqa: F841
            """-"""
            body: str = ft.InputField()
            category: Literal["billing"] = ft.OutputField(labels={"refunds": "x"})


@pytest.mark.model
@pytest.mark.parametrize("layout", ["direct", "answer_then_explain", "thoughts_first", "think_then_answer",
                                    "work_then_answer"])
def test_the_seeds_dspy_signature_runs_under_every_layout(layout):
    import dspy  # in the test extra: installed wherever `make test` runs, never skipped

    class ClassifyProduct(dspy.Signature):
        """Classify the product into one category."""

        item_name: str = dspy.InputField()
        item_description: str = dspy.InputField()
        thoughts: str = dspy.OutputField(desc="Reason step by step about what the product is before choosing.")
        category: str = dspy.OutputField(desc="One of: beauty, fragrances, furniture, groceries")

    sig = ft.Signature.from_dspy(ClassifyProduct)
    assert sig.reasoning_field() == "thoughts" and sig.notes()  # the str category: asked for, not enforced
    predictor = ft.Predictor(sig, layout=layout, model=ft.load("smollm2-135m"), max_thinking_tokens=48)
    pred = predictor(item_name="Red Lipstick", item_description="A long-lasting matte lipstick.")
    assert isinstance(pred.thoughts, str) and isinstance(pred.category, str) and pred.category
    assert pred.thoughts == pred.outputs["thoughts"]
    if predictor.layout.has_reasoning:
        assert pred.thoughts == (pred.layout_reasoning or "")


# --- the command line: columns of any name, labels with descriptions, show ----------------------------
def test_a_csv_with_real_world_headers_runs_without_renaming_and_show_prints_the_label_descriptions(tmp_path):
    data = write_tickets(tmp_path / "tickets.csv")
    labels = write_labels(tmp_path / "labels.csv")
    res = cli("eval", "--data", str(data), "--inputs", "Subject,Ticket Body", "--output", "Category (final)",
              "--labels-file", str(labels), "--id", "ticket_id", *MODEL, "--layouts", "direct,thoughts_first",
              "--quiet", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    arms = json.loads(res.stdout)["arms"]
    assert all(a["accuracy"] == 1.0 and a["n"] == 6 for a in arms)
    shown = cli("show", "--run", str(tmp_path / "runs" / "tickets.db"), "--arm", "1", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "- billing: Payments: charges and refunds" in shown.stdout and "ticket_body: " in shown.stdout
    assert "category_final (one of 'billing', 'bug', 'other')" in shown.stdout
    # predict reads new rows by the run's own column names
    new = write_tickets(tmp_path / "new.csv", [("N-1", "Refund", "Please refund the charge.", "")])
    out = tmp_path / "pred.jsonl"
    res = cli("predict", "--run", str(tmp_path / "runs" / "tickets.db"), "--arm", "1", "--data", str(new),
              "--out", str(out), "--id", "ticket_id", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(out.read_text())["outputs"] == {"category_final": "billing"}


def test_columns_that_would_be_one_field_and_a_bad_mapping_are_refused_in_one_line(tmp_path):
    data = write_tickets(tmp_path / "t.csv", header=["id", "Ticket Body", "ticket body", "Category"])
    res = cli("eval", "--data", str(data), "--inputs", "Ticket Body,ticket body", "--output", "Category", *MODEL,
              "--quiet", cwd=tmp_path)
    assert res.returncode == 1 and "would both be field 'ticket_body'" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = cli("eval", "--data", str(data), "--input", "body", "--output", "Category", *MODEL, cwd=tmp_path)
    assert res.returncode == 1 and "expected FIELD=COLUMN" in res.stderr


NESTED = '''
from typing import Literal

from pydantic import BaseModel

import firsttoken as ft


class Details(BaseModel):
    summary: str
    urgent: bool


class Triage(ft.Signature):
    """Triage the support ticket."""

    subject: str = ft.InputField()
    body: str = ft.InputField(desc="what the customer wrote")
    category: Literal["billing", "bug", "other"] = ft.OutputField()
    details: Details = ft.OutputField(desc="a summary, and whether it is urgent")
'''


def test_a_signature_module_with_a_nested_output_is_evaluated_then_applied_by_predict(tmp_path):
    (tmp_path / "triage_sig.py").write_text(NESTED)
    data = write_tickets(tmp_path / "tickets.csv")
    args = ["eval", "--data", str(data), "--signature", "triage_sig:Triage", "--input", "subject=Subject",
            "--input", "body=Ticket Body", "--output", "category=Category (final)", *MODEL, "--layouts",
            "direct,thoughts_first", "--quiet", "--json", "--store", "run.db"]
    res = cli(*args, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert all(a["accuracy"] == 1.0 for a in json.loads(res.stdout)["arms"])
    new = write_tickets(tmp_path / "new.csv", [("N-1", "Urgent crash", "urgent: it crashes with an error", "")])
    res = cli("predict", "--run", "run.db", "--arm", "2", "--data", str(new), "--out", "p.jsonl", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    outputs = json.loads((tmp_path / "p.jsonl").read_text())["outputs"]
    assert outputs["category"] == "bug" and outputs["details"]["urgent"] is True
    shown = cli("show", "--run", "run.db", "--arm", "1", cwd=tmp_path)
    assert shown.returncode == 0 and '"urgent"' in shown.stdout  # the nested object's schema
    # the module changes: predict and show refuse, in one line, rather than run another signature
    (tmp_path / "triage_sig.py").write_text(NESTED.replace("what the customer wrote", "the message"))
    for cmd in (["predict", "--run", "run.db", "--arm", "2", "--data", str(new), "--out", "q.jsonl"],
                ["show", "--run", "run.db", "--arm", "1"]):
        res = cli(*cmd, cwd=tmp_path)
        assert res.returncode == 1 and "has changed since the run" in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1


DSPY_MODULE = '''
import dspy


class ClassifyTicket(dspy.Signature):
    """Classify the support ticket."""

    body: str = dspy.InputField()
    thoughts: str = dspy.OutputField(desc="Reason about the ticket first.")
    category: str = dspy.OutputField(desc="One of: billing, bug, other")
'''


def test_a_dspy_signature_file_runs_through_the_cli_with_labels_made_explicit(tmp_path):
    (tmp_path / "dspy_sig.py").write_text(DSPY_MODULE)
    data = write_tickets(tmp_path / "tickets.csv")
    base = ["eval", "--data", str(data), "--signature", "dspy_sig.py:ClassifyTicket", "--input", "body=Ticket Body",
            "--output", "category=Category (final)", *MODEL, "--layouts", "direct,thoughts_first", "--quiet",
            "--json"]
    res = cli(*base, "--store", "a.db", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "note: ClassifyTicket.category is a str whose description lists choices" in res.stderr
    res = cli(*base, "--store", "b.db", "--labels-file", str(write_labels(tmp_path / "l.csv")), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    shown = cli("show", "--run", "b.db", "--arm", "2", "--json", cwd=tmp_path)
    system = json.loads(shown.stdout)["messages"][0]["content"]
    assert "one of 'billing', 'bug', 'other'" in system and "Reason about the ticket first." in system
    assert "[\"billing\", \"bug\", \"other\"]" not in system  # not a JSON dump: the layout's own wording


def test_the_output_type_can_be_given_and_a_row_that_does_not_fit_is_named(tmp_path):
    data = tmp_path / "n.jsonl"
    data.write_text("".join(json.dumps({"Question": f"{i}+{i}", "Answer": str(2 * i)}) + "\n" for i in range(3))
                    + json.dumps({"Question": "x", "Answer": "many"}) + "\n")
    res = cli("eval", "--data", str(data), "--inputs", "Question", "--output", "Answer", "--output-type", "int",
              "--model", "scripted:tests.fakes:echo_sum", "--quiet", cwd=tmp_path)
    assert res.returncode == 1 and f"{data}:4: expected answer 'many' in column 'Answer' is not a int" in res.stderr
    task = ft.Task.from_file(data, inputs=["Question"], output="Answer", output_type="int", skip_bad_rows=True)
    assert task.signature.output_fields["Answer"].annotation is int and task.bad_rows == 1
    with pytest.raises(ft.ConfigError, match="--output-type 'number'"):
        ft.Task.from_file(data, inputs=["Question"], output="Answer", output_type="number")


# --- demos ----------------------------------------------------------------------------------------------
def test_demos_first_random_and_stratified(tmp_path):
    from firsttoken.experiments import load_demos

    rows = [(f"D-{i}", "s", f"body {i}", cat) for i, cat in enumerate(["billing"] * 6 + ["bug"] * 3 + ["other"])]
    demos = write_tickets(tmp_path / "demos.csv", rows)
    task = ft.Task.from_file(write_tickets(tmp_path / "t.csv"), inputs=["Ticket Body"], output="Category (final)",
                             labels=["billing", "bug", "other"])
    first = load_demos(demos, task, 3)
    assert [d["ticket_body"] for d in first] == ["body 0", "body 1", "body 2"]
    random_a, random_b = load_demos(demos, task, 3, "random", 1), load_demos(demos, task, 3, "random", 1)
    assert random_a == random_b and random_a != first  # seeded
    strat = load_demos(demos, task, 3, "stratified", 7)
    assert sorted(d["category_final"] for d in strat) == ["billing", "bug", "other"]
    numbers = ft.Task.from_file(write_tickets(tmp_path / "n.csv"), inputs=["Subject"], output="ticket_id")
    with pytest.raises(ft.ConfigError, match="stratified is for label tasks"):
        load_demos(demos, numbers, 3, "stratified")


# --- readers ----------------------------------------------------------------------------------------------
def test_tsv_is_read_and_a_short_row_is_named(tmp_path):
    good = write_tickets(tmp_path / "t.tsv", delimiter="\t")
    records, _ = read_records(good)
    assert records[0] == (2, dict(zip(HEADER, TICKETS[0])))
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\n1\t2\n3\n")
    with pytest.raises(ft.DataError, match=r"bad.tsv:3: only 1 of the header's 2 columns"):
        read_records(bad)


def test_parquet_is_read_and_a_broken_file_is_one_line(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({h: [r[i] for r in TICKETS] for i, h in enumerate(HEADER)}), path)
    task = ft.Task.from_file(path, inputs=["Ticket Body"], output="Category (final)", metric="label")
    assert len(task.all_rows) == 6 and task.labels == ["billing", "bug", "other"]
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ft.DataError, match="broken.parquet: not a readable Parquet file") as info:
        read_records(broken)
    assert "\n" not in str(info.value)
    nulls = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"Ticket Body": ["a", None], "Category": ["bug", "bug"]}), nulls)
    with pytest.raises(ft.DataError, match=r"nulls.parquet:2: column 'Ticket Body' is null"):
        ft.Task.from_file(nulls, inputs=["Ticket Body"], output="Category")


def test_a_datasets_folder_saved_to_disk_is_read_and_a_dataset_dict_names_its_splits(tmp_path):
    import datasets  # in the test extra
    ds = datasets.Dataset.from_dict({h: [r[i] for r in TICKETS] for i, h in enumerate(HEADER)})
    ds.save_to_disk(str(tmp_path / "ds"))
    task = ft.Task.from_file(tmp_path / "ds", inputs=["Subject", "Ticket Body"], output="Category (final)")
    assert [r.inputs["ticket_body"] for r in task.all_rows] == [t[2] for t in TICKETS]
    datasets.DatasetDict({"train": ds, "test": ds}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(ft.DataError, match=r"splits \(train, test\).*--data .*dd/train"):
        read_records(tmp_path / "dd")
    (tmp_path / "ds" / "data-00000-of-00001.arrow").write_bytes(b"not arrow")
    with pytest.raises(ft.DataError, match="not a readable Arrow file"):
        read_records(tmp_path / "ds")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ft.DataError, match="no state.json"):
        read_records(tmp_path / "empty")


# --- the public Task --------------------------------------------------------------------------------------
def test_task_from_file_with_a_signature_and_by_name(tmp_path):
    (tmp_path / "triage_sig.py").write_text(NESTED)
    data = write_tickets(tmp_path / "tickets.csv")
    task = ft.Task.from_file(data, signature=str(tmp_path / "triage_sig.py") + ":Triage",
                             inputs={"subject": "Subject", "body": "Ticket Body"},
                             output={"category": "Category (final)"})
    assert task.output == "category" and task.labels == ["billing", "bug", "other"]
    assert task.signature_ref.endswith("triage_sig.py:Triage") and task.signature_fingerprint
    summary = ft.evaluate(task, [ft.Scripted(ticket_triage, enforces="script")], ["direct"],
                          store=str(tmp_path / "s.db"))
    assert summary["arms"][0]["accuracy"] == 1.0
    built = ft.Task.builtin("arithmetic:1-2:3")
    assert len(built.all_rows) == 6
    with pytest.raises(ft.ConfigError, match="has 2 answer fields"):
        ft.Task.from_file(data, signature=str(tmp_path / "triage_sig.py") + ":Triage",
                          inputs={"subject": "Subject", "body": "Ticket Body"})
    with pytest.raises(ft.ConfigError, match="neither a firsttoken nor a DSPy Signature"):
        ft.Task.from_file(data, signature=str(tmp_path / "triage_sig.py") + ":Details")
    with pytest.raises(ft.ConfigError, match="defines no 'Nope'"):
        ft.Task.from_file(data, signature=str(tmp_path / "triage_sig.py") + ":Nope")


def test_ask_takes_a_signature_file_the_question_filling_its_first_input(tmp_path):
    (tmp_path / "triage_sig.py").write_text(NESTED)
    res = cli("ask", "Urgent: refund", "--signature", "triage_sig.py:Triage", "--input", "body=charged twice",
              "--layout", "direct", *MODEL, "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    outputs = json.loads(res.stdout)["outputs"]
    assert outputs["category"] == "billing" and outputs["details"]["urgent"] is True
    res = cli("ask", "x", "--signature", "triage_sig.py:Triage", "--output", "a:int", *MODEL, cwd=tmp_path)
    assert res.returncode == 1 and "--output is for a question without --signature" in res.stderr


def test_a_builtin_task_asked_through_a_users_signature(tmp_path):
    (tmp_path / "calc_sig.py").write_text(
        "import firsttoken as ft\n\n"
        "class Calc(ft.Signature):\n"
        "    '''Solve it. Show every calculation.'''\n"
        "    question: str = ft.InputField()\n"
        "    thoughts: str = ft.OutputField(desc='each calculation written out as a op b = c, one after another')\n"
        "    answer: int = ft.OutputField()\n\n"
        "class Wrong(ft.Signature):\n"
        "    '''-'''\n"
        "    problem: str = ft.InputField()\n"
        "    answer: int = ft.OutputField()\n\n"
        "class WrongType(ft.Signature):\n"
        "    '''-'''\n"
        "    question: str = ft.InputField()\n"
        "    answer: str = ft.OutputField()\n")
    base = ["eval", "--task", "arithmetic:1-2:2", "--model", "scripted:tests.fakes:garbage", "--layouts",
            "thoughts_first", "--quiet"]
    res = cli(*base, "--signature", "calc_sig.py:Calc", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    shown = cli("show", "--run", str(tmp_path / "runs" / "arithmetic.db"), "--arm", "1", cwd=tmp_path)
    assert "Show every calculation." in shown.stdout and "a op b = c" in shown.stdout  # asked the user's way
    for cls, words in (("Wrong", "inputs problem"), ("WrongType", "scores output 'answer' of type int")):
        res = cli(*base, "--signature", f"calc_sig.py:{cls}", cwd=tmp_path)
        assert res.returncode == 1 and words in res.stderr and len(res.stderr.strip().splitlines()) == 1
