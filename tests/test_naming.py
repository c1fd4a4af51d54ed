"""Backup names: one pattern builds, parses and recognises ``<name>.<YYYYmmdd_HHMMSS>.bak``.

Names are in local time; two backups in one second get distinct names; nothing is ever
overwritten; and only regular files with such a name, of a configured database, are ever
listed (and so ever pruned).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path

import pytest
from conftest import App, make_config, make_db, plant_backup
from hypothesis import given
from hypothesis import strategies as st

import database_backup_scheduler as dbs

WHEN = dt.datetime(2025, 10, 28, 3, 0, 0)
NAME_SHAPE = re.compile(r"^(?P<name>.+)\.(?P<stamp>\d{8}_\d{6})(?:-(?P<seq>\d+))?\.bak$")


# -- format / parse / is ---------------------------------------------------------------


def test_format_backup_name_is_name_dot_local_stamp_dot_bak() -> None:
    assert dbs.format_backup_name("pet_painting.db", WHEN) == "pet_painting.db.20251028_030000.bak"


def test_format_backup_name_adds_a_counter_for_a_second_backup_in_the_same_second() -> None:
    assert dbs.format_backup_name("main", WHEN, 1) == "main.20251028_030000-1.bak"
    assert dbs.format_backup_name("main", WHEN, 12) == "main.20251028_030000-12.bak"


def test_parse_backup_name_returns_name_time_and_counter() -> None:
    parsed = dbs.parse_backup_name("pet_painting.db.20251028_030000-2.bak")
    assert parsed is not None
    assert (parsed.name, parsed.taken_at, parsed.seq) == ("pet_painting.db", WHEN, 2)


def test_parse_backup_name_of_a_name_with_dots_and_digits_keeps_the_whole_name() -> None:
    parsed = dbs.parse_backup_name("app.20240101_000000.db.20251028_030000.bak")
    assert parsed is not None
    assert parsed.name == "app.20240101_000000.db"
    assert parsed.taken_at == WHEN


@pytest.mark.parametrize(
    "filename",
    [
        "pet_painting.db",
        "pet_painting.db.bak",
        "pet_painting.db.20251028.bak",
        "pet_painting.db.20251028_0300.bak",
        "pet_painting.db.20251028_030000.bak.tmp",
        "pet_painting.db.20251028_030000.BAK",
        "pet_painting.db.20251028_030000.bak~",
        "pet_painting.db_20251028_030000.bak",
        ".20251028_030000.bak",
        "pet_painting.db.20251328_030000.bak",  # month 13
        "pet_painting.db.20250230_030000.bak",  # 30 February
        "pet_painting.db.20251028_246000.bak",  # 24:60
        "pet_painting.db.20251028_235960.bak",  # second 60
        "pet_painting.db.20251028_030000-0.bak",  # the first backup has no counter
        "pet_painting.db.20251028_030000-01.bak",
        "pet_painting.db.20251028_030000-x.bak",
        "pet_painting.db.20251028_030000.bak.pre-restore",
        "notes.txt",
    ],
)
def test_parse_backup_name_rejects_names_the_tool_does_not_make(filename: str) -> None:
    assert dbs.parse_backup_name(filename) is None
    assert not dbs.is_backup_name(filename)


@pytest.mark.parametrize(
    "filename",
    [
        "pet_painting.db.20251028_030000.bak\n",
        "pet_painting.db.20251028_030000-1.bak\n",
    ],
)
def test_parse_backup_name_rejects_a_name_with_a_trailing_newline(filename: str) -> None:
    # A newline is legal in a POSIX file name; such a file was not made by the tool.
    assert dbs.parse_backup_name(filename) is None
    assert not dbs.is_backup_name(filename)


def test_is_backup_name_with_a_database_name_matches_only_that_database() -> None:
    assert dbs.is_backup_name("pet_painting.db.20251028_030000.bak", "pet_painting.db")
    assert not dbs.is_backup_name("root_pet_painting.db.20251028_030000.bak", "pet_painting.db")
    assert not dbs.is_backup_name("pet_painting.db.20251028_030000.bak", "pet_painting")


names = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.\- ]{0,40}[A-Za-z0-9_\-]", fullmatch=True)
moments = st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(9999, 12, 30))


@given(name=names, taken_at=moments, seq=st.integers(min_value=0, max_value=9999))
def test_parse_backup_name_inverts_format_backup_name(
    name: str, taken_at: dt.datetime, seq: int
) -> None:
    filename = dbs.format_backup_name(name, taken_at, seq)
    assert NAME_SHAPE.match(filename)
    parsed = dbs.parse_backup_name(filename)
    assert parsed is not None
    assert (parsed.name, parsed.taken_at, parsed.seq) == (
        name,
        taken_at.replace(microsecond=0),
        seq,
    )
    assert dbs.is_backup_name(filename, name)


@given(name=names)
def test_temp_name_is_never_a_backup_name(name: str) -> None:
    temp = dbs.format_temp_name(name)
    assert temp.startswith(".dbbackup-")
    assert dbs.is_temp_name(temp)
    assert not dbs.is_backup_name(temp)
    for suffix in ("-journal", "-wal", "-shm"):
        assert dbs.is_temp_name(temp + suffix)
        assert not dbs.is_backup_name(temp + suffix)


def test_temp_names_of_the_same_database_differ() -> None:
    assert dbs.format_temp_name("main") != dbs.format_temp_name("main")


@pytest.mark.parametrize(
    "filename",
    [
        "main.20251028_030000.bak",
        ".dbbackup-notes.txt",
        "dbbackup-main.0123456789abcdef.tmp",
        ".dbbackup-main.0123456789abcdef.tmp.bak",
        ".dbbackup-main.0123456789abcdef.tmp\n",
        ".database_backup.lock",
    ],
)
def test_is_temp_name_rejects_files_the_tool_does_not_make(filename: str) -> None:
    assert not dbs.is_temp_name(filename)


# -- names of real backups -------------------------------------------------------------


def test_backup_name_uses_local_time_of_the_run(app: App) -> None:
    # A POSIX TZ string needs no time zone database: UTC+08:30, no daylight saving.
    before = dt.datetime.now(dt.timezone.utc)
    result = app.run("--run", env={"TZ": "XYZ-08:30"})
    after = dt.datetime.now(dt.timezone.utc)
    assert result.returncode == 0, result.stderr
    [backup] = app.backups("pet_painting.db")
    parsed = NAME_SHAPE.match(backup.name)
    assert parsed is not None
    stamp = dt.datetime.strptime(parsed["stamp"], "%Y%m%d_%H%M%S")
    offset = dt.timedelta(hours=8, minutes=30)
    low = (before + offset).replace(tzinfo=None, microsecond=0)
    high = (after + offset).replace(tzinfo=None)
    assert low <= stamp <= high
    run = json.loads(app.log_file.read_text(encoding="utf-8"))["runs"][-1]
    assert run["started_at"].endswith("+08:30")


def test_default_databases_of_the_same_file_name_get_distinct_backup_names(app: App) -> None:
    make_db(app.root_db, rows=10)
    result = app.run("--run")
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in app.backup_dir.iterdir() if p.name.endswith(".bak"))
    assert len(names) == 2
    assert names[0].startswith("pet_painting.db.")
    assert names[1].startswith("root_pet_painting.db.")
    assert dbs.parse_backup_name(names[0]).name == "pet_painting.db"
    assert dbs.parse_backup_name(names[1]).name == "root_pet_painting.db"


def test_two_runs_in_the_same_second_make_two_distinct_backups(app: App) -> None:
    config = make_config(app.root)
    now = dt.datetime.now().astimezone().replace(microsecond=0)
    first = dbs.run_backups(config, clock=lambda: now)
    second = dbs.run_backups(config, clock=lambda: now)
    paths = {first.results[0].backup, second.results[0].backup}
    assert len(paths) == 2
    stamp = f"{now:%Y%m%d_%H%M%S}"
    assert sorted(Path(p).name for p in paths) == [
        f"pet_painting.db.{stamp}-1.bak",
        f"pet_painting.db.{stamp}.bak",
    ]


def test_backup_never_overwrites_a_file_that_has_its_name(app: App) -> None:
    now = dt.datetime.now().astimezone().replace(microsecond=0)
    app.backup_dir.mkdir(parents=True)
    occupant = app.backup_dir / f"pet_painting.db.{now:%Y%m%d_%H%M%S}.bak"
    occupant.write_bytes(b"not ours, keep me")
    report = dbs.run_backups(make_config(app.root), clock=lambda: now)
    assert report.results[0].status == "ok"
    assert Path(report.results[0].backup).name == f"pet_painting.db.{now:%Y%m%d_%H%M%S}-1.bak"
    assert occupant.read_bytes() == b"not ours, keep me"


def test_backup_never_writes_through_a_link_that_has_its_name(app: App, tmp_path: Path) -> None:
    now = dt.datetime.now().astimezone().replace(microsecond=0)
    app.backup_dir.mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    (app.backup_dir / f"pet_painting.db.{now:%Y%m%d_%H%M%S}.bak").symlink_to(victim)
    report = dbs.run_backups(make_config(app.root), clock=lambda: now)
    assert report.results[0].status == "ok"
    assert victim.read_bytes() == b"precious"
    assert Path(report.results[0].backup).name.endswith("-1.bak")


# -- which files are listed as backups -------------------------------------------------


def test_list_backups_lists_only_regular_files_named_for_a_configured_database(
    tmp_path: Path,
) -> None:
    source = make_db(tmp_path / "src.db", rows=5)
    folder = tmp_path / "backups"
    mine = plant_backup(source, folder, "main.db", WHEN)
    plant_backup(source, folder, "other.db", WHEN)  # another database's backup
    (folder / "main.db.20251028_040000.bak").mkdir()  # a folder named like a backup
    (folder / "main.db.20251028_050000.bak").symlink_to(mine)  # a link named like one
    (folder / "main.db.20251028_060000.bak.orig").write_bytes(b"x")
    (folder / "README.txt").write_bytes(b"x")
    (folder / dbs.format_temp_name("main.db")).write_bytes(b"x")
    listed = dbs.list_backups(folder, ["main.db"])
    assert [b.path.name for b in listed["main.db"]] == [mine.name]


def test_list_backups_lists_newest_first_by_time_then_counter(tmp_path: Path) -> None:
    source = make_db(tmp_path / "src.db", rows=5)
    folder = tmp_path / "backups"
    for when, seq in [(WHEN, 0), (WHEN, 2), (WHEN, 1), (WHEN - dt.timedelta(days=1), 0)]:
        plant_backup(source, folder, "main.db", when, seq)
    listed = dbs.list_backups(folder, ["main.db"])["main.db"]
    assert [b.path.name for b in listed] == [
        "main.db.20251028_030000-2.bak",
        "main.db.20251028_030000-1.bak",
        "main.db.20251028_030000.bak",
        "main.db.20251027_030000.bak",
    ]


def test_list_backups_of_a_missing_folder_is_empty(tmp_path: Path) -> None:
    assert dbs.list_backups(tmp_path / "nowhere", ["main.db"]) == {"main.db": []}


def test_list_backups_ignores_a_name_with_a_trailing_newline(tmp_path: Path) -> None:
    source = make_db(tmp_path / "src.db", rows=5)
    folder = tmp_path / "backups"
    folder.mkdir()
    odd = folder / "main.db.20251028_030000.bak\n"
    odd.write_bytes(source.read_bytes())
    assert dbs.list_backups(folder, ["main.db"]) == {"main.db": []}
    assert os.path.exists(odd)


def test_a_new_name_takes_the_counter_after_every_name_of_that_second(tmp_path: Path) -> None:
    taken_at = dt.datetime(2025, 10, 28, 3, 0, 0, 654321)  # a clock's microseconds
    for seq in (1, 2):  # the name with counter 0 was pruned
        (tmp_path / dbs.format_backup_name("main.db", taken_at, seq)).write_bytes(b"x")
        (tmp_path / dbs.format_archive_name("instance", taken_at, seq + 4)).write_bytes(b"x")

    assert dbs.next_counter(tmp_path, "main.db", taken_at) == 3
    assert dbs.next_counter(tmp_path, "instance/", taken_at) == 7
    assert dbs.next_counter(tmp_path, "other.db", taken_at) == 0
