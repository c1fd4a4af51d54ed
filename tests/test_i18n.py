"""The tool in the operator's language: the catalog of texts, how the language is chosen, and
what the real CLI prints in Chinese and English, on UTF-8, GBK and ASCII consoles."""

from __future__ import annotations

import ast
import json
import re
import sqlite3
import string
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    SCRIPT,
    App,
    Nobody,
    Webhook,
    assert_no_traceback,
    make_app,
    make_db,
    run_process,
)

import database_backup_scheduler as dbs

SOURCE = SCRIPT.read_text(encoding="utf-8")
ZH = {"LANG": "zh_CN.UTF-8"}


def fields(template: str) -> set[str]:
    """The names of a template's placeholders."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def has_chinese(value: str) -> bool:
    """Chinese characters or Chinese (full-width) punctuation."""
    return re.search(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]", value) is not None


# -- the catalog ------------------------------------------------------------------------------


def test_every_text_used_in_the_code_is_in_the_catalog() -> None:
    used = set(re.findall(r"""\b(?:text|tr)\(\s*["']([a-z_]+\.[a-z_.]+)["']""", SOURCE))
    assert used, "no text(...) call found: the pattern no longer matches the code"
    assert sorted(used - set(dbs.TEXTS)) == []


def test_every_catalog_entry_is_used_in_the_code() -> None:
    catalog = SOURCE[SOURCE.index("TEXTS: dict[str, tuple[str, str]] = {") :]
    catalog = catalog[: catalog.index("\n}\n")]
    rest = SOURCE.replace(catalog, "")
    unused = [key for key in dbs.TEXTS if f'"{key}"' not in rest]
    assert unused == []


@pytest.mark.parametrize("key", sorted(dbs.TEXTS))
def test_catalog_entry_has_chinese_with_the_same_placeholders(key: str) -> None:
    english, chinese = dbs.TEXTS[key]
    assert english.strip() and has_chinese(chinese), (english, chinese)
    assert fields(english) == fields(chinese)


@pytest.mark.parametrize("setting", dbs.SETTINGS, ids=lambda s: s.key)
def test_every_setting_has_its_help_in_chinese(setting: dbs.Setting) -> None:
    assert has_chinese(setting.zh), setting.key
    if setting.shown_default and not re.fullmatch(r"[\w:./ -]*", setting.shown_default):
        assert setting.shown_zh and has_chinese(setting.shown_zh), setting.key


def test_argparse_messages_keep_their_placeholders_in_chinese() -> None:
    for english, chinese in dbs._ARGPARSE_ZH.items():  # argparse's own ids, in one table
        assert re.findall(r"%\(\w+\)\w|%\w", english) == re.findall(r"%\(\w+\)\w|%\w", chinese)


ERROR_MAKERS = {"BackupError", "_usage_error", "DatabaseDamaged", "VerificationFailed"}


def literal_text(node: ast.expr) -> bool:
    """A string written into the code: a literal, an f-string, a concatenation, or one of
    them picked by ``or`` / ``if ... else``."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, (ast.JoinedStr, ast.BinOp)):
        return True
    if isinstance(node, ast.BoolOp):
        return any(literal_text(value) for value in node.values)
    if isinstance(node, ast.IfExp):
        return literal_text(node.body) or literal_text(node.orelse)
    return False


def test_every_error_and_hint_comes_from_the_catalog() -> None:
    found = []
    for node in ast.walk(ast.parse(SOURCE)):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
        if name not in ERROR_MAKERS:
            continue
        given = list(node.args[:1]) + [k.value for k in node.keywords if k.arg == "hint"]
        if name == "_usage_error":
            given += node.args[1:2]  # its hint is positional
        found += [
            f"line {node.lineno}: {ast.get_source_segment(SOURCE, arg)}"
            for arg in given
            if literal_text(arg)
        ]
    assert found == [], "use text(...) for these messages:\n" + "\n".join(found)


def test_text_renders_in_each_language_and_is_english_as_a_string() -> None:
    message = dbs.text("error.database_missing", path="instance/宠物.db")

    assert str(message) == "database instance/宠物.db does not exist"
    assert message.render("zh") == "数据库 instance/宠物.db 不存在"


# -- choosing the language --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"LANG": "zh_CN.UTF-8"}, "zh"),
        ({"LANG": "zh_SG.GB2312"}, "zh"),
        ({"LANG": "zh_Hans"}, "zh"),
        ({"LC_ALL": "zh-CN"}, "zh"),
        ({"LANG": "zh_TW.UTF-8"}, "en"),  # Traditional Chinese: English until it has texts
        ({"LANG": "zh_HK.UTF-8"}, "en"),
        ({"LANG": "en_US.UTF-8"}, "en"),
        ({"LANG": "C.UTF-8"}, "en"),
        ({"LANGUAGE": "zh_CN:en_US", "LANG": "en_US.UTF-8"}, "zh"),
        ({"LC_ALL": "en_US.UTF-8", "LANG": "zh_CN.UTF-8"}, "en"),
        ({"LC_MESSAGES": "zh_CN.UTF-8", "LANG": "en_US.UTF-8"}, "zh"),
    ],
)
def test_language_comes_from_the_environment_as_gettext_reads_it(
    environ: dict[str, str], expected: str
) -> None:
    assert dbs.detect_language(environ, windows_ui=lambda: "zh") == expected


def test_language_falls_back_to_windows_then_english() -> None:
    assert dbs.detect_language({}, windows_ui=lambda: "zh") == "zh"
    assert dbs.detect_language({}, windows_ui=lambda: None) == "en"


# -- the real CLI -----------------------------------------------------------------------------


def test_run_prints_the_plans_summary_in_chinese(app: App) -> None:
    result = app.run("--run", env=ZH)

    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "🔰 开始执行数据库备份任务" in out
    assert "✅ 备份成功：pet_painting.db → pet_painting.db." in out and " 字节）" in out
    assert "✅ 备份任务完成" in out
    for label in (
        "备份文件数：1",
        "总大小：",
        "没有需要清理的旧备份",
        "备份目录总文件：1",
        "删除旧备份：0",
        "备份目录总大小：",
    ):
        assert label in out, label
    assert "Backup finished" not in out


def test_lang_en_overrides_a_chinese_environment(app: App) -> None:
    result = app.run("--run", "--lang", "en", env=ZH)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Backup finished" in result.stdout
    assert not has_chinese(result.stdout)


def test_config_file_lang_overrides_the_environment(app: App) -> None:
    (app.root / dbs.DEFAULT_CONFIG_FILE).write_text('{"lang": "zh"}', encoding="utf-8")

    result = app.run("--run")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "备份任务完成" in result.stdout


def test_run_log_and_json_stay_english_in_chinese(app: App) -> None:
    result = app.run("--run", "--json", "--db", "missing=does/not/exist.db", env=ZH)

    assert result.returncode == 1
    report = json.loads(result.stdout)
    (failed,) = [r for r in report["results"] if r["database"] == "missing"]
    assert failed["error"].startswith("database ") and failed["error"].endswith("does not exist")
    assert not has_chinese(app.log_file.read_text(encoding="utf-8"))


def test_a_failed_database_shows_its_error_and_hint_in_chinese(app: App) -> None:
    result = app.run("--run", "--db", "missing=does/not/exist.db", env=ZH)

    assert result.returncode == 1
    assert_no_traceback(result)
    assert "missing: 数据库 " in result.stdout and " 不存在" in result.stdout
    assert "提示：请检查路径" in result.stdout
    assert "备份任务完成，但有失败" in result.stdout


def test_an_error_and_its_hint_in_chinese(app: App) -> None:
    result = app.run("--run", "--config", "nowhere.json", env=ZH)

    assert result.returncode == dbs.ExitCode.USAGE
    assert_no_traceback(result)
    assert "错误：配置文件 " in result.stderr and " 不存在" in result.stderr
    assert "提示：请检查 --config" in result.stderr


def test_help_is_in_chinese(app: App) -> None:
    result = app.run("--help", env=ZH)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("用法：")
    assert "显示本帮助并退出" in result.stdout
    assert "立即备份所有数据库" in result.stdout
    assert "（默认：30）" in result.stdout  # --keep-days, from the settings table


def test_bad_usage_is_explained_in_chinese(app: App) -> None:
    result = app.run("--run", "--keep-days", "many", env=ZH)

    assert result.returncode == dbs.ExitCode.USAGE
    assert "用法：" in result.stderr and "错误：参数 --keep-days：" in result.stderr
    assert "usage:" not in result.stderr


@pytest.mark.parametrize("encoding", ["gbk", "ascii"])
def test_chinese_output_on_a_console_that_cannot_show_it_never_raises(
    tmp_path: Path, encoding: str
) -> None:
    app = make_app(tmp_path / "宠物画廊 app")
    command = [sys.executable, str(app.script), "--run"]
    env = {**dbs.os.environ, **ZH, "PYTHONIOENCODING": encoding}

    ran = subprocess.run(command, cwd=app.root, env=env, capture_output=True, timeout=120)

    assert ran.returncode == 0, ran.stderr
    assert b"Traceback" not in ran.stderr
    if encoding == "gbk":  # Windows' console in China: Chinese, in GBK
        assert "备份任务完成" in ran.stdout.decode("gbk")
        assert "宠物画廊 app" in ran.stdout.decode("gbk")
    else:  # degrades to question marks, never raises
        assert ran.stdout.isascii() and b"?" in ran.stdout


def test_generated_task_and_crontab_line_pass_the_language_on(app: App) -> None:
    task = app.run("--windows-task", "--python", "C:/Python312/python.exe", env=ZH)
    cron = app.run("--cron", env=ZH)

    assert task.returncode == 0, task.stdout + task.stderr
    assert cron.returncode == 0, cron.stdout + cron.stderr
    batch = (app.root / dbs.BATCH_FILE_NAME).read_bytes().decode("ascii", "replace")
    assert '--lang "zh"' in batch
    assert "--lang zh" in cron.stdout


def test_dingtalk_alert_reads_in_chinese(app: App, webhook: Webhook) -> None:
    result = app.run(
        "--run",
        "--db",
        "instance/pet_painting.db",
        "--db",
        "missing=does/not/exist.db",
        "--notify-url",
        webhook.url(),
        "--notify-format",
        "dingtalk",
        env=ZH,
    )

    assert result.returncode == 1
    (body,) = webhook.bodies
    assert body["msgtype"] == "text"
    content = body["text"]["content"]
    assert content.startswith("失败：") and "数据库备份" in content
    assert "字节）" in content  # the database that was backed up, in Chinese


def test_json_alert_keeps_the_run_in_english_beside_a_chinese_text(
    app: App, webhook: Webhook
) -> None:
    result = app.run(
        "--run", "--db", "missing=does/not/exist.db", "--notify-url", webhook.url(), env=ZH
    )

    assert result.returncode == 1
    (body,) = webhook.bodies
    assert body["text"].startswith("失败：")
    assert body["run"]["status"] == "failed" and not has_chinese(json.dumps(body["run"]))


def test_check_keeps_the_nagios_words_and_speaks_chinese_around_them(app: App) -> None:
    result = app.run("--check", env=ZH)  # no backup yet: CRITICAL

    assert result.returncode == 2, result.stdout + result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("CRITICAL: pet_painting.db：没有备份")
    json_result = app.run("--check", "--json", env=ZH)
    problems = json.loads(json_result.stdout)["problems"]
    assert problems[0] == {"status": "CRITICAL", "message": "pet_painting.db: no backup"}


def test_a_file_system_error_names_the_file_and_the_fix_in_chinese(nobody: Nobody) -> None:
    app = nobody.make_app()
    make_db(app.main_db)
    nobody.give(app.root)
    assert nobody.run(app, "--run").returncode == 0
    app.backup_dir.chmod(0o500)  # the backups can no longer be written

    result = run_process([*nobody.prefix, str(app.script), "--run"], cwd=app.root, env=ZH)

    assert result.returncode == 1
    assert_no_traceback(result)
    assert f"{app.backup_dir} 时没有权限" in result.stdout
    assert "提示：请以拥有应用文件的用户运行" in result.stdout


def test_os_errors_read_in_chinese() -> None:
    error = dbs.describe_os_error(
        OSError(28, "No space left on device"), "/srv/备份/x.bak", "writing a temporary file into"
    )

    assert error.message == "disk full while writing a temporary file into /srv/备份/x.bak"
    assert dbs.render_text(error.text, "zh") == "写入临时文件到 /srv/备份/x.bak 时磁盘已满"
    assert dbs.render_text(error.hint_text, "zh").startswith("请清理该磁盘的空间")


def test_a_bad_config_value_is_explained_in_chinese(app: App) -> None:
    (app.root / dbs.DEFAULT_CONFIG_FILE).write_text('{"keep_days": "many"}', encoding="utf-8")

    result = app.run("--run", env=ZH)

    assert result.returncode == dbs.ExitCode.USAGE
    assert "keep_days 必须是整数，而不是 'many'" in result.stderr
    assert "提示：请修正该值，各设置的说明见 --help" in result.stderr


def test_a_drills_findings_read_in_chinese_and_are_logged_in_english(app: App) -> None:
    assert app.run("--run").returncode == 0
    with sqlite3.connect(app.main_db) as conn:
        conn.execute("CREATE TABLE invoices(id INTEGER PRIMARY KEY)")
    conn.close()

    result = app.run("--drill", env=ZH)

    assert result.returncode == 1
    assert "   - 线上数据库的 table invoices 在备份中不存在" in result.stdout
    logged = app.log_file.read_text(encoding="utf-8")
    assert "table invoices of the live database is missing from the backup" in logged
    assert not has_chinese(logged)


def test_decrypt_without_its_key_is_explained_in_chinese(app: App) -> None:
    result = app.run("--decrypt", "copy.bak.age", env=ZH)

    assert result.returncode == dbs.ExitCode.USAGE
    assert_no_traceback(result)
    assert "错误：--decrypt 需要 --identity KEYFILE 和 --output FILE" in result.stderr
    assert "提示：例如 --decrypt copy.bak.age --identity key.txt" in result.stderr


def test_a_missing_copy_to_folder_is_explained_in_chinese(app: App, tmp_path: Path) -> None:
    nas = tmp_path / "nas"  # not mounted

    result = app.run("--run", "--copy-to", str(nas), env=ZH)

    assert result.returncode == 1
    assert_no_traceback(result)
    assert f"复制到 {nas} 失败：目标文件夹 {nas} 不存在" in result.stdout
    assert "提示：请挂载该磁盘或共享，或创建这个文件夹" in result.stdout
    (run,) = json.loads(app.log_file.read_text(encoding="utf-8"))["runs"]
    (far,) = run["destinations"]
    assert far["error"] == f"destination folder {nas} does not exist"


def test_a_refused_restore_is_explained_in_chinese(app: App) -> None:
    assert app.run("--run").returncode == 0
    (backup,) = app.backups()
    app.log_file.unlink()  # nothing can vouch for the backup now

    result = app.run("--restore", str(backup), "--yes", env=ZH)

    assert result.returncode == dbs.ExitCode.USAGE
    assert_no_traceback(result)
    assert f"错误：拒绝恢复：{backup.name} 不是运行日志 " in result.stderr
    assert "；没有做任何更改" in result.stderr
    assert "如果确定要恢复它，请加上 --allow-unlogged" in result.stderr
