"""Commands that measure: eval (run a grid of arms) and report (summarise a store)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer

from .. import _models
from .._errors import ConfigError, DataError
from .._text import markup, terminal_safe
from ..experiments import (Store, baseline_note, dspy_program, evaluate, html_page, load_demos,
                           make_config, markdown, predict_file, same_file, show_arm, summarize)
from ..demo import run_demo
from ..tasks import Task, column_map, get_task, read_label_descriptions, task_names
from ._app import app, err, out
from ._progress import BarProgress


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _on_off(value: str) -> list[bool]:
    table = {"on": True, "off": False}
    items = _csv(value) or ["on"]
    bad = [v for v in items if v not in table]
    if bad:
        raise ConfigError(f"--constrained {value!r}: {bad[0]!r} is not on or off", hint="e.g. --constrained on,off")
    return [table[v] for v in items]


def _ints(value: str | None, flag: str) -> list[int | None]:
    if not value:
        return [None]
    try:
        return [int(v) for v in _csv(value) or []]
    except ValueError:
        raise ConfigError(f"{flag} {value!r}: expected whole numbers", hint=f"e.g. {flag} 0,64,256") from None


def check_margin(points: float) -> None:
    if not math.isfinite(points) or not 0 <= points < 100:
        raise ConfigError(f"--margin {points}: not a number of accuracy points from 0 to 100",
                          hint="e.g. --margin 2 (the recommendation may give up 2 points for a cheaper arm)")


def model_options(values: list[str] | None) -> dict[str, str]:
    """``--model-option NAME=VALUE`` (repeatable) -> {name: value}."""
    out: dict[str, str] = {}
    for value in values or []:
        name, sep, text = value.partition("=")
        if not sep or not name.strip().isidentifier():
            raise ConfigError(f"--model-option {value!r}: expected NAME=VALUE", hint="e.g. --model-option timeout=60")
        out[name.strip()] = text
    return out


def pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    """``--input field=Column`` (repeatable) -> {field: column}."""
    out: dict[str, str] = {}
    for value in values or []:
        name, sep, column = value.partition("=")
        if not sep or not name.strip().isidentifier() or not column:
            raise ConfigError(f"{flag} {value!r}: expected FIELD=COLUMN", hint=f'e.g. {flag} body="Ticket Body"')
        out[name.strip()] = column
    return out


def build_task(task: str | None, data: str | None, inputs: str | None, output: str | None, labels: str | None,
               labels_from: str | None, metric: str, instructions: str | None, skip_bad_rows: bool,
               id_column: str | None = None, open_ended: bool = False, signature: str | None = None,
               input_map: list[str] | None = None, output_type: str | None = None,
               labels_file: str | None = None) -> Task:
    """The task of a command line; ``open_ended``: a generated task without a count has no end of rows."""
    if task:
        if id_column:
            raise ConfigError("--id is for --data files", hint="a built-in task identifies its rows itself")
        builtin = get_task(task, data, skip_bad_rows=skip_bad_rows, open_ended=open_ended)
        return builtin.with_signature(signature) if signature else builtin
    if not data:
        raise ConfigError("no task given", hint="pass --task NAME, or --data FILE --inputs COLS --output COL")
    if not output and not signature:
        raise ConfigError("--data needs --output COL", hint="name the column holding the expected answer")
    mapped = pairs(input_map, "--input")
    if inputs and signature:
        raise ConfigError("--inputs names columns of a task without --signature",
                          hint="with --signature, map fields with --input FIELD=COLUMN")
    cols: list[str] | dict[str, str] | None = mapped if signature else {**mapped, **column_map(_csv(inputs) or [])}
    out: str | dict[str, str] | None = pairs([output], "--output") if output and "=" in output else output
    descriptions = read_label_descriptions(labels_file) if labels_file else None
    return Task.from_file(data, signature, cols, out, metric, labels=_csv(labels), labels_from=labels_from,
                          instructions=instructions, skip_bad_rows=skip_bad_rows, id_column=id_column,
                          output_type=output_type, label_descriptions=descriptions)


@app.command("eval")
def eval_(task: str = typer.Option(None, "--task", help="a built-in task (see `firsttoken tasks`)"),
          data: str = typer.Option(None, "--data", help="JSONL, CSV or JSON file (or folder, for a built-in task)"),
          inputs: str = typer.Option(None, "--inputs", help="input columns, comma-separated"),
          output: str = typer.Option(None, "--output", help="the column with the expected answer, or "
                                     "FIELD=COLUMN"),
          input_map: list[str] = typer.Option(None, "--input", help="FIELD=COLUMN, repeatable: an input field read "
                                              "from a column of any name"),
          signature: str = typer.Option(None, "--signature", help="module:Class or file.py:Class, a firsttoken or "
                                        "DSPy Signature (its fields read from columns of their names, or --input; "
                                        "with --task: the task's inputs and scored output, asked your way)"),
          output_type: str = typer.Option(None, "--output-type", help="int, float, bool, str or labels (default: "
                                          "labels with --labels, a number with --metric numeric, else str)"),
          labels: str = typer.Option(None, "--labels", help="the categories, comma-separated"),
          labels_from: str = typer.Option(None, "--labels-from", help="take the categories from this column"),
          labels_file: str = typer.Option(None, "--labels-file", help="a file with columns label,description: "
                                          "the categories and what each means (shown in the prompt)"),
          metric: str = typer.Option(None, "--metric", help="exact, numeric, label, or module:function (default: "
                                     "numeric for --output-type int or float, else exact)"),
          instructions: str = typer.Option(None, "--instructions", help="the task instruction for the prompt"),
          id_column: str = typer.Option(None, "--id", help="a column of unique row ids (default: rows are "
                                        "identified by their content)"),
          model: list[str] = typer.Option(None, "--model", "-m", help="repeatable; default qwen2.5-coder-1.5b"),
          parallel: int = typer.Option(None, "--parallel", min=1, help="rows run at once: decoded together "
                                       "(local models) or requests in flight (servers)"),
          model_option: list[str] = typer.Option(None, "--model-option", help="NAME=VALUE, repeatable: an option "
                                                 "of the models' backends (as ?NAME=VALUE in a --model spec)"),
          layouts: str = typer.Option(None, "--layouts", help="comma-separated names (default: every built-in "
                                 "layout); your own layout as file.py:Class or module:Class"),
          syntaxes: str = typer.Option("json", "--syntaxes"),
          constrained: str = typer.Option("on", "--constrained", help="on, off, or on,off"),
          budgets: str = typer.Option(None, "--thinking-budgets", help="e.g. 0,16,64,256 (default 512): an arm "
                                      "per budget; a local model decodes a row's budgets as one trace"),
          limit: int = typer.Option(None, "--limit", help="the first N rows"),
          sample: int = typer.Option(None, "--sample", help="N rows drawn at random (with --seed)"),
          seed: int = typer.Option(0, "--seed"),
          demos: str = typer.Option(None, "--demos", help="file of few-shot examples (the data's columns)"),
          n_demos: int = typer.Option(3, "--n-demos"),
          demo_selection: str = typer.Option("first", "--demo-selection", help="first, random or stratified (by "
                                             "label; random and stratified use --seed)"),
          store: str = typer.Option(None, "--store", help="SQLite file; default runs/<task>.db"),
          margin: float = typer.Option(2.0, "--margin", help="accuracy points the recommendation may give up"),
          until_decided: bool = typer.Option(False, "--until-decided", help="rows in a random order, in rounds, "
                                             "until the recommendation is decided (anytime-valid intervals)"),
          max_rows: int = typer.Option(None, "--max-rows", help="with --until-decided: stop after N rows"),
          max_tokens: int = typer.Option(None, "--max-tokens", help="with --until-decided: stop once the arms "
                                         "have generated T tokens"),
          alpha: float = typer.Option(0.05, "--alpha", help="with --until-decided: the chance of any wrong "
                                      "decision"),
          skip_bad_rows: bool = typer.Option(False, "--skip-bad-rows", help="count bad rows and go on"),
          no_probe: bool = typer.Option(False, "--no-probe", help="do not probe server models before the run "
                                        "(their arms are then labelled by what the engine claims)"),
          quiet: bool = typer.Option(False, "--quiet", help="no live bars (for CI logs)"),
          as_json: bool = typer.Option(False, "--json", help="print the summary as one JSON object")) -> None:
    """Run a grid of arms (model x layout x syntax x constrained x budget) over a task's rows."""
    check_margin(margin)
    metric = metric or ("numeric" if output_type in ("int", "float") else "exact")
    the_task = build_task(task, data, inputs, output, labels, labels_from, metric, instructions, skip_bad_rows,
                          id_column, open_ended=until_decided, signature=signature, input_map=input_map,
                          output_type=output_type, labels_file=labels_file)
    for note in the_task.signature.notes():
        err.print(f"note: {note}", markup=False, soft_wrap=True)
    demo_rows = load_demos(demos, the_task, n_demos, demo_selection, seed) if demos else None
    config = make_config(models=model or ["qwen2.5-coder-1.5b"], layouts=_csv(layouts),
                         syntaxes=_csv(syntaxes) or ["json"], constrained=_on_off(constrained),
                         budgets=_ints(budgets, "--thinking-budgets"), store=store, limit=limit, sample=sample,
                         seed=seed, demos=demo_rows, margin=margin / 100, until_decided=until_decided,
                         max_rows=max_rows, max_tokens=max_tokens, alpha=alpha, parallel=parallel,
                         model_options=model_options(model_option), probe=not no_probe)
    with BarProgress(quiet or as_json) as progress:
        summary = evaluate(the_task, config=config, progress=progress)
    summary["bad_rows"] = the_task.bad_rows
    _baseline_note(summary)
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        out.print(terminal_safe(markdown(summary)), markup=False)
        if the_task.bad_rows:
            out.print(f"{the_task.bad_rows} bad rows were skipped (--skip-bad-rows).")
        out.print(terminal_safe(f"Stored in {summary['store']}; `firsttoken report {summary['store']} --html "
                                "report.html` for plots."), markup=False)
    failed = sum(a["backend_errors"] for a in summary["arms"])
    if failed:
        err.print(f"{failed} row(s) ended in a backend error (see the backend err column); rerun the same command "
                  "to retry them", markup=False)
        raise typer.Exit(1)


