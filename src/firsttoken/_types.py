"""Output types: how each one is described in a prompt, written as JSON Schema and as a grammar, and checked.

Supported: ``str``, ``int``, ``float``, ``bool``, ``Literal[...]`` and ``Enum`` (categories), ``list[T]`` of
these, and nested pydantic models. Not handled (refused when a signature is declared): ``Optional`` and
other unions, ``dict``, tuples, sets.

Two spellings of a value exist. *JSON*: what the json syntax and nested values use, written exactly as
``json.dumps`` writes it (``", "`` and ``": "`` separators), which is also what the grammar forces.
*Plain*: what the ``fields`` syntax and ``Answer:`` lines use: a bare number, label, ``true``/``false``, a
single line of text for ``str``; lists and models are still JSON.

Parsing is strict: a value outside its type is a ``ValueError`` naming the field path. Lenient only for
letter case of categories and surrounding whitespace.
"""

from __future__ import annotations

import enum
import json
import re
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel

from ._errors import ConfigError

STR_MAX = 500  # longest string answer the grammar allows, in characters
LIST_MAX = 32  # most list items the grammar allows

_INT_RE = r"-?(0|[1-9][0-9]{0,14})"
_FLOAT_RE = r"-?(0|[1-9][0-9]{0,14})(\.[0-9]{1,10})?([eE][+-]?[0-9]{1,3})?"
# One JSON string character: anything but a quote, backslash or control character, or an escape.
JSON_CHAR = r'([^"\\\x00-\x1f]|\\["\\\/bfnrt]|\\u[0-9a-fA-F]{4})'  # "/" escaped: it ends a Lark regex


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _is_enum(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, enum.Enum)


def choices(tp: Any) -> list[Any] | None:
    """The allowed values of a category type (Literal or Enum values), else None."""
    if get_origin(tp) is Literal:
        return list(get_args(tp))
    if _is_enum(tp):
        return [m.value for m in tp]
    return None


def check_supported(tp: Any, where: str) -> None:
    """Raise ConfigError unless ``tp`` is an output type firsttoken can constrain and parse."""
    if tp in (str, int, float, bool) or _is_enum(tp):
        return
    if get_origin(tp) is Literal:
        if not all(isinstance(v, (str, int, bool)) for v in get_args(tp)):
            raise ConfigError(f"{where}: Literal values must be str, int or bool",
                              hint="use string labels, e.g. Literal['spam', 'ham']")
        return
    if get_origin(tp) is list:
        (item,) = get_args(tp) or (None,)
        if item is None:
            raise ConfigError(f"{where}: list needs an item type", hint="write list[str], list[int], ...")
        check_supported(item, f"{where}[]")
        return
    if _is_model(tp):
        for name, field in tp.model_fields.items():
            check_supported(field.annotation, f"{where}.{name}")
        return
    raise ConfigError(f"{where}: unsupported output type {tp!r}",
                      hint="use str, int, float, bool, Literal[...], Enum, list[...] or a pydantic model")


def type_name(tp: Any) -> str:
    """A short name for prompts and errors: ``int``, ``list[str]``, ``one of 'a', 'b'``."""
    opts = choices(tp)
    if opts is not None:
        return "one of " + ", ".join(json.dumps(o) if not isinstance(o, str) else f"'{o}'" for o in opts)
    if get_origin(tp) is list:
        return f"list[{type_name(get_args(tp)[0])}]"
    if _is_model(tp):
        inner = ", ".join(f"{n}: {type_name(f.annotation)}" for n, f in tp.model_fields.items())
        return f"object {{{inner}}}"
    return tp.__name__


def json_schema(tp: Any) -> dict:
    """A self-contained JSON Schema (no $refs) for one value."""
    opts = choices(tp)
    if opts is not None:
        if all(isinstance(o, str) for o in opts):
            return {"type": "string", "enum": opts}
        return {"enum": opts}
    if tp is str:
        return {"type": "string", "maxLength": STR_MAX}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if get_origin(tp) is list:
        return {"type": "array", "items": json_schema(get_args(tp)[0]), "maxItems": LIST_MAX}
    fields = tp.model_fields
    return object_schema({n: json_schema(f.annotation) for n, f in fields.items()})


