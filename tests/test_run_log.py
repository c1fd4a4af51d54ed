"""The run log: one JSON object with ``runs``, written atomically, capped, and never lost.

A damaged log (garbage, the wrong JSON shape) is moved aside byte for byte as
``database_backup_log.json.damaged-<time>`` and a fresh log is started, with a warning.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest
from conftest import App, assert_no_traceback

import database_backup_scheduler as dbs

RESULT_KEYS = {
    "database",
    "source",
    "status",
    "backup",
    "size_bytes",
    "sha256",
    "duration_s",
    "error",
}
DAMAGED = re.compile(r"^database_backup_log\.json\.damaged-\d{8}_\d{6}")


def load_log(app: App) -> dict[str, Any]:
    data = json.loads(app.log_file.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def damaged_files(app: App) -> list[Path]:
    return sorted(p for p in app.root.iterdir() if DAMAGED.match(p.name))


def assert_aware_iso(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    assert moment.tzinfo is not None, text
    assert re.search(r"([+-]\d{2}:\d{2}|Z)$", text), text
    return moment


# -- shape -----------------------------------------------------------------------------


def test_run_log_is_an_object_with_a_list_of_runs(app: App) -> None:
    result = app.run("--run")
    assert result.returncode == 0, result.stderr
    log = load_log(app)
    assert isinstance(log["runs"], list)
    assert len(log["runs"]) == 1


def test_run_has_start_and_finish_in_iso_8601_with_offset(app: App) -> None:
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    assert app.run("--run").returncode == 0
    after = dt.datetime.now(dt.timezone.utc)
    [run] = load_log(app)["runs"]
    started = assert_aware_iso(run["started_at"])
    finished = assert_aware_iso(run["finished_at"])
    assert before <= started <= finished <= after


def test_run_records_its_trigger(app: App) -> None:
    assert app.run("--run").returncode == 0
    assert app.run("--run", "--trigger", "cron").returncode == 0
    runs = load_log(app)["runs"]
    # The cron run also drilled a restore (the first is due at once), logged as its own entry.
    assert [(run.get("kind", "backup"), run["trigger"]) for run in runs] == [
        ("backup", "manual"),
        ("backup", "cron"),
        ("drill", "cron"),
    ]


def test_successful_result_records_the_backup_its_size_and_its_sha256(app: App) -> None:
    assert app.run("--run").returncode == 0
    [run] = load_log(app)["runs"]
    main = next(r for r in run["results"] if r["database"] == "pet_painting.db")
    assert RESULT_KEYS <= set(main)
    assert main["status"] == "ok"
    assert main["source"] == str(app.main_db)
    backup = Path(main["backup"])
    assert backup.parent == app.backup_dir
    assert backup.is_file()
    assert main["size_bytes"] == backup.stat().st_size
    assert main["sha256"] == hashlib.sha256(backup.read_bytes()).hexdigest()
    assert isinstance(main["duration_s"], (int, float)) and main["duration_s"] >= 0
    assert main["error"] is None
    assert run["pruned"] == []


def test_skipped_optional_database_is_recorded_as_skipped(app: App) -> None:
    assert app.run("--run").returncode == 0
    [run] = load_log(app)["runs"]
    root = next(r for r in run["results"] if r["database"] == "root_pet_painting.db")
    assert RESULT_KEYS <= set(root)
    assert root["status"] == "skipped"
    assert root["source"] == str(app.root_db)
    assert root["backup"] is None


def test_failed_result_records_the_error(app: App, tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    assert app.run("--run", "--db", f"gone={missing}").returncode == 1
    [run] = load_log(app)["runs"]
    [failed] = run["results"]
    assert RESULT_KEYS <= set(failed)
    assert failed["status"] == "failed"
    assert failed["backup"] is None and failed["sha256"] is None
    assert str(missing) in failed["error"]


def test_run_log_is_owner_only(app: App) -> None:
    assert app.run("--run").returncode == 0
    assert stat.S_IMODE(app.log_file.stat().st_mode) == 0o600


def test_run_log_stays_owner_only_when_it_was_readable_by_others(app: App) -> None:
    assert app.run("--run").returncode == 0
    os.chmod(app.log_file, 0o644)
    assert app.run("--run").returncode == 0
    assert stat.S_IMODE(app.log_file.stat().st_mode) == 0o600


# -- appending, atomically, capped -----------------------------------------------------


def test_run_log_keeps_earlier_runs_as_they_were(app: App) -> None:
    assert app.run("--run").returncode == 0
    first = load_log(app)["runs"][0]
    assert app.run("--run").returncode == 0
    runs = load_log(app)["runs"]
    assert len(runs) == 2
    assert runs[0] == first


def test_run_log_is_replaced_by_a_new_file_not_rewritten_in_place(app: App) -> None:
    assert app.run("--run").returncode == 0
    snapshot = app.root / "log-link.json"
    os.link(app.log_file, snapshot)  # a second name for the old file's bytes
    before = snapshot.read_bytes()
    assert app.run("--run").returncode == 0
    assert snapshot.read_bytes() == before
    assert len(load_log(app)["runs"]) == 2


def test_run_log_leaves_no_temporary_files(app: App) -> None:
    for _ in range(2):
        assert app.run("--run").returncode == 0
    assert sorted(p.name for p in app.root.iterdir()) == [
        "database_backup_log.json",
        "database_backup_scheduler.py",
        "instance",
    ]


def test_run_log_keeps_only_the_newest_log_max_runs(app: App) -> None:
    for trigger in ("cron", "task", "schedule"):
        result = app.run(
            "--run", "--log-max-runs", "2", "--trigger", trigger, "--drill-every-days", "0"
        )
        assert result.returncode == 0, result.stderr
    assert [run["trigger"] for run in load_log(app)["runs"]] == ["task", "schedule"]


def test_append_run_caps_an_existing_long_log(tmp_path: Path) -> None:
    log = tmp_path / "log.json"
    old = [{"started_at": f"2025-01-{d:02d}T03:00:00+00:00", "results": []} for d in range(1, 11)]
    log.write_text(json.dumps({"version": 1, "runs": old}), encoding="utf-8")
    new = {"started_at": "2025-02-01T03:00:00+00:00", "results": []}
    dbs.RunLog.read(log).append(new, max_runs=3)
    runs = json.loads(log.read_text(encoding="utf-8"))["runs"]
    assert [r["started_at"][:10] for r in runs] == ["2025-01-09", "2025-01-10", "2025-02-01"]


def test_log_file_in_a_missing_folder_is_created_or_refused_before_the_run(
    app: App, tmp_path: Path
) -> None:
    log = tmp_path / "logs" / "backup_runs.json"
    result = app.run("--run", "--log-file", str(log))
    assert_no_traceback(result)
    if result.returncode == 2:  # refused up front: nothing was backed up unlogged
        assert str(log.parent) in result.stderr
        assert "hint:" in result.stderr
        assert app.backups() == []
    else:
        assert result.returncode == 0, result.stdout + result.stderr
        assert len(json.loads(log.read_text(encoding="utf-8"))["runs"]) == 1


# -- a damaged log ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"this is not JSON at all",
        b'{"version": 1, "runs": [{"started_at": "2025-',  # cut short
        b"",
        b"[]",
        b'"runs"',
        b'{"version": 1}',
        b'{"version": 1, "runs": {"a": 1}}',
        b'{"runs": null}',
    ],
    ids=["garbage", "truncated", "empty", "list", "string", "no-runs", "runs-object", "runs-null"],
)
def test_damaged_run_log_is_moved_aside_and_a_new_one_started(app: App, content: bytes) -> None:
    app.log_file.write_bytes(content)
    result = app.run("--run")
    assert result.returncode == 0, result.stderr
    assert_no_traceback(result)
    [aside] = damaged_files(app)
    assert aside.read_bytes() == content
    assert len(load_log(app)["runs"]) == 1
    assert "warning" in result.stderr
    assert aside.name in result.stderr


def test_run_log_of_binary_garbage_is_moved_aside_byte_for_byte(app: App) -> None:
    content = b"\xff\xfe\x00\x81 not text" + bytes(range(256))
    app.log_file.write_bytes(content)
    result = app.run("--run")
    assert result.returncode == 0, result.stderr
    assert_no_traceback(result)
    [aside] = damaged_files(app)
    assert aside.read_bytes() == content
    assert len(load_log(app)["runs"]) == 1


def test_two_damaged_logs_in_the_same_second_are_both_kept(tmp_path: Path) -> None:
    log = tmp_path / "database_backup_log.json"
    run = {"started_at": "2025-01-01T03:00:00+00:00", "results": []}
    log.write_bytes(b"first garbage")
    dbs.RunLog.read(log).append(run, max_runs=10)
    log.write_bytes(b"second garbage")
    dbs.RunLog.read(log).append(run, max_runs=10)
    kept = sorted(p.read_bytes() for p in tmp_path.iterdir() if DAMAGED.match(p.name))
    assert kept == [b"first garbage", b"second garbage"]


def test_append_run_warns_with_the_name_of_the_damaged_copy(tmp_path: Path) -> None:
    log = tmp_path / "database_backup_log.json"
    log.write_bytes(b"{oops")
    warning = dbs.RunLog.read(log).append({"results": []}, max_runs=10)
    [aside] = [p for p in tmp_path.iterdir() if DAMAGED.match(p.name)]
    assert warning is not None
    assert str(aside) in str(warning)  # a Text: English as a string


def test_reading_a_damaged_log_changes_nothing(tmp_path: Path) -> None:
    log = tmp_path / "database_backup_log.json"
    log.write_bytes(b"garbage")
    read = dbs.RunLog.read(log)
    assert read.runs == []
    assert read.damaged
    assert read.warning is not None
    assert [p.name for p in tmp_path.iterdir()] == [log.name]
    assert log.read_bytes() == b"garbage"


def test_reading_a_missing_log_is_empty_without_warning(tmp_path: Path) -> None:
    read = dbs.RunLog.read(tmp_path / "none.json")
    assert read.runs == []
    assert read.warning is None
    assert not read.usable
