"""Engine stubs: real HTTP servers on loopback that answer as vLLM, SGLang, llama-server, Ollama or a hosted API
would, including the ways each fails silently. The "model" behind them is scripted: asked to break the format,
it writes a free sentence, unless the engine applies the constraint it was sent (then it writes a valid reply
of the layout the constraint is for); a thinking model thinks REASONING_WORDS words unless a budget the engine
honours cuts it, or it was turned off in a way the engine honours.

    with EngineStub("vllm") as url: ...             # a well-behaved vLLM with --reasoning-parser
    EngineStub("vllm", ignores={"structured_outputs"})  # an old vLLM: HTTP 200, the grammar ignored
    EngineStub("vllm", json_in_reasoning=True)      # no --reasoning-parser: the JSON lands in the reasoning
    EngineStub("llama-server", grammar_off_when_thinking=True)  # grammar not applied while thinking
    EngineStub("ollama", ignores={"response_format"})     # format ignored
    EngineStub("sglang", ignores={"custom_params"})       # the budget processor does nothing
    EngineStub("vllm", ignores={"chat_template_kwargs"})  # thinking cannot be turned off
    EngineStub("openai", refuses={"temperature", "max_tokens"})  # a hosted reasoning model's 400s
    EngineStub("llama-server", r1=True)             # R1-style: the reply closes </think> it never opened
    EngineStub("vllm", delay=0.2)   # each reply takes 0.2 s; counts requests in flight and those the client dropped
    EngineStub("vllm", ignores={"continue_final_message"})  # answers a new turn after a partial assistant message
    EngineStub("vllm", cuts=True)   # every constrained one-request reply cut at max_tokens, half written
    Gateway(url, limit=1024)        # in front of any of them: drops every grammar longer than 1 KB, HTTP 200
"""

from __future__ import annotations

import json
import re
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import firsttoken as ft
from firsttoken.experiments._probe import PARTIAL, Probe

REASONING_WORDS = 120
FREE = "I will not answer."
# where each engine returns reasoning apart (a hosted API returns none: it only counts it)
APART = {"vllm": "reasoning", "sglang": "reasoning_content", "llama-server": "reasoning_content",
         "ollama": "reasoning", "openai": None}
BUDGET_FIELD = {"vllm": ("thinking_token_budget",), "sglang": ("custom_params", "thinking_budget"),
                "llama-server": ("thinking_budget_tokens",)}


def _layout_of(body: dict[str, Any]) -> tuple[str, str] | None:
    """The (layout, syntax) a request's constraint is for, read from what was sent; None: no constraint."""
    schema = (body.get("response_format") or {}).get("json_schema", {}).get("schema") or \
        (body.get("response_format") or {}).get("schema")
    if schema:
        keys = list(schema.get("properties", {}))
        return ("thoughts_first" if "thoughts" in keys else "answer_then_explain" if "explanation" in keys
                else "direct"), "json"
    text = _grammar_of(body)
    if not text:
        return None
    syntax = "fields" if "[[ ##" in text else "json"
    if "<think>" in text:
        return "think_then_answer", "json"
    if "Answer:" in text:
        return "work_then_answer", "lines"
    name = "thoughts_first" if "thoughts" in text else "answer_then_explain" if "explanation" in text else "direct"
    return name, syntax


def _grammar_of(body: dict[str, Any]) -> str | None:
    return body.get("grammar") or body.get("ebnf") or (body.get("structured_outputs") or {}).get("grammar")


def _mark_of(body: dict[str, Any]) -> str | None:
    """The word a grammar forces at its start (``root ::= "zebulon " (...)``), if it does."""
    text = (_grammar_of(body) or "").removeprefix("%llguidance {}\n")
    m = re.match(r'(?:root ::= |start: )"(\w+) " \(', text)
    return m.group(1) if m else None


def _replies() -> list[tuple[ft.Layout, str]]:
    """The scripted model's valid reply in each built-in layout (a region opened by text first)."""
    layouts = [ft.get_layout(name, syntax) for name in ft.layout_names() for syntax in ft.get_layout(name).syntaxes]
    replies = [(layout, layout.render(Probe, {"answer": "zebulon"}, "so zebulon", {"explanation": "because"}))
               for layout in layouts if type(layout).__module__.startswith("firsttoken.")]
    return sorted(replies, key=lambda lr: not (lr[0].has_reasoning and lr[0].constraint(Probe).region.open))


