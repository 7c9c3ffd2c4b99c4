"""A griffe extension for the API reference: pbtune's docstrings end a line with ``::``
before an indented example (reStructuredText's literal block, as Python's own docstrings
do); Markdown would show the ``::`` and an unhighlighted block. This turns each into a line
ending with ``:`` and a fenced Python block, so the source keeps its style and the site its
highlighting.
"""

from __future__ import annotations

import textwrap
from typing import Any

import griffe


def fence_literal_blocks(text: str) -> str:
    """``Example::`` and the indented block after it, as ``Example:`` and a fenced block."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not (line.rstrip().endswith("::") and i + 1 < len(lines) and not lines[i + 1].strip()):
            out.append(line)
            i += 1
            continue
        base = len(line) - len(line.lstrip())
        j = i + 1
        block: list[str] = []
        while j < len(lines) and (not lines[j].strip()
                                  or len(lines[j]) - len(lines[j].lstrip()) > base):
            block.append(lines[j])
            j += 1
        while block and not block[-1].strip():
            block.pop()
        if not block:
            out.append(line)
            i += 1
            continue
        body = textwrap.dedent("\n".join(block)).strip("\n")
        out += [line.rstrip()[:-1], "", "```python", *body.splitlines(), "```"]
        i = j
    return "\n".join(out)


class LiteralBlocks(griffe.Extension):
    """Rewrites the literal blocks of every docstring that griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **_: Any) -> None:
        if obj.docstring is not None and "::" in obj.docstring.value:
            obj.docstring.value = fence_literal_blocks(obj.docstring.value)
