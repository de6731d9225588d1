"""What each engine takes in a chat-completions request beyond OpenAI's own fields, and where its reply's
reasoning comes back. ``OpenAICompatible(engine=...)`` shapes every request through one of these.

    engine        lark / ebnf text              thinking on, budget B                          thinking off
    vllm          structured_outputs.grammar    thinking_token_budget=B                        chat_template_kwargs.enable_thinking=false
    sglang        ebnf                          custom_params.thinking_budget=B (its budget     chat_template_kwargs.enable_thinking=false
                                                processor: pass custom_logit_processor in extra_body)
    llama-server  (gbnf: grammar)               thinking_budget_tokens=B, reasoning_format      chat_template_kwargs.enable_thinking=false
                                                =deepseek
    ollama        (json_schema only)            reasoning_effort (a level, if given)           reasoning_effort="none"
    openai        (json_schema only)            reasoning_effort (a level, if given)           (not sent: a hosted model decides)

``thinking=auto`` (the default) sends none of these fields. ``openai`` (hosted APIs) sends
``max_completion_tokens`` where the others send ``max_tokens``. The fields are sent only where the engine takes
them; nothing else is ever sent for thinking (vLLM's removed ``guided_*`` fields least of all: it ignores them
with HTTP 200). Reasoning returned apart is read from ``reasoning_content``, ``reasoning`` or ``thinking``.
Also here: ``after_thinking`` (a layout's GBNF behind the model's own ``</think>``, for llama-server),
``refused_field`` (the field a 400 names) and ``streamed`` (a streamed reply, collected).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from ..layouts import _gbnf as _gbnf_pieces

ENGINES = ("vllm", "sglang", "llama-server", "ollama", "openai")
THINKING = ("auto", "on", "off")
REASONING_FIELDS = ("reasoning_content", "reasoning", "thinking")


@dataclass(frozen=True)
class Engine:
    name: str
    grammar_field: str | None  # where lark / ebnf text goes ("structured_outputs" for vLLM's nested field)
    limit_field: str = "max_tokens"

    @property
    def takes_budget(self) -> bool:
        return self.name in ("vllm", "sglang", "llama-server")

    def thinking_fields(self, thinking: str, budget: int | None, effort: str | None) -> dict[str, Any]:
        """The request fields that switch thinking on (with its budget) or off, for this engine."""
        if thinking == "auto":
            return {"reasoning_effort": effort} if effort else {}
        on = thinking == "on"
        name = self.name
        if name in ("ollama", "openai"):
            if not on:
                return {"reasoning_effort": "none"} if name == "ollama" else {}
            return {"reasoning_effort": effort} if effort else {}
        fields: dict[str, Any] = {"chat_template_kwargs": {"enable_thinking": on}}
        if effort:
            fields["reasoning_effort"] = effort
        if on and budget is not None:
            if name == "vllm":
                fields["thinking_token_budget"] = budget
            elif name == "sglang":
                fields["custom_params"] = {"thinking_budget": budget}
            else:  # llama-server: its reasoning budget sampler; the reasoning returned apart
                fields["thinking_budget_tokens"] = budget
        if name == "llama-server":
            fields["reasoning_format"] = "deepseek"
        return fields


_ENGINES = {e.name: e for e in (Engine("vllm", "structured_outputs"), Engine("sglang", "ebnf"),
                                Engine("llama-server", None), Engine("ollama", None),
                                Engine("openai", None, limit_field="max_completion_tokens"))}


def engine(name: str) -> Engine:
    return _ENGINES[name]


# A 400 that names a field we sent: the option that stops sending it (or sends it as the server wants).
FIELD_FIXES = {"temperature": "?sampling=0 (sends no temperature or top_p)",
               "top_p": "?sampling=0 (sends no temperature or top_p)",
               "max_tokens": "?engine=openai (sends max_completion_tokens instead)",
               "max_completion_tokens": "?engine=vllm (or another server engine: sends max_tokens)",
               "seed": "?sampling=0 (sends no seed, temperature or top_p)",
               "reasoning_effort": "leave out ?reasoning_effort",
               "thinking_token_budget": "?thinking=auto, or start vLLM with --reasoning-parser (e.g. qwen3 or "
                                        "deepseek_r1), or the engine that runs the model (?engine=...)",
               "thinking_budget_tokens": "?thinking=auto, or the engine that runs the model (?engine=...)",
               "chat_template_kwargs": "?thinking=auto, or the engine that runs the model (?engine=...)",
               "custom_params": "?thinking=auto, or start SGLang with --enable-custom-logit-processor",
               "reasoning_format": "?thinking=auto, or the engine that runs the model (?engine=...)"}


def streamed(client: Any, kwargs: dict[str, Any], on_text: Any) -> Any:
    """A streamed reply, its pieces handed to ``on_text`` as they arrive (reasoning first, inside ``<think>``),
    collected into the shape of a whole response."""
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
        piece = next((extra[f] for f in REASONING_FIELDS if isinstance(extra.get(f), str) and extra[f]), None)
        if piece:
            on_text(("<think>" if not reasoning else "") + piece)
            reasoning.append(piece)
        if choice.delta.content:
            on_text(("</think>\n" if reasoning and not content else "") + choice.delta.content)
            content.append(choice.delta.content)
    message = SimpleNamespace(content="".join(content),
                              model_extra={"reasoning_content": "".join(reasoning)} if reasoning else {})
    return SimpleNamespace(choices=[SimpleNamespace(message=message, finish_reason=finish)], usage=usage)


def after_thinking(grammar: str, bound: int) -> str:
    """The layout's GBNF behind the model's own thinking: an optional ``<think>`` (a template may have opened it),
    free text to ``</think>`` (at most ``bound`` characters), then the layout's reply. llama-server applies a
    grammar from the first generated token, thinking included: without this the answer lands in the reasoning."""
    g = _gbnf_pieces.Gbnf()
    think = _gbnf_pieces.until(g, "own-think", "</think>", bound)
    reply = grammar.replace("root ::= ", "layout-reply ::= ", 1)
    head = g.render(f'{_gbnf_pieces.literal("<think>")}? {think} [ \\t\\n]* layout-reply')
    return head + reply


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
