"""Alerts: webhooks posted to a real HTTP server on 127.0.0.1, and alert commands.

A delivery that fails is a warning and a line in the run log; it never changes a run's exit code,
and no webhook secret (a query token, Slack's secret path) is ever printed or logged.
"""

from __future__ import annotations

import json
import shlex
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import (
    HOLD_LOCK,
    App,
    Nobody,
    Webhook,
    assert_no_traceback,
    make_config,
    make_db,
)

DB = "pet_painting.db"
TOKEN = "tok3n-Qx7Zr9-NEVER-SHOWN"
SLACK_SECRET = "sl4ckS3cretPathNEVERshown"


# -- servers ---------------------------------------------------------------------------------


class RawServer:
    """A TCP server on 127.0.0.1 that answers every request with ``reply``, or, given none,
    never answers (until closed)."""

    def __init__(self, reply: bytes | None) -> None:
        released = self.released = threading.Event()

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.recv(65536)
                if reply is None:
                    released.wait(60)
                else:
                    self.request.sendall(reply)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=30)


@pytest.fixture
def raw_server() -> Iterator[Callable[[bytes | None], RawServer]]:
    started: list[RawServer] = []

    def start(reply: bytes | None) -> RawServer:
        started.append(RawServer(reply))
        return started[-1]

    try:
        yield start
    finally:
        for server in started:
            server.close()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- helpers ---------------------------------------------------------------------------------


def last_run(app: App) -> dict[str, Any]:
    log = json.loads(app.log_file.read_text(encoding="utf-8"))
    return log["runs"][-1]


def failing(app: App) -> list[str]:
    """Flags for a run that fails: a required database that does not exist, next to the app's."""
    return ["--db", f"{DB}={app.main_db}", "--db", f"gone.db={app.root / 'gone.db'}"]


def assert_hidden(app: App, secret: str, *results: Any) -> None:
    for result in results:
        assert secret not in result.stdout
        assert secret not in result.stderr
    if app.log_file.exists():
        assert secret not in app.log_file.read_text(encoding="utf-8")


def recorder(tmp_path: Path, exit_code: int = 0) -> tuple[str, Path]:
    """An alert command that saves its standard input to a file and exits ``exit_code``."""
    script = tmp_path / "alert scripts" / "record.py"
    script.parent.mkdir(exist_ok=True)
    script.write_text(
        "import pathlib, sys\n"
        "pathlib.Path(sys.argv[1]).write_text(sys.stdin.read(), encoding='utf-8')\n"
        f"sys.exit({exit_code})\n",
        encoding="utf-8",
    )
    saved = tmp_path / "alert received.json"
    words = [sys.executable, str(script), str(saved)]
    return " ".join(shlex.quote(w) for w in words), saved


# -- payloads --------------------------------------------------------------------------------


def test_json_alert_posts_the_run_as_logged(app: App, webhook: Webhook) -> None:
    result = app.run("--run", "--notify-on", "always", "--notify-url", webhook.url())
    assert result.returncode == 0, result.stdout + result.stderr
    (request,) = webhook.requests
    assert request["content_type"].startswith("application/json")
    (body,) = webhook.bodies
    assert body["event"] == "database_backup"
    assert body["text"].startswith("OK")
    logged = last_run(app)
    assert body["run"]["status"] == "ok"
    assert body["run"]["started_at"] == logged["started_at"]
    assert body["run"]["results"] == logged["results"]


def _dingtalk_text(body: dict[str, Any]) -> str:
    assert set(body) == {"msgtype", "text"} and body["msgtype"] == "text"
    return body["text"]["content"]


def _feishu_text(body: dict[str, Any]) -> str:
    assert set(body) == {"msg_type", "content"} and body["msg_type"] == "text"
    return body["content"]["text"]


def _slack_text(body: dict[str, Any]) -> str:
    assert set(body) == {"text"}
    return body["text"]


@pytest.mark.parametrize(
    "fmt, text_of",
    [
        ("dingtalk", _dingtalk_text),
        ("wecom", _dingtalk_text),
        ("feishu", _feishu_text),
        ("slack", _slack_text),
    ],
)
def test_chat_formats_post_a_text_message_naming_the_failure(
    app: App, webhook: Webhook, fmt: str, text_of: Callable[[dict[str, Any]], str]
) -> None:
    result = app.run("--run", *failing(app), "--notify-format", fmt, "--notify-url", webhook.url())
    assert result.returncode == 1, result.stdout + result.stderr
    (body,) = webhook.bodies
    text = text_of(body)
    assert text.startswith("FAILED")
    assert "backup" in text  # the keyword a DingTalk robot's filter needs
    assert "gone.db" in text