@app.command()
def report(store: Path = typer.Argument(..., help="a store written by `firsttoken eval`"),
           html_file: Path = typer.Option(None, "--html", help="write one self-contained HTML page"),
           md_file: Path = typer.Option(None, "--md", help="write the Markdown summary"),
           margin: float = typer.Option(2.0, "--margin"),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Summarise a store: accuracy with intervals, paired tests, the recommendation; optionally HTML."""
    if not store.is_file():
        raise ConfigError(f"{store}: no such store", hint="pass the .db file that `firsttoken eval` wrote")
    check_margin(margin)
    for target, flag in ((html_file, "--html"), (md_file, "--md")):
        if target is not None and same_file(target, store):
            raise ConfigError(f"{flag} {target} is the store itself: writing there would destroy it",
                              hint=f"give {flag} another file name, e.g. report.html")
    try:  # a report reads: a current store is opened read-only (its file untouched); an older one is upgraded
        db = Store(store, readonly=True)
    except DataError as e:
        if "needs upgrading" not in e.message:
            raise
        db = Store(store)
    try:
        summaries = [summarize(db, t, margin=margin / 100) for t in db.tasks()]
        if not summaries:
            raise ConfigError(f"{store}: the store has no runs", hint="run `firsttoken eval` first")
        for s in summaries:
            _baseline_note(s)
        text = "\n".join(markdown(s) for s in summaries)
        if md_file:
            _write(md_file, text)
        if html_file:
            _write(html_file, html_page(summaries, db))
        if as_json:
            print(json.dumps(summaries[0] if len(summaries) == 1 else summaries, indent=2, default=str))
        else:
            out.print(terminal_safe(text), markup=False)
            if html_file:
                out.print(terminal_safe(f"HTML report: {html_file.resolve()}"), markup=False)
    finally:
        db.close()


def _baseline_note(summary: dict) -> None:
    line = baseline_note(summary)
    if line:
        err.print(terminal_safe(f"note: {line}"), markup=False, soft_wrap=True)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@app.command()
def tasks() -> None:
    """List the built-in tasks."""
    for name in task_names():
        out.print(name)


@app.command()
def predict(run: Path = typer.Option(..., "--run", help="a store written by `firsttoken eval`"),
            arm: str = typer.Option(None, "--arm", help="arm number, id or unique part; default: the recommendation"),
            data: Path = typer.Option(..., "--data", help="new rows (JSONL, CSV or JSON) with the input columns"),
            out_file: Path = typer.Option(..., "--out", help="CSV if it ends in .csv, else JSON Lines: one "
                                          "prediction or named error per row"),
            id_column: str = typer.Option(None, "--id", help="a column of unique row ids (default: line numbers)"),
            input_map: list[str] = typer.Option(None, "--input", help="FIELD=COLUMN, repeatable (default: the "
                                                "columns of the run's data, or the fields' own names)"),
            parallel: int = typer.Option(None, "--parallel", min=1, help="rows run at once"),
            model_option: list[str] = typer.Option(None, "--model-option", help="NAME=VALUE, repeatable: an option "
                                                   "of the arm's model (as ?NAME=VALUE in a --model spec)")) -> None:
    """Apply an arm of a run to new rows (its signature rebuilt as the run stored it)."""
    if not run.is_file():
        raise ConfigError(f"{run}: no such store", hint="pass the .db file that `firsttoken eval` wrote")
    counts = predict_file(run, data, out_file, arm, id_column=id_column, parallel=parallel,
                          columns=pairs(input_map, "--input"), model_options=model_options(model_option))
    out.print(terminal_safe(f"{counts['predicted']} predictions, {counts['errors']} errors, {counts['skipped']} rows "
                            f"already in {out_file}"), markup=False)
    if counts["backend_errors"]:
        err.print(f"{counts['backend_errors']} row(s) ended in a backend error; rerun the same command to retry them",
                  markup=False)
        raise typer.Exit(1)


@app.command()
def show(run: Path = typer.Option(..., "--run"), arm: str = typer.Option(None, "--arm"),
         as_json: bool = typer.Option(False, "--json")) -> None:
    """Print an arm's exact messages, grammar and JSON Schema, to reproduce it outside firsttoken."""
    if not run.is_file():
        raise ConfigError(f"{run}: no such store", hint="pass the .db file that `firsttoken eval` wrote")
    shown = show_arm(run, arm)
    if as_json:
        print(json.dumps(shown, indent=2, ensure_ascii=False))
        return
    out.print(f"[bold]arm[/bold] {markup(shown['arm']['id'])}")
    out.print(f"[bold]options[/bold] {markup(json.dumps(shown['options']))}")
    for m in shown["messages"]:
        out.print(f"[bold]--- {markup(m['role'])} ---[/bold]")
        out.print(terminal_safe(m["content"]), markup=False)
    out.print("[bold]--- Lark grammar (llguidance) ---[/bold]")
    out.print(terminal_safe(shown["grammar"]), markup=False)
    out.print("[bold]--- JSON Schema (servers) ---[/bold]")
    out.print(terminal_safe(json.dumps(shown["json_schema"], indent=2)) if shown["json_schema"] else
              "none: this layout's reply is not one JSON object", markup=False)


@app.command()
def export(run: Path = typer.Option(..., "--run", help="a store written by `firsttoken eval`"),
           arm: str = typer.Option(None, "--arm", help="arm number, id or unique part; default: the recommendation"),
           dspy: bool = typer.Option(False, "--dspy", help="write the arm as a DSPy program (a Python file)"),
           out_file: Path = typer.Option(None, "--out", help="where to write it (default: print it)")) -> None:
    """Write an arm of a run as a program for another framework (DSPy: signature, demos, adapter, model)."""
    if not dspy:
        raise ConfigError("export: name the format", hint="--dspy (a DSPy program; the only format so far)")
    if not run.is_file():
        raise ConfigError(f"{run}: no such store", hint="pass the .db file that `firsttoken eval` wrote")
    if out_file is not None and (same_file(out_file, run) or out_file.suffix != ".py"):
        raise ConfigError(f"--out {out_file}: not a new .py file", hint="e.g. --out program.py")
    found, text = dspy_program(run, arm)  # writing it needs no DSPy; running it does
    if out_file is None:
        print(text, end="")
        return
    out_file.write_text(text, encoding="utf-8")
    err.print(terminal_safe(f"wrote {out_file}: arm {found['id']} as a DSPy program "
                            f"(python {out_file} < rows.jsonl, or import it)"), markup=False)


@app.command()
def demo(quick: bool = typer.Option(False, "--quick", help="a 5-minute look; too small to decide anything"),
         model: str = typer.Option(None, "--model", "-m", help="a --model spec, as for eval (a server's too); "
                                   "default qwen2.5-coder-1.5b")) -> None:
    """The first token problem on this machine, with evidence (about 10 minutes on 2 cores)."""
    with BarProgress(False) as progress:
        run_demo(model or _models.DEFAULT_MODEL, quick=quick, console=out, progress=progress)
