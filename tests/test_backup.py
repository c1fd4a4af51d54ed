"""The backup engine: a copy into a temporary file, verified, hashed, fsynced, renamed; a bounded
wait for a locked source; owner-only files; a run lock; errors that name the file and the fix;
and what a kill, a full disk or a busy writer leave behind. The copy reads the database's files
under a read transaction (the WAL laid over the file, a self-contained header, the lock-byte
page left zero), or goes through SQLite's one-step online backup where it cannot.
"""

from __future__ import annotations

import contextlib
import datetime
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
    HOLD_LOCK,
    WRITER,
    App,
    assert_no_traceback,
    dump,
    integrity,
    make_config,
    make_db,
    mounted_tmpfs,
    read_invariant,
    start_python,
    stop,
    wait_ready,
)

import database_backup_scheduler as dbs

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


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


# -- the sealed copy: the one pipeline behind backups, safety copies and restores ------


def test_sealed_copy_is_checked_hashed_and_gone_when_its_block_ends(tmp_path: Path) -> None:
    source = make_db(tmp_path / "app.db", rows=300, journal_mode="wal")
    folder = tmp_path / "sealed"
    folder.mkdir()
    with dbs.sealed_copy(source, folder, name="app.db") as copy:
        assert copy.path.parent == folder
        assert integrity(copy.path) == "ok"
        assert (copy.size, copy.sha256) == (copy.path.stat().st_size, sha256_of(copy.path))
        assert read_invariant(copy.path) == read_invariant(source)
    assert list(folder.iterdir()) == []


def test_sealed_copy_is_removed_when_the_code_using_it_fails(tmp_path: Path) -> None:
    source = make_db(tmp_path / "app.db", rows=50)
    folder = tmp_path / "sealed"
    folder.mkdir()
    with pytest.raises(RuntimeError, match="publishing failed"):
        with dbs.sealed_copy(source, folder, name="app.db") as copy:
            assert copy.path.exists()
            raise RuntimeError("publishing failed")
    assert list(folder.iterdir()) == []


def test_sealed_copy_of_a_file_that_is_not_a_database_names_it_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    source = tmp_path / "notes.db"
    source.write_bytes(b"these are notes, not a database" * 200)
    folder = tmp_path / "sealed"
    folder.mkdir()
    with pytest.raises(dbs.BackupError) as caught:
        with dbs.sealed_copy(source, folder, name="notes.db"):
            pytest.fail("a copy of a file that is not a database was sealed")
    assert str(source) in caught.value.message
    assert caught.value.hint
    assert list(folder.iterdir()) == []


def test_sealed_copy_of_a_damaged_database_fails_verification_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    source = make_db(tmp_path / "app.db", rows=2000, journal_mode="delete")
    page_size = int.from_bytes(source.read_bytes()[16:18], "big")
    with open(source, "r+b") as handle:  # page 2, a b-tree page of the items table
        handle.seek(page_size)
        handle.write(b"\xa5" * page_size)
    folder = tmp_path / "sealed"
    folder.mkdir()
    with pytest.raises(dbs.VerificationFailed) as caught:
        with dbs.sealed_copy(source, folder, name="app.db"):
            pytest.fail("a copy of a damaged database was sealed")
    assert str(source) in caught.value.message
    assert "integrity_check" in (caught.value.hint or "")
    assert list(folder.iterdir()) == []


