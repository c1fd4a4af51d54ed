"""The command line: where things are found, how settings combine, exit codes, usage errors,
and output that never crashes (a console that cannot encode it, a closed pipe).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    SCRIPT,
    App,
    assert_no_traceback,
    integrity,
    make_app,
    make_config,
    make_db,
    run_process,
)

import database_backup_scheduler as dbs

CONFIG_NAME = "database_backup_config.json"
README = SCRIPT.parent / "README.md"


def show_config(app: App, *flags: str, cwd: Path | None = None) -> dict[str, Any]:
    result = app.run("--show-config", *flags, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def write_config(path: Path, settings: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings), encoding="utf-8")
    return path


def assert_usage_error(
    app: App, result: subprocess.CompletedProcess[str], *expected: str
) -> list[str]:
    """Exit 2, one error line (argparse style), no traceback, and nothing was run."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert_no_traceback(result)
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    for text in expected:
        assert text in errors[0], result.stderr
    assert not app.backup_dir.exists()
    assert not app.log_file.exists()
    return errors


def config_error(root: Path, *flags: str) -> dbs.BackupError:
    """The configuration error that building the settings from ``flags`` raises (exit 2)."""
    with pytest.raises(dbs.BackupError) as caught:
        make_config(root, *flags)
    assert caught.value.exit_code == 2
    return caught.value


# -- defaults and where things are found -----------------------------------------------


def test_defaults_back_up_the_instance_database_and_skip_an_absent_root_one(app: App) -> None:
    result = app.run("--run")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert len(app.backups("pet_painting.db")) == 1
    assert app.backups("root_pet_painting.db") == []
    assert "skipped" in result.stdout
    assert app.log_file.exists()


def test_defaults_back_up_the_root_database_when_present(app: App) -> None:
    make_db(app.root_db, rows=7)
    result = app.run("--run")
    assert result.returncode == 0, result.stderr
    assert len(app.backups("pet_painting.db")) == 1
    [root_backup] = app.backups("root_pet_painting.db")
    assert integrity(root_backup) == "ok"


def test_missing_instance_database_fails_the_run(app: App) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{app.main_db}{suffix}").unlink(missing_ok=True)
    result = app.run("--run")
    assert result.returncode == 1
    assert_no_traceback(result)
    assert str(app.main_db) in result.stdout


