"""Shared fixtures: an app folder with the script and real SQLite databases, and a CLI runner."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import http.server
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import database_backup_scheduler as dbs

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "database_backup_scheduler.py"

# The tool speaks the language of its environment: the tests (and every process they start)
# run in English unless a test asks for another, whatever the machine's locale.
for _name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
    os.environ.pop(_name, None)
os.environ["LANG"] = "C.UTF-8"
sys.path.insert(0, str(REPO))


# A process that holds the run lock, as a hung run would: argv[1] the lock file, argv[2]
# seconds to hold it; prints "ready" once it holds it.
HOLD_LOCK = """
import fcntl, os, sys, time
os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True)
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("ready", flush=True)
time.sleep(float(sys.argv[2]))
"""

# A process that holds an EXCLUSIVE lock on a rollback-journal database (argv[1]), as an app in
# the middle of a write would, until a line or end of file arrives on its stdin: every reader
# waits. Prints "ready" once it holds the lock.
HOLD_DATABASE = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
conn.execute("UPDATE totals SET total = total WHERE id = 1")
print("ready", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
conn.close()
"""


def start_python(code: str, *args: str) -> subprocess.Popen[str]:
    """Run ``code`` in another Python process; it prints a line when it is ready."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_ready(proc: subprocess.Popen[str]) -> None:
    line = proc.stdout.readline() if proc.stdout else ""
    assert line.strip() == "ready", (line, proc.stderr.read() if proc.stderr else "")


def stop(proc: subprocess.Popen[str]) -> None:
    """Kill ``proc`` if it still runs, reap it and close its pipes."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


# Commits continuously to a make_db database (argv[1]), keeping its invariant, until the file
# argv[2] appears; prints "ready" first and the number of commits at the end.
WRITER = """
    import os, sqlite3, sys, time
    path, stop_file = sys.argv[1], sys.argv[2]
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    commits = 0
    print("ready", flush=True)
    while not os.path.exists(stop_file):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE items SET value = value + 1 WHERE id = ?", (commits % 200 + 1,))
        conn.execute("UPDATE totals SET total = total + 1 WHERE id = 1")
        conn.execute("INSERT INTO items(value, pad) VALUES (?, randomblob(200))", (commits,))
        conn.execute(
            "UPDATE totals SET total = total + ?, count = count + 1 WHERE id = 1", (commits,)
        )
        conn.execute("COMMIT")
        commits += 1
        time.sleep(0.001)
    print(commits, flush=True)
"""


@contextlib.contextmanager
def database_held(path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holds ``path`` (a ``make_db`` database in rollback-journal mode) with
    ``BEGIN EXCLUSIVE`` until the block ends or ``let_go`` is called; it changes nothing."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_DATABASE, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        yield holder
    finally:
        let_go(holder)


def let_go(holder: subprocess.Popen[str]) -> None:
    """The holder of ``database_held`` lets go of the database (once; later calls do nothing)."""
    if holder.poll() is None:
        with contextlib.suppress(OSError, ValueError):
            assert holder.stdin is not None
            holder.stdin.write("go\n")
            holder.stdin.close()
        try:
            holder.wait(timeout=30)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait(timeout=30)
    if holder.stdout is not None:
        holder.stdout.close()


def make_db(path: Path, rows: int = 100, *, journal_mode: str = "wal", payload: int = 100) -> Path:
    """A real database with an ``items`` table and a ``totals`` row kept equal to its sum.

    The invariant (``totals.total == SUM(items.value)`` and ``totals.count == COUNT(*)``)
    holds after every transaction, so any consistent snapshot satisfies it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA journal_mode={journal_mode}")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS items(id INTEGER PRIMARY KEY, value INTEGER, pad BLOB)"
    )
    conn.execute(
        "CREATE TABLE IF NOT EXISTS totals(id INTEGER PRIMARY KEY, total INTEGER, count INTEGER)"
    )
    conn.execute("INSERT OR IGNORE INTO totals VALUES (1, 0, 0)")
    with conn:
        for i in range(rows):
            conn.execute("INSERT INTO items(value, pad) VALUES (?, randomblob(?))", (i, payload))
            conn.execute(
                "UPDATE totals SET total = total + ?, count = count + 1 WHERE id = 1", (i,)
            )
    conn.close()
    return path


def read_invariant(path: Path) -> tuple[int, int, int, int]:
    """(total, count, SUM(value), COUNT(*)) of a database made by ``make_db``, opened read-only."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        total, count = conn.execute("SELECT total, count FROM totals WHERE id = 1").fetchone()
        summed, counted = conn.execute(
            "SELECT COALESCE(SUM(value), 0), COUNT(*) FROM items"
        ).fetchone()
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


def run_process(
    command: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run a real process in ``cwd`` with ``env`` added to this one's; its output as UTF-8 text."""
    return subprocess.run(
        list(command),
        cwd=str(cwd),
        env={**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})},
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout,
    )