def test_sealed_copy_through_a_connection_the_caller_holds_uses_the_backup_api(
    tmp_path: Path,
) -> None:
    source = make_db(tmp_path / "app.db", rows=300, journal_mode="wal")
    folder = tmp_path / "sealed"
    folder.mkdir()
    held = sqlite3.connect(dbs.sqlite_uri(source, "ro"), uri=True, isolation_level=None)
    try:
        with dbs.sealed_copy(source, folder, name="app.db", connection=held) as copy:
            assert copy.method == "backup API"
            assert copy.sha256 == sha256_of(copy.path)
            assert read_invariant(copy.path) == read_invariant(source)
    finally:
        held.close()
    assert list(folder.iterdir()) == []


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
        result = app.run("--run", "--db", f"locked={source}", "--busy-timeout", "1.5")
        elapsed = time.monotonic() - started
    finally:
        stop(holder)
    assert result.returncode == 1
    assert_no_traceback(result)
    # Waited once: a fallback to the backup API must not wait a second time.
    assert 1.4 <= elapsed < 2.9
    assert f"{source} stayed locked for 1.5 s" in result.stdout
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
    holder = start_python(HOLD_LOCK, str(app.backup_dir / ".database_backup.lock"), "60")
    try:
        wait_ready(holder)
        run = app.popen("--run", "--lock-timeout", "20")
        assert run.stderr is not None
        waiting = ""  # what the run said up to its wait for the lock
        while "another run holds the lock" not in waiting and run.poll() is None:
            waiting += run.stderr.readline()
    finally:
        stop(holder)  # the lock is let go while the run waits for it
    _, err = run.communicate(timeout=120)
    assert run.returncode == 0, waiting + err
    assert "another run holds the lock" in waiting
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


# -- the direct copy of the database's files -------------------------------------------

# Runs each statement given after the path with checkpoints off, says "ready", and keeps the
# database open (so that no checkpoint moves the WAL into the file) until it is stopped.
HOLD_OPEN_AFTER = """
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("PRAGMA wal_autocheckpoint=0")
    for statement in sys.argv[2:]:
        conn.execute(statement)
    print("ready", flush=True)
    time.sleep(120)
"""

# One transaction that keeps make_db's invariant: a new row, and an old row (on one of the
# first pages, so that the WAL holds many frames of the same page) changed again.
GROW_AND_REWRITE = [
    "BEGIN",
    "INSERT INTO items(value, pad) VALUES (7, randomblob(500))",
    "UPDATE items SET value = value + 1 WHERE id = 5",
    "UPDATE totals SET total = total + 8, count = count + 1 WHERE id = 1",
    "COMMIT",
]


@contextlib.contextmanager
def held_open_after(db: Path, *statements: str) -> Iterator[subprocess.Popen[str]]:
    """Another process runs ``statements`` on ``db`` and keeps it open for the block."""
    holder = start_python(HOLD_OPEN_AFTER, str(db), *statements)
    try:
        wait_ready(holder)
        yield holder
    finally:
        stop(holder)


@contextlib.contextmanager
def sealed(source: Path, folder: Path) -> Iterator[dbs.SealedCopy]:
    """The sealed copy of a live ``source``, as a backup makes it, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    with dbs.sealed_copy(source, folder, name=source.name) as copy:
        yield copy


def back_up_in_process(source: Path, folder: Path, name: str = "app") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    made = dbs.create_backup(
        dbs.DatabaseSpec(name, source), folder, taken_at=datetime.datetime(2024, 1, 2, 3, 4, 5)
    )
    return made.path


def database_header(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(100)


def page_size_of(header: bytes) -> int:
    size = int.from_bytes(header[16:18], "big")
    return 65536 if size == 1 else size


def wal_size(db: Path) -> int:
    wal = Path(f"{db}-wal")
    return wal.stat().st_size if wal.exists() else 0


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# Asks from another process whether a write transaction can start now (it must not while
# the app holds one).
CAN_WRITE = """
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        print("free")
    except sqlite3.OperationalError as exc:
        print(exc)
