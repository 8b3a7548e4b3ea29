"""Reading the text files of dataset distributions: lines, 0/1 columns, list files, class names.

The list format (one image a line, ``<path> <0|1> … <0|1>``) is what list-file datasets read and
what hashbench writes its split files in.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from hashbench.atomic import atomic_write
from hashbench.errors import HashbenchError


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, so readers never see half a file."""
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def missing_file_error(dataset: str, what: str, expected: Path, hint: str = "") -> HashbenchError:
    """The one-line error for a file of the layout that is not where it should be."""
    msg = f"{dataset}: expected {what} at {expected}, not found"
    return HashbenchError(msg + (f"; {hint}" if hint else ""))


def read_text_lines(path: Path) -> list[str]:
    """Lines of a text file with any line ending (LF, CRLF, CR), right-stripped.

    Trailing blank lines (a final newline, or several) are dropped; blank lines inside are kept so
    that line numbers and line-by-line alignment stay exact.
    """
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    return [line.rstrip() for line in lines]


def read_binary_column(path: Path, dataset: str) -> np.ndarray:
    """A file with one ``0`` or ``1`` per line (any line ending) as a uint8 array of shape (n,)."""
    raw = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\r", b"\n").rstrip(b"\n\t ")
    if not raw:
        return np.zeros(0, np.uint8)
    n = raw.count(b"\n") + 1
    if len(raw) == 2 * n - 1:  # the usual case: exactly one character per line
        buf = np.frombuffer(raw, np.uint8)
        vals = buf[::2] - np.uint8(48)
        if (buf[1::2] == 10).all() and (vals <= 1).all():
            return vals.astype(np.uint8)
    out = np.empty(n, np.uint8)
    for i, line in enumerate(raw.split(b"\n")):
        s = line.strip()
        if s not in (b"0", b"1"):
            raise HashbenchError(
                f"{dataset}: {path} line {i + 1}: expected 0 or 1, got {s[:20].decode(errors='replace')!r}")
        out[i] = s == b"1"
    return out


# --------------------------------------------------------------------------- list files
def normalise_path(path: str, strip_prefix: Sequence[str] = ()) -> str:
    """``/``-separated path with the first matching prefix of ``strip_prefix`` removed."""
    path = path.replace("\\", "/")
    for prefix in strip_prefix:
        prefix = prefix.replace("\\", "/")
        if prefix and path.startswith(prefix):
            path = path[len(prefix):].lstrip("/")
            break
    while path.startswith("./"):
        path = path[2:]
    return path


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _path_with_space(parts: Sequence[str]) -> int:
    """How many tokens after the first are the rest of a path with spaces: the leading tokens
    before a run of 0/1 labels that are not numbers (``cat.jpg`` in ``imgs/my cat.jpg 0 1``);
    0 where the line reads as a path and labels."""
    labels = parts[1:]
    lead = 0
    while lead < len(labels) and labels[lead] not in ("0", "1"):
        lead += 1
    if lead == 0 or lead == len(labels) or not set(labels[lead:]) <= {"0", "1"}:
        return 0
    if any(_NUMBER.fullmatch(t) for t in labels[:lead]):
        return 0  # e.g. a label written -1 or 2: a bad label, not a path
    return lead


def parse_list_lines(path: Path, dataset: str, strip_prefix: Sequence[str] = ()
                     ) -> tuple[list[str], np.ndarray, list[int]]:
    """:func:`parse_list_file`, and the line number of each path in ``path`` (1-based)."""
    paths: list[str] = []
    rows: list[list[str]] = []
    numbers: list[int] = []
    width = None
    for number, line in enumerate(read_text_lines(path), 1):
        parts = line.split()
        if not parts:
            continue
        extra = _path_with_space(parts)
        if extra:
            raise HashbenchError(
                f"{dataset}: {path} line {number}: the path {' '.join(parts[:1 + extra])!r} contains "
                "a space; list paths may not contain spaces (rename the file, e.g. spaces to _, and "
                "its list entries)")
        labels = parts[1:]
        if width is None:
            width = len(labels)
            if width == 0:
                raise HashbenchError(f"{dataset}: {path} line {number} has a path but no labels; "
                                     "expected '<path> <0|1> <0|1> …'")
        if len(labels) != width:
            raise HashbenchError(f"{dataset}: {path} line {number} has {len(labels)} labels, "
                                 f"the first line has {width}")
        if not set(labels) <= {"0", "1"}:
            bad = next(t for t in labels if t not in ("0", "1"))
            raise HashbenchError(f"{dataset}: {path} line {number}: labels must be 0 or 1, got {bad!r}")
        paths.append(normalise_path(parts[0], strip_prefix))
        rows.append(labels)
        numbers.append(number)
    if not rows:
        return [], np.zeros((0, 0), np.uint8), []
    return paths, np.array(rows).astype(np.uint8), numbers


def parse_list_file(path: Path, dataset: str, strip_prefix: Sequence[str] = ()
                    ) -> tuple[list[str], np.ndarray]:
    """Read the list format ``<path> <0|1> … <0|1>``.

    Returns the normalised paths and labels as ``ndarray of shape (n, C)``, uint8. Every line must
    carry the same number C ≥ 1 of 0/1 labels; a path may not contain spaces (a line whose path
    has one is refused as such, not as a wrong number of labels). Blank lines are skipped.
    """
    paths, labels, _ = parse_list_lines(path, dataset, strip_prefix)
    return paths, labels


def format_list_file(paths: Sequence[str], labels: np.ndarray) -> bytes:
    """The list format for ``paths`` and ``labels`` (n, C), LF line endings."""
    digits = np.where(np.asarray(labels) > 0, "1", "0")
    lines = [f"{p} {' '.join(row)}\n" for p, row in zip(paths, digits.tolist())]
    return "".join(lines).encode()


def parse_class_names(arg, width: int, dataset: str, root: Path | None = None) -> list[str]:
    """Column names from a list, a comma-separated string or a file with one name per line
    (looked up as given, then under ``root``); ``None``: ``"0"``, ``"1"``, …. Refused unless there
    are exactly ``width`` of them."""
    if arg is None:
        return [str(i) for i in range(width)]
    if isinstance(arg, (list, tuple)):
        names = [str(a) for a in arg]
    else:
        path = Path(str(arg)).expanduser()
        found = next((p for p in (path, (root / path) if root else None) if p is not None and p.is_file()), None)
        names = ([n.strip() for n in read_text_lines(found) if n.strip()] if found
                 else [c.strip() for c in str(arg).split(",") if c.strip()])
    if len(names) != width:
        raise HashbenchError(f"{dataset}: class_names gives {len(names)} names but the labels have "
                             f"{width} columns")
    return names