def test_failed_destination_triggers_an_alert_naming_it(
    app: App, webhook: Webhook, tmp_path: Path
) -> None:
    nas = tmp_path / "nas"
    result = app.run("--run", "--copy-to", str(nas), "--notify-url", webhook.url())
    assert result.returncode == 1, result.stdout + result.stderr
    (body,) = webhook.bodies
    assert body["run"]["status"] == "failed"
    assert str(nas) in body["text"]


def test_alert_settings_from_the_config_file(app: App, webhook: Webhook) -> None:
    settings = {"notify_url": [webhook.url()], "notify_on": "success", "notify_format": "slack"}
    (app.root / "database_backup_config.json").write_text(json.dumps(settings), encoding="utf-8")
    assert app.run("--run").returncode == 0
    (body,) = webhook.bodies
    assert body["text"].startswith("OK")


# -- when --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "notify_on, run_fails, posted",
    [
        (None, False, False),
        (None, True, True),
        ("failure", False, False),
        ("failure", True, True),
        ("success", False, True),
        ("success", True, False),
        ("always", False, True),
        ("always", True, True),
    ],
)
def test_notify_on_decides_which_runs_are_announced(
    app: App, webhook: Webhook, notify_on: str | None, run_fails: bool, posted: bool
) -> None:
    flags = ["--notify-url", webhook.url(), *(failing(app) if run_fails else [])]
    if notify_on:
        flags += ["--notify-on", notify_on]
    result = app.run("--run", *flags)
    assert result.returncode == (1 if run_fails else 0), result.stdout + result.stderr
    assert len(webhook.requests) == (1 if posted else 0)
    if posted:
        assert webhook.bodies[0]["run"]["status"] == ("failed" if run_fails else "ok")


def test_alert_goes_to_every_notify_url(app: App, webhook: Webhook) -> None:
    urls = ["--notify-url", webhook.url("/first"), "--notify-url", webhook.url("/second")]
    assert app.run("--run", *failing(app), *urls).returncode == 1
    assert sorted(r["path"] for r in webhook.requests) == ["/first", "/second"]


# -- deliveries that fail --------------------------------------------------------------------


def test_webhook_answering_500_is_a_warning_and_the_run_still_succeeds(
    app: App, webhook: Webhook
) -> None:
    webhook.status = 500
    result = app.run("--run", "--notify-on", "always", "--notify-url", webhook.url())
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(webhook.requests) == 1
    assert "warning" in result.stderr and "500" in result.stderr, result.stderr
    (alert,) = last_run(app)["alerts"]
    assert alert["status"] == "failed" and "500" in alert["error"]
    assert any("500" in w for w in last_run(app)["warnings"])


