"""Reports: ``--history`` (newest first) and ``--stats`` (per database, folder, disk budget),
as text or, with ``--json``, as one JSON document.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import App, Nobody, assert_no_traceback, make_config, make_db, plant_backup

import database_backup_scheduler as dbs


def local(minutes_ago: float) -> dt.datetime:
    return (
        (dt.datetime.now() - dt.timedelta(minutes=minutes_ago)).astimezone().replace(microsecond=0)
    )


@pytest.fixture
def three_runs(app: App) -> list[dbs.RunReport]:
    """Three runs 30, 20 and 10 minutes ago: ok, failed (database moved away), ok; no
    archive of the folder."""
    config = make_config(app.root, "--archive-every-days", "0")
    first = dbs.run_backups(config, clock=lambda: local(30))
    moved = app.root / "elsewhere.db"
    shutil.move(str(app.main_db), moved)
    second = dbs.run_backups(config, clock=lambda: local(20))
    shutil.move(str(moved), app.main_db)
    third = dbs.run_backups(config, clock=lambda: local(10))
    return [first, second, third]


def history_json(app: App, *flags: str) -> dict[str, Any]:
    result = app.run("--history", "--json", *flags)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def stats_json(app: App, *flags: str) -> dict[str, Any]:
    result = app.run("--stats", "--json", *flags)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# -- history ---------------------------------------------------------------------------


def test_history_without_a_log_says_there_are_no_backups_yet(app: App) -> None:
    result = app.run("--history")
    assert result.returncode == 0, result.stderr
    assert "No backups recorded yet" in result.stdout
    assert not app.log_file.exists()


def test_history_lists_results_newest_first(app: App, three_runs: list[dbs.RunReport]) -> None:
    rows = history_json(app)["backups"]
    main_rows = [r for r in rows if r["database"] == "pet_painting.db"]
    assert [r["status"] for r in main_rows] == ["ok", "failed", "ok"]
    times = [dt.datetime.fromisoformat(r["time"]) for r in main_rows]
    assert times == sorted(times, reverse=True)
    assert times[0] == three_runs[2].started_at


def test_history_rows_have_time_database_file_size_status_and_error(
    app: App, three_runs: list[dbs.RunReport]
) -> None:
    rows = [r for r in history_json(app)["backups"] if r["database"] == "pet_painting.db"]
    newest, failed = rows[0], rows[1]
    made = three_runs[2].results[0]
    assert newest["file"] == made.backup
    assert newest["size_bytes"] == made.size_bytes == Path(made.backup).stat().st_size
    assert newest["error"] is None
    assert failed["file"] is None
    assert str(app.main_db) in failed["error"]


def test_history_json_names_the_log_file(app: App, three_runs: list[dbs.RunReport]) -> None:
    assert history_json(app)["log_file"] == str(app.log_file)


def test_history_limit_shows_only_the_newest_rows(
    app: App, three_runs: list[dbs.RunReport]
) -> None:
    rows = history_json(app, "--limit", "2")["backups"]
    assert len(rows) == 2
    everything = history_json(app, "--limit", "100")["backups"]
    assert len(everything) == 6  # three runs of two databases
    assert rows == everything[:2]


def test_history_text_shows_time_database_file_size_status_and_error(
    app: App, three_runs: list[dbs.RunReport]
) -> None:
    result = app.run("--history")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    newest = Path(three_runs[2].results[0].backup).name
    ok_line = next(line for line in lines if newest in line)
    assert f"{three_runs[2].started_at:%Y-%m-%d %H:%M:%S}" in ok_line
    assert "pet_painting.db" in ok_line
    assert "KB" in ok_line  # a 200-row database is some tens of KB
    assert "ok" in ok_line
    failed_line = next(line for line in lines if "failed" in line)
    assert f"{three_runs[1].started_at:%Y-%m-%d %H:%M:%S}" in failed_line
    assert "does not exist" in failed_line
    assert lines.index(ok_line) < lines.index(failed_line)


def test_history_of_a_damaged_log_warns_and_leaves_it_alone(app: App) -> None:
    app.log_file.write_bytes(b"garbage")
    result = app.run("--history")
    assert result.returncode == 0
    assert_no_traceback(result)
    assert "warning" in result.stderr
    assert app.log_file.read_bytes() == b"garbage"
    assert sorted(p.name for p in app.root.iterdir()) == [
        "database_backup_log.json",
        "database_backup_scheduler.py",
        "instance",
    ]


@pytest.mark.parametrize(
    "result",
    [
        {"database": "pet_painting.db", "status": "ok", "backup": 5, "size_bytes": "big"},
        {"database": "pet_painting.db", "status": "ok", "backup": ["a.bak"], "error": 7},
        {"database": None, "status": None, "backup": None, "size_bytes": None},
    ],
    ids=["number-as-file", "list-as-file", "nulls"],
)
def test_history_of_a_log_with_odd_values_still_answers(app: App, result: dict[str, Any]) -> None:
    # A hand-edited log of the right shape: the report shows what it can, and never crashes.
    runs = [{"started_at": "2025-10-28T03:00:00+08:00", "trigger": "manual", "results": [result]}]
    app.log_file.write_text(json.dumps({"version": 1, "runs": runs}), encoding="utf-8")
    for flags in ([], ["--json"]):
        shown = app.run("--history", *flags)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert_no_traceback(shown)
        assert "unexpected error" not in shown.stderr


def test_history_json_is_one_json_document_even_when_empty(app: App) -> None:
    assert history_json(app) == {
        "log_file": str(app.log_file),
        "source": "backup folder",
        "warning": f"there is no run log {app.log_file}",
        "backups": [],
    }


# -- history when the run log is missing, damaged or unreadable: the backups on disk ---


@pytest.fixture
def two_backups(app: App) -> list[Path]:
    """Two real --run's, each making a backup of the main database: oldest first."""
    backups: list[Path] = []
    for _ in range(2):
        made = app.run("--run")
        assert made.returncode == 0, made.stdout + made.stderr
        [new] = set(app.backups("pet_painting.db")) - set(backups)
        backups.append(new)
    return backups


