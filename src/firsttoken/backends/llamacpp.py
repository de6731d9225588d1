"""``LlamaCpp``: in-process llama.cpp (llama-cpp-python), with the layout's grammar forced by llguidance.

Built from a GGUF path, or around a ``llama_cpp.Llama`` the caller made. Defaults differ from
llama-cpp-python's on purpose: a 4,096-token context (its 512 overflows a 24-category prompt), one thread
per physical core (its default, half the logical CPUs, halves the speed on small machines), greedy
decoding with a fixed seed so that results reproduce.

Prefix reuse: llama-cpp-python keeps the evaluated tokens of the previous call and only evaluates what
differs, so consecutive calls that share a system prompt (instruction, categories, demos) pay for it once.
llama.cpp's logits are not bit-identical across batch splits, so a greedy reply can depend slightly on the
call before it: the same calls in the same order reproduce exactly, a different predecessor can change the
wording and, less often, the answer.
``parallel=N`` decodes up to N rows together (``_batch``); ``batch_invariant=True`` chooses kernels whose sums
do not depend on the batch (``_kernels``), so a row's reply is the same alone, batched or after any other row.
Its spec (the registry's default): a packaged model name or a ``.gguf`` path, with ``?parallel=N`` (fetch-only)
and ``?batch_invariant=1`` (identity: other kernels); ``load(name)`` builds one from a packaged name.
Does not handle: GPU settings beyond ``**llama_kwargs``.
"""

from __future__ import annotations

import codecs
import json
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import llguidance

from .. import _models
from .._backend import BackendBase, Generation, Messages, Outcome, Request, budget_families, run_batch
from .._errors import (BackendError, ConfigError, ConstraintError, ContextOverflowError, FirstTokenError,
                       ModelNotFoundError)
from .._options import GenerateOptions
from .._spec import BackendOptions, ModelSpec, make_options
from ..layouts import Constraint
from . import _kernels
from ._batch import BatchDecoder, Job, common_prefix
from ._guide import Guide

_CLOSE_SLACK = 16  # tokens allowed for the region's closer on top of the budgets


