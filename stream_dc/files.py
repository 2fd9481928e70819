"""Files that are never half-written: temporary siblings renamed into place when complete."""
from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def replaced_on_success(path: str | Path) -> Iterator[Path]:
    """Yields a temporary sibling of ``path`` to write; renames it onto ``path`` if the block succeeds, else
    removes it, so ``path`` is never half-written."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.part")
    try:
        yield temporary
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, path)


def create_temporary(directory: Path, prefix: str, suffix: str = "", folder: bool = False) -> Path:
    """A new, uniquely named file (or folder) in ``directory``, created with the permissions the process's umask
    gives (``tempfile`` would make it private, and reading the umask means setting it, racily, for every thread)."""
    while True:
        path = directory / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            if folder:
                os.mkdir(path, 0o777)
            else:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return path
        except FileExistsError:
            continue
