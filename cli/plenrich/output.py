"""Progress on stderr and plain-text tables on stdout (hand-drawn: no extra dependency)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import IO


class Progress:
    """A plain-text progress bar on stderr: redrawn in place on a terminal, else one line per ~10%."""

    def __init__(self, label: str, total: int | None, stream: IO[str], width: int = 24) -> None:
        self.label, self.total, self.stream, self.width = label, total, stream, width
        self.done = 0
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._last: tuple[int, str] | None = None  # (decile, text) last written
        self._draw()

    def advance(self, count: int = 1) -> None:
        self.done += count
        self._draw()

    def close(self) -> None:
        self._draw(final=True)

    def render(self) -> tuple[int, str]:
        total = self.total or 0
        if total and self.done <= total:
            filled = self.width * self.done // total
            bar = "#" * filled + "-" * (self.width - filled)
            return (
                10 * self.done // total,
                f"{self.label} [{bar}] {self.done}/{total} {100 * self.done // total}%",
            )
        return self.done, f"{self.label}: {self.done} done"

    def _draw(self, *, final: bool = False) -> None:
        if self.total is None and not self.done:
            return  # nothing to show yet (and nothing at all when the command fails at once)
        decile, text = self.render()
        if self.tty:
            self.stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
        elif self._last is None or decile != self._last[0] or (final and text != self._last[1]):
            self.stream.write(text + "\n")
            self._last = (decile, text)
        self.stream.flush()


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain-text table with aligned columns."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def truncate(text: str | None, width: int) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= width else text[: width - 3] + "..."


def millis_timestamp(when: datetime) -> str:
    """``2025-01-28T14:35:00.123Z``: the shape of a delivery's ``timestamp`` (always milliseconds)."""
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