def assert_lists_the_backups_found(stdout: str, backups: list[Path]) -> None:
    for backup in backups:
        [line] = [line for line in stdout.splitlines() if backup.name in line]
        assert "found" in line, stdout


def test_history_without_the_run_log_lists_the_backups_found_on_disk(
    app: App, two_backups: list[Path]
) -> None:
    app.log_file.unlink()

    result = app.run("--history")

    assert result.returncode == 0, result.stdout + result.stderr
    assert_no_traceback(result)
    warning = f"there is no run log {app.log_file}; showing the backups found in {app.backup_dir}"
    assert f"{warning} instead" in result.stderr
    assert_lists_the_backups_found(result.stdout, two_backups)


def test_history_of_a_damaged_run_log_lists_the_backups_found_on_disk(
    app: App, two_backups: list[Path]
) -> None:
    app.log_file.write_text("{not json", encoding="utf-8")

    result = app.run("--history")

    assert result.returncode == 0, result.stdout + result.stderr
    assert_no_traceback(result)
    assert "is damaged" in result.stderr
    assert f"showing the backups found in {app.backup_dir}" in result.stderr
    assert_lists_the_backups_found(result.stdout, two_backups)
    assert app.log_file.read_text(encoding="utf-8") == "{not json"


def test_history_json_without_the_run_log_names_the_backup_folder_as_its_source(
    app: App, two_backups: list[Path]
) -> None:
    app.log_file.unlink()

    document = history_json(app)

    assert document["log_file"] == str(app.log_file)
    assert document["source"] == "backup folder"
    assert document["warning"] == (
        f"there is no run log {app.log_file}; showing the backups found in {app.backup_dir} instead"
    )
    rows = document["backups"]
    assert [r["file"] for r in rows] == [str(p) for p in reversed(two_backups)]
    assert {r["status"] for r in rows} == {"found"}
    assert [r["size_bytes"] for r in rows] == [p.stat().st_size for p in reversed(two_backups)]


def test_history_json_from_a_sound_run_log_names_the_run_log_as_its_source(
    app: App, two_backups: list[Path]
) -> None:
    document = history_json(app)

    assert document["source"] == "run log"
    assert document["warning"] is None
    assert {r["file"] for r in document["backups"]} >= {str(p) for p in two_backups}


def test_history_of_a_run_log_the_user_cannot_read_lists_the_backups_found_on_disk(
    nobody: Nobody,
) -> None:
    app = nobody.make_app()
    make_db(app.main_db, rows=50)
    for _ in range(2):
        assert app.run("--run").returncode == 0
    backups = app.backups("pet_painting.db")
    nobody.give(app.root)
    os.chown(app.log_file, 0, 0)
    app.log_file.chmod(0o600)

    result = nobody.run(app, "--history")

    assert result.returncode == 0, result.stdout + result.stderr
    assert_no_traceback(result)
    assert "cannot read run log" in result.stderr
    assert f"showing the backups found in {app.backup_dir}" in result.stderr
    assert_lists_the_backups_found(result.stdout, backups)


# -- stats -----------------------------------------------------------------------------


@pytest.fixture
def planted(app: App) -> list[Path]:
    """Three backups of the main database: 1 hour, 2 days and 10 days old."""
    now = dt.datetime.now().replace(microsecond=0)
    return [
        plant_backup(app.main_db, app.backup_dir, "pet_painting.db", now - age)
        for age in (dt.timedelta(hours=1), dt.timedelta(days=2), dt.timedelta(days=10))
    ]