def _after_region(prefix: str) -> str | None:
    """Where ``prefix`` is a reply's reasoning region, closed (however it was cut): the rest of that reply."""
    for layout, reply in _replies():
        region = layout.constraint(Probe).region if layout.has_reasoning else None
        if region is None or not prefix.startswith(region.open):
            continue
        end = region.find_end(prefix[len(region.open):])
        if end is not None and len(region.open) + end + len(region.end) == len(prefix):
            body = reply[len(region.open):]
            return body[region.find_end(body) + len(region.end):]
    return None


def _completion(body: dict[str, Any], message: dict[str, Any], usage: dict[str, Any],
                finish: str = "stop") -> dict[str, Any]:
    """A chat completion's body, as the engines send one."""
    return {"id": "stub", "object": "chat.completion", "created": 0, "model": body.get("model"),
            "choices": [{"index": 0, "finish_reason": finish, "message": message}], "usage": usage}


class EngineStub:
    def __init__(self, engine: str, *, thinks: bool = True, ignores: set[str] | None = None,
                 json_in_reasoning: bool = False, grammar_off_when_thinking: bool = False,
                 refuses: set[str] | None = None, r1: bool = False, delay: float = 0.0, cuts: bool = False):
        self.engine, self.thinks, self.ignores = engine, thinks, set(ignores or ())
        self.json_in_reasoning, self.grammar_off_when_thinking = json_in_reasoning, grammar_off_when_thinking
        self.refuses, self.r1, self.cuts = set(refuses or ()), r1, cuts
        self.bodies: list[dict[str, Any]] = []
        self.delay, self.in_flight, self.most_in_flight, self.dropped = delay, 0, 0, 0
        self._count = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                if self.path.endswith("/tokenize"):  # a word a token, in each engine's request and reply shape
                    return self.tokenize(body)
                stub.bodies.append(body)
                if stub.delay and not stub.waited(self.connection):
                    return  # the client went away while the "model" was generating
                status, reply = stub.answer(body)
                if body.get("stream") and status == 200:
                    return self.stream(reply)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def tokenize(self, body: dict[str, Any]) -> None:
                text = body.get("prompt") if stub.engine == "vllm" else body.get("content")
                found = stub.engine in ("vllm", "llama-server") and self.path == "/tokenize" and text is not None
                tokens = list(range(len(text.split()))) if found else []
                reply = ({"count": len(tokens), "tokens": tokens} if stub.engine == "vllm" else {"tokens": tokens}) \
                    if found else {"error": "not found"}
                data = json.dumps(reply).encode()
                self.send_response(200 if found else 404)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def stream(self, reply: dict[str, Any]) -> None:
                """The reply as server-sent events: the reasoning, then the content, a few words a chunk."""
                message = reply["choices"][0]["message"]
                deltas = []
                for field in ("reasoning_content", "reasoning", "content"):
                    words = (message.get(field) or "").split(" ")
                    deltas += [{field: " ".join(words[i:i + 8]) + (" " if i + 8 < len(words) else "")}
                               for i in range(0, len(words), 8) if message.get(field)]
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                for delta in deltas:
                    chunk = {"id": "stub", "object": "chat.completion.chunk", "created": 0, "model": "m",
                             "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                end = {"id": "stub", "object": "chat.completion.chunk", "created": 0, "model": "m",
                       "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": reply["usage"]}
                self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self) -> str:
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def spec(self, **options: Any) -> str:
        query = "&".join(f"{k}={v}" for k, v in {"engine": self.engine, **options}.items())
        return f"openai:m@{self.url}/v1?{query}"

    def waited(self, conn: socket.socket) -> bool:
        """Take ``delay`` seconds over a request, counted in flight; False if the client closed the connection
        meanwhile (counted as dropped)."""
        with self._count:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            end = time.monotonic() + self.delay
            while time.monotonic() < end:
                readable, _, _ = select.select([conn], [], [], 0.01)
                if readable and not conn.recv(1, socket.MSG_PEEK):
                    with self._count:
                        self.dropped += 1
                    return False
            return True
        finally:
            with self._count:
                self.in_flight -= 1

    # --- the scripted model behind the engine ------------------------------------------------------------
    def _honoured(self, body: dict[str, Any], field: str) -> bool:
        return field in body and field not in self.ignores

    def _thinking(self, body: dict[str, Any]) -> int:
        """How many words the model thinks."""
        if not self.thinks:
            return 0
        kwargs = body.get("chat_template_kwargs") or {}
        if self._honoured(body, "chat_template_kwargs") and kwargs.get("enable_thinking") is False:
            return 0
        if self.engine in ("ollama", "openai") and body.get("reasoning_effort") == "none" \
                and "reasoning_effort" not in self.ignores:
            return 0
        words = REASONING_WORDS
        path = BUDGET_FIELD.get(self.engine)
        if path and self._honoured(body, path[0]):
            value = body[path[0]]
            for key in path[1:]:
                value = value.get(key) if isinstance(value, dict) else None
            if isinstance(value, int):
                words = min(words, value)
        return words

    def _continued(self, body: dict[str, Any], prefix: str, continues: bool) -> dict[str, Any]:
        """A layout's reply that starts with ``prefix``, from there on (the whole message first on llama-server);
        a new turn where the engine does not continue (it starts the reply over), free text where the grammar is
        ignored. The scripted model does not stop at a region's end: the client cuts there."""
        applied = _grammar_of(body) is not None and \
            not any(f in self.ignores for f in ("grammar", "ebnf", "structured_outputs") if f in body)
        reply = next((r for _, r in _replies() if r.startswith(prefix) and len(r) > len(prefix)), FREE) if applied \
            else FREE
        new = reply[len(prefix):] if continues and reply.startswith(prefix) else reply
        rest = _after_region(prefix) if applied and continues and reply is FREE else None
        if rest is not None:  # a region the client closed: the answer after it
            reply, new = prefix + rest, rest
        content = prefix + new if continues and self.engine == "llama-server" else new
        words = [w for w in new.split(" ")]
        tokens = [w + " " for w in words[:-1]] + [words[-1]]  # a word a token, as tokenize counts them
        out = _completion(body, {"role": "assistant", "content": content},
                          {"prompt_tokens": 20, "completion_tokens": len(tokens)})
        if body.get("logprobs"):  # each generated token's text and bytes, as the engines return them
            out["choices"][0]["logprobs"] = {"content": [{"token": t, "bytes": list(t.encode()), "logprob": 0.0,
                                                          "top_logprobs": []} for t in tokens]}
        return out

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        for field in sorted(self.refuses):
            if field in body:
                extra = " Use 'max_completion_tokens' instead." if field == "max_tokens" else ""
                return 400, {"error": {"message": f"Unsupported parameter: '{field}' is not supported with this "
                                                  f"model.{extra}", "type": "invalid_request_error", "param": field}}
        messages = body.get("messages") or []
        if messages and messages[-1].get("role") == "assistant":  # a partial assistant message to go on from
            continues = self.engine == "llama-server" or (self._honoured(body, "continue_final_message")
                                                          and body["continue_final_message"] is True)
            if messages[-1]["content"] != PARTIAL:  # a layout's reply, continued (a region closed by the client)
                return 200, self._continued(body, messages[-1]["content"], continues)
            content = (" 5, 6" if self.engine != "llama-server" else "1, 2, 3, 4, 5, 6") if continues \
                else "1, 2"  # llama-server returns the message it continued first, as the real one does
            return 200, _completion(body, {"role": "assistant", "content": content},
                                    {"prompt_tokens": 20, "completion_tokens": 8}, finish="length")
        words = self._thinking(body)
        reasoning = " ".join(["hmm"] * words) if words else None
        target = _layout_of(body)
        applied = target is not None and not any(f in self.ignores for f in
                                                 ("response_format", "grammar", "ebnf", "structured_outputs")
                                                 if f in body)
        if applied and self.grammar_off_when_thinking and words:
            applied = False
        content = FREE
        mark = _mark_of(body)
        if mark is not None and applied:  # a grammar that must start with a word: the reply does (the probe's check)
            return 200, _completion(body, {"role": "assistant", "content": mark + " "},
                                    {"prompt_tokens": 20, "completion_tokens": 2}, finish="length")
        if applied and self.engine == "vllm" and self.thinks and target[0] == "think_then_answer":
            # Real vLLM (0.32, guidance): a thinking model's <think> is an added token, which llguidance holds as
            # special, so a grammar that writes the text "<think>" rejects the token the model samples and vLLM
            # ends the request: an empty reply with HTTP 200 while thinking, HTTP 500 with thinking off.
            if not words:
                return 500, {"error": {"message": "Internal server error", "type": "InternalServerError"}}
            return 200, _completion(body, {"role": "assistant", "content": None, APART["vllm"]: ""},
                                    {"prompt_tokens": 20, "completion_tokens": 1,
                                     "completion_tokens_details": {"reasoning_tokens": 0}})
        if applied:
            name, syntax = target
            layout = ft.get_layout(name, syntax)
            content = layout.render(Probe, {"answer": "zebulon"}, "so zebulon" if layout.has_reasoning else None,
                                    {"explanation": "because"})
            if name == "think_then_answer" and reasoning:  # the layout's own region: the model's thinking
                content = content.replace("so zebulon", reasoning, 1)
                reasoning = None
        finish = "stop"
        if self.cuts and applied:  # the reply reaches max_tokens before it is complete
            content, finish = content[: len(content) // 2], "length"
        message: dict[str, Any] = {"role": "assistant", "content": content}
        usage: dict[str, Any] = {"prompt_tokens": 20, "completion_tokens": len(content.split()) + words}
        if reasoning:
            usage["completion_tokens_details"] = {"reasoning_tokens": words}
            apart = APART[self.engine]
            if self.json_in_reasoning and applied:
                message["content"], message[apart or "reasoning"] = "", reasoning + "\n" + content
            elif self.r1:
                message["content"] = reasoning + "\n</think>\n\n" + content
            elif apart:
                message[apart] = reasoning
        return 200, _completion(body, message, usage, finish)


class Gateway:
    """A loopback gateway in front of a server (``upstream``, its base URL) that silently drops any grammar longer
    than ``limit`` characters (``grammar``, ``ebnf`` or ``structured_outputs.grammar``) and passes the rest on as it
    is; ``dropped`` holds the grammars it dropped, ``requests`` each request's system message and whether it lost its
grammar. Replies come back whole (a stream as one body)."""

    def __init__(self, upstream: str, limit: int):
        import httpx

        self.upstream, self.limit, self.dropped, self.passed = upstream.rstrip("/"), limit, [], 0
        self.requests: list[tuple[str, bool]] = []  # each chat request's system message, and whether a grammar went
        client = httpx.Client(timeout=600)
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                gateway.filter(body)
                reply = client.post(gateway.upstream + self.path, json=body)
                self.send_response(reply.status_code)
                self.send_header("content-type", reply.headers.get("content-type", "application/json"))
                self.send_header("content-length", str(len(reply.content)))
                self.end_headers()
                self.wfile.write(reply.content)

            def do_GET(self) -> None:  # noqa: N802
                reply = client.get(gateway.upstream + self.path)
                self.send_response(reply.status_code)
                self.send_header("content-type", reply.headers.get("content-type", "application/json"))
                self.send_header("content-length", str(len(reply.content)))
                self.end_headers()
                self.wfile.write(reply.content)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def filter(self, body: dict[str, Any]) -> None:
        before = len(self.dropped)
        for holder, key in ((body, "grammar"), (body, "ebnf"), (body.get("structured_outputs") or {}, "grammar")):
            text = holder.get(key)
            if isinstance(text, str) and len(text) > self.limit:
                del holder[key]
                self.dropped.append(text)
            elif isinstance(text, str):
                self.passed += 1
        if body.get("structured_outputs") == {}:
            del body["structured_outputs"]
        messages = body.get("messages") or [{}]
        self.requests.append((str(messages[0].get("content")), len(self.dropped) > before))

    def __enter__(self) -> str:
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
