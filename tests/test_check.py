"""--check: one Nagios verdict, each produced by a real situation on real files."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import App, assert_no_traceback, flip_middle_bytes, make_db, mounted_tmpfs

import database_backup_scheduler as dbs


def back_up(app: App, *flags: str) -> Path:
    """Run a real backup; return the newest backup of the app's main database."""
    result = app.run("--run", *flags)
    assert result.returncode == 0, result.stdout + result.stderr
    backups = dbs.list_backups(Path(_backup_dir(app, flags)), ["pet_painting.db"])
    return backups["pet_painting.db"][0].path


def _backup_dir(app: App, flags: tuple[str, ...]) -> Path:
    if "--backup-dir" in flags:
        return Path(flags[flags.index("--backup-dir") + 1])
    return app.backup_dir


def age_backup(backup: Path, age: datetime.timedelta) -> Path:
    """Rename a real backup so that its name says it was taken ``age`` ago."""
    taken_at = datetime.datetime.now() - age
    older = backup.with_name(f"pet_painting.db.{taken_at:%Y%m%d_%H%M%S}.bak")
    os.rename(backup, older)
    return older


def first_line(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout.splitlines()[0] if result.stdout else ""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs mounted for the test (root on Linux only), unmounted afterwards."""
    with mounted_tmpfs(tmp_path / "small_disk", "2m") as folder:
        yield folder


# --------------------------------------------------------------------------------------
# OK, CRITICAL, WARNING: each from a real situation
# --------------------------------------------------------------------------------------


def test_check_is_ok_after_a_fresh_backup(app: App) -> None:
    back_up(app)

    result = app.run("--check")

    assert result.returncode == 0, result.stdout + result.stderr
    assert first_line(result).startswith("OK: ")


def test_check_warns_when_the_newest_backup_is_dated_in_the_future(app: App) -> None:
    age_backup(back_up(app), -datetime.timedelta(days=400))  # a clock set a year ahead

    result = app.run("--check")

    assert result.returncode == 1, result.stdout + result.stderr
    assert first_line(result).startswith("WARNING: ")
    assert "future" in first_line(result)


def test_check_is_critical_when_there_are_no_backups(app: App) -> None:
    result = app.run("--check")

    assert result.returncode == 2, result.stdout + result.stderr
    assert first_line(result).startswith("CRITICAL: ")
    assert "pet_painting.db: no backup" in first_line(result)


def test_check_is_critical_when_the_newest_backup_is_stale(app: App) -> None:
    age_backup(back_up(app), datetime.timedelta(days=2))

    result = app.run("--check")

    assert result.returncode == 2, result.stdout + result.stderr
    assert first_line(result).startswith("CRITICAL: ")
    assert "old" in first_line(result)


def test_check_allows_an_hour_of_grace_past_max_age(app: App) -> None:
    age_backup(back_up(app), datetime.timedelta(hours=24, minutes=30))

    result = app.run("--check")

    assert result.returncode == 0, result.stdout + result.stderr
    assert first_line(result).startswith("OK: ")


def test_check_honours_max_age(app: App) -> None:
    age_backup(back_up(app), datetime.timedelta(hours=3))

    result = app.run("--check", "--max-age", "1")

    assert result.returncode == 2, result.stdout + result.stderr
    assert "limit 1 h" in first_line(result)


def test_check_is_critical_when_the_last_run_failed(app: App) -> None:
    back_up(app)
    app.main_db.write_bytes(b"this is not an SQLite database\n" * 100)
    failed = app.run("--run")
    assert failed.returncode == 1, failed.stdout + failed.stderr

    result = app.run("--check")

    assert result.returncode == 2, result.stdout + result.stderr
    assert first_line(result).startswith("CRITICAL: ")
    assert "last run failed" in first_line(result)


def test_check_is_critical_when_a_db_that_is_not_sqlite_was_never_backed_up(
    app: App, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database\n" * 100)
    failed = app.run("--run", "--db", str(junk))
    assert failed.returncode == 1

    result = app.run("--check", "--db", str(junk))

    assert result.returncode == 2, result.stdout + result.stderr
    assert first_line(result).startswith("CRITICAL: ")


def test_check_is_critical_when_the_newest_backup_is_not_sqlite(app: App) -> None:
    back_up(app)
    make_db(app.main_db, rows=1)  # new content: the next backup is a file of its own
    newest = back_up(app)
    newest.write_bytes(b"\0" * newest.stat().st_size)

    result = app.run("--check")

    assert result.returncode == 2, result.stdout + result.stderr
    assert first_line(result).startswith("CRITICAL: ")
    assert newest.name in first_line(result)


def test_check_is_critical_when_the_newest_backup_has_bytes_changed_in_place(app: App) -> None:
    back_up(app)
    make_db(app.main_db, rows=20)  # new content: the next backup is a file of its own
    newest = back_up(app)
    size = newest.stat().st_size
    flip_middle_bytes(newest)  # bit rot: same size, header intact
    assert newest.stat().st_size == size

    result = app.run("--check")

    assert result.returncode == 2, result.stdout + result.stderr
    assert first_line(result).startswith("CRITICAL: ")
    assert "newest backup is damaged" in first_line(result)
    assert str(newest) in first_line(result)
    assert "--verify" in first_line(result)


def test_check_is_ok_when_a_rewritten_newest_backup_still_has_its_recorded_bytes(app: App) -> None:
    back_up(app)
    make_db(app.main_db, rows=20)
    newest = back_up(app)
    flip_middle_bytes(newest)
    flip_middle_bytes(newest)  # flipped back: the bytes the run log recorded

    result = app.run("--check")

    assert result.returncode == 0, result.stdout + result.stderr
    assert first_line(result).startswith("OK: ")


def test_check_is_critical_when_the_only_backup_is_truncated(app: App) -> None:
    backup = back_up(app)
    os.truncate(backup, backup.stat().st_size // 2)

    result = app.run("--check")

    assert result.returncode == 2, result.stdout + result.stderr
    assert first_line(result).startswith("CRITICAL: ")


def test_check_warns_when_the_newest_backup_shrank_sharply(app: App) -> None:
    make_db(app.main_db, rows=400, payload=1000)
    big = back_up(app)
    app.main_db.unlink()
    make_db(app.main_db, rows=10)
    small = back_up(app)
    assert small.stat().st_size * 2 < big.stat().st_size

    result = app.run("--check")

    assert result.returncode == 1, result.stdout + result.stderr
    assert first_line(result).startswith("WARNING: ")
    assert "shrank" in first_line(result)


def test_check_accepts_a_shrink_within_max_shrink_percent(app: App) -> None:
    make_db(app.main_db, rows=400, payload=1000)
    back_up(app)
    app.main_db.unlink()
    make_db(app.main_db, rows=10)
    back_up(app)

    result = app.run("--check", "--max-shrink-percent", "100")

    assert result.returncode == 0, result.stdout + result.stderr


def test_check_warns_over_a_tiny_disk_budget(app: App) -> None:
    back_up(app)

    result = app.run("--check", "--max-disk-percent", "0.0000001")

    assert result.returncode == 1, result.stdout + result.stderr
    assert first_line(result).startswith("WARNING: ")
    assert "of the disk" in first_line(result)


def test_check_warns_when_backups_exceed_the_disk_budget_of_a_small_disk(
    app: App, small_disk: Path
) -> None:
    make_db(app.main_db, rows=300, payload=400)  # about 9% of a 2 MB disk once backed up
    folder = str(small_disk / "backups")
    back_up(app, "--backup-dir", folder)

    result = app.run("--check", "--backup-dir", folder)

    assert result.returncode == 1, result.stdout + result.stderr
    assert first_line(result).startswith("WARNING: ")
    assert "budget 5%" in first_line(result)


def test_check_is_critical_when_the_next_backup_cannot_fit(app: App, small_disk: Path) -> None:
    folder = str(small_disk / "backups")
    back_up(app, "--backup-dir", folder)
    make_db(app.main_db, rows=2500, payload=1000)  # the database outgrows the free space
    assert app.main_db.stat().st_size > shutil.disk_usage(small_disk).free

    result = app.run("--check", "--backup-dir", folder)

    assert result.returncode == 2, result.stdout + result.stderr
    assert first_line(result).startswith("CRITICAL: ")
    assert "free on the backup disk" in first_line(result)


def test_check_warns_when_the_run_log_is_damaged(app: App) -> None:
    back_up(app)
    app.log_file.write_text("{ not json", encoding="utf-8")

    result = app.run("--check")

    assert result.returncode == 1, result.stdout + result.stderr
    assert first_line(result).startswith("WARNING: ")


# --------------------------------------------------------------------------------------
# UNKNOWN: the check cannot tell
# --------------------------------------------------------------------------------------


def test_check_is_unknown_for_a_bad_config_file(app: App) -> None:
    back_up(app)
    (app.root / dbs.DEFAULT_CONFIG_FILE).write_text('{"keep_days": ', encoding="utf-8")

    result = app.run("--check")

    assert result.returncode == 3, result.stdout + result.stderr
    assert first_line(result).startswith("UNKNOWN: ")
    assert dbs.DEFAULT_CONFIG_FILE in first_line(result)
    assert_no_traceback(result)


def test_check_is_unknown_for_a_bad_setting_value(app: App) -> None:
    back_up(app)

    result = app.run("--check", "--max-age", "-5")

    assert result.returncode == 3, result.stdout + result.stderr
    assert first_line(result).startswith("UNKNOWN: ")


def test_check_is_unknown_for_a_flag_value_that_is_not_a_number(app: App) -> None:
    back_up(app)

    result = app.run("--check", "--max-age", "soon")

    assert result.returncode == 3, result.stdout + result.stderr
    assert first_line(result).startswith("UNKNOWN: ")


def test_check_json_is_a_document_even_when_unknown(app: App) -> None:
    (app.root / dbs.DEFAULT_CONFIG_FILE).write_text('{"keep_days": ', encoding="utf-8")

    result = app.run("--check", "--json")

    assert result.returncode == 3, result.stdout + result.stderr
    check = json.loads(result.stdout)
    assert (check["status"], check["exit_code"]) == ("UNKNOWN", 3)
    assert dbs.DEFAULT_CONFIG_FILE in check["problems"][0]["message"]


# --------------------------------------------------------------------------------------
# --json: one document with every figure
# --------------------------------------------------------------------------------------


def test_check_json_holds_every_figure(app: App) -> None:
    backup = back_up(app)

    result = app.run("--check", "--json")

    assert result.returncode == 0, result.stdout + result.stderr
    check = json.loads(result.stdout)
    assert check["status"] == "OK"
    assert check["exit_code"] == 0
    assert check["problems"] == []
    main = next(d for d in check["databases"] if d["database"] == "pet_painting.db")
    assert main["backups"] == 1
    assert main["newest"] == backup.name
    assert main["newest_size_bytes"] == backup.stat().st_size
    assert main["previous_size_bytes"] is None
    assert 0 <= main["newest_age_s"] < 3600
    assert main["last_run_status"] == "ok"
    assert main["source_size_bytes"] == app.main_db.stat().st_size
    usage = shutil.disk_usage(app.backup_dir)
    assert check["backup_dir_bytes"] == backup.stat().st_size
    assert check["disk_total_bytes"] == usage.total
    assert check["disk_free_bytes"] > 0
    assert check["disk_share_percent"] == pytest.approx(backup.stat().st_size * 100 / usage.total)
    assert check["disk_budget_percent"] == dbs.DEFAULTS["max_disk_percent"]
    assert check["max_age_hours"] == dbs.DEFAULTS["max_age_hours"]
    assert check["max_shrink_percent"] == dbs.DEFAULTS["max_shrink_percent"]
    assert check["next_backup_bytes"] == app.main_db.stat().st_size


def test_check_json_lists_the_problems_behind_the_verdict(app: App) -> None:
    result = app.run("--check", "--json")

    assert result.returncode == 2
    check = json.loads(result.stdout)
    assert check["status"] == "CRITICAL"
    assert check["exit_code"] == 2
    assert {"status": "CRITICAL", "message": "pet_painting.db: no backup"} in check["problems"]


def test_collect_check_reports_the_previous_backup_size(app: App) -> None:
    make_db(app.main_db, rows=400, payload=1000)
    big = back_up(app)
    app.main_db.unlink()
    make_db(app.main_db, rows=10)
    small = back_up(app)
    config = dbs.build_config(
        dbs.build_parser().parse_args(["--check"]), app_root=app.root, cwd=app.root
    )
    log = dbs.RunLog.read(config.log_file)

    check = dbs.collect_check(config, log, now=datetime.datetime.now().astimezone())

    main = check["databases"][0]
    assert (main["newest_size_bytes"], main["previous_size_bytes"]) == (
        small.stat().st_size,
        big.stat().st_size,
    )
    assert check["status"] == "WARNING"


# -- archives --------------------------------------------------------------------------------


def test_an_archive_past_the_disk_budget_is_not_started_the_run_says_so_and_check_warns(
    app: App,
) -> None:
    app.archives = True
    (app.root / "instance" / "pictures.bin").write_bytes(os.urandom(2_000_000))
    budget = ("--max-disk-percent", "0.0000001")  # far under 2 MB of any disk

    ran = app.run("--run", *budget)

    assert ran.returncode == 0, ran.stdout + ran.stderr  # the backups themselves are made
    assert "archive of" in ran.stdout and "not started" in ran.stdout, ran.stdout
    assert "--max-disk-percent" in ran.stdout  # the hint names the fix
    assert not list(app.backup_dir.glob("*.zip"))
    run = json.loads(app.log_file.read_text(encoding="utf-8"))["runs"][-1]
    (archive,) = run["archives"]
    assert archive["status"] == "skipped" and "budget" in archive["error"], archive
    checked = app.run("--check", "--json")
    assert checked.returncode == 1, checked.stdout
    problems = [p["message"] for p in json.loads(checked.stdout)["problems"]]
    assert any("the last archive was not started" in p for p in problems), problems
