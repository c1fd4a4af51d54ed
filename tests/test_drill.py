"""Restore drills, and what watches them: --drill, the scheduled run's drill, --check's drill
rules, --metrics and --heartbeat-url; each through the real CLI on real SQLite files."""

from __future__ import annotations

import datetime
import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import App, Webhook, assert_no_traceback, make_app, make_db

import database_backup_scheduler as dbs

DB = "pet_painting.db"
SECRET = "hb-s3cret-Path-NEVER-shown"

METRIC_FAMILIES_PER_DATABASE = (
    "database_backup_backups",
    "database_backup_newest_backup_timestamp_seconds",
    "database_backup_newest_backup_size_bytes",
    "database_backup_last_run_success",
    "database_backup_last_run_timestamp_seconds",
    "database_backup_last_run_duration_seconds",
    "database_backup_last_drill_success",
    "database_backup_last_drill_timestamp_seconds",
)
METRIC_FAMILIES_OF_FOLDER = (
    "database_backup_folder_size_bytes",
    "database_backup_folder_disk_share_ratio",
    "database_backup_disk_free_bytes",
    "database_backup_metrics_timestamp_seconds",
)


# -- helpers ---------------------------------------------------------------------------------


def back_up(app: App, *flags: str) -> Path:
    """Run a real manual backup; return the newest backup of the app's main database."""
    result = app.run("--run", *flags)
    assert result.returncode == 0, result.stdout + result.stderr
    return app.backups(DB)[-1]


def drill(app: App, *flags: str) -> tuple[int, dict[str, Any]]:
    """Run ``--drill --json``; its exit code and the main database's drill."""
    result = app.run("--drill", "--json", *flags)
    assert_no_traceback(result)
    record = json.loads(result.stdout)
    assert record["kind"] == "drill"
    (mine,) = [d for d in record["drills"] if d["database"] == DB]
    return result.returncode, mine


def run_log(app: App) -> list[dict[str, Any]]:
    return json.loads(app.log_file.read_text(encoding="utf-8"))["runs"]


def drill_runs(app: App) -> list[dict[str, Any]]:
    if not app.log_file.exists():
        return []
    return [run for run in run_log(app) if run.get("kind") == "drill"]


def write_run_log(app: App, runs: list[dict[str, Any]]) -> None:
    app.log_file.write_text(json.dumps({"version": 1, "runs": runs}), encoding="utf-8")


def iso_ago(age: datetime.timedelta) -> str:
    return (datetime.datetime.now().astimezone() - age).isoformat(timespec="seconds")


