"""firsttoken inside DSPy: the adapter and LM on the packaged model, DSPy's own modules and optimizer, other
DSPy LMs (nothing enforced, said plainly), async, and `firsttoken export --dspy`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Literal

import dspy
import pytest
from dspy.utils.exceptions import AdapterParseError

import firsttoken as ft
import firsttoken.dspy as ftd

from .engines import EngineStub
from .helpers import ROOT, SUM, cli, cli_env, eval_args, write_sums
from .signatures import CATEGORIES, Address

ITEMS = [("Red Lipstick", "A long-lasting matte lipstick."), ("Oak Dining Table", "Solid oak, seats six."),
         ("Basmati Rice 5kg", "Long-grain aromatic rice."), ("Trail Running Shoes", "Grippy soles for men."),
         ("Eau de Parfum", "A floral fragrance, 50 ml."), ("Phone Case", "Shockproof case for smartphones.")]


class ClassifyProduct(dspy.Signature):
    """Classify the product into one category."""

    item_name: str = dspy.InputField()
    item_description: str = dspy.InputField()
    thoughts: str = dspy.OutputField(desc="Reason step by step about what the product is before choosing.")
    category: Literal[CATEGORIES] = dspy.OutputField()  # type: ignore[valid-type]


@pytest.fixture(scope="module")
def lm(smol):
    return ftd.LM(smol, cache=False)


@pytest.mark.model
def test_the_seeds_thoughts_signature_in_dspy_gives_only_valid_labels(lm):
    with dspy.context(lm=lm, adapter=ftd.Adapter("thoughts_first", max_thinking_tokens=48)):
        preds = [dspy.Predict(ClassifyProduct)(item_name=n, item_description=d) for n, d in ITEMS]
    assert all(p.category in CATEGORIES for p in preds)  # 0 invalid labels, 0 parse errors (it would raise)
    assert all(isinstance(p.thoughts, str) and p.thoughts for p in preds)  # the region is the thoughts field
    sent = lm.history[-1].get("request")
    assert sent is not None and "firsttoken" in sent.config.extensions  # the constraint went with the call
    assert len(lm.history) == len(ITEMS)  # one DSPy call, one history entry each


@pytest.mark.model
@pytest.mark.parametrize("layout", ["thoughts_first", "think_then_answer", "work_then_answer"])
def test_chain_of_thought_reasoning_is_the_layouts_region(lm, layout):
    sig = ClassifyProduct.delete("thoughts")
    with dspy.context(lm=lm, adapter=ftd.Adapter(layout, max_thinking_tokens=32)):
        pred = dspy.ChainOfThought(sig)(item_name="Red Lipstick", item_description="A matte lipstick.")
    assert pred.category in CATEGORIES and isinstance(pred.reasoning, str) and pred.reasoning.strip()


@pytest.mark.model
def test_bootstrap_few_shot_compiles_through_the_adapter_and_its_demos_reach_the_prompt(lm):
    class Sentiment(dspy.Signature):
        """Is the review positive or negative?"""

        review: str = dspy.InputField()
        sentiment: Literal["positive", "negative"] = dspy.OutputField()

    train = [dspy.Example(review=r, sentiment=s).with_inputs("review") for r, s in [
        ("I loved it, wonderful!", "positive"), ("Terrible, broke in a day.", "negative"),
        ("Great value, very happy.", "positive"), ("Awful service, never again.", "negative")]]
    adapter = ftd.Adapter("direct")
    with dspy.context(lm=lm, adapter=adapter):
        compiled = dspy.BootstrapFewShot(metric=lambda ex, pred, trace=None: ex.sentiment == pred.sentiment,
                                         max_bootstrapped_demos=2, max_labeled_demos=2).compile(
            dspy.Predict(Sentiment), trainset=train)
        demos = compiled.demos
        assert demos
        preds = [compiled(review=r) for r in ["Fantastic, I recommend it.", "Worst purchase ever."]]
    assert all(p.sentiment in ("positive", "negative") for p in preds)
    prompt = " ".join(m["content"] for m in adapter.format(Sentiment, demos, {"review": "x"}))
    assert all(d["review"] in prompt for d in demos)
    sent = lm.history[-1]["request"]
    assert any(demos[0]["review"] in (m.text or "") for m in sent.messages)  # in what the model was sent


def test_with_another_dspy_lm_the_layout_is_parsed_strictly_and_said_to_be_unenforced():
    dummy = dspy.utils.DummyLM([{"thoughts": "it is a lipstick", "category": "beauty"},
                                {"thoughts": "hmm", "category": "cosmetics"}])
    adapter = ftd.Adapter("thoughts_first", "fields")  # DSPy's own markers, which DummyLM writes
    with dspy.context(lm=dummy, adapter=adapter):
        with pytest.warns(ftd.NotEnforced, match="not enforced"):
            pred = dspy.Predict(ClassifyProduct)(item_name="Red Lipstick", item_description="matte")
        assert pred.category == "beauty" and pred.thoughts == "it is a lipstick"
        with pytest.raises(AdapterParseError, match="cosmetics|category"):  # a label outside the list: no fallback
            dspy.Predict(ClassifyProduct)(item_name="Red Lipstick", item_description="matte")


def test_the_lms_own_settings_reach_the_request_under_the_calls():
    dummy = dspy.utils.DummyLM([{"thoughts": "t", "category": "beauty"}] * 2)
    dummy.kwargs.update(temperature=0.7, max_tokens=300)
    with dspy.context(lm=dummy, adapter=ftd.Adapter("thoughts_first", "fields")), pytest.warns(ftd.NotEnforced):
        dspy.Predict(ClassifyProduct)(item_name="a", item_description="b")
        first = dummy.history[-1]["request"].config
        dspy.Predict(ClassifyProduct, temperature=0.2)(item_name="a", item_description="b")
        second = dummy.history[-1]["request"].config
    assert (first.temperature, first.max_tokens) == (0.7, 300 + 512)  # the answer's 300 and the region's 512
    assert second.temperature == 0.2


def test_a_setting_the_adapter_cannot_honour_is_one_clear_error():
    lm = ftd.LM(ft.Scripted(['{"thoughts": "x", "category": "beauty"}']), cache=False)
    with dspy.context(lm=lm, adapter=ftd.Adapter()), pytest.raises(ft.ConfigError, match="n=3"):
        dspy.Predict(ClassifyProduct, n=3)(item_name="a", item_description="b")


def test_async_dspy_runs_on_the_async_client_with_the_constraint_enforced():
    stub = EngineStub("vllm")
    with stub:
        from firsttoken.experiments._probe import Probe

        lm = ftd.LM(stub.spec(schema_mode="lark", model_thinking="off"), cache=False)

        class Ask(dspy.Signature):
            __doc__ = Probe.instructions
            question: str = dspy.InputField()
            answer: Literal["zebulon", "quillet"] = dspy.OutputField()

        async def main():
            with dspy.context(lm=lm, adapter=ftd.Adapter("direct")):
                return await asyncio.gather(*[dspy.Predict(Ask).acall(question=f"q{i}") for i in range(5)])

        preds = asyncio.run(main())
    assert [p.answer for p in preds] == ["zebulon"] * 5  # the stub writes the layout's reply only when sent it
    assert all("structured_outputs" in b for b in stub.bodies) and len(stub.bodies) == 5


@pytest.mark.parametrize(("layout", "demos"), [("thoughts_first", False), ("work_then_answer", True)])
def test_export_writes_an_arm_as_a_dspy_program_that_sends_the_arms_own_messages(tmp_path, layout, demos):
    data = write_sums(tmp_path / "sums.jsonl", 6)
    extra = []
    if demos:  # worked demos: their reasoning is the layout's region, which the signature has no field for
        (tmp_path / "demos.jsonl").write_text("".join(
            json.dumps({"question": f"{i}+1", "answer": i + 1, "reasoning": f"{i} plus 1 is {i + 1}"}) + "\n"
            for i in range(3)))
        extra = ["--demos", str(tmp_path / "demos.jsonl")]
    res = cli(*eval_args(data, "--model", SUM, "--layouts", layout, *extra), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    db = tmp_path / "runs" / "sums.db"
    program = tmp_path / "sums_program.py"
    res = cli("export", "--run", str(db), "--arm", "1", "--dspy", "--out", str(program), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "class " in program.read_text() and f"ftd.Adapter('{layout}'" in program.read_text()
    shown = json.loads(cli("show", "--run", str(db), "--arm", "1", "--json", cwd=tmp_path).stdout)
    first = json.loads(data.read_text().splitlines()[0])
    check = (f"import sys, json; sys.path.insert(0, {str(tmp_path)!r}); import sums_program as p; "
             f"print(json.dumps(p.adapter.format(p.program.signature, p.program.demos, "
             f"{{'question': {first['question']!r}}})))")
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=cli_env(), cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == shown["messages"]  # word for word what the arm sent
    rows = "".join(json.dumps({"question": f"{i}+2"}) + "\n" for i in range(3))
    run = subprocess.run([sys.executable, str(program)], input=rows, capture_output=True, text=True,
                         env=cli_env(), cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert [json.loads(line)["answer"] for line in run.stdout.splitlines()] == [2, 3, 4]


def test_export_refuses_without_a_format_and_names_the_flag(tmp_path):
    res = cli("export", "--run", str(tmp_path / "x.db"), cwd=tmp_path)
    assert res.returncode != 0 and "--dspy" in res.stderr and len(res.stderr.strip().splitlines()) == 1


class Extract(dspy.Signature):
    """Extract the address."""

    text: str = dspy.InputField()
    address: Address = dspy.OutputField()


def test_a_nested_pydantic_output_goes_through_the_lm_with_its_constraint():
    sent = []

    def reply(messages):
        return '{"address": {"street": "High Street", "number": 12}}'

    reply.enforces = "script"
    lm = ftd.LM(ft.Scripted(reply), cache=False)
    with dspy.context(lm=lm, adapter=ftd.Adapter("direct")):
        pred = dspy.Predict(Extract)(text="12 High Street")
        sent.append(lm.history[-1]["request"])
    assert pred.address.street == "High Street" and pred.address.number == 12
    key = sent[0].config.extensions["firsttoken"]["constraint"]
    assert "number" in lm.engine._constraints[key].lark  # the nested type's constraint reached the engine
