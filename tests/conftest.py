"""Shared fixtures: an app folder with the script and real SQLite databases, and a CLI runner."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "database_backup_scheduler.py"
sys.path.insert(0, str(REPO))


def make_db(path: Path, rows: int = 100, *, journal_mode: str = "wal", payload: int = 100) -> Path:
    """A real database with an ``items`` table and a ``totals`` row kept equal to its sum.

    The invariant (``totals.total == SUM(items.value)`` and ``totals.count == COUNT(*)``)
    holds after every transaction, so any consistent snapshot satisfies it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA journal_mode={journal_mode}")
    conn.execute("CREATE TABLE IF NOT EXISTS items(id INTEGER PRIMARY KEY, value INTEGER, pad BLOB)")
    conn.execute("CREATE TABLE IF NOT EXISTS totals(id INTEGER PRIMARY KEY, total INTEGER, count INTEGER)")
    conn.execute("INSERT OR IGNORE INTO totals VALUES (1, 0, 0)")
    with conn:
        for i in range(rows):
            conn.execute("INSERT INTO items(value, pad) VALUES (?, randomblob(?))", (i, payload))
            conn.execute("UPDATE totals SET total = total + ?, count = count + 1 WHERE id = 1", (i,))
    conn.close()
    return path


def read_invariant(path: Path) -> tuple[int, int, int, int]:
    """(total, count, SUM(value), COUNT(*)) of a database made by ``make_db``, opened read-only."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        total, count = conn.execute("SELECT total, count FROM totals WHERE id = 1").fetchone()
        summed, counted = conn.execute("SELECT COALESCE(SUM(value), 0), COUNT(*) FROM items").fetchone()
    finally:
        conn.close()
    return total, count, summed, counted


def integrity(path: Path) -> str:
    """PRAGMA integrity_check of a file opened read-only and immutable (creates no side files)."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        return "; ".join(row[0] for row in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


@dataclasses.dataclass
class App:
    """An app root holding a copy of the script, as an operator would lay it out."""

    root: Path

    @property
    def script(self) -> Path:
        return self.root / "database_backup_scheduler.py"

    @property
    def main_db(self) -> Path:
        return self.root / "instance" / "pet_painting.db"

    @property
    def root_db(self) -> Path:
        return self.root / "pet_painting.db"

    @property
    def backup_dir(self) -> Path:
        return self.root / "instance" / "backups"

    @property
    def log_file(self) -> Path:
        return self.root / "database_backup_log.json"

    def backups(self, name: str | None = None) -> list[Path]:
        """Files in the backup folder that end in .bak (of one database name, when given)."""
        if not self.backup_dir.exists():
            return []
        found = sorted(p for p in self.backup_dir.iterdir() if p.name.endswith(".bak"))
        if name is not None:
            found = [p for p in found if p.name.startswith(name + ".") and p.name[len(name) + 1].isdigit()]
        return found

    def run(
        self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the script in a real subprocess (from ``cwd``, default the app root)."""
        full_env = {**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})}
        return subprocess.run(
            [sys.executable, str(self.script), *args],
            cwd=str(cwd or self.root),
            env=full_env,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
        )

    def popen(self, *args: str, **kwargs: object) -> subprocess.Popen[str]:
        """Start the script as a background process."""
        env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONUNBUFFERED": "1"}
        return subprocess.Popen(
            [sys.executable, str(self.script), *args],
            cwd=str(self.root),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **kwargs,  # type: ignore[arg-type]
        )


@pytest.fixture
def app(tmp_path: Path) -> App:
    """An app root with the script and ``instance/pet_painting.db`` (WAL, 200 rows)."""
    root = tmp_path / "app"
    root.mkdir()
    shutil.copy2(SCRIPT, root / SCRIPT.name)
    make_db(root / "instance" / "pet_painting.db", rows=200)
    return App(root)
