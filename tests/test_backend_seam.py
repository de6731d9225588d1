"""The seam between the core and its backends: one registry for every --model spec, the protocol's three
methods, batches yielded as they finish, the call cache as a backend."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

import firsttoken as ft
from firsttoken.backends import check_spec, model_key, resolve

from .signatures import Arithmetic
from .helpers import ROOT, cli, write_sums


class Toy(ft.BackendBase):
    """A whole backend in a few lines: sums "a+b" questions, in any JSON layout. Its spec is ``toy:NAME?offset=N``;
    the default ``from_spec`` builds ``Toy(NAME)`` and sets ``options``."""

    name = "toy"

    class Options(ft.BackendOptions):
        offset: int = 0  # added to every answer (it changes replies: part of the model's identity)

    options = Options()  # the default, for a Toy built directly

    def __init__(self, target: str = "", label: str = "toy"):
        self.target, self.label = target, label

    def generate(self, request):
        a, b = request.messages[-1]["content"].split(": ", 1)[1].split("+")
        return ft.Generation(json.dumps({"answer": int(a) + int(b) + self.options.offset}))


def test_a_backend_is_one_class_and_one_registration_line(tmp_path, monkeypatch, restore_registries):
    ft.register_backend(Toy)
    assert model_key("toy:a") == "toy:a" and model_key("toy:a?offset=0") == "toy:a"  # defaults are not identity
    assert model_key("toy:a?offset=2") == "toy:a?offset=2"
    built = resolve("toy:a?offset=2")
    assert isinstance(built, Toy) and built.options.offset == 2 and built.label == "toy:a?offset=2"
    data = write_sums(tmp_path / "sums.jsonl", n=6)
    monkeypatch.chdir(tmp_path)
    from firsttoken.cli import app

    res = CliRunner().invoke(app, ["eval", "--data", str(data), "--inputs", "question", "--output", "answer",
                                   "--metric", "numeric", "-m", "toy:a", "--layouts", "direct", "--quiet", "--json"])
    assert res.exit_code == 0, res.output
    arm = json.loads(res.stdout)["arms"][0]
    assert arm["model"] == "toy:a" and arm["n"] == 6 and arm["correct"] == 6


def test_a_backend_option_is_one_field_reached_from_the_spec_and_from_a_flag(tmp_path, monkeypatch,
                                                                              restore_registries):
    """Adding an option to a backend is one field in its Options: ``?lie=1`` in the spec and ``--model-option
    lie=1`` on eval, predict and ask reach it, typed; it is part of the model's identity (a new arm)."""

    class Liar(Toy):
        name = "liar"

        class Options(Toy.Options):
            lie: bool = False  # the one line that adds the option

        def generate(self, request):
            gen = super().generate(request)
            return ft.Generation(json.dumps({"answer": json.loads(gen.text)["answer"] + self.options.lie}))

    ft.register_backend(Liar)
    data = write_sums(tmp_path / "sums.jsonl", n=4)
    monkeypatch.chdir(tmp_path)
    from firsttoken.cli import app

    def eval_(*extra):
        res = CliRunner().invoke(app, ["eval", "--data", str(data), "--inputs", "question", "--output", "answer",
                                       "--metric", "numeric", "--layouts", "direct", "--quiet", "--json", *extra])
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)["arms"]

    honest = eval_("-m", "liar:x")[0]
    by_spec = eval_("-m", "liar:x?lie=1")[0]
    by_flag = eval_("-m", "liar:x", "--model-option", "lie=1", "--store", "flag.db")[0]  # its own rows, run
    assert honest["correct"] == 4 and by_spec["correct"] == 0 and by_flag["correct"] == 0
    assert honest["n"] == by_spec["n"] == by_flag["n"] == 4  # every row ran, under the model the flag made
    assert by_spec["model"] == by_flag["model"] == "liar:x?lie=1" and by_spec["id"] == by_flag["id"] != honest["id"]
    # typed: a value that is not a bool, or an option the backend lacks, is one line naming it
    bad = CliRunner().invoke(app, ["eval", "--data", str(data), "--inputs", "question", "--output", "answer",
                                   "-m", "liar:x?lie=maybe", "--layouts", "direct", "--quiet"])
    assert bad.exit_code != 0 and "lie" in str(bad.exception) and "bool" in str(bad.exception)
    with pytest.raises(ft.ConfigError, match="--model-option colour: no --model's backend has that option"):
        ft.evaluate(ft.Task.from_file(data, inputs=["question"], output="answer"), ["liar:x"], ["direct"],
                    model_options={"colour": "red"}, store=tmp_path / "n.db")
    # predict applies the arm that was measured: an option that would change its model is refused
    (tmp_path / "new.jsonl").write_text('{"question": "2+2"}\n')
    res = CliRunner().invoke(app, ["predict", "--run", "runs/sums.db", "--arm", honest["id"], "--data", "new.jsonl",
                                   "--out", "p.jsonl", "--model-option", "lie=1"])
    assert res.exit_code != 0 and "would change the arm's model" in str(res.exception)
    res = CliRunner().invoke(app, ["predict", "--run", "runs/sums.db", "--arm", by_flag["id"], "--data", "new.jsonl",
                                   "--out", "p.jsonl"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "p.jsonl").read_text())["outputs"]["answer"] == 5  # 2+2, and the lie
    res = CliRunner().invoke(app, ["ask", "3+4", "-m", "liar:x", "--model-option", "lie=1", "--layout", "direct",
                                   "-o", "answer:int", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["outputs"]["answer"] == 8


def test_a_backend_registered_by_class_runs_eval_predict_and_ask(tmp_path, monkeypatch, restore_registries):
    ft.register_backend(Toy)
    data = write_sums(tmp_path / "sums.jsonl", n=3)
    monkeypatch.chdir(tmp_path)
    from firsttoken.cli import app

    res = CliRunner().invoke(app, ["eval", "--data", str(data), "--inputs", "question", "--output", "answer",
                                   "--metric", "numeric", "-m", "toy:t", "--layouts", "direct", "--quiet",
                                   "--json"])
    assert res.exit_code == 0, res.output
    assert [a["correct"] for a in json.loads(res.stdout)["arms"]] == [3]
    (tmp_path / "new.csv").write_text("question\n5+6\n1+1\n")
    res = CliRunner().invoke(app, ["predict", "--run", "runs/sums.db", "--arm", "1", "--data", "new.csv",
                                   "--out", "p.jsonl"])
    assert res.exit_code == 0, res.output
    lines = (tmp_path / "p.jsonl").read_text().splitlines()
    assert [json.loads(line)["outputs"]["answer"] for line in lines] == [11, 2]
    res = CliRunner().invoke(app, ["ask", "20+22", "-m", "toy:t", "--layout", "direct", "-o", "answer:int",
                                   "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["outputs"]["answer"] == 42


def test_a_registered_class_must_declare_its_spec(restore_registries):
    class NoName(ft.BackendBase):
        name = "not a prefix"

    with pytest.raises(ft.ConfigError, match="no usable name"):
        ft.register_backend(NoName)

    class BadOptions(ft.BackendBase):
        name = "bad"
        Options = dict  # not a BackendOptions

    with pytest.raises(ft.ConfigError, match="Options must subclass"):
        ft.register_backend(BadOptions)


def test_unknown_specs_name_the_registered_prefixes(restore_registries):
    with pytest.raises(ft.ModelNotFoundError, match="unknown model 'gpt-9'") as info:
        check_spec("gpt-9")
    assert "openai:" in info.value.hint and "scripted:" in info.value.hint
    ft.register_backend(Toy)
    with pytest.raises(ft.ModelNotFoundError) as info:
        check_spec("gpt-9")
    assert "toy:" in info.value.hint


class Slow(ft.BackendBase):
    """Finishes request i after (n - i) ticks: the last request is the first done."""

    options = ft.BackendOptions(parallel=4)  # four requests at once

    def generate(self, request):
        import time

        i = int(request.messages[-1]["content"].split(": ", 1)[1].split("+")[0])
        time.sleep(0.05 * (4 - i))
        return ft.Generation(json.dumps({"answer": i}))


def test_completed_yields_each_row_as_it_finishes_and_batch_keeps_input_order():
    p = ft.Predictor(Arithmetic, layout="direct", model=Slow())
    rows = [{"question": f"{i}+0"} for i in range(4)]
    order = [i for i, _ in p.completed(rows)]
    assert sorted(order) == [0, 1, 2, 3] and order != [0, 1, 2, 3]  # out of order: as they finished
    assert [r.answer for r in p.batch(rows)] == [0, 1, 2, 3]


def test_a_plugin_batch_that_raises_fails_only_the_rows_it_did_not_answer():
    class HalfBatch(ft.BackendBase):
        def generate(self, request):
            return ft.Generation('{"answer": 1}')

        def generate_batch(self, requests):
            yield 0, self.generate(requests[0])
            raise RuntimeError("the plugin broke")

    results = ft.Predictor(Arithmetic, layout="direct", model=HalfBatch()).batch([{"question": "q"}] * 3)
    assert results[0].answer == 1
    assert all(isinstance(r, ft.BackendError) and "RuntimeError: the plugin broke" in str(r) for r in results[1:])


def test_the_call_cache_answers_stored_calls_and_sends_identical_ones_once(tmp_path):
    from firsttoken.experiments import Store
    from firsttoken.experiments._cache import Cached

    inner = ft.Scripted(lambda messages: '{"answer": 2}')
    store = Store(tmp_path / "c.db")
    cached = Cached(inner, store, "scripted")
    p = ft.Predictor(Arithmetic, layout="direct", model=cached)
    rows = [{"question": "1+1"}, {"question": "1+1"}, {"question": "2+0"}]
    outs = dict(p.completed(rows))
    assert len(inner.calls) == 2  # the repeated row was sent once
    assert [outs[i].generation.cached for i in range(3)] == [False, True, False]
    record = cached.call_record(outs[0].generation)
    assert record is not None and cached.call_record(outs[1].generation) is None
    store.add_call(*record)
    again = ft.Predictor(Arithmetic, layout="direct", model=Cached(inner, store, "scripted"))(question="1+1")
    assert again.generation.cached and len(inner.calls) == 2  # answered from the store
    store.close()


class Batches(Toy):
    """Toy that records the size of every generate_batch call and the order of its requests."""

    def __init__(self, label: str):
        super().__init__(label=label)

        self.batches: list[list[str]] = []

    def generate_batch(self, requests):
        self.batches.append([r.constraint.lark for r in requests])  # one grammar per layout
        yield from super().generate_batch(requests)


def test_eval_sends_all_arms_of_a_model_in_one_batch_arm_after_arm(tmp_path):
    from firsttoken.experiments import evaluate, file_task

    task = file_task(write_sums(tmp_path / "sums.jsonl", n=5), ["question"], "answer", metric="numeric")
    a, b = Batches("toy-a"), Batches("toy-b")
    events = []

    class Log:
        def arm_started(self, arm, total, done):
            events.append(("start", arm.model, arm.layout))

        def row_done(self, arm, result):
            events.append(("row", arm.model, arm.layout))

        def arm_finished(self, arm):
            events.append(("end", arm.model, arm.layout))

    layouts = ["direct", "thoughts_first", "answer_then_explain"]
    summary = evaluate(task, [a, b], layouts, store=tmp_path / "s.db", progress=Log())
    assert [arm["n"] for arm in summary["arms"]] == [5] * 6  # (Toy only answers in the direct shape)
    for backend in (a, b):  # one batch per model with every arm's rows, grouped by arm (prompts share a prefix)
        assert len(backend.batches) == 1 and len(backend.batches[0]) == 15
        firsts = backend.batches[0]
        assert len({firsts[0], firsts[5], firsts[10]}) == 3 and firsts[:5] == [firsts[0]] * 5
    assert [e for e in events if e[0] == "end"] == [("end", m, lay) for m in ("toy-a", "toy-b") for lay in layouts]
    assert events.index(("end", "toy-a", "answer_then_explain")) < events.index(("start", "toy-b", "direct"))
    again = evaluate(task, [a, b], layouts, store=tmp_path / "s.db", progress=Log())
    assert again["arms"] == summary["arms"] and len(a.batches) == 1  # nothing left to run: no batch at all


def test_completed_many_refuses_predictors_of_different_models():
    from firsttoken._predictor import completed_many

    p, q = (ft.Predictor(Arithmetic, layout="direct", model=Toy()) for _ in range(2))
    with pytest.raises(ft.ConfigError, match="different models"):
        list(completed_many([(p, {"question": "1+1"}), (q, {"question": "1+1"})]))


def test_a_plugin_that_still_declares_parallel_as_an_attribute_keeps_it_with_a_warning():
    """Before options were every backend's configuration, a backend said ``parallel = 4``; that still runs four at
    once, and warns with the one line that replaces it."""
    with pytest.warns(DeprecationWarning, match=r"options = ft.BackendOptions\(parallel=4\)"):
        class Old(Slow):
            parallel = 4
            options = ft.BackendOptions()

    assert Old().options.parallel == 4


def test_a_backend_published_by_another_package_is_named_from_the_shell(tmp_path):
    """A package that declares ``[project.entry-points."firsttoken.backends"] plug = "plug_pkg:Plug"`` (here an
    installed distribution written by hand: its module and its dist-info, on the path) is found by name:
    ``firsttoken eval --model plug:x`` from a shell, with its options, no Python import by the user."""
    site = tmp_path / "site"
    (site / "plug_pkg").mkdir(parents=True)
    (site / "plug_pkg" / "__init__.py").write_text(
        "import json\nimport firsttoken as ft\n\n\n"
        "class Plug(ft.BackendBase):\n"
        "    name = 'plug'\n\n"
        "    class Options(ft.BackendOptions):\n"
        "        offset: int = 0\n\n"
        "    def __init__(self, target=''):\n"
        "        self.target = target\n\n"
        "    def generate(self, request):\n"
        "        a, b = request.messages[-1]['content'].split(': ', 1)[1].split('+')\n"
        "        return ft.Generation(json.dumps({'answer': int(a) + int(b) + self.options.offset}))\n")
    info = site / "plug_pkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plug-pkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[firsttoken.backends]\nplug = plug_pkg:Plug\n")
    data = write_sums(tmp_path / "sums.jsonl", n=3)
    env = {"PYTHONPATH": f"{ROOT}{os.pathsep}{site}"}
    res = cli("eval", "--data", str(data), "--inputs", "question", "--output", "answer", "--metric", "numeric",
              "-m", "plug:x", "-m", "plug:x?offset=1", "--layouts", "direct", "--quiet", "--json",
              cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    arms = {a["model"]: a for a in json.loads(res.stdout)["arms"]}
    assert arms["plug:x"]["correct"] == 3 and arms["plug:x?offset=1"]["correct"] == 0
    (info / "entry_points.txt").write_text("[firsttoken.backends]\nplug = plug_pkg:Missing\n")
    res = cli("eval", "--data", str(data), "--inputs", "question", "--output", "answer", "-m", "plug:x",
              "--layouts", "direct", "--quiet", cwd=tmp_path, env=env)
    assert res.returncode != 0 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "plugin 'plug'" in res.stderr and "plug-pkg" in res.stderr
