"""Small builders of odmlib elements that every part of the ODM metadata uses."""

from __future__ import annotations

from typing import TypeVar

import odmlib.odm_1_3_2.model as ODM
from odmlib.odm_element import ODMElement

ElementT = TypeVar("ElementT", bound=ODMElement)

LANG = "en"


def text(content: str) -> ODM.TranslatedText:
    return ODM.TranslatedText(_content=content, lang=LANG)


def description(content: str) -> ODM.Description:
    return ODM.Description(TranslatedText=[text(content)])


def optional(element: ElementT, **children: ODMElement | None) -> ElementT:
    """`element` with the given optional child elements, skipping None (odmlib refuses None)."""
    for name, child in children.items():
        if child is not None:
            setattr(element, name, child)
    return element


def yes_no(flag: bool) -> str:
    return "Yes" if flag else "No"
