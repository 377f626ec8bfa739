"""A griffe extension: read a Google-style ``Example:`` section as ``Examples:``.

The package's docstrings title their doctest examples ``Example:``, which Google style (and
Sphinx's napoleon) accepts; griffe knows only ``Examples:`` and would render the ``>>>`` lines
of an ``Example:`` section as Markdown block quotes. Renaming the section when the docstring is
loaded keeps the source as it is, for docstrings written later too.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_SECTION = re.compile(r"^(?P<indent>[ \t]*)Example:[ \t]*$", flags=re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Rename ``Example:`` section titles to ``Examples:`` in every loaded docstring."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite the docstring of each object as it is loaded."""
        if obj.docstring is not None:
            obj.docstring.value = _SECTION.sub(r"\g<indent>Examples:", obj.docstring.value)