def test_stats_counts_backups_and_their_size_per_database(app: App, planted: list[Path]) -> None:
    stats = stats_json(app)
    main = next(d for d in stats["databases"] if d["database"] == "pet_painting.db")
    assert main["backups"] == 3
    assert main["total_bytes"] == sum(p.stat().st_size for p in planted)
    assert main["newest"] == planted[0].name
    assert main["oldest"] == planted[2].name
    assert 3500 <= main["newest_age_s"] <= 3700
    root = next(d for d in stats["databases"] if d["database"] == "root_pet_painting.db")
    assert root["backups"] == 0 and root["newest"] is None


def test_stats_reports_folder_size_share_of_disk_budget_and_free_space(
    app: App, planted: list[Path]
) -> None:
    # Other processes may write to the same disk meanwhile: bracket the reading.
    before = shutil.disk_usage(app.backup_dir)
    stats = stats_json(app)
    usage = shutil.disk_usage(app.backup_dir)
    folder = sum(p.stat().st_size for p in planted)
    assert stats["backup_dir"] == str(app.backup_dir)
    assert stats["backup_dir_bytes"] == folder
    assert stats["disk_total_bytes"] == usage.total
    slack = 64 * 1024 * 1024
    low, high = sorted((before.free, usage.free))
    assert low - slack <= stats["disk_free_bytes"] <= high + slack
    assert stats["disk_share_percent"] == pytest.approx(folder * 100 / usage.total)
    assert stats["disk_budget_percent"] == 5
    assert stats["within_budget"] is True


def test_stats_does_not_count_files_the_tool_did_not_make(app: App, planted: list[Path]) -> None:
    (app.backup_dir / "big-foreign-file.bin").write_bytes(b"x" * 100_000)
    (app.backup_dir / "other.db.20250101_000000.bak").write_bytes(b"x" * 100_000)
    stats = stats_json(app)
    assert stats["backup_dir_bytes"] == sum(p.stat().st_size for p in planted)


def test_stats_success_rate_counts_runs_within_the_retention_window(app: App) -> None:
    def run(days_ago: float, status: str) -> dict[str, Any]:
        started = dt.datetime.now().astimezone() - dt.timedelta(days=days_ago)
        return {
            "started_at": started.isoformat(timespec="seconds"),
            "finished_at": started.isoformat(timespec="seconds"),
            "trigger": "schedule",
            "results": [{"database": "pet_painting.db", "status": status}],
            "pruned": [],
        }

    runs = [run(40, "failed"), run(35, "failed"), run(3, "ok"), run(2, "failed"), run(1, "ok")]
    app.log_file.write_text(json.dumps({"version": 1, "runs": runs}), encoding="utf-8")
    main = next(d for d in stats_json(app)["databases"] if d["database"] == "pet_painting.db")
    assert main["runs_in_window"] == 3
    assert main["success_rate"] == pytest.approx(2 / 3)
    [wide, _root] = stats_json(app, "--keep-days", "60")["databases"]
    assert wide["runs_in_window"] == 5
    assert wide["success_rate"] == pytest.approx(2 / 5)


def test_stats_after_real_runs_counts_the_backups_they_made(app: App) -> None:
    for _ in range(2):
        assert app.run("--run").returncode == 0
    main = next(d for d in stats_json(app)["databases"] if d["database"] == "pet_painting.db")
    assert main["backups"] == 2
    assert main["success_rate"] == 1.0
    assert main["runs_in_window"] == 2


def test_stats_with_a_keep_days_beyond_the_calendar_answers_or_is_refused(
    app: App, planted: list[Path]
) -> None:
    result = app.run("--stats", "--json", "--keep-days", "999999")
    assert_no_traceback(result)
    assert "unexpected error" not in result.stderr
    assert result.returncode in (0, 2), result.stderr
    if result.returncode == 0:
        assert json.loads(result.stdout)["databases"][0]["backups"] == 3


def test_stats_text_shows_counts_newest_oldest_budget_and_free_space(
    app: App, planted: list[Path]
) -> None:
    result = app.run("--stats")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "pet_painting.db" in text
    assert "backups: 3" in text
    assert "newest:" in text and "oldest:" in text
    assert "ago" in text
    assert "budget 5%" in text
    assert "free:" in text
    assert "no backups yet" in text  # the root database


def test_stats_without_backups_or_log_still_answers(app: App) -> None:
    stats = stats_json(app)
    assert all(d["backups"] == 0 for d in stats["databases"])
    assert stats["backup_dir_bytes"] == 0


def test_stats_counts_a_database_named_on_the_command_line(app: App, tmp_path: Path) -> None:
    other = make_db(tmp_path / "other.db", rows=5)
    assert app.run("--run", "--db", f"other={other}").returncode == 0
    stats = stats_json(app, "--db", f"other={other}")
    assert [d["database"] for d in stats["databases"]] == ["other"]
    assert stats["databases"][0]["backups"] == 1