"""


@pytest.mark.skipif(os.name != "posix", reason="POSIX locks drop when any descriptor closes")
@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
def test_backup_in_a_process_that_holds_the_database_keeps_its_write_lock(
    tmp_path: Path, journal_mode: str
) -> None:
    # An app that imports the module and backs up while its own connection writes.
    source = make_db(tmp_path / "app.db", rows=50, journal_mode=journal_mode)
    app_conn = sqlite3.connect(source, isolation_level=None)
    try:
        app_conn.execute("BEGIN IMMEDIATE")
        app_conn.execute("INSERT INTO items(value, pad) VALUES (1, x'00')")
        for _ in range(2):  # the second run closes what the first had to keep open
            back_up_in_process(tmp_path / "app.db", tmp_path / "backups")
            probe = subprocess.run(
                [sys.executable, "-c", textwrap.dedent(CAN_WRITE), str(source)],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            assert probe.stdout.strip() == "database is locked", probe.stdout + probe.stderr
    finally:
        app_conn.execute("ROLLBACK")
        app_conn.close()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_backup_handles_kept_open_for_another_connection_are_closed_once_it_is_gone(
    tmp_path: Path,
) -> None:
    source = make_db(tmp_path / "app.db", rows=50, journal_mode="wal")

    def open_on_source() -> int:
        found = 0
        for name in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                found += os.readlink(f"/proc/self/fd/{name}").startswith(str(source))
        return found

    app_conn = sqlite3.connect(source)
    app_conn.execute("SELECT COUNT(*) FROM items").fetchall()
    back_up_in_process(source, tmp_path / "backups")
    app_conn.close()
    assert open_on_source() > 0, "the backup should have kept its handles for the app's sake"
    back_up_in_process(source, tmp_path / "backups")
    assert open_on_source() == 0


def test_backup_of_a_wal_database_holds_every_commit_still_in_the_wal(app: App) -> None:
    source = app.main_db
    pages_in_file = source.stat().st_size // page_size_of(database_header(source))
    with held_open_after(source, *GROW_AND_REWRITE * 200):
        assert wal_size(source) > 0
        expected = read_invariant(source)
        result = app.run("--run")
    assert result.returncode == 0, result.stdout + result.stderr
    backup = only_backup(app)
    assert expected[3] == 400
    assert read_invariant(backup) == expected
    assert backup.stat().st_size // page_size_of(database_header(backup)) > pages_in_file


def test_direct_copy_of_a_wal_database_passes_integrity_check(app: App) -> None:
    with held_open_after(app.main_db, *GROW_AND_REWRITE * 200):
        assert app.run("--run").returncode == 0
    assert integrity(only_backup(app)) == "ok"


def test_direct_copy_of_a_wal_database_has_a_self_contained_rollback_journal_header(
    app: App,
) -> None:
    with held_open_after(app.main_db, *GROW_AND_REWRITE * 200):
        assert app.run("--run").returncode == 0
    backup = only_backup(app)
    header = database_header(backup)
    size, page_size = backup.stat().st_size, page_size_of(header)
    assert (header[18], header[19]) == (1, 1)
    assert size % page_size == 0
    assert int.from_bytes(header[28:32], "big") == size // page_size
    assert header[92:96] == header[24:28]
    assert not Path(f"{backup}-wal").exists()
    assert not Path(f"{backup}-shm").exists()


def test_direct_copy_of_a_legacy_header_gets_a_page_count_that_sqlite_trusts(
    app: App, tmp_path: Path
) -> None:
    source = make_db(tmp_path / "legacy.db", rows=300, journal_mode="delete")
    # As SQLite before 3.7.0 left it: an in-header size out of date, and a version-valid-for
    # number that does not match the change counter (so SQLite goes by the file's size).
    with open(source, "r+b") as handle:
        handle.seek(28)
        handle.write((3).to_bytes(4, "big"))
        handle.seek(92)
        handle.write(b"\x00\x00\x00\x00")
    expected = read_invariant(source)
    backup = back_up_in_process(source, tmp_path / "backups")
    header = database_header(backup)
    assert int.from_bytes(header[28:32], "big") == source.stat().st_size // page_size_of(header)
    assert header[92:96] == header[24:28]
    assert read_invariant(backup) == expected


# Reshapes a WAL database with checkpoints off: deletes (freed pages), a VACUUM (the
# database shrinks in the WAL while its file stays as long), an index, more rows.
RESHAPE = [
    "BEGIN",
    "DELETE FROM items WHERE id % 3 = 0",
    "UPDATE totals SET total = (SELECT SUM(value) FROM items), "
    "count = (SELECT COUNT(*) FROM items) WHERE id = 1",
    "COMMIT",
    "VACUUM",
    "CREATE INDEX items_value ON items(value)",
    *GROW_AND_REWRITE * 50,
    "DELETE FROM items WHERE id BETWEEN 10 AND 20 AND id % 3 = 0",
]


def test_direct_copy_has_the_same_content_as_sqlites_backup_api(tmp_path: Path) -> None:
    source = make_db(tmp_path / "app.db", rows=2000, journal_mode="wal")
    api_copy = tmp_path / "api.db"
    with held_open_after(source, *RESHAPE):
        assert wal_size(source) > 0
        backup = back_up_in_process(source, tmp_path / "backups")
        src = sqlite3.connect(dbs.sqlite_uri(source, "ro"), uri=True)
        dst = sqlite3.connect(api_copy)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
        file_size = source.stat().st_size
    assert dump(backup, immutable=True) == dump(api_copy, immutable=True)
    assert backup.stat().st_size == api_copy.stat().st_size
    assert backup.stat().st_size < file_size, "the VACUUM in the WAL should have shrunk it"


@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
def test_direct_copy_runs_for_an_ordinary_database_and_hashes_what_it_wrote(
    tmp_path: Path, journal_mode: str
) -> None:
    source = make_db(tmp_path / "app.db", rows=500, journal_mode=journal_mode)
    with contextlib.ExitStack() as stack:
        if journal_mode == "wal":
            stack.enter_context(held_open_after(source, *GROW_AND_REWRITE * 50))
            assert wal_size(source) > 0
        expected = read_invariant(source)
        with sealed(source, tmp_path / "sealed") as copy:
            assert copy.method == "direct", "the copy fell back to SQLite's backup API"
            assert copy.sha256 == sha256_of(copy.path)
            assert copy.size == copy.path.stat().st_size > 0
            assert read_invariant(copy.path) == expected


def test_direct_copy_of_a_rollback_journal_database_is_its_file_byte_for_byte(
    tmp_path: Path,
) -> None:
    source = make_db(tmp_path / "app.db", rows=500, journal_mode="delete")
    with sealed(source, tmp_path / "sealed") as copy:
        assert copy.method == "direct"
        assert copy.path.read_bytes() == source.read_bytes()


# SQLite keeps a database's -wal and -shm beside its real path (sqlite_uri resolves it), and
# so must the direct copy.


@pytest.mark.skipif(os.name != "posix", reason="symbolic links")
def test_direct_copy_runs_for_a_wal_database_reached_through_a_symlink(tmp_path: Path) -> None:
    real = make_db(tmp_path / "data" / "app.db", rows=500, journal_mode="wal")
    link = tmp_path / "instance" / "app.db"
    link.parent.mkdir()
    link.symlink_to(real)
    with held_open_after(real, *GROW_AND_REWRITE * 50):
        assert wal_size(real) > 0
        expected = read_invariant(real)
        with sealed(link, tmp_path / "sealed") as copy:
            assert copy.method == "direct", "the copy fell back to SQLite's backup API"
            assert read_invariant(copy.path) == expected


@pytest.mark.skipif(os.name != "posix", reason="symbolic links")
def test_backup_through_a_symlink_ignores_old_wal_files_beside_the_link(
    app: App, tmp_path: Path
) -> None:
    real = make_db(tmp_path / "data" / "app.db", rows=200, journal_mode="wal")
    link = tmp_path / "instance" / "app.db"
    link.parent.mkdir()
    # The database used to live where the link is now; the -wal and -shm of a session
    # that rewrote every page (a VACUUM) stayed there.
    with held_open_after(real, "VACUUM"):
        for suffix in ("-wal", "-shm"):
            shutil.copyfile(f"{real}{suffix}", f"{link}{suffix}")
    conn = sqlite3.connect(real)
    with conn:
        conn.execute("UPDATE items SET value = value + 1000")
        conn.execute("UPDATE totals SET total = (SELECT SUM(value) FROM items) WHERE id = 1")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    link.symlink_to(real)
    expected = read_invariant(real)
    result = app.run("--run", "--db", f"app={link}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert read_invariant(only_backup(app, "app")) == expected


def test_direct_copy_declines_an_empty_database_file(tmp_path: Path) -> None:
    source = tmp_path / "empty.db"
    source.write_bytes(b"")
    with sealed(source, tmp_path / "sealed") as copy:
        assert copy.method == "backup API"
        assert integrity(copy.path) == "ok"


def test_backup_of_an_empty_database_file_is_a_valid_empty_database(
    app: App, tmp_path: Path
) -> None:
    source = tmp_path / "empty.db"
    source.write_bytes(b"")
    result = app.run("--run", "--db", f"empty={source}")
    assert result.returncode == 0, result.stdout + result.stderr
    backup = only_backup(app, "empty")
    assert integrity(backup) == "ok"
    assert dump(backup, immutable=True) == ["BEGIN TRANSACTION;", "COMMIT;"]


@pytest.fixture(scope="module")
def long_wal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A WAL database whose WAL holds more frames than the direct copy maps, kept open."""
    source = tmp_path_factory.mktemp("long_wal") / "long.db"
    conn = sqlite3.connect(source)
    conn.execute("PRAGMA page_size=512")  # small frames: a WAL of ~55 MB
    conn.execute("PRAGMA journal_mode=wal")
    conn.close()
    make_db(source, rows=10, journal_mode="wal")
    rows = dbs.WAL_MAP_MAX_FRAMES + 2000
    with held_open_after(
        source,
        "BEGIN",
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < "
        f"{rows}) INSERT INTO items(value, pad) SELECT x, randomblob(400) FROM n",
        "UPDATE totals SET total = (SELECT SUM(value) FROM items), "
        "count = (SELECT COUNT(*) FROM items) WHERE id = 1",
        "COMMIT",
    ):
        frames = (wal_size(source) - 32) // (512 + 24)
        assert frames > dbs.WAL_MAP_MAX_FRAMES
        yield source
    for leftover in source.parent.iterdir():
        leftover.unlink()