def physical_cores() -> int:
    """Physical cores this process may use (llama.cpp runs slower with hyper-threads)."""
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        cores, current = set(), {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("physical id", "core id"):
                current[key] = value.strip()
                if len(current) == 2:
                    cores.add((current["physical id"], current["core id"]))
                    current = {}
        return max(1, min(allowed, len(cores) or allowed))
    except OSError:
        return max(1, allowed)


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError:
        raise ConfigError("llama-cpp-python is not installed",
                          hint='pip install "firsttoken[local]" (see the README for build flags)') from None
    return llama_cpp


def check_gguf(path: Path) -> None:
    """A clear error for a missing, empty or non-GGUF file, before llama.cpp sees it."""
    if not path.is_file():
        raise ModelNotFoundError(f"model file not found: {path}",
                                 hint="check the path, or use a packaged model name (`firsttoken models`)")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ModelNotFoundError(f"{path} is not a GGUF file (starts with {magic!r})",
                                 hint="pass a .gguf model file (llama.cpp's format)")


class LlamaCpp(BackendBase):
    """One sequence at a time (``parallel`` 1, the default ``generate_batch`` in order), or ``parallel`` rows
    decoded together."""

    name = "llamacpp"

    class Options(BackendOptions):
        # parallel (BackendOptions): rows decoded together change how rows are scheduled, not the model (replies
        # differ only as llama.cpp's kernels make greedy text differ with the batch): fetch-only
        batch_invariant: bool = False  # other kernels: results made with them are kept apart

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> LlamaCpp:
        return cls(_models.model_path(spec.target), label=spec.target, options=spec.options)

    @classmethod
    def check_spec(cls, spec: ModelSpec) -> None:
        _models.model_path(spec.target)  # a packaged model is assembled here if needed; nothing is loaded

    @classmethod
    def spec_enforcement(cls, spec: ModelSpec, constraint: Constraint) -> str | None:
        return "llguidance"

    def enforcement(self, constraint: Constraint | None) -> str | None:
        return "llguidance" if constraint is not None else None

    def __init__(self, model_path: str | os.PathLike | None = None, *, llm: Any = None, n_ctx: int = 4096,
                 n_threads: int | None = None, seed: int = 0, verbose: bool = False, label: str | None = None,
                 options: BackendOptions | None = None, **keywords: Any):
        """Keywords that are ``Options`` fields (``parallel``, ``batch_invariant``) build ``options`` (or pass
        ``options`` whole); the named ones load the model, and any others go to ``llama_cpp.Llama``."""
        fields = {k: keywords.pop(k) for k in list(keywords) if k in self.Options.model_fields}
        llama_kwargs = keywords
        if options is None:
            options = make_options(type(self), fields, f"LlamaCpp({label or model_path or 'llm'})")
        self.options: LlamaCpp.Options = options  # type: ignore[assignment]
        batch_invariant = self.options.batch_invariant
        if (model_path is None) == (llm is None):
            raise ConfigError("LlamaCpp needs exactly one of model_path=... or llm=...",
                              hint="LlamaCpp('model.gguf') or LlamaCpp(llm=llama_cpp.Llama(...))")
        if batch_invariant and llm is not None:
            raise ConfigError("batch_invariant=True needs firsttoken to load the model: its weights must not be "
                              "repacked, and a Llama you built may have been",
                              hint="LlamaCpp('model.gguf', batch_invariant=True)")
        if llm is None:
            path = Path(model_path).expanduser()
            check_gguf(path)
            llama_cpp = _import_llama_cpp()
            threads = n_threads or physical_cores()
            with _kernels.loading(llama_cpp, batch_invariant):
                try:
                    llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads,
                                          n_threads_batch=threads, seed=seed, verbose=verbose, **llama_kwargs)
                except (ValueError, RuntimeError, OSError) as e:
                    raise ModelNotFoundError(f"llama.cpp could not load {path}: {e}", hint="the file is truncated "
                                             "or corrupt: reinstall or re-download it") from None
            label = label or path.name
        else:
            _kernels.tiled_kernel_off()  # before the caller's model computes here, if it has not yet
        self.llm = llm
        self.label = with_invariance(label or "llama.cpp model", batch_invariant)
        self.n_ctx, self.n_threads = n_ctx, n_threads or physical_cores()
        self._decoder: Any = None
        self._tokenizer: llguidance.LLTokenizer | None = None
        self._matchers: dict[str, llguidance.LLMatcher] = {}
        self._decoding = threading.Lock()  # one decode at a time, whatever threads call (the async path's)

    def __repr__(self) -> str:
        return f"LlamaCpp({self.label!r})"

    @classmethod
    def from_pretrained(cls, repo_id: str, filename: str, **kwargs: Any) -> LlamaCpp:
        """A GGUF from a Hugging Face repo through llama-cpp-python (needs network and huggingface-hub)."""
        llama_cpp = _import_llama_cpp()
        n_threads = kwargs.pop("n_threads", None) or physical_cores()
        batch_invariant = kwargs.pop("batch_invariant", False)
        with _kernels.loading(llama_cpp, batch_invariant):
            try:
                llm = llama_cpp.Llama.from_pretrained(repo_id, filename, n_ctx=kwargs.pop("n_ctx", 4096),
                                                      n_threads=n_threads, n_threads_batch=n_threads,
                                                      verbose=kwargs.pop("verbose", False), **kwargs)
            except Exception as e:  # network, hub and file errors all arrive here
                raise ModelNotFoundError(f"could not fetch {repo_id}/{filename}: {e}",
                                         hint="needs network access and `pip install huggingface-hub`") from None
        backend = cls(llm=llm, label=with_invariance(f"{repo_id}/{filename}", batch_invariant))
        backend.options = backend.options.model_copy(update={"batch_invariant": batch_invariant})  # loaded here
        return backend

    # --- tokens -----------------------------------------------------------------------------------
    @property
    def tokenizer(self) -> llguidance.LLTokenizer:
        if self._tokenizer is None:
            from llguidance.llamacpp import lltokenizer_from_vocab

            with warnings.catch_warnings():  # one deprecation warning per vocabulary entry otherwise
                warnings.simplefilter("ignore", DeprecationWarning)
                self._tokenizer = lltokenizer_from_vocab(self.llm._model.vocab)
        return self._tokenizer

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def _matcher(self, lark: str, own: bool = False) -> llguidance.LLMatcher:
        """Compiled once per grammar (i.e. per signature and layout) for this model, reset per call."""
        matcher = self._matchers.get(lark)
        if matcher is None:
            grammar = llguidance.LLMatcher.grammar_from_lark(lark)
            error = llguidance.LLMatcher.validate_grammar(grammar, self.tokenizer)
            if error:
                raise ConstraintError(f"the layout's grammar does not compile: {error.splitlines()[0]}")
            matcher = self._matchers[lark] = llguidance.LLMatcher(self.tokenizer, grammar, log_level=1)
        else:
            matcher.reset()
        if matcher.is_error():
            raise ConstraintError(f"the layout's grammar cannot be used: {matcher.get_error()}")
        return matcher.deep_copy() if own else matcher  # own: one matcher per sequence of a batch

    # --- generation -------------------------------------------------------------------------------
    def guide(self, constraint: Constraint, options: GenerateOptions, own: bool = False) -> Guide:
        """The logits processor that forces ``constraint`` for one call (``own``: with a matcher of its own)."""
        end_of_turn = {self.llm.token_eos(), *self.tokenizer.eos_tokens}
        return Guide(self._matcher(constraint.lark, own), self.tokenizer, self.llm.n_vocab(), constraint.region,
                     options.max_thinking_tokens, end_of_turn, self._piece)

    @staticmethod
    def _max_tokens(constraint: Constraint | None, options: GenerateOptions) -> int:
        if constraint is None:
            return options.max_thinking_tokens + options.max_answer_tokens
        region = constraint.region
        if region is None:
            return options.max_answer_tokens
        # a minimum length (Region.least, characters) may outlast the budget; a token is at least one character
        return options.max_answer_tokens + max(options.max_thinking_tokens, region.least) + _CLOSE_SLACK

    def generate(self, request: Request) -> Generation:
        with self._decoding:
            return self._generate(request)

    def _generate(self, request: Request) -> Generation:
        messages, constraint, options, on_text = request.messages, request.constraint, request.options, request.on_text
        guide = self.guide(constraint, options) if constraint is not None else None
        max_tokens = self._max_tokens(constraint, options)
        processors = [p for p in (guide, _Echo(self._piece, on_text) if on_text else None) if p]
        result, seconds = self.complete(messages, max_tokens, options, processors)
        usage = result["usage"]
        cut = result["choices"][0]["finish_reason"] == "length" and not (guide and guide.matcher.is_accepting())
        return Generation(text=result["choices"][0]["message"]["content"] or "",
                          prompt_tokens=usage["prompt_tokens"], completion_tokens=usage["completion_tokens"],
                          reasoning_tokens=guide.reasoning_tokens if guide else None,
                          seconds=seconds, closed_by=guide.closed_by if guide else None,
                          finish_reason="length" if cut else "stop")

    def generate_batch(self, requests: list[Request]) -> Iterator[Outcome]:
        """With ``parallel`` > 1: up to that many rows decoded together (``_batch.BatchDecoder``); rows with
        the same messages before the last (an arm's system prompt and demos) form a group whose shared prompt
        prefix is evaluated once. Requests that differ only in their reasoning budget (``--thinking-budgets``)
        are one family, decoded as one trace with a fork per budget, at any ``parallel``. Otherwise one at a
        time, in order."""
        families = budget_families(requests)
        if self.options.parallel > 1 and len(requests) > 1:
            yield from self._batched(requests, list(range(len(requests))), families)
            return
        alone = [i for i in range(len(requests)) if families[i] is None]
        for j, out in run_batch(self, [requests[i] for i in alone]):
            yield alone[j], out
        shared = [i for i in range(len(requests)) if families[i] is not None]
        if shared:  # one row slot: a trace, then its forks in the slot it frees
            yield from self._batched(requests, shared, families)

    def _batched(self, requests: list[Request], indices: list[int], families: list[str | None]) -> Iterator[Outcome]:
        jobs, at = [], []
        shared: dict[str, list[int]] = {}  # group -> the prompt of its messages with an empty last one
        for i in indices:
            r = requests[i]
            group = json.dumps(r.messages[:-1])  # rows with the same system prompt and demos
            try:
                prompt, stop = self.prompt_tokens(r.messages)
                if group not in shared:
                    shared[group] = self.prompt_tokens([*r.messages[:-1], {**r.messages[-1], "content": ""}])[0]
                guide = self.guide(r.constraint, r.options, own=True) if r.constraint is not None else None
            except FirstTokenError as e:
                yield i, e
                continue
            # The row's own part starts where its last message's text does, whatever rows run beside it: the
            # logits depend on how a prompt is split between decode calls, so the split must not.
            jobs.append(Job(prompt, self._max_tokens(r.constraint, r.options), r.options, stop, guide,
                            group=group, shared=len(common_prefix([prompt, shared[group]])), family=families[i]))
            at.append(i)
        if not jobs:
            return
        with self._decoding:
            for j, out in self.decoder(max(len(j.prompt) + j.max_tokens for j in jobs)).run(jobs):
                request = requests[at[j]]
                if request.on_text and isinstance(out, Generation):
                    request.on_text(out.text)
                yield at[j], out

    def decoder(self, need: int | None = None) -> BatchDecoder:
        """The batch context: ``parallel`` row streams and a prefix stream (one KV stream each), each with the
        cells the longest row needs (``need``: prompt + token limit) rounded up to a power of two, at most
        ``n_ctx``: KV memory grows with streams x cells (Qwen2.5-1.5B: 28 KiB a cell, so 17 streams of 4,096
        cells would take 1.9 GiB). Made again only when the size changes; ``need`` None: the one there is
        (else one of ``n_ctx`` cells)."""
        if need is None and self._decoder is not None:
            return self._decoder
        need = self.n_ctx if need is None else need
        cells = min(self.n_ctx, max(256, 1 << max(0, need - 1).bit_length()))
        if self._decoder is not None and self._decoder.per_row != cells:
            self._decoder.close()
            self._decoder = None
        if self._decoder is None:
            parallel = self.options.parallel
            self._decoder = BatchDecoder(self.llm, parallel, cells * (parallel + 1), self.n_threads,
                                         unified=False)
        return self._decoder

    def prompt_tokens(self, messages: Messages) -> tuple[list[int], list[str]]:
        """The prompt's token ids and stop texts exactly as ``create_chat_completion`` makes them: its own chat
        handler runs against a stand-in that catches the completion call instead of generating."""
        llm = self.llm
        handler = (llm.chat_handler or llm._chat_handlers.get(llm.chat_format)
                   or _import_llama_cpp().llama_chat_format.get_chat_completion_handler(llm.chat_format))
        try:
            handler(llama=_Capture(llm), messages=messages, max_tokens=1)
        except _Captured as c:
            stop = c.kwargs.get("stop") or []
            return list(c.prompt), [stop] if isinstance(stop, str) else list(stop)
        raise BackendError(f"{self.label}: the chat handler made no completion call",
                           hint="this model's chat format cannot be batched; use parallel=1")

    def complete(self, messages: Messages, max_tokens: int, options: GenerateOptions,
                 processors: list[Any] | None = None, **extra: Any) -> tuple[dict, float]:
        """One llama-cpp-python chat completion (the raw result and its seconds), errors translated."""
        start = time.perf_counter()
        try:
            result = self.llm.create_chat_completion(
                messages=messages, max_tokens=max_tokens, temperature=options.temperature, top_p=options.top_p,
                top_k=0, min_p=0.0, repeat_penalty=1.0, seed=options.seed,
                logits_processor=_processor_list(processors) if processors else None, **extra)
        except FirstTokenError:
            raise
        except ValueError as e:
            if "exceed context window" in str(e):
                raise ContextOverflowError(f"{self.label}: {e}") from None
            raise BackendError(f"{self.label}: {e}") from None
        except Exception as e:  # llama.cpp failures surface as assorted exceptions
            raise BackendError(f"{self.label}: {type(e).__name__}: {e}") from None
        return result, time.perf_counter() - start

    def _piece(self, token: int) -> bytes:
        return self.llm.detokenize([token])


