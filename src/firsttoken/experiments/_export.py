"""``dspy_program``: an arm of a run as a DSPy program, a Python file that loads in DSPy (``export --dspy``).

The file declares the arm's signature as a ``dspy.Signature`` class (its instructions, field descriptions and
output types), its demos, a ``dspy.Predict`` holding them, the ``Adapter`` with the arm's layout and options,
and ``configure()``, which sets DSPy's LM to the arm's model. Through the adapter its messages are the arm's
own, word for word. Run as a script it reads one JSON object of inputs per line and prints the outputs.
Written as text, so exporting needs no DSPy; loading it does.
Does not handle: label descriptions (DSPy has no place for them: they join the field's description, so
the prompt differs from the arm's there, and the file says so).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, get_args, get_origin

from .. import _types
from .._errors import ConfigError
from .._predictor import Predictor
from ._apply import arm_program


def dspy_program(store_path: str | Path, arm_ref: str | None) -> tuple[dict[str, Any], str]:
    """The arm (``find_arm``'s rules) and the source of its DSPy program."""
    arm, predictor, measured = arm_program(store_path, arm_ref)
    return arm, program_source(predictor, arm["model"], origin=f"arm {arm['id']} of {store_path}", summary=measured)


def program_source(predictor: Predictor, model: str, *, origin: str, summary: str = "") -> str:
    """The Python source of the DSPy program for ``predictor`` (an arm's) on ``model`` (its spec)."""
    sig, layout, options = predictor.signature, predictor.layout, predictor.options
    name = re.sub(r"\W|^(?=\d)", "_", sig.__name__)  # a class name (a task may be called "my-task")
    described = [n for n, f in sig.output_fields.items() if f.labels]
    fields = []
    for name, f in [*sig.input_fields.items(), *sig.output_fields.items()]:
        desc = f.desc + ("; " if f.desc and f.labels else "") + "; ".join(f"{k}: {v}" for k, v in f.labels.items())
        kind = "InputField" if f.kind == "input" else "OutputField"
        arg = f"desc={desc!r}" if desc else ""
        fields.append(f"    {name}: {_source(f.annotation, f'{sig.__name__}.{name}')} = dspy.{kind}({arg})")
    inputs = list(sig.input_fields)
    # a demo's "reasoning" is the layout's region (the adapter reads it where the signature has no such field)
    demos = [{k: _types.to_json(v) for k, v in d.items()} for d in predictor.demos]
    settings = ", ".join(f"{k}={getattr(options, k)!r}" for k in ("constrained", "max_thinking_tokens",
                                                                     "max_answer_tokens"))
    note = (f"\nLabel descriptions of {', '.join(described)} are in the field descriptions here (DSPy has no "
            f"place for them), so that part of the prompt differs from the arm's.\n") if described else ""
    return f'''"""A DSPy program: {origin}, exported by `firsttoken export --dspy`.

Layout {layout.name}/{layout.syntax} on {model}. {summary}
{note}
    import dspy, program            # this file
    program.configure()             # DSPy's LM: the arm's model; its adapter: the arm's layout
    program.program(**inputs)       # a dspy.Prediction with the outputs, typed

or: python program.py < rows.jsonl (one JSON object of inputs per line; prints one of outputs per line)
"""

import json
import re
import sys
from typing import Literal  # noqa: F401 (used where an output is a label)

import dspy

import firsttoken.dspy as ftd


class {name}(dspy.Signature):
    {json.dumps(sig.instructions, ensure_ascii=False)}

{chr(10).join(fields)}


MODEL = {model!r}
INPUTS = {inputs!r}
DEMOS = {json.dumps(demos, indent=4, ensure_ascii=False)}

program = dspy.Predict({name})
program.demos = [dspy.Example(**demo).with_inputs(*INPUTS) for demo in DEMOS]
adapter = ftd.Adapter({layout.name!r}, {layout.syntax!r}, {settings})


def configure(model: str = MODEL) -> None:
    dspy.configure(lm=ftd.LM(model), adapter=adapter)


if __name__ == "__main__":
    configure()
    for line in sys.stdin:
        if line.strip():
            out = program(**{{name: value for name, value in json.loads(line).items() if name in INPUTS}})
            print(json.dumps(dict(out.items()), ensure_ascii=False, default=str))
'''


def _source(tp: Any, where: str) -> str:
    """A type as Python source (the types a stored signature can hold)."""
    if tp in (str, int, float, bool):
        return tp.__name__
    if get_origin(tp) is list:
        return f"list[{_source(get_args(tp)[0], where)}]"
    opts = _types.choices(tp)
    if opts is not None and not isinstance(tp, type):
        return f"Literal[{', '.join(repr(o) for o in opts)}]"
    raise ConfigError(f"export --dspy: {where} has a type that cannot be written as source ({tp!r})",
                      hint="signatures with str, int, float, bool, Literal and list outputs export")