def test_direct_copy_declines_a_wal_longer_than_its_page_map(
    long_wal: Path, tmp_path: Path
) -> None:
    expected = read_invariant(long_wal)
    with sealed(long_wal, tmp_path / "sealed") as copy:
        assert copy.method == "backup API"
        assert read_invariant(copy.path) == expected


# The next two tests reach past sealed_copy to the pieces under it: each needs a moment no
# public call can produce on demand (a writer starting the WAL over between two pages of the
# copy; a file system whose second handle misses the first one's writes).


def test_direct_copy_starts_again_when_the_wal_starts_over_during_it(tmp_path: Path) -> None:
    # Every frame checkpointed: the copy's reader takes no WAL read mark, so a writer may
    # start the WAL over (new salts) and overwrite the frames the copy reads from.
    source = make_db(tmp_path / "app.db", rows=2000, journal_mode="wal")
    app_conn = sqlite3.connect(source, isolation_level=None)
    temp = tmp_path / "copy.db"
    temp.touch()
    try:
        for statement in GROW_AND_REWRITE * 50:
            app_conn.execute(statement)
        app_conn.execute("PRAGMA wal_checkpoint(FULL)")
        salts = Path(f"{source}-wal").read_bytes()[16:24]
        writes: list[int] = []

        def write_once(written: int) -> None:
            if not writes:
                writes.append(written)
                for statement in GROW_AND_REWRITE:
                    app_conn.execute(statement)

        src = sqlite3.connect(dbs.sqlite_uri(source, "rw"), uri=True, isolation_level=None)
        files = dbs._SourceFiles(source)
        try:
            with open(temp, "r+b", buffering=0) as out:
                first = dbs._copy_in_read_transaction(src, files, out, write_once)
            assert Path(f"{source}-wal").read_bytes()[16:24] != salts  # it did start over
            with open(temp, "r+b", buffering=0) as out:
                out.truncate(0)
                second = dbs._copy_in_read_transaction(src, files, out, lambda written: None)
        finally:
            src.close()
            files.close()
        expected = read_invariant(source)
    finally:
        app_conn.close()
    assert (first, second) == (False, True)
    assert integrity(temp) == "ok"
    assert read_invariant(temp) == expected
    assert expected[3] == 2000 + 51


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd (Linux)")
def test_hash_behind_the_copy_reads_afresh_when_its_handle_missed_the_writes(
    tmp_path: Path,
) -> None:
    # Some file systems (fusefat) do not show a handle opened on the empty file what another
    # handle wrote after: the digest must then come from a fresh read of the whole file.
    temp = tmp_path / "copy.tmp"
    temp.touch()
    hashing = dbs._TrailingHash(temp)
    deadline = time.monotonic() + 10
    while not any(
        os.path.realpath(f"/proc/self/fd/{fd}") == str(temp.resolve())
        for fd in os.listdir("/proc/self/fd")
    ):
        assert time.monotonic() < deadline, "the hash thread never opened the file"
        time.sleep(0.001)
    written = tmp_path / "written"
    written.write_bytes(os.urandom(3 * dbs.HASH_CHUNK_BYTES + 5))
    os.replace(written, temp)  # the thread's handle still shows the old, empty file

    hashing.advance(temp.stat().st_size)
    hashing.finish()

    assert hashing.result() == sha256_of(temp)


