"""Filesystem helpers that keep the store private to the user running harvester.

The database holds collected posts and alert payloads (possibly with webhook URLs in them), so it is
created owner-only from the first byte: the file is created with mode 0600 by `os.open` *before*
SQLite touches it, instead of being created world-readable and chmod-ed afterwards.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600

# SQLite's companions of a WAL-mode database. SQLite gives them the database file's own permission
# bits when it creates them (unix VFS `findCreateFileMode`), but one left behind by an earlier run
# keeps whatever mode it had, hence `make_files_private`.
SIDECAR_SUFFIXES = ("-wal", "-shm", "-journal")


def ensure_private_dir(directory: Path) -> list[Path]:
    """Create `directory` and any missing ancestors with mode 0700; return the ones created.

    Existing directories are left alone: they belong to the user, who may share them on purpose.
    The mode is set with chmod after mkdir because mkdir's mode is filtered through the umask.
    """
    missing: list[Path] = []
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    created: list[Path] = []
    for path in reversed(missing):
        try:
            path.mkdir(mode=DIR_MODE)
        except FileExistsError:  # created concurrently by someone else: theirs, not ours
            continue
        path.chmod(DIR_MODE)
        created.append(path)
    return created


def create_private_file(path: Path) -> bool:
    """Create `path` empty with mode 0600 if it does not exist; return True if it was created here.

    O_EXCL tells us whether we created it; O_NOFOLLOW refuses a planted symlink. fchmod undoes a
    umask stricter than usual (e.g. 0277) that would otherwise leave the owner unable to write.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return True


def sidecar_paths(db_path: Path) -> list[Path]:
    return [db_path.with_name(db_path.name + suffix) for suffix in SIDECAR_SUFFIXES]


def make_files_private(db_path: Path) -> None:
    """Give the database and whichever of its sidecar files exist mode 0600.

    Run after SQLite has opened the database: by then a WAL-mode database has its -wal and -shm.
    Only regular files are touched, and only when they grant anything to group or others.
    """
    for path in (db_path, *sidecar_paths(db_path)):
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077:
            path.chmod(FILE_MODE)
