"""`firsttoken demo --quick` end to end on the small model (the full demo runs Qwen for ~10 minutes)."""

from __future__ import annotations

import io
from html.parser import HTMLParser
from pathlib import Path

import pytest
from rich.console import Console

pytestmark = pytest.mark.model

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def test_quick_demo_runs_and_writes_a_report(tmp_path, monkeypatch):
    from firsttoken.demo import run_demo

    if SHARED.exists():
        monkeypatch.setenv("FIRSTTOKEN_DATA", str(SHARED))
    buf = io.StringIO()
    result = run_demo("smollm2-135m", quick=True, runs=tmp_path, console=Console(file=buf, width=120))
    text = buf.getvalue()
    assert "cannot decide anything" in text and "## arithmetic" in text
    assert "One question, two layouts" in text
    report = Path(result["report"])
    parser = HTMLParser()
    parser.feed(report.read_text())  # well-formed enough to parse
    assert report.stat().st_size > 10_000  # tables and embedded plots
    arms = result["summaries"][0]["arms"]
    assert [a["layout"] for a in arms] == ["direct", "thoughts_first", "work_then_answer"]
    assert all(a["parse_failures"] == 0 and a["n"] == 9 for a in arms)  # constrained: every reply parses
    if SHARED.exists():
        assert "## products" in text
