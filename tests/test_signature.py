from __future__ import annotations

from typing import Literal, Optional

import pytest

import firsttoken as ft

from .signatures import Everything, Products


def test_fields_and_instructions_in_declaration_order():
    assert list(Products.input_fields) == ["item_name", "item_description"]
    assert list(Products.output_fields) == ["category"]
    assert Products.instructions == "Assign the product to exactly one category."
    assert Products.output_fields["category"].desc == "the product's category"


def test_output_schema_keeps_order_and_lists_categories():
    schema = Everything.output_schema()
    assert list(schema["properties"]) == ["title", "score", "urgent", "colour", "counts", "labels", "person"]
    assert schema["required"] == list(schema["properties"])
    assert schema["properties"]["colour"] == {"type": "string", "enum": ["red", "green"]}
    assert schema["properties"]["person"]["properties"]["address"]["required"] == ["street", "number"]
    assert len(Products.output_schema()["properties"]["category"]["enum"]) == 24


@pytest.mark.parametrize("tp", [Optional[int], dict[str, int], tuple[int, int], set[str]])
def test_unsupported_output_types_are_refused(tp):
    with pytest.raises(ft.ConfigError, match="unsupported output type"):
        ft.Signature.make("Bad", "x", {"a": str}, {"b": tp})


def test_undeclared_field_is_refused_with_the_fix():
    with pytest.raises(ft.ConfigError, match="InputField"):
        class Bad(ft.Signature):  # noqa: F841
            a: str


def test_make_builds_a_signature():
    sig = ft.Signature.make("Sentiment", "Classify the review.", {"review": str},
                            {"label": Literal["pos", "neg"]}, {"label": "the sentiment"})
    assert sig.instructions == "Classify the review." and sig.output_fields["label"].desc == "the sentiment"
    with pytest.raises(ft.ConfigError, match="identifier"):
        ft.Signature.make("S", "x", {"bad name": str}, {"b": int})


def test_from_dspy():
    import dspy  # in the test extra (dspy 3.x): never skipped

    class Classify(dspy.Signature):
        """Classify the sentiment."""

        sentence: str = dspy.InputField()
        sentiment: Literal["positive", "negative"] = dspy.OutputField(desc="the sentiment")

    sig = ft.Signature.from_dspy(Classify)
    assert list(sig.input_fields) == ["sentence"] and sig.output_fields["sentiment"].desc == "the sentiment"


def test_from_dspy_refuses_other_objects():
    with pytest.raises(ft.ConfigError, match="not a DSPy signature"):
        ft.Signature.from_dspy(int)
