"""``arithmetic``: generated multi-step word problems with an exact integer answer.

Difficulty is the number of operations (1-8). Seeded, so the same seed gives the same rows; needs no data.
Every intermediate value stays a non-negative integer. The purest view of "models need tokens to think":
an answer-first reply must do all the steps inside its first number.
"""

from __future__ import annotations

import random

from .._signature import InputField, OutputField, Signature
from ._task import Row, Task

NAMES = ["Ava", "Ben", "Chloe", "Dev", "Ema", "Finn", "Gia", "Hugo", "Ines", "Jon"]
THINGS = ["marbles", "stickers", "apples", "coins", "cards", "shells", "pencils", "stamps"]


class Arithmetic(Signature):
    """Solve the word problem. The answer is a whole number."""

    question: str = InputField()
    answer: int = OutputField(desc="the final number")


def problem(rng: random.Random, steps: int) -> tuple[str, int]:
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    value = rng.randint(5, 40)
    lines = [f"{name} has {value} {thing}."]
    for _ in range(steps):
        ops = ["add", "sub", "mul", "div"] if value else ["add"]
        op = rng.choice(ops)
        if op == "sub" and value < 2:
            op = "add"
        if op == "div":
            divisors = [d for d in (2, 3, 4, 5) if value % d == 0]
            op = "div" if divisors else "mul"
        if op == "add":
            n = rng.randint(2, 30)
            lines.append(rng.choice([f"{name} buys {n} more.", f"A friend gives {name} {n} more."]))
            value += n
        elif op == "sub":
            n = rng.randint(1, min(value - 1, 30))
            lines.append(rng.choice([f"{name} gives away {n}.", f"{name} loses {n}."]))
            value -= n
        elif op == "mul":
            n = rng.choice([2, 3, 4]) if value < 200 else 2
            lines.append(f"{name} {['doubles', 'triples', 'quadruples'][n - 2]} the {thing}.")
            value *= n
        else:
            n = rng.choice(divisors)
            lines.append(f"{name} shares the {thing} equally among {n} boxes and keeps one box.")
            value //= n
    lines.append(f"How many {thing} does {name} have now?")
    return " ".join(lines), value


def arithmetic_task(data: str | None = None, *, difficulties: range | list[int] = range(1, 9),
                    per_difficulty: int = 20, seed: int = 0, skip_bad_rows: bool = False,
                    open_ended: bool = False) -> Task:
    """``per_difficulty`` problems of each difficulty, interleaved; ``open_ended``: rows without end, row i
    of difficulty ``difficulties[i % len]`` from its own seeded generator (drawn as used, the same each time)."""
    levels = list(difficulties)
    if open_ended:
        def source(i: int) -> Row:
            steps = levels[i % len(levels)]
            question, answer = problem(random.Random(f"{seed}:{i}"), steps)
            return Row(f"d{steps}-{i}", {"question": question}, answer, float(steps))

        return Task("arithmetic", Arithmetic, "answer", "numeric", [], source=source)
    rng = random.Random(seed)
    rows = []
    for steps in difficulties:
        for i in range(per_difficulty):
            question, answer = problem(rng, steps)
            rows.append(Row(f"d{steps}-{i}", {"question": question}, answer, float(steps)))
    # Interleave difficulties so that --limit N takes a spread of them.
    rows.sort(key=lambda r: (int(r.id.split("-")[1]), r.difficulty))
    return Task("arithmetic", Arithmetic, "answer", "numeric", rows)
