"""The one error type users see, and the 'did you mean' ordering used in its messages."""
from __future__ import annotations

import difflib
from typing import Iterable


class HashbenchError(Exception):
    """A mistake in user input: the CLI prints its one-line message and exits with status 2."""


def suggest(name: str, choices: Iterable[str]) -> list[str]:
    """``choices`` with the closest matches to ``name`` first, then the rest alphabetically."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(name, choices, n=len(choices), cutoff=0.5)
    return close + [c for c in choices if c not in close]
