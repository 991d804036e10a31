"""Files as every output of replaycli is written and read: atomically (a temporary file in the same
directory, then a rename, so a killed process leaves the old file or the new one, never half of
one), and read back with bounded work and one-line errors (`OutputError`). The formats themselves
are rundir's (a run) and sweepdir's (a sweep). Only the standard library is imported here.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
from pathlib import Path
from typing import Any


class OutputError(ValueError):
    """A directory that is not a readable run or sweep."""


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write `text` (or bytes) to `path` through a temporary file in the same directory and a rename."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as to any file
    try:
        data = text if isinstance(text, bytes) else text.encode()  # str as UTF-8, newlines as written
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        folder = os.open(path.parent, os.O_RDONLY)  # the rename itself survives a power cut
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def csv_text(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def fmt(x: float) -> str:
    return repr(float(x))  # shortest exact float text: bit-for-bit reproducible files


MAX_COLUMNS = 1_000_001  # a table replaycli writes has one column per test experience or class (a million classes)


def read_text(path: Path) -> str:
    """A file of a run as text; OutputError (one line) when it cannot be read or is not UTF-8."""
    try:
        return Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise OutputError(f"{path} is not UTF-8 text") from None
    except OSError as e:
        raise OutputError(f"{path} cannot be read ({e.strerror or e})") from None


def read_json(path: Path, kind: type = dict) -> Any:
    """A JSON file that must hold a `kind` (an object by default)."""
    try:
        value = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise OutputError(f"{path} is not JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(value, kind):
        raise OutputError(
            f"{path} holds a JSON {type(value).__name__}, not an {'object' if kind is dict else kind.__name__}"
        )
    return value


def read_csv_text(path: Path) -> str:
    """A CSV file's text, refused from its header when it is wider than any table we write
    (bounded work on absurd input, before parsing it)."""
    text = read_text(path)
    header = text.partition("\n")[0]
    if header.count(",") >= MAX_COLUMNS:
        raise OutputError(f"{path} has {header.count(',') + 1} columns; allowed: at most {MAX_COLUMNS}")
    return text


def disk_bytes(path: str | os.PathLike) -> int:
    """The size on disk of a file, or of every file under a directory (links not followed), in bytes."""
    if os.path.islink(path) or os.path.isfile(path):
        return os.lstat(path).st_size
    total = 0
    for root, _dirs, names in os.walk(os.fspath(path)):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:  # removed while we walk (a temporary file renamed)
                pass
    return total