def object_schema(properties: dict[str, dict]) -> dict:
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


class Grammar:
    """Collects named Lark rules; ``rule`` returns the name to reference."""

    def __init__(self) -> None:
        self.rules: dict[str, tuple[str, str]] = {}  # name -> (attributes, body)

    def rule(self, name: str, body: str, attrs: str = "") -> str:
        name = re.sub(r"[^a-z0-9_]", "_", name.lower())
        base, i = name, 1
        while name in self.rules and self.rules[name] != (attrs, body):
            i += 1
            name = f"{base}_{i}"
        self.rules[name] = (attrs, body)
        return name

    def include(self, other: Grammar) -> None:
        """Add ``other``'s rules (another layout's piece); two different rules of one name are refused."""
        for name, rule in other.rules.items():
            if self.rules.get(name, rule) != rule:
                raise ValueError(f"grammar rule {name!r} is defined twice, differently")
            self.rules[name] = rule

    def render(self, start: str) -> str:
        lines = [f"start: {start}"] + [f"{n}{f'[{a}]' if a else ''}: {b}" for n, (a, b) in self.rules.items()]
        return "\n".join(lines) + "\n"


def lark_literal(text: str) -> str:
    """A Lark string literal matching ``text`` exactly."""
    return json.dumps(text, ensure_ascii=False)


def json_value_rule(tp: Any, g: Grammar, name: str) -> str:
    """Lark expression for a JSON value of type ``tp``, spaced exactly as json.dumps writes it."""
    opts = choices(tp)
    if opts is not None:
        return "(" + " | ".join(lark_literal(json.dumps(o, ensure_ascii=False)) for o in opts) + ")"
    if tp is str:
        return g.rule(f"{name}_str", f'/"{JSON_CHAR}{{0,{STR_MAX}}}"/')
    if tp is bool:
        return '("true" | "false")'
    if tp is int:
        return g.rule("int", f"/{_INT_RE}/")
    if tp is float:
        return g.rule("float", f"/{_FLOAT_RE}/")
    if get_origin(tp) is list:
        item = json_value_rule(get_args(tp)[0], g, f"{name}_item")
        return g.rule(f"{name}_list", f'"[" ("]" | {item} (", " {item}){{0,{LIST_MAX - 1}}} "]")')
    parts = ['"{" ']
    for i, (fname, field) in enumerate(tp.model_fields.items()):
        sep = "" if i == 0 else ", "
        parts.append(lark_literal(sep + json.dumps(fname) + ": ") + " "
                     + json_value_rule(field.annotation, g, f"{name}_{fname}") + " ")
    parts.append('"}"')
    return g.rule(f"{name}_obj", "".join(parts))


def plain_value_rule(tp: Any, g: Grammar, name: str) -> str:
    """Lark expression for a plain (single-line) value, as in ``Answer: 42`` or a fields section."""
    opts = choices(tp)
    if opts is not None:
        return "(" + " | ".join(lark_literal(str(o).lower() if isinstance(o, bool) else str(o))
                                for o in opts) + ")"
    if tp is str:
        return g.rule(f"{name}_line", f"/[^\\n]{{0,{STR_MAX}}}/")
    if tp in (int, float, bool):
        return json_value_rule(tp, g, name)
    return json_value_rule(tp, g, name)


def _fail(path: str, msg: str) -> ValueError:
    return ValueError(f"{path}: {msg}")


