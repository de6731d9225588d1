from __future__ import annotations

import json
import subprocess
import sys

import pytest

import firsttoken as ft


def run(*args):
    return subprocess.run([sys.executable, "-c", "from firsttoken.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=120)


def test_layouts_json_lists_every_layout():
    res = run("layouts", "--json")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [r["name"] for r in rows] == ft.layout_names()
    assert {"name", "description", "syntaxes"} == set(rows[0])
    assert ["json", "fields"] == next(r for r in rows if r["name"] == "thoughts_first")["syntaxes"]


def test_layouts_shows_an_example_reply_per_syntax():
    res = run("layouts")
    assert res.returncode == 0, res.stderr
    assert '{"thoughts": ' in res.stdout and "[[ ## thoughts ## ]]" in res.stdout
    assert "<think>" in res.stdout and "Answer: groceries" in res.stdout


def test_unknown_command_fails_with_one_line():
    res = run("nope")
    assert res.returncode != 0 and "No such command" in res.stderr


def test_models_json_lists_the_packaged_models():
    res = run("models", "--json")
    assert res.returncode == 0, res.stderr
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["smollm2-135m"]["installed"] is True  # `make test` installs it


@pytest.mark.model
def test_ask_streams_the_reasoning_then_the_typed_answer():
    res = run("ask", "Tom has 3 apples and buys 4 more. How many apples?", "-m", "smollm2-135m",
              "-o", "answer:int", "--max-thinking-tokens", "32")
    assert res.returncode == 0, res.stderr
    assert "answer = " in res.stdout and "tokens: prompt" in res.stdout
    res = run("ask", "Is the sky green?", "-m", "smollm2-135m", "-o", "verdict:yes|no", "--layout", "direct",
              "--json")
    pred = json.loads(res.stdout)
    assert pred["outputs"]["verdict"] in ("yes", "no") and pred["usage"]["reasoning_tokens"] == 0


def test_bad_output_spec_is_one_line():
    res = run("ask", "q", "-m", "smollm2-135m", "-o", "answer")
    assert res.returncode == 1 and res.stderr.startswith("error: --output 'answer': expected NAME:TYPE")
