"""Retention: delete backups older than keep-days (by the time in the name), never the newest
keep-last, only after this run backed the database up, and never a file the tool did not make.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest
from conftest import App, assert_no_traceback, make_db, plant_backup

import database_backup_scheduler as dbs

NOW = dt.datetime(2025, 10, 28, 3, 0, 0)


def backup_at(taken_at: dt.datetime, seq: int = 0, name: str = "main.db") -> dbs.BackupFile:
    filename = f"{name}.{taken_at:%Y%m%d_%H%M%S}{f'-{seq}' if seq else ''}.bak"
    return dbs.BackupFile(Path(filename), name, taken_at, seq, 100, (0, id(filename)))


def days_ago(*days: float) -> list[dbs.BackupFile]:
    return [backup_at(NOW - dt.timedelta(days=d)) for d in days]


def expired_ages(backups: list[dbs.BackupFile], keep_days: int, keep_last: int) -> list[float]:
    chosen = dbs.select_expired(backups, now=NOW, keep_days=keep_days, keep_last=keep_last)
    return sorted((NOW - b.taken_at) / dt.timedelta(days=1) for b in chosen)


# -- select_expired: the pure rule -----------------------------------------------------


def test_select_expired_of_no_backups_is_empty() -> None:
    assert dbs.select_expired([], now=NOW, keep_days=30, keep_last=3) == []


def test_select_expired_selects_backups_older_than_keep_days() -> None:
    backups = days_ago(0, 1, 2, 3, 29, 31, 40, 100)
    assert expired_ages(backups, keep_days=30, keep_last=3) == [31, 40, 100]


def test_select_expired_keeps_a_backup_exactly_keep_days_old() -> None:
    backups = days_ago(0, 1, 2, 30, 30.0001)
    assert expired_ages(backups, keep_days=30, keep_last=3) == [30.0001]


def test_select_expired_keeps_newest_keep_last_when_all_are_expired() -> None:
    backups = days_ago(50, 40, 60, 45, 70)
    assert expired_ages(backups, keep_days=30, keep_last=3) == [60, 70]


def test_select_expired_keeps_everything_when_fewer_than_keep_last() -> None:
    assert expired_ages(days_ago(100, 200), keep_days=30, keep_last=3) == []


def test_select_expired_with_keep_last_one_keeps_only_the_newest_expired() -> None:
    assert expired_ages(days_ago(100, 200, 300), keep_days=30, keep_last=1) == [200, 300]


def test_select_expired_with_keep_days_zero_keeps_only_keep_last() -> None:
    backups = days_ago(0.5, 1, 2, 3, 4)
    assert expired_ages(backups, keep_days=0, keep_last=2) == [2, 3, 4]


def test_select_expired_counts_keep_last_among_all_backups_not_only_expired_ones() -> None:
    # 3 recent backups already satisfy keep_last=3: every expired one goes.
    assert expired_ages(days_ago(0, 1, 2, 31, 32), keep_days=30, keep_last=3) == [31, 32]


def test_select_expired_keeps_future_dated_backups() -> None:
    future = [backup_at(NOW + dt.timedelta(days=d)) for d in (1, 400)]
    backups = future + days_ago(31, 32, 33, 34)
    chosen = dbs.select_expired(backups, now=NOW, keep_days=30, keep_last=1)
    assert not any(b.taken_at > NOW for b in chosen)
    assert sorted(NOW - b.taken_at for b in chosen) == [
        dt.timedelta(days=d) for d in (31, 32, 33, 34)
    ]


def test_select_expired_orders_same_second_backups_by_counter() -> None:
    old = NOW - dt.timedelta(days=40)
    backups = [backup_at(old, 1), backup_at(old, 0), backup_at(old, 3), backup_at(old, 2)]
    chosen = dbs.select_expired(backups, now=NOW, keep_days=30, keep_last=2)
    assert sorted(b.seq for b in chosen) == [0, 1]


def test_select_expired_does_not_depend_on_the_input_order() -> None:
    backups = days_ago(5, 100, 1, 60, 31, 0, 45)
    forward = dbs.select_expired(backups, now=NOW, keep_days=30, keep_last=2)
    backward = dbs.select_expired(backups[::-1], now=NOW, keep_days=30, keep_last=2)
    assert {b.path for b in forward} == {b.path for b in backward}
    assert expired_ages(backups, keep_days=30, keep_last=2) == [31, 45, 60, 100]


def test_select_expired_never_selects_the_newest_backup_even_with_keep_last_zero() -> None:
    # The configuration refuses keep_last=0; the rule itself still never empties the folder.
    chosen = dbs.select_expired(days_ago(50, 60), now=NOW, keep_days=1, keep_last=0)
    assert [NOW - b.taken_at for b in chosen] == [dt.timedelta(days=60)]


# -- prune_backups: the one function that deletes --------------------------------------


def test_prune_backups_deletes_the_selected_files(tmp_path: Path) -> None:
    source = make_db(tmp_path / "src.db", rows=5)
    old = plant_backup(source, tmp_path / "b", "main.db", NOW - dt.timedelta(days=40))
    [listed] = dbs.list_backups(tmp_path / "b", ["main.db"])["main.db"]
    deleted, errors = dbs.prune_backups([listed])
    assert deleted == [old]
    assert errors == []
    assert not old.exists()


def test_prune_backups_skips_a_file_that_became_a_link(tmp_path: Path) -> None:
    source = make_db(tmp_path / "src.db", rows=5)
    old = plant_backup(source, tmp_path / "b", "main.db", NOW - dt.timedelta(days=40))
    [listed] = dbs.list_backups(tmp_path / "b", ["main.db"])["main.db"]
    old.unlink()
    old.symlink_to(source)
    deleted, errors = dbs.prune_backups([listed])
    assert deleted == []
    assert old.is_symlink()
    assert source.exists()


def test_prune_backups_of_a_file_already_gone_is_not_an_error(tmp_path: Path) -> None:
    source = make_db(tmp_path / "src.db", rows=5)
    old = plant_backup(source, tmp_path / "b", "main.db", NOW - dt.timedelta(days=40))
    [listed] = dbs.list_backups(tmp_path / "b", ["main.db"])["main.db"]
    old.unlink()
    assert dbs.prune_backups([listed]) == ([], [])


# -- end to end: a run prunes ----------------------------------------------------------


@pytest.fixture
def aged(app: App) -> dict[int, Path]:
    """Real SQLite backups of the main database planted 1..60 days ago, by age in days."""
    now = dt.datetime.now().replace(microsecond=0)
    return {
        days: plant_backup(
            app.main_db, app.backup_dir, "pet_painting.db", now - dt.timedelta(days=days)
        )
        for days in (1, 2, 10, 29, 31, 45, 60)
    }


def test_run_deletes_backups_older_than_keep_days(app: App, aged: dict[int, Path]) -> None:
    result = app.run("--run", "--keep-days", "30", "--keep-last", "3")
    assert result.returncode == 0, result.stderr
    assert [d for d, p in aged.items() if p.exists()] == [1, 2, 10, 29]
    assert len(app.backups("pet_painting.db")) == 5
    for days in (31, 45, 60):
        assert f"pruned {aged[days].name}" in result.stdout


def test_run_keeps_keep_last_backups_when_all_are_older_than_keep_days(
    app: App, aged: dict[int, Path]
) -> None:
    result = app.run("--run", "--keep-days", "0", "--keep-last", "3")
    assert result.returncode == 0, result.stderr
    # The new backup and the two newest old ones.
    assert [d for d, p in aged.items() if p.exists()] == [1, 2]
    assert len(app.backups("pet_painting.db")) == 3


def test_run_uses_default_keep_days_30(app: App, aged: dict[int, Path]) -> None:
    result = app.run("--run")
    assert result.returncode == 0, result.stderr
    assert [d for d, p in aged.items() if p.exists()] == [1, 2, 10, 29]


def test_run_does_not_prune_a_database_whose_backup_failed(app: App, aged: dict[int, Path]) -> None:
    app.main_db.unlink()
    (app.main_db.parent / "pet_painting.db-wal").unlink(missing_ok=True)
    (app.main_db.parent / "pet_painting.db-shm").unlink(missing_ok=True)
    result = app.run("--run", "--keep-days", "0", "--keep-last", "1")
    assert result.returncode == 1
    assert all(p.exists() for p in aged.values())


def test_run_does_not_prune_a_skipped_optional_database(app: App) -> None:
    now = dt.datetime.now().replace(microsecond=0)
    old = [
        plant_backup(
            app.main_db, app.backup_dir, "root_pet_painting.db", now - dt.timedelta(days=d)
        )
        for d in (100, 200)
    ]
    assert not app.root_db.exists()
    result = app.run("--run", "--keep-days", "0", "--keep-last", "1")
    assert result.returncode == 0, result.stderr
    assert all(p.exists() for p in old)


def test_run_prunes_a_database_that_succeeded_while_another_failed(
    app: App, tmp_path: Path
) -> None:
    now = dt.datetime.now().replace(microsecond=0)
    good = make_db(tmp_path / "good.db", rows=5)
    old_good = plant_backup(good, app.backup_dir, "good", now - dt.timedelta(days=90))
    old_bad = plant_backup(good, app.backup_dir, "bad", now - dt.timedelta(days=90))
    result = app.run(
        "--run", "--db", f"good={good}", "--db", f"bad={tmp_path / 'missing.db'}",
        "--keep-days", "30", "--keep-last", "1",
    )  # fmt: skip
    assert result.returncode == 1
    assert not old_good.exists()
    assert old_bad.exists()


def test_run_prunes_only_backups_of_the_configured_databases(app: App) -> None:
    now = dt.datetime.now().replace(microsecond=0)
    long_ago = now - dt.timedelta(days=400)
    mine = plant_backup(app.main_db, app.backup_dir, "pet_painting.db", long_ago)
    other = plant_backup(app.main_db, app.backup_dir, "unrelated.db", long_ago)
    result = app.run("--run", "--keep-days", "1", "--keep-last", "1")
    assert result.returncode == 0, result.stderr
    assert not mine.exists()
    assert other.exists()


def test_run_never_deletes_files_it_did_not_make(app: App, tmp_path: Path) -> None:
    now = dt.datetime.now().replace(microsecond=0)
    stamp = f"{now - dt.timedelta(days=400):%Y%m%d_%H%M%S}"
    folder = app.backup_dir
    folder.mkdir(parents=True)
    outside = make_db(tmp_path / "outside.db", rows=5)
    keep = {
        "foreign": folder / "notes.txt",
        "other_bak": folder / f"something_else.{stamp}.bak",
        "no_stamp": folder / "pet_painting.db.bak",
        "odd_suffix": folder / f"pet_painting.db.{stamp}.bak.orig",
        "link": folder / f"pet_painting.db.{stamp}-1.bak",
        "folder": folder / f"pet_painting.db.{stamp}-2.bak",
    }
    for key, path in keep.items():
        if key == "link":
            path.symlink_to(outside)
        elif key == "folder":
            path.mkdir()
            (path / "inside.txt").write_bytes(b"x")
        else:
            path.write_bytes(outside.read_bytes())
    result = app.run("--run", "--keep-days", "1", "--keep-last", "1")
    assert result.returncode == 0, result.stderr
    still_there = {key for key, path in keep.items() if os.path.lexists(path)}
    assert still_there == set(keep)
    assert outside.exists()
    assert (keep["folder"] / "inside.txt").exists()


def test_run_never_deletes_a_file_whose_name_ends_in_a_newline(app: App) -> None:
    now = dt.datetime.now().replace(microsecond=0)
    app.backup_dir.mkdir(parents=True)
    odd = app.backup_dir / f"pet_painting.db.{now - dt.timedelta(days=400):%Y%m%d_%H%M%S}.bak\n"
    odd.write_bytes(app.main_db.read_bytes())
    result = app.run("--run", "--keep-days", "1", "--keep-last", "1")
    assert result.returncode == 0, result.stderr
    assert odd.exists()


def test_run_never_prunes_the_backup_it_just_made(app: App) -> None:
    # A clock that once ran ahead left backups dated in the future; they are kept, and they
    # fill keep-last, but the backup this run made is still the newest real one.
    for year in (2090, 2091, 2092):
        plant_backup(app.main_db, app.backup_dir, "pet_painting.db", dt.datetime(year, 1, 1))
    result = app.run("--run", "--keep-days", "0", "--keep-last", "3", "--json")
    assert result.returncode == 0, result.stderr
    [made] = [r for r in json.loads(result.stdout)["results"] if r["status"] == "ok"]
    assert Path(made["backup"]).exists()
    assert made["backup"] not in made["pruned"]
    assert len(app.backups("pet_painting.db")) == 4


def test_run_judges_age_by_the_name_not_the_file_time(app: App) -> None:
    now = dt.datetime.now().replace(microsecond=0)
    new_name_old_file = plant_backup(app.main_db, app.backup_dir, "pet_painting.db", now)
    long_ago = (now - dt.timedelta(days=400)).timestamp()
    os.utime(new_name_old_file, (long_ago, long_ago))
    old_name_new_file = plant_backup(
        app.main_db, app.backup_dir, "pet_painting.db", now - dt.timedelta(days=400)
    )
    result = app.run("--run", "--keep-days", "30", "--keep-last", "1")
    assert result.returncode == 0, result.stderr
    assert new_name_old_file.exists()
    assert not old_name_new_file.exists()


def test_run_with_a_keep_days_beyond_the_calendar_keeps_everything_or_is_refused(
    app: App, aged: dict[int, Path]
) -> None:
    # 999999 days is how an operator says "forever"; it must not crash half-way through a run.
    result = app.run("--run", "--keep-days", "999999")
    assert_no_traceback(result)
    assert "unexpected error" not in result.stdout + result.stderr
    if result.returncode == 2:  # refused up front, like any bad value
        assert len(app.backups("pet_painting.db")) == len(aged)
        assert not app.log_file.exists()
    else:
        assert result.returncode == 0, result.stdout + result.stderr
        assert all(p.exists() for p in aged.values())
        assert json.loads(app.log_file.read_text(encoding="utf-8"))["runs"][-1]["pruned"] == []


def test_run_records_pruned_files_in_the_log(app: App, aged: dict[int, Path]) -> None:
    result = app.run("--run", "--keep-days", "30")
    assert result.returncode == 0, result.stderr
    run = json.loads(app.log_file.read_text(encoding="utf-8"))["runs"][-1]
    expected = sorted(str(aged[d]) for d in (31, 45, 60))
    assert sorted(run["pruned"]) == expected
