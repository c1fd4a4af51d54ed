"""--verify: SQLite's own check and the run log's SHA-256 of each backup, on real files."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from conftest import (
    App,
    assert_no_traceback,
    damage_middle_page,
    integrity,
    journal_mode_in_header,
    make_db,
    mounted_tmpfs,
    plant_backup,
)

import database_backup_scheduler as dbs


def _back_up(app: App, *flags: str) -> Path:
    """The app writes a row, then a real backup runs; return the new backup.

    The new row makes each backup a file of its own (the backup of an unchanged
    database is a hard link to the previous one).
    """
    make_db(app.main_db, rows=1)
    before = set(app.backup_dir.glob("*")) if app.backup_dir.exists() else set()
    result = app.run("--run", *flags)
    assert result.returncode == 0, result.stdout + result.stderr
    (new,) = {p for p in app.backup_dir.iterdir() if dbs.is_backup_name(p.name)} - before
    return new


def _line_naming(output: str, backup: Path) -> str:
    lines = [line for line in output.splitlines() if backup.name in line]
    assert len(lines) == 1, output
    return lines[0]


def _truncate_to_half(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _alter_a_row_keeping_integrity(backup: Path, scratch: Path) -> None:
    """Change one value through SQLite in a copy, then put the copy back under the backup's name.

    The result is a well-formed database (integrity_check passes) whose bytes differ
    from the ones the run log hashed: only the SHA-256 can tell.
    """
    shutil.copyfile(backup, scratch)
    conn = sqlite3.connect(scratch)
    with conn:
        conn.execute("UPDATE items SET value = value + 1 WHERE id = 1")
    conn.close()
    shutil.copyfile(scratch, backup)


def test_verify_passes_fresh_backups_and_matches_their_logged_sha256(app: App) -> None:
    backup = _back_up(app)

    result = app.run("--verify")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SHA-256 matches the log" in _line_naming(result.stdout, backup)
    assert "1 of 1 backup(s) passed" in result.stdout


@pytest.mark.parametrize("quick", [False, True], ids=["integrity_check", "quick_check"])
def test_verify_fails_a_backup_damaged_in_the_middle(app: App, quick: bool) -> None:
    backup = _back_up(app)
    damage_middle_page(backup)

    result = app.run("--verify", *(["--quick"] if quick else []))

    assert result.returncode == 1, result.stdout + result.stderr
    line = _line_naming(result.stdout, backup)
    assert ("quick_check" if quick else "integrity_check") in line
    assert "0 of 1 backup(s) passed" in result.stdout
    assert_no_traceback(result)


@pytest.mark.parametrize("quick", [False, True], ids=["integrity_check", "quick_check"])
def test_verify_fails_a_truncated_backup(app: App, quick: bool) -> None:
    backup = _back_up(app)
    _truncate_to_half(backup)

    result = app.run("--verify", *(["--quick"] if quick else []))

    assert result.returncode == 1, result.stdout + result.stderr
    assert ("quick_check" if quick else "integrity_check") in _line_naming(result.stdout, backup)
    assert "0 of 1 backup(s) passed" in result.stdout


def test_verify_fails_a_backup_whose_sha256_differs_from_the_log(app: App, tmp_path: Path) -> None:
    backup = _back_up(app)
    logged = dbs.sha256_file(backup)
    _alter_a_row_keeping_integrity(backup, tmp_path / "altered.db")
    assert integrity(backup) == "ok"
    assert dbs.sha256_file(backup) != logged

    result = app.run("--verify", str(backup))

    assert result.returncode == 1, result.stdout + result.stderr
    assert "SHA-256 differs" in _line_naming(result.stdout, backup)


def test_verify_names_only_the_failing_backup_among_good_ones(app: App) -> None:
    good = _back_up(app)
    bad = _back_up(app)
    damage_middle_page(bad)

    result = app.run("--verify")

    assert result.returncode == 1
    assert "matches the log" in _line_naming(result.stdout, good)
    assert "integrity_check" in _line_naming(result.stdout, bad)
    assert "1 of 2 backup(s) passed" in result.stdout


def test_verify_checks_only_the_files_named(app: App) -> None:
    good = _back_up(app)
    bad = _back_up(app)
    damage_middle_page(bad)

    result = app.run("--verify", str(good))

    assert result.returncode == 0, result.stdout
    assert bad.name not in result.stdout


def test_verify_reports_a_backup_the_log_does_not_know(app: App) -> None:
    planted = plant_backup(
        app.main_db, app.backup_dir, "pet_painting.db", datetime.datetime(2025, 1, 2, 3, 4, 5)
    )

    result = app.run("--verify")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SHA-256 not in the log" in _line_naming(result.stdout, planted)


def test_verify_fails_for_a_named_file_that_does_not_exist(app: App) -> None:
    missing = app.backup_dir / "pet_painting.db.20250101_000000.bak"

    result = app.run("--verify", str(missing))

    assert result.returncode == 1
    assert missing.name in result.stdout
    assert_no_traceback(result)


@pytest.mark.parametrize("quick", [False, True], ids=["integrity_check", "quick_check"])
def test_verify_creates_no_side_files_beside_backups(app: App, quick: bool) -> None:
    _back_up(app)
    # A raw copy of a WAL database is a WAL-mode file: opened normally, it grows a -shm.
    raw = plant_backup(
        app.main_db, app.backup_dir, "pet_painting.db", datetime.datetime(2025, 1, 2, 3, 4, 5)
    )
    assert journal_mode_in_header(raw) == "wal"
    before = sorted(os.listdir(app.backup_dir))

    result = app.run("--verify", *(["--quick"] if quick else []))

    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(os.listdir(app.backup_dir)) == before


def test_verify_creates_no_side_files_beside_a_damaged_backup(app: App) -> None:
    backup = _back_up(app)
    damage_middle_page(backup)
    before = sorted(os.listdir(app.backup_dir))

    app.run("--verify")

    assert sorted(os.listdir(app.backup_dir)) == before


def test_verify_json_is_one_document_with_each_backup(app: App) -> None:
    good = _back_up(app)
    bad = _back_up(app)
    _truncate_to_half(bad)

    result = app.run("--verify", "--json")

    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert document["ok"] is False
    by_name = {Path(entry["path"]).name: entry for entry in document["backups"]}
    assert set(by_name) == {good.name, bad.name}
    assert by_name[good.name]["ok"] is True
    assert by_name[good.name]["integrity"] == "ok"
    assert by_name[good.name]["sha256"] == by_name[good.name]["expected_sha256"]
    assert by_name[good.name]["sha256"] == dbs.sha256_file(good)
    assert by_name[bad.name]["ok"] is False
    assert by_name[bad.name]["error"]


def test_verify_backup_reads_a_safety_copy_as_restorable(app: App) -> None:
    safety = app.backup_dir / "pet_painting.db.20250101_000000.pre-restore"
    app.backup_dir.mkdir(parents=True)
    shutil.copyfile(app.main_db, safety)

    checked = dbs.verify_backup(safety)

    assert checked.ok, checked
    assert checked.database == "pet_painting.db"


def test_verify_passes_a_gzip_backup_and_leaves_nothing_beside_it(app: App) -> None:
    backup = _back_up(app, "--compress", "gzip")
    assert backup.name.endswith(".bak.gz")
    before = sorted(os.listdir(app.backup_dir))

    result = app.run("--verify")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SHA-256 matches the log" in _line_naming(result.stdout, backup)
    assert sorted(os.listdir(app.backup_dir)) == before


def test_verify_fails_a_truncated_gzip_backup(app: App) -> None:
    backup = _back_up(app, "--compress", "gzip")
    _truncate_to_half(backup)
    before = sorted(os.listdir(app.backup_dir))

    result = app.run("--verify")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "0 of 1 backup(s) passed" in result.stdout
    assert backup.name in result.stdout
    assert sorted(os.listdir(app.backup_dir)) == before
    assert_no_traceback(result)


def test_verify_reads_backups_on_read_only_media(app: App, tmp_path: Path) -> None:
    # Opened read-only and immutable, a backup needs no -wal, -shm or journal, so it
    # verifies where none can be created: here a file system mounted read-only.
    with mounted_tmpfs(tmp_path / "media", "2m") as media:
        made = _back_up(app)
        on_media = [shutil.copy2(made, media / made.name)]
        raw = datetime.datetime(2025, 1, 2, 3, 4, 5)
        on_media.append(plant_backup(app.main_db, media, "pet_painting.db", raw))
        assert journal_mode_in_header(Path(on_media[-1])) == "wal"
        remounted = subprocess.run(["mount", "-o", "remount,ro", str(media)], capture_output=True)
        if remounted.returncode != 0:
            pytest.skip("cannot remount the tmpfs read-only")

        result = app.run("--verify", "--backup-dir", str(media))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 of 2 backup(s) passed" in result.stdout
