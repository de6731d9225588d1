"""Scripted models for `--model scripted:tests.fakes:NAME` (tests run from the project root)."""

from __future__ import annotations

import json
import os
import re
import time


def _question(messages):
    return messages[-1]["content"]


def echo_sum(messages):
    """Answers "a+b" questions right in any layout the prompt asks for; wrong on purpose when b is 0."""
    m = re.search(r"(\d+)\+(\d+)", _question(messages))
    a, b = int(m.group(1)), int(m.group(2))
    answer = a + b if b else a + 1
    system = messages[0]["content"]
    if "Answer:" in system:
        return f"{a} plus {b}\nAnswer: {answer}"
    if "<think>" in system:
        return f'<think>\nadd them\n</think>\n{{"answer": {answer}}}'
    if "[[ ## completed ## ]]" in system:
        head = "[[ ## thoughts ## ]]\nadd\n\n" if "[[ ## thoughts ## ]]" in system else ""
        tail = "\n\n[[ ## explanation ## ]]\nsum" if "[[ ## explanation ## ]]" in system else ""
        return f"{head}[[ ## answer ## ]]\n{answer}{tail}\n\n[[ ## completed ## ]]"
    if '"thoughts"' in system:
        return f'{{"thoughts": "add", "answer": {answer}}}'
    if '"explanation"' in system:
        return f'{{"answer": {answer}, "explanation": "sum"}}'
    return f'{{"answer": {answer}}}'


echo_sum.enforces = "script"  # its replies always fit the layout: arms count as constrained, labelled [script]


def slow_sum(messages):
    """echo_sum, slowly, counting every call in the file named by $FAKE_CALLS."""
    path = os.environ.get("FAKE_CALLS")
    if path:
        with open(path, "a") as f:
            f.write("call\n")
    time.sleep(float(os.environ.get("FAKE_DELAY", "0.2")))
    return echo_sum(messages)


def garbage(messages):
    return "I don't know."


def flaky(messages):
    """echo_sum, except that it fails while $FAKE_FAIL is 1 (a server that is down)."""
    if os.environ.get("FAKE_FAIL") == "1":
        raise ConnectionError("server down")
    return echo_sum(messages)


def script_tag(messages):
    return "<script>alert(1)</script>"


def title_label(messages):
    """A label guesser for the JSON layouts: the category is the first word of item_name; the thoughts quote
    item_description."""
    text = _question(messages)
    name = re.search(r"item_name: (\S+)", text).group(1)
    desc = re.search(r"item_description: (.*)", text).group(1)
    if '"thoughts"' in messages[0]["content"]:
        return json.dumps({"thoughts": desc, "category": name})
    return json.dumps({"category": name})


def sentiment(messages):
    """A label guesser for `text` rows: "pos" where the text says good, else "neg"; counts calls in $FAKE_CALLS."""
    path = os.environ.get("FAKE_CALLS")
    if path:
        with open(path, "a") as f:
            f.write("call\n")
    label = "pos" if "good" in _question(messages) else "neg"
    if '"thoughts"' in messages[0]["content"]:
        return json.dumps({"thoughts": "it says so", "label": label})
    return json.dumps({"label": label})


def thinks_better(messages):
    """echo_sum's replies, but a layout without a thoughts field gets odd first numbers wrong (about half)."""
    reply = echo_sum(messages)
    m = re.search(r"(\d+)\+(\d+)", _question(messages))
    if '"thoughts"' not in messages[0]["content"] and int(m.group(1)) % 2:
        reply = reply.replace(f'"answer": {int(m.group(1)) + int(m.group(2))}', '"answer": -1')
    return reply


for _fake in (title_label, sentiment, thinks_better):  # replies that fit the layout they are asked for
    _fake.enforces = "script"


def ticket_triage(messages):
    """A support-ticket triager for the JSON layouts: writes the keys the prompt's Shape line asks for, in its
    order; the category from words of the ticket (refund/charge: billing, crash/error: bug, else other)."""
    shape = re.search(r"Shape: (\{.*\})", messages[0]["content"]).group(1)
    keys = re.findall(r'"(\w+)": <', shape)
    text = _question(messages).lower()
    category = "billing" if re.search(r"refund|charge", text) else "bug" if re.search(r"crash|error", text) else "other"
    values = {"thoughts": f"the ticket mentions {category} words", "category": category,
              "details": {"summary": text[:30], "urgent": "urgent" in text}, "explanation": "by its words"}
    return json.dumps({k: values.get(k, category if "category" in k else "") for k in keys})


ticket_triage.enforces = "script"


def always_spam(messages):
    """Answers "spam" to every row (the SMS spam prompt that does not say what the labels mean)."""
    return json.dumps({"label": "spam"})


def spam_words(messages):
    """"spam" where the message offers a prize, else "ham": right on the spam rows of tests/test_reports.py."""
    return json.dumps({"label": "spam" if "prize" in _question(messages) else "ham"})


for _fake in (always_spam, spam_words):
    _fake.enforces = "script"