def overwrite_page_2(path: Path) -> None:
    """Overwrite the second page of a database file with garbage: SQLite notices."""
    with open(path, "r+b") as handle:
        header = handle.read(100)
        page_size = int.from_bytes(header[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        assert os.fstat(handle.fileno()).st_size >= 3 * page_size
        handle.seek(page_size)
        handle.write(b"\xa5" * page_size)


def app_with_a_dangling_reference(tmp_path: Path) -> App:
    """An app whose database has a row pointing at nothing (SQLite's foreign keys are off by
    default, so the app could write it)."""
    app = make_app(tmp_path / "app", rows=None)
    app.main_db.parent.mkdir(parents=True)
    with sqlite3.connect(app.main_db) as conn:
        conn.execute("CREATE TABLE owners(id INTEGER PRIMARY KEY)")
        conn.execute("CREATE TABLE pets(id INTEGER PRIMARY KEY, owner INTEGER REFERENCES owners)")
        conn.execute("INSERT INTO pets VALUES (1, 42)")
    conn.close()
    return app


def first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def scratch_entries(folder: Path) -> list[str]:
    """Names in ``folder`` that this tool uses for temporary files and scratch folders."""
    return sorted(n for n in os.listdir(folder) if n.startswith(dbs.TEMP_PREFIX))


# -- --drill ---------------------------------------------------------------------------------


def test_drill_of_a_good_backup_passes_and_is_logged(app: App) -> None:
    back_up(app)

    code, mine = drill(app)

    assert code == 0, mine
    assert mine["status"] == "ok" and mine["findings"] == []
    assert mine["tables"] >= 2 and mine["rows_read"] > 0 and mine["compared"]
    (logged,) = drill_runs(app)
    assert logged["status"] == "ok"
    (entry,) = [d for d in logged["drills"] if d["database"] == DB]
    assert entry["status"] == "ok" and entry["rows_read"] == mine["rows_read"]


def test_drill_leaves_only_backups_and_the_lock_file(app: App) -> None:
    back_up(app)

    code, _ = drill(app)

    assert code == 0
    left = [
        name
        for name in os.listdir(app.backup_dir)
        if name != dbs.LOCK_FILE_NAME and not dbs.is_backup_name(name)
    ]
    assert left == []


def test_drill_of_a_damaged_backup_fails_and_alerts_with_the_finding(
    app: App, webhook: Webhook
) -> None:
    overwrite_page_2(back_up(app))

    code, mine = drill(app, "--notify-url", webhook.url())

    assert code == 1
    assert mine["status"] == "failed"
    assert any("the backup fails its check" in f for f in mine["findings"]), mine["findings"]
    (body,) = webhook.bodies
    assert body["text"].startswith("FAILED: restore drill")
    assert "the backup fails its check" in body["text"]


def test_drill_fails_when_the_backup_lacks_a_table_of_the_live_database(app: App) -> None:
    back_up(app)
    with sqlite3.connect(app.main_db) as conn:
        conn.execute("CREATE TABLE invoices(id INTEGER PRIMARY KEY, amount INTEGER)")
    conn.close()

    code, mine = drill(app)

    assert code == 1
    assert mine["status"] == "failed"
    assert any("invoices" in f and "missing from the backup" in f for f in mine["findings"]), mine[
        "findings"
    ]


def test_drill_fails_when_the_backup_lost_most_rows_of_a_table(tmp_path: Path) -> None:
    app = make_app(tmp_path / "app", rows=10)
    back_up(app)
    make_db(app.main_db, rows=990)  # the live table now holds 1000 rows, the backup 10

    code, mine = drill(app)

    assert code == 1
    assert mine["status"] == "failed"
    assert any("items" in f and "fewer" in f for f in mine["findings"]), mine["findings"]


@pytest.mark.parametrize("compress", ["gzip", "zstd"])
def test_drill_of_a_compressed_backup_goes_through_its_unpacking(app: App, compress: str) -> None:
    if compress == "zstd" and sys.version_info < (3, 14):
        pytest.importorskip("zstandard", reason="zstd needs the zstandard package")
    assert app.run("--run", "--compress", compress).returncode == 0
    (backup,) = app.backup_dir.glob(DB + ".*.bak" + (".gz" if compress == "gzip" else ".zst"))

    code, mine = drill(app)

    assert code == 0, mine
    assert mine["backup"] == str(backup)
    assert mine["rows_read"] > 0
    assert scratch_entries(app.backup_dir) == []


def test_drill_names_rows_that_point_at_nothing(tmp_path: Path) -> None:
    app = app_with_a_dangling_reference(tmp_path)
    back_up(app)

    code, mine = drill(app)

    assert code == 1
    assert any(
        f.startswith("foreign_key_check: 1 row(s)") and "pets" in f for f in mine["findings"]
    )


def test_drill_of_a_database_without_backups_fails_and_says_so(app: App) -> None:
    code, mine = drill(app)

    assert code == 1
    assert mine["findings"] == ["there is no backup to drill"]


def test_drill_of_a_database_that_is_gone_checks_the_backup_alone(app: App) -> None:
    back_up(app)
    app.main_db.unlink()
    for end in ("-wal", "-shm"):
        Path(str(app.main_db) + end).unlink(missing_ok=True)

    result = app.run("--drill")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "not compared: the live database is not there" in result.stdout
    assert not app.main_db.exists()


def test_run_leaves_a_look_alike_scratch_folder_with_a_users_file_alone(app: App) -> None:
    back_up(app)
    look_alike = app.backup_dir / dbs.format_temp_name("drill")
    look_alike.mkdir()
    (look_alike / "my notes.txt").write_bytes(b"not the tool's")
    left = app.backup_dir / dbs.format_temp_name("drill")
    left.mkdir()
    (left / DB).write_bytes(b"a restored copy")
    (left / (DB + "-journal")).write_bytes(b"its journal")

    result = app.run("--run")

    assert result.returncode == 0, result.stdout + result.stderr
    assert not left.exists()
    assert (look_alike / "my notes.txt").read_bytes() == b"not the tool's"


def test_drill_killed_midway_leaves_nothing_the_next_run_does_not_clean_up(
    tmp_path: Path,
) -> None:
    if sys.platform == "win32":
        pytest.skip("SIGKILL is POSIX")
    app = make_app(tmp_path / "app", rows=None)
    make_db(app.main_db, rows=400, payload=100_000)  # about 40 MB
    back_up(app)

    process = app.popen("--drill")
    try:
        deadline = time.monotonic() + 60
        while not scratch_entries(app.backup_dir) and process.poll() is None:
            assert time.monotonic() < deadline, "the drill never made its scratch folder"
            time.sleep(0.001)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL, "the drill ended before it could be killed"
    assert scratch_entries(app.backup_dir), "the kill left no scratch folder to clean up"

    result = app.run("--run")

    assert result.returncode == 0, result.stdout + result.stderr
    assert scratch_entries(app.backup_dir) == []


# -- the scheduled run's drill --------------------------------------------------------------


def test_scheduled_run_drills_when_no_drill_is_logged(app: App) -> None:
    result = app.run("--run", "--trigger", "task")

    assert result.returncode == 0, result.stdout + result.stderr
    (logged,) = drill_runs(app)
    assert logged["status"] == "ok" and logged["trigger"] == "task"


def test_scheduled_run_does_not_drill_again_right_after_a_good_drill(app: App) -> None:
    assert app.run("--run", "--trigger", "task").returncode == 0

    result = app.run("--run", "--trigger", "task")

    assert result.returncode == 0, result.stdout + result.stderr
    assert len(drill_runs(app)) == 1


def test_scheduled_run_reports_its_drill_in_json(app: App) -> None:
    result = app.run("--run", "--trigger", "cron", "--json")

    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["drill"]["kind"] == "drill" and report["drill"]["status"] == "ok"
    assert report["drill"] == drill_runs(app)[0]


def test_scheduled_run_that_failed_does_not_drill(app: App) -> None:
    result = app.run("--run", "--trigger", "task", "--db", "missing=does/not/exist.db")

    assert result.returncode == 1, result.stdout + result.stderr
    assert drill_runs(app) == []


def test_failed_scheduled_drill_fails_the_run(tmp_path: Path) -> None:
    # The backup is faithful, but the data it brings back has rows that point at nothing.
    app = app_with_a_dangling_reference(tmp_path)

    result = app.run("--run", "--trigger", "task", "--json")

    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "ok" and report["drill"]["status"] == "failed"


def test_manual_run_never_drills(app: App) -> None:
    result = app.run("--run")

    assert result.returncode == 0, result.stdout + result.stderr
    assert drill_runs(app) == []


def test_scheduled_run_never_drills_with_drill_every_days_0(app: App) -> None:
    result = app.run("--run", "--trigger", "task", "--drill-every-days", "0")

    assert result.returncode == 0, result.stdout + result.stderr
    assert drill_runs(app) == []


# -- --check ----------------------------------------------------------------------------------


def test_check_is_critical_when_the_last_drill_failed(app: App) -> None:
    back_up(app)
    with sqlite3.connect(app.main_db) as conn:
        conn.execute("CREATE TABLE invoices(id INTEGER PRIMARY KEY)")
    conn.close()
    assert drill(app)[0] == 1

    result = app.run("--check")

    assert result.returncode == 2, result.stdout + result.stderr
    assert first_line(result.stdout).startswith("CRITICAL: ")
    assert "the last restore drill failed" in first_line(result.stdout)


def test_check_warns_when_the_last_good_drill_is_older_than_max_drill_age(app: App) -> None:
    backup = back_up(app)
    runs = run_log(app)
    runs.append(
        {
            "kind": "drill",
            "started_at": iso_ago(datetime.timedelta(days=40)),
            "finished_at": iso_ago(datetime.timedelta(days=40)),
            "trigger": "manual",
            "status": "ok",
            "drills": [{"database": DB, "backup": str(backup), "status": "ok", "findings": []}],
        }
    )
    write_run_log(app, runs)

    result = app.run("--check")

    assert result.returncode == 1, result.stdout + result.stderr
    assert first_line(result.stdout).startswith("WARNING: ")
    assert "the last restore drill was" in first_line(result.stdout)


def test_check_is_ok_after_a_fresh_good_drill(app: App) -> None:
    back_up(app)
    assert drill(app)[0] == 0

    result = app.run("--check")

    assert result.returncode == 0, result.stdout + result.stderr
    assert first_line(result.stdout).startswith("OK: ")


def test_check_does_not_ask_a_new_install_for_a_drill(app: App) -> None:
    back_up(app)

    result = app.run("--check")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "restore drill" not in result.stdout


def test_check_warns_when_an_old_install_has_no_drill_logged(app: App) -> None:
    old = iso_ago(datetime.timedelta(days=40))
    write_run_log(
        app,
        [{"started_at": old, "finished_at": old, "trigger": "cron", "status": "ok", "results": []}],
    )
    back_up(app)

    result = app.run("--check")

    assert result.returncode == 1, result.stdout + result.stderr
    assert first_line(result.stdout).startswith("WARNING: ")
    assert "no restore drill in the run log" in first_line(result.stdout)


# -- --metrics -------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["--run", "--drill", "--check"])
def test_metrics_file_parses_and_holds_the_documented_families(app: App, action: str) -> None:
    parser = pytest.importorskip("prometheus_client.parser")
    back_up(app)
    metrics = app.root / "metrics" / "database_backup.prom"
    metrics.parent.mkdir()

    result = app.run(action, "--metrics", str(metrics))

    assert result.returncode == 0, result.stdout + result.stderr
    families = {f.name: f for f in parser.text_string_to_metric_families(metrics.read_text())}
    assert set(METRIC_FAMILIES_PER_DATABASE + METRIC_FAMILIES_OF_FOLDER) <= set(families)
    backups = families["database_backup_backups"].samples
    assert {s.labels["database"]: s.value for s in backups}[DB] >= 1
    if action == "--drill":
        (success,) = [
            s
            for s in families["database_backup_last_drill_success"].samples
            if s.labels["database"] == DB
        ]
        assert success.value == 1


def test_metrics_tell_the_archives_count_and_the_newest_archives_time(app: App) -> None:
    parser = pytest.importorskip("prometheus_client.parser")
    app.archives = True
    metrics = app.root / "database_backup.prom"

    result = app.run("--run", "--metrics", str(metrics))

    assert result.returncode == 0, result.stdout + result.stderr
    families = {f.name: f for f in parser.text_string_to_metric_families(metrics.read_text())}
    (count,) = families["database_backup_archives"].samples
    assert (count.labels["folder"], count.value) == (str(app.root / "instance"), 1)
    (newest,) = families["database_backup_newest_archive_timestamp_seconds"].samples
    (archive,) = app.backup_dir.glob("instance.*.zip")
    taken = datetime.datetime.strptime(archive.name.split(".")[1], "%Y%m%d_%H%M%S")
    assert newest.value == taken.timestamp()


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["umask-022", "umask-077"])
def test_metrics_file_is_readable_by_the_collector(app: App, umask: int) -> None:
    metrics = app.root / "database_backup.prom"
    old_umask = os.umask(umask)  # 077: a hardened service's; the collector must still read it
    try:
        result = app.run("--run", "--metrics", str(metrics))
    finally:
        os.umask(old_umask)

    assert result.returncode == 0, result.stdout + result.stderr
    assert metrics.stat().st_mode & 0o777 == 0o644


# -- --heartbeat-url ----------------------------------------------------------------------------


def test_heartbeat_gets_the_url_after_a_good_run(app: App, webhook: Webhook) -> None:
    result = app.run("--run", "--heartbeat-url", webhook.url(f"/ping/{SECRET}"))

    assert result.returncode == 0, result.stdout + result.stderr
    assert [(r["method"], r["path"]) for r in webhook.requests] == [("GET", f"/ping/{SECRET}")]
    (beat,) = run_log(app)[-1]["heartbeats"]
    assert beat["signal"] == "success" and beat["status"] == "ok"
    assert beat["target"] == f"http://127.0.0.1:{webhook.port}/***"


def test_heartbeat_gets_url_fail_after_a_failed_run(app: App, webhook: Webhook) -> None:
    result = app.run(
        "--run",
        "--db",
        "missing=does/not/exist.db",
        "--heartbeat-url",
        webhook.url(f"/ping/{SECRET}"),
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert_no_traceback(result)
    assert [(r["method"], r["path"]) for r in webhook.requests] == [("GET", f"/ping/{SECRET}/fail")]
    (beat,) = run_log(app)[-1]["heartbeats"]
    assert beat["signal"] == "fail"


def test_heartbeat_to_a_server_that_never_answers_does_not_hold_the_run(app: App) -> None:
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the connection, never answers
    try:
        port = silent.getsockname()[1]
        result = app.run("--run", "--heartbeat-url", f"http://127.0.0.1:{port}/ping")
    finally:
        silent.close()

    assert result.returncode == 0, result.stdout + result.stderr
    (beat,) = run_log(app)[-1]["heartbeats"]
    assert beat["status"] == "failed"
    assert beat["error"] == "no answer in 5 s (timed out)", beat


@pytest.mark.parametrize("db", [None, "missing=does/not/exist.db"])
def test_heartbeat_url_secret_never_shows(app: App, webhook: Webhook, db: str | None) -> None:
    flags = ["--db", db] if db else []

    result = app.run("--run", "--json", *flags, "--heartbeat-url", webhook.url(f"/{SECRET}?k=v"))

    assert len(webhook.requests) == 1
    assert SECRET not in result.stdout + result.stderr
    assert SECRET not in app.log_file.read_text(encoding="utf-8")


# -- --history and --stats ------------------------------------------------------------------


def test_history_json_lists_the_drill(app: App) -> None:
    backup = back_up(app)
    assert drill(app)[0] == 0

    result = app.run("--history", "--json")

    assert result.returncode == 0, result.stdout + result.stderr
    rows = [r for r in json.loads(result.stdout)["backups"] if r["action"] == "drill"]
    (mine,) = [r for r in rows if r["database"] == DB]
    assert mine["status"] == "ok" and mine["file"] == str(backup)


def test_stats_json_shows_the_last_drill(app: App) -> None:
    back_up(app)
    assert drill(app)[0] == 0

    result = app.run("--stats", "--json")

    assert result.returncode == 0, result.stdout + result.stderr
    (mine,) = [d for d in json.loads(result.stdout)["databases"] if d["database"] == DB]
    assert mine["last_drill_status"] == "ok"
    assert mine["last_drill_at"] is not None
