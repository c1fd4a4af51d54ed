"""Storage: an unchanged database shares its previous backup's file (a hard link), compressed
backups round-trip, and tiered retention keeps the newest backup of each day, week and month.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import App, assert_no_traceback, dump, integrity, make_config, make_db, plant_backup

import database_backup_scheduler as dbs

HAS_ZSTD = importlib.util.find_spec("zstandard") is not None
KINDS = [
    "gzip",
    pytest.param(
        "zstd",
        marks=pytest.mark.skipif(
            not HAS_ZSTD, reason="the zstandard package is not installed (pip install zstandard)"
        ),
    ),
]
SUFFIX = {"gzip": ".bak.gz", "zstd": ".bak.zst"}


def run_ok(app: App, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the script; it must succeed."""
    result = app.run(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_no_traceback(result)
    return result


def backup_files(app: App) -> list[Path]:
    """Every backup of the main database, plain or compressed, oldest first."""
    if not app.backup_dir.exists():
        return []
    found = [p for p in app.backup_dir.iterdir() if dbs.is_backup_name(p.name, "pet_painting.db")]
    return sorted(found, key=_taken)


def _taken(path: Path) -> tuple[dt.datetime, int]:
    parsed = dbs.parse_backup_name(path.name)
    assert parsed is not None, path
    return parsed.taken_at, parsed.seq


def logged_results(log_file: Path, database: str = "pet_painting.db") -> list[dict[str, Any]]:
    """Each result for ``database`` in the run log, oldest first."""
    log = json.loads(log_file.read_text(encoding="utf-8"))
    results = [r for run in log["runs"] for r in run.get("results", [])]
    return [r for r in results if r["database"] == database]


def change(database: Path) -> None:
    """The app writes a row: the next backup's bytes differ."""
    make_db(database, rows=1)


def flip_byte(path: Path, offset: int) -> None:
    """Invert one byte in place (same inode), as a disk or a careless edit would."""
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))


def identity(path: Path) -> tuple[int, int]:
    """A file's identity: two names with the same identity are hard links of one file."""
    info = os.stat(path)
    return info.st_dev, info.st_ino


# --------------------------------------------------------------------------------------
# An unchanged database: the new backup is a hard link to the previous one
# --------------------------------------------------------------------------------------


def test_backup_of_an_unchanged_database_is_a_hard_link_of_the_previous_one(app: App) -> None:
    run_ok(app, "--run")
    run_ok(app, "--run")

    first, second = backup_files(app)
    assert identity(first) == identity(second)
    assert os.stat(second).st_nlink == 2


def test_run_log_names_the_backup_an_unchanged_one_is_linked_to(app: App) -> None:
    run_ok(app, "--run")
    run_ok(app, "--run")

    first, second = logged_results(app.log_file)
    assert first["linked_to"] is None
    assert second["linked_to"] == first["backup"]
    assert second["sha256"] == first["sha256"]
    assert second["size_bytes"] == first["size_bytes"]


def test_run_says_an_unchanged_backup_shares_the_previous_file(app: App) -> None:
    run_ok(app, "--run")

    result = run_ok(app, "--run")

    assert "unchanged: shares the previous file" in result.stdout


def test_run_summary_counts_the_bytes_of_a_new_backup_as_new_on_disk(app: App) -> None:
    result = run_ok(app, "--run")

    (backup,) = backup_files(app)
    size = backup.stat().st_size
    assert f"   backups made: 1, {size:,} new bytes on disk\n" in result.stdout


def test_run_summary_counts_no_new_bytes_on_disk_for_an_unchanged_backup(app: App) -> None:
    run_ok(app, "--run")

    result = run_ok(app, "--run")

    assert (
        "   backups made: 1 (1 unchanged, sharing the previous file), 0 new bytes on disk\n"
        in result.stdout
    )


def test_every_unchanged_run_adds_one_name_to_the_same_file(app: App) -> None:
    for _ in range(3):
        run_ok(app, "--run")

    files = backup_files(app)
    assert len(files) == 3
    assert len({identity(p) for p in files}) == 1
    assert os.stat(files[0]).st_nlink == 3