def test_run_from_another_folder_uses_the_app_root(app: App, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    make_db(elsewhere / "instance" / "pet_painting.db", rows=3)  # a decoy in the working folder
    result = app.run("--run", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    [backup] = app.backups("pet_painting.db")
    assert integrity(backup) == "ok"
    assert app.log_file.exists()
    assert sorted(p.name for p in elsewhere.iterdir()) == ["instance"]
    assert sorted(p.name for p in (elsewhere / "instance").iterdir()) == ["pet_painting.db"]


def test_show_config_prints_the_default_settings_as_json(app: App, tmp_path: Path) -> None:
    config = show_config(app, cwd=tmp_path)
    assert config["databases"] == [
        {"name": "pet_painting.db", "path": str(app.main_db), "required": True},
        {"name": "root_pet_painting.db", "path": str(app.root_db), "required": False},
    ]
    assert config["backup_dir"] == str(app.backup_dir)
    assert config["log_file"] == str(app.log_file)
    assert config["keep_days"] == 30
    assert config["keep_last"] == 3
    assert config["config_file"] is None


def test_show_config_prints_every_setting_and_feeds_back_as_a_config_file(
    app: App, tmp_path: Path
) -> None:
    far = tmp_path / "far"
    flags = ["--keep-days", "9", "--at", "04:30", "--compress", "gzip", "--copy-to", str(far)]
    flags += ["--s3", "s3://bucket/app", "--notify-on", "always", "--upload-timeout", "12.5"]
    shown = show_config(app, *flags)
    assert set(shown) == set(dbs.SETTING) | {"app_root", "config_file"}
    settings = {key: value for key, value in shown.items() if key in dbs.SETTING}
    config_file = write_config(tmp_path / "from_show_config.json", settings)

    again = show_config(app, "--config", str(config_file))

    assert again == {**shown, "config_file": str(config_file)}
    assert (again["keep_days"], again["run_at"], again["copy_to"]) == (9, ["04:30"], [str(far)])


def test_help_names_each_settings_default_as_show_config_prints_it(app: App) -> None:
    result = app.run("--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # argparse wraps long help lines
    defaults = show_config(app)
    for setting in dbs.SETTINGS:
        assert setting.option in text
        value = defaults[setting.key]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            assert f"{setting.option} {setting.metavar}" in text
            assert f"(default: {value:g})" in text, setting.key


def test_readme_documents_every_setting_flag() -> None:
    readme = README.read_text(encoding="utf-8")
    missing = [s.option for s in dbs.SETTINGS if f"`{s.option} " not in readme]
    assert missing == []


def test_db_path_on_the_command_line_resolves_against_the_working_folder(
    app: App, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    make_db(work / "data" / "shop.db", rows=4)
    result = app.run("--run", "--db", "data/shop.db", cwd=work)
    assert result.returncode == 0, result.stderr
    [backup] = app.backups("shop.db")
    assert read_count(backup) == 4
    assert app.backups("pet_painting.db") == []  # --db replaces the defaults


def test_backup_dir_and_log_file_flags_resolve_against_the_working_folder(
    app: App, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    result = app.run("--run", "--backup-dir", "bk", "--log-file", "runs.json", cwd=work)
    assert result.returncode == 0, result.stderr
    assert len([p for p in (work / "bk").iterdir() if p.name.endswith(".bak")]) == 1
    assert (work / "runs.json").exists()
    assert not app.backup_dir.exists()
    assert not app.log_file.exists()


def test_db_flag_with_a_name_names_the_backups(app: App) -> None:
    result = app.run("--run", "--db", f"shop={app.main_db}", "--db", f"other.db={app.main_db}")
    assert result.returncode == 0, result.stderr
    assert len(app.backups("shop")) == 1
    assert len(app.backups("other.db")) == 1
    assert app.backups("pet_painting.db") == []


def test_config_file_paths_resolve_against_the_config_files_folder(
    app: App, tmp_path: Path
) -> None:
    conf_dir = tmp_path / "conf"
    make_db(conf_dir / "data" / "x.db", rows=6)
    config = write_config(
        conf_dir / "settings.json",
        {
            "databases": [{"name": "x", "path": "data/x.db"}],
            "backup_dir": "bk",
            "log_file": "l.json",
        },
    )
    work = tmp_path / "work"
    work.mkdir()
    result = app.run("--run", "--config", os.path.relpath(config, work), cwd=work)
    assert result.returncode == 0, result.stderr
    backups = [p for p in (conf_dir / "bk").iterdir() if p.name.startswith("x.")]
    assert len(backups) == 1
    assert (conf_dir / "l.json").exists()
    assert sorted(p.name for p in work.iterdir()) == []


def test_default_config_file_in_the_app_root_is_read_from_any_folder(
    app: App, tmp_path: Path
) -> None:
    write_config(app.root / CONFIG_NAME, {"keep_days": 7, "backup_dir": "bk"})
    config = show_config(app, cwd=tmp_path)
    assert config["keep_days"] == 7
    assert config["backup_dir"] == str(app.root / "bk")
    assert config["config_file"] == str(app.root / CONFIG_NAME)


def test_config_file_saved_with_a_byte_order_mark_is_read(app: App) -> None:
    (app.root / CONFIG_NAME).write_bytes(b"\xef\xbb\xbf" + json.dumps({"keep_days": 9}).encode())
    assert show_config(app)["keep_days"] == 9


def test_flags_override_the_config_file_which_overrides_the_defaults(app: App) -> None:
    write_config(app.root / CONFIG_NAME, {"keep_days": 7, "keep_last": 5})
    config = show_config(app, "--keep-days", "2")
    assert config["keep_days"] == 2  # flag
    assert config["keep_last"] == 5  # file
    assert config["busy_timeout"] == 60  # default


def test_db_flag_replaces_the_databases_of_the_config_file(app: App, tmp_path: Path) -> None:
    write_config(app.root / CONFIG_NAME, {"databases": ["instance/pet_painting.db"]})
    other = make_db(tmp_path / "other.db", rows=2)
    config = show_config(app, "--db", f"o={other}")
    assert config["databases"] == [{"name": "o", "path": str(other), "required": True}]


def test_optional_database_from_the_config_file_is_skipped_when_absent(app: App) -> None:
    write_config(
        app.root / CONFIG_NAME,
        {
            "databases": [
                "instance/pet_painting.db",
                {"name": "extra", "path": "extra.db", "required": False},
            ]
        },
    )
    result = app.run("--run")
    assert result.returncode == 0, result.stderr
    assert "skipped" in result.stdout
    assert len(app.backups("pet_painting.db")) == 1


def read_count(path: Path) -> int:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    finally:
        conn.close()


# -- usage and configuration errors: exit 2, one line, nothing run ---------------------


@pytest.mark.parametrize(
    ("flags", "mentions"),
    [
        (["--keep-days", "-1"], "keep"),
        (["--keep-last", "0"], "keep"),
        (["--keep-days", "abc"], "--keep-days"),
        (["--keep-last", "many"], "--keep-last"),
        (["--keep-days", "1.5"], "--keep-days"),
        (["--busy-timeout", "-1"], "busy"),
        (["--busy-timeout", "nan"], "busy"),
        (["--lock-timeout", "soon"], "--lock-timeout"),
        (["--log-max-runs", "0"], "log"),
        (["--trigger", "boss"], "--trigger"),
        (["--no-such-flag"], "--no-such-flag"),
    ],
)
def test_bad_flag_value_is_a_usage_error(app: App, flags: list[str], mentions: str) -> None:
    assert_usage_error(app, app.run("--run", *flags), mentions)


def test_empty_db_path_is_a_usage_error(app: App) -> None:
    assert_usage_error(app, app.run("--run", "--db", "main="), "--db")
    assert_usage_error(app, app.run("--run", "--db", ""), "--db")


def test_backup_dir_that_is_a_file_is_a_usage_error_naming_it(app: App, tmp_path: Path) -> None:
    a_file = tmp_path / "not_a_folder"
    a_file.write_bytes(b"x")
    assert_usage_error(app, app.run("--run", "--backup-dir", str(a_file)), str(a_file))
    assert a_file.read_bytes() == b"x"


def test_log_file_that_is_a_folder_is_a_usage_error_naming_it(app: App, tmp_path: Path) -> None:
    folder = tmp_path / "log_folder"
    folder.mkdir()
    assert_usage_error(app, app.run("--run", "--log-file", str(folder)), str(folder))


def test_no_action_is_a_usage_error(app: App) -> None:
    assert_usage_error(app, app.run())


def test_two_actions_are_a_usage_error(app: App) -> None:
    assert_usage_error(app, app.run("--run", "--history"))


def test_history_limit_below_one_is_a_usage_error(app: App) -> None:
    assert_usage_error(app, app.run("--history", "--limit", "0"), "--limit")


@pytest.mark.parametrize(
    "content",
    [
        '{"keep_days": 7,',
        "keep_days = 7",
        "",
    ],
    ids=["cut-short", "not-json", "empty"],
)
def test_malformed_config_file_is_a_usage_error_naming_it(app: App, content: str) -> None:
    (app.root / CONFIG_NAME).write_text(content, encoding="utf-8")
    assert_usage_error(app, app.run("--run"), str(app.root / CONFIG_NAME))


@pytest.mark.parametrize(
    "settings",
    [
        {"keep_dayz": 7},
        {"keep_days": "30"},
        {"keep_days": 1.5},
        {"keep_days": True},
        {"keep_days": None},
        {"keep_days": -1},
        {"keep_last": 0},
        {"busy_timeout": "fast"},
        {"log_max_runs": 0},
        {"backup_dir": 5},
        {"backup_dir": ""},
        {"log_file": ["a"]},
        {"databases": "instance/pet_painting.db"},
        {"databases": []},
        {"databases": [5]},
        {"databases": [{"name": "x"}]},
        {"databases": [{"name": 5, "path": "x.db"}]},
        {"databases": [{"path": "x.db", "required": "yes"}]},
        {"databases": [{"path": "x.db", "colour": "blue"}]},
        ["keep_days", 7],
    ],
    ids=lambda s: json.dumps(s)[:40],
)
def test_bad_setting_in_the_config_file_is_a_configuration_error_naming_it(
    tmp_path: Path, settings: Any
) -> None:
    config = write_config(tmp_path / "conf" / "settings.json", settings)
    error = config_error(tmp_path, "--config", str(config))
    assert str(config) in error.message
    assert error.hint


def test_bad_setting_in_the_config_file_is_a_one_line_usage_error(app: App, tmp_path: Path) -> None:
    config = write_config(tmp_path / "conf" / "settings.json", {"keep_days": "30"})
    [line] = assert_usage_error(app, app.run("--run", "--config", str(config)), str(config))
    assert "keep_days" in line


def test_unknown_config_key_error_lists_the_known_keys(app: App, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.json", {"keepdays": 7})
    result = app.run("--run", "--config", str(config))
    assert_usage_error(app, result, "keepdays", "keep_days")


def test_missing_config_file_is_a_usage_error_naming_it(app: App, tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    assert_usage_error(app, app.run("--run", "--config", str(missing)), str(missing))


def test_two_databases_with_the_same_name_are_a_usage_error(app: App, tmp_path: Path) -> None:
    one = make_db(tmp_path / "a" / "shop.db", rows=1)
    two = make_db(tmp_path / "b" / "shop.db", rows=1)
    [line] = assert_usage_error(app, app.run("--run", "--db", str(one), "--db", str(two)))
    assert "shop.db" in line


def test_database_names_differing_only_in_case_are_a_usage_error(app: App, tmp_path: Path) -> None:
    one = make_db(tmp_path / "one.db", rows=1)
    two = make_db(tmp_path / "two.db", rows=1)
    result = app.run("--run", "--db", f"Shop={one}", "--db", f"shop={two}")
    assert_usage_error(app, result)
    assert "hint:" in result.stderr


def test_config_file_databases_with_the_same_file_name_are_a_usage_error(app: App) -> None:
    make_db(app.root_db, rows=1)
    write_config(
        app.root / CONFIG_NAME, {"databases": ["instance/pet_painting.db", "pet_painting.db"]}
    )
    assert_usage_error(app, app.run("--run"), "pet_painting.db")


BAD_NAMES = [".hidden", "a*b", "what?", "ends.", "ends ", 'q"uote', "pipe|name", "tab\tname", "<x>"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_database_name_on_the_command_line_is_a_configuration_error(
    tmp_path: Path, name: str
) -> None:
    error = config_error(tmp_path, "--db", f"{name}={tmp_path / 'x.db'}")
    assert "file name" in error.message
    assert error.hint


@pytest.mark.parametrize("name", ["", "a/b", "a\\b", "c:d", "..", "line\nbreak", "newline\n"])
def test_bad_database_name_in_the_config_file_is_a_configuration_error(
    tmp_path: Path, name: str
) -> None:
    config = write_config(tmp_path / "c.json", {"databases": [{"name": name, "path": "x.db"}]})
    config_error(tmp_path, "--config", str(config))


def test_bad_database_name_is_a_one_line_usage_error(app: App) -> None:
    assert_usage_error(app, app.run("--run", "--db", f"a*b={app.main_db}"), "a*b")


def test_bad_database_name_in_the_config_file_is_a_one_line_usage_error(app: App) -> None:
    write_config(app.root / CONFIG_NAME, {"databases": [{"name": "a/b", "path": "x.db"}]})
    assert_usage_error(app, app.run("--run"), "a/b")


def test_database_name_too_long_for_a_file_name_is_a_usage_error(app: App) -> None:
    # <name>.<15-character stamp>[-seq].bak must fit the 255-byte limit of file names.
    assert_usage_error(app, app.run("--run", "--db", f"{'n' * 240}={app.main_db}"))


def test_debug_shows_the_traceback_of_an_error(app: App, tmp_path: Path) -> None:
    result = app.run("--run", "--debug", "--config", str(tmp_path / "nope.json"))
    assert result.returncode == 2
    assert "Traceback" in result.stderr


# -- exit codes ------------------------------------------------------------------------


def test_exit_code_is_0_when_every_required_database_is_backed_up(app: App) -> None:
    assert app.run("--run").returncode == 0


def test_exit_code_is_1_when_any_backup_fails_and_the_others_still_run(
    app: App, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.db"
    bad.write_text("not a database\n" * 100, encoding="utf-8")
    result = app.run("--run", "--db", f"bad={bad}", "--db", f"good={app.main_db}")
    assert result.returncode == 1
    assert_no_traceback(result)
    assert len(app.backups("good")) == 1
    assert str(bad) in result.stdout
    log = json.loads(app.log_file.read_text(encoding="utf-8"))
    assert [r["status"] for r in log["runs"][-1]["results"]] == ["failed", "ok"]


def test_run_json_prints_one_json_document(app: App) -> None:
    result = app.run("--run", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [r["status"] for r in report["results"]] == ["ok", "skipped"]
    assert report["results"][0]["backup"] == str(app.backups("pet_painting.db")[0])


def test_version_is_printed(app: App) -> None:
    result = app.run("--version")
    assert result.returncode == 0
    assert result.stdout.strip().startswith("database_backup_scheduler.py ")


# -- output never crashes --------------------------------------------------------------


@pytest.fixture
def chinese_db(tmp_path: Path) -> Path:
    return make_db(tmp_path / "数据 文件夹" / "宠物 画.db", rows=5)


@pytest.mark.parametrize("encoding", ["ascii", "cp936", "gbk"])
def test_run_on_a_console_that_cannot_show_the_output_succeeds_with_ascii_marks(
    app: App, tmp_path: Path, chinese_db: Path, encoding: str
) -> None:
    backups = tmp_path / "备份 目录"
    result = app.run(
        "--run", "--db", str(chinese_db), "--backup-dir", str(backups),
        env={"PYTHONIOENCODING": encoding},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert_no_traceback(result)
    assert "[OK]" in result.stdout
    [backup] = [p for p in backups.iterdir() if p.name.endswith(".bak")]
    assert backup.name.startswith("宠物 画.db.")
    assert integrity(backup) == "ok"


@pytest.mark.parametrize("encoding", ["ascii", "gbk"])
def test_reports_on_a_console_that_cannot_show_the_output_succeed(
    app: App, chinese_db: Path, encoding: str
) -> None:
    assert app.run("--run", "--db", f"宠物 画={chinese_db}").returncode == 0
    env = {"PYTHONIOENCODING": encoding}
    for action in ("--history", "--stats"):
        result = app.run(action, "--db", f"宠物 画={chinese_db}", env=env)
        assert result.returncode == 0, result.stderr
        assert_no_traceback(result)
        result = app.run(action, "--json", "--db", f"宠物 画={chinese_db}", env=env)
        assert result.returncode == 0, result.stderr
        json.loads(result.stdout)


@pytest.mark.parametrize("action", ["--run", "--history", "--stats", "--show-config"])
def test_json_on_an_ascii_console_keeps_non_ascii_names_intact(
    app: App, chinese_db: Path, action: str
) -> None:
    assert app.run("--run", "--db", str(chinese_db)).returncode == 0
    flags = [action, "--db", str(chinese_db)] + ([] if action == "--show-config" else ["--json"])
    result = app.run(*flags, env={"PYTHONIOENCODING": "ascii"})
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    text = json.dumps(document, ensure_ascii=False)
    assert "宠物 画.db" in text
    assert "?" not in text


def test_app_in_a_folder_with_chinese_and_spaces_works_on_an_ascii_console(
    app: App, tmp_path: Path
) -> None:
    root = tmp_path / "宠物 应用"
    shutil.copytree(app.root, root)
    moved = App(root)
    moved.log_file.write_bytes(b"damaged")  # a warning that names a non-ASCII path
    env = {"PYTHONIOENCODING": "ascii"}
    for action in (["--run"], ["--history"], ["--stats"], ["--run", "--json"]):
        result = moved.run(*action, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert_no_traceback(result)
    assert len(moved.backups("pet_painting.db")) == 2


def test_failure_on_an_ascii_console_is_reported_without_a_traceback(
    app: App, tmp_path: Path
) -> None:
    missing = tmp_path / "缺失 的.db"
    result = app.run("--run", "--db", str(missing), env={"PYTHONIOENCODING": "ascii"})
    assert result.returncode == 1
    assert_no_traceback(result)
    assert "[FAILED]" in result.stdout


def test_usage_error_on_an_ascii_console_is_reported_without_a_traceback(
    app: App, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "配置 文件.json", {"未知": 1})
    result = app.run("--run", "--config", str(config), env={"PYTHONIOENCODING": "ascii"})
    assert result.returncode == 2
    assert_no_traceback(result)


@pytest.mark.parametrize("closed", ["stdout", "stdout-and-stderr"])
def test_output_to_a_closed_pipe_does_not_abort_the_run(app: App, closed: str) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read: every write fails with EPIPE
    try:
        proc = subprocess.run(
            [sys.executable, str(app.script), "--run"],
            cwd=app.root,
            stdout=write_end,
            stderr=write_end if closed == "stdout-and-stderr" else subprocess.PIPE,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 0, proc.stderr
    [backup] = app.backups("pet_painting.db")
    assert integrity(backup) == "ok"
    log = json.loads(app.log_file.read_text(encoding="utf-8"))
    assert log["runs"][-1]["results"][0]["status"] == "ok"
    if proc.stderr is not None:
        assert b"Traceback" not in proc.stderr


# -- the README's quick start, in a folder that holds only the script and the app -------


def readme_code_block(heading: str) -> list[str]:
    """The first code block (indented or fenced) after a ``## `` heading of the README."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index(f"## {heading}") + 1
    block: list[str] = []
    fenced = False
    for line in lines[start:]:
        if fenced:
            if line.startswith("```"):
                break
            block.append(line)
        elif line.startswith("```"):
            fenced = True
        elif line.startswith("    "):
            block.append(line[4:])
        elif block:
            break
        elif line.startswith("## "):
            break
    assert block, f"no code block after '## {heading}' in {README}"
    return block


@pytest.mark.parametrize(
    "heading", ["Quick start in an app", "快速上手（中文）"], ids=["english", "chinese"]
)
def test_readme_quick_start_commands_succeed_on_a_bare_python_in_an_app_folder(
    tmp_path: Path, heading: str
) -> None:
    operators_app = make_app(tmp_path / "operators-app", rows=20)
    commands = [
        shlex.split(line, comments=True)
        for line in readme_code_block(heading)
        if line.startswith("python ")
    ]
    assert any("--run" in words for words in commands), commands

    for words in commands:
        # -S: no site-packages, as on a server where nothing was installed.
        result = run_process([sys.executable, "-S", *words[1:]], cwd=operators_app.root)
        assert result.returncode == 0, f"{words}:\n{result.stdout}{result.stderr}"

    assert not (operators_app.root / "requirements.txt").exists()
    assert len(operators_app.backups("pet_painting.db")) == 1


# -- exit codes of the refusals: 2 for what the operator must change ------------------


def run_without_site_packages(app: App, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the script with ``python -S``: no site-packages, so no pytz, boto3, zstandard."""
    return run_process([sys.executable, "-S", str(app.script), *args], cwd=app.root)


def skip_if_importable_without_site_packages(module: str) -> None:
    """Skip where ``python -S`` still finds ``module`` (e.g. through PYTHONPATH)."""
    probe = subprocess.run(
        [sys.executable, "-S", "-c", f"import {module}"], capture_output=True, timeout=60
    )
    if probe.returncode == 0:
        pytest.skip(f"'{module}' is importable even with python -S here")


def test_schedule_with_a_timezone_without_pytz_exits_2_naming_what_to_install(app: App) -> None:
    skip_if_importable_without_site_packages("pytz")

    result = run_without_site_packages(app, "--schedule", "--timezone", "Asia/Shanghai")

    assert result.returncode == 2, result.stdout + result.stderr
    assert_no_traceback(result)
    assert "needs the 'pytz' package" in result.stderr
    assert "pip install pytz" in result.stderr
    assert app.backups() == []
    assert not app.log_file.exists()


@pytest.mark.skipif(os.name != "posix", reason="stopped with SIGTERM")
def test_schedule_runs_on_a_bare_python_without_any_package(app: App) -> None:
    skip_if_importable_without_site_packages("schedule")
    proc = subprocess.Popen(
        [sys.executable, "-S", str(app.script), "--schedule"],
        cwd=app.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not app.log_file.exists() and proc.poll() is None:
            assert time.monotonic() < deadline, "no catch-up backup within 60 s"
            time.sleep(0.05)
        time.sleep(0.5)  # the catch-up run prints its summary and the next run time
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)

    assert proc.returncode == 0, stdout + stderr
    assert "Next backup: " in stdout
    assert len(app.backups("pet_painting.db")) == 1


def test_compress_zstd_without_zstandard_exits_2_before_the_run(app: App) -> None:
    skip_if_importable_without_site_packages("zstandard")

    result = run_without_site_packages(app, "--run", "--compress", "zstd")

    assert result.returncode == 2, result.stdout + result.stderr
    assert_no_traceback(result)
    assert "pip install zstandard" in result.stderr
    assert not app.log_file.exists()
    assert not app.backup_dir.exists()


def test_backup_dir_under_a_regular_file_exits_2_naming_the_file(app: App, tmp_path: Path) -> None:
    a_file = tmp_path / "afile"
    a_file.write_bytes(b"x")

    result = app.run("--run", "--backup-dir", str(a_file / "x"))

    assert result.returncode == 2, result.stdout + result.stderr
    assert_no_traceback(result)
    assert f"cannot create the backup directory {a_file / 'x'}: {a_file} is a file" in (
        result.stderr
    )
    assert "choose another --backup-dir" in result.stderr
    assert a_file.read_bytes() == b"x"
    assert not app.log_file.exists()


def test_backup_dir_under_etc_passwd_exits_2(app: App) -> None:
    if not Path("/etc/passwd").is_file():
        pytest.skip("no /etc/passwd here")

    result = app.run("--run", "--backup-dir", "/etc/passwd/x")

    assert result.returncode == 2, result.stdout + result.stderr
    assert_no_traceback(result)
    assert "/etc/passwd is a file" in result.stderr


def test_run_in_a_folder_without_instance_exits_2_and_creates_no_instance_folder(
    tmp_path: Path,
) -> None:
    bare = make_app(tmp_path / "not-an-app", rows=None)

    result = bare.run("--run")

    assert result.returncode == 2, result.stdout + result.stderr
    assert_no_traceback(result)
    assert "there is no folder" in result.stderr
    assert str(bare.root / "instance") in result.stderr
    assert sorted(p.name for p in bare.root.iterdir()) == [SCRIPT.name]


def test_verify_with_no_backups_at_all_exits_1(app: App) -> None:
    result = app.run("--verify")

    assert result.returncode == 1, result.stdout + result.stderr
    assert_no_traceback(result)
    assert "no backups found" in result.stdout


def test_copy_to_the_backup_folder_itself_exits_2(app: App) -> None:
    result = app.run("--run", "--copy-to", str(app.backup_dir))

    assert result.returncode == 2, result.stdout + result.stderr
    assert_no_traceback(result)
    assert "is the backup folder itself" in result.stderr
    assert app.backups() == []


@pytest.mark.parametrize(
    ("flags", "option", "action", "meant_for"),
    [
        (["--run", "--target", "x"], "target", "run", "--restore"),
        (["--run", "--yes"], "yes", "run", "--restore"),
        (["--run", "--quick"], "quick", "run", "--verify"),
        (["--history", "--quick"], "quick", "history", "--verify"),
        (["--stats", "--limit", "5"], "limit", "stats", "--history"),
        (["--cron", "--json"], "json", "cron", "--run"),
        (["--verify", "--trigger", "cron"], "trigger", "verify", "--run"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_action_option_given_to_an_action_it_means_nothing_to_exits_2(
    app: App, flags: list[str], option: str, action: str, meant_for: str
) -> None:
    result = app.run(*flags)

    assert result.returncode == 2, result.stdout + result.stderr
    assert_no_traceback(result)
    assert f"--{option} means nothing to --{action}; it is for {meant_for}" in result.stderr
    assert app.backups() == []
    assert not app.log_file.exists()


def test_check_with_an_option_it_means_nothing_to_is_nagios_unknown(app: App) -> None:
    result = app.run("--check", "--target", "x")

    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stdout.startswith("UNKNOWN:"), result.stdout
    assert "--target means nothing to --check" in result.stdout


@pytest.mark.parametrize(
    "flags",
    [
        ["--run", "--trigger", "cron"],
        ["--history", "--limit", "5"],
        ["--verify", "--quick"],
        ["--check", "--json"],
    ],
    ids=" ".join,
)
def test_action_option_given_to_its_own_action_still_works(app: App, flags: list[str]) -> None:
    assert app.run("--run").returncode == 0

    result = app.run(*flags)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "means nothing" not in result.stderr + result.stdout


# -- JSON on a console in another encoding ---------------------------------------------


def history_json_bytes(app: App, db: str, encoding: str) -> bytes:
    """``--history --json`` stdout as raw bytes, on a console in ``encoding``."""
    result = subprocess.run(
        [sys.executable, str(app.script), "--history", "--json", "--db", db],
        cwd=app.root,
        env={**os.environ, "PYTHONIOENCODING": encoding},
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode(encoding, "replace")
    return result.stdout


@pytest.fixture
def chinese_history(app: App, tmp_path: Path) -> str:
    """A --db flag for a database under a Chinese path, with one backup in the run log."""
    db = f"宠物.db={make_db(tmp_path / '数据' / '宠物.db', rows=5)}"
    assert app.run("--run", "--db", db).returncode == 0
    return db


def test_history_json_on_a_gbk_console_is_gbk_json_with_the_chinese_as_it_is(
    app: App, chinese_history: str
) -> None:
    text = history_json_bytes(app, chinese_history, "gbk").decode("gbk")

    document = json.loads(text)
    assert "宠物.db" in text
    assert "\\u" not in text
    [row] = document["backups"]
    assert row["database"] == "宠物.db"
    assert Path(row["file"]).name.startswith("宠物.db.")


def test_history_json_on_an_ascii_console_escapes_the_chinese_to_the_same_paths(
    app: App, chinese_history: str
) -> None:
    gbk = json.loads(history_json_bytes(app, chinese_history, "gbk").decode("gbk"))

    text = history_json_bytes(app, chinese_history, "ascii").decode("ascii")

    assert "\\u" in text
    assert json.loads(text) == gbk


def test_a_refused_run_never_announces_a_start(tmp_path: Path) -> None:
    app = make_app(tmp_path / "app", rows=None)  # the script alone: no instance/ folder

    result = app.run("--run")

    assert result.returncode == dbs.ExitCode.USAGE
    assert result.stdout == ""  # no "Database backup" title for a run that did not begin
    assert "there is no folder" in result.stderr
