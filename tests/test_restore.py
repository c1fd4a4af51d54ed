"""--restore: a backup goes back into its database through SQLite, safely, on real files.

The app is played by real child processes: one that crashed and left a hot -wal, one
that keeps its WAL database open, one that holds a transaction on a rollback-journal
database.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import select
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    App,
    assert_no_traceback,
    damage_middle_page,
    dump,
    integrity,
    journal_mode_in_header,
    make_app,
    make_db,
    run_process,
)

import database_backup_scheduler as dbs

CRASHED_WRITES = 50
CRASH_MARK = 1_000_000

# Writes rows that stay in the -wal (checkpoints off), then dies without closing.
CRASHING_APP = f"""
import os, signal, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA wal_autocheckpoint=0")
conn.execute("BEGIN")
for i in range({CRASHED_WRITES}):
    conn.execute("INSERT INTO items(value, pad) VALUES (?, randomblob(100))", ({CRASH_MARK} + i,))
    conn.execute("UPDATE totals SET total = total + ?, count = count + 1", ({CRASH_MARK} + i,))
conn.execute("COMMIT")
os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
"""

# Opens the database as a running app does, says "ready", and holds on until stdin closes.
RUNNING_APP = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
how = sys.argv[2]
if how == "idle-after-read":
    conn.execute("SELECT COUNT(*) FROM items").fetchall()
elif how == "begin-immediate":
    conn.execute("BEGIN IMMEDIATE")
elif how == "read-transaction":
    conn.execute("BEGIN")
    conn.execute("SELECT COUNT(*) FROM items").fetchall()
print("ready", flush=True)
sys.stdin.read()
conn.close()
"""