def test_ten_unchanged_runs_keep_one_copy_on_disk(app: App) -> None:
    for _ in range(10):
        run_ok(app, "--run", "--keep-last", "20")

    files = backup_files(app)
    assert len(files) == 10
    assert len({identity(p) for p in files}) == 1
    stats = json.loads(app.run("--stats", "--json").stdout)
    assert stats["backup_dir_bytes"] == files[0].stat().st_size
    assert all(integrity(p) == "ok" for p in files)


def test_backup_of_a_changed_database_is_a_new_separate_file(app: App) -> None:
    run_ok(app, "--run")
    change(app.main_db)

    run_ok(app, "--run")

    first, second = backup_files(app)
    assert identity(first) != identity(second)
    assert os.stat(first).st_nlink == os.stat(second).st_nlink == 1
    assert logged_results(app.log_file)[-1]["linked_to"] is None
    assert dump(second, immutable=True) == dump(app.main_db)
    assert dump(first, immutable=True) != dump(second, immutable=True)


def test_linked_backups_both_pass_verify(app: App) -> None:
    run_ok(app, "--run")
    run_ok(app, "--run")

    result = run_ok(app, "--verify")

    assert "2 of 2 backup(s) passed" in result.stdout
    assert result.stdout.count("SHA-256 matches the log") == 2


def test_pruning_the_older_name_of_a_linked_backup_leaves_the_newer_one_whole(app: App) -> None:
    config = make_config(app.root, "--keep-days", "30", "--keep-last", "1")
    now = dt.datetime.now().astimezone().replace(microsecond=0)
    dbs.run_backups(config, clock=lambda: now - dt.timedelta(days=40))
    report = dbs.run_backups(config, clock=lambda: now)

    (result,) = [r for r in report.results if r.status == "ok"]
    assert result.linked_to is not None
    assert result.pruned == [result.linked_to]
    (survivor,) = backup_files(app)
    assert str(survivor) == result.backup
    assert os.stat(survivor).st_nlink == 1
    assert integrity(survivor) == "ok"
    assert dbs.sha256_file(survivor) == result.sha256