def test_backup_of_a_wal_longer_than_the_page_map_holds_every_commit(
    long_wal: Path, tmp_path: Path
) -> None:
    expected = read_invariant(long_wal)
    backup = back_up_in_process(long_wal, tmp_path / "backups")
    assert read_invariant(backup) == expected
    assert expected[3] == dbs.WAL_MAP_MAX_FRAMES + 2010
    assert integrity(backup) == "ok"
    assert header_versions(backup) == (1, 1)


# Commits make_db-invariant transactions with a checkpoint every 10 pages, until the stop
# file appears or the time is up; prints how many it made. Each changes a row anywhere in
# the table, so that most of the pages it writes are in no WAL frame a copy has mapped.
CHECKPOINTING_WRITER = """
    import os, random, sqlite3, sys, time
    path, stop_file, deadline = sys.argv[1], sys.argv[2], time.monotonic() + float(sys.argv[3])
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("PRAGMA wal_autocheckpoint=10")
    (rows,) = conn.execute("SELECT COUNT(*) FROM items").fetchone()
    commits = 0
    print("ready", flush=True)
    while not os.path.exists(stop_file) and time.monotonic() < deadline:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE items SET value = value + 1 WHERE id = ?", (random.randint(1, rows),))
        conn.execute("INSERT INTO items(value, pad) VALUES (?, randomblob(300))", (commits,))
        conn.execute(
            "UPDATE totals SET total = total + 1 + ?, count = count + 1 WHERE id = 1", (commits,)
        )
        conn.execute("COMMIT")
        commits += 1
        time.sleep(0.001)
    print(commits, flush=True)
"""