class _Captured(Exception):
    def __init__(self, prompt: Any, kwargs: dict[str, Any]):
        self.prompt, self.kwargs = prompt, kwargs


class _Capture:
    """The model as a chat handler sees it, except that completing raises the prompt it was given."""

    def __init__(self, llm: Any):
        self._llm = llm

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llm, name)

    def create_completion(self, prompt: Any, **kwargs: Any) -> Any:
        raise _Captured(prompt, kwargs)


class _Echo:
    """A logits processor that only watches: hands each new token's text to ``on_text``."""

    def __init__(self, piece: Callable[[int], bytes], on_text: Callable[[str], None]):
        self.piece, self.on_text = piece, on_text
        self.seen: int | None = None
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.seen is not None:
            text = self.decoder.decode(b"".join(self.piece(int(t)) for t in input_ids[self.seen:]))
            if text:
                self.on_text(text)
        self.seen = len(input_ids)
        return scores


def _processor_list(processors: list[Any]) -> Any:
    return _import_llama_cpp().LogitsProcessorList(processors)


def load(name: str = _models.DEFAULT_MODEL, **kwargs: Any) -> LlamaCpp:
    """A ready ``LlamaCpp`` backend for a packaged model name or a GGUF path."""
    return LlamaCpp(_models.model_path(name), label=name, **kwargs)


def with_invariance(label: str, batch_invariant: bool) -> str:
    return f"{label}?batch_invariant=1" if batch_invariant else label
