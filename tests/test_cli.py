from __future__ import annotations

import json
import subprocess
import sys

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
