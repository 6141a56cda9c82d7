"""Consistent online backups of the study database, taken while participants keep answering.

SQLite: the backup API copies a consistent snapshot page by page (WAL readers and the writer go
on). PostgreSQL: `pg_dump` in custom format, which dumps one MVCC snapshot; restore it with
`pg_restore -d NEWDB FILE`. Debian's postgresql-client package provides pg_dump.
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from sqlalchemy import URL


class BackupError(RuntimeError):
    pass


def default_path(directory: Path, url: URL) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return directory / f"study-{stamp}.{'sqlite' if url.get_backend_name() == 'sqlite' else 'pgdump'}"


def backup(url: URL, out: Path) -> Path:
    """Write a backup of the database at `url` to `out` (atomically); returns `out`."""
    if out.exists():
        raise BackupError(f"{out} exists; give a new file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    backend = url.get_backend_name()
    if backend == "sqlite":
        if not url.database or not Path(url.database).exists():
            raise BackupError(f"no SQLite database at {url.database!r}")
        source, target = sqlite3.connect(url.database), sqlite3.connect(tmp)
        try:
            source.backup(target, pages=1024)  # in steps, so writers are not held up for the whole copy
        finally:
            target.close()
            source.close()
    elif backend == "postgresql":
        if shutil.which("pg_dump") is None:
            raise BackupError("pg_dump not found: install Debian's postgresql-client")
        # The password travels in the environment, not on the command line (visible in ps).
        env = {**os.environ, **({"PGPASSWORD": url.password} if url.password else {})}
        plain = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
        done = subprocess.run(["pg_dump", "--format=custom", "--no-owner", f"--file={tmp}", plain], env=env,
                              capture_output=True, text=True)
        if done.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise BackupError(f"pg_dump failed: {done.stderr.strip()}")
    else:
        raise BackupError(f"cannot back up a {backend} database")
    os.replace(tmp, out)
    return out
