"""``--env-file FILE``: ``NAME=VALUE`` lines, as ``make run`` writes them and a shell ``source``s them.

Blank lines and ``#`` comments are skipped, ``export`` is allowed, values are read with the shell's
quoting rules (``shlex``); nothing is expanded or executed.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class EnvFileError(Exception):
    """The file is missing or a line is not ``NAME=VALUE``."""


def parse(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        name, sep, rest = line.partition("=")
        if not sep or not _NAME.match(name):
            raise EnvFileError(f"line {number} is not NAME=VALUE")
        try:
            words = shlex.split(rest, comments=True)
        except ValueError as exc:
            raise EnvFileError(f"line {number}: {exc}") from None
        if len(words) > 1:
            raise EnvFileError(f"line {number}: quote a value that holds spaces")
        values[name] = words[0] if words else ""
    return values


def read(path: str) -> dict[str, str]:
    try:
        return parse(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise EnvFileError(exc.strerror or type(exc).__name__) from None
