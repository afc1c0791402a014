"""``RuleError``: a rule that cannot be parsed or compiled, shown with its line, column and a caret."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .rule import Rule


class RuleError(ValueError):
    """A rule that cannot be parsed or makes no sense; the message shows where, with a caret (the line echoed with
    each unprintable character, an ANSI escape say, as ``?``)."""

    WIDTH = 100  # characters of the offending line shown around the caret

    def __init__(self, message: str, text: str = '', pos: int | None = None):
        self.message, self.text, self.pos = message, text, pos
        super().__init__(self._render())

    def _render(self) -> str:
        if self.pos is None:
            return self.message
        line_no = self.text.count('\n', 0, self.pos) + 1
        start = self.text.rfind('\n', 0, self.pos) + 1
        end = self.text.find('\n', self.pos)
        line = ''.join(c if c.isprintable() else '?' for c in self.text[start : end if end >= 0 else len(self.text)])
        column = self.pos - start + 1
        shown, caret = line, column - 1
        if len(line) > self.WIDTH:  # a long line is shown around the caret
            first = max(0, min(caret - self.WIDTH // 2, len(line) - self.WIDTH))
            shown = (
                ('...' if first else '')
                + line[first : first + self.WIDTH]
                + ('...' if first + self.WIDTH < len(line) else '')
            )
            caret += (3 if first else 0) - first
        return f'{self.message} (line {line_no}, column {column})\n    {shown}\n    {" " * caret}^'

    @classmethod
    def in_rule(cls, rule: Rule, message: str, fragment: str = '', stream: str | None = None) -> 'RuleError':
        """An error found after parsing, placed in the rule's canonical text: at the first ``fragment`` (a name or
        a term's text) in the update of ``stream`` (any update if None), else at the start of that update."""
        text = str(rule)
        offset = 0
        for line in text.split('\n'):
            if stream is None or line.startswith(f'{stream}[k+1]'):
                found = re.search(rf'(?<![\w.]){re.escape(fragment)}(?!\w)', line) if fragment else None
                if found or stream is not None:
                    return cls(message, text, offset + (found.start() if found else 0))
            offset += len(line) + 1
        return cls(message, text, 0)
