"""What a server's reply or failure means, apart from any engine: a streamed reply collected, a tokenize endpoint's
count, a reply as a Generation (its reasoning split off), the field a 400 names, a schema mode refused, ``Retry-After``, an error body made safe to show; and the target's parts (model,
URL without user-info), the JSON Schema as GBNF for the older ``grammar`` mode."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .._backend import Generation
from .._errors import ConfigError
from .._spec import ModelSpec
from .engines import FIELD_FIXES


def streamed(client: Any, kwargs: dict[str, Any], on_text: Any, reasoning_of: Any) -> Any:
    """A streamed reply, its pieces handed to ``on_text`` as they arrive (reasoning first, inside ``<think>``, read
    from a chunk's extra fields by ``reasoning_of``: the engine's), collected into the shape of a whole response."""
    content: list[str] = []
    reasoning: list[str] = []
    finish, usage = "stop", None
    for chunk in client.chat.completions.create(**kwargs, stream=True):
        usage = getattr(chunk, "usage", None) or usage
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        extra = getattr(choice.delta, "model_extra", None) or {}
        piece = reasoning_of(extra)
        if piece:
            on_text(("<think>" if not reasoning else "") + piece)
            reasoning.append(piece)
        if choice.delta.content:
            on_text(("</think>\n" if reasoning and not content else "") + choice.delta.content)
            content.append(choice.delta.content)
    message = SimpleNamespace(content="".join(content),
                              model_extra={"reasoning_content": "".join(reasoning)} if reasoning else {})
    return SimpleNamespace(choices=[SimpleNamespace(message=message, finish_reason=finish)], usage=usage)


_THINK = re.compile(r"^\s*<think>(.*?)</think>\s*", re.S)
_R1 = re.compile(r"^(?!\s*<think>)(.*?)</think>\s*", re.S)  # R1-style: the template opened the block, not the reply


def generation(response: Any, reasoning_of: Any, seconds: float, retries: int, split: bool = True) -> Generation:
    """A chat completion as a ``Generation``: reasoning returned apart (read by ``reasoning_of``: the engine's), as a
    leading ``<think>`` block, or R1-style split off (``split=False``: the text as it came); token counts as the
    server reported them."""
    choice = response.choices[0]
    message = choice.message
    text = message.content or ""
    reasoning = reasoning_of(getattr(message, "model_extra", None) or {})
    if split and reasoning is None and ((m := _THINK.match(text)) or (m := _R1.match(text))):
        reasoning, text = m.group(1).strip(), text[m.end():]
    usage = response.usage
    details = getattr(usage, "completion_tokens_details", None) if usage else None
    reported = getattr(details, "reasoning_tokens", None) if details else None
    return Generation(text=text, reasoning=reasoning,
                      prompt_tokens=getattr(usage, "prompt_tokens", None),
                      completion_tokens=getattr(usage, "completion_tokens", None),
                      reasoning_tokens=reported or None,  # None: counted from the parsed reasoning
                      seconds=seconds, finish_reason="length" if choice.finish_reason == "length" else "stop",
                      retries=retries, estimated=usage is None)


def tokenize(base_url: str, engine: Any, model: str, text: str, api_key: str, timeout: float) -> int | None:
    """``text``'s tokens counted by the engine's tokenize endpoint (None: it did not answer with a count)."""
    import httpx

    root = base_url.rstrip("/").removesuffix("/v1")
    try:
        reply = httpx.post(root + engine.tokenize, json=engine.tokenize_body(model, text),
                           headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout)
        return engine.token_count(reply.json()) if reply.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def refused_field(body: str, kwargs: dict[str, Any]) -> str | None:
    """The field a 400 names as unsupported or invalid, where it is one we sent and an option changes it."""
    sent = {*kwargs, *(kwargs.get("extra_body") or {})}
    if not re.search(r"unsupported|not supported|unrecognized|unknown|invalid|does not support|not allowed|"
                     r"instead|extra|not configured", body, re.I):
        return None
    for field in FIELD_FIXES:
        if field in sent and re.search(rf"['\"`]?\b{re.escape(field)}\b['\"`]?", body):
            return field
    return None


# A server that refuses the response_format itself (422; llama-cpp-python's server: 500 with a validation
# error naming response_format): retrying cannot help, another schema_mode can.
SCHEMA_REFUSED = re.compile(r"response_format|json_schema|json_object|grammar|ebnf|structured_outputs|lark", re.I)


def schema_hint(mode: str) -> str:
    return {"json_schema": "try ?schema_mode=json_object (llama-cpp-python's server) or gbnf (llama.cpp's llama-server)",
            "json_object": "try ?schema_mode=json_schema (vLLM, SGLang, Ollama, OpenAI) or gbnf (llama-server)",
            "gbnf": "gbnf is for llama.cpp's llama-server; vLLM and SGLang take lark or ebnf",
            "lark": "start vLLM with --structured-outputs-config.backend guidance, or SGLang with --grammar-backend "
                    "llguidance and add &engine=sglang; or try ?schema_mode=ebnf",
            "ebnf": "vLLM and SGLang take ebnf with their default xgrammar backend (SGLang: add &engine=sglang); "
                    "llama-server takes gbnf"}.get(mode, "try another ?schema_mode (see the README's engine table), "
                                                        "or none for no constraint")


def stream_status(e: Exception) -> int | None:
    """The HTTP status an error event inside a streamed 200 carries (vLLM streams a refused request as
    ``data: {"error": {..., "code": 400}}``), so it is handled as that status, not retried as a bad response."""
    body = getattr(e, "body", None)
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, int) and 400 <= code < 600 else None


def retry_after(response: Any) -> float | None:
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


def cause(e: Exception) -> str:
    inner = e.__cause__ or e.__context__
    return type(inner).__name__ if inner else type(e).__name__


def safe_body(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        body = body.get("message") or body.get("error") or body
    text = body if isinstance(body, str) else json.dumps(body, default=str) if body else e.__class__.__name__
    return " ".join(text.split())[:300]


def hint_for(status: int) -> str:
    return {401: "set the API key in the variable named by api_key_env (default OPENAI_API_KEY)",
            403: "the key lacks access to this model", 404: "check the model name and the base URL (…/v1)",
            422: "the server rejects this request; try another schema_mode (e.g. json_object for "
                 "llama-cpp-python's server)"}.get(status, "the server refused the request")


def gbnf(schema: dict) -> str:
    try:
        from llama_cpp.llama_grammar import json_schema_to_gbnf
    except ImportError:
        raise ConfigError("schema_mode='grammar' converts the JSON Schema with llama-cpp-python",
                          hint='pip install "firsttoken[local]", or use schema_mode json_schema') from None
    return json_schema_to_gbnf(json.dumps(schema))


def split_target(spec: ModelSpec) -> tuple[str, str]:
    """``MODEL@URL`` -> (model, base URL)."""
    model, sep, url = spec.target.partition("@")
    if not sep or not model or not url.startswith(("http://", "https://")):
        raise ConfigError(f"model {spec.text!r}: expected openai:MODEL@URL",
                          hint="e.g. --model openai:qwen2.5-1.5b@http://127.0.0.1:8000/v1")
    return model, url


def public(url: str) -> str:
    """``url`` without user-info (``http://user:KEY@host`` -> ``http://host``): what labels and ids show."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