@contextlib.contextmanager
def running_app(db: Path, how: str) -> Iterator[subprocess.Popen[str]]:
    """A child process that has ``db`` open (``how``) until the block ends; then it is gone."""
    child = subprocess.Popen(
        [sys.executable, "-c", RUNNING_APP, str(db), how],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        yield child
    finally:
        child.kill()
        child.wait(timeout=30)
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()


def crash_app_leaving_a_hot_wal(db: Path) -> None:
    """A child writes committed rows into the -wal of ``db`` and is killed before any checkpoint."""
    subprocess.run([sys.executable, "-c", CRASHING_APP, str(db)], timeout=60)
    wal = Path(f"{db}-wal")
    assert wal.exists() and wal.stat().st_size > 0, "the crash left no hot -wal"


def crashed_rows(path: Path, *, immutable: bool = False) -> int:
    """How many of the crashed app's rows a database holds."""
    flags = "&immutable=1" if immutable else ""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro{flags}", uri=True)
    try:
        return conn.execute(
            "SELECT COUNT(*) FROM items WHERE value >= ?", (CRASH_MARK,)
        ).fetchone()[0]
    finally:
        conn.close()


def back_up(app: App, name: str = "pet_painting.db", *flags: str) -> Path:
    """Run a real backup; return the new backup of database ``name``."""

    def backups() -> set[Path]:
        if not app.backup_dir.exists():
            return set()
        return {p for p in app.backup_dir.iterdir() if dbs.is_backup_name(p.name, name)}

    before = backups()
    result = app.run("--run", *flags)
    assert result.returncode == 0, result.stdout + result.stderr
    (new,) = backups() - before
    return new


def add_rows(db: Path, rows: int = 30) -> None:
    """The app goes on writing after the backup (the content the restore will replace)."""
    make_db(db, rows=rows, journal_mode="wal" if journal_mode_in_header(db) == "wal" else "delete")


def safety_copies(app: App) -> list[Path]:
    if not app.backup_dir.exists():
        return []
    return sorted(app.backup_dir.glob("*.pre-restore"))


def restore(app: App, backup: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """--restore --yes that waits 0.2 s at most for a database another process holds."""
    return app.run("--restore", str(backup), "--yes", "--busy-timeout", "0.2", *args)


def file_state(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def refused_restore(
    app: App, backup: Path, *args: str, exit_code: int
) -> subprocess.CompletedProcess[str]:
    """A restore that must be refused with ``exit_code``: the main database is left as it
    was, to its modification time, and no safety copy is made."""
    state = file_state(app.main_db)
    result = restore(app, backup, *args)
    assert result.returncode == exit_code, result.stdout + result.stderr
    assert file_state(app.main_db) == state
    assert safety_copies(app) == []
    return result


def undo_command(result: subprocess.CompletedProcess[str]) -> str:
    """The command of the "to undo:" line a restore printed, as the operator would copy it."""
    (line,) = [line for line in result.stdout.splitlines() if "to undo:" in line]
    return line.split("to undo: ", 1)[1]


def run_in_bash(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a printed command line as pasted into a POSIX shell."""
    if shutil.which("bash") is None:
        pytest.skip("needs bash to run the printed command as pasted")
    return run_process(["bash", "-c", command], cwd=cwd)


def plant_copy(backup: Path) -> Path:
    """A copy of ``backup`` dropped beside it under another backup's name (the run log
    knows nothing of it)."""
    planted = backup.with_name(backup.name.replace(".bak", "-1.bak"))
    assert dbs.is_backup_name(planted.name, "pet_painting.db")
    shutil.copyfile(backup, planted)
    return planted


def change_row_data(path: Path, size: int = 64) -> None:
    """Flip ``size`` bytes inside one row's data: the file stays a well-formed database that
    passes integrity_check, with other content."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        (pad,) = conn.execute("SELECT pad FROM items WHERE id = 100").fetchone()
    finally:
        conn.close()
    data = bytearray(path.read_bytes())
    assert data.count(pad) == 1
    at = data.index(pad)
    data[at : at + size] = bytes(b ^ 0xFF for b in data[at : at + size])
    path.write_bytes(bytes(data))


def restore_on_a_terminal(
    app: App, backup: Path, answer: str, *args: str, timeout: float = 60
) -> tuple[int, str, str]:
    """--restore without --yes, its stdin and stdout on a pseudo-terminal; ``answer`` is
    typed once the question ends. Returns (exit code, what the terminal showed, stderr)."""
    if not hasattr(os, "openpty"):
        pytest.skip("needs a pseudo-terminal (POSIX)")
    master, slave = os.openpty()
    try:
        child = subprocess.Popen(
            [sys.executable, str(app.script), "--restore", str(backup), *args],
            cwd=str(app.root),
            env={**os.environ, "PYTHONIOENCODING": "utf-8"},
            stdin=slave,
            stdout=slave,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        os.close(slave)
    shown = b""
    answered = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child has closed its terminal
                break
            if not chunk:
                break
            shown += chunk
            if not answered and b"Type yes to go on: " in shown:
                os.write(master, answer.encode() + b"\n")
                answered = True
        _, err = child.communicate(timeout=timeout)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
        os.close(master)
    assert answered, shown.decode("utf-8", "replace") + err
    return child.returncode, shown.decode("utf-8", "replace"), err


# --------------------------------------------------------------------------------------
# Round trip, safety copy, undo
# --------------------------------------------------------------------------------------


def test_restore_puts_the_backup_content_back(app: App) -> None:
    backup = back_up(app)
    add_rows(app.main_db)
    assert dump(app.main_db) != dump(backup, immutable=True)

    result = restore(app, backup)

    assert result.returncode == 0, result.stdout + result.stderr
    assert dump(app.main_db) == dump(backup, immutable=True)


def test_restore_over_a_damaged_database_moves_it_aside_and_keeps_its_mode(app: App) -> None:
    backup = back_up(app)
    with sqlite3.connect(app.main_db) as conn:  # the app's database, in WAL mode
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    damage_middle_page(app.main_db)
    damaged = app.main_db.read_bytes()
    os.chmod(app.main_db, 0o640)

    result = restore(app, backup)

    assert result.returncode == 0, result.stdout + result.stderr
    assert dump(app.main_db) == dump(backup, immutable=True)
    [aside] = [p for p in app.main_db.parent.iterdir() if p.name.endswith(".pre-restore")]
    # Kept for salvage: the damaged pages as they were (opening it for the restore may
    # have updated the change counter in the header).
    assert aside.read_bytes()[100:] == damaged[100:]
    assert str(aside) in result.stdout
    assert journal_mode_in_header(app.main_db) == "wal"
    if os.name == "posix":
        assert app.main_db.stat().st_mode & 0o777 == 0o640


def test_restore_from_a_gzip_backup_puts_its_content_back(app: App, tmp_path: Path) -> None:
    backup = back_up(app, "pet_painting.db", "--compress", "gzip")
    assert backup.name.endswith(".bak.gz")
    unpacked = tmp_path / "unpacked.db"
    with gzip.open(backup, "rb") as packed, open(unpacked, "wb") as plain:
        shutil.copyfileobj(packed, plain)
    add_rows(app.main_db)

    result = restore(app, backup)

    assert result.returncode == 0, result.stdout + result.stderr
    assert dump(app.main_db) == dump(unpacked, immutable=True)
    assert [p.name for p in app.backup_dir.iterdir() if p.name.startswith(dbs.TEMP_PREFIX)] == []


def test_restore_keeps_the_replaced_database_as_a_safety_copy(app: App) -> None:
    backup = back_up(app)
    add_rows(app.main_db)
    replaced = dump(app.main_db)

    result = restore(app, backup)

    assert result.returncode == 0, result.stdout + result.stderr
    (safety,) = safety_copies(app)
    assert dump(safety, immutable=True) == replaced
    assert str(safety) in result.stdout


def test_restore_names_the_safety_copy_so_it_is_never_taken_for_a_backup(app: App) -> None:
    backup = back_up(app)

    restore(app, backup)

    (safety,) = safety_copies(app)
    assert safety.parent == app.backup_dir
    assert safety.name.startswith("pet_painting.db.")
    assert not dbs.is_backup_name(safety.name)
    assert app.backups() == [backup]


def test_restore_of_the_safety_copy_undoes_the_restore(app: App) -> None:
    backup = back_up(app)
    add_rows(app.main_db)
    before = dump(app.main_db)
    restore(app, backup)
    (safety,) = safety_copies(app)

    result = restore(app, safety)

    assert result.returncode == 0, result.stdout + result.stderr
    assert dump(app.main_db) == before


def test_restore_with_target_prints_an_undo_that_restores_that_target(app: App) -> None:
    backup = back_up(app)
    make_db(app.root_db, rows=30, journal_mode="delete")
    main_before, root_before = dump(app.main_db), dump(app.root_db)
    # A backup of pet_painting.db into root_pet_painting.db: another database, on purpose.
    result = restore(app, backup, "--target", str(app.root_db), "--allow-other-database")
    assert result.returncode == 0, result.stdout + result.stderr
    assert dump(app.root_db) == dump(backup, immutable=True)
    (undo_line,) = [line for line in result.stdout.splitlines() if "to undo:" in line]
    undo = shlex.split(undo_line.split("to undo:", 1)[1])
    assert Path(undo[1]) == app.script.resolve()  # the line starts: python script

    undone = app.run(*undo[2:])

    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert dump(app.main_db) == main_before, "the undo replaced a database it never touched"
    assert dump(app.root_db) == root_before


def test_restore_undo_line_run_as_printed_puts_the_replaced_content_back(
    app: App, tmp_path: Path
) -> None:
    backup = back_up(app)
    add_rows(app.main_db)
    before = dump(app.main_db)
    result = restore(app, backup)
    assert result.returncode == 0, result.stdout + result.stderr

    undone = run_in_bash(undo_command(result), cwd=tmp_path)  # not from the app root

    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert dump(app.main_db) == before


def test_restore_undo_line_runs_as_printed_from_an_app_path_with_a_space_and_quotes(
    tmp_path: Path,
) -> None:
    app = make_app(tmp_path / "Jo's pet app $HOME")
    backup = back_up(app)
    add_rows(app.main_db)
    before = dump(app.main_db)
    result = restore(app, backup)
    assert result.returncode == 0, result.stdout + result.stderr

    undone = run_in_bash(undo_command(result), cwd=tmp_path)

    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert dump(app.main_db) == before


def test_restore_undo_line_keeps_the_backup_folder_and_run_log_given_as_flags(
    app: App, tmp_path: Path
) -> None:
    flags = ("--backup-dir", "kept", "--log-file", "runs.json")  # relative to the app root
    made = app.run("--run", *flags)
    assert made.returncode == 0, made.stdout + made.stderr
    (backup,) = (app.root / "kept").glob("*.bak")
    add_rows(app.main_db)
    before = dump(app.main_db)
    result = app.run("--restore", str(backup), "--yes", "--busy-timeout", "1", *flags)
    assert result.returncode == 0, result.stdout + result.stderr

    undone = run_in_bash(undo_command(result), cwd=tmp_path)

    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert dump(app.main_db) == before
    assert not app.log_file.exists(), "the undo wrote to the default run log"


def test_restore_records_a_restore_run_in_the_log(app: App) -> None:
    backup = back_up(app)

    restore(app, backup)

    runs = json.loads(app.log_file.read_text(encoding="utf-8"))["runs"]
    record = runs[-1]
    assert record["kind"] == "restore"
    assert record["status"] == "ok"
    assert Path(record["backup"]) == backup
    assert Path(record["target"]) == app.main_db
    assert Path(record["safety_copy"]).is_file()


def test_restore_json_prints_the_record(app: App) -> None:
    backup = back_up(app)

    result = restore(app, backup, "--json")

    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["kind"] == "restore"
    assert Path(record["safety_copy"]) == safety_copies(app)[0]


def test_restore_keeps_a_wal_database_in_wal_mode(app: App) -> None:
    backup = back_up(app)
    assert journal_mode_in_header(backup) == "rollback"
    assert journal_mode_in_header(app.main_db) == "wal"

    restore(app, backup)

    assert journal_mode_in_header(app.main_db) == "wal"


def test_restore_keeps_a_rollback_database_in_rollback_mode(app: App) -> None:
    make_db(app.root_db, rows=50, journal_mode="delete")
    backup = back_up(app, "root_pet_painting.db")

    result = restore(app, backup)

    assert result.returncode == 0, result.stdout + result.stderr
    assert journal_mode_in_header(app.root_db) == "rollback"
    assert dump(app.root_db) == dump(backup, immutable=True)


def test_restore_recreates_a_deleted_database(app: App) -> None:
    backup = back_up(app)
    app.main_db.unlink()

    result = restore(app, backup)

    assert result.returncode == 0, result.stdout + result.stderr
    assert dump(app.main_db) == dump(backup, immutable=True)


def test_restore_of_a_deleted_database_never_replays_the_wal_it_left(app: App) -> None:
    backup = back_up(app)
    crash_app_leaving_a_hot_wal(app.main_db)
    app.main_db.unlink()  # the operator deletes the database, its -wal and -shm stay

    result = restore(app, backup)

    assert result.returncode == 0, result.stdout + result.stderr
    assert crashed_rows(app.main_db) == 0
    assert dump(app.main_db) == dump(backup, immutable=True)


# --------------------------------------------------------------------------------------
# A crashed app: hot -wal, hot journal
# --------------------------------------------------------------------------------------


def test_restore_over_a_hot_wal_keeps_the_restored_content(app: App) -> None:
    backup = back_up(app)
    crash_app_leaving_a_hot_wal(app.main_db)
    assert crashed_rows(app.main_db, immutable=True) == 0  # the rows are only in the -wal

    result = restore(app, backup)

    assert result.returncode == 0, result.stdout + result.stderr
    assert crashed_rows(app.main_db) == 0
    assert dump(app.main_db) == dump(backup, immutable=True)


def test_restore_over_a_hot_wal_saves_the_crashed_writes_in_the_safety_copy(app: App) -> None:
    backup = back_up(app)
    crash_app_leaving_a_hot_wal(app.main_db)

    restore(app, backup)

    (safety,) = safety_copies(app)
    assert crashed_rows(safety, immutable=True) == CRASHED_WRITES


def test_restore_over_a_hot_journal_keeps_the_restored_content(app: App) -> None:
    make_db(app.root_db, rows=50, journal_mode="delete")
    backup = back_up(app, "root_pet_painting.db")
    before_crash = dump(app.root_db)
    # A transaction larger than the page cache spills into the file before the crash.
    code = (
        "import os, sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "conn.execute('PRAGMA cache_size=2')\n"
        "conn.execute('BEGIN')\n"
        "for i in range(300):\n"
        "    conn.execute('INSERT INTO items(value, pad) VALUES (?, randomblob(500))', (i,))\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(app.root_db)], timeout=60)
    assert Path(f"{app.root_db}-journal").stat().st_size > 0

    result = restore(app, backup)

    assert result.returncode == 0, result.stdout + result.stderr
    assert dump(app.root_db) == dump(backup, immutable=True)
    (safety,) = safety_copies(app)
    assert dump(safety, immutable=True) == before_crash


# --------------------------------------------------------------------------------------
# Refusals: nothing changes
# --------------------------------------------------------------------------------------


def test_restore_refuses_while_another_process_has_the_wal_database_open(app: App) -> None:
    backup = back_up(app)
    add_rows(app.main_db)
    content = dump(app.main_db)

    with running_app(app.main_db, "idle-after-read"):
        state = file_state(app.main_db)
        started = time.monotonic()
        result = restore(app, backup)
        elapsed = time.monotonic() - started
        assert file_state(app.main_db) == state

    assert result.returncode == 1, result.stdout + result.stderr
    assert "in use by another process" in result.stderr
    assert "open" in result.stderr  # the cause: it has the database open
    assert "stop the app" in result.stderr
    assert elapsed < 5
    assert dump(app.main_db) == content
    assert journal_mode_in_header(app.main_db) == "wal"
    assert safety_copies(app) == []
    assert_no_traceback(result)


def test_restore_gives_up_on_an_app_holding_the_wal_database_within_5_s_despite_busy_timeout(
    app: App,
) -> None:
    backup = back_up(app)
    add_rows(app.main_db)
    content = dump(app.main_db)

    with running_app(app.main_db, "idle-after-read"):
        started = time.monotonic()
        result = app.run("--restore", str(backup), "--yes", "--busy-timeout", "60")
        elapsed = time.monotonic() - started

    assert result.returncode == 1, result.stdout + result.stderr
    assert "in use by another process" in result.stderr
    assert elapsed < 5
    assert dump(app.main_db) == content


@pytest.mark.parametrize("how", ["begin-immediate", "read-transaction"])
def test_restore_refuses_while_another_process_holds_a_transaction(app: App, how: str) -> None:
    make_db(app.root_db, rows=50, journal_mode="delete")
    backup = back_up(app, "root_pet_painting.db")
    add_rows(app.root_db)
    content = dump(app.root_db)

    with running_app(app.root_db, how):
        state = file_state(app.root_db)
        result = restore(app, backup)
        assert file_state(app.root_db) == state

    assert result.returncode == 1, result.stdout + result.stderr
    assert "in use by another process" in result.stderr
    assert "transaction" in result.stderr  # the cause: it holds a transaction
    assert "stop the app" in result.stderr
    assert dump(app.root_db) == content
    assert safety_copies(app) == []


def test_restore_waits_a_few_seconds_for_an_app_that_closes(app: App) -> None:
    backup = back_up(app)
    add_rows(app.main_db)

    with running_app(app.main_db, "idle-after-read") as child:
        restoring = app.popen("--restore", str(backup), "--yes", "--busy-timeout", "20")
        time.sleep(1.0)
        assert child.stdin is not None
        child.stdin.close()  # the app stops
        out, err = restoring.communicate(timeout=60)

    assert restoring.returncode == 0, out + err
    assert dump(app.main_db) == dump(backup, immutable=True)


def test_restore_refuses_a_damaged_backup_and_changes_nothing(app: App) -> None:
    backup = back_up(app)
    add_rows(app.main_db)
    damage_middle_page(backup)

    result = refused_restore(app, backup, exit_code=1)

    assert "refusing" in result.stderr
    assert_no_traceback(result)


def test_restore_refuses_a_backup_whose_sha256_differs_from_the_log(
    app: App, tmp_path: Path
) -> None:
    backup = back_up(app)
    scratch = tmp_path / "altered.db"
    shutil.copyfile(backup, scratch)
    conn = sqlite3.connect(scratch)
    with conn:
        conn.execute("UPDATE items SET value = value + 1 WHERE id = 1")
    conn.close()
    shutil.copyfile(scratch, backup)  # still a well-formed database; not the one logged

    refused_restore(app, backup, exit_code=1)


def test_restore_refuses_without_yes_off_a_terminal(app: App) -> None:
    backup = back_up(app)
    state = file_state(app.main_db)

    child = app.popen("--restore", str(backup), stdin=subprocess.DEVNULL)
    out, err = child.communicate(timeout=60)

    assert child.returncode == 2, out + err
    assert "--yes" in err
    assert file_state(app.main_db) == state
    assert safety_copies(app) == []


def test_restore_refuses_a_backup_that_names_no_configured_database(app: App) -> None:
    stray = app.root / "elsewhere.db.20250101_000000.bak"
    shutil.copyfile(app.main_db, stray)
    state = file_state(app.main_db)

    result = restore(app, stray)

    assert result.returncode == 2
    assert "--target" in result.stderr
    assert file_state(app.main_db) == state


def test_restore_refuses_a_target_in_the_backup_folder(app: App) -> None:
    backup = back_up(app)

    result = restore(app, backup, "--target", str(app.backup_dir / "pet_painting.db"))

    assert result.returncode == 2
    assert not (app.backup_dir / "pet_painting.db").exists()


def test_restore_leaves_no_temporary_files(app: App) -> None:
    backup = back_up(app)
    app.main_db.unlink()
    restore(app, backup)
    backup2 = back_up(app)

    restore(app, backup2)

    leftovers = [
        p.name
        for folder in (app.backup_dir, app.main_db.parent)
        for p in folder.iterdir()
        if p.name.startswith(dbs.TEMP_PREFIX)
    ]
    assert leftovers == []
    assert not os.path.exists(f"{app.main_db}-journal")


# --------------------------------------------------------------------------------------
# A backup the run log does not know, a backup of another database: refused unless allowed
# --------------------------------------------------------------------------------------


def hint_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if "hint:" in line]


def warning_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("⚠️ warning:")]


def test_restore_refuses_a_backup_the_run_log_does_not_know(app: App) -> None:
    planted = plant_copy(back_up(app))
    add_rows(app.main_db)

    result = refused_restore(app, planted, exit_code=2)

    assert "refusing to restore:" in result.stderr
    assert "is not a backup the run log" in result.stderr
    assert any("--allow-unlogged" in line for line in hint_lines(result)), result.stderr
    assert_no_traceback(result)


def test_restore_refuses_a_backup_once_its_run_log_is_gone(app: App) -> None:
    backup = back_up(app)
    add_rows(app.main_db)
    app.log_file.unlink()

    result = refused_restore(app, backup, exit_code=2)

    assert "is not a backup the run log" in result.stderr
    assert any("--allow-unlogged" in line for line in hint_lines(result)), result.stderr


def test_restore_refuses_a_planted_backup_with_64_bytes_of_row_data_changed(app: App) -> None:
    backup = back_up(app)
    planted = plant_copy(backup)
    change_row_data(planted)
    assert integrity(planted) == "ok"  # well-formed: only the run log can tell
    assert dump(planted, immutable=True) != dump(backup, immutable=True)

    result = refused_restore(app, planted, exit_code=2)

    assert "is not a backup the run log" in result.stderr


def test_restore_with_allow_unlogged_restores_an_unlogged_backup_with_a_warning(
    app: App,
) -> None:
    planted = plant_copy(back_up(app))
    add_rows(app.main_db)

    result = restore(app, planted, "--allow-unlogged")

    assert result.returncode == 0, result.stdout + result.stderr
    assert dump(app.main_db) == dump(planted, immutable=True)
    assert any("is not a backup the run log" in line for line in warning_lines(result)), (
        result.stderr
    )


def test_restore_refuses_a_backup_of_another_database_into_the_app_database(app: App) -> None:
    make_db(app.root_db, rows=50, journal_mode="delete")
    backup = back_up(app, "root_pet_painting.db")

    result = refused_restore(app, backup, "--target", str(app.main_db), exit_code=2)

    assert "refusing to restore:" in result.stderr
    assert "is a backup of root_pet_painting.db" in result.stderr
    assert any("--allow-other-database" in line for line in hint_lines(result)), result.stderr
    assert_no_traceback(result)


def test_restore_with_allow_other_database_restores_another_database_backup_with_a_warning(
    app: App,
) -> None:
    make_db(app.root_db, rows=50, journal_mode="delete")
    backup = back_up(app, "root_pet_painting.db")

    result = restore(app, backup, "--target", str(app.main_db), "--allow-other-database")

    assert result.returncode == 0, result.stdout + result.stderr
    assert dump(app.main_db) == dump(backup, immutable=True)
    assert any("is a backup of root_pet_painting.db" in line for line in warning_lines(result)), (
        result.stderr
    )


def test_restore_into_a_scratch_file_needs_no_allow_other_database(
    app: App, tmp_path: Path
) -> None:
    backup = back_up(app)
    scratch = tmp_path / "scratch.db"  # none of the configured databases

    result = restore(app, backup, "--target", str(scratch))

    assert result.returncode == 0, result.stdout + result.stderr
    assert dump(scratch) == dump(backup, immutable=True)
    assert "is a backup of" not in result.stderr


# --------------------------------------------------------------------------------------
# On a terminal without --yes: the question names the risk, only "yes" goes on
# --------------------------------------------------------------------------------------


def test_restore_on_a_terminal_takes_y_for_no(app: App) -> None:
    backup = back_up(app)
    add_rows(app.main_db)
    state = file_state(app.main_db)

    code, shown, err = restore_on_a_terminal(app, backup, "y")

    assert code == 1, shown + err
    assert "Nothing was changed." in shown
    assert file_state(app.main_db) == state
    assert safety_copies(app) == []


@pytest.mark.parametrize("answer", ["yes", "  YES "])
def test_restore_on_a_terminal_goes_on_when_the_answer_is_yes(app: App, answer: str) -> None:
    backup = back_up(app)
    add_rows(app.main_db)

    code, shown, err = restore_on_a_terminal(app, backup, answer)

    assert code == 0, shown + err
    assert dump(app.main_db) == dump(backup, immutable=True)


def test_restore_on_a_terminal_names_the_risk_of_an_unlogged_backup_before_asking(
    app: App,
) -> None:
    planted = plant_copy(back_up(app))
    state = file_state(app.main_db)

    code, shown, err = restore_on_a_terminal(app, planted, "no")

    lines = shown.splitlines()
    (asked,) = [i for i, line in enumerate(lines) if "Type yes to go on:" in line]
    assert lines[asked].startswith(f"Replace {app.main_db} with {planted.name}?"), shown
    risks = [line for line in lines[:asked] if "is not a backup the run log" in line]
    assert len(risks) == 1 and risks[0].startswith("⚠️ ") and risks[0].endswith("."), shown
    assert code == 1, shown + err
    assert file_state(app.main_db) == state


def test_restore_on_a_terminal_of_an_unlogged_backup_goes_on_after_yes(app: App) -> None:
    planted = plant_copy(back_up(app))
    add_rows(app.main_db)

    code, shown, err = restore_on_a_terminal(app, planted, "yes")

    assert code == 0, shown + err
    assert dump(app.main_db) == dump(planted, immutable=True)