# Starts the WAL over and over (RESTART and TRUNCATE checkpoints) until the stop file
# appears or the time is up; prints how many checkpoints completed.
CHECKPOINTER = """
    import os, sqlite3, sys, time
    path, stop_file, deadline = sys.argv[1], sys.argv[2], time.monotonic() + float(sys.argv[3])
    conn = sqlite3.connect(path, timeout=5, isolation_level=None)
    completed = attempts = 0
    print("ready", flush=True)
    while not os.path.exists(stop_file) and time.monotonic() < deadline:
        mode = ("RESTART", "TRUNCATE")[attempts % 2]
        busy, _, _ = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        completed += not busy
        attempts += 1
        time.sleep(0.002)
    print(completed, flush=True)
"""


@contextlib.contextmanager
def checkpointed_load(source: Path, stop_file: Path) -> Iterator[dict[str, int]]:
    """A writer and a checkpointer at work on ``source`` for the block; then their counts."""
    counts: dict[str, int] = {}
    procs = {
        "commits": start_python(CHECKPOINTING_WRITER, str(source), str(stop_file), "90"),
        "checkpoints": start_python(CHECKPOINTER, str(source), str(stop_file), "90"),
    }
    try:
        for proc in procs.values():
            wait_ready(proc)
        time.sleep(0.2)
        yield counts
        stop_file.touch()
        for what, proc in procs.items():
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            counts[what] = int(out.split()[-1])
    finally:
        for proc in procs.values():
            stop(proc)