def test_previous_backup_whose_bytes_changed_since_it_was_logged_is_healed_not_linked_to(
    app: App,
) -> None:
    run_ok(app, "--run")
    (first,) = backup_files(app)
    rotten = identity(first)
    flip_byte(first, first.stat().st_size // 2)  # same inode: a link would share the damage

    run_ok(app, "--run")

    healed, fresh = backup_files(app)
    assert healed == first
    # The fresh copy was never linked to the rotten file: the older name now shares it.
    assert identity(fresh) != rotten
    assert identity(healed) == identity(fresh)
    recorded = logged_results(app.log_file)
    for path in (healed, fresh):
        assert integrity(path) == "ok"
        assert dump(path, immutable=True) == dump(app.main_db)
        assert dbs.sha256_file(path) == recorded[0]["sha256"] == recorded[1]["sha256"]
    assert app.run("--verify").returncode == 0


def test_previous_backup_the_run_log_does_not_know_is_not_linked_to(app: App) -> None:
    run_ok(app, "--run")
    (first,) = backup_files(app)
    app.log_file.unlink()  # no recorded SHA-256: nothing proves the file is still whole

    run_ok(app, "--run")

    _, fresh = backup_files(app)
    assert identity(fresh) != identity(first)
    assert logged_results(app.log_file)[-1]["linked_to"] is None


# --------------------------------------------------------------------------------------
# --stats counts the bytes of a file once, whatever number of names it has
# --------------------------------------------------------------------------------------


def stats_json(app: App) -> dict[str, Any]:
    return json.loads(run_ok(app, "--stats", "--json").stdout)


def test_stats_counts_the_bytes_of_linked_backups_once(app: App) -> None:
    for _ in range(3):
        run_ok(app, "--run")
    size = backup_files(app)[0].stat().st_size

    stats = stats_json(app)

    (main,) = [d for d in stats["databases"] if d["database"] == "pet_painting.db"]
    assert main["backups"] == 3
    assert main["total_bytes"] == size
    assert stats["backup_dir_bytes"] == size


def test_stats_counts_each_separate_backup(app: App) -> None:
    run_ok(app, "--run")
    change(app.main_db)
    run_ok(app, "--run")
    run_ok(app, "--run")  # unchanged since the second: a link to it
    first, second, _ = backup_files(app)

    stats = stats_json(app)

    expected = first.stat().st_size + second.stat().st_size
    (main,) = [d for d in stats["databases"] if d["database"] == "pet_painting.db"]
    assert main["backups"] == 3
    assert main["total_bytes"] == expected
    assert stats["backup_dir_bytes"] == expected


# --------------------------------------------------------------------------------------
# A file system without hard links (FAT): the tool copies instead
# --------------------------------------------------------------------------------------

FAT_HINT = "needs root on Linux, mkfs.vfat (dosfstools) and the vfat module or fusefat"


def _unmount(folder: Path) -> None:
    for _ in range(50):
        done = subprocess.run(["umount", str(folder)], capture_output=True, text=True)
        if done.returncode == 0 or not os.path.ismount(folder):
            return
        time.sleep(0.1)  # a FUSE mount can stay busy for a moment after the last close
    raise AssertionError(f"cannot unmount {folder}: {done.stderr.strip()}")


@contextlib.contextmanager
def mounted_fat(image: Path, folder: Path, size_mb: int = 32) -> Iterator[Path]:
    """A FAT file system (no hard links, no Unix permissions) mounted on ``folder``.

    Tries the kernel's vfat through a loop device, then fusefat; skips the test where
    neither can be mounted.
    """
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip(f"mounting a FAT image {FAT_HINT}")
    mkfs = shutil.which("mkfs.vfat") or shutil.which("mkfs.fat")
    if mkfs is None or not shutil.which("mount"):
        pytest.skip(f"mkfs.vfat is not installed; mounting a FAT image {FAT_HINT}")
    with open(image, "wb") as handle:
        handle.truncate(size_mb * 1024 * 1024)
    subprocess.run([mkfs, str(image)], check=True, capture_output=True)
    folder.mkdir(parents=True, exist_ok=True)
    attempts = [["mount", "-o", "loop", str(image), str(folder)]]
    if shutil.which("fusefat"):
        attempts.append(["fusefat", "-o", "rw+", str(image), str(folder)])
    failures = []
    for command in attempts:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if done.returncode == 0 and os.path.ismount(folder):
            break
        failures.append(f"{command[0]}: {(done.stderr or done.stdout).strip()[:120]}")
    else:
        pytest.skip(f"cannot mount a FAT image here ({'; '.join(failures)}); {FAT_HINT}")
    try:
        yield folder
    finally:
        _unmount(folder)


@pytest.fixture
def fat(tmp_path: Path) -> Iterator[Path]:
    """A mounted FAT file system on which hard links really fail."""
    with mounted_fat(tmp_path / "fat.img", tmp_path / "fat") as folder:
        probe = folder / "probe"
        probe.write_bytes(b"x")
        with pytest.raises(OSError):
            os.link(probe, folder / "probe-link")
        probe.unlink()
        yield folder


def run_into(
    app: App, database: Path, backup_dir: Path, *flags: str
) -> subprocess.CompletedProcess[str]:
    """Back up ``database`` as main.db into ``backup_dir``, with a run log of its own."""
    return app.run(
        "--run",
        "--db",
        f"main.db={database}",
        "--backup-dir",
        str(backup_dir),
        "--log-file",
        str(app.root / "fat-log.json"),
        *flags,
    )


@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
def test_unchanged_backup_is_a_separate_copy_where_hard_links_fail(
    app: App, tmp_path: Path, fat: Path, journal_mode: str
) -> None:
    database = make_db(tmp_path / "source.db", rows=200, journal_mode=journal_mode)
    backup_dir = fat / "backups"
    backup_dir.mkdir()

    for _ in range(2):
        result = run_into(app, database, backup_dir)
        assert result.returncode == 0, result.stdout + result.stderr

    first, second = sorted(p for p in backup_dir.iterdir() if dbs.is_backup_name(p.name))
    assert first.read_bytes() == second.read_bytes()
    assert os.stat(second).st_nlink == 1
    assert all(r["linked_to"] is None for r in logged_results(app.root / "fat-log.json", "main.db"))
    assert integrity(second) == "ok"
    assert [p.name for p in backup_dir.iterdir() if dbs.is_temp_name(p.name)] == []


def test_wal_database_is_backed_up_into_a_folder_on_fat(app: App, fat: Path) -> None:
    backup_dir = fat / "backups"
    backup_dir.mkdir()

    result = run_into(app, app.main_db, backup_dir)

    assert result.returncode == 0, result.stdout + result.stderr
    (backup,) = [p for p in backup_dir.iterdir() if dbs.is_backup_name(p.name)]
    assert integrity(backup) == "ok"
    assert sorted(p.name for p in backup_dir.iterdir() if p.name.startswith(".dbbackup")) == []


def test_backup_folder_is_created_on_a_file_system_without_unix_permissions(
    app: App, tmp_path: Path, fat: Path
) -> None:
    database = make_db(tmp_path / "rollback.db", rows=10, journal_mode="delete")

    result = run_into(app, database, fat / "new" / "backups")

    assert result.returncode == 0, result.stdout + result.stderr
    assert len([p for p in (fat / "new" / "backups").iterdir() if dbs.is_backup_name(p.name)]) == 1


# --------------------------------------------------------------------------------------
# Compressed backups: --compress gzip / zstd
# --------------------------------------------------------------------------------------


def unpack(path: Path, kind: str, target: Path) -> Path:
    """Unpack a compressed backup with the compression library itself (not the module)."""
    if kind == "gzip":
        with gzip.open(path, "rb") as packed, open(target, "wb") as plain:
            shutil.copyfileobj(packed, plain)
    else:
        import zstandard

        with open(path, "rb") as packed, open(target, "wb") as plain:
            zstandard.ZstdDecompressor().copy_stream(packed, plain)
    return target


@pytest.mark.parametrize("kind", KINDS)
def test_compressed_backup_unpacks_to_the_database(app: App, tmp_path: Path, kind: str) -> None:
    before = dump(app.main_db)

    run_ok(app, "--run", "--compress", kind)

    (backup,) = backup_files(app)
    assert backup.name.endswith(SUFFIX[kind])
    plain = unpack(backup, kind, tmp_path / "unpacked.db")
    assert integrity(plain) == "ok"
    assert dump(plain, immutable=True) == before
    (result,) = logged_results(app.log_file)
    assert result["compression"] == kind
    assert result["sha256"] == dbs.sha256_file(backup)
    assert result["content_sha256"] == dbs.sha256_file(plain)


@pytest.mark.parametrize("kind", KINDS)
def test_compressed_backup_leaves_no_temporary_files(app: App, kind: str) -> None:
    run_ok(app, "--run", "--compress", kind)

    leftovers = [p.name for p in app.backup_dir.iterdir() if p.name.startswith(dbs.TEMP_PREFIX)]
    assert leftovers == []
    assert len(backup_files(app)) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_compressed_backup_passes_verify(app: App, kind: str) -> None:
    run_ok(app, "--run", "--compress", kind)

    result = run_ok(app, "--verify")

    assert "SHA-256 matches the log" in result.stdout
    assert "1 of 1 backup(s) passed" in result.stdout


@pytest.mark.parametrize("kind", KINDS)
def test_restore_from_a_compressed_backup_puts_the_content_back(app: App, kind: str) -> None:
    before = dump(app.main_db)
    run_ok(app, "--run", "--compress", kind)
    (backup,) = backup_files(app)
    change(app.main_db)
    assert dump(app.main_db) != before

    run_ok(app, "--restore", str(backup), "--yes")

    assert dump(app.main_db) == before


def _truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _flip_middle(path: Path) -> None:
    flip_byte(path, path.stat().st_size // 2)


def _flip_last(path: Path) -> None:
    flip_byte(path, path.stat().st_size - 2)  # gzip: the length; zstd: the checksum


def _empty(path: Path) -> None:
    os.truncate(path, 0)


@pytest.mark.parametrize(
    "damage", [_truncate, _flip_middle, _flip_last, _empty], ids=lambda f: f.__name__.strip("_")
)
@pytest.mark.parametrize("kind", KINDS)
def test_damaged_compressed_backup_fails_verify_even_without_the_run_log(
    app: App, kind: str, damage: Callable[[Path], None]
) -> None:
    run_ok(app, "--run", "--compress", kind)
    (backup,) = backup_files(app)
    damage(backup)
    app.log_file.unlink()  # no SHA-256 to compare: the unpacking itself must notice

    result = app.run("--verify")

    assert result.returncode == 1, result.stdout + result.stderr
    assert_no_traceback(result)
    assert "0 of 1 backup(s) passed" in result.stdout
    assert [p.name for p in app.backup_dir.iterdir() if p.name.startswith(dbs.TEMP_PREFIX)] == []


def test_empty_plain_backup_fails_verify_even_without_the_run_log(app: App) -> None:
    run_ok(app, "--run")
    (backup,) = backup_files(app)
    _empty(backup)  # SQLite takes an empty file for an empty database
    app.log_file.unlink()

    result = app.run("--verify")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "0 of 1 backup(s) passed" in result.stdout


@pytest.mark.parametrize("kind", KINDS)
def test_restore_refuses_a_truncated_compressed_backup_the_run_log_does_not_know(
    app: App, kind: str
) -> None:
    run_ok(app, "--run", "--compress", kind)
    (backup,) = backup_files(app)
    _truncate(backup)
    app.log_file.unlink()
    before = dump(app.main_db)

    # --allow-unlogged: past the refusal of a file the log does not know, to its contents.
    result = app.run("--restore", str(backup), "--yes", "--allow-unlogged")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "refusing to restore from" in result.stderr
    assert dump(app.main_db) == before


@pytest.mark.parametrize("kind", KINDS)
def test_damaged_compressed_backup_fails_verify_against_the_run_log(app: App, kind: str) -> None:
    run_ok(app, "--run", "--compress", kind)
    (backup,) = backup_files(app)
    _flip_middle(backup)

    result = app.run("--verify")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "0 of 1 backup(s) passed" in result.stdout


@pytest.mark.parametrize("kind", KINDS)
def test_compressed_backup_of_an_unchanged_database_is_a_hard_link(app: App, kind: str) -> None:
    run_ok(app, "--run", "--compress", kind)
    run_ok(app, "--run", "--compress", kind)

    first, second = backup_files(app)
    assert identity(first) == identity(second)
    assert second.name.endswith(SUFFIX[kind])


def test_switching_compression_makes_a_new_file_not_a_link(app: App) -> None:
    run_ok(app, "--run", "--compress", "gzip")

    run_ok(app, "--run")

    files = backup_files(app)  # both may carry the same second: find them by their ending
    (packed,) = [p for p in files if p.name.endswith(".bak.gz")]
    (plain,) = [p for p in files if p.name.endswith(".bak")]
    assert identity(packed) != identity(plain)
    assert integrity(plain) == "ok"


def test_compress_zstd_without_the_package_is_refused_before_the_run_with_a_hint(
    app: App, tmp_path: Path
) -> None:
    blocker = tmp_path / "no-zstandard"
    (blocker / "zstandard").mkdir(parents=True)
    (blocker / "zstandard" / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = {"PYTHONPATH": str(blocker)}

    result = app.run("--run", "--compress", "zstd", env=env)

    assert result.returncode == 2, result.stdout + result.stderr
    assert_no_traceback(result)
    assert "needs the 'zstandard' package" in result.stderr
    assert "pip install zstandard" in result.stderr
    assert backup_files(app) == []
    assert not app.log_file.exists()


# --------------------------------------------------------------------------------------
# Tiered retention: a backup survives if any rule keeps it
# --------------------------------------------------------------------------------------


def backup_at(taken_at: dt.datetime, seq: int = 0) -> dbs.BackupFile:
    name = dbs.format_backup_name("main.db", taken_at, seq)
    return dbs.BackupFile(Path(name), "main.db", taken_at, seq, 100, (0, hash(name)))


def daily(first: dt.date, last: dt.date, at: dt.time = dt.time(3, 0)) -> list[dbs.BackupFile]:
    days = (last - first).days + 1
    return [backup_at(dt.datetime.combine(first + dt.timedelta(days=n), at)) for n in range(days)]


def kept_dates(backups: list[dbs.BackupFile], now: dt.datetime, **rules: int) -> list[dt.datetime]:
    expired = {id(b) for b in dbs.select_expired(backups, now=now, **rules)}
    return sorted(b.taken_at for b in backups if id(b) not in expired)


def at3(*dates: str) -> list[dt.datetime]:
    return sorted(dt.datetime.fromisoformat(f"{d}T03:00:00") for d in dates)


def test_tiered_retention_of_90_daily_backups_keeps_the_documented_set() -> None:
    # 2025-01-01 .. 2025-03-31, one backup a day at 03:00; 2025-03-31 is a Monday.
    backups = daily(dt.date(2025, 1, 1), dt.date(2025, 3, 31))
    now = dt.datetime(2025, 3, 31, 12, 0)

    kept = kept_dates(
        backups, now, keep_days=7, keep_last=3, keep_daily=14, keep_weekly=8, keep_monthly=6
    )

    last_14_days = [f"2025-03-{day:02d}" for day in range(18, 32)]  # keep_daily (and keep_days)
    sundays = ["2025-03-16", "2025-03-09", "2025-03-02", "2025-02-23", "2025-02-16"]  # weeks 7-11
    month_ends = ["2025-02-28", "2025-01-31"]  # keep_monthly: only three months have backups
    assert kept == at3(*last_14_days, *sundays, *month_ends)
    assert len(kept) == 21


def test_keep_daily_counts_days_that_have_backups_not_calendar_days() -> None:
    backups = [backup_at(dt.datetime(2025, 10, day, 3, 0)) for day in (15, 18, 21, 24, 27)]
    now = dt.datetime(2025, 10, 28, 12, 0)

    kept = kept_dates(backups, now, keep_days=0, keep_last=1, keep_daily=3)

    assert kept == at3("2025-10-21", "2025-10-24", "2025-10-27")


def test_keep_daily_keeps_only_the_newest_backup_of_each_day() -> None:
    times = [(27, 1), (27, 9), (27, 17), (26, 1), (26, 17), (25, 12)]
    backups = [backup_at(dt.datetime(2025, 10, day, hour)) for day, hour in times]
    now = dt.datetime(2025, 10, 28, 12, 0)

    kept = kept_dates(backups, now, keep_days=0, keep_last=1, keep_daily=2)

    assert kept == [dt.datetime(2025, 10, 26, 17), dt.datetime(2025, 10, 27, 17)]


def test_keep_daily_takes_the_same_second_counter_as_newer() -> None:
    moment = dt.datetime(2025, 10, 27, 3, 0)
    older, newer = backup_at(moment, 0), backup_at(moment, 1)
    now = dt.datetime(2025, 10, 28, 12, 0)

    expired = dbs.select_expired([newer, older], now=now, keep_days=0, keep_last=1, keep_daily=1)

    assert expired == [older]


def test_keep_weekly_uses_iso_weeks_across_the_new_year() -> None:
    # Monday 2024-12-30 belongs to ISO week 2025-W01, with Thursday 2025-01-02.
    sunday, monday, thursday = (
        dt.datetime(2024, 12, 29, 3),
        dt.datetime(2024, 12, 30, 3),
        dt.datetime(2025, 1, 2, 3),
    )
    backups = [backup_at(t) for t in (sunday, monday, thursday)]
    now = dt.datetime(2025, 1, 3, 12, 0)

    kept = kept_dates(backups, now, keep_days=0, keep_last=1, keep_weekly=2)

    assert kept == [sunday, thursday]


def test_keep_monthly_keeps_the_newest_backup_of_each_of_the_last_months() -> None:
    backups = daily(dt.date(2022, 10, 29), dt.date(2025, 10, 28))  # three years
    now = dt.datetime(2025, 10, 28, 12, 0)

    kept = kept_dates(backups, now, keep_days=0, keep_last=1, keep_monthly=12)

    assert kept == at3(
        "2024-11-30",
        "2024-12-31",
        "2025-01-31",
        "2025-02-28",
        "2025-03-31",
        "2025-04-30",
        "2025-05-31",
        "2025-06-30",
        "2025-07-31",
        "2025-08-31",
        "2025-09-30",
        "2025-10-28",
    )


def test_backup_kept_by_one_rule_alone_survives() -> None:
    # keep_days 3 keeps 10-26..28 (the cutoff is 10-25 12:00), keep_daily 2 keeps 10-27 and
    # 10-28, keep_monthly 2 keeps 10-28 and 09-30: only that rule keeps 09-30.
    backups = daily(dt.date(2025, 9, 25), dt.date(2025, 10, 28))
    now = dt.datetime(2025, 10, 28, 12, 0)

    kept = kept_dates(backups, now, keep_days=3, keep_last=1, keep_daily=2, keep_monthly=2)

    assert kept == at3("2025-09-30", "2025-10-26", "2025-10-27", "2025-10-28")


def test_zero_tiers_keep_what_keep_days_and_keep_last_keep() -> None:
    backups = daily(dt.date(2025, 1, 1), dt.date(2025, 3, 31))
    now = dt.datetime(2025, 3, 31, 12, 0)

    tiered = kept_dates(
        backups, now, keep_days=7, keep_last=3, keep_daily=0, keep_weekly=0, keep_monthly=0
    )

    assert tiered == kept_dates(backups, now, keep_days=7, keep_last=3)
    assert tiered == at3(*(f"2025-03-{day}" for day in range(25, 32)))


def test_run_with_keep_daily_weekly_monthly_prunes_to_the_union_of_the_rules(app: App) -> None:
    today = dt.date.today()
    for days_ago in range(1, 101):
        taken_at = dt.datetime.combine(today - dt.timedelta(days=days_ago), dt.time(3, 0))
        plant_backup(app.main_db, app.backup_dir, "pet_painting.db", taken_at)

    result = run_ok(
        app,
        "--run",
        "--keep-days",
        "0",
        "--keep-last",
        "1",
        "--keep-daily",
        "10",
        "--keep-weekly",
        "4",
        "--keep-monthly",
        "3",
    )

    log = json.loads(app.log_file.read_text(encoding="utf-8"))
    day = dt.datetime.fromisoformat(log["runs"][-1]["started_at"]).date()
    if day != today:
        pytest.skip("the run crossed midnight; the expected set moved")
    last_sunday = today - dt.timedelta(days=today.isoweekday())
    end_of_last_month = today.replace(day=1) - dt.timedelta(days=1)
    expected = {today - dt.timedelta(days=n) for n in range(1, 10)}  # keep_daily 10, with today
    expected |= {last_sunday - dt.timedelta(weeks=n) for n in range(3)}  # keep_weekly 4
    expected |= {end_of_last_month, end_of_last_month.replace(day=1) - dt.timedelta(days=1)}
    expected.add(today)  # the new backup: this day, week and month
    kept = {_taken(p)[0].date() for p in backup_files(app)}
    assert kept == expected
    assert f"old backups pruned: {100 - (len(expected) - 1)}" in result.stdout
