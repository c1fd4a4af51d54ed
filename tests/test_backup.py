"""The backup engine: a one-step online backup into a temporary file, verified, hashed, fsynced,
renamed; a bounded wait for a locked source; owner-only files; a run lock; errors that name the
file and the fix; and what a kill, a full disk or a busy writer leave behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    App,
    assert_no_traceback,
    integrity,
    make_config,
    make_db,
    mounted_tmpfs,
    read_invariant,
)

import database_backup_scheduler as dbs

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


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
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


def header_versions(path: Path) -> tuple[int, int]:
    """File format write/read versions (bytes 18 and 19): 1 rollback journal, 2 WAL."""
    with open(path, "rb") as handle:
        header = handle.read(20)
    return header[18], header[19]


def temp_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith(".dbbackup-"))


def only_backup(app: App, name: str = "pet_painting.db") -> Path:
    [backup] = app.backups(name)
    return backup


def row_count(path: Path) -> int:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    finally:
        conn.close()


# -- a backup is a complete, verified, self-contained copy -----------------------------


def test_backup_holds_the_same_data_as_the_source(app: App) -> None:
    result = app.run("--run")
    assert result.returncode == 0, result.stderr
    backup = only_backup(app)
    assert read_invariant(backup) == read_invariant(app.main_db)
    assert row_count(backup) == 200
    assert integrity(backup) == "ok"


def test_backup_of_a_wal_database_is_one_file_in_rollback_journal_mode(app: App) -> None:
    assert header_versions(app.main_db) == (2, 2)
    result = app.run("--run")
    assert result.returncode == 0, result.stderr
    backup = only_backup(app)
    assert header_versions(backup) == (1, 1)
    assert not Path(f"{backup}-wal").exists()
    assert not Path(f"{backup}-shm").exists()
    assert sorted(p.name for p in app.backup_dir.iterdir()) == [
        ".database_backup.lock",
        backup.name,
    ]


def test_backup_of_a_rollback_journal_database_is_in_rollback_journal_mode(
    app: App, tmp_path: Path
) -> None:
    source = make_db(tmp_path / "journal.db", rows=50, journal_mode="delete")
    result = app.run("--run", "--db", f"journal={source}")
    assert result.returncode == 0, result.stderr
    backup = only_backup(app, "journal")
    assert header_versions(backup) == (1, 1)
    assert read_invariant(backup) == read_invariant(source)


def test_backup_includes_commits_still_in_the_wal(app: App) -> None:
    conn = sqlite3.connect(app.main_db)
    try:
        conn.execute("PRAGMA wal_autocheckpoint=0")
        with conn:
            for i in range(50):
                conn.execute("INSERT INTO items(value, pad) VALUES (?, x'00')", (1000 + i,))
                conn.execute(
                    "UPDATE totals SET total = total + ?, count = count + 1 WHERE id = 1",
                    (1000 + i,),
                )
        assert Path(f"{app.main_db}-wal").stat().st_size > 0
        result = app.run("--run")  # while the app still has the database open
    finally:
        conn.close()
    assert result.returncode == 0, result.stderr
    backup = only_backup(app)
    assert row_count(backup) == 250
    total, count, summed, counted = read_invariant(backup)
    assert (total, count) == (summed, counted)


@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
def test_backup_leaves_out_a_transaction_not_yet_committed(
    app: App, tmp_path: Path, journal_mode: str
) -> None:
    source = make_db(tmp_path / "app.db", rows=200, journal_mode=journal_mode)
    writer = start_python(
        """
        import sqlite3, sys, time
        conn = sqlite3.connect(sys.argv[1], isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DELETE FROM items")
        print("ready", flush=True)
        time.sleep(60)
        """,
        str(source),
    )
    try:
        wait_ready(writer)
        result = app.run("--run", "--db", f"app={source}", "--busy-timeout", "5")
    finally:
        stop(writer)
    assert result.returncode == 0, result.stderr
    assert row_count(only_backup(app, "app")) == 200


def test_backup_does_not_change_a_rollback_journal_source(app: App, tmp_path: Path) -> None:
    source = make_db(tmp_path / "journal.db", rows=50, journal_mode="delete")
    before = source.read_bytes()
    assert app.run("--run", "--db", f"journal={source}").returncode == 0
    assert source.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("journal")) == [
        "journal.db"
    ]


def test_run_reports_the_size_and_sha256_of_the_file_it_made(app: App) -> None:
    report = dbs.run_backups(make_config(app.root))
    made = report.results[0]
    assert made.status == "ok"
    path = Path(made.backup)
    assert path == only_backup(app)
    assert made.size_bytes == path.stat().st_size
    assert made.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_backup_leaves_no_temporary_files(app: App) -> None:
    make_db(app.root_db, rows=10, journal_mode="delete")
    assert app.run("--run").returncode == 0
    assert temp_files(app.backup_dir) == []
    assert not any(
        p.name.endswith((".tmp", "-journal", "-wal", "-shm")) for p in app.backup_dir.iterdir()
    )


# -- owner-only files ------------------------------------------------------------------


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_backup_file_is_owner_only(app: App) -> None:
    assert app.run("--run").returncode == 0
    assert stat.S_IMODE(only_backup(app).stat().st_mode) == 0o600


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_backup_folder_the_tool_creates_is_owner_only(app: App, tmp_path: Path) -> None:
    folder = tmp_path / "new" / "nested" / "backups"
    result = app.run("--run", "--backup-dir", str(folder))
    assert result.returncode == 0, result.stderr
    for created in (folder, folder.parent, folder.parent.parent):
        assert stat.S_IMODE(created.stat().st_mode) == 0o700, created


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_default_backup_folder_the_tool_creates_is_owner_only(app: App) -> None:
    assert not app.backup_dir.exists()
    assert app.run("--run").returncode == 0
    assert stat.S_IMODE(app.backup_dir.stat().st_mode) == 0o700


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_backup_file_is_owner_only_under_a_permissive_umask(app: App) -> None:
    script = (
        "import os, runpy, sys; os.umask(0); sys.argv = ['x', '--run']; "
        f"runpy.run_path({str(app.script)!r}, run_name='__main__')"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=app.root, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(only_backup(app).stat().st_mode) == 0o600
    assert stat.S_IMODE(app.backup_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(app.log_file.stat().st_mode) == 0o600


# -- temporary files -------------------------------------------------------------------


def test_next_run_removes_stale_temporary_files_and_keeps_foreign_ones(app: App) -> None:
    app.backup_dir.mkdir(parents=True)
    stale = app.backup_dir / dbs.format_temp_name("pet_painting.db")
    stale.write_bytes(b"half a backup")
    stale_journal = Path(f"{stale}-journal")
    stale_journal.write_bytes(b"x")
    other_stale = app.backup_dir / dbs.format_temp_name("some_old_name.db")
    other_stale.write_bytes(b"x")
    foreign = app.backup_dir / "notes.txt"
    foreign.write_bytes(b"mine")
    lookalike = app.backup_dir / ".dbbackup-notes.txt"
    lookalike.write_bytes(b"mine too")
    link = app.backup_dir / dbs.format_temp_name("pet_painting.db")
    link.symlink_to(foreign)
    result = app.run("--run")
    assert result.returncode == 0, result.stderr
    assert not stale.exists()
    assert not stale_journal.exists()
    assert not other_stale.exists()
    assert foreign.read_bytes() == b"mine"
    assert lookalike.read_bytes() == b"mine too"
    assert link.is_symlink()
    assert len(app.backups("pet_painting.db")) == 1


def test_stale_temporary_folder_is_not_removed(app: App) -> None:
    app.backup_dir.mkdir(parents=True)
    folder = app.backup_dir / dbs.format_temp_name("pet_painting.db")
    folder.mkdir()
    (folder / "inside").write_bytes(b"x")
    assert app.run("--run").returncode == 0
    assert (folder / "inside").exists()


# -- a locked source -------------------------------------------------------------------


LOCK_EXCLUSIVELY = {
    # A rollback-journal database: an open EXCLUSIVE transaction keeps every reader out.
    "delete": """
        import sqlite3, sys, time
        conn = sqlite3.connect(sys.argv[1], isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("UPDATE totals SET total = total WHERE id = 1")
        print("ready", flush=True)
        time.sleep(60)
    """,
    # A WAL database keeps readers out only in exclusive locking mode.
    "wal": """
        import sqlite3, sys, time
        conn = sqlite3.connect(sys.argv[1], isolation_level=None)
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("UPDATE totals SET total = total WHERE id = 1")
        conn.execute("COMMIT")
        print("ready", flush=True)
        time.sleep(60)
    """,
}


@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
def test_backup_of_a_database_locked_by_another_process_fails_after_busy_timeout(
    app: App, tmp_path: Path, journal_mode: str
) -> None:
    source = make_db(tmp_path / "locked.db", rows=50, journal_mode=journal_mode)
    holder = start_python(LOCK_EXCLUSIVELY[journal_mode], str(source))
    try:
        wait_ready(holder)
        started = time.monotonic()
        result = app.run("--run", "--db", f"locked={source}", "--busy-timeout", "1")
        elapsed = time.monotonic() - started
    finally:
        stop(holder)
    assert result.returncode == 1
    assert_no_traceback(result)
    assert 0.9 <= elapsed < 10
    assert str(source) in result.stdout
    assert "locked" in result.stdout
    assert "--busy-timeout" in result.stdout
    assert app.backups("locked") == []
    assert temp_files(app.backup_dir) == []


def test_backup_of_a_wal_database_succeeds_while_a_writer_holds_a_transaction(app: App) -> None:
    holder = start_python(
        """
        import sqlite3, sys, time
        conn = sqlite3.connect(sys.argv[1], isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("UPDATE totals SET total = total + 1 WHERE id = 1")
        print("ready", flush=True)
        time.sleep(60)
        """,
        str(app.main_db),
    )
    try:
        wait_ready(holder)
        result = app.run("--run", "--busy-timeout", "1")
    finally:
        stop(holder)
    assert result.returncode == 0, result.stderr
    total, count, summed, counted = read_invariant(only_backup(app))
    assert (total, count) == (summed, counted)


# -- errors name the file and the fix --------------------------------------------------


def failed_run(app: App, *flags: str) -> str:
    result = app.run("--run", *flags)
    assert result.returncode == 1, result.stdout + result.stderr
    assert_no_traceback(result)
    assert "hint:" in result.stdout + result.stderr
    return result.stdout + result.stderr


def test_missing_database_fails_naming_the_file(app: App, tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "missing.db"
    output = failed_run(app, "--db", f"gone={missing}")
    assert str(missing) in output
    assert "does not exist" in output
    assert not missing.exists()  # never created by opening it


def test_folder_given_as_a_database_fails_naming_it(app: App, tmp_path: Path) -> None:
    folder = tmp_path / "a_folder.db"
    folder.mkdir()
    output = failed_run(app, "--db", f"dir={folder}")
    assert str(folder) in output
    assert "folder" in output


def test_non_sqlite_file_fails_naming_it(app: App, tmp_path: Path) -> None:
    text = tmp_path / "notes.db"
    text.write_bytes(b"just some text, not a database\n" * 200)
    output = failed_run(app, "--db", f"notes={text}")
    assert str(text) in output
    assert "not an SQLite database" in output
    assert app.backups("notes") == []
    assert text.read_bytes() == b"just some text, not a database\n" * 200


def test_corrupt_database_fails_verification_and_leaves_no_backup(app: App, tmp_path: Path) -> None:
    source = make_db(tmp_path / "corrupt.db", rows=2000, journal_mode="delete", payload=200)
    size = source.stat().st_size
    assert size > 100 * 4096
    with open(source, "r+b") as handle:
        handle.seek((size // 2 // 4096) * 4096)
        handle.write(b"\xa5" * 4096 * 3)
    output = failed_run(app, "--db", f"corrupt={source}")
    assert str(source) in output
    assert "damaged" in output or "verification" in output
    assert "integrity_check" in output
    assert app.backups("corrupt") == []
    assert temp_files(app.backup_dir) == []


def test_good_database_is_backed_up_when_another_fails(app: App, tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"garbage" * 1000)
    result = app.run("--run", "--db", f"bad={bad}", "--db", f"good={app.main_db}")
    assert result.returncode == 1
    assert_no_traceback(result)
    assert len(app.backups("good")) == 1
    assert app.backups("bad") == []
    assert integrity(only_backup(app, "good")) == "ok"


@pytest.mark.skipif(IS_ROOT, reason="root bypasses file permissions")
def test_unreadable_database_fails_naming_it(app: App, tmp_path: Path) -> None:
    source = make_db(tmp_path / "secret.db", rows=5, journal_mode="delete")
    os.chmod(source, 0)
    try:
        output = failed_run(app, "--db", f"secret={source}")
    finally:
        os.chmod(source, 0o600)
    assert str(source) in output


@pytest.mark.skipif(IS_ROOT, reason="root bypasses file permissions")
def test_unwritable_backup_folder_fails_naming_it(app: App, tmp_path: Path) -> None:
    folder = tmp_path / "readonly"
    folder.mkdir()
    os.chmod(folder, 0o500)
    try:
        result = app.run("--run", "--backup-dir", str(folder))
    finally:
        os.chmod(folder, 0o700)
    assert result.returncode == 1
    assert_no_traceback(result)
    assert "no permission" in result.stdout + result.stderr
    assert str(folder) in result.stdout + result.stderr


@pytest.fixture
def immutable_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder nobody, not even root, can create files in (chattr +i)."""
    folder = tmp_path / "immutable"
    folder.mkdir()
    if not shutil.which("chattr"):
        pytest.skip("chattr is not available")
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot make a folder immutable here: {done.stderr!r}")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_backup_folder_without_write_permission_fails_naming_it(
    app: App, immutable_dir: Path
) -> None:
    result = app.run("--run", "--backup-dir", str(immutable_dir))
    assert result.returncode == 1
    assert_no_traceback(result)
    output = result.stdout + result.stderr
    assert "no permission" in output
    assert str(immutable_dir) in output
    assert "hint:" in output


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB tmpfs mounted for the test (needs root and permission to mount)."""
    with mounted_tmpfs(tmp_path / "small_disk", "1m") as folder:
        yield folder


def test_full_disk_fails_with_a_clear_message_and_leaves_nothing_behind(
    app: App, tmp_path: Path, small_disk: Path
) -> None:
    source = make_db(tmp_path / "big.db", rows=3000, payload=1000, journal_mode="delete")
    assert source.stat().st_size > 2 * 1024 * 1024
    backups = small_disk / "backups"
    result = app.run("--run", "--db", f"big={source}", "--backup-dir", str(backups))
    assert result.returncode == 1
    assert_no_traceback(result)
    output = result.stdout + result.stderr
    assert "full" in output
    assert str(backups) in output
    assert "free space" in output
    assert app.backups("big") == []
    assert not [p for p in backups.iterdir() if p.name.endswith(".bak")]
    assert temp_files(backups) == []


def test_full_disk_for_one_database_does_not_prune_its_backups(
    app: App, tmp_path: Path, small_disk: Path
) -> None:
    backups = small_disk / "backups"
    tiny = make_db(tmp_path / "tiny.db", rows=1, payload=1, journal_mode="delete")
    old = backups / "big.20200101_000000.bak"
    backups.mkdir()
    shutil.copyfile(tiny, old)
    source = make_db(tmp_path / "big.db", rows=3000, payload=1000, journal_mode="delete")
    result = app.run(
        "--run", "--db", f"big={source}", "--backup-dir", str(backups), "--keep-days", "0",
        "--keep-last", "1",
    )  # fmt: skip
    assert result.returncode == 1
    assert old.exists()


# -- the run lock ----------------------------------------------------------------------

HOLD_LOCK = """
    import fcntl, os, sys, time
    os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True)
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("ready", flush=True)
    time.sleep(float(sys.argv[2]))
"""


@pytest.mark.skipif(os.name != "posix", reason="fcntl.flock")
def test_run_while_another_holds_the_lock_exits_75_after_lock_timeout(app: App) -> None:
    holder = start_python(HOLD_LOCK, str(app.backup_dir / ".database_backup.lock"), "60")
    try:
        wait_ready(holder)
        started = time.monotonic()
        result = app.run("--run", "--lock-timeout", "1")
        elapsed = time.monotonic() - started
    finally:
        stop(holder)
    assert result.returncode == 75
    assert_no_traceback(result)
    assert "another run holds the lock" in result.stderr
    assert 0.9 <= elapsed < 10
    assert app.backups() == []


@pytest.mark.skipif(os.name != "posix", reason="fcntl.flock")
def test_run_waits_for_a_lock_released_within_lock_timeout(app: App) -> None:
    holder = start_python(HOLD_LOCK, str(app.backup_dir / ".database_backup.lock"), "1")
    try:
        wait_ready(holder)
        result = app.run("--run", "--lock-timeout", "20")
    finally:
        stop(holder)
    assert result.returncode == 0, result.stderr
    assert "another run holds the lock" in result.stderr
    assert len(app.backups("pet_painting.db")) == 1


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_lock_of_a_killed_run_does_not_block_the_next_run(app: App) -> None:
    holder = start_python(HOLD_LOCK, str(app.backup_dir / ".database_backup.lock"), "60")
    wait_ready(holder)
    os.kill(holder.pid, signal.SIGKILL)
    stop(holder)
    started = time.monotonic()
    result = app.run("--run", "--lock-timeout", "5")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 5
    assert len(app.backups("pet_painting.db")) == 1


def test_two_runs_at_once_both_succeed_one_after_the_other(app: App) -> None:
    runs = [app.popen("--run", "--lock-timeout", "60") for _ in range(2)]
    outputs = [proc.communicate(timeout=60) for proc in runs]
    assert [proc.returncode for proc in runs] == [0, 0], outputs
    backups = app.backups("pet_painting.db")
    assert len(backups) == 2
    assert all(integrity(b) == "ok" for b in backups)
    log = json.loads(app.log_file.read_text(encoding="utf-8"))
    assert len(log["runs"]) == 2


# -- a kill in the middle, and a busy writer -------------------------------------------


def make_big_db(path: Path, megabytes: int) -> Path:
    """A database of about ``megabytes`` MB, made fast: one row per MB of random bytes."""
    make_db(path, rows=10, journal_mode="delete")
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        with conn:
            conn.execute(
                "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?) "
                "INSERT INTO items(value, pad) SELECT 0, randomblob(1000000) FROM n",
                (megabytes,),
            )
    finally:
        conn.close()
    return path


@pytest.fixture(scope="module")
def big_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 160 MB database, deleted afterwards (pytest keeps the last few tmp folders)."""
    source = make_big_db(tmp_path_factory.mktemp("big") / "big.db", megabytes=160)
    yield source
    source.unlink()


@pytest.fixture
def big_app(app: App) -> Iterator[App]:
    """The app, with its big backups deleted afterwards."""
    yield app
    if app.backup_dir.exists():
        for path in app.backup_dir.iterdir():
            if path.name.startswith(("big.", ".dbbackup-big.")):
                path.unlink()


def wait_for_temp_file(app: App, proc: subprocess.Popen[str]) -> None:
    """Poll until the run has created its temporary file (the copy is under way)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if app.backup_dir.exists() and temp_files(app.backup_dir):
            return
        time.sleep(0.001)
    raise AssertionError("the backup ended (or never started) before it could be interrupted")


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_kill_during_a_backup_leaves_no_partial_backup_and_the_next_run_recovers(
    big_app: App, big_db: Path
) -> None:
    app, source = big_app, big_db
    proc = app.popen("--run", "--db", f"big={source}")
    try:
        wait_for_temp_file(app, proc)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        stop(proc)
    left = temp_files(app.backup_dir)
    assert left, "the kill should have interrupted the copy"
    for path in app.backup_dir.iterdir():
        assert dbs.parse_backup_name(path.name) is None, f"{path.name} appeared after the kill"

    result = app.run("--run", "--db", f"big={source}")
    assert result.returncode == 0, result.stderr
    assert temp_files(app.backup_dir) == []
    backup = only_backup(app, "big")
    assert backup.stat().st_size == source.stat().st_size
    assert read_invariant(backup) == read_invariant(source)


@pytest.mark.skipif(os.name != "posix", reason="SIGINT to a process")
def test_interrupt_during_a_backup_cleans_up_and_leaves_no_backup(
    big_app: App, big_db: Path
) -> None:
    app = big_app
    proc = app.popen("--run", "--db", f"big={big_db}")
    try:
        wait_for_temp_file(app, proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        stop(proc)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err
    assert "interrupted" in err
    assert sorted(p.name for p in app.backup_dir.iterdir()) == [".database_backup.lock"]


WRITER = """
    import os, sqlite3, sys, time
    path, stop_file = sys.argv[1], sys.argv[2]
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    commits = 0
    print("ready", flush=True)
    while not os.path.exists(stop_file):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE items SET value = value + 1 WHERE id = ?", (commits % 500 + 1,))
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


@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
def test_backups_taken_while_another_process_writes_are_consistent(
    app: App, tmp_path: Path, journal_mode: str
) -> None:
    source = make_db(tmp_path / "busy.db", rows=2000, journal_mode=journal_mode)
    stop_file = tmp_path / "stop"
    writer = start_python(WRITER, str(source), str(stop_file))
    try:
        wait_ready(writer)
        time.sleep(0.1)
        results = [app.run("--run", "--db", f"busy={source}") for _ in range(4)]
        stop_file.touch()
        out, err = writer.communicate(timeout=60)
    finally:
        stop(writer)
    assert writer.returncode == 0, err
    assert int(out.strip()) > 20, "the writer should have kept writing during the backups"
    assert [r.returncode for r in results] == [0, 0, 0, 0], [r.stdout for r in results]
    backups = app.backups("busy")
    assert len(backups) == 4
    counts = set()
    for backup in backups:
        total, count, summed, counted = read_invariant(backup)
        assert (total, count) == (summed, counted), backup.name
        assert integrity(backup) == "ok"
        assert header_versions(backup) == (1, 1)
        counts.add(count)
    assert len(counts) > 1, "the backups should show the writer's progress"
    total, count, summed, counted = read_invariant(source)
    assert (total, count) == (summed, counted)


def test_run_backups_reports_each_database_in_order(app: App) -> None:
    make_db(app.root_db, rows=3)
    report = dbs.run_backups(make_config(app.root))
    assert [(r.database, r.status) for r in report.results] == [
        ("pet_painting.db", "ok"),
        ("root_pet_painting.db", "ok"),
    ]
    assert not report.failed


def test_a_surprise_in_one_database_fails_only_that_one_and_the_run_is_logged(app: App) -> None:
    # A path component longer than any file system allows: stat() itself fails (ENAMETOOLONG).
    too_long = app.root / ("x" * 300 + ".db")
    result = app.run("--run", "--db", f"main={app.main_db}", "--db", f"long={too_long}")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert len(app.backups("main")) == 1, "the other database is still backed up"
    run = json.loads(app.log_file.read_text(encoding="utf-8"))["runs"][-1]
    statuses = {r["database"]: r["status"] for r in run["results"]}
    assert statuses == {"main": "ok", "long": "failed"}
    assert str(too_long)[:40] in next(r["error"] for r in run["results"] if r["database"] == "long")