def from_json(tp: Any, value: Any, path: str) -> Any:
    """Check a decoded JSON value against ``tp`` and return the typed Python value."""
    opts = choices(tp)
    if opts is not None:
        return _match_choice(tp, opts, value, path)
    if tp is str:
        if not isinstance(value, str):
            raise _fail(path, f"expected a string, got {json.dumps(value)[:60]}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise _fail(path, f"expected true or false, got {json.dumps(value)[:60]}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(path, f"expected an integer, got {json.dumps(value)[:60]}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(path, f"expected a number, got {json.dumps(value)[:60]}")
        return float(value)
    if get_origin(tp) is list:
        if not isinstance(value, list):
            raise _fail(path, f"expected a list, got {json.dumps(value)[:60]}")
        return [from_json(get_args(tp)[0], v, f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, dict):
        raise _fail(path, f"expected an object, got {json.dumps(value)[:60]}")
    return tp.model_validate(check_object(tp.model_fields, value, path))


def check_object(fields: dict, value: dict, path: str) -> dict:
    """Check a dict against pydantic-style ``fields`` (name -> FieldInfo); no missing or extra keys."""
    extra = [k for k in value if k not in fields]
    if extra:
        raise _fail(path, f"unexpected field {extra[0]!r}")
    out = {}
    for fname, field in fields.items():
        if fname not in value:
            raise _fail(f"{path}.{fname}" if path else fname, "missing")
        out[fname] = from_json(field.annotation, value[fname], f"{path}.{fname}" if path else fname)
    return out


def _match_choice(tp: Any, opts: list[Any], value: Any, path: str) -> Any:
    found = None
    if value in opts and type(value) in {type(o) for o in opts}:
        found = value
    elif isinstance(value, str):
        folded = [o for o in opts if isinstance(o, str) and o.casefold() == value.strip().casefold()]
        if len(folded) == 1:
            found = folded[0]
    if found is None:
        raise _fail(path, f"{json.dumps(value)[:60]} is not {type_name(tp)[:200]}")
    return tp(found) if _is_enum(tp) else found


def from_plain(tp: Any, text: str, path: str) -> Any:
    """Check a plain (single-line) value against ``tp``."""
    text = text.strip()
    opts = choices(tp)
    if opts is not None:
        if all(isinstance(o, str) for o in opts):
            return _match_choice(tp, opts, text, path)
        for o in opts:  # int / bool labels spelled as text
            if text.casefold() == (str(o).lower() if isinstance(o, bool) else str(o)).casefold():
                return tp(o) if _is_enum(tp) else o
        raise _fail(path, f"{text[:60]!r} is not {type_name(tp)[:200]}")
    if tp is str:
        return text
    if tp is bool:
        if text.lower() not in ("true", "false"):
            raise _fail(path, f"expected true or false, got {text[:60]!r}")
        return text.lower() == "true"
    if tp is int:
        if not re.fullmatch(r"[+-]?[0-9]+", text):
            raise _fail(path, f"expected an integer, got {text[:60]!r}")
        return int(text)
    if tp is float:
        try:
            if not re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", text):
                raise ValueError
            return float(text)
        except ValueError:
            raise _fail(path, f"expected a number, got {text[:60]!r}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise _fail(path, f"invalid JSON ({e.msg} at column {e.colno})") from None
    return from_json(tp, value, path)


def to_json(value: Any) -> Any:
    """A typed value as plain JSON data."""
    if isinstance(value, BaseModel):
        return {k: to_json(getattr(value, k)) for k in type(value).model_fields}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def dumps(value: Any) -> str:
    """JSON text exactly as the grammar spells it."""
    return json.dumps(to_json(value), ensure_ascii=False)


def to_plain(value: Any) -> str:
    data = to_json(value)
    if isinstance(data, bool):
        return "true" if data else "false"
    if isinstance(data, (str, int, float)):
        return str(data)
    return dumps(data)



def type_to_spec(tp: Any) -> Any:
    """A JSON-able description of a type, for storing a signature; None where it cannot be stored."""
    if tp in (str, int, float, bool):
        return tp.__name__
    opts = choices(tp)
    if opts is not None and not _is_enum(tp):
        return {"labels": opts}
    if get_origin(tp) is list:
        item = type_to_spec(get_args(tp)[0])
        return None if item is None else {"list": item}
    return None


def type_from_spec(spec: Any) -> Any:
    if isinstance(spec, str):
        return {"str": str, "int": int, "float": float, "bool": bool}[spec]
    if "labels" in spec:
        return Literal[tuple(spec["labels"])]  # type: ignore[misc]
    return list[type_from_spec(spec["list"])]  # type: ignore[misc]
