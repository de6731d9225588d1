"""A user's own layout named on the command line (``--layouts file.py:Class``): registered, its module's text in
the arm's identity (an edited layout is re-evaluated, and `predict`/`show` refuse the stored arm), bad
references refused in one line; and the JSON-thoughts candidates of scripts/json_thoughts.py hold the layout
contract (render -> grammar accepts -> parse round-trips)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from firsttoken import layouts
from firsttoken.layouts import get_layout, load_layout

from .grammar import accepts
from .helpers import MODEL, cli, write_tickets
from .signatures import EXAMPLES

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = ["ThoughtsCalc", "StepsFirst", "ThoughtsLines"]
NOTES = '''
from firsttoken.layouts._ordered import ThoughtsFirst


class Notes(ThoughtsFirst):
    name = "notes_first"
    description = "a thoughts field asked for as short notes"

    def _help(self, name, sig):
        return "a string: NOTES, short ones" if name in self.before else super()._help(name, sig)
'''


def test_a_users_layout_from_the_command_line_is_measured_applied_and_refused_once_edited(tmp_path):
    (tmp_path / "my_layouts.py").write_text(NOTES)
    data = write_tickets(tmp_path / "tickets.csv")
    args = ["eval", "--data", str(data), "--input", "body=Ticket Body", "--output", "category=Category (final)",
            "--id", "ticket_id", *MODEL, "--layouts", "direct,my_layouts.py:Notes", "--quiet", "--json",
            "--store", "run.db"]
    res = cli(*args, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    arms = json.loads(res.stdout)["arms"]
    assert [a["layout"] for a in arms] == ["direct", "notes_first"] and all(a["accuracy"] == 1.0 for a in arms)
    shown = cli("show", "--run", "run.db", "--arm", "2", cwd=tmp_path)
    assert shown.returncode == 0 and "NOTES, short ones" in shown.stdout
    new = write_tickets(tmp_path / "new.csv", [("N-1", "Crash", "it crashes with an error", "")])
    res = cli("predict", "--run", "run.db", "--arm", "2", "--data", str(new), "--out", "p.jsonl", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "p.jsonl").read_text())["outputs"]["category"] == "bug"
    # edited: the stored arm is not this layout any more; a new run measures it as a new arm
    (tmp_path / "my_layouts.py").write_text(NOTES.replace("short ones", "very short ones"))
    for cmd in (["predict", "--run", "run.db", "--arm", "2", "--data", str(new), "--out", "q.jsonl"],
                ["show", "--run", "run.db", "--arm", "2"]):
        res = cli(*cmd, cwd=tmp_path)
        assert res.returncode == 1 and "has changed since the run" in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
    res = cli(*args, cwd=tmp_path)
    ids = [a["id"] for a in json.loads(res.stdout)["arms"]]
    assert ids[0] == arms[0]["id"] and ids[1] != arms[1]["id"]  # direct is reused, the edited layout is not


SIGNATURE = '''
from firsttoken import InputField, OutputField, Signature


class Ticket(Signature):
    """Sort the support ticket."""

    body: str = InputField()
    category: str = OutputField(desc="One of: billing, bug, other")
'''


def test_a_run_whose_checkout_moved_finds_its_layout_and_signature_files_again(tmp_path):
    old = tmp_path / "old" / "checkout"
    (old / "mine").mkdir(parents=True)
    (old / "mine" / "my_layouts.py").write_text(NOTES)
    (old / "mine" / "sig.py").write_text(SIGNATURE)
    data = write_tickets(old / "tickets.csv")
    res = cli("eval", "--data", str(data), "--signature", "mine/sig.py:Ticket", "--input", "body=Ticket Body",
              "--output", "category=Category (final)", "--id", "ticket_id", *MODEL, "--layouts",
              "mine/my_layouts.py:Notes", "--quiet", "--store", "run.db", cwd=old)
    assert res.returncode == 0, res.stderr
    new = tmp_path / "elsewhere" / "clone"
    new.parent.mkdir()
    old.rename(new)  # the stored references name files under old/, which is gone
    rows = write_tickets(new / "new.csv", [("N-1", "Crash", "it crashes with an error", "")])
    res = cli("predict", "--run", "run.db", "--data", str(rows), "--out", "p.jsonl", cwd=new)
    assert res.returncode == 0, res.stderr
    assert json.loads((new / "p.jsonl").read_text())["outputs"]["category"] == "bug"
    shown = cli("show", "--run", "run.db", cwd=new)
    assert shown.returncode == 0 and "NOTES, short ones" in shown.stdout, shown.stderr
    # found again by path, still checked by content: an edited file there is refused
    (new / "mine" / "my_layouts.py").write_text(NOTES.replace("short ones", "very short ones"))
    res = cli("show", "--run", "run.db", cwd=new)
    assert res.returncode == 1 and "has changed since the run" in res.stderr, res.stderr
    # run from somewhere the files are not: the stored path, not found, in one line
    res = cli("show", "--run", str(new / "run.db"), cwd=tmp_path)
    assert res.returncode == 1 and "file not found" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_bad_layout_references_are_one_line(tmp_path):
    (tmp_path / "bad.py").write_text(NOTES + "\n\nclass Direct(Notes):\n    name = 'direct'\n\nNOT_A_CLASS = 3\n")
    base = ["eval", "--task", "arithmetic:1-1:1", "--model", "scripted:tests.fakes:garbage", "--quiet", "--layouts"]
    for ref, words in (("bad.py:NOT_A_CLASS", "is not a Layout subclass"), ("bad.py:Direct", "is another layout's"),
                       ("bad.py:Nope", "defines no 'Nope'"), ("missing.py:X", "file not found")):
        res = cli(*base, ref, cwd=tmp_path)
        assert res.returncode == 1 and words in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("cls", CANDIDATES)
@pytest.mark.parametrize("sig", list(EXAMPLES), ids=lambda s: s.__name__)
def test_the_json_thoughts_candidates_hold_the_layout_contract(restore_registries, cls, sig):
    layout = get_layout(load_layout(f"{ROOT}/scripts/json_thoughts.py:{cls}"))
    assert layouts.layout_source(layout.name) is not None and layouts.layout_ref(layout.name).endswith(cls)
    reasoning = 'First "12 * 3 = 36" \\ back\nthen 36 - 1 = 35'
    reply = layout.render(sig, EXAMPLES[sig], reasoning)
    parsed = layout.parse(sig, reply)
    assert parsed.outputs == EXAMPLES[sig] and parsed.reasoning == reasoning
    constraint = layout.constraint(sig)
    assert accepts(constraint.lark, reply), reply
    assert not accepts(constraint.lark, reply + "\nDone.") and not accepts(constraint.lark, reply[:-2])
    if cls == "ThoughtsLines":  # a real line break inside the string, which strict JSON refuses
        assert "\nthen" in reply and accepts(constraint.lark, reply)
        with pytest.raises(ValueError):
            json.loads(reply)
    else:
        json.loads(reply)
