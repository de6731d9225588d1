"""What the store's migrations need, frozen as it was when they were written.

A migration runs once per store, whenever that store is first opened: if it called today's backend or
layout registry, an old store's migrated identities would depend on the version of firsttoken that opened
it. So the rules they apply are copied here and never change with the code they were copied from:

* ``m003_model_key``: a model spec's identity as of m003 (local specs: name or path, with
  ``?batch_invariant=1`` kept; ``openai:`` specs: fetch-only options and URL user-info dropped, non-default
  ``schema_mode`` and ``engine`` kept; other specs as written).
* ``M003_LAYOUT_VERSIONS``: the built-in layouts' versions then.
* ``m004_enforced``: what a spec's backend enforced of a built-in layout's constraint then.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._imports import import_object

_OPENAI_FETCH_ONLY = {"concurrency", "parallel", "api_key_env", "timeout", "max_retries", "unreachable_after",
                      "deadline"}
_LOCAL_NAMES = {"smollm2-135m", "qwen2.5-coder-1.5b"}
_GRAMMAR_MODES = {"gbnf", "lark", "ebnf"}  # carry every built-in layout
_JSON_MODES = {"json_schema", "json_object", "grammar"}  # carry layouts whose reply is one JSON object
_JSON_REPLY = {"direct", "answer_then_explain", "thoughts_first"}  # in the json syntax
_BUILT_IN = _JSON_REPLY | {"think_then_answer", "work_then_answer"}

# (layout, syntax) -> version, for the built-in layouts (others: 1)
M003_LAYOUT_VERSIONS = {("answer_then_explain", "fields"): 2, ("thoughts_first", "fields"): 2}


def layout_version(layout: str, syntax: str) -> int:
    return M003_LAYOUT_VERSIONS.get((layout, syntax), 1)


def _openai_parts(rest: str) -> tuple[str, str, dict[str, str]]:
    model, _, url = rest.partition("@")
    parts = urlsplit(url)
    return model, urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], query="")), dict(parse_qsl(parts.query))


def m003_model_key(spec: str) -> str:
    name, sep, rest = spec.partition(":")
    if sep and name == "openai":
        model, base, options = _openai_parts(rest)
        kept = {k: v for k, v in sorted(options.items()) if k not in _OPENAI_FETCH_ONLY
                and not (k == "schema_mode" and v == "json_schema") and not (k == "engine" and v == "vllm")}
        return f"openai:{model}@{base}" + (f"?{urlencode(kept)}" if kept else "")
    if sep and name in ("scripted", "llamacpp"):
        return spec
    target, _, query = spec.partition("?")
    return f"{target}?batch_invariant=1" if ("batch_invariant", "1") in parse_qsl(query) else target


def m004_enforced(model: str, layout: str, syntax: str) -> tuple[str | None, bool]:
    """What the backend of the spec ``model`` enforced of a constrained (layout, syntax) arm, and whether that
    can be told (False: a backend object's label, a layout not built in, a script that no longer imports)."""
    if layout not in _BUILT_IN:
        return None, False
    name, sep, rest = model.partition(":")
    if sep and name == "openai":
        mode = _openai_parts(rest)[2].get("schema_mode", "json_schema")
        if mode in _GRAMMAR_MODES:
            return mode, True
        if mode in _JSON_MODES:
            return (mode if layout in _JSON_REPLY and syntax == "json" else None), True
        return None, mode == "none"
    if sep and name == "scripted":
        try:
            return getattr(import_object(rest, "model scripted:", ""), "enforces", None), True
        except Exception:  # noqa: BLE001 - a script that no longer imports: unknown
            return None, False
    target = model.partition("?")[0]
    if (sep and name == "llamacpp") or target in _LOCAL_NAMES or target.endswith(".gguf"):
        return "llguidance", True
    return None, False
