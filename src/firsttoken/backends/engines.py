"""The engines behind an OpenAI-compatible URL, one class each: what a request carries beyond OpenAI's own fields
(where a grammar goes, how thinking is switched and budgeted, which token-limit field), where the reply's
reasoning comes back, and what each field it refuses should be changed to. ``OpenAICompatible(engine=NAME)``
shapes every request through the engine registered under NAME; adding an engine is one subclass of ``Engine``
and ``register_engine``.

    engine        lark / ebnf text              thinking on, budget B                          thinking off
    vllm          structured_outputs.grammar    thinking_token_budget=B                        chat_template_kwargs.enable_thinking=false
    sglang        ebnf                          custom_params.thinking_budget=B (its budget     chat_template_kwargs.enable_thinking=false
                                                processor: pass custom_logit_processor in extra_body)
    llama-server  (gbnf: grammar)               thinking_budget_tokens=B, reasoning_format      chat_template_kwargs.enable_thinking=false
                                                =deepseek
    ollama        (json_schema only)            reasoning_effort (a level, if given)           reasoning_effort="none"
    openai        (json_schema only)            reasoning_effort (a level, if given)           (not sent: a hosted model decides)

``thinking=auto`` (the default) sends none of these fields. The fields are sent only where the engine takes them;
nothing else is ever sent for thinking (vLLM's removed ``guided_*`` fields least of all: it ignores them with HTTP
200). Reasoning returned apart is read from ``reasoning_content``, ``reasoning`` or ``thinking``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..layouts import _gbnf as _gbnf_pieces

REASONING_FIELDS = ("reasoning_content", "reasoning", "thinking")
CHARS_PER_TOKEN = 4  # a region bounded by a grammar (one request a reply): characters per token of its budget
GRAMMAR_MODES = {"gbnf": "gbnf", "lark": "lark", "ebnf": "gbnf"}  # schema_mode -> the layout's grammar dialect
# A 400 that names a field we sent: the option that stops sending it (or sends it as the server wants). An engine
# adds or overrides its own in ``Engine.fixes``.
FIELD_FIXES = {"temperature": "?sampling=0 (sends no temperature or top_p)",
               "top_p": "?sampling=0 (sends no temperature or top_p)",
               "max_tokens": "?engine=openai (sends max_completion_tokens instead)",
               "max_completion_tokens": "?engine=vllm (or another server engine: sends max_tokens)",
               "seed": "?sampling=0 (sends no seed, temperature or top_p)",
               "reasoning_effort": "leave out ?reasoning_effort",
               "thinking_token_budget": "?thinking=auto, or the engine that runs the model (?engine=...)",
               "thinking_budget_tokens": "?thinking=auto, or the engine that runs the model (?engine=...)",
               "chat_template_kwargs": "?thinking=auto, or the engine that runs the model (?engine=...)",
               "custom_params": "?thinking=auto, or the engine that runs the model (?engine=...)",
               "reasoning_format": "?thinking=auto, or the engine that runs the model (?engine=...)"}


class Engine:
    """A server engine. The defaults are an OpenAI-style server that takes ``chat_template_kwargs`` for thinking
    and a grammar in vLLM's ``structured_outputs``; a subclass overrides what its engine does otherwise."""

    name: ClassVar[str] = ""
    limit_field: ClassVar[str] = "max_tokens"  # the field that caps the reply's tokens
    budget_field: ClassVar[str | None] = None  # where the model's own thinking budget goes (None: not taken)
    reasoning_fields: ClassVar[tuple[str, ...]] = REASONING_FIELDS
    fixes: ClassVar[dict[str, str]] = {}  # this engine's hint for a field it refuses, over FIELD_FIXES
    # The fields that make it continue a final assistant message instead of starting a new turn (None: it cannot;
    # whether it really does is the probe's to find out)
    continuation: ClassVar[dict[str, Any] | None] = {"continue_final_message": True, "add_generation_prompt": False}
    echoes_prefix: ClassVar[bool] = False  # a continuation's content starts with the message it continued
    tokenize: ClassVar[str | None] = None  # its tokenizer's endpoint, from the server's root (None: it has none)

    @property
    def takes_budget(self) -> bool:
        return self.budget_field is not None

    def thinking_fields(self, thinking: str, budget: int | None, effort: str | None) -> dict[str, Any]:
        """The request fields that switch the model's own thinking on (with its budget) or off."""
        if thinking == "auto":
            return {"reasoning_effort": effort} if effort else {}
        fields: dict[str, Any] = {"chat_template_kwargs": {"enable_thinking": thinking == "on"}}
        if effort:
            fields["reasoning_effort"] = effort
        if thinking == "on" and budget is not None and self.budget_field:
            fields.update(self.budget(budget))
        return fields

    def budget(self, tokens: int) -> dict[str, Any]:
        return {self.budget_field: tokens} if self.budget_field else {}

    def grammar_fields(self, mode: str, text: str) -> dict[str, Any]:
        """Where a grammar of schema_mode ``mode`` (gbnf, lark, ebnf) goes in the request."""
        if mode == "gbnf":
            return {"grammar": text}
        return {"structured_outputs": {"grammar": text}}

    def grammar_text(self, mode: str, text: str, thinking: str) -> str:
        """The grammar as this engine must receive it. GBNF is llama-server's, which applies a grammar from the
        first generated token, thinking included: with thinking on, the layout's grammar starts after the model's
        ``</think>``."""
        if mode == "gbnf" and thinking == "on":
            return after_thinking(text)
        return "%llguidance {}\n" + text if mode == "lark" else text

    def reasoning(self, extra: dict[str, Any]) -> str | None:
        """The reasoning a reply returned apart, from the message's extra fields."""
        return next((extra[f] for f in self.reasoning_fields if isinstance(extra.get(f), str) and extra[f]), None)

    def fix(self, field: str) -> str | None:
        return self.fixes.get(field) or FIELD_FIXES.get(field)

    def tokenize_body(self, model: str, text: str) -> dict[str, Any]:
        """The request that counts ``text``'s tokens in the server's own tokenizer (no special tokens added)."""
        return {"model": model, "prompt": text, "add_special_tokens": False}

    @staticmethod
    def token_count(reply: dict[str, Any]) -> int | None:
        count = reply.get("count")
        tokens = reply.get("tokens")
        return count if isinstance(count, int) else len(tokens) if isinstance(tokens, list) else None