def assert_consistent_copy(path: Path) -> int:
    """A copy that passes integrity_check and make_db's invariant; returns its row count."""
    assert integrity(path) == "ok", path.name
    total, count, summed, counted = read_invariant(path)
    assert (total, count) == (summed, counted), path.name
    return count


def test_backups_taken_while_checkpoints_start_the_wal_over_are_consistent(
    app: App, tmp_path: Path
) -> None:
    source = make_db(tmp_path / "busy.db", rows=20000, payload=1000, journal_mode="wal")
    with checkpointed_load(source, tmp_path / "stop") as counts:
        results = [app.run("--run", "--db", f"busy={source}") for _ in range(15)]
    assert [r.returncode for r in results] == [0] * 15, [r.stdout + r.stderr for r in results]
    backups = app.backups("busy")
    assert len(backups) == 15
    row_counts = {assert_consistent_copy(backup) for backup in backups}
    assert len(row_counts) > 1, "the backups should show the writer's progress"
    assert counts["commits"] > 100
    assert counts["checkpoints"] > 10
    assert_consistent_copy(source)


def test_direct_copies_taken_while_checkpoints_start_the_wal_over_are_consistent(
    tmp_path: Path,
) -> None:
    source = make_db(tmp_path / "busy.db", rows=20000, payload=1000, journal_mode="wal")
    copies = tmp_path / "copies"
    copies.mkdir()
    direct = 0
    with checkpointed_load(source, tmp_path / "stop") as counts:
        for attempt in range(60):
            with sealed(source, tmp_path / "sealed") as copy:
                if copy.method != "direct":
                    continue
                direct += 1
                assert copy.sha256 == sha256_of(copy.path)
                os.link(copy.path, copies / f"{attempt}.db")  # kept past the block
    for temp in sorted(copies.iterdir()):
        assert header_versions(temp) == (1, 1)
        assert_consistent_copy(temp)
    assert direct >= 45, f"only {direct} of 60 copies took the direct path"
    assert counts["checkpoints"] > 10