def test_closed_port_is_a_warning_and_the_run_still_succeeds(app: App) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook"
    result = app.run("--run", "--notify-on", "always", "--notify-url", url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_no_traceback(result)
    assert "warning" in result.stderr, result.stderr
    (alert,) = last_run(app)["alerts"]
    assert alert["status"] == "failed" and alert["error"]
    assert last_run(app)["results"][0]["status"] == "ok"


def test_failed_delivery_keeps_the_exit_code_of_a_failed_run(app: App) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook"
    result = app.run("--run", *failing(app), "--notify-url", url)
    assert result.returncode == 1, result.stdout + result.stderr
    assert last_run(app)["alerts"][0]["status"] == "failed"


def test_webhook_answering_garbage_is_a_warning_not_a_crash(
    app: App, raw_server: Callable[[bytes | None], RawServer]
) -> None:
    server = raw_server(b"garbage\r\n\r\n")
    url = f"http://127.0.0.1:{server.port}/hook"
    result = app.run("--run", "--notify-on", "always", "--notify-url", url)
    assert_no_traceback(result)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning" in result.stderr, result.stderr
    assert last_run(app)["alerts"][0]["status"] == "failed"


def test_webhook_that_never_answers_times_out_with_a_warning(
    app: App, raw_server: Callable[[bytes | None], RawServer]
) -> None:
    server = raw_server(None)
    url = f"http://127.0.0.1:{server.port}/hook"
    started = time.monotonic()
    result = app.run("--run", "--notify-on", "always", "--notify-url", url, "--notify-timeout", "1")
    assert time.monotonic() - started < 30
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning" in result.stderr, result.stderr
    assert last_run(app)["alerts"][0]["status"] == "failed"


def test_notify_url_with_a_bad_port_never_crashes_a_run(app: App) -> None:
    url = f"http://127.0.0.1:99999/hook?access_token={TOKEN}"
    result = app.run("--run", "--notify-on", "always", "--notify-url", url)
    output = result.stdout + result.stderr
    assert_no_traceback(result)
    assert "unexpected error" not in output, output
    assert_hidden(app, TOKEN, result)
    # Either refused up front as bad usage, or a delivery that failed after a logged run.
    assert result.returncode in (0, 2), output
    if result.returncode == 0:
        assert last_run(app)["alerts"][0]["status"] == "failed"


# -- secrets -----------------------------------------------------------------------------------


def test_token_in_the_query_is_masked_in_output_and_log(app: App, webhook: Webhook) -> None:
    webhook.status = 500  # a failed delivery is a warning that names its target
    url = webhook.url(f"/robot/send?access_token={TOKEN}")
    text = app.run("--run", "--notify-on", "always", "--notify-url", url)
    as_json = app.run("--run", "--json", "--notify-on", "always", "--notify-url", url)
    assert (text.returncode, as_json.returncode) == (0, 0)
    assert [r["path"] for r in webhook.requests] == [f"/robot/send?access_token={TOKEN}"] * 2
    assert f"http://127.0.0.1:{webhook.port}/***" in text.stderr
    assert_hidden(app, TOKEN, text, as_json)


def test_slack_style_secret_path_is_masked_in_output_and_log(app: App, webhook: Webhook) -> None:
    webhook.status = 500
    url = webhook.url(f"/services/T0001/B0002/{SLACK_SECRET}")
    result = app.run(
        "--run", *failing(app), "--notify-format", "slack", "--notify-url", url, "--json"
    )
    assert result.returncode == 1
    assert len(webhook.requests) == 1
    assert "/***" in result.stderr
    assert_hidden(app, SLACK_SECRET, result)
    assert_hidden(app, "T0001/B0002", result)


def test_show_config_masks_notify_urls(app: App, webhook: Webhook) -> None:
    url = webhook.url(f"/robot/send?access_token={TOKEN}")
    result = app.run("--show-config", "--notify-url", url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["notify_url"] == [f"http://127.0.0.1:{webhook.port}/***"]
    assert_hidden(app, TOKEN, result)


def test_notify_url_that_http_refuses_is_masked_and_never_crashes(app: App) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook?access_token={TOKEN} pasted"
    result = app.run("--run", "--notify-on", "always", "--notify-url", url)
    output = result.stdout + result.stderr
    assert_hidden(app, TOKEN, result)
    assert "unexpected error" not in output, output
    assert result.returncode in (0, 2), output


# -- --notify-command ------------------------------------------------------------------------


def test_notify_command_gets_the_json_summary_on_stdin(app: App, tmp_path: Path) -> None:
    command, saved = recorder(tmp_path)
    result = app.run("--run", *failing(app), "--notify-command", command)
    assert result.returncode == 1, result.stdout + result.stderr
    summary = json.loads(saved.read_text(encoding="utf-8"))
    assert summary["event"] == "database_backup"
    assert summary["run"]["status"] == "failed"
    assert summary["run"]["results"] == last_run(app)["results"]
    assert last_run(app)["alerts"] == [{"target": "command", "status": "ok", "error": None}]


def test_notify_command_follows_notify_on(app: App, tmp_path: Path) -> None:
    command, saved = recorder(tmp_path)
    assert app.run("--run", "--notify-command", command).returncode == 0
    assert not saved.exists()


def test_notify_command_that_fails_is_a_warning_in_output_and_log(app: App, tmp_path: Path) -> None:
    command, saved = recorder(tmp_path, exit_code=2)
    result = app.run("--run", "--notify-on", "always", "--notify-command", command)
    assert result.returncode == 0, result.stdout + result.stderr
    assert saved.exists()
    assert "warning" in result.stderr and "exited 2" in result.stderr, result.stderr
    (alert,) = last_run(app)["alerts"]
    assert (alert["status"], alert["error"]) == ("failed", "exited 2")


def test_notify_command_that_is_not_installed_is_a_warning(app: App) -> None:
    result = app.run(
        "--run", "--notify-on", "always", "--notify-command", "no-such-mailer-4711 ops@example"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert_no_traceback(result)
    assert "warning" in result.stderr, result.stderr
    assert last_run(app)["alerts"][0]["status"] == "failed"


# -- runs that stop with an error, or never start ----------------------------------------------


@pytest.fixture
def lock_held(app: App) -> Iterator[None]:
    """Another process holds the run lock (as a run that hangs would) until the test ends."""
    if sys.platform == "win32":
        pytest.skip("fcntl.flock")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(app.backup_dir / ".database_backup.lock"), "60"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        yield
    finally:
        holder.kill()
        holder.wait(timeout=10)
        if holder.stdout:
            holder.stdout.close()


def test_run_refused_by_a_held_lock_is_announced(
    app: App, webhook: Webhook, lock_held: None
) -> None:
    log_before = app.log_file.read_bytes() if app.log_file.exists() else None
    result = app.run("--run", "--lock-timeout", "0", "--notify-url", webhook.url())
    assert result.returncode == 75, result.stdout + result.stderr
    assert_no_traceback(result)
    (body,) = webhook.bodies
    run = body["run"]
    assert run["status"] == "failed" and run["results"] == []
    assert "another run holds the lock" in run["error"]
    assert run["hint"] == "let it finish, or raise --lock-timeout"
    assert body["text"].startswith("FAILED")
    assert "- error: another run holds the lock" in body["text"]
    # Not logged: without the run lock, writing the log could lose the other run's entry.
    assert (app.log_file.read_bytes() if app.log_file.exists() else None) == log_before


@pytest.mark.parametrize("fmt", ["dingtalk", "slack"])
def test_refused_run_reaches_chat_bots_as_text(
    app: App, webhook: Webhook, lock_held: None, fmt: str
) -> None:
    flags = ["--notify-format", fmt, "--notify-url", webhook.url()]
    assert app.run("--run", "--lock-timeout", "0", *flags).returncode == 75
    (body,) = webhook.bodies
    text = _dingtalk_text(body) if fmt == "dingtalk" else _slack_text(body)
    assert text.startswith("FAILED")
    assert "another run holds the lock" in text
    assert "fix: let it finish, or raise --lock-timeout" in text


def test_refused_run_follows_notify_on(app: App, webhook: Webhook, lock_held: None) -> None:
    flags = ["--notify-on", "success", "--notify-url", webhook.url()]
    assert app.run("--run", "--lock-timeout", "0", *flags).returncode == 75
    assert webhook.requests == []


def test_refused_run_with_an_undeliverable_alert_says_both(app: App, lock_held: None) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook?token={TOKEN}"
    result = app.run("--run", "--lock-timeout", "0", "--notify-url", url)
    assert result.returncode == 75, result.stdout + result.stderr
    assert_no_traceback(result)
    assert "another run holds the lock" in result.stderr
    assert "the alert to http://127.0.0.1:" in result.stderr and "failed too" in result.stderr
    assert_hidden(app, TOKEN, result)


def test_run_that_cannot_make_its_backup_folder_is_announced(
    app: App, tmp_path: Path, webhook: Webhook
) -> None:
    blocker = tmp_path / "not a folder"
    blocker.write_text("a file where the backup folder should be\n", encoding="utf-8")
    command, saved = recorder(tmp_path)
    result = app.run(
        "--run",
        "--backup-dir",
        str(blocker / "backups"),
        "--notify-url",
        webhook.url(),
        "--notify-command",
        command,
    )
    # A backup folder that cannot be made is a configuration error (exit 2), announced too.
    assert result.returncode == 2, result.stdout + result.stderr
    assert_no_traceback(result)
    (body,) = webhook.bodies
    assert body["run"]["status"] == "failed"
    assert str(blocker) in body["run"]["error"]
    summary = json.loads(saved.read_text(encoding="utf-8"))
    assert summary["run"]["error"] == body["run"]["error"]
    assert blocker.read_text(encoding="utf-8").startswith("a file where")


@pytest.mark.parametrize("folder", ["no such folder", "a file/sub"])
def test_run_whose_log_folder_is_missing_is_announced(
    app: App, webhook: Webhook, folder: str
) -> None:
    (app.root / "a file").write_text("not a folder\n", encoding="utf-8")
    log_file = app.root / folder / "log.json"
    result = app.run("--run", "--log-file", str(log_file), "--notify-url", webhook.url())
    assert result.returncode == 2, result.stdout + result.stderr
    (body,) = webhook.bodies
    assert "the folder of the run log" in body["run"]["error"]
    assert body["run"]["hint"] == "create it, or choose another --log-file"
    assert app.backups() == []


def test_run_that_fails_after_its_backups_is_announced_with_them(
    app: App, webhook: Webhook
) -> None:
    # The run log's name holds an SQLite database: the backups are made, the log is refused.
    shutil.copyfile(app.main_db, app.log_file)
    result = app.run("--run", "--notify-url", webhook.url())
    assert result.returncode == 1, result.stdout + result.stderr
    assert_no_traceback(result)
    (body,) = webhook.bodies
    run = body["run"]
    assert run["status"] == "failed"
    assert "is an SQLite database, not a run log" in run["error"]
    made = [r for r in run["results"] if r["status"] == "ok"]
    assert made and {r["status"] for r in run["results"]} <= {"ok", "skipped"}
    assert len(app.backups()) == len(made)
    assert "- error: " in body["text"] and DB in body["text"]


def test_a_failure_announced_once_is_not_announced_again(app: App, webhook: Webhook) -> None:
    shutil.copyfile(app.main_db, app.log_file)  # the log is refused after the run's own alert
    result = app.run("--run", *failing(app), "--notify-url", webhook.url())
    assert result.returncode == 1, result.stdout + result.stderr
    assert len(webhook.requests) == 1
    assert "error" not in webhook.bodies[0]["run"]


def test_notify_command_that_times_out_does_not_show_its_command_line(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import database_backup_scheduler as dbs

    monkeypatch.setattr(dbs, "NOTIFY_COMMAND_TIMEOUT_S", 0.5)
    script = tmp_path / "slow alert.py"
    script.write_text("import time\ntime.sleep(60)\n", encoding="utf-8")
    command = " ".join(shlex.quote(w) for w in [sys.executable, str(script), TOKEN])
    config = make_config(app.root, "--notify-command", command)
    (delivery,) = dbs.send_alerts(config, {"status": "failed", "results": []})
    assert delivery == {"target": "command", "status": "failed", "error": "did not finish in 0.5 s"}


@pytest.fixture
def shut_out(nobody: Nobody) -> tuple[App, Path]:
    """An app folder owned by an unprivileged user (its database beside the script), and a
    folder that user cannot enter."""
    app = nobody.make_app()
    make_db(app.root / DB)
    nobody.give(app.root)
    shut = nobody.base / "shut"
    shut.mkdir(mode=0o700)
    return app, shut


@pytest.mark.parametrize("where", ["--log-file", "--backup-dir"])
def test_folder_the_user_cannot_enter_is_a_clear_error_and_an_alert(
    nobody: Nobody, shut_out: tuple[App, Path], webhook: Webhook, where: str
) -> None:
    app, shut = shut_out
    paths = {"--log-file": str(app.root / "log.json"), "--backup-dir": str(app.root / "backups")}
    paths[where] = str(shut / "inside" / ("log.json" if where == "--log-file" else "backups"))
    flags = [w for kv in paths.items() for w in kv]
    result = nobody.run(
        app, "--run", "--db", str(app.root / DB), *flags, "--notify-url", webhook.url()
    )
    # A log folder it cannot enter fails the run (1); a backup folder it cannot make is a
    # configuration error (2).
    expected = 2 if where == "--backup-dir" else 1
    assert result.returncode == expected, result.stdout + result.stderr
    assert_no_traceback(result)
    assert "unexpected error" not in result.stderr
    assert "no permission while" in result.stderr and str(shut) in result.stderr
    (body,) = webhook.bodies
    assert body["run"]["status"] == "failed" and "no permission" in body["run"]["error"]
