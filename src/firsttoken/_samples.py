"""A small sample task, used by `firsttoken layouts` to show what each layout's reply looks like."""

from __future__ import annotations

from typing import Literal

from ._signature import InputField, OutputField, Signature


class SampleClassify(Signature):
    """Assign the product to exactly one category."""

    item_name: str = InputField()
    category: Literal["beauty", "groceries", "furniture"] = OutputField(desc="the product's category")


SAMPLE_OUTPUTS = {"category": "groceries"}
SAMPLE_REASONING = "Apples are fresh fruit, sold in food shops, so this is groceries."
SAMPLE_EXTRAS = {"explanation": "Apples are food."}
