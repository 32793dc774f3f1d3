"""Terminal output for the twin's commands: tables that fit 80 columns, progress that suits the output."""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 80
GAP = "  "


def elide(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters by replacing its middle with '…' (keeps prefix and file name)."""
    if len(text) <= width:
        return text
    if width < 3:
        return text[:width]
    tail = (width - 1) // 2
    return text[: width - 1 - tail] + "…" + text[len(text) - tail:]


def format_columns(rows: list[tuple], width: int = WIDTH, squeeze: int = 0) -> str:
    """Rows (the first one the header) as left-aligned columns, at most ``width`` wide: column ``squeeze``
    (the one with free text, such as an object key) gives up the room, its long values elided in the middle."""
    cells = [[str(v) for v in row] for row in rows]
    widths = [max(len(r[c]) for r in cells) for c in range(len(cells[0]))]
    overflow = sum(widths) + len(GAP) * (len(widths) - 1) - width
    if overflow > 0:
        widths[squeeze] = max(len(cells[0][squeeze]), widths[squeeze] - overflow)
        for row in cells:
            row[squeeze] = elide(row[squeeze], widths[squeeze])
    return "\n".join(GAP.join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells)


class Progress:
    """``done/total`` progress: redrawn in place on a terminal; as plain lines (at most one per step of
    ``total / lines`` and per ``min_interval_s``) when the output is a file or a pipe, so logs stay readable."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None, lines: int = 10,
                 min_interval_s: float = 2.0):
        self.label, self.total = label, total
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty()
        self._step = max(1, total // lines)
        self._min_interval_s = min_interval_s
        self._shown = -1
        self._shown_at = 0.0

    def update(self, done: int) -> None:
        if done == self._shown:
            return
        if self.interactive:
            self.stream.write(f"\r  {done}/{self.total} {self.label}")
        else:
            now = time.monotonic()
            due = done == self.total or (done - max(self._shown, 0) >= self._step
                                         and now - self._shown_at >= self._min_interval_s)
            if not due:
                return
            self.stream.write(f"  {done}/{self.total} {self.label}\n")
            self._shown_at = now
        self.stream.flush()
        self._shown = done

    def close(self) -> None:
        if self.interactive and self._shown >= 0:
            self.stream.write("\n")
            self.stream.flush()