class VLLM(Engine):
    name = "vllm"
    budget_field = "thinking_token_budget"
    tokenize = "/tokenize"
    fixes = {"thinking_token_budget": "?thinking=auto, or start vLLM with --reasoning-parser (e.g. qwen3 or "
                                      "deepseek_r1), or the engine that runs the model (?engine=...)"}


class SGLang(Engine):
    name = "sglang"
    budget_field = "custom_params"
    fixes = {"custom_params": "?thinking=auto, or start SGLang with --enable-custom-logit-processor"}

    def budget(self, tokens: int) -> dict[str, Any]:  # its budget logit processor's parameter
        return {"custom_params": {"thinking_budget": tokens}}

    def grammar_fields(self, mode: str, text: str) -> dict[str, Any]:
        return {"grammar": text} if mode == "gbnf" else {"ebnf": text}


class LlamaServer(Engine):
    name = "llama-server"
    budget_field = "thinking_budget_tokens"
    continuation: ClassVar[dict[str, Any] | None] = {}  # it continues a trailing assistant message by default
    echoes_prefix = True  # and returns that message's text before its continuation
    tokenize = "/tokenize"

    def tokenize_body(self, model: str, text: str) -> dict[str, Any]:
        return {"content": text, "add_special": False}

    def thinking_fields(self, thinking: str, budget: int | None, effort: str | None) -> dict[str, Any]:
        fields = super().thinking_fields(thinking, budget, effort)
        if thinking != "auto":  # the reasoning returned apart
            fields["reasoning_format"] = "deepseek"
        return fields


class Ollama(Engine):
    name = "ollama"

    def thinking_fields(self, thinking: str, budget: int | None, effort: str | None) -> dict[str, Any]:
        if thinking == "off":
            return {"reasoning_effort": "none"}
        return {"reasoning_effort": effort} if effort else {}


class HostedOpenAI(Engine):
    """OpenAI and other hosted APIs: ``max_completion_tokens``; thinking is the hosted model's to decide."""

    name = "openai"
    limit_field = "max_completion_tokens"
    continuation: ClassVar[dict[str, Any] | None] = None  # a hosted chat API answers a new turn

    def thinking_fields(self, thinking: str, budget: int | None, effort: str | None) -> dict[str, Any]:
        return {"reasoning_effort": effort} if effort and thinking != "off" else {}


_ENGINES: dict[str, type[Engine]] = {}


def register_engine(cls: type[Engine]) -> type[Engine]:
    """Make ``?engine=NAME`` shape requests through ``cls`` (usable as a class decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Engine) and cls.name):
        raise TypeError("an engine is a subclass of firsttoken.backends.engines.Engine with a name")
    _ENGINES[cls.name] = cls
    return cls


def engine_names() -> tuple[str, ...]:
    return tuple(_ENGINES)


def engine(name: str) -> Engine:
    return _ENGINES[name]()


for _cls in (VLLM, SGLang, LlamaServer, Ollama, HostedOpenAI):
    register_engine(_cls)


def after_thinking(grammar: str) -> str:
    """The layout's GBNF behind the model's own thinking: an optional ``<think>`` (a template may have opened it),
    free text to ``</think>`` (of any length: the server's thinking budget and ``max_tokens`` bound it, so the
    grammar stays a few rules), then the layout's reply. llama-server applies a grammar from the first generated
    token, thinking included: without this the answer lands in the reasoning."""
    g = _gbnf_pieces.Gbnf()
    think = _gbnf_pieces.until(g, "own-think", "</think>", None)
    reply = grammar.replace("root ::= ", "layout-reply ::= ", 1)
    head = g.render(f'{_gbnf_pieces.literal("<think>")}? {think} [ \\t\\n]* layout-reply')
    return head + reply