@pytest.mark.slow  # writes a 1.1 GB database and its backup
def test_lock_byte_page_of_a_database_over_1_gib_is_copied_as_zeros(
    app: App, tmp_path: Path
) -> None:
    if shutil.disk_usage(tmp_path).free < 4 * 1024**3:
        pytest.skip("a database over 1 GiB and its backup need 4 GB of free disk space")
    page_size = 65536
    lock_page = 2**30 // page_size + 1
    source = tmp_path / "huge.db"
    try:
        conn = sqlite3.connect(source, isolation_level=None)
        conn.execute(f"PRAGMA page_size={page_size}")
        conn.execute("PRAGMA journal_mode=OFF")  # fast to make; set back below
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("CREATE TABLE filler(data BLOB)")
        conn.execute("BEGIN")
        for _ in range(11):
            conn.execute("INSERT INTO filler VALUES (zeroblob(100000000))")
        conn.execute("COMMIT")
        conn.execute("CREATE TABLE beyond(id INTEGER PRIMARY KEY, data BLOB)")
        conn.execute("INSERT INTO beyond VALUES (1, randomblob(5000))")
        (root,) = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'beyond'"
        ).fetchone()
        (row,) = conn.execute("SELECT data FROM beyond").fetchone()
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.close()
        assert root > lock_page, "the row should live after the lock-byte page"
        # SQLite never reads or writes the lock-byte page: what is in it is no data.
        with open(source, "r+b") as handle:
            handle.seek(2**30)
            handle.write(b"\xa5" * page_size)

        result = app.run("--run", "--db", f"huge={source}")
        assert result.returncode == 0, result.stdout + result.stderr
        backup = only_backup(app, "huge")
        assert backup.stat().st_size == source.stat().st_size
        with open(backup, "rb") as handle:
            handle.seek(2**30)
            assert handle.read(page_size) == bytes(page_size)
        assert dbs.check_database_file(backup) == "ok"
        conn = sqlite3.connect(f"{backup.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        try:
            assert conn.execute("SELECT data FROM beyond WHERE id = 1").fetchone() == (row,)
        finally:
            conn.close()
    finally:
        for path in [source, *app.backup_dir.glob("*huge*")]:
            path.unlink(missing_ok=True)


# Dies by SIGKILL in the middle of a transaction too large for its page cache, which has
# already written some of its pages into the database file.
CRASH_IN_A_TRANSACTION = """
    import os, signal, sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("PRAGMA cache_size=2")
    conn.execute("BEGIN")
    for i in range(300):
        conn.execute("INSERT INTO items(value, pad) VALUES (?, randomblob(500))", (i,))
    conn.execute("UPDATE totals SET total = -1 WHERE id = 1")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def crash_leaving_a_hot_journal(source: Path) -> None:
    before = source.read_bytes()
    crash = textwrap.dedent(CRASH_IN_A_TRANSACTION)
    subprocess.run([sys.executable, "-c", crash, str(source)], timeout=60)
    assert Path(f"{source}-journal").stat().st_size > 0, "the crash left no hot journal"
    assert source.read_bytes() != before, "the crash should have left its pages in the file"


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_backup_of_a_database_with_a_hot_journal_holds_only_committed_rows(
    app: App, tmp_path: Path
) -> None:
    source = make_db(tmp_path / "crashed.db", rows=50, journal_mode="delete")
    committed = dump(source)
    crash_leaving_a_hot_journal(source)
    result = app.run("--run", "--db", f"crashed={source}")
    assert result.returncode == 0, result.stdout + result.stderr
    backup = only_backup(app, "crashed")
    assert dump(backup, immutable=True) == committed
    assert integrity(backup) == "ok"


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_backup_rolls_back_the_hot_journal_of_its_source(app: App, tmp_path: Path) -> None:
    source = make_db(tmp_path / "crashed.db", rows=50, journal_mode="delete")
    committed = dump(source)
    crash_leaving_a_hot_journal(source)
    assert app.run("--run", "--db", f"crashed={source}").returncode == 0
    assert not Path(f"{source}-journal").exists()
    assert dump(source) == committed


# Commits 50 rows into the WAL (checkpoints off), then dies by SIGKILL without closing.
CRASH_AFTER_COMMITS_IN_THE_WAL = """
    import os, signal, sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("PRAGMA wal_autocheckpoint=0")
    for i in range(50):
        conn.execute("BEGIN")
        conn.execute("INSERT INTO items(value, pad) VALUES (?, randomblob(500))", (i,))
        conn.execute("UPDATE totals SET total = total + ?, count = count + 1 WHERE id = 1", (i,))
        conn.execute("COMMIT")
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_backup_of_a_wal_left_by_a_killed_app_holds_its_commits(app: App, tmp_path: Path) -> None:
    source = make_db(tmp_path / "crashed.db", rows=50, journal_mode="wal")
    subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CRASH_AFTER_COMMITS_IN_THE_WAL), str(source)],
        timeout=60,
    )
    assert wal_size(source) > 0, "the crash left no hot WAL"
    result = app.run("--run", "--db", f"crashed={source}")
    assert result.returncode == 0, result.stdout + result.stderr
    backup = only_backup(app, "crashed")
    total = 2 * sum(range(50))  # make_db's 50 rows, and the killed app's 50
    assert read_invariant(backup) == (total, 100, total, 100)
    assert integrity(backup) == "ok"
