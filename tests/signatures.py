"""Signatures shared by the tests: a 24-category classifier, an integer answer, every other type."""

from __future__ import annotations

import enum
from typing import Literal

from pydantic import BaseModel

import firsttoken as ft

CATEGORIES = ("beauty", "fragrances", "furniture", "groceries", "home-decoration", "kitchen-accessories",
              "laptops", "mens-shirts", "mens-shoes", "mens-watches", "mobile-accessories", "motorcycle",
              "skin-care", "smartphones", "sports-accessories", "sunglasses", "tablets", "tops", "vehicle",
              "womens-bags", "womens-dresses", "womens-jewellery", "womens-shoes", "womens-watches")


# Ten catalogue rows of the products task's shape, written here so the test runs where the data set is absent.
ROWS = [("Stainless Frying Pan", "A 28 cm non-stick pan for everyday cooking."),
        ("Rose Eau de Parfum", "A floral scent in a 50 ml glass bottle."),
        ("Oak Coffee Table", "A low solid-wood table for the living room."),
        ("Basmati Rice 5 kg", "Long-grain rice in a resealable bag."),
        ("Leather Ankle Boots", "Women's boots with a block heel."),
        ("Wireless Earbuds Case", "A charging case that fits most phone earbuds."),
        ("Aviator Sunglasses", "Metal frames with polarised lenses."),
        ("Hydrating Face Cream", "A night cream for dry skin."),
        ("Cotton Oxford Shirt", "A men's long-sleeved button-down shirt."),
        ("Touring Motorcycle Helmet", "A full-face helmet with a sun visor.")]


class Products(ft.Signature):
    """Assign the product to exactly one category."""

    item_name: str = ft.InputField()
    item_description: str = ft.InputField()
    category: Literal[CATEGORIES] = ft.OutputField(desc="the product's category")  # type: ignore[valid-type]


class Arithmetic(ft.Signature):
    """Solve the maths word problem."""

    question: str = ft.InputField()
    answer: int = ft.OutputField(desc="the final number")


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


class Address(BaseModel):
    street: str
    number: int


class Person(BaseModel):
    name: str
    address: Address
    tags: list[str]


class Everything(ft.Signature):
    """Extract every field."""

    text: str = ft.InputField()
    title: str = ft.OutputField()
    score: float = ft.OutputField()
    urgent: bool = ft.OutputField()
    colour: Colour = ft.OutputField()
    counts: list[int] = ft.OutputField()
    labels: list[Literal["a", "b"]] = ft.OutputField()
    person: Person = ft.OutputField()


class Extract(ft.Signature):
    """Extract the person."""

    text: str = ft.InputField()
    person: Person = ft.OutputField()


EXAMPLES = {
    Products: {"category": "kitchen-accessories"},
    Arithmetic: {"answer": -42},
    Everything: {"title": "Ünïcode \"quoted\" / slash", "score": 2.5, "urgent": False, "colour": Colour.GREEN,
                 "counts": [1, 2, 3], "labels": ["b", "a"],
                 "person": Person(name="Ann", address=Address(street="Main St", number=7), tags=["x", "y z"])},
    Extract: {"person": Person(name="Bo", address=Address(street="High St", number=12), tags=[])},
}


def builtin_arms() -> list[tuple[str, str]]:
    """Every (layout, syntax) of the layouts firsttoken ships, read from the registry."""
    return [(name, syntax) for name in ft.layout_names() for syntax in ft.get_layout(name).syntaxes
            if type(ft.get_layout(name)).__module__.startswith("firsttoken.")]


def least(name: str, syntax: str | None = None) -> int:
    """The fewest characters a layout's reasoning region holds (0 for most; thoughts_long: 600)."""
    region = ft.get_layout(name, syntax).constraint(Arithmetic).region
    return region.least if region else 0


def reasoning_for(name: str, syntax: str | None, text: str) -> str:
    """``text``, repeated until it fills the layout's minimum reasoning length (itself where there is none)."""
    n = least(name, syntax)
    return text * (1 + n // len(text)) if n else text
