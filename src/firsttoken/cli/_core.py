"""Commands to look around and try things: layouts, models, ask."""

from __future__ import annotations

import json
from typing import Literal

import typer

from .. import _models, _samples
from .._errors import ConfigError
from .._predictor import Predictor
from .._signature import Signature
from .._text import markup, terminal_safe
from ..backends import parse_spec, resolve
from ..experiments import probe as run_probe, with_options
from ..layouts import get_layout, layout_classes
from ..tasks import load_signature
from ._app import app, err, out
from ._experiments import model_options, pairs


@app.command()
def layouts(as_json: bool = typer.Option(False, "--json", help="print a JSON list")) -> None:
    """List the response layouts, each with an example reply."""
    if as_json:
        rows = [{"name": c.name, "description": c.description, "syntaxes": list(c.syntaxes)}
                for c in layout_classes()]
        print(json.dumps(rows, indent=2))
        return
    sig = _samples.SampleClassify
    for cls in layout_classes():
        out.print(f"[bold]{markup(cls.name)}[/bold] — {markup(cls.description)}  "
                  f"(syntaxes: {markup(', '.join(cls.syntaxes))})")
        for syntax in cls.syntaxes:
            layout = get_layout(cls.name, syntax)
            reply = layout.render(sig, _samples.SAMPLE_OUTPUTS, _samples.SAMPLE_REASONING, _samples.SAMPLE_EXTRAS)
            out.print(f"  [dim]{syntax}:[/dim]")
            for line in reply.splitlines():
                out.print(terminal_safe(f"    {line}"), markup=False)
            region = layout.constraint(sig).region
            if region is not None and region.least:
                out.print(f"    [dim](shortened: a reply's reasoning holds at least {region.least} characters)[/dim]")
        out.print()


@app.command()
def models(as_json: bool = typer.Option(False, "--json", help="print a JSON list")) -> None:
    """List the packaged models: installed or not, size, licence, install command."""
    rows = _models.models()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = "[green]installed[/green]" if row["installed"] else "[yellow]not installed[/yellow]"
        out.print(f"[bold]{row['name']}[/bold]  {state}  {row['size_bytes'] / 1e6:,.0f} MB  {row['licence']}")
        out.print(f"  {row['description']}; fastest --parallel measured on 2 cores: {row['parallel']}")
        if not row["installed"]:
            out.print(f"  install: {row['install']}", markup=False)
    out.print("Any path to a .gguf file works too.")


_TYPES = {"str": str, "int": int, "float": float, "bool": bool}


def parse_output_spec(spec: str) -> tuple[str, object]:
    """``answer:int``, ``label:spam|ham`` (categories) or ``summary:str``."""
    name, sep, kind = spec.partition(":")
    name, kind = name.strip(), kind.strip() or "str"
    if not sep or not name.isidentifier():
        raise ConfigError(f"--output {spec!r}: expected NAME:TYPE", hint="e.g. --output answer:int or label:spam|ham")
    if "|" in kind:
        return name, Literal[tuple(v.strip() for v in kind.split("|"))]  # type: ignore[misc]
    if kind not in _TYPES:
        raise ConfigError(f"--output {spec!r}: unknown type {kind!r}",
                          hint="use str, int, float, bool or labels separated by |")
    return name, _TYPES[kind]


@app.command()
def ask(question: str = typer.Argument(..., help="the question"),
        model: str = typer.Option(_models.DEFAULT_MODEL, "--model", "-m", help="a --model spec, as for eval"),
        model_option: list[str] = typer.Option(None, "--model-option", help="NAME=VALUE, repeatable: an option "
                                               "of the model's backend (as ?NAME=VALUE in the spec)"),
        layout: str = typer.Option("work_then_answer", "--layout", "-l"),
        syntax: str = typer.Option(None, "--syntax"),
        output: list[str] = typer.Option(None, "--output", "-o", help="NAME:TYPE, repeatable (default answer:str)"),
        signature: str = typer.Option(None, "--signature", help="module:Class or file.py:Class, a firsttoken or "
                                      "DSPy Signature: the question fills its first input"),
        input_values: list[str] = typer.Option(None, "--input", help="FIELD=VALUE, repeatable: the signature's "
                                               "other inputs"),
        max_thinking_tokens: int = typer.Option(512, "--max-thinking-tokens"),
        unconstrained: bool = typer.Option(False, "--unconstrained", help="prompt only, no forced format"),
        as_json: bool = typer.Option(False, "--json", help="print the prediction as JSON")) -> None:
    """Ask one question: see the reasoning as it is written, then the typed answer and token counts."""
    if signature:
        if output:
            raise ConfigError("--output is for a question without --signature", hint="the signature has its outputs")
        sig = load_signature(signature)
        inputs = {next(iter(sig.input_fields)): question, **pairs(input_values, "--input")}
        for note in sig.notes():
            err.print(f"note: {note}", markup=False, soft_wrap=True)
    else:
        if input_values:
            raise ConfigError("--input is for a --signature with several inputs", hint="the question is the input")
        sig = Signature.make("Ask", "Answer the question.", {"question": str},
                             dict(parse_output_spec(s) for s in output or ["answer:str"]))
        inputs = {"question": question}
    backend = resolve(with_options(parse_spec(model), model_options(model_option)))
    predictor = Predictor(sig, layout=layout, syntax=syntax, model=backend,
                          max_thinking_tokens=max_thinking_tokens, constrained=not unconstrained)
    if as_json:
        print(json.dumps(predictor(**inputs).to_dict(), indent=2, ensure_ascii=False))
        return
    pred = predictor(**inputs, on_text=lambda text: out.print(terminal_safe(text), style="dim", end="", markup=False))
    out.print()
    for name, value in pred.outputs.items():
        out.print(f"[bold]{name}[/bold] = {markup(repr(value))}")
    u = pred.usage
    out.print(f"[dim]tokens: prompt {u.prompt_tokens}, reasoning {u.reasoning_tokens}, answer {u.answer_tokens}"
              f"{' (estimated)' if u.estimated else ''}; {u.seconds:.1f} s"
              f"{f'; reasoning closed by {pred.closed_by}' if pred.closed_by else ''}[/dim]")


@app.command()
def probe(model: str = typer.Option(..., "--model", "-m", help="a --model spec (a server's, usually)"),
          model_option: list[str] = typer.Option(None, "--model-option", help="NAME=VALUE, repeatable"),
          as_json: bool = typer.Option(False, "--json", help="print the findings as JSON")) -> None:
    """Check what a backend really enforces: each layout's constraint, the answer out of the reasoning, the
    thinking budget, thinking off (a few tiny requests)."""
    backend = resolve(with_options(parse_spec(model), model_options(model_option)))
    findings = run_probe(backend)
    if as_json:
        print(json.dumps({"model": backend.label, "findings": [f.to_dict() for f in findings]}, indent=2))
        return
    out.print(f"[bold]probe[/bold] {markup(backend.label)}")
    for f in findings:
        colour = "green" if f.outcome in ("held", "off") else "yellow" if f.outcome == "not sent" else "red"
        out.print(f"  {markup(f.check):<16} {markup(f.layout):<28} [{colour}]{markup(f.outcome):<14}[/{colour}] "
                  f"{markup(f.detail)}")
