"""A stub OpenAI-compatible server: answers every chat completion at once with a fixed reply.

    python bench/stub_openai_server.py --port 8765 [--reply '{"answer": 4}'] [--record bodies.jsonl]

Plain asyncio with HTTP/1.1 keep-alive, so that the client, not the server, is what gets measured.
Used by bench/http_client.py and by the tests of the server backend's own logic; ``--record`` appends each
request body as one JSON line, so tests can check what an engine (vLLM, SGLang) would receive.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

COMPLETION = {"id": "stub", "object": "chat.completion", "created": 0, "model": "stub",
              "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": ""}}],
              "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}


def body_for(reply: str, reasoning: str | None = None) -> bytes:
    data = json.loads(json.dumps(COMPLETION))
    data["choices"][0]["message"]["content"] = reply
    if reasoning is not None:  # as thinking models on vLLM/SGLang deliver it
        data["choices"][0]["message"]["reasoning_content"] = reasoning
        data["usage"]["completion_tokens_details"] = {"reasoning_tokens": 7}
        data["usage"]["completion_tokens"] = 12
    data["created"] = int(time.time())
    return json.dumps(data).encode()


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes,
                 record: str | None = None) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                request = await reader.readexactly(length)
                if record:
                    with open(record, "ab") as f:
                        f.write(json.dumps(json.loads(request)).encode() + b"\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def serve(port: int, reply: str, reasoning: str | None = None, record: str | None = None) -> None:
    body = body_for(reply, reasoning)
    server = await asyncio.start_server(lambda r, w: handle(r, w, body, record), "127.0.0.1", port)
    print(f"listening on {port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--reply", default='{"answer": 4}')
    parser.add_argument("--reasoning", default=None, help="also send this as reasoning_content")
    parser.add_argument("--record", default=None, help="append each request body to this file (JSON lines)")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.port, args.reply, args.reasoning, args.record))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