@dataclasses.dataclass
class App:
    """An app root holding a copy of the script, as an operator would lay it out."""

    root: Path
    # Whether --run also archives the instance folder, as it does by default (weekly). Off
    # unless a test asks: the database tests count what a run leaves in the backup folder.
    archives: bool = False

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
            prefix = name + "."
            found = [
                p for p in found if p.name.startswith(prefix) and p.name[len(prefix)].isdigit()
            ]
        return found

    def run(
        self,
        *args: str,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run the script in a real subprocess (from ``cwd``, default the app root)."""
        return run_process(
            [sys.executable, str(self.script), *self._with_archives(args)],
            cwd=cwd or self.root,
            env=env,
            timeout=timeout,
        )

    def _with_archives(self, args: Sequence[str]) -> list[str]:
        """``args``, with ``--archive-every-days 0`` after ``--run`` unless the app archives
        (``archives``) or the arguments say how often."""
        if self.archives or "--run" not in args or "--archive-every-days" in args:
            return list(args)
        return [*args, "--archive-every-days", "0"]

    def popen(self, *args: str, **kwargs: object) -> subprocess.Popen[str]:
        """Start the script as a background process."""
        env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONUNBUFFERED": "1"}
        return subprocess.Popen(
            [sys.executable, str(self.script), *self._with_archives(args)],
            cwd=str(self.root),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **kwargs,  # type: ignore[arg-type]
        )


def make_app(root: Path, rows: int | None = 200) -> App:
    """An app laid out at ``root`` (a new folder of any name): a copy of the script and,
    unless ``rows`` is None, ``instance/pet_painting.db`` (WAL) with that many rows."""
    root.mkdir(parents=True)
    shutil.copy2(SCRIPT, root / SCRIPT.name)
    if rows is not None:
        make_db(root / "instance" / "pet_painting.db", rows=rows)
    return App(root)


@pytest.fixture
def app(tmp_path: Path) -> App:
    """An app root with the script and ``instance/pet_painting.db`` (WAL, 200 rows)."""
    return make_app(tmp_path / "app")


# --------------------------------------------------------------------------------------
# Helpers for the engine tests (backup, naming, retention, run log, reports, CLI)
# --------------------------------------------------------------------------------------


def make_config(root: Path, *flags: str, cwd: Path | None = None) -> dbs.Config:
    """The module's Config for an app root, built from command-line ``flags`` like ``--run``."""
    import database_backup_scheduler

    args = database_backup_scheduler.build_parser().parse_args(["--run", *flags])
    return database_backup_scheduler.build_config(args, app_root=root, cwd=cwd or root)


def plant_backup(
    source: Path, folder: Path, name: str, taken_at: datetime.datetime, seq: int = 0
) -> Path:
    """Copy a real database into ``folder`` under a backup's name, as if made at ``taken_at``.

    The name is spelled out here (not built by the module) so that tests check the
    module's naming against the documented ``<name>.<YYYYmmdd_HHMMSS>[-seq].bak``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    counter = f"-{seq}" if seq else ""
    target = folder / f"{name}.{taken_at:%Y%m%d_%H%M%S}{counter}.bak"
    shutil.copyfile(source, target)
    return target


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    """Errors reach the operator as messages, never as a Python traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    assert "Traceback" not in result.stdout, result.stdout


# --------------------------------------------------------------------------------------
# Helpers for the recovery tests (verify, restore, check)
# --------------------------------------------------------------------------------------


def dump(path: Path, *, immutable: bool = False) -> list[str]:
    """The SQL dump (``iterdump``) of a database opened read-only: equal dumps, equal content.

    A live database is read as the app would see it (its -wal included); pass
    ``immutable=True`` for a backup, so that nothing is created beside it.
    """
    flags = "&immutable=1" if immutable else ""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro{flags}", uri=True)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def damage_middle_page(path: Path) -> None:
    """Overwrite the middle page of a multi-page database with garbage, as a torn write would."""
    with open(path, "r+b") as handle:
        header = handle.read(100)
        page_size = int.from_bytes(header[16:18], "big") or 65536
        pages = os.fstat(handle.fileno()).st_size // page_size
        assert pages >= 3, f"{path} has {pages} page(s); the damage needs a multi-page database"
        handle.seek((pages // 2) * page_size)
        handle.write(b"\xa5" * page_size)


def flip_middle_bytes(path: Path, count: int = 64) -> None:
    """Overwrite ``count`` bytes in the middle of a file in place: same size, header intact.

    Bit rot or tampering that leaves a backup looking whole; only its SHA-256 tells.
    """
    size = path.stat().st_size
    assert size > 4 * count, f"{path} is too small to damage in the middle"
    with open(path, "r+b") as handle:
        handle.seek(size // 2)
        before = handle.read(count)
        handle.seek(size // 2)
        handle.write(bytes(b ^ 0xFF for b in before))


def journal_mode_in_header(path: Path) -> str:
    """The journal mode a file opens in, "wal" or "rollback", from header bytes 18-19."""
    with open(path, "rb") as handle:
        header = handle.read(20)
    return "wal" if header[18:20] == b"\x02\x02" else "rollback"


@contextlib.contextmanager
def mounted_tmpfs(folder: Path, size: str = "2m") -> Iterator[Path]:
    """A small tmpfs mounted on ``folder`` for the block, unmounted after (root on Linux).

    Skips the test where it cannot be mounted.
    """
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root on Linux")
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


# --------------------------------------------------------------------------------------
# A real webhook receiver (alerts)
# --------------------------------------------------------------------------------------


class Webhook:
    """An HTTP server on 127.0.0.1 that records each POST (and GET: heartbeats) and answers
    with ``status``."""

    def __init__(self) -> None:
        self.status = 200
        self.requests: list[dict[str, Any]] = []
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hook.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "content_type": self.headers.get("Content-Type", ""),
                        "body": body,
                    }
                )
                self.send_response(hook.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "11")
                self.end_headers()
                self.wfile.write(b'{"ok":true}')

            do_GET = do_POST  # noqa: N815 - http.server's naming

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def bodies(self) -> list[Any]:
        return [json.loads(r["body"]) for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=30)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    server = Webhook()
    try:
        yield server
    finally:
        server.close()


# --------------------------------------------------------------------------------------
# The script run as an unprivileged user (permission tests: root, setpriv, Linux)
# --------------------------------------------------------------------------------------

NOBODY = 65534  # the unprivileged user and group of Debian and most Linux systems


@dataclasses.dataclass
class Nobody:
    """A folder in /tmp that user 65534 can enter, and the command prefix that runs a Python
    as that user (``setpriv`` and a Python outside /root)."""

    base: Path
    prefix: list[str]

    def make_app(self) -> App:
        """``base/app`` with a copy of the script, still owned by root (see ``give``)."""
        return make_app(self.base / "app", rows=None)

    def run(self, app: App, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the script of ``app`` as user 65534, from the app root."""
        return run_process([*self.prefix, str(app.script), *args], cwd=app.root, timeout=timeout)

    @staticmethod
    def give(folder: Path) -> None:
        """Make ``folder`` and everything below it belong to user 65534."""
        os.chown(folder, NOBODY, NOBODY)
        for parent, folders, files in os.walk(folder):
            for name in folders + files:
                os.chown(os.path.join(parent, name), NOBODY, NOBODY, follow_symlinks=False)


@pytest.fixture
def nobody() -> Iterator[Nobody]:
    """User 65534 with a folder of its own in /tmp, removed after the test; skips where the
    script cannot be run as another user."""
    if sys.platform != "linux" or os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("running as another user needs root and setpriv on Linux")
    python = next(
        (p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.path.exists(p)), None
    )
    as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    if python is None or subprocess.run([*as_nobody, python, "-c", "import sqlite3"]).returncode:
        pytest.skip("no Python outside /root that an unprivileged user can run")
    base = Path(tempfile.mkdtemp(prefix="dbbackup-nobody-", dir="/tmp"))
    try:
        base.chmod(0o755)
        yield Nobody(base, [*as_nobody, python])
    finally:
        shutil.rmtree(base)
