"""Text that came from an artifact, a patch, the tests or a baseline report: it may lie, and it
may carry Markdown, HTML, a mention or a workflow command. Held as `Untrusted`, it cannot be
written into the summary or a log by mistake: formatting it asks which escape it needs
(f"{name:md}" for Markdown, f"{name:log}" for a log line) and refuses a bare f"{name}", so a new
field of this type is escaped wherever it is shown, or the first test that shows it fails.
str() gives the raw text, for writers that escape it their own way (code spans, XML, JSON)."""

from __future__ import annotations

import html
import re
from typing import Annotated

from pydantic import AfterValidator

# Line breaks, control characters, and the invisible ones that reorder or hide text (bidi, zero-width).
_UNSEEN = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]+")
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|~])")  # < > & are html.escape's


def loggable(text: object, most: int = 2000) -> str:
    """One line without control characters: text from an artifact can then neither start a log
    line (where GitHub would run `::command::` as a workflow command) nor colour, move or hide it."""
    flat = " ".join(_UNSEEN.sub(" ", str(text)).split())
    return flat[:most] + "…" if len(flat) > most else flat


def markdown_text(value: object, most: int = 200) -> str:
    """Plain text in a Markdown line or table cell: one line, at most `most` characters, HTML
    escaped, Markdown's punctuation escaped, no @mention."""
    return html.escape(_MARKDOWN.sub(r"\\\1", loggable(value, most)), quote=False).replace("@", "@\u2060")


class Untrusted(str):
    """A string from outside ci-eval: shown only through an escape (see the module's docstring)."""

    __slots__ = ()

    def __format__(self, spec: str) -> str:
        if spec == "md":
            return markdown_text(str(self), 500)
        if spec == "log":
            return loggable(str(self))
        raise TypeError(f"untrusted text is shown as {{value:md}} or {{value:log}}, not with {spec!r}")


# A model field of this type holds an Untrusted once validated (its type stays str for mypy).
UntrustedText = Annotated[str, AfterValidator(Untrusted)]
