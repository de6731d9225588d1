"""Candidate layouts for a JSON reasoning field that makes the model *work* rather than plan (issue 29, part 3).

The seed's `thoughts_first` puts free reasoning in a JSON string ahead of the answer; on GSM8K the model
mostly writes a plan there and guesses. Each candidate keeps the reply one JSON object with the reasoning
first and changes one thing:

- ``thoughts_calc``: the field's description asks for every calculation written out with its result;
- ``steps_first``: the reasoning is a JSON array of steps, one calculation each;
- ``thoughts_lines``: the string may hold raw line breaks, as free text does (so the reply is JSON as
  Python's ``json.loads(strict=False)`` reads it, not strict JSON: said wherever it is reported).

(Worked few-shot demos are the fourth variant: `thoughts_first` with ``--demos json_thoughts_demos.jsonl``.)
They are run by reference (``--layouts scripts/json_thoughts.py:StepsFirst``), so they are not in the
library until one earns it. Local decoding only: none defines a server grammar.
"""

from __future__ import annotations

import json
from typing import Any

from firsttoken import _types
from firsttoken.layouts import Constraint, Region
from firsttoken.layouts._base import fail, strip_fence
from firsttoken.layouts._ordered import ThoughtsFirst, _no_duplicates, _repeat

_CALC = ("a string: work the task out here, step by step, writing every calculation out with its result "
         '(e.g. "12 * 3 = 36"), not a plan of what to compute; the answer comes after it')


class ThoughtsCalc(ThoughtsFirst):
    name = "thoughts_calc"
    description = "thoughts_first, the field asking for every calculation written out with its result"

    def _help(self, name, sig):
        return _CALC if name in self.before else super()._help(name, sig)


class StepsFirst(ThoughtsFirst):
    """``{"steps": ["12 * 3 = 36", ...], "answer": ...}``: no region a backend closes; the grammar bounds
    it (``STEPS`` steps of at most ``STEP_CHARS`` characters), so its arms have no thinking budget."""

    name = "steps_first"
    description = "the working as a JSON array of steps, one calculation each, then the answer fields"
    before = ("steps",)
    STEPS, STEP_CHARS = 24, 300

    @property
    def has_reasoning(self) -> bool:
        return False

    def _help(self, name, sig):
        if name in self.before:
            return ('a list of strings: the working, one step per item, each a calculation written out with its '
                    'result (e.g. "12 * 3 = 36")')
        return super()._help(name, sig)

    def json_grammar(self, sig, g, bound=None):
        parts = []
        for i, name in enumerate(self._order(sig)):
            key = ("{" if i == 0 else ", ") + json.dumps(name) + ": "
            if name in self.before:
                step = g.rule("step", f'/"{_types.JSON_CHAR}{{0,{self.STEP_CHARS}}}"/')
                value = g.rule("steps", f'"[" ({step} (", " {step}){{0,{self.STEPS - 1}}})? "]"')
            else:
                value = _types.json_value_rule(sig.output_fields[name].annotation, g, f"v_{name}")
            parts.append(f"{_types.lark_literal(key)} {value}")
        return " ".join(parts) + ' "}"', None

    def constraint(self, sig):
        g = _types.Grammar()
        body, _ = self.json_grammar(sig, g)
        props = {n: ({"type": "array", "items": {"type": "string"}} if n in self.before
                     else _types.json_schema(sig.output_fields[n].annotation)) for n in self._order(sig)}
        return Constraint(g.render(body), _types.object_schema(props), None)

    def _values(self, sig, outputs, reasoning, extras):
        values = super()._values(sig, outputs, reasoning, extras)
        values["steps"] = [line for line in (reasoning or "").split("\n") if line.strip()]
        return values

    def _parse_json(self, text: str) -> dict[str, Any]:
        data = super()._parse_json(text)
        steps = data.get("steps")
        if "steps" in data:
            if not (isinstance(steps, list) and all(isinstance(s, str) for s in steps)):
                raise fail("field 'steps' must be a list of strings", text)
            data["steps"] = "\n".join(steps)  # the layout's reasoning, as the parser of its family reads it
        return data


class ThoughtsLines(ThoughtsFirst):
    """The thoughts string may hold raw line breaks (free text's lines); everything else is JSON."""

    name = "thoughts_lines"
    description = "thoughts_first whose thoughts string may hold raw line breaks, one step per line"

    def _help(self, name, sig):
        if name in self.before:
            return ("a string: work the task out in full, one step per line (this string may span several lines: "
                    "write the line breaks as they are, unescaped)")
        return super()._help(name, sig)

    def json_grammar(self, sig, g, bound=None):
        region = None
        parts = []
        for i, name in enumerate(self._order(sig)):
            key = ("{" if i == 0 else ", ") + json.dumps(name) + ": "
            if name in self.before:
                value = g.rule(name, f'/"({_types.JSON_CHAR}|\\n){_repeat(bound)}"/')
                region = Region(open=key + '"', end='"', close='"', json_string=True)
            else:
                value = _types.json_value_rule(sig.output_fields[name].annotation, g, f"v_{name}")
            parts.append(f"{_types.lark_literal(key)} {value}")
        return " ".join(parts) + ' "}"', region

    def constraint(self, sig):
        lark, region = self._lark(sig, None)
        return Constraint(lark, None, region)  # no JSON Schema: the reply is not strict JSON

    def render(self, sig, outputs, reasoning=None, extras=None):
        values = self._values(sig, outputs, reasoning, extras)
        lines = "\n".join(json.dumps(line, ensure_ascii=False)[1:-1] for line in values.pop("thoughts").split("\n"))
        rest = _types.dumps(values)[1:]
        return '{"thoughts": "' + lines + '"' + (", " + rest if rest != "}" else "}")

    def _parse_json(self, text: str) -> dict[str, Any]:
        try:
            data = json.loads(strip_fence(text), strict=False, object_pairs_hook=_no_duplicates)
        except ValueError:
            return super()._parse_json(text)  # its error message
        if not isinstance(data, dict):
            raise fail(f"expected a JSON object, got {type(data).__name__}", text)
        return data
