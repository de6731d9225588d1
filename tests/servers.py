"""Real servers on loopback for the server-backend tests: llama-cpp-python's OpenAI-compatible server,
the stub server from bench/, and a fault-injecting proxy. No mocked HTTP."""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {seconds} s")


def start_llama_server(model_path: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", model_path, "--host", "127.0.0.1",
                             "--port", str(port), "--interrupt_requests", "False", "--n_ctx", "4096",
                             "--n_threads", "2", "--verbose", "False"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/v1/models", proc)
    return proc, f"http://127.0.0.1:{port}"


def start_stub(reply: str, reasoning: str | None = None, record: Path | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    extra = ["--reasoning", reasoning] if reasoning is not None else []
    extra += ["--record", str(record)] if record is not None else []
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "stub_openai_server.py"), "--port", str(port),
                             "--reply", reply, *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    proc.stdout.readline()  # "listening on ..."
    return proc, f"http://127.0.0.1:{port}"


@contextmanager
def recording(reply: str, directory: Path) -> Iterator[tuple[str, Path]]:
    """A stub that answers ``reply`` to everything and records each request body in ``directory/bodies.jsonl``."""
    path = directory / "bodies.jsonl"
    proc, url = start_stub(reply, record=path)
    try:
        yield url, path
    finally:
        proc.kill()
        proc.wait()


FAULTS = ("reset", "429", "500", "stall", "truncate")


class FaultProxy:
    """Forwards HTTP/1.1 requests to ``upstream``; faults a share of them (one request per connection).

    Faults: reset the connection, 429 with Retry-After, 500, stall past the client's timeout, forward the
    upstream response with its body cut short; by plan only: "malformed" (a 200 whose body is not JSON) and
    "echo_auth" (a 401 whose body quotes the request's Authorization header, as some proxies do). ``log`` records (fault or "ok", request path) per request.
    """

    def __init__(self, upstream: str, rate: float = 0.0, seed: int = 0, stall: float = 3.0, retry_after: str = "0",
                 plan: list[str] | None = None):
        self.upstream_host, self.upstream_port = upstream.split("//")[1].split(":")
        self.upstream_port = int(self.upstream_port)
        self.rate, self.rng, self.stall, self.retry_after = rate, random.Random(seed), stall, retry_after
        self.plan = list(plan or [])  # faults for the first requests, in order, before any random ones
        self.log: list[str] = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.closed = True
        self.sock.close()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _read_request(conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return b""
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        while len(body) < length:
            body += conn.recv(65536)
        return head + b"\r\n\r\n" + body

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            request = self._read_request(conn)
            if not request:
                return
            with self.lock:
                if self.plan:
                    fault = self.plan.pop(0)
                else:
                    fault = self.rng.choice(FAULTS) if self.rng.random() < self.rate else "ok"
                self.log.append(fault)
            if fault == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                return
            if fault in ("429", "500", "400"):
                status = {"429": "429 Too Many Requests", "500": "500 Internal Server Error",
                          "400": "400 Bad Request"}[fault]
                body = b'{"error": {"message": "injected"}}'
                extra = f"retry-after: {self.retry_after}\r\n" if fault == "429" else ""
                conn.sendall(f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{extra}content-length: "
                             f"{len(body)}\r\nconnection: close\r\n\r\n".encode() + body)
                return
            if fault in ("malformed", "echo_auth"):  # a 200 whose body is not JSON; a 401 quoting the request
                auth = next((ln for ln in request.split(b"\r\n") if ln.lower().startswith(b"authorization:")), b"")
                status, body = (("200 OK", b'{"id": "x", "choices": [') if fault == "malformed" else
                                ("401 Unauthorized", b'{"error": {"message": "bad key; you sent ' +
                                 auth.replace(b'"', b"'") + b'"}}'))
                conn.sendall(f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: "
                             f"{len(body)}\r\nconnection: close\r\n\r\n".encode() + body)
                return
            if fault == "stall":
                time.sleep(self.stall)
                return
            # Forward, with "connection: close" so one request is one connection.
            head, _, body = request.partition(b"\r\n\r\n")
            lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"connection:")]
            request = b"\r\n".join(lines) + b"\r\nconnection: close\r\n\r\n" + body
            with socket.create_connection((self.upstream_host, self.upstream_port)) as up:
                up.sendall(request)
                response = self._read_request(up)  # head and Content-Length body, like a request
            # The client must not reuse this connection either: without "connection: close" it may send its
            # next request on it while the close is still on its way (a race that loaded machines lose).
            head, _, body = response.partition(b"\r\n\r\n")
            head = b"\r\n".join(ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"connection:"))
            if fault == "truncate":
                body = body[: len(body) // 2]
            conn.sendall(head + b"\r\nconnection: close\r\n\r\n" + body)


def llama_server_binary() -> str:
    """llama.cpp's own server, built by `make test` (scripts/build_llama_server.sh, cached per llama-cpp-python
    version). Missing, it fails the test with the command that builds it: these tests never skip."""
    import os
    import shutil

    path = os.environ.get("FIRSTTOKEN_LLAMA_SERVER")
    if not path:
        out = subprocess.run(["bash", str(ROOT / "scripts" / "build_llama_server.sh"), sys.executable],
                             capture_output=True, text=True, timeout=1800)
        if out.returncode != 0:
            raise RuntimeError(f"cannot build llama-server: {out.stderr[-800:]}")
        path = out.stdout.strip().splitlines()[-1]
    if not shutil.which(path):
        raise RuntimeError(f"llama-server not found at {path}: run `make test`, or set FIRSTTOKEN_LLAMA_SERVER")
    return path


def start_llama_cpp_server(model_path: str, parallel: int = 1, extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str]:
    """llama.cpp's llama-server on loopback (not llama-cpp-python's server): GBNF in a `grammar` field."""
    port = free_port()
    proc = subprocess.Popen([llama_server_binary(), "-m", model_path, "--host", "127.0.0.1", "--port", str(port),
                             "-c", str(4096 * parallel), "-np", str(parallel), "-t", "2", "--no-webui",
                             "--seed", "0", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/health", proc)
    return proc, f"http://127.0.0.1:{port}"


def vllm_home() -> Path:
    """Real vLLM's venv and models, built by `make test` (scripts/build_vllm.sh, cached in ~/.cache/firsttoken).
    Not built, or unbuildable on this machine: the test fails with one line saying why; it never skips."""
    import os

    where = os.environ.get("FIRSTTOKEN_VLLM")
    if not where:
        out = subprocess.run(["bash", str(ROOT / "scripts" / "build_vllm.sh"), sys.executable],
                             capture_output=True, text=True, timeout=1800)
        where = (out.stdout.strip().splitlines() or ["unavailable: build_vllm.sh printed nothing"])[-1]
    if where.startswith("unavailable:"):
        raise RuntimeError(f"the vLLM test tier is {where}")
    home = Path(where)
    if not (home / "ready").exists():
        raise RuntimeError(f"no vLLM build at {home}: run `make test`, or bash scripts/build_vllm.sh .venv/bin/python")
    return home


# Every vLLM server the vllm tier uses, by name: (model folder, extra flags, structured-outputs backend). They are
# launched together as soon as the tier is collected (tests/conftest.py), so that they boot side by side (a boot is
# half a minute of mostly one-core imports), and stopped as soon as the tier's last test ends.
VLLM_SERVERS = {
    "plain": ("smollm2", (), "guidance"),
    "xgrammar": ("smollm2", (), "auto"),
    "think": ("smollm2-think", ("--reasoning-parser", "deepseek_r1"), "guidance"),
}
_LAUNCHED: dict[str, tuple[subprocess.Popen, str, Path]] = {}


def launch_vllm(name: str) -> None:
    """Start the named vLLM server (VLLM_SERVERS) without waiting for it; a second launch does nothing."""
    if name not in _LAUNCHED:
        _LAUNCHED[name] = _popen_vllm(*VLLM_SERVERS[name])


def vllm_server(name: str) -> str:
    """The named vLLM server's URL, once it answers (launched now if it was not already)."""
    launch_vllm(name)
    proc, url, log = _LAUNCHED[name]
    try:
        wait_http(f"{url}/v1/models", proc, seconds=300)
    except RuntimeError as e:
        stop_vllm(proc)
        del _LAUNCHED[name]
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        raise RuntimeError(f"vLLM did not start: {e}; its log ends: {tail[0][:300]}") from None
    return url


def stop_vllm_servers() -> None:
    """Stop every vLLM server launched (the session's end)."""
    while _LAUNCHED:
        stop_vllm(_LAUNCHED.popitem()[1][0])


def _popen_vllm(model: str, extra: tuple[str, ...], backend: str) -> tuple[subprocess.Popen, str, Path]:
    """vLLM's OpenAI server on loopback, eager (no compile), with ``backend`` for structured outputs (guidance reads
    Lark, EBNF and JSON Schema; auto is vLLM's default, xgrammar). Its internal queues bind to loopback too
    (VLLM_HOST_IP). Its engine and its one worker run in the server's own process (no engine-core or worker
    process to import torch again: a boot of 27 s instead of 40 alone, the HTTP API the same)."""
    import os

    home = vllm_home()
    port = free_port()
    env = {**os.environ, "VLLM_HOST_IP": "127.0.0.1", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING",
           "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    log = home / f"server-{model}-{backend}{'-' + extra[-1] if extra else ''}.log"
    out = open(log, "w")  # noqa: SIM115 - the server's lifetime, closed by the OS
    proc = subprocess.Popen([str(home / "venv" / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server",
                             "--model", str(home / "models" / model), "--served-model-name", "smollm2",
                             "--host", "127.0.0.1", "--port", str(port), "--enforce-eager", "--max-model-len", "2048",
                             "--dtype", "bfloat16", "--distributed-executor-backend", "uni",
                             "--structured-outputs-config.backend", backend, *extra],
                            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}", log


def stop_vllm(proc: subprocess.Popen) -> None:
    """Kill the server and its engine and worker processes (its own process group): killing the API server
    alone leaves them running, orphaned, each holding gigabytes and spinning."""
    import os
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
