#!/usr/bin/env python3
"""database_backup_scheduler: verified, rotated backups of a web app's SQLite databases.

Copy this file into the root of the app (next to ``instance/``) and run it:

    python database_backup_scheduler.py --run            # back up every database now
    python database_backup_scheduler.py --history        # recent backups, newest first
    python database_backup_scheduler.py --stats          # counts, sizes, disk budget
    python database_backup_scheduler.py --schedule       # stay running, back up daily at 03:00
    python database_backup_scheduler.py --windows-task   # write run_database_backup.bat
    python database_backup_scheduler.py --cron           # print a crontab line
    python database_backup_scheduler.py --verify         # check every backup
    python database_backup_scheduler.py --restore FILE   # put a backup back, safely
    python database_backup_scheduler.py --check          # one health verdict for a monitor

Nouns used throughout:
- source database: a live SQLite file of the app, e.g. ``instance/pet_painting.db``.
- backup: a complete, verified, self-contained copy of one source database, named
  ``<name>.<YYYYmmdd_HHMMSS>.bak`` in the backup directory.
- run: one pass that backs up every configured database, prunes, and is logged.
- retention: which backups a run keeps (``keep_days``, never fewer than ``keep_last``).
- restore: putting a backup back into its source database through SQLite.
- destination: somewhere a copy of each backup also goes (a folder, S3, an upload command).
- safety copy: the database a restore replaced, kept as ``<name>.<stamp>.pre-restore``.
- sealed copy: a temporary copy of one database, complete, checked, fsynced and hashed
  (``sealed_copy``); backups, safety copies and restores are each one.

Only the standard library is needed, ``--schedule`` included; ``--timezone`` needs ``pytz``,
``--s3`` needs ``boto3`` and ``--compress zstd`` needs ``zstandard``.
"""

from __future__ import annotations

__version__ = "1.0.0"

import argparse
import contextlib
import dataclasses
import datetime as dt
import enum
import errno
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import stat
import struct
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Callable, NoReturn, TextIO

# Loaded where they are used, to keep every start short: ctypes, concurrent.futures,
# gzip, shlex, socket, subprocess, traceback, urllib.request; pytz, boto3 and zstandard
# are optional packages.


# ======================================================================================
# Constants and defaults
# ======================================================================================

SCRIPT_NAME = "database_backup_scheduler.py"
APP_ROOT = Path(__file__).resolve().parent

MAIN_DATABASE = "instance/pet_painting.db"
ROOT_DATABASE = "pet_painting.db"
# The app-root database shares its file name with the main one; a distinct name keeps
# their backups from overwriting each other in the one backup directory.
ROOT_DATABASE_NAME = "root_pet_painting.db"
DEFAULT_BACKUP_DIR = "instance/backups"
DEFAULT_LOG_FILE = "database_backup_log.json"
DEFAULT_CONFIG_FILE = "database_backup_config.json"

# The settings' defaults are in SETTINGS (under Configuration), each written once.
DEFAULT_HISTORY_LIMIT = 20
# A restore waits at most this long for the app to let go of its database (never the whole
# --busy-timeout): an app holding a WAL database open does not let go by waiting.
RESTORE_WAIT_S = 3.0
# A heartbeat ping never holds a run up longer than this.
HEARTBEAT_TIMEOUT_S = 5.0
# --check allows the daily run this long past --max-age before calling a backup stale.
CHECK_GRACE = dt.timedelta(hours=1)

TIMESTAMP_FORMAT = "%Y%m%d_%H%M%S"
BACKUP_SUFFIX = ".bak"
# --compress: the standard library's gzip, or zstd when the zstandard package is installed.
COMPRESSION_SUFFIXES = {"gzip": ".gz", "zstd": ".zst"}
GZIP_LEVEL = 6
ZSTD_LEVEL = 3
SAFETY_SUFFIX = ".pre-restore"
# --encrypt-to: what a destination receives is the backup's name plus this (age's own).
ENCRYPTED_SUFFIX = ".age"
TEMP_PREFIX = ".dbbackup-"
# --archive: <folder>.<time>.zip beside the backups.
ARCHIVE_SUFFIX = ".zip"
ARCHIVE_KIND = "archive"  # an archive's BackupFile.compression: it is read as a ZIP
# --run makes an archive when the newest is archive_every_days old, give or take this:
# a weekly archive taken by a daily 03:00 run is due on the seventh day, seconds or not.
ARCHIVE_SLACK = dt.timedelta(hours=1)
LOCK_FILE_NAME = ".database_backup.lock"
BATCH_FILE_NAME = "run_database_backup.bat"
TASK_LOG_FILE_NAME = "database_backup_task.log"

HASH_CHUNK_BYTES = 1024 * 1024
# The direct copy reads and writes this much at a time: few system calls, and a buffer
# that stays in the CPU's cache (4 MiB copies at half the speed).
COPY_CHUNK_BYTES = 256 * 1024
# The hash read behind the direct copy asks the OS to write each such stretch to disk (Linux).
WRITEBACK_BYTES = 8 * 1024 * 1024
# A WAL longer than this is copied through SQLite's backup API: the direct copy keeps a map
# of the WAL's pages in memory (about 100 bytes a frame), which must stay small.
WAL_MAP_MAX_FRAMES = 100_000
PROGRESS_MIN_BYTES = 32 * 1024 * 1024
# The scheduler wakes at least this often to re-read the wall clock, so a machine that
# slept through 03:00 (monotonic sleep does not count suspend) backs up when it wakes.
SCHEDULER_MAX_SLEEP_S = 60.0
CATCH_UP_AGE = dt.timedelta(days=1)
# SQLite waits for a locked database inside C code, where no signal handler runs: a backup
# lets it wait this long at a time and loops in Python up to --busy-timeout, so that Ctrl+C
# is answered at once.
SQLITE_WAIT_SLICE_S = 0.1
TRIGGERS = ("manual", "schedule", "task", "cron")
NOTIFY_FORMATS = ("json", "dingtalk", "wecom", "feishu", "slack")
NOTIFY_ON = ("failure", "success", "always")
# SQLite's result codes; the sqlite3 module names them only from Python 3.11.
SQLITE_BUSY = 5
SQLITE_LOCKED = 6
_SQLITE_HEADER = b"SQLite format 3\x00"
_EDQUOT = getattr(errno, "EDQUOT", -1)  # a full disk quota; Windows has no such code
# SQLite's file formats (https://sqlite.org/fileformat2.html and walformat.html) as far as
# the direct copy reads them. The page holding byte 2**30 is SQLite's lock-byte page: it
# never holds data, Windows locks parts of it, and copies leave it zero.
_PENDING_BYTE = 0x40000000
_WAL_HEADER_BYTES = 32
_WAL_FRAME_HEADER_BYTES = 24
_WAL_MAGIC = (0x377F0682, 0x377F0683)
_WAL_INDEX_VERSION = 3007000
# The -shm file starts with two copies of the 48-byte WAL-index header, in native byte
# order; its locks start at byte 120, so reading the first 96 bytes never meets one.
_WAL_INDEX_HEADER = struct.Struct("=3I2BH2I2I8s2I")


class ExitCode(enum.IntEnum):
    """Process exit codes; documented in the README."""

    OK = 0
    FAILED = 1
    USAGE = 2
    LOCKED = 75  # EX_TEMPFAIL: another run holds the lock; try again later


# ======================================================================================
# Texts: every message for people, in English and Simplified Chinese
# ======================================================================================

LANGUAGES = ("en", "zh")

# Message id -> (English, Chinese), with the same named placeholders in both. Messages for
# people are Text values rendered in the operator's language where they are shown; the run
# log and JSON keep English (str() of a Text), so they read the same on every machine.
TEXTS: dict[str, tuple[str, str]] = {
    # The command line's frame: errors, hints, warnings.
    "cli.error": ("error: {message}", "错误：{message}"),
    "cli.hint": ("hint: {hint}", "提示：{hint}"),
    "cli.warning": ("warning: {message}", "警告：{message}"),
    "cli.interrupted": ("interrupted", "已中断"),
    "cli.choose_action": (
        "choose an action, e.g. --run (see --help)",
        "请选择一个操作，例如 --run（见 --help）",
    ),
    "cli.option_not_for": (
        "{option} means nothing to {action}; it is for {used_by}",
        "{option} 对 {action} 没有意义；它用于 {used_by}",
    ),
    "cli.leave_out": ("leave out {option}", "请去掉 {option}"),
    "size.bytes": ("{size:,.0f} bytes", "{size:,.0f} 字节"),
    "cli.with_default": ("{help} (default: {default})", "{help}（默认：{default}）"),
    # --run
    "run.title": ("Database backup - {time}", "开始执行数据库备份任务 - {time}"),
    "run.backed_up": (
        "{database}: {file} ({size:,} bytes)",
        "备份成功：{database} → {file}（{size:,} 字节）",
    ),
    "run.backed_up_unchanged": (
        "{database}: {file} ({size:,} bytes, unchanged: shares the previous file)",
        "备份成功：{database} → {file}（{size:,} 字节，未变化：与上一个备份共用同一文件）",
    ),
    "run.skipped": (
        "{database}: skipped ({source} not present)",
        "{database}：已跳过（{source} 不存在）",
    ),
    "run.alert_failed": ("alert to {target} failed: {error}", "发送告警到 {target} 失败：{error}"),
    "run.heartbeat_failed": (
        "heartbeat to {target} failed: {error}",
        "发送心跳到 {target} 失败：{error}",
    ),
    "run.lock_wait": (
        "another run holds the lock; waiting for it to finish",
        "另一次运行正持有锁，等待它结束",
    ),
    "run.pruned": ("pruned {file}", "已删除旧备份：{file}"),
    "run.copy_resent": (
        "{file} at {destination} was damaged; sent again",
        "{destination} 上的 {file} 已损坏，已重新发送",
    ),
    "run.copies": (
        "copies at {destination}: {copied} copied, {pruned} pruned",
        "{destination} 的副本：复制 {copied} 个，清理 {pruned} 个",
    ),
    "run.copies_encrypted": (
        "copies at {destination}: {copied} copied (age-encrypted), {pruned} pruned",
        "{destination} 的副本：复制 {copied} 个（age 加密），清理 {pruned} 个",
    ),
    "run.copy_failed": (
        "copy to {destination} failed: {error}",
        "复制到 {destination} 失败：{error}",
    ),
    "run.damaged_backup": (
        "damaged backup {file}: {problem}; it was not sent anywhere",
        "备份已损坏：{file}：{problem}；它没有被发送到任何地方",
    ),
    "run.damaged_backup_hint": (
        "run --verify to see every damaged backup; delete this one (a newer backup or a "
        "destination's copy is sound) or put a good copy back under its name",
        "运行 --verify 查看所有损坏的备份；删除这个（较新的备份或异地副本是完好的），"
        "或把一个完好的副本以同样的名字放回",
    ),
    "run.finished": ("Backup finished", "备份任务完成"),
    "run.finished_with_failures": ("Backup finished with failures", "备份任务完成，但有失败"),
    "run.summary_made": (
        "backups made: {count}, {written:,} new bytes on disk",
        "备份文件数：{count}（新占用磁盘 {written:,} 字节）",
    ),
    "run.summary_made_linked": (
        "backups made: {count} ({linked} unchanged, sharing the previous file), "
        "{written:,} new bytes on disk",
        "备份文件数：{count}（其中 {linked} 个未变化，与上一个备份共用同一文件），"
        "新占用磁盘 {written:,} 字节",
    ),
    "run.summary_size": (
        "total size: {size:,} bytes ({mb:.2f} MB)",
        "总大小：{size:,} 字节（{mb:.2f} MB）",
    ),
    "run.summary_pruned": ("old backups pruned: {count}", "删除旧备份：{count}"),
    "run.nothing_pruned": ("no old backups to prune", "没有需要清理的旧备份"),
    "run.summary_folder_files": ("backup folder: {files} file(s)", "备份目录总文件：{files}"),
    "run.summary_folder_size": (
        "backup folder size: {size:,} bytes ({mb:.2f} MB), hard links counted once",
        "备份目录总大小：{size:,} 字节（{mb:.2f} MB，硬链接只计一次）",
    ),
    "run.summary_path": ("folder: {path}", "备份目录：{path}"),
    # Ages
    "age.days": ("{days} d {hours} h", "{days} 天 {hours} 小时"),
    "age.hours": ("{hours} h {minutes} min", "{hours} 小时 {minutes} 分钟"),
    "age.minutes": ("{minutes} min", "{minutes} 分钟"),
    # --history
    # -- archives of the instance folder --
    "archive.made": (
        "archived: {file} ({members} entries, {databases} database snapshot(s), {size})",
        "已归档：{file}（{members} 项，{databases} 个数据库快照，{size}）",
    ),
    "archive.changed": (
        "{name} changed while it was read: the archive holds what was read",
        "{name} 在读取时被修改：归档中是读取到的内容",
    ),
    "archive.vanished": (
        "{name} was gone before it could be read: it is not in the archive",
        "{name} 在读取前已消失：归档中没有它",
    ),
    "archive.unreadable": (
        "{name} cannot be read by this user: it is not in the archive",
        "当前用户无法读取 {name}：归档中没有它",
    ),
    "archive.pruned": ("pruned archive {file}", "已删除旧归档：{file}"),
    "archive.failed": ("archive of {folder} failed: {error}", "归档 {folder} 失败：{error}"),
    "archive.not_started": (
        "archive of {folder} not started: {error}",
        "没有开始归档 {folder}：{error}",
    ),
    "archive.no_source": ("there is no folder {folder} to archive", "没有要归档的文件夹 {folder}"),
    "archive.no_source_hint": (
        "check --archive-source (default: the main database's folder)",
        "请检查 --archive-source（默认：主数据库所在的文件夹）",
    ),
    "archive.database_failed": (
        "a database in the folder cannot be archived: {error}",
        "文件夹中的一个数据库无法归档：{error}",
    ),
    "archive.database_failed_hint": (
        "fix it, or leave it out with --archive-exclude {name}",
        "请修复它，或用 --archive-exclude {name} 把它排除",
    ),
    "archive.check_failed": (
        "the archive of {folder} failed its check after writing: {problem}",
        "{folder} 的归档写完后未通过检查：{problem}",
    ),
    "archive.over_budget": (
        "it needs up to {size}, which would bring the backup folder to {percent:.1f}% of the "
        "disk (budget {budget:g}%)",
        "它最多需要 {size}，会使备份目录占用磁盘 {percent:.1f}%（预算 {budget:g}%）",
    ),
    "archive.no_room": (
        "it needs up to {size}, and the disk has {free} free",
        "它最多需要 {size}，而磁盘只剩 {free}",
    ),
    "archive.over_budget_hint": (
        "free space, raise --max-disk-percent, lower --archive-keep, or leave large folders "
        "out with --archive-exclude",
        "请清理空间、调大 --max-disk-percent、调小 --archive-keep，"
        "或用 --archive-exclude 排除大文件夹",
    ),
    "archive.no_manifest": (
        "it holds no manifest: it is not an archive made by this tool",
        "其中没有清单：它不是本工具生成的归档",
    ),
    "archive.bad_manifest": (
        "its manifest cannot be read ({error})",
        "无法读取它的清单（{error}）",
    ),
    "archive.unsafe_name": (
        "member {name} would be written outside the folder",
        "成员 {name} 会被写到目标文件夹之外",
    ),
    "archive.twice": ("a member is in it twice", "其中有重复的成员"),
    "archive.not_listed": (
        "member {name} is not as the manifest lists it",
        "成员 {name} 与清单不符",
    ),
    "archive.member_differs": (
        "member {name} differs from its manifest entry",
        "成员 {name} 与清单中的记录不一致",
    ),
    "archive.bad_zip": ("it cannot be read as a ZIP ({error})", "无法作为 ZIP 读取（{error}）"),
    "archive.damaged": ("archive {path} is damaged: {problem}", "归档 {path} 已损坏：{problem}"),
    "archive.refused": (
        "refusing archive {path}: {problem}; nothing was written",
        "拒绝归档 {path}：{problem}；没有写入任何文件",
    ),
    "archive.refused_hint": (
        "restore only archives this tool made (instance.<time>.zip in the backup folder)",
        "只恢复本工具生成的归档（备份目录中的 instance.<时间>.zip）",
    ),
    "archive.not_found": ("there is no archive {path}", "没有归档 {path}"),
    "archive.not_found_hint": (
        "give an archive's path: --history lists them",
        "请给出归档的路径：--history 会列出它们",
    ),
    "archive.into_live": (
        "{folder} is the live folder (or the app's or backup folder): an archive is never "
        "extracted over it",
        "{folder} 是正在使用的文件夹（或应用、备份文件夹）：归档从不解压到它上面",
    ),
    "archive.into_live_hint": (
        "give --into a new or empty folder, then swap it in with the app stopped",
        "请为 --into 指定一个新的或空的文件夹，然后在停止应用后替换",
    ),
    "archive.into_not_empty": (
        "{folder} exists and is not an empty folder",
        "{folder} 已存在，且不是空文件夹",
    ),
    "archive.into_no_parent": ("there is no folder {folder}", "没有文件夹 {folder}"),
    "archive.into_no_parent_hint": (
        "create it, or give --into a folder inside an existing one",
        "请先创建它，或为 --into 指定一个已存在文件夹中的位置",
    ),
    "archive.needs_into": (
        "--restore-archive needs --into DIR, a new or empty folder",
        "--restore-archive 需要 --into DIR（一个新的或空的文件夹）",
    ),
    "archive.needs_into_hint": (
        "e.g. --restore-archive instance.20250101_030000.zip --into restored_instance",
        "例如：--restore-archive instance.20250101_030000.zip --into restored_instance",
    ),
    "archive.restored": (
        "restored {files} file(s) ({databases} database snapshot(s)) from {archive} into {folder}, "
        "each checked against the manifest",
        "已从 {archive} 恢复 {files} 个文件（{databases} 个数据库快照）到 {folder}，"
        "每个都已对照清单检查",
    ),
    "archive.link_left_out": (
        "link {name} leads out of the folder: not made",
        "链接 {name} 指向文件夹之外：未创建",
    ),
    "archive.swap": (
        "To put it in place of {live}, stop the app, then run:",
        "要用它替换 {live}，请先停止应用，然后运行：",
    ),
    "archive.swap_after": (
        "Start the app and check it; once it works, delete {old}.",
        "启动应用并检查；确认正常后，删除 {old}。",
    ),
    "doing.archiving": ("archiving", "归档"),
    "doing.restoring_into": ("restoring into", "恢复到"),
    "alert.archive": ("archive of the app folder", "应用文件夹归档"),
    "stats.archives": ("Archives of {folder}:", "{folder} 的归档："),
    "stats.archive_count": (
        "archives: {count}, {size} on disk",
        "归档：{count} 个，占用磁盘 {size}",
    ),
    "stats.no_archives": ("no archives yet", "还没有归档"),
    "stats.archive_last_failed": ("the last archive: {error}", "上一次归档：{error}"),
    "stats.archive_every": (
        "--run archives every {days} day(s)",
        "--run 每 {days} 天归档一次",
    ),
    "stats.archive_off": (
        "--run makes no archives (--archive-every-days 0)",
        "--run 不归档（--archive-every-days 0）",
    ),
    "check.archive_failed": ("the last archive failed: {error}", "上一次归档失败：{error}"),
    "check.archive_not_started": (
        "the last archive was not started: {error}",
        "上一次归档没有开始：{error}",
    ),
    "check.archive_old": (
        "the newest archive is {age} old (more than {days} days)",
        "最新的归档已是 {age}前（超过 {days} 天）",
    ),
    "check.no_archive": (
        "no archive of the app folder in {days} days: run --archive",
        "{days} 天内没有应用文件夹的归档：请运行 --archive",
    ),
    "check.archive": (
        "archives of {folder}: {count}, newest {age} old",
        "{folder} 的归档：{count} 个，最新的 {age}前",
    ),
    "help.archive": (
        "archive the whole instance folder now (databases as checked snapshots)",
        "立即归档整个 instance 文件夹（数据库为已检查的快照）",
    ),
    "help.restore_archive": (
        "extract an archive into a new folder (--into), checked against its manifest",
        "把归档解压到新文件夹（--into），并对照清单检查",
    ),
    "help.into": (
        "--restore-archive: the new or empty folder",
        "--restore-archive：新的或空的文件夹",
    ),
    "history.empty": (
        "No backups recorded yet. Run: python database_backup_scheduler.py --run",
        "还没有备份记录。请运行：python database_backup_scheduler.py --run",
    ),
    "history.header": (
        f"{'time':<19}  {'database':<22} {'size':>12}  status  file / error",
        f"{'时间':<17}  {'数据库':<19} {'大小':>10}  状态    文件 / 错误",
    ),
    "history.restored_from": ("restored from {file}", "从 {file} 恢复"),
    "history.drill_of": ("restore drill of {detail}", "恢复演练：{detail}"),
    "history.drill": ("restore drill: {detail}", "恢复演练：{detail}"),
    "history.not_present": ("the database is not present", "数据库不存在"),
    "history.no_log": ("there is no run log {path}", "没有运行日志 {path}"),
    "history.from_disk": (
        "{warning}; showing the backups found in {folder} instead",
        "{warning}；改为显示 {folder} 中找到的备份",
    ),
    # --stats
    "stats.backups": ("backups: {count}, {size} on disk", "备份：{count} 个，占用磁盘 {size}"),
    "stats.newest": ("newest:  {time} ({age} ago), {size}", "最新：  {time}（{age}前），{size}"),
    "stats.oldest": ("oldest:  {time}", "最早：  {time}"),
    "stats.no_backups": ("no backups yet", "还没有备份"),
    "stats.success_rate": (
        "success rate over {days} days: {percent:.1f}% of {runs} run(s)",
        "{days} 天内成功率：{percent:.1f}%（共 {runs} 次运行）",
    ),
    "stats.last_drill_ok": ("last restore drill: {time}, ok", "上次恢复演练：{time}，通过"),
    "stats.last_drill_failed": (
        "last restore drill: {time}, failed",
        "上次恢复演练：{time}，失败",
    ),
    "stats.no_drill": ("no restore drill yet (--drill)", "还没有做过恢复演练（--drill）"),
    "stats.folder": ("Backup folder: {path}", "备份目录：{path}"),
    "stats.folder_size": ("size: {size}", "大小：{size}"),
    "stats.disk_share": (
        "{percent:.2f}% of a {disk} disk (budget {budget:g}%)",
        "占 {disk} 磁盘的 {percent:.2f}%（预算 {budget:g}%）",
    ),
    "stats.free": ("free:  {size}", "可用：{size}"),
    "stats.copies_at": ("Copies at {destination}", "{destination} 上的副本"),
    "stats.copy_newest": (
        "{database}: newest {file} ({age} ago)",
        "{database}：最新 {file}（{age}前）",
    ),
    "stats.copy_last_run_failed": ("last run failed: {error}", "上次运行失败：{error}"),
    # --schedule
    "schedule.started": (
        "Scheduler started: backups daily at {times}. Stop with Ctrl+C.",
        "调度器已启动：每天 {times} 备份。按 Ctrl+C 停止。",
    ),
    "schedule.catch_up": (
        "No backup from the last 24 hours: backing up now.",
        "最近 24 小时没有备份：现在就备份。",
    ),
    "schedule.here_and_there": ("{when} here, {there} {zone}", "本地 {when}，{zone} {there}"),
    "schedule.next": ("Next backup: {when} (in {wait})", "下次备份：{when}（{wait}后）"),
    "schedule.stopped": ("Scheduler stopped.", "调度器已停止。"),
    "schedule.stopping": (
        "stopping once the backup in progress has finished; press Ctrl+C again to stop now",
        "正在进行的备份完成后停止；再按一次 Ctrl+C 立即停止",
    ),
    "schedule.unexpected": (
        "unexpected failure during the backup: {error}",
        "备份过程中出现意外错误：{error}",
    ),
    # --windows-task and --cron
    "task.wrote": ("Wrote {path}", "已生成 {path}"),
    "task.create": (
        "Create the daily task (run in an administrator Command Prompt):",
        "创建每日任务（在以管理员身份运行的命令提示符中执行）：",
    ),
    "task.test": ("Then run it once now to test it:", "然后立即运行一次来测试："),
    "task.explain_create": (
        "The first command makes Task Scheduler start the batch file every day at that time, "
        "replacing a task of the same name; the batch appends its output to {log}.",
        "第一条命令让“任务计划程序”每天在该时间启动批处理文件（同名任务会被替换）；"
        "批处理文件把输出追加到 {log}。",
    ),
    "task.explain_test": (
        "The second starts the task at once: afterwards, 'Last Run Result' in Task Scheduler "
        "should be 0x0, and --history should show the new backup.",
        "第二条命令立即启动该任务：之后“任务计划程序”中的“上次运行结果”应为 0x0，"
        "--history 应显示新的备份。",
    ),
    "cron.lines": ("crontab line(s): back up daily at {times}", "crontab 行：每天 {times} 备份"),
    "cron.install": ("Install them for this user with:", "为当前用户安装："),
    "cron.zone_note": (
        "Note: cron uses the computer's time zone, not {zone}.",
        "注意：cron 使用本机时区，而不是 {zone}。",
    ),
    # --verify and --restore
    "verify.none": (
        "no backups found in {folder}: nothing was verified",
        "{folder} 中没有找到备份：没有校验任何文件",
    ),
    "verify.sha_logged": ("SHA-256 matches the log", "SHA-256 与运行日志一致"),
    "verify.sha_unlogged": ("SHA-256 not in the log", "运行日志中没有它的 SHA-256"),
    "verify.ok": ("{integrity}, {known}", "{integrity}，{known}"),
    "verify.summary": ("{passed} of {total} backup(s) passed", "{total} 个备份中 {passed} 个通过"),
    "restore.no_backup": (
        "backup {path} does not exist or is not a file",
        "备份 {path} 不存在，或不是一个文件",
    ),
    "restore.no_backup_hint": ("see --history", "请查看 --history"),
    "restore.unknown_database": (
        "{file} does not name a configured database",
        "{file} 不属于任何已配置的数据库",
    ),
    "restore.unknown_database_hint": (
        "give the database to restore into with --target PATH",
        "请用 --target PATH 指定要恢复到的数据库",
    ),
    "restore.target_folder": ("--target {path} is a folder", "--target {path} 是一个文件夹"),
    "restore.target_folder_hint": ("give the database file's path", "请给出数据库文件的路径"),
    "restore.no_target_folder": (
        "the folder of {path} does not exist",
        "{path} 所在的文件夹不存在",
    ),
    "restore.check_target": ("check --target", "请检查 --target"),
    "restore.into_backup": (
        "will not restore into {path}: it is in the backup folder or is a backup",
        "不会恢复到 {path}：它在备份目录中，或本身就是备份",
    ),
    "restore.into_backup_hint": (
        "give the app's database with --target",
        "请用 --target 指定应用的数据库",
    ),
    "restore.in_use": (
        "{path} is still in use by another process ({cause}); nothing was changed",
        "{path} 仍被其他进程使用（{cause}）；没有做任何更改",
    ),
    "restore.in_use_hint": (
        "stop the app (and anything else using the database) first, then restore again",
        "请先停止应用（以及其他使用该数据库的程序），然后再次恢复",
    ),
    "restore.refused": (
        "refusing to restore from {path}: {error}; nothing was changed",
        "拒绝从 {path} 恢复：{error}；没有做任何更改",
    ),
    "restore.refused_hint": (
        "pick another backup (see --history, --verify)",
        "请选择另一个备份（见 --history、--verify）",
    ),
    "restore.check_failed_after": (
        "{path} failed quick_check after the restore",
        "恢复后 {path} 未通过 quick_check",
    ),
    "restore.use_safety_copy": (
        "restore the safety copy: --restore {safety} --yes",
        "请恢复安全副本：--restore {safety} --yes",
    ),
    "restore.question": (
        "Replace {target} with {backup}? The app must be stopped.",
        "用 {backup} 替换 {target}？应用必须已停止。",
    ),
    "restore.type_yes": ("Type yes to go on: ", "输入 yes 继续："),
    "restore.nothing_changed": ("Nothing was changed.", "没有做任何更改。"),
    "restore.done": ("Restored {target} from {backup}", "已从 {backup} 恢复 {target}"),
    "restore.moved_aside": ("moved aside, as it was: {path}", "原样移到一旁：{path}"),
    "restore.kept": (
        "the replaced database is kept as {path}",
        "被替换的数据库保存为 {path}",
    ),
    "restore.undo": ("to undo: {command}", "撤销方法：{command}"),
    "restore.start_app": ("start the app again.", "现在可以重新启动应用。"),
    # --keygen and --decrypt
    "keygen.wrote": (
        "Wrote a new age identity (secret key) to {path}",
        "新的 age 私钥已写入 {path}",
    ),
    "keygen.public": ("Public key: {public}", "公钥：{public}"),
    "keygen.advice": (
        '  Use it here:  --encrypt-to {public}   (or "encrypt_to" in the config file)\n'
        "  Then move the identity file OFF this server and keep it in two safe places\n"
        "  (a password manager, a USB stick in a drawer). Without it the off-site copies\n"
        "  cannot be read by anyone, you included; the local backups stay plain.",
        '  在这里使用：--encrypt-to {public}   （或在配置文件中写 "encrypt_to"）\n'
        "  然后把私钥文件移出这台服务器，保存在两个安全的地方\n"
        "  （密码管理器、抽屉里的 U 盘）。没有它，任何人（包括你自己）都无法读取异地副本；\n"
        "  本地备份不加密。",
    ),
    "decrypt.done": ("Decrypted {file} into {output}", "已把 {file} 解密为 {output}"),
    # --check (the status word and perfdata stay as Nagios wants them)
    "check.no_backup": ("{database}: no backup", "{database}：没有备份"),
    "check.stale": (
        "{database}: newest backup is {age} old (limit {limit:g} h)",
        "{database}：最新备份已是 {age}前（上限 {limit:g} 小时）",
    ),
    "check.future": (
        "{database}: {file} is dated in the future: check the clock",
        "{database}：{file} 的时间在未来：请检查系统时钟",
    ),
    "check.damaged": (
        "{database}: newest backup is damaged: {damage}",
        "{database}：最新备份已损坏：{damage}",
    ),
    "check.last_run_failed": (
        "{database}: last run failed: {error}",
        "{database}：上次运行失败：{error}",
    ),
    "check.shrank": (
        "{database}: newest backup shrank to {percent:.0f}% of the one before (data lost in "
        "the app?)",
        "{database}：最新备份缩小到上一个的 {percent:.0f}%（应用丢失了数据？）",
    ),
    "check.smaller_than_database": (
        "{database}: newest backup is {percent:.0f}% of the database's size",
        "{database}：最新备份只有数据库大小的 {percent:.0f}%",
    ),
    "check.drill_failed": (
        "{database}: the last restore drill failed: {findings}",
        "{database}：上次恢复演练失败：{findings}",
    ),
    "check.drill_old": (
        "{database}: the last restore drill was {age} ago",
        "{database}：上次恢复演练是 {age}前",
    ),
    "check.no_drill": (
        "{database}: no restore drill in the run log: run --drill",
        "{database}：运行日志中没有恢复演练：请运行 --drill",
    ),
    "check.held_back": (
        "damaged backup {file} is held back from off-site copies: run --verify, then delete it "
        "or put a good copy back under its name",
        "损坏的备份 {file} 没有发往异地：请运行 --verify，然后删除它或用同名的完好副本替换",
    ),
    "check.over_budget": (
        "backup folder uses {percent:.1f}% of the disk (budget {budget:g}%)",
        "备份目录占用磁盘 {percent:.1f}%（预算 {budget:g}%）",
    ),
    "check.disk_full": (
        "{free} free on the backup disk, the next backup needs {needed}",
        "备份磁盘只剩 {free}，下一次备份需要 {needed}",
    ),
    "check.copies_error": ("copies at {destination}: {error}", "{destination} 上的副本：{error}"),
    "check.no_copy": (
        "{database}: no copy at {destination}",
        "{database}：{destination} 上没有副本",
    ),
    "check.copy_stale": (
        "{database}: newest copy at {destination} is {age} old",
        "{database}：{destination} 上最新的副本已是 {age}前",
    ),
    "check.ok": ("{count} database(s) backed up", "{count} 个数据库已备份"),
    "check.ok_newest": (", newest backup {age} old at most", "，最新备份最多 {age}前"),
    "check.unknown": ("unknown", "未知"),
    "check.database": (
        "{database}: {count} backup(s), newest {age} old",
        "{database}：{count} 个备份，最新的 {age}前",
    ),
    "check.database_empty": ("{database}: {count} backup(s)", "{database}：{count} 个备份"),
    "check.last_run": (", last run {status}", "，上次运行 {status}"),
    "check.list_separator": (", ", "，"),
    "check.copy_newest": (
        "{database} newest {file} ({age} old)",
        "{database} 最新 {file}（{age}前）",
    ),
    "check.no_copies_yet": ("none yet", "还没有"),
    "check.copies_at": ("copies at {destination}: {copies}", "{destination} 上的副本：{copies}"),
    "check.folder": (
        "backup folder: {size}, {percent:.2f}% of the disk; {free} free",
        "备份目录：{size}，占磁盘 {percent:.2f}%；可用 {free}",
    ),
    # Alerts (chat bots, mail)
    "alert.backup": ("database backup", "数据库备份"),
    "alert.drill": ("restore drill of the backups", "备份恢复演练"),
    "alert.ok": ("OK: {what} on {host} at {time}", "成功：{host} 上的{what}，{time}"),
    "alert.failed": ("FAILED: {what} on {host} at {time}", "失败：{host} 上的{what}，{time}"),
    "alert.drill_failed": ("drill of {database}: {findings}", "{database} 的恢复演练：{findings}"),
    "alert.error": ("error: {error}", "错误：{error}"),
    "alert.fix": ("fix: {hint}", "解决：{hint}"),
    "alert.backed_up": ("{database}: {file} ({size} bytes)", "{database}：{file}（{size} 字节）"),
    "alert.damaged_backup": (
        "damaged backup {file}: {problem}; not sent anywhere (run --verify)",
        "备份已损坏：{file}：{problem}；未发送到任何地方（请运行 --verify）",
    ),
    # The config file and settings
    "config.error": ("{source}: {message}", "{source}：{message}"),
    "config.error_hint": (
        "fix the value, or see --help for each setting",
        "请修正该值，各设置的说明见 --help",
    ),
    "config.unreadable": (
        "cannot read config file {path}: {error}",
        "无法读取配置文件 {path}：{error}",
    ),
    "config.not_json": ("not valid JSON ({error})", "不是有效的 JSON（{error}）"),
    "config.not_object": (
        "must hold a JSON object of settings",
        "必须是一个包含各项设置的 JSON 对象",
    ),
    "config.unknown": (
        "unknown setting(s) {keys}; known: {known}",
        "未知的设置 {keys}；可用的设置：{known}",
    ),
    "config.must_be_int": (
        "{key} must be an integer, not {value}",
        "{key} 必须是整数，而不是 {value}",
    ),
    "config.must_be_float": (
        "{key} must be a float, not {value}",
        "{key} 必须是数字，而不是 {value}",
    ),
    "config.range": (
        "{key} must be at least {low:g} and at most {high:g}, not {value}",
        "{key} 必须在 {low:g} 到 {high:g} 之间，而不是 {value}",
    ),
    "config.range_above_zero": (
        "{key} must be more than 0 and at most {high:g}, not {value}",
        "{key} 必须大于 0 且不超过 {high:g}，而不是 {value}",
    ),
    "config.run_at": (
        'run_at must be "HH:MM" or a list of them',
        'run_at 必须是 "HH:MM" 或它们的列表',
    ),
    "config.run_at_item": (
        "run_at {item} is not a time of day like 03:00",
        "run_at {item} 不是像 03:00 这样的时刻",
    ),
    "config.s3_url": (
        "{key}: {url} is not s3://bucket/prefix",
        "{key}：{url} 不是 s3://bucket/prefix",
    ),
    "config.http_url": (
        "{key}: {url} is not an http(s):// URL with a valid host and port, free of spaces",
        "{key}：{url} 不是有效的 http(s):// 地址（需要有效的主机和端口，且不含空格）",
    ),
    "config.one_of": (
        "{key} must be one of {choices}, not {value}",
        "{key} 必须是 {choices} 之一，而不是 {value}",
    ),
    "config.must_be_text": (
        "{key} must be a text, not {value}",
        "{key} 必须是文本，而不是 {value}",
    ),
    "config.compress": (
        "compress must be gzip, zstd or none, not {value}",
        "compress 必须是 gzip、zstd 或 none，而不是 {value}",
    ),
    "config.databases": ("databases must be a non-empty list", "databases 必须是非空列表"),
    "config.database_path": ("each database needs a path: {item}", "每个数据库都需要 path：{item}"),
    "config.database_unknown": ("unknown database setting(s) {keys}", "未知的数据库设置 {keys}"),
    "config.database_name": (
        "name must be text and required true/false: {item}",
        "name 必须是文本，required 必须是 true/false：{item}",
    ),
    "config.must_be_path": ("{key} must be a path", "{key} 必须是路径"),
    "config.must_be_texts": (
        "{key} must be a text or a list of texts",
        "{key} 必须是文本或文本列表",
    ),
    "config.timezone": (
        "timezone must be a name like Asia/Shanghai",
        "timezone 必须是像 Asia/Shanghai 这样的时区名",
    ),
    # The run log
    "log.unreadable": ("cannot read run log {path}: {error}", "无法读取运行日志 {path}：{error}"),
    "log.damaged": ("run log {path} is damaged ({problem})", "运行日志 {path} 已损坏（{problem}）"),
    "log.moved_aside": (
        "{warning}; moved it to {aside} and started a new log",
        "{warning}；已把它移到 {aside}，并开始新的日志",
    ),
    # Errors and their hints
    "error.disk_full": ("disk full while {doing} {path}", "{doing} {path} 时磁盘已满"),
    "error.disk_full_hint": (
        "free space on that disk, or lower --keep-days / --keep-last",
        "请清理该磁盘的空间，或调小 --keep-days / --keep-last",
    ),
    "error.no_permission": ("no permission while {doing} {path}", "{doing} {path} 时没有权限"),
    "error.no_permission_hint": (
        "run as the user that owns the app's files, or fix the folder's permissions",
        "请以拥有应用文件的用户运行，或修正文件夹的权限",
    ),
    "error.read_only": (
        "read-only file system while {doing} {path}",
        "{doing} {path} 时遇到只读文件系统",
    ),
    "error.read_only_hint": ("choose a writable --backup-dir", "请选择可写的 --backup-dir"),
    "error.os": ("{reason} while {doing} {path}", "{doing} {path} 时出错：{reason}"),
    "error.unexpected_while": (
        "unexpected error while {doing} {path}: {error}",
        "{doing} {path} 时出现意外错误：{error}",
    ),
    "error.unexpected": ("unexpected error: {error}", "意外错误：{error}"),
    "error.report_it": (
        "rerun with --debug and report it",
        "请加 --debug 重新运行，并报告这个问题",
    ),
    "doing.backing_up": ("backing up", "备份"),
    "doing.compressing": ("compressing", "压缩"),
    "doing.copying_into": ("copying a backup into", "复制备份到"),
    "doing.copying_to": ("copying to", "复制到"),
    "doing.creating": ("creating", "创建"),
    "doing.creating_temp_folder": ("creating a temporary folder in", "创建临时文件夹于"),
    "doing.decrypting": ("decrypting", "解密"),
    "doing.deleting": ("deleting", "删除"),
    "doing.drilling": ("drilling", "演练恢复"),
    "doing.encrypting": ("encrypting", "加密"),
    "doing.listing": ("listing", "列出"),
    "doing.moving_log_aside": ("moving aside the damaged run log", "移开损坏的运行日志"),
    "doing.naming": ("naming the new file in", "命名新文件于"),
    "doing.opening_log_folder": ("opening the folder of the run log", "打开运行日志所在的文件夹"),
    "doing.opening_lock": ("opening the run lock", "打开运行锁"),
    "doing.reading_back": ("reading back", "读回"),
    "doing.verifying": ("verifying", "校验"),
    "doing.writing": ("writing", "写入"),
    "doing.writing_copy_into": ("writing a copy into", "写入副本到"),
    "doing.writing_temp_into": ("writing a temporary file into", "写入临时文件到"),
    "doing.writing_log": ("writing the run log", "写入运行日志"),
    "error.database_missing": ("database {path} does not exist", "数据库 {path} 不存在"),
    "error.database_missing_hint": (
        "check the path, or mark it optional in the config file",
        "请检查路径，或在配置文件中把它标为可选（required: false）",
    ),
    "error.locked": (
        "another run holds the lock {path} (waited {seconds:g} s)",
        "另一次运行正持有锁 {path}（已等待 {seconds:g} 秒）",
    ),
    "error.locked_hint": (
        "let it finish, or raise --lock-timeout",
        "请等它结束，或调大 --lock-timeout",
    ),
    "error.config_missing": ("config file {path} does not exist", "配置文件 {path} 不存在"),
    "error.config_missing_hint": ("check --config", "请检查 --config"),
    # Settings and paths refused before anything is done
    "usage.db_no_path": ("--db {value!r}: no path given", "--db {value!r}：没有给出路径"),
    "usage.db_no_path_hint": (
        "use --db PATH or --db NAME=PATH",
        "请使用 --db PATH 或 --db NAME=PATH",
    ),
    "usage.path_nul": (
        "the path {path!r} holds a NUL character",
        "路径 {path!r} 含有 NUL 字符",
    ),
    "usage.path_nul_in": (
        "{source}: the path {path!r} holds a NUL character",
        "{source}：路径 {path!r} 含有 NUL 字符",
    ),
    "usage.fix_path": ("fix the path", "请修正路径"),
    "usage.database_name": (
        "database name {name!r} cannot be part of a file name",
        "数据库名 {name!r} 不能用作文件名的一部分",
    ),
    "usage.database_name_hint": (
        'use letters, digits, "_", "-" and "." (not first or last), e.g. --db main.db=PATH',
        '请使用字母、数字、"_"、"-" 和 "."（不能在开头或结尾），例如 --db main.db=PATH',
    ),
    "usage.same_name": (
        "two databases share the name {name!r}: {first} and {second}",
        "两个数据库同名 {name!r}：{first} 和 {second}",
    ),
    "usage.same_name_hint": (
        'give each a distinct name with --db NAME=PATH (or "name" in the config file)',
        '请用 --db NAME=PATH（或配置文件中的 "name"）给每个数据库起不同的名字',
    ),
    "usage.log_is_database": (
        "run log {path} is one of the databases",
        "运行日志 {path} 是要备份的数据库之一",
    ),
    "usage.other_log_file": ("choose another --log-file", "请选择另一个 --log-file"),
    "usage.log_not_file": ("run log {path} is not a regular file", "运行日志 {path} 不是普通文件"),
    "usage.copy_to_backup_dir": (
        "--copy-to {folder} is the backup folder itself: a copy there protects nothing",
        "--copy-to {folder} 就是备份目录本身：复制到那里起不到任何保护作用",
    ),
    "usage.copy_to_backup_dir_hint": (
        "give a folder on another disk (an external disk, a NAS share)",
        "请指定另一块磁盘上的文件夹（移动硬盘、NAS 共享）",
    ),
    "usage.log_not_json": (
        "run log {path} must be a .json file",
        "运行日志 {path} 必须是 .json 文件",
    ),
    "usage.log_not_json_hint": (
        "choose a --log-file ending in .json",
        "请选择以 .json 结尾的 --log-file",
    ),
    "usage.backup_dir_not_folder": (
        "backup directory {path} exists and is not a folder",
        "备份目录 {path} 已存在，但不是文件夹",
    ),
    "usage.other_backup_dir": ("choose another --backup-dir", "请选择另一个 --backup-dir"),
    "usage.no_app_folder": (
        "there is no folder {folder}: the backups would go to {backup_dir}",
        "没有文件夹 {folder}：备份会存放到 {backup_dir}",
    ),
    "usage.no_app_folder_hint": (
        "put {script} in the app's root folder (the one that holds instance/), "
        "or choose a --backup-dir",
        "请把 {script} 放在应用的根目录（包含 instance/ 的那个文件夹），或指定 --backup-dir",
    ),
    "usage.backup_dir_parent_file": (
        "cannot create the backup directory {path}: {parent} is a file",
        "无法创建备份目录 {path}：{parent} 是一个文件",
    ),
    "usage.no_log_folder": (
        "the folder of the run log {path} does not exist",
        "运行日志 {path} 所在的文件夹不存在",
    ),
    "usage.no_log_folder_hint": (
        "create it, or choose another --log-file",
        "请创建它，或选择另一个 --log-file",
    ),
    "usage.limit": ("--limit must be at least 1", "--limit 至少为 1"),
    "usage.needs_pytz": (
        "--timezone needs the 'pytz' package, which is not installed",
        "--timezone 需要 'pytz' 包，但它没有安装",
    ),
    "usage.unknown_timezone": (
        "unknown time zone {name!r} ({error!r})",
        "未知的时区 {name!r}（{error!r}）",
    ),
    "usage.unknown_timezone_hint": (
        "use a zone name like Asia/Shanghai",
        "请使用像 Asia/Shanghai 这样的时区名",
    ),
    "usage.install": ("run: {command}", "请运行：{command}"),
    "task.secret": (
        "{flags} may hold a secret and is not written into a task",
        "{flags} 可能含有密钥，不会写入计划任务",
    ),
    "task.secret_hint": (
        "put it in {config} (read by every run) or a --config file",
        "请把它写在 {config}（每次运行都会读取）或 --config 文件中",
    ),
    "task.double_quote": (
        "{value!r} holds a double quote, which a batch file cannot pass on",
        "{value!r} 含有双引号，批处理文件无法传递它",
    ),
    "task.double_quote_hint": (
        "put that setting in {config} or a --config file",
        "请把这个设置写在 {config} 或 --config 文件中",
    ),
    # The backup engine
    "error.source_is_folder": (
        "{source} is a folder, not a database file",
        "{source} 是文件夹，不是数据库文件",
    ),
    "error.no_free_name": (
        "no free name left in {folder} for {file}",
        "{folder} 中已没有可给 {file} 使用的文件名",
    ),
    "error.not_a_database": (
        "{path} is not an SQLite database (or it is encrypted)",
        "{path} 不是 SQLite 数据库（或者已加密）",
    ),
    "error.not_a_database_hint": (
        "check the path given with --db or in the config file",
        "请检查 --db 或配置文件中给出的路径",
    ),
    "error.damaged": ("{path} is damaged ({error})", "{path} 已损坏（{error}）"),
    "error.damaged_hint": (
        'run: sqlite3 "{path}" "PRAGMA integrity_check" and restore from a good backup',
        '请运行：sqlite3 "{path}" "PRAGMA integrity_check"，并从完好的备份恢复',
    ),
    "error.cannot_open": ("cannot open {path} ({error})", "无法打开 {path}（{error}）"),
    "error.cannot_open_hint": (
        "check that the file and its folder exist and that this user may read them",
        "请检查该文件及其文件夹是否存在，以及当前用户能否读取它们",
    ),
    "error.cannot_lock": (
        "cannot lock {path} for reading ({error})",
        "无法锁定 {path} 以读取（{error}）",
    ),
    "error.cannot_lock_hint": (
        "this user needs write access to the database's folder for SQLite's lock files",
        "当前用户需要数据库所在文件夹的写权限，SQLite 要在那里建锁文件",
    ),
    "error.sqlite": ("{path}: {error}", "{path}：{error}"),
    "error.stayed_locked": (
        "{source} stayed locked for {seconds:g} s",
        "{source} 被锁定了 {seconds:g} 秒，一直没有释放",
    ),
    "error.stayed_locked_hint": (
        "a long write transaction holds it; retry later or raise --busy-timeout",
        "有一个很长的写事务占用着它；请稍后重试，或调大 --busy-timeout",
    ),
    "error.disk_full_reason": ("disk full", "磁盘已满"),
    "error.cannot_write_copy": (
        "cannot write the copy of {source} into {folder} ({reason})",
        "无法把 {source} 的副本写入 {folder}（{reason}）",
    ),
    "error.copy_needs_space_hint": (
        "the copy needs about {size}: free space on that disk, or move --backup-dir",
        "副本大约需要 {size}：请清理该磁盘的空间，或更换 --backup-dir",
    ),
    "error.check_folder_hint": (
        "check that the folder still exists, is writable and has free space",
        "请检查该文件夹是否还在、可写、并有可用空间",
    ),
    "error.copy_failed_check": (
        "the copy of {what} failed verification ({verdict})",
        "{what} 的副本未通过校验（{verdict}）",
    ),
    "error.copy_failed_check_hint": (
        'the database may be damaged: sqlite3 "{what}" "PRAGMA integrity_check"',
        '数据库可能已损坏：sqlite3 "{what}" "PRAGMA integrity_check"',
    ),
    "error.lock_is_link": (
        "the run lock {path} is a symbolic link",
        "运行锁 {path} 是一个符号链接",
    ),
    "error.lock_is_link_hint": (
        "remove it; the tool makes a plain file there",
        "请删除它；本工具会在那里创建一个普通文件",
    ),
    # --compress
    "compress.needs_zstandard": (
        "--compress zstd needs the 'zstandard' package, which is not installed",
        "--compress zstd 需要 'zstandard' 包，但它没有安装",
    ),
    "compress.needs_zstandard_hint": (
        "{install} (or use --compress gzip)",
        "{install}（或改用 --compress gzip）",
    ),
    "compress.empty": ("{path} is empty", "{path} 是空文件"),
    "compress.truncated": ("{path} is truncated", "{path} 不完整（被截断了）"),
    "compress.cannot_unpack": ("cannot unpack {path}: {error}", "无法解压 {path}：{error}"),
    "compress.failed": (
        "cannot compress the backup of {source}: {error}",
        "无法压缩 {source} 的备份：{error}",
    ),
    "compress.differs": (
        "the compressed copy of {source} does not unpack to the same",
        "{source} 的压缩副本解压后与原内容不一致",
    ),
    # Retention and the run log
    "prune.cannot_delete": ("cannot delete {path}: {error}", "无法删除 {path}：{error}"),
    "log.not_logged": ("{warning}; the run was not logged", "{warning}；本次运行没有记入日志"),
    "log.not_logged_hint": ("fix the file's permissions", "请修正该文件的权限"),
    "log.is_database": (
        "{path} is an SQLite database, not a run log; the run was not logged",
        "{path} 是 SQLite 数据库，不是运行日志；本次运行没有记入日志",
    ),
    # --encrypt-to, --keygen, --decrypt and --identity
    "encrypt.needs_pyrage": (
        "--encrypt-to, --keygen, --decrypt and --identity need the 'pyrage' package, "
        "which is not installed",
        "--encrypt-to、--keygen、--decrypt 和 --identity 需要 'pyrage' 包，但它没有安装",
    ),
    "encrypt.recipient_hint": (
        "give an age public key (age1..., printed by --keygen or age-keygen), an SSH public key "
        "line (ssh-ed25519 ...), or the path of a file of them, one per line",
        "请给出 age 公钥（age1...，由 --keygen 或 age-keygen 输出）、SSH 公钥行"
        "（ssh-ed25519 ...），或存放它们的文件的路径（每行一个）",
    ),
    "encrypt.no_recipients_file": (
        "--encrypt-to {value}: there is no such recipients file",
        "--encrypt-to {value}：没有这个公钥文件",
    ),
    "encrypt.cannot_read_recipients": (
        "cannot read the recipients file {path}: {error}",
        "无法读取公钥文件 {path}：{error}",
    ),
    "encrypt.secret_key": (
        "{where}: that is a secret key; give its public key",
        "{where}：这是私钥；请给出它的公钥",
    ),
    "encrypt.secret_key_file_hint": (
        "keep the secret key off this server; give the public key (age-keygen -y "
        "KEYFILE prints it; for SSH, the .pub file)",
        "私钥不要放在这台服务器上；请给出公钥（age-keygen -y KEYFILE 可以输出它；"
        "SSH 则用 .pub 文件）",
    ),
    "encrypt.secret_key_hint": (
        "keep the secret key off this server; age-keygen -y KEYFILE prints its public key",
        "私钥不要放在这台服务器上；age-keygen -y KEYFILE 可以输出它的公钥",
    ),
    "encrypt.no_recipient": (
        "the recipients file {path} holds no recipient",
        "公钥文件 {path} 中没有任何公钥",
    ),
    "encrypt.not_a_public_key": (
        "{where}: {shown!r} is not an age or SSH public key ({error})",
        "{where}：{shown!r} 不是 age 或 SSH 公钥（{error}）",
    ),
    "encrypt.identity_hint": (
        "give the file --keygen (or age-keygen) wrote, or an SSH private key",
        "请给出 --keygen（或 age-keygen）生成的文件，或 SSH 私钥",
    ),
    "encrypt.cannot_read_identity": (
        "cannot read the identity file {path}: {error}",
        "无法读取私钥文件 {path}：{error}",
    ),
    "encrypt.ssh_key": (
        "cannot use the SSH key {path} ({error})",
        "无法使用 SSH 私钥 {path}（{error}）",
    ),
    "encrypt.ssh_key_hint": (
        "a key protected by a passphrase: decrypt with the age command instead "
        "(age -d -i KEY FILE.age > FILE)",
        "这是有口令保护的私钥：请改用 age 命令解密（age -d -i KEY FILE.age > FILE）",
    ),
    "encrypt.no_identity": (
        "{path} holds no age identity (AGE-SECRET-KEY-1...)",
        "{path} 中没有 age 私钥（AGE-SECRET-KEY-1...）",
    ),
    "encrypt.bad_identity": (
        "{path}: an identity there cannot be read ({error})",
        "{path}：其中的私钥无法读取（{error}）",
    ),
    "encrypt.failed": ("cannot encrypt {path}: {error}", "无法加密 {path}：{error}"),
    "encrypt.failed_earlier": (
        "cannot encrypt {path}: it failed earlier in this run",
        "无法加密 {path}：本次运行中它已经失败过",
    ),
    "keygen.exists": (
        "{path} exists already; it is never overwritten (it may be the only key)",
        "{path} 已存在；它绝不会被覆盖（它可能是唯一的私钥）",
    ),
    "keygen.exists_hint": ("choose another file name", "请换一个文件名"),
    "decrypt.not_encrypted_name": (
        "{file} is not the name of an encrypted backup (<backup name>.age)",
        "{file} 不是加密备份的名字（<备份名>.age）",
    ),
    "decrypt.not_encrypted_name_hint": (
        "give a file that --encrypt-to sent, as it was named",
        "请给出 --encrypt-to 发送的文件，并保持它原来的名字",
    ),
    "decrypt.no_file": ("{path} does not exist or is not a file", "{path} 不存在，或不是一个文件"),
    "decrypt.check_path": ("check the path", "请检查路径"),
    "decrypt.failed": (
        "cannot decrypt {path} with {identity}: {error}",
        "无法用 {identity} 解密 {path}：{error}",
    ),
    "decrypt.failed_hint": (
        "give the identity whose public key --encrypt-to named; a damaged "
        "file cannot be decrypted either (take another copy)",
        "请给出与 --encrypt-to 所用公钥配对的私钥；损坏的文件同样无法解密（请换一个副本）",
    ),
    "decrypt.needs": (
        "--decrypt needs --identity KEYFILE and --output FILE",
        "--decrypt 需要 --identity KEYFILE 和 --output FILE",
    ),
    "decrypt.needs_hint": (
        "e.g. --decrypt copy.bak.age --identity key.txt --output copy.bak",
        "例如 --decrypt copy.bak.age --identity key.txt --output copy.bak",
    ),
    "decrypt.output_exists": (
        "{path} exists already; it is never overwritten",
        "{path} 已存在；它绝不会被覆盖",
    ),
    "decrypt.choose_output": ("choose --output", "请另选 --output"),
    "decrypt.check_output": ("check --output", "请检查 --output"),
    "decrypt.needs_identity": (
        "{file} is encrypted: give the key that reads it with --identity KEYFILE",
        "{file} 已加密：请用 --identity KEYFILE 给出能解密它的私钥",
    ),
    "decrypt.needs_identity_hint": (
        "the identity file --keygen wrote (or age-keygen), or the SSH private key",
        "即 --keygen（或 age-keygen）生成的私钥文件，或 SSH 私钥",
    ),
    # Off-site copies: --copy-to, --s3, --upload-command
    "copy.no_folder": (
        "destination folder {folder} does not exist",
        "目标文件夹 {folder} 不存在",
    ),
    "copy.no_folder_hint": (
        "mount the disk or share, or create the folder",
        "请挂载该磁盘或共享，或创建这个文件夹",
    ),
    "copy.mismatch": (
        "the copy of {file} in {folder} does not match the backup",
        "{folder} 中 {file} 的副本与备份不一致",
    ),
    "copy.mismatch_hint": (
        "check the destination disk; the next run copies it again",
        "请检查目标磁盘；下次运行会重新复制",
    ),
    "copy.sha_differs": (
        "its SHA-256 differs from the one recorded when it was made",
        "它的 SHA-256 与制作时记录的不一致",
    ),
    "copy.unlogged_fails_check": (
        "it is not in the run log and fails quick_check ({verdict})",
        "它不在运行日志中，且未通过 quick_check（{verdict}）",
    ),
    "s3.needs_boto3": (
        "--s3 needs the 'boto3' package, which is not installed",
        "--s3 需要 'boto3' 包，但它没有安装",
    ),
    "s3.error": ("{where}: {code}: {error}", "{where}：{code}：{error}"),
    "s3.check_secret": (
        "check AWS_SECRET_ACCESS_KEY (or the profile's secret)",
        "请检查 AWS_SECRET_ACCESS_KEY（或 profile 中的 secret）",
    ),
    "s3.check_key_id": (
        "check AWS_ACCESS_KEY_ID (or the profile's key)",
        "请检查 AWS_ACCESS_KEY_ID（或 profile 中的 key）",
    ),
    "s3.access_denied": (
        "the key may not write to that bucket; check its policy",
        "该密钥可能无权写入这个 bucket；请检查它的策略",
    ),
    "s3.no_bucket": (
        "create the bucket, or check the name in --s3",
        "请创建这个 bucket，或检查 --s3 中的名字",
    ),
    "s3.check_all": (
        "check --s3-endpoint, the network and the credentials",
        "请检查 --s3-endpoint、网络和凭据",
    ),
    "s3.bad_url": (
        "--s3 {url!r} is not s3://bucket/prefix",
        "--s3 {url!r} 不是 s3://bucket/prefix",
    ),
    "s3.listing": ("listing {label}", "列出 {label}"),
    "s3.uploading": ("uploading {file} to {label}", "上传 {file} 到 {label}"),
    "s3.reading_back": ("reading back {key} from {label}", "从 {label} 读回 {key}"),
    "s3.deleting": ("deleting {file} from {label}", "从 {label} 删除 {file}"),
    "s3.size_after_upload": (
        "{label}{file} is {size} bytes after the upload, not {expected}",
        "上传后 {label}{file} 是 {size} 字节，而不是 {expected}",
    ),
    "s3.differs": (
        "{label}: {key} differs from the backup after the upload",
        "{label}：上传后 {key} 与备份不一致",
    ),
    "upload.bad_template": (
        "--upload-command {template!r}: {error!r}",
        "--upload-command {template!r}：{error!r}",
    ),
    "upload.placeholders": ("placeholders: {names}", "可用的占位符：{names}"),
    "upload.not_found": ("{label}: {program!r} not found", "{label}：找不到 {program!r}"),
    "upload.not_found_hint": ("install it or give its full path", "请安装它，或给出它的完整路径"),
    "upload.timed_out": (
        "{label} did not finish in {seconds:g} s",
        "{label} 没有在 {seconds:g} 秒内完成",
    ),
    "upload.cannot_start": ("{label} could not start: {error}", "{label} 无法启动：{error}"),
    "upload.exited": (
        "{label} exited {code} for {file}: {said}",
        "{label} 处理 {file} 时退出码为 {code}：{said}",
    ),
    "upload.exited_silent": (
        "{label} exited {code} for {file} (it printed nothing)",
        "{label} 处理 {file} 时退出码为 {code}（它没有任何输出）",
    ),
    "upload.exited_hint": (
        "run the command by hand with that file to see why; the next run sends it again",
        "请用这个文件手动运行该命令查看原因；下次运行会重新发送",
    ),
    # Webhooks and heartbeats ("HTTP 404 Not Found" stays as the server said it)
    "http.timed_out": (
        "no answer in {seconds:g} s (timed out)",
        "{seconds:g} 秒内没有应答（超时）",
    ),
    "http.server_error": ("{error} from the server", "服务器端出错：{error}"),
    "run.alert_failed_too": (
        "the alert to {target} failed too: {error}",
        "发往 {target} 的告警也失败了：{error}",
    ),
    "run.hint_and": ("{hint}; {more}", "{hint}；{more}"),
    # Restore refusals and failures
    "restore.risk_unlogged": (
        "{file} is not a backup the run log {log} knows: its SHA-256 cannot be checked, so a "
        "changed or planted file would not be noticed",
        "{file} 不是运行日志 {log} 中记录的备份：无法核对它的 SHA-256，"
        "被改动或被人放进来的文件不会被发现",
    ),
    "restore.risk_unlogged_unread": (
        "{file} is not a backup the run log {log} knows (it could not be read: {warning}): "
        "its SHA-256 cannot be checked, so a changed or planted file would not be noticed",
        "{file} 不是运行日志 {log} 中记录的备份（日志无法读取：{warning}）：无法核对它的 "
        "SHA-256，被改动或被人放进来的文件不会被发现",
    ),
    "restore.risk_other_database": (
        "{file} is a backup of {backup_of}, but {target} is the database {database}",
        "{file} 是 {backup_of} 的备份，而 {target} 是数据库 {database}",
    ),
    "restore.refusing": (
        "refusing to restore: {risk}; nothing was changed",
        "拒绝恢复：{risk}；没有做任何更改",
    ),
    "restore.refusing_hint": (
        "pick a backup from --history, or add {flag} if you are sure",
        "请从 --history 中选择一个备份；如果确定要恢复它，请加上 {flag}",
    ),
    "restore.not_a_terminal": (
        "refusing to restore without confirmation: not on a terminal",
        "未经确认，拒绝恢复：当前不在终端中",
    ),
    "restore.not_a_terminal_hint": (
        "stop the app, then run again with --yes",
        "请停止应用，然后加上 --yes 再次运行",
    ),
    "restore.wal_open": ("it has the WAL database open", "它打开着 WAL 模式的数据库"),
    "restore.in_transaction": ("it holds a transaction: {error}", "它持有一个事务：{error}"),
    "restore.nothing_changed_after": (
        "{error}; nothing was changed",
        "{error}；没有做任何更改",
    ),
    "restore.failed": (
        "restoring into {target} failed ({error}); SQLite kept the old content",
        "恢复到 {target} 失败（{error}）；SQLite 保留了原来的内容",
    ),
    "restore.also_saved": (
        "the replaced database is also saved as {path}",
        "被替换的数据库另外保存为 {path}",
    ),
    "restore.check_after_failed": (
        "{target} was restored, but checking it afterwards failed ({error})",
        "{target} 已恢复，但随后的检查失败（{error}）",
    ),
    "restore.check_after_failed_hint": (
        "stop anything that opened it, then run --verify on the database",
        "请停止所有打开它的程序，然后对该数据库运行 --verify",
    ),
    "restore.appeared": (
        "{target} appeared during the restore; nothing was replaced",
        "恢复过程中出现了 {target}；没有替换任何文件",
    ),
    "restore.appeared_hint": (
        "stop the app, then restore again",
        "请停止应用，然后再次恢复",
    ),
    # What --verify, --check and the off-site copies find wrong with a backup
    "verify.cannot_read": ("cannot read {path}: {error}", "无法读取 {path}：{error}"),
    "verify.not_regular": ("{path} is not a regular file", "{path} 不是普通文件"),
    "verify.check_says": ("{check}: {verdict}", "{check}：{verdict}"),
    "verify.sha_differs": (
        "SHA-256 differs from the one recorded when the backup was made",
        "SHA-256 与制作备份时记录的不一致",
    ),
    "verify.not_sqlite_start": (
        "not an SQLite database (empty or damaged at the start)",
        "不是 SQLite 数据库（为空，或开头已损坏）",
    ),
    "verify.size_logged": (
        "{file} is {size:,} bytes, the run log recorded {logged:,}",
        "{file} 有 {size:,} 字节，运行日志记录的是 {logged:,}",
    ),
    "verify.not_sqlite": ("{file} is not an SQLite database", "{file} 不是 SQLite 数据库"),
    "verify.header_size": (
        "{file} is {size:,} bytes, its header says {declared:,}",
        "{file} 有 {size:,} 字节，它的文件头声明的是 {declared:,}",
    ),
    "verify.sha_differs_run": (
        "{path} differs from the SHA-256 recorded when it was made; run --verify",
        "{path} 与制作时记录的 SHA-256 不一致；请运行 --verify",
    ),
    # --drill
    "drill.skipped": (
        "{database}: skipped (the database is not present)",
        "{database}：已跳过（数据库不存在）",
    ),
    "drill.passed": (
        "{database}: {file} restored in {seconds:.1f} s, {tables} table(s) and {rows:,} rows "
        "read, schema and row counts match the live database",
        "{database}：{file} 恢复用时 {seconds:.1f} 秒，读取 {tables} 个表共 {rows:,} 行，"
        "表结构和行数与线上数据库一致",
    ),
    "drill.passed_alone": (
        "{database}: {file} restored in {seconds:.1f} s, {tables} table(s) and {rows:,} rows "
        "read, not compared: the live database is not there",
        "{database}：{file} 恢复用时 {seconds:.1f} 秒，读取 {tables} 个表共 {rows:,} 行，"
        "未比较：线上数据库不存在",
    ),
    "drill.failed": ("{database}: the drill of {file} failed", "{database}：{file} 的恢复演练失败"),
    "drill.all_passed": ("Restore drill passed", "恢复演练通过"),
    "metrics.not_written": ("metrics not written: {error}", "指标未写入：{error}"),
    "drill.no_backup": ("there is no backup to drill", "没有可供演练的备份"),
    "drill.fails_check": ("the backup fails its check: {error}", "备份未通过校验：{error}"),
    "drill.too_old": ("the newest backup is {age} old", "最新备份已是 {age}前"),
    "drill.integrity": ("integrity_check: {problems}", "integrity_check：{problems}"),
    "drill.integrity_more": (
        "integrity_check: {problems} (and {more} more)",
        "integrity_check：{problems}（另有 {more} 处）",
    ),
    "drill.foreign_keys": (
        "foreign_key_check: {count} row(s) point at nothing (in {tables})",
        "foreign_key_check：{count} 行引用了不存在的记录（在 {tables} 中）",
    ),
    "drill.missing_from_backup": (
        "{kind} {name} of the live database is missing from the backup",
        "线上数据库的 {kind} {name} 在备份中不存在",
    ),
    "drill.not_in_live": (
        "{kind} {name} of the backup is not in the live database",
        "备份中的 {kind} {name} 在线上数据库中不存在",
    ),
    "drill.differs": (
        "{kind} {name} differs from the live database's",
        "{kind} {name} 与线上数据库的不同",
    ),
    "drill.unreadable_table": (
        "table {name} does not read to its end: {error}",
        "表 {name} 无法完整读取：{error}",
    ),
    "drill.shrank": (
        "table {name} has {rows:,} rows in the backup, {live:,} in the live database (more "
        "than {percent:g}% fewer)",
        "表 {name} 在备份中有 {rows:,} 行，线上数据库有 {live:,} 行（少了超过 {percent:g}%）",
    ),
    "drill.any_failed": (
        "Restore drill FAILED: the newest backup would not bring the app back",
        "恢复演练失败：最新的备份无法让应用恢复",
    ),
    # --help
    "help.usage_tail": ("(e.g. --run; see --help)", "（例如 --run；见 --help）"),
    "help.description": (
        "Verified, rotated backups of a web app's SQLite databases.",
        "为网站应用的 SQLite 数据库做经过校验、按期轮换的备份。",
    ),
    "help.epilog": (
        "Exit codes: 0 ok; 1 a backup, verify or restore failed; 2 bad usage or "
        "configuration; 75 another run holds the lock; 130 interrupted (Ctrl+C). --check: 0 OK, "
        "1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
        "退出码：0 成功；1 备份、校验或恢复失败；2 用法或配置有误；75 另一次运行正持有锁；"
        "130 被 Ctrl+C 中断。"
        "--check：0 OK，1 WARNING，2 CRITICAL，3 UNKNOWN。",
    ),
    "help.actions": ("actions (choose one)", "操作（选一个）"),
    "help.run": (
        "back up every database now, prune, log the run",
        "立即备份所有数据库，清理旧备份，记录本次运行",
    ),
    "help.history": ("show recent backups, newest first", "显示最近的备份，最新的在前"),
    "help.stats": ("show counts, sizes, ages, disk budget", "显示数量、大小、时间和磁盘预算"),
    "help.verify": ("check backups (all when none named)", "校验备份（未指定文件时校验全部）"),
    "help.restore": ("put a backup back into its database, safely", "把备份安全地恢复到它的数据库"),
    "help.check": (
        "one health verdict for monitoring (Nagios style)",
        "给监控用的一个健康结论（Nagios 格式）",
    ),
    "help.drill": (
        "restore each newest backup into a scratch folder and check it against the app",
        "把每个最新备份恢复到临时文件夹，并对照应用的数据库检查（恢复演练）",
    ),
    "help.schedule": (
        "stay running; back up daily at the --at times",
        "持续运行，每天在 --at 指定的时间备份",
    ),
    "help.windows_task": ("write {batch}; print schtasks", "生成 {batch}，并给出 schtasks 命令"),
    "help.cron": ("print crontab lines and how to install them", "给出 crontab 行及安装方法"),
    "help.show_config": ("print the effective settings as JSON", "以 JSON 显示生效的设置"),
    "help.keygen": (
        "write a new age identity for --encrypt-to to FILE",
        "为 --encrypt-to 生成新的 age 私钥，写入 FILE",
    ),
    "help.decrypt": (
        "decrypt an off-site copy (--identity, --output)",
        "解密一个异地副本（--identity、--output）",
    ),
    "help.settings": ("settings (override the config file)", "设置（覆盖配置文件）"),
    "help.config": ("JSON settings", "JSON 设置文件"),
    "help.far": ("off-site copies and alerts", "异地副本与告警"),
    "help.action_options": ("action options", "操作选项"),
    "help.json": ("print one JSON document", "输出一个 JSON 文档"),
    "help.limit": ("--history rows", "--history 显示的行数"),
    "help.quick": ("--verify with quick_check (faster)", "--verify 用 quick_check（更快）"),
    "help.target": ("--restore into this database", "--restore 恢复到这个数据库"),
    "help.identity": (
        "--verify, --restore, --decrypt a .age file",
        "--verify、--restore、--decrypt .age 文件所用的私钥",
    ),
    "help.output": ("--decrypt into this new file", "--decrypt 解密到这个新文件"),
    "help.yes": ("--restore without asking", "--restore 时不再询问"),
    "help.allow_unlogged": (
        "--restore --yes a file the run log does not know",
        "--restore --yes 运行日志中没有记录的文件",
    ),
    "help.allow_other_database": (
        "--restore --yes a backup of another database",
        "--restore --yes 另一个数据库的备份",
    ),
    "help.trigger": ("--run: recorded in the run log", "--run：记入运行日志的触发方式"),
    "help.python": (
        "interpreter for the .bat or crontab (this one)",
        ".bat 或 crontab 使用的 Python 解释器（默认当前这个）",
    ),
    "help.debug": ("show tracebacks", "显示完整的错误堆栈"),
}


@dataclasses.dataclass(frozen=True)
class Text:
    """A message for people: its id in TEXTS and its named values, rendered in a language
    where it is shown. ``str()`` is the English text (for the run log and JSON)."""

    key: str
    values: tuple[tuple[str, Any], ...] = ()

    def render(self, lang: str) -> str:
        english, chinese = TEXTS[self.key]
        values = {name: render_text(value, lang) for name, value in self.values}
        return (chinese if lang == "zh" else english).format(**values)

    def __str__(self) -> str:
        return self.render("en")


def text(key: str, /, **values: Any) -> Text:
    """The message ``key`` of TEXTS with its values (a value may be a Text itself)."""
    return Text(key, tuple(values.items()))


def render_text(value: Any, lang: str) -> Any:
    """``value`` in ``lang`` when it is a Text; anything else as it is."""
    return value.render(lang) if isinstance(value, Text) else value


# What an OSError interrupted, as describe_os_error names it (the phrase comes before a path).
_DOING = {
    "archiving": text("doing.archiving"),
    "backing up": text("doing.backing_up"),
    "compressing": text("doing.compressing"),
    "copying a backup into": text("doing.copying_into"),
    "copying to": text("doing.copying_to"),
    "creating": text("doing.creating"),
    "creating a temporary folder in": text("doing.creating_temp_folder"),
    "decrypting": text("doing.decrypting"),
    "deleting": text("doing.deleting"),
    "drilling": text("doing.drilling"),
    "encrypting": text("doing.encrypting"),
    "listing": text("doing.listing"),
    "moving aside the damaged run log": text("doing.moving_log_aside"),
    "naming the new file in": text("doing.naming"),
    "opening the folder of the run log": text("doing.opening_log_folder"),
    "opening the run lock": text("doing.opening_lock"),
    "reading back": text("doing.reading_back"),
    "restoring into": text("doing.restoring_into"),
    "verifying": text("doing.verifying"),
    "writing": text("doing.writing"),
    "writing a copy into": text("doing.writing_copy_into"),
    "writing a temporary file into": text("doing.writing_temp_into"),
    "writing the run log": text("doing.writing_log"),
}


def language_of_locale(name: str) -> str | None:
    """ "zh" for a Simplified Chinese locale name (zh_CN.UTF-8, zh-SG, zh_Hans), "en" for any
    other (Traditional Chinese too, until it has its own texts), None for an empty one."""
    base = name.split(".")[0].split("@")[0].replace("-", "_").casefold()
    if not base:
        return None
    if base in ("zh", "zh_cn", "zh_sg", "chinese") or base.startswith("zh_hans"):
        return "zh"
    return "en"


def _windows_ui_language() -> str | None:
    """The Windows user's display language (GetUserDefaultUILanguage), as a language."""
    if os.name != "nt":
        return None
    import ctypes  # pragma: no cover - Windows only

    langid = ctypes.windll.kernel32.GetUserDefaultUILanguage()  # pragma: no cover
    # Primary language 0x04 is Chinese; sub-languages 0x02 (PRC) and 0x04 (Singapore) are
    # Simplified, 0x01/0x03/0x05 (Taiwan, Hong Kong, Macao) Traditional.
    if langid & 0x3FF == 0x04:  # pragma: no cover
        return "zh" if langid >> 10 in (0x02, 0x04) else "en"
    return "en"  # pragma: no cover


def detect_language(
    environ: dict[str, str] | os._Environ[str],
    windows_ui: Callable[[], str | None] = _windows_ui_language,
) -> str:
    """The operator's language when none is chosen: the first of LANGUAGE, LC_ALL,
    LC_MESSAGES and LANG that is set (as gettext reads them); else, on Windows, the user's
    display language; else English."""
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        found = language_of_locale(environ.get(name, "").split(":")[0])  # LANGUAGE: a list
        if found is not None:
            return found
    return windows_ui() or "en"


# ======================================================================================
# Errors
# ======================================================================================


class BackupError(Exception):
    """A failure the operator can act on: a message naming the file, and a hint with the fix."""

    def __init__(
        self,
        message: str | Text,
        *,
        exit_code: int = ExitCode.FAILED,
        hint: str | Text | None = None,
    ) -> None:
        super().__init__(str(message))
        # ``message`` and ``hint`` are English (the run log's); ``text`` and ``hint_text``
        # are shown in the operator's language.
        self.text, self.hint_text = message, hint
        self.message = str(message)
        self.exit_code = int(exit_code)
        self.hint = None if hint is None else str(hint)


class VerificationFailed(BackupError):
    """A copy that SQLite's own check (quick_check) found damaged: its source is damaged."""


class DatabaseDamaged(BackupError):
    """SQLite reports a database as damaged, or as no database at all."""


def _usage_error(message: str | Text, hint: str | Text | None = None) -> BackupError:
    return BackupError(message, exit_code=ExitCode.USAGE, hint=hint)


def _doing(doing: str) -> Text | str:
    """What was being done, as said in a message (unknown phrases stay as they are)."""
    return _DOING.get(doing, doing)


def describe_os_error(exc: OSError, path: Path | str, doing: str) -> BackupError:
    """Turn an OSError into a BackupError that names the file and the fix."""
    code, what = exc.errno, _doing(doing)
    if code in (errno.ENOSPC, _EDQUOT):
        return BackupError(
            text("error.disk_full", doing=what, path=path), hint=text("error.disk_full_hint")
        )
    if code in (errno.EACCES, errno.EPERM):
        return BackupError(
            text("error.no_permission", doing=what, path=path),
            hint=text("error.no_permission_hint"),
        )
    if code == errno.EROFS:
        return BackupError(
            text("error.read_only", doing=what, path=path), hint=text("error.read_only_hint")
        )
    reason = exc.strerror or str(exc)
    return BackupError(text("error.os", reason=reason, doing=what, path=path))


def as_backup_error(exc: BaseException, path: Path | str, doing: str) -> BackupError:
    """Any exception as a BackupError naming the file: one failure must not stop the rest."""
    if isinstance(exc, BackupError):
        return exc
    if isinstance(exc, OSError):
        return describe_os_error(exc, path, doing)
    return BackupError(
        text("error.unexpected_while", doing=_doing(doing), path=path, error=repr(exc)),
        hint=text("error.report_it"),
    )


def unexpected_error(exc: BaseException) -> BackupError:
    """An error the tool did not foresee, as the operator sees it: a bug to report."""
    return BackupError(text("error.unexpected", error=repr(exc)), hint=text("error.report_it"))


# ======================================================================================
# Helpers
# ======================================================================================


def _format_size(size: float, lang: str = "en") -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(size) < 1024 or unit == "TB":
            if unit == "bytes":
                return text("size.bytes", size=size).render(lang)
            return f"{size:,.2f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _age_text(seconds: float) -> Text:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return text("age.days", days=days, hours=hours)
    if hours:
        return text("age.hours", hours=hours, minutes=minutes)
    return text("age.minutes", minutes=minutes)


def _format_age(seconds: float, lang: str = "en") -> str:
    return _age_text(seconds).render(lang)


def mask_url(url: str) -> str:
    """A URL safe to print and log: scheme and host only; paths and queries of webhooks and
    endpoints carry tokens (``access_token=...``, Slack's ``/services/T/B/secret``)."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a port out of range, a broken IPv6 address
        return "***"
    if not parts.scheme or not parts.hostname:
        return "***"
    rest = "/***" if (parts.path.strip("/") or parts.query) else ""
    return f"{parts.scheme}://{parts.hostname}{port}{rest}"


def _host_name() -> str:
    """This machine's name, as socket.gethostname() gives it (POSIX: without loading socket)."""
    if hasattr(os, "uname"):
        return os.uname().nodename
    import socket

    return socket.gethostname()


def _path_key(path: Path | str) -> str:
    return os.path.normcase(os.path.abspath(str(path)))


def shell_command(words: Sequence[str]) -> str:
    """One command line that runs as shown when pasted into this platform's shell
    (cmd.exe on Windows; PowerShell needs ``&`` before a quoted program; a POSIX shell
    elsewhere)."""
    if os.name == "nt":
        import subprocess

        quoted = []
        for word in words:
            text = subprocess.list2cmdline([word])
            # cmd.exe reads < > | & ^ ( ) outside quotes as its own operators.
            if not text.startswith('"') and re.search(r"[<>|&^()]", word):
                text = f'"{text}"'
            quoted.append(text)
        return " ".join(quoted)
    import shlex

    return " ".join(shlex.quote(word) for word in words)


def install_hint(*requirements: str) -> Text:
    """The exact command that installs ``requirements`` for the Python running this script."""
    command = shell_command([sys.executable, "-m", "pip", "install", *requirements])
    return text("usage.install", command=command)


# What --timezone needs, as the operator installs it (the app folder has no requirements.txt).
TIMEZONE_REQUIREMENTS = ("pytz",)


# --- Time ---


def _now_local() -> dt.datetime:
    return dt.datetime.now().astimezone()


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="seconds")


def parse_iso(text: Any) -> dt.datetime | None:
    """Parse an ISO 8601 time from the log into an aware datetime, or None."""
    if not isinstance(text, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.astimezone()


# --- Subprocesses and output ---


def split_command(template: str) -> list[str]:
    """Split a command line into words as the platform's shell would quote them."""
    import shlex

    if os.name != "nt":
        return shlex.split(template)
    # Windows: shlex keeps the quotes (posix=False); subprocess quotes each word again.
    words = shlex.split(template, posix=False)
    return [w[1:-1] if len(w) >= 2 and w[0] == w[-1] == '"' else w for w in words]


def run_command(
    words: Sequence[str], *, timeout: float, stdin_text: str | None = None
) -> tuple[int, str]:
    """Run a command without a shell; return (exit code, its output's last line).

    Its standard input is the given text or nothing (an uploader that prompts must
    not wait for ever), and on a timeout its whole process group is killed, so a
    wrapper's children cannot keep the run waiting.
    """
    import subprocess

    group = {"start_new_session": True} if os.name == "posix" else {}
    process = subprocess.Popen(
        list(words),
        stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        **group,  # type: ignore[arg-type]
    )
    try:
        output, _ = process.communicate(stdin_text, timeout=timeout)
    except subprocess.TimeoutExpired:
        if os.name == "posix":
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except OSError:
                pass
        process.kill()
        process.communicate()
        raise
    lines = (output or "").strip().splitlines()
    return process.returncode, (lines[-1][:300] if lines else "")


def _write_quietly(stream: TextIO, text: str) -> None:
    """Write and flush; a closed pipe or console must never abort a backup half-way."""
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):
        pass


# ======================================================================================
# Process-level state
# ======================================================================================

# State that outlives one call, all of it here; each says why it belongs to the process
# rather than to one object.


# Temporary files this process has made and not yet removed. Ctrl+C can land between a
# file's creation and the ``try`` that would remove it; main() removes what is left here.
_LIVE_TEMP_FILES: set[Path] = set()


# On POSIX, closing any descriptor of a file drops every lock this process holds on it,
# SQLite's included. Handles on a database that another connection in this process (an
# app that imports this module) still has open are parked here, and closed by a later
# backup once nothing else in the process has the file open, as SQLite itself does.
_PARKED_HANDLES: list[Any] = []


# ======================================================================================
# Configuration
# ======================================================================================


@dataclasses.dataclass(frozen=True)
class DatabaseSpec:
    """One source database: its backup name, its path, and whether it must exist."""

    name: str
    path: Path
    required: bool = True


@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting: its key (the Config field and the config file's key), its kind, flag,
    default and check. The table of them drives Config's defaults, the config-file loader,
    the flags and their help, --show-config, and the flags a generated task passes on.

    Kinds: int and float (checked between ``low`` and ``high``; ``above_zero`` for a limit
    that must be more than 0), path, file (a path or none), paths (repeatable), text (one of
    ``choices`` when given), texts and urls (repeatable), times (HH:MM, repeatable), zone,
    compress, databases.
    """

    key: str
    kind: str
    default: Any
    help: str
    metavar: str | None = None
    flag: str | None = None  # when it is not --key-with-dashes
    dest: str | None = None  # argparse's name, when it is not the key
    low: float = 0
    high: float = 0
    above_zero: bool = False
    choices: tuple[str, ...] | None = None
    shown_default: str | None = None  # how --help names the default; "" names none
    group: str = "settings"  # or "far": off-site copies and alerts
    passed_on: bool = True  # given as a flag, a generated .bat or crontab line repeats it
    secret: bool = False  # may hold a secret: never written into a task, URLs masked
    zh: str = ""  # the help in Chinese (the catalog test asks for it)
    shown_zh: str | None = None  # shown_default in Chinese, where it is words

    @property
    def option(self) -> str:
        return self.flag or "--" + self.key.replace("_", "-")

    @property
    def attribute(self) -> str:
        return self.dest or self.key

    def help_text(self, lang: str = "en") -> str:
        """The help line in ``lang``, with the default named once, from the table."""
        shown = self.shown_zh if lang == "zh" and self.shown_zh else self.shown_default
        if shown is None and self.default not in (None, ()):
            shown = f"{self.default:g}" if isinstance(self.default, float) else str(self.default)
        line = self.zh if lang == "zh" else self.help
        return text("cli.with_default", help=line, default=shown).render(lang) if shown else line


_DAYS, _HOURS, _ANY_COUNT = 36500, 87600, 1_000_000
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "databases",
        "databases",
        None,
        "database to back up, repeatable",
        "[NAME=]PATH",
        flag="--db",
        dest="db",
        shown_default=f"{MAIN_DATABASE}; {ROOT_DATABASE} too when it exists",
        zh="要备份的数据库，可重复",
        shown_zh="instance/pet_painting.db；若存在，还有 pet_painting.db",
    ),
    Setting(
        "backup_dir", "path", DEFAULT_BACKUP_DIR, "where backups go", "DIR", zh="备份存放的文件夹"
    ),
    Setting("log_file", "path", DEFAULT_LOG_FILE, "the run log", "FILE", zh="运行日志"),
    Setting(
        "keep_days",
        "int",
        30,
        "prune backups older than N days",
        "N",
        high=_DAYS,
        zh="删除超过 N 天的备份",
    ),
    Setting(
        "keep_last",
        "int",
        3,
        "always keep the newest N",
        "N",
        low=1,
        high=_ANY_COUNT,
        zh="始终保留最新的 N 个",
    ),
    Setting(
        "busy_timeout",
        "float",
        60.0,
        "wait S seconds for a busy database",
        "S",
        high=86400,
        zh="数据库忙时最多等待 S 秒",
    ),
    Setting(
        "lock_timeout",
        "float",
        300.0,
        "wait S seconds for another run",
        "S",
        high=86400,
        zh="最多等待另一次运行 S 秒",
    ),
    Setting(
        "log_max_runs",
        "int",
        1000,
        "runs kept in the run log",
        "N",
        low=1,
        high=10**7,
        zh="运行日志保留的运行次数",
    ),
    Setting(
        "lang",
        "text",
        None,
        "language of the messages",
        choices=LANGUAGES,
        shown_default="from LANGUAGE, LC_ALL, LC_MESSAGES, LANG or Windows",
        zh="提示信息的语言",
        shown_zh="取自 LANGUAGE、LC_ALL、LC_MESSAGES、LANG 或 Windows",
    ),
    Setting(
        "run_at",
        "times",
        ("03:00",),
        "daily time for --schedule, repeatable",
        "HH:MM",
        flag="--at",
        dest="at",
        shown_default="03:00",
        passed_on=False,
        zh="--schedule 每天的备份时间，可重复",
    ),
    Setting(
        "timezone",
        "zone",
        None,
        "time zone of --at",
        "AREA/CITY",
        shown_default="the computer's",
        passed_on=False,
        zh="--at 所用的时区",
        shown_zh="本机时区",
    ),
    Setting(
        "keep_daily",
        "int",
        0,
        "also keep the newest of each of N days",
        "N",
        high=_ANY_COUNT,
        zh="另外保留最近 N 天中每天最新的一个",
    ),
    Setting(
        "keep_weekly",
        "int",
        0,
        "... of each of N ISO weeks",
        "N",
        high=_ANY_COUNT,
        zh="……最近 N 个 ISO 周中每周的",
    ),
    Setting(
        "keep_monthly",
        "int",
        0,
        "... of each of N months",
        "N",
        high=_ANY_COUNT,
        zh="……最近 N 个月中每月的",
    ),
    Setting(
        "compress",
        "compress",
        None,
        "store backups compressed",
        choices=("gzip", "zstd", "none"),
        shown_default="none",
        zh="压缩存放备份",
    ),
    Setting(
        "max_age_hours",
        "float",
        24.0,
        "--check: a backup older than H hours is stale",
        "H",
        flag="--max-age",
        high=_HOURS,
        above_zero=True,
        zh="--check：超过 H 小时的备份视为过期",
    ),
    Setting(
        "max_disk_percent",
        "float",
        5.0,
        "budget for the backup folder, percent of its disk",
        "P",
        high=100,
        above_zero=True,
        zh="备份文件夹的空间预算，占所在磁盘的百分比",
    ),
    Setting(
        "max_shrink_percent",
        "float",
        50.0,
        "--check: warn when the newest backup shrank by P percent",
        "P",
        high=100,
        zh="--check：最新备份缩小超过百分之 P 时警告",
    ),
    Setting(
        "drill_every_days",
        "int",
        30,
        "a scheduled --run (scheduler, task, cron) also drills a restore when the last good "
        "drill is N days old; 0: never",
        "N",
        high=_DAYS,
        zh="计划任务的 --run（调度器、任务计划、cron）在上次成功演练已满 N 天时"
        "也做一次恢复演练；0：从不",
    ),
    Setting(
        "max_drill_age",
        "float",
        35.0,
        "--check: warn when the last good restore drill is older than D days",
        "D",
        high=_DAYS,
        above_zero=True,
        zh="--check：上次成功的恢复演练超过 D 天时警告",
    ),
    Setting(
        "metrics",
        "file",
        None,
        "after each run, drill and check, write Prometheus metrics to FILE",
        "FILE",
        shown_default="",
        zh="每次运行、演练和检查后把 Prometheus 指标写入 FILE",
    ),
    Setting(
        "archive_source",
        "file",
        None,
        "the folder --archive and --run archive whole",
        "DIR",
        shown_default="the main database's folder (instance/)",
        zh="--archive 和 --run 整体归档的文件夹",
        shown_zh="主数据库所在的文件夹（instance/）",
    ),
    Setting(
        "archive_every_days",
        "int",
        7,
        "--run: archive the folder when the newest archive is N days old (0: never)",
        "N",
        high=_DAYS,
        zh="--run：最新归档满 N 天时归档整个文件夹（0：从不）",
    ),
    Setting(
        "archive_keep",
        "int",
        4,
        "keep the newest N archives",
        "N",
        low=1,
        high=_ANY_COUNT,
        zh="保留最新的 N 个归档",
    ),
    Setting(
        "archive_exclude",
        "texts",
        (),
        "leave files or folders matching GLOB out of archives, repeatable",
        "GLOB",
        zh="归档时排除匹配 GLOB 的文件或文件夹，可重复",
    ),
    Setting(
        "copy_to",
        "paths",
        (),
        "also copy backups to DIR, repeatable",
        "DIR",
        group="far",
        zh="另外把备份复制到 DIR，可重复",
    ),
    Setting(
        "s3",
        "texts",
        (),
        "also upload to S3 (needs boto3), repeatable",
        "s3://BUCKET/PREFIX",
        group="far",
        zh="另外上传到 S3（需要 boto3），可重复",
    ),
    Setting(
        "s3_endpoint",
        "text",
        None,
        "S3-compatible endpoint (OSS, COS, MinIO, R2)",
        "URL",
        shown_default="AWS",
        group="far",
        zh="兼容 S3 的服务地址（OSS、COS、MinIO、R2）",
    ),
    Setting(
        "s3_profile",
        "text",
        None,
        "AWS credentials profile",
        "NAME",
        shown_default="the environment",
        group="far",
        zh="AWS 凭据配置名",
        shown_zh="取自环境变量",
    ),
    Setting(
        "s3_region",
        "text",
        None,
        "S3 region",
        "NAME",
        shown_default="boto3's",
        group="far",
        zh="S3 区域",
        shown_zh="boto3 的默认值",
    ),
    Setting(
        "s3_addressing",
        "text",
        None,
        "bucket in the path or host name",
        choices=("path", "virtual"),
        shown_default="path for an IP or localhost endpoint, else virtual",
        group="far",
        zh="存储桶写在路径中还是主机名中",
        shown_zh="IP 或 localhost 地址用 path，否则用 virtual",
    ),
    Setting(
        "encrypt_to",
        "texts",
        (),
        "send age-encrypted copies to RECIPIENT (age1..., ssh-... or a recipients file), "
        "repeatable",
        "RECIPIENT",
        group="far",
        zh="把 age 加密的副本发给 RECIPIENT（age1...、ssh-... 或收件人文件），可重复",
    ),
    Setting(
        "upload_command",
        "texts",
        (),
        "run CMD per backup: {path} {name}, repeatable",
        "CMD",
        group="far",
        secret=True,
        zh="每个备份运行 CMD：{path} {name}，可重复",
    ),
    Setting(
        "upload_timeout",
        "float",
        3600.0,
        "limit for one upload command, seconds",
        "S",
        high=86400,
        above_zero=True,
        group="far",
        zh="单个上传命令的时限，秒",
    ),
    Setting(
        "notify_url",
        "urls",
        (),
        "POST a summary to URL, repeatable",
        "URL",
        group="far",
        secret=True,
        zh="把摘要 POST 到 URL，可重复",
    ),
    Setting(
        "notify_on",
        "text",
        "failure",
        "when to alert",
        choices=NOTIFY_ON,
        group="far",
        zh="何时告警",
    ),
    Setting(
        "notify_format",
        "text",
        "json",
        "webhook body",
        choices=NOTIFY_FORMATS,
        group="far",
        zh="webhook 消息格式",
    ),
    Setting(
        "notify_command",
        "text",
        None,
        "run CMD with the JSON summary on stdin",
        "CMD",
        shown_default="",
        group="far",
        secret=True,
        zh="运行 CMD，把 JSON 摘要从标准输入传给它",
    ),
    Setting(
        "heartbeat_url",
        "urls",
        (),
        "after each run GET URL (URL/fail when it failed), e.g. healthchecks.io; repeatable",
        "URL",
        group="far",
        secret=True,
        zh="每次运行后 GET URL（失败时为 URL/fail），例如 healthchecks.io；可重复",
    ),
    Setting(
        "notify_timeout",
        "float",
        10.0,
        "limit for one webhook, seconds",
        "S",
        high=600,
        above_zero=True,
        group="far",
        zh="单个 webhook 的时限，秒",
    ),
)
SETTING = {setting.key: setting for setting in SETTINGS}
# Defaults that do not depend on the app's folder, by key (Config's field defaults).
DEFAULTS = {s.key: s.default for s in SETTINGS if s.kind not in ("databases", "path")}


@dataclasses.dataclass(frozen=True)
class Config:
    """Effective settings, built once from defaults < config file < flags, then validated.

    Each field but the first and last three is a setting of SETTINGS, its default from there.
    """

    app_root: Path
    databases: tuple[DatabaseSpec, ...]
    backup_dir: Path
    log_file: Path
    keep_days: int = DEFAULTS["keep_days"]
    keep_last: int = DEFAULTS["keep_last"]
    busy_timeout: float = DEFAULTS["busy_timeout"]
    lock_timeout: float = DEFAULTS["lock_timeout"]
    log_max_runs: int = DEFAULTS["log_max_runs"]
    run_at: tuple[str, ...] = DEFAULTS["run_at"]
    timezone: str | None = DEFAULTS["timezone"]
    keep_daily: int = DEFAULTS["keep_daily"]
    keep_weekly: int = DEFAULTS["keep_weekly"]
    keep_monthly: int = DEFAULTS["keep_monthly"]
    compress: str | None = DEFAULTS["compress"]
    max_age_hours: float = DEFAULTS["max_age_hours"]
    max_disk_percent: float = DEFAULTS["max_disk_percent"]
    max_shrink_percent: float = DEFAULTS["max_shrink_percent"]
    drill_every_days: int = DEFAULTS["drill_every_days"]
    max_drill_age: float = DEFAULTS["max_drill_age"]
    metrics: Path | None = DEFAULTS["metrics"]
    archive_source: Path | None = DEFAULTS["archive_source"]
    archive_every_days: int = DEFAULTS["archive_every_days"]
    archive_keep: int = DEFAULTS["archive_keep"]
    archive_exclude: tuple[str, ...] = DEFAULTS["archive_exclude"]
    copy_to: tuple[Path, ...] = DEFAULTS["copy_to"]
    s3: tuple[str, ...] = DEFAULTS["s3"]
    s3_endpoint: str | None = DEFAULTS["s3_endpoint"]
    s3_profile: str | None = DEFAULTS["s3_profile"]
    s3_region: str | None = DEFAULTS["s3_region"]
    s3_addressing: str | None = DEFAULTS["s3_addressing"]
    encrypt_to: tuple[str, ...] = DEFAULTS["encrypt_to"]
    upload_command: tuple[str, ...] = DEFAULTS["upload_command"]
    upload_timeout: float = DEFAULTS["upload_timeout"]
    notify_url: tuple[str, ...] = DEFAULTS["notify_url"]
    notify_on: str = DEFAULTS["notify_on"]
    notify_format: str = DEFAULTS["notify_format"]
    notify_command: str | None = DEFAULTS["notify_command"]
    notify_timeout: float = DEFAULTS["notify_timeout"]
    heartbeat_url: tuple[str, ...] = DEFAULTS["heartbeat_url"]
    lang: str = "en"  # resolved by build_config: the flag, the config file or the environment
    config_file: Path | None = None
    # Settings given as flags, so that a generated .bat or crontab line passes them on.
    from_flags: tuple[str, ...] = ()

    def app_folder(self) -> Path | None:
        """``instance/`` when the backups go to the default ``instance/backups``: that folder
        must exist, or the script is not in an app's root."""
        if _path_key(self.backup_dir) == _path_key(self.app_root / DEFAULT_BACKUP_DIR):
            return self.backup_dir.parent
        return None

    def archive_folder(self) -> Path:
        """The folder archives hold: ``archive_source``, else the main database's folder."""
        return self.archive_source or self.databases[0].path.parent

    def retention(self, name: str | None = None) -> dict[str, int]:
        """The retention rules, as ``select_expired`` takes them; for archives (``name``
        ending in "/") the newest ``archive_keep``."""
        if name is not None and name.endswith("/"):
            # keep_days -1: none is kept for its age alone, only a clock gone a day ahead.
            return {"keep_days": -1, "keep_last": self.archive_keep}
        return {
            "keep_days": self.keep_days,
            "keep_last": self.keep_last,
            "keep_daily": self.keep_daily,
            "keep_weekly": self.keep_weekly,
            "keep_monthly": self.keep_monthly,
        }

    def to_json(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict, in the config file's own format."""
        shown: dict[str, Any] = {
            "app_root": str(self.app_root),
            "config_file": str(self.config_file) if self.config_file else None,
        }
        for setting in SETTINGS:
            value = getattr(self, setting.key)
            if setting.kind == "databases":
                value = [
                    {"name": db.name, "path": str(db.path), "required": db.required} for db in value
                ]
            elif setting.kind == "path":
                value = str(value)
            elif setting.kind == "file":
                value = None if value is None else str(value)
            elif setting.kind in ("paths", "texts", "times"):
                value = [str(item) for item in value]
            elif setting.kind == "urls":
                value = [mask_url(url) for url in value]
            shown[setting.key] = value
        return shown


# A database name becomes part of a file name on Windows and POSIX alike.
_DATABASE_NAME = re.compile(r'[^\\/:*?"<>|=\x00-\x1f.][^\\/:*?"<>|=\x00-\x1f]*(?<![ .])')
_S3_URL = re.compile(r"s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(?:/(?P<prefix>.*))?")
_RECIPIENT_KEY = re.compile(r"(age1|AGE-SECRET-KEY-|ssh-|ecdsa-|sk-)", re.IGNORECASE)
_RUN_AT = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")


def default_databases(app_root: Path) -> tuple[DatabaseSpec, ...]:
    """The operator's app layout: the instance database, and an optional one in the root."""
    return (
        DatabaseSpec("pet_painting.db", app_root / MAIN_DATABASE, required=True),
        DatabaseSpec(ROOT_DATABASE_NAME, app_root / ROOT_DATABASE, required=False),
    )


def parse_db_argument(value: str, base: Path) -> DatabaseSpec:
    """Parse ``--db [NAME=]PATH``; a NAME holds no path separator, so ``C:\\a=b.db`` is a path."""
    name, sep, rest = value.partition("=")
    if sep and name and not re.search(r"[\\/:]", name):
        path_text = rest
    else:
        name, path_text = "", value
    if not path_text.strip():
        raise _usage_error(text("usage.db_no_path", value=value), text("usage.db_no_path_hint"))
    path = _resolve(path_text, base)
    return DatabaseSpec(name or path.name, path, required=True)


def _resolve(path_text: str, base: Path, source: str | None = None) -> Path:
    if "\x00" in path_text:
        message = (
            text("usage.path_nul_in", source=source, path=path_text)
            if source
            else text("usage.path_nul", path=path_text)
        )
        raise _usage_error(message, text("usage.fix_path"))
    path = Path(os.path.expanduser(path_text))
    return path if path.is_absolute() else base / path


def _config_error(source: str, message: str | Text) -> BackupError:
    return _usage_error(
        text("config.error", source=source, message=message), text("config.error_hint")
    )


def _check_number(source: str, key: str, value: Any) -> int | float:
    setting = SETTING[key]
    kind = int if setting.kind == "int" else float
    ok_types = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_types):
        raise _config_error(
            source,
            text(
                "config.must_be_int" if kind is int else "config.must_be_float",
                key=key,
                value=repr(value),
            ),
        )
    too_low = value <= 0 if setting.above_zero else value < setting.low
    if value != value or too_low or value > setting.high:
        values = {"key": key, "low": setting.low, "high": setting.high, "value": repr(value)}
        key_text = "config.range_above_zero" if setting.above_zero else "config.range"
        raise _config_error(source, text(key_text, **values))
    return kind(value)


def _check_run_at(source: str, values: Any) -> tuple[str, ...]:
    items = [values] if isinstance(values, str) else values
    if not isinstance(items, list) or not items:
        raise _config_error(source, text("config.run_at"))
    for item in items:
        if not isinstance(item, str) or not _RUN_AT.fullmatch(item):
            raise _config_error(source, text("config.run_at_item", item=repr(item)))
    return tuple(dict.fromkeys(items))


def _check_list(source: str, key: str, items: Sequence[str], base: Path) -> tuple[Any, ...]:
    if key == "copy_to":
        return tuple(_resolve(item, base, source) for item in items)
    if key == "encrypt_to":
        # A key stays as it is; anything else names a recipients file.
        return tuple(
            item if _RECIPIENT_KEY.match(item) else str(_resolve(item, base, source))
            for item in items
        )
    if key == "s3":
        for url in items:
            if not _S3_URL.fullmatch(url):
                raise _config_error(source, text("config.s3_url", key=key, url=repr(url)))
    if key in ("notify_url", "heartbeat_url"):
        for url in items:
            if not _is_sendable_url(url):
                raise _config_error(source, text("config.http_url", key=key, url=mask_url(url)))
    return tuple(items)


def _is_sendable_url(url: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not re.search(r"[\s\x00-\x1f\x7f]", url)
    )


def _check_text(source: str, key: str, value: Any) -> str | None:
    allowed = SETTING[key].choices
    if value is None and SETTING[key].default is None:
        return None
    if not isinstance(value, str) or (allowed is not None and value not in allowed):
        if allowed:
            values = {"key": key, "choices": ", ".join(allowed), "value": repr(value)}
            raise _config_error(source, text("config.one_of", **values))
        raise _config_error(source, text("config.must_be_text", key=key, value=repr(value)))
    return value


def _check_compress(source: str, value: Any) -> str | None:
    if value is None or value is False or value == "none":
        return None
    if not isinstance(value, str) or value not in COMPRESSION_SUFFIXES:
        raise _config_error(source, text("config.compress", value=repr(value)))
    return str(value)


def _databases_from_file(source: str, value: Any, base: Path) -> tuple[DatabaseSpec, ...]:
    if not isinstance(value, list) or not value:
        raise _config_error(source, text("config.databases"))
    specs = []
    for item in value:
        if isinstance(item, str):
            item = {"path": item}
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise _config_error(source, text("config.database_path", item=repr(item)))
        unknown = set(item) - {"name", "path", "required"}
        if unknown:
            raise _config_error(source, text("config.database_unknown", keys=sorted(unknown)))
        path = _resolve(item["path"], base, source)
        name = item.get("name", path.name)
        required = item.get("required", True)
        if not isinstance(name, str) or not isinstance(required, bool):
            raise _config_error(source, text("config.database_name", item=repr(item)))
        specs.append(DatabaseSpec(name, path, required))
    return tuple(specs)


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a JSON config file into settings, its paths resolved against its own folder."""
    source = str(path)
    try:
        content = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise _usage_error(
            text("error.config_missing", path=path), text("error.config_missing_hint")
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _usage_error(text("config.unreadable", path=path, error=str(exc))) from exc
    try:
        raw = json.loads(content)
    except ValueError as exc:
        raise _config_error(source, text("config.not_json", error=str(exc))) from exc
    if not isinstance(raw, dict):
        raise _config_error(source, text("config.not_object"))
    unknown = set(raw) - set(SETTING)
    if unknown:
        values = {"keys": sorted(unknown), "known": sorted(SETTING)}
        raise _config_error(source, text("config.unknown", **values))
    return {
        key: _setting_from_file(source, SETTING[key], value, path.parent)
        for key, value in raw.items()
    }


def _setting_from_file(source: str, setting: Setting, value: Any, base: Path) -> Any:
    """One config-file value, checked; relative paths are taken from ``base``."""
    key, kind = setting.key, setting.kind
    if kind == "databases":
        return _databases_from_file(source, value, base)
    if kind == "path" or (kind == "file" and value is not None):
        if not isinstance(value, str) or not value.strip():
            raise _config_error(source, text("config.must_be_path", key=key))
        return _resolve(value, base, source)
    if kind == "file":
        return None
    if kind == "times":
        return _check_run_at(source, value)
    if kind == "compress":
        return _check_compress(source, value)
    if kind in ("paths", "texts", "urls"):
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
            raise _config_error(source, text("config.must_be_texts", key=key))
        return _check_list(source, key, items, base)
    if kind == "text":
        return _check_text(source, key, value)
    if kind == "zone":
        if value is not None and not isinstance(value, str):
            raise _config_error(source, text("config.timezone"))
        return value or None
    return _check_number(source, key, value)


def _setting_from_flag(setting: Setting, value: Any, cwd: Path) -> Any:
    """One flag's value, checked; relative paths are taken from ``cwd``."""
    key, kind, flag = setting.key, setting.kind, setting.option
    if kind == "databases":
        return tuple(parse_db_argument(item, cwd) for item in value)
    if kind in ("path", "file"):
        return _resolve(value, cwd)
    if kind == "times":
        return _check_run_at(flag, list(value))
    if kind == "compress":
        return _check_compress(flag, value)
    if kind in ("paths", "texts", "urls"):
        return _check_list(flag, key, value, cwd)
    if kind == "text":
        return _check_text(flag, key, value)
    if kind == "zone":
        return value
    return _check_number(flag, key, value)


def build_config(
    args: argparse.Namespace, *, app_root: Path = APP_ROOT, cwd: Path | None = None
) -> Config:
    """Merge defaults < config file < flags into a validated Config."""
    cwd = cwd or Path.cwd()
    settings: dict[str, Any] = {
        "databases": default_databases(app_root),
        "backup_dir": app_root / SETTING["backup_dir"].default,
        "log_file": app_root / SETTING["log_file"].default,
    }
    config_file: Path | None = None
    if args.config:
        config_file = _resolve(args.config, cwd)
    elif (app_root / DEFAULT_CONFIG_FILE).is_file():
        config_file = app_root / DEFAULT_CONFIG_FILE
    if config_file is not None:
        settings.update(load_config_file(config_file))
    from_flags = []
    for setting in SETTINGS:
        value = getattr(args, setting.attribute, None)
        if value is None or (value == "" and setting.kind in ("path", "file", "zone")):
            continue
        settings[setting.key] = _setting_from_flag(setting, value, cwd)
        if setting.passed_on:
            from_flags.append(setting.key)
    if settings.get("lang") is None:
        settings["lang"] = detect_language(os.environ)
    config = Config(
        app_root=app_root, config_file=config_file, from_flags=tuple(from_flags), **settings
    )
    validate_config(config)
    return config


def validate_config(config: Config) -> None:
    """Reject configurations that would make backups collide or land in odd places."""
    seen: dict[str, DatabaseSpec] = {}
    for db in config.databases:
        if not _DATABASE_NAME.fullmatch(db.name) or len(db.name.encode()) > 200:
            raise _usage_error(
                text("usage.database_name", name=db.name), text("usage.database_name_hint")
            )
        # Windows and macOS compare file names without case: so do we.
        key = db.name.casefold()
        if key in seen:
            raise _usage_error(
                text("usage.same_name", name=db.name, first=seen[key].path, second=db.path),
                text("usage.same_name_hint"),
            )
        seen[key] = db
    log_real = config.log_file.resolve()
    if any(log_real == db.path.resolve() for db in config.databases):
        raise _usage_error(
            text("usage.log_is_database", path=config.log_file), text("usage.other_log_file")
        )
    # os.path's tests, not Path's: these never raise for a folder that cannot be entered
    # (check_log_folder then says so, by name).
    if os.path.exists(config.log_file) and not os.path.isfile(config.log_file):
        raise _usage_error(
            text("usage.log_not_file", path=config.log_file), text("usage.other_log_file")
        )
    for folder in config.copy_to:
        if _path_key(folder.resolve()) == _path_key(config.backup_dir.resolve()):
            raise _usage_error(
                text("usage.copy_to_backup_dir", folder=folder),
                text("usage.copy_to_backup_dir_hint"),
            )
    # A damaged log is moved aside and replaced: only ever a file meant to be one.
    if config.log_file.suffix.lower() != ".json":
        raise _usage_error(
            text("usage.log_not_json", path=config.log_file), text("usage.log_not_json_hint")
        )


# ======================================================================================
# Naming
# ======================================================================================

_BACKUP_NAME = re.compile(
    r"^(?P<name>.+)\.(?P<stamp>\d{8}_\d{6})(?:-(?P<seq>[1-9]\d{0,3}))?"
    + re.escape(BACKUP_SUFFIX)
    + r"(?P<packed>\.gz|\.zst)?$"
)
_ARCHIVE_NAME = re.compile(
    r"^(?P<name>.+)\.(?P<stamp>\d{8}_\d{6})(?:-(?P<seq>[1-9]\d{0,3}))?"
    + re.escape(ARCHIVE_SUFFIX)
    + "$"
)
# The scratch folders of a decrypted backup and of a restore drill.
_SCRATCH_FOLDER = re.compile(re.escape(TEMP_PREFIX) + r"(decrypted|drill)\.[0-9a-f]{16}\.tmp")
_COMPRESSION_OF_SUFFIX = {suffix: kind for kind, suffix in COMPRESSION_SUFFIXES.items()}
_TEMP_NAME = re.compile(
    r"^" + re.escape(TEMP_PREFIX) + r".*\.[0-9a-f]{16}\.tmp(-journal|-wal|-shm)?$"
)


@dataclasses.dataclass(frozen=True)
class BackupName:
    """The parts of a backup's file name: database name, local time taken, same-second counter."""

    name: str
    taken_at: dt.datetime
    seq: int = 0
    compression: str | None = None


def format_backup_name(
    name: str, taken_at: dt.datetime, seq: int = 0, compression: str | None = None
) -> str:
    """``pet_painting.db.20251028_030000.bak``; a second backup in that second gets ``-1``.

    A compressed backup ends in ``.bak.gz`` or ``.bak.zst``.
    """
    counter = f"-{seq}" if seq else ""
    packed = COMPRESSION_SUFFIXES[compression] if compression else ""
    return f"{name}.{taken_at.strftime(TIMESTAMP_FORMAT)}{counter}{BACKUP_SUFFIX}{packed}"


def parse_backup_name(filename: str) -> BackupName | None:
    """The parts of a backup's file name, or None when the name is not one of ours."""
    return _parse_stamped_name(_BACKUP_NAME.fullmatch(filename))


def format_archive_name(folder: str, taken_at: dt.datetime, seq: int = 0) -> str:
    """``instance.20251028_030000.zip``; a second archive in that second gets ``-1``."""
    counter = f"-{seq}" if seq else ""
    return f"{folder}.{taken_at.strftime(TIMESTAMP_FORMAT)}{counter}{ARCHIVE_SUFFIX}"


def archive_key(folder: Path) -> str:
    """The name archives of ``folder`` are listed under beside the databases' names: the
    folder's name and a "/", which no database name holds."""
    return folder.name + "/"


def parse_archive_name(filename: str) -> BackupName | None:
    """An archive's name as a BackupName: its ``name`` is the ``archive_key`` of its folder,
    its ``compression`` ARCHIVE_KIND."""
    parsed = _parse_stamped_name(_ARCHIVE_NAME.fullmatch(filename))
    if parsed is None:
        return None
    return dataclasses.replace(parsed, name=parsed.name + "/", compression=ARCHIVE_KIND)


def parse_listed_name(filename: str) -> BackupName | None:
    """A backup's or an archive's name, as the backup folder lists both."""
    return parse_backup_name(filename) or parse_archive_name(filename)


def _parse_stamped_name(match: re.Match[str] | None) -> BackupName | None:
    if not match:
        return None
    stamp = match["stamp"]
    try:
        # Sliced rather than strptime'd: listing 10,000 backups stays fast.
        taken_at = dt.datetime(
            int(stamp[0:4]),
            int(stamp[4:6]),
            int(stamp[6:8]),
            int(stamp[9:11]),
            int(stamp[11:13]),
            int(stamp[13:15]),
        )
    except ValueError:
        return None
    if not 1970 <= taken_at.year <= 9998:  # beyond what clocks and time zones can convert
        return None
    compression = _COMPRESSION_OF_SUFFIX.get(match.groupdict().get("packed"))
    return BackupName(match["name"], taken_at, int(match["seq"] or 0), compression)


def parse_copy_name(filename: str) -> tuple[BackupName | None, bool]:
    """A destination's file name: (its backup's parts, True when it is encrypted) or
    (None, False) when the name is not one of ours."""
    encrypted = filename.endswith(ENCRYPTED_SUFFIX)
    if encrypted:
        filename = filename[: -len(ENCRYPTED_SUFFIX)]
    parsed = parse_listed_name(filename)
    return (parsed, encrypted) if parsed else (None, False)


def is_backup_name(filename: str, name: str | None = None) -> bool:
    """True when ``filename`` is a backup's name (of database ``name``, when given)."""
    parsed = parse_backup_name(filename)
    return parsed is not None and (name is None or parsed.name == name)


def format_safety_name(name: str, taken_at: dt.datetime, seq: int = 0) -> str:
    """The name of the copy a restore keeps of the database it replaces; never a backup's name."""
    counter = f"-{seq}" if seq else ""
    return f"{name}.{taken_at.strftime(TIMESTAMP_FORMAT)}{counter}{SAFETY_SUFFIX}"


def parse_restorable_name(filename: str) -> BackupName | None:
    """Parse a backup's name, or a safety copy's (so that a restore can be undone)."""
    if filename.endswith(SAFETY_SUFFIX):
        filename = filename[: -len(SAFETY_SUFFIX)] + BACKUP_SUFFIX
    return parse_backup_name(filename)


def format_temp_name(name: str) -> str:
    """A temporary file name that can never match the backup pattern (no ``.bak`` ending)."""
    return f"{TEMP_PREFIX}{name}.{os.urandom(8).hex()}.tmp"


def is_temp_name(filename: str) -> bool:
    """True for this tool's temporary files and SQLite's journals beside them."""
    return _TEMP_NAME.fullmatch(filename) is not None


# ======================================================================================
# Backup engine
# ======================================================================================


# --- Backups on disk ---


@dataclasses.dataclass(frozen=True)
class BackupFile:
    """A backup on disk: its path, parsed name, size and file identity."""

    path: Path
    name: str
    taken_at: dt.datetime
    seq: int
    size: int
    file_id: tuple[int, int]
    compression: str | None = None
    encrypted: bool = False  # a destination's <backup name>.age

    @property
    def sort_key(self) -> tuple[dt.datetime, int]:
        return (self.taken_at, self.seq)


def _backup_file(
    path: Path,
    parsed: BackupName | None = None,
    entry: os.DirEntry[str] | None = None,
    *,
    encrypted: bool = False,
) -> BackupFile | None:
    """The BackupFile for one path, or None when it is not a regular file with a backup name."""
    parsed = parsed or parse_listed_name(path.name)
    if parsed is None:
        return None
    try:
        # A folder listing's own lstat is cheaper, but on Windows it leaves out the file id.
        if entry is not None and os.name == "posix":
            info = entry.stat(follow_symlinks=False)
        else:
            info = os.lstat(entry.path if entry is not None else path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return BackupFile(
        path,
        parsed.name,
        parsed.taken_at,
        parsed.seq,
        info.st_size,
        (info.st_dev, info.st_ino),
        parsed.compression,
        encrypted,
    )


def list_backups(
    backup_dir: Path, names: Sequence[str], *, copies: bool = False
) -> dict[str, list[BackupFile]]:
    """The backups of each named database, newest first; only regular files with our names.

    Links, folders and files of other names are never listed, so nothing this tool
    does to a listed file can touch anything it did not make. ``copies``: a destination's
    folder, where encrypted copies (``<backup name>.age``) are listed too.
    """
    found: dict[str, list[BackupFile]] = {name: [] for name in names}
    try:
        entries = list(os.scandir(backup_dir))
    except FileNotFoundError:
        return found
    except OSError as exc:
        raise describe_os_error(exc, backup_dir, "listing") from exc
    for entry in entries:
        parsed, encrypted = parse_copy_name(entry.name) if copies else (None, False)
        parsed = parsed or parse_listed_name(entry.name)
        if parsed is not None and parsed.name in found:
            backup = _backup_file(Path(entry.path), parsed, entry, encrypted=encrypted)
            if backup is not None:
                found[parsed.name].append(backup)
    for backups in found.values():
        backups.sort(key=lambda b: b.sort_key, reverse=True)
    return found


def next_counter(folder: Path, name: str, taken_at: dt.datetime) -> int:
    """The same-second counter for a new backup (or archive) of ``name`` taken at
    ``taken_at``: one past every such name in ``folder``. Never a name that pruning freed,
    which would sort the new file before older ones of that second."""
    counters = [-1]
    taken_at = taken_at.replace(microsecond=0)  # as a name holds it
    # Only names of that second are parsed: a folder of 10,000 backups stays cheap.
    prefix = f"{name.rstrip('/')}.{taken_at.strftime(TIMESTAMP_FORMAT)}"
    try:
        names = [entry.name for entry in os.scandir(folder) if entry.name.startswith(prefix)]
    except OSError as exc:
        raise describe_os_error(exc, folder, "listing") from exc
    for parsed in map(parse_listed_name, names):
        if parsed is not None and parsed.name == name and parsed.taken_at == taken_at:
            counters.append(parsed.seq)
    return max(counters) + 1


def ensure_backup_dir(backup_dir: Path, *, app_folder: Path | None = None) -> None:
    """Create the backup directory owner-only (0700) when missing; refuse a non-folder.

    With ``app_folder`` (the default backup folder's ``instance/``), that folder must
    exist already: a script run outside an app must not make itself an ``instance/``.
    A folder that cannot be made is a configuration error (exit 2).
    """
    try:
        # Path.exists() raises where a parent cannot be entered (before Python 3.12).
        if backup_dir.exists() and not backup_dir.is_dir():
            raise _usage_error(
                text("usage.backup_dir_not_folder", path=backup_dir),
                text("usage.other_backup_dir"),
            )
        if app_folder is not None and not app_folder.is_dir():
            raise _usage_error(
                text("usage.no_app_folder", folder=app_folder, backup_dir=backup_dir),
                text("usage.no_app_folder_hint", script=SCRIPT_NAME),
            )
        missing = []
        parent = backup_dir
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        if not parent.is_dir():
            raise _usage_error(
                text("usage.backup_dir_parent_file", path=backup_dir, parent=parent),
                text("usage.other_backup_dir"),
            )
        for folder in reversed(missing):
            folder.mkdir(mode=0o700)
            if os.name == "posix":
                try:
                    os.chmod(folder, 0o700)  # mkdir's mode is cut by the umask
                except OSError:
                    pass  # file systems without permissions (FAT over FUSE, some shares)
    except FileExistsError:
        pass
    except OSError as exc:
        error = describe_os_error(exc, backup_dir, "creating")
        hint = error.hint_text or text("usage.other_backup_dir")
        raise _usage_error(error.text, hint) from exc


def _is_scratch_folder(entry: os.DirEntry[str], file_names: Iterable[str] = ()) -> bool:
    """True for a scratch folder this tool made (``decrypted_backup``, a restore drill): its
    own name, holding nothing but regular files it writes there (backups, temporary files,
    and a drill's restored database, one of ``file_names``, with its journal or WAL)."""
    if not _SCRATCH_FOLDER.fullmatch(entry.name) or not entry.is_dir(follow_symlinks=False):
        return False
    try:
        inside = list(os.scandir(entry.path))
    except OSError:
        return False
    restored = {name + end for name in file_names for end in ("", "-journal", "-wal", "-shm")}
    return all(
        i.is_file(follow_symlinks=False)
        and (is_backup_name(i.name) or is_temp_name(i.name) or i.name in restored)
        for i in inside
    )


def remove_stale_temp_files(backup_dir: Path, file_names: Iterable[str] = ()) -> list[Path]:
    """Delete temporary files and scratch folders that an interrupted run left (a drill's
    folder may hold one of ``file_names``, the databases' own); call only under the run lock."""
    removed = []
    try:
        entries = list(os.scandir(backup_dir))
    except OSError:
        return removed
    for entry in entries:
        if not is_temp_name(entry.name):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
            elif _is_scratch_folder(entry, file_names):
                shutil.rmtree(entry.path)
            else:
                continue
            removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


# --- Files: temporary, fsync, publish ---


def sqlite_uri(path: Path, mode: str) -> str:
    """A ``file:`` URI for SQLite that never creates a missing file (``mode=rw`` or ``ro``)."""
    uri = path.resolve().as_uri()
    if not uri.startswith("file:///"):
        # A Windows UNC path (\\server\share) has an authority SQLite refuses; with an
        # empty one the path //server/share/... goes to Windows, which takes it.
        uri = "file:////" + uri[len("file://") :]
    return f"{uri}?mode={mode}"


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; Windows has no directory handles)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    """Flush a file's bytes to disk (Windows needs a handle opened for writing)."""
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read into one reused buffer (memory stays flat at any size)."""
    digest = hashlib.sha256()
    buffer = bytearray(HASH_CHUNK_BYTES)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while True:
            count = handle.readinto(buffer)
            if not count:
                break
            digest.update(view[:count])
    return digest.hexdigest()


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _new_temp_file(folder: Path, name: str) -> Path:
    """Create an empty owner-only temporary file; O_EXCL never follows a planted link."""
    temp = folder / format_temp_name(name)
    _LIVE_TEMP_FILES.add(temp)
    try:
        os.close(os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as exc:
        _LIVE_TEMP_FILES.discard(temp)
        raise describe_os_error(exc, folder, "writing a temporary file into") from exc
    return temp


def _remove_temp_file(temp: Path) -> None:
    for leftover in [temp] + [Path(f"{temp}{suffix}") for suffix in ("-journal", "-wal", "-shm")]:
        try:
            os.unlink(leftover)
        except OSError:
            pass
    _LIVE_TEMP_FILES.discard(temp)


@contextlib.contextmanager
def temporary_file(folder: Path, name: str) -> Iterator[Path]:
    """An empty owner-only temporary file in ``folder``, removed when the block ends (with
    SQLite's journals beside it) unless ``publish_file`` gave it a name."""
    temp = _new_temp_file(folder, name)
    try:
        yield temp
    finally:
        _remove_temp_file(temp)


def _name_first_free(
    file: Path, folder: Path, candidates: Iterable[str], *, rename_without_links: bool
) -> Path | None:
    """Give ``file`` the first free name of ``candidates`` in ``folder`` without ever
    replacing a file: as a hard link, or where the file system has none, by renaming it
    (``rename_without_links``) or not at all (None). None too when no name is free."""
    try:
        for candidate in candidates:
            final = folder / candidate
            if os.path.lexists(final):
                continue
            try:
                # A hard link fails if the name exists: no window in which a file is replaced.
                os.link(file, final)
            except FileExistsError:
                continue
            except OSError:
                if not rename_without_links:
                    return None
                # File systems without hard links (FAT, some shares): rename, which on
                # Windows refuses an existing name; on POSIX the run lock guards the check.
                if os.path.lexists(final):
                    continue
                try:
                    os.rename(file, final)
                except FileExistsError:
                    continue
            _fsync_dir(folder)
            return final
    except OSError as exc:
        raise describe_os_error(exc, folder, "naming the new file in") from exc
    return None


def publish_file(temp: Path, folder: Path, candidates: Iterable[str]) -> Path:
    """Move a sealed file to the first free name of ``candidates`` in ``folder``; never
    replace a file."""
    final = _name_first_free(temp, folder, candidates, rename_without_links=True)
    if final is None:
        raise BackupError(text("error.no_free_name", folder=folder, file=temp.name))
    try:
        os.unlink(temp)  # linked: the sealed file keeps only its new name
    except FileNotFoundError:
        pass  # renamed
    except OSError as exc:
        raise describe_os_error(exc, folder, "naming the new file in") from exc
    return final


def add_file_name(existing: Path, folder: Path, candidates: Iterable[str]) -> Path | None:
    """Give ``existing`` one more name, the first free one of ``candidates``, as a hard link;
    None where the file system has no hard links."""
    return _name_first_free(existing, folder, candidates, rename_without_links=False)


def share_file(new: Path, names: Iterable[Path]) -> list[Path]:
    """Make each of ``names`` a hard link to ``new`` (which holds the same bytes), each
    replaced in one atomic rename; return those that now share it. Best effort: a name
    that cannot be re-linked keeps its own file.

    The folder is not fsynced after: until the file system commits on its own, a crash
    leaves a name on its former file, which holds the same bytes (what it held before the
    run). An fsync here would wait for the freeing of the former file: 1.2 s of a 1 GiB
    file's discards on ext4 mounted with ``discard`` (bench/bench_backup.py --parts
    unchanged), more than the copy itself."""
    shared = []
    for name in names:
        link = name.with_name(format_temp_name(name.name))
        try:
            os.link(new, link)
            os.replace(link, name)
            shared.append(name)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(link)
    return shared


# --- SQLite's errors, and its check ---


def check_database_file(path: Path, *, quick: bool = True) -> str:
    """Run quick_check (or integrity_check) on a file opened read-only; return "ok" or the fault.

    Read-only and ``immutable`` so that no -wal, -shm or journal is ever created beside it.
    """
    pragma = "quick_check" if quick else "integrity_check"
    try:
        conn = sqlite3.connect(sqlite_uri(path, "ro") + "&immutable=1", uri=True)
        try:
            rows = conn.execute(f"PRAGMA {pragma}").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    messages = [str(row[0]) for row in rows]
    return "ok" if messages == ["ok"] else "; ".join(messages[:5])


class SqliteProblem(enum.Enum):
    """What an ``sqlite3.Error`` means for the operator; see ``classify_sqlite_error``."""

    BUSY = "busy"  # SQLITE_BUSY, SQLITE_LOCKED: another connection holds a lock
    DAMAGED = "damaged"  # SQLITE_CORRUPT
    NOT_A_DATABASE = "not a database"  # SQLITE_NOTADB (or an encrypted database)
    CANNOT_OPEN = "cannot open"  # SQLITE_CANTOPEN
    READ_ONLY = "read-only"  # SQLITE_READONLY
    FULL = "full"  # SQLITE_FULL
    IO_ERROR = "I/O error"  # SQLITE_IOERR
    OTHER = "other"


# SQLite's primary result codes (https://sqlite.org/rescode.html) and, for Pythons before
# 3.11 that do not expose them, the words of SQLite's messages for the same codes.
_SQLITE_PROBLEM_CODES = {
    5: SqliteProblem.BUSY,
    6: SqliteProblem.BUSY,
    8: SqliteProblem.READ_ONLY,
    10: SqliteProblem.IO_ERROR,
    11: SqliteProblem.DAMAGED,
    13: SqliteProblem.FULL,
    14: SqliteProblem.CANNOT_OPEN,
    26: SqliteProblem.NOT_A_DATABASE,
}


_SQLITE_PROBLEM_WORDS = (
    ("not a database", SqliteProblem.NOT_A_DATABASE),
    ("malformed", SqliteProblem.DAMAGED),
    ("corrupt", SqliteProblem.DAMAGED),
    ("locked", SqliteProblem.BUSY),
    ("busy", SqliteProblem.BUSY),
    ("unable to open", SqliteProblem.CANNOT_OPEN),
    ("readonly", SqliteProblem.READ_ONLY),
    ("read-only", SqliteProblem.READ_ONLY),
    ("disk is full", SqliteProblem.FULL),
    ("disk I/O", SqliteProblem.IO_ERROR),
)


def classify_sqlite_error(exc: BaseException) -> SqliteProblem:
    """The one place that reads an SQLite error: its result code where Python gives it
    (3.11 and later), else the words of its message."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return _SQLITE_PROBLEM_CODES.get(code & 0xFF, SqliteProblem.OTHER)
    text = str(exc)
    return next(
        (kind for words, kind in _SQLITE_PROBLEM_WORDS if words in text), SqliteProblem.OTHER
    )


def _describe_sqlite_error(exc: sqlite3.Error, path: Path) -> BackupError:
    error = str(exc)
    problem = classify_sqlite_error(exc)
    if problem is SqliteProblem.NOT_A_DATABASE:
        return DatabaseDamaged(
            text("error.not_a_database", path=path), hint=text("error.not_a_database_hint")
        )
    if problem is SqliteProblem.DAMAGED:
        return DatabaseDamaged(
            text("error.damaged", path=path, error=error),
            hint=text("error.damaged_hint", path=path),
        )
    if problem is SqliteProblem.CANNOT_OPEN:
        return BackupError(
            text("error.cannot_open", path=path, error=error),
            hint=text("error.cannot_open_hint"),
        )
    if problem is SqliteProblem.READ_ONLY:
        return BackupError(
            text("error.cannot_lock", path=path, error=error),
            hint=text("error.cannot_lock_hint"),
        )
    return BackupError(text("error.sqlite", path=path, error=error))


class _BusyTimeout(Exception):
    pass


class _CopyWriteError(Exception):
    """SQLite failed on the copy's side (the backup folder), not on the source's."""


def _wrap_copy_error(
    exc: BaseException, source: Path, folder: Path, busy_timeout: float
) -> BackupError:
    """The BackupError for a failed snapshot of ``source`` into ``folder``."""
    if isinstance(exc, _BusyTimeout):
        return BackupError(
            text("error.stayed_locked", source=source, seconds=busy_timeout),
            hint=text("error.stayed_locked_hint"),
        )
    cause = exc.__cause__ if isinstance(exc, _CopyWriteError) else exc
    if isinstance(cause, OSError):
        full = cause.errno in (errno.ENOSPC, _EDQUOT)
        reason: str | Text = (
            text("error.disk_full_reason") if full else (cause.strerror or str(cause))
        )
    else:
        reason = str(cause)
        full = classify_sqlite_error(cause) in (SqliteProblem.FULL, SqliteProblem.IO_ERROR)
    if full:
        return BackupError(
            text("error.cannot_write_copy", source=source, folder=folder, reason=reason),
            hint=text("error.copy_needs_space_hint", size=_format_size(_size_or_zero(source))),
        )
    if isinstance(exc, _CopyWriteError):
        return BackupError(
            text("error.cannot_write_copy", source=source, folder=folder, reason=reason),
            hint=text("error.check_folder_hint"),
        )
    if isinstance(exc, sqlite3.Error):
        return _describe_sqlite_error(exc, source)
    assert isinstance(exc, OSError)
    return describe_os_error(exc, folder, "writing a copy into")


# --- Hash behind the copy ---


@functools.cache
def _writeback_call() -> Callable[[int, int, int], None] | None:
    """Linux's sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE), or None elsewhere.

    It starts writing a range to disk and returns at once, as PostgreSQL and RocksDB do
    while writing large files: the disk works during the copy instead of all at the
    fsync. Durability still comes from that fsync.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        function = ctypes.CDLL(None, use_errno=True).sync_file_range
        function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    except (ImportError, OSError, AttributeError):
        return None

    def call(fd: int, offset: int, length: int) -> None:
        function(fd, offset, length, 2)  # SYNC_FILE_RANGE_WRITE; a hint: no errors

    return call


class _TrailingHash:
    """SHA-256 of a file, computed in a thread that reads the file back behind its writer.

    The copy runs at memory speed and SHA-256 at about 1.3 GB/s; hashing behind the
    writer overlaps the two on a second core, and what is hashed is the file as it
    was written, read back, exactly as ``sha256_file`` would read it afterwards.
    On Linux the thread also asks the OS to start writing each hashed stretch to disk,
    so the final fsync finds little left; if the disk is slow, that waits here, never
    in the copy, which may be holding the source's lock.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._changed = threading.Condition()
        self._written = 0
        self._finished = False
        self._cancelled = False
        self._digest: str | None = None
        self._hashed = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def advance(self, written: int) -> None:
        """The writer has written the first ``written`` bytes."""
        with self._changed:
            self._written = written
            self._changed.notify()

    def finish(self) -> None:
        """The file is complete: hash it to its end."""
        with self._changed:
            self._finished = True
            self._changed.notify()

    def cancel(self) -> None:
        """Stop hashing and close the file (Windows cannot delete a file open elsewhere)."""
        with self._changed:
            self._cancelled = True
            self._changed.notify()
        self._thread.join()

    def result(self) -> str:
        """The finished file's SHA-256; read afresh where the trailing read could not keep up.

        A handle opened on the empty file may not see another handle's writes on some
        file systems (fusefat fails the read; a stale size would end it early), so a
        failed read, or one that stopped short of the file's size, is not trusted.
        """
        self._thread.join()
        if self._error is not None and not isinstance(self._error, OSError):
            raise self._error
        if self._cancelled:
            raise OSError(f"hashing {self.path} was cancelled")
        if self._digest is None or self._hashed != os.stat(self.path).st_size:
            return sha256_file(self.path)
        return self._digest

    def _run(self) -> None:
        digest = hashlib.sha256()
        buffer = bytearray(HASH_CHUNK_BYTES)
        view = memoryview(buffer)
        start_writeback = _writeback_call()
        try:
            with open(self.path, "rb", buffering=0) as handle:
                position = queued = 0
                while True:
                    with self._changed:
                        while not (
                            self._cancelled
                            or self._finished
                            or self._written - position >= HASH_CHUNK_BYTES
                        ):
                            self._changed.wait()
                        if self._cancelled:
                            return
                        # Once the file is finished, read on to its end, whatever was reported.
                        limit = None if self._finished else self._written
                    while limit is None or position < limit:
                        wanted = HASH_CHUNK_BYTES if limit is None else limit - position
                        count = handle.readinto(view[: min(HASH_CHUNK_BYTES, wanted)])
                        if not count:
                            break
                        digest.update(view[:count])
                        position += count
                        if start_writeback is not None and position - queued >= WRITEBACK_BYTES:
                            start_writeback(handle.fileno(), queued, position - queued)
                            queued = position
                    if limit is None:
                        break
            self._digest = digest.hexdigest()
            self._hashed = position
        except BaseException as exc:  # noqa: BLE001 - handed to the thread that asks for result()
            self._error = exc


# --- Direct copy ---


class _SnapshotUnavailable(Exception):
    """This database cannot be copied by reading its files; SQLite's backup API copies it."""


def _files_open_elsewhere(own: set[int]) -> set[tuple[int, int]] | None:
    """(device, inode) of every file this process has open outside the descriptors ``own``.

    None where the process's descriptors cannot be listed (no /proc or /dev/fd); the
    handles are then closed, which is safe in this script's own process.
    """
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        found = set()
        for name in names:
            if not name.isdigit() or int(name) in own:
                continue
            try:
                info = os.fstat(int(name))
            except OSError:
                continue  # the listing's own descriptor, closed by now
            found.add((info.st_dev, info.st_ino))
        return found
    return None


class _SourceFiles:
    """Read-only handles on a database's file, WAL and WAL index, opened when first read.

    Close them only after SQLite's connection is closed: on POSIX, closing a handle
    would drop that connection's locks.
    """

    def __init__(self, database: Path) -> None:
        # Resolved as in sqlite_uri: SQLite keeps a linked database's -wal beside the target.
        self.database = database.resolve()
        self._handles: dict[str, Any] = {}

    def read(self, suffix: str, offset: int, view: memoryview) -> int:
        """Fill ``view`` from ``offset`` of ``<database><suffix>``; short only at the file's end."""
        try:
            handle = self._handles.get(suffix)
            if handle is None:
                handle = open(f"{self.database}{suffix}", "rb", buffering=0)  # noqa: SIM115
                self._handles[suffix] = handle
            handle.seek(offset)
            done = 0
            while done < len(view):
                count = handle.readinto(view[done:])
                if not count:
                    break
                done += count
            return done
        except OSError as exc:
            raise _SnapshotUnavailable(f"cannot read {self.database}{suffix}: {exc}") from exc

    def read_bytes(self, suffix: str, offset: int, size: int) -> bytes:
        buffer = bytearray(size)
        return bytes(buffer[: self.read(suffix, offset, memoryview(buffer))])

    def close(self) -> None:
        """Close the handles, and those parked earlier, unless that would drop a lock."""
        handles = [*self._handles.values(), *_PARKED_HANDLES]
        self._handles.clear()
        _PARKED_HANDLES.clear()
        elsewhere = None
        if os.name == "posix" and handles:
            elsewhere = _files_open_elsewhere({handle.fileno() for handle in handles})
        for handle in handles:
            if os.name == "posix":
                info = os.fstat(handle.fileno())
                if elsewhere is not None and (info.st_dev, info.st_ino) in elsewhere:
                    _PARKED_HANDLES.append(handle)
                    continue
            handle.close()


@dataclasses.dataclass(frozen=True)
class _WalSnapshot:
    """The WAL frames of one committed state: the newest frame of each page, up to a commit."""

    page_count: int  # the database's size in pages at that commit; 0: the WAL is empty
    salts: bytes  # the WAL header's salts, which change whenever the WAL starts over
    frames: dict[int, int]  # page number -> frame number (from 1)


def _wal_checksum(data: bytes) -> tuple[int, int]:
    """SQLite's WAL checksum over ``data`` read as native-order 32-bit words."""
    first = second = 0
    words = struct.unpack(f"={len(data) // 4}I", data)
    for index in range(0, len(words), 2):
        first = (first + words[index] + second) & 0xFFFFFFFF
        second = (second + words[index + 1] + first) & 0xFFFFFFFF
    return first, second


def _read_wal_snapshot(files: _SourceFiles, page_size: int) -> _WalSnapshot | None:
    """The newest commit that the WAL index announces, with its page map; None to try again.

    Read while the caller holds a read transaction: SQLite then never overwrites the
    frames up to that commit, and a checkpoint copies into the database file only
    pages that are in them, so the database file overlaid with these frames is that
    commit exactly. The index header is SQLite's own word on where the WAL's valid,
    committed frames end (it checks their checksums when it rebuilds the index).
    """
    header = files.read_bytes("-shm", 0, 2 * _WAL_INDEX_HEADER.size)
    if len(header) < 2 * _WAL_INDEX_HEADER.size:
        raise _SnapshotUnavailable("the WAL index is missing or short")
    first, second = header[: _WAL_INDEX_HEADER.size], header[_WAL_INDEX_HEADER.size :]
    if first != second:
        return None  # a writer is updating it
    fields = _WAL_INDEX_HEADER.unpack(first)
    version, is_init, size_code, max_frame, page_count, salts = (
        fields[0], fields[3], fields[5], fields[6], fields[7], fields[10]
    )  # fmt: skip
    if version != _WAL_INDEX_VERSION or not is_init:
        raise _SnapshotUnavailable("the WAL index has a format this tool does not know")
    if _wal_checksum(first[:40]) != fields[11:13]:
        return None
    if max_frame == 0:
        return _WalSnapshot(0, salts, {})
    if (size_code & 0xFE00) + ((size_code & 1) << 16) != page_size:
        raise _SnapshotUnavailable("the WAL index disagrees with the database's page size")
    if max_frame > WAL_MAP_MAX_FRAMES:
        raise _SnapshotUnavailable(f"the WAL holds {max_frame} frames")
    wal_header = files.read_bytes("-wal", 0, _WAL_HEADER_BYTES)
    if len(wal_header) < _WAL_HEADER_BYTES or wal_header[16:24] != salts:
        return None  # the WAL started over since the index was read
    if int.from_bytes(wal_header[:4], "big") not in _WAL_MAGIC:
        raise _SnapshotUnavailable("the WAL has a format this tool does not know")
    frame_size = page_size + _WAL_FRAME_HEADER_BYTES
    per_read = max(1, COPY_CHUNK_BYTES // frame_size)
    frames: dict[int, int] = {}
    last_header = b""
    for start in range(1, max_frame + 1, per_read):
        count = min(per_read, max_frame + 1 - start)
        block = files.read_bytes("-wal", _WAL_HEADER_BYTES + (start - 1) * frame_size,
                                 count * frame_size)  # fmt: skip
        if len(block) < count * frame_size:
            return None  # the WAL was truncated since its header was read
        for index in range(count):
            last_header = block[index * frame_size : index * frame_size + _WAL_FRAME_HEADER_BYTES]
            if last_header[8:16] != salts:
                return None
            frames[int.from_bytes(last_header[:4], "big")] = start + index
    if int.from_bytes(last_header[4:8], "big") != page_count:
        return None  # the announced last frame must be the commit that sets this size
    return _WalSnapshot(page_count, salts, frames)


def _copy_pages(
    files: _SourceFiles,
    out: Any,
    *,
    page_size: int,
    page_count: int,
    wal: _WalSnapshot | None,
    on_written: Callable[[int], None],
) -> None:
    """Write pages 1 to ``page_count`` of the snapshot into ``out``, as one rollback-journal file.

    Each page comes from its newest WAL frame of the snapshot, or else from the
    database file; the lock-byte page is written as zeros, as SQLite's backup API does.
    """
    lock_page = _PENDING_BYTE // page_size + 1
    frames = wal.frames if wal else {}
    wal_pages = sorted(page for page in frames if page <= page_count)
    frame_size = page_size + _WAL_FRAME_HEADER_BYTES
    per_chunk = max(1, COPY_CHUNK_BYTES // page_size)
    buffer = bytearray(per_chunk * page_size)
    view = memoryview(buffer)
    next_wal = written = 0
    for first in range(1, page_count + 1, per_chunk):
        count = min(per_chunk, page_count + 1 - first)
        chunk = view[: count * page_size]
        # Read around the lock-byte page, never into it.
        runs = [(first, count)]
        if first <= lock_page < first + count:
            runs = [(first, lock_page - first), (lock_page + 1, first + count - lock_page - 1)]
            chunk[(lock_page - first) * page_size : (lock_page - first + 1) * page_size] = bytes(
                page_size
            )
        for run_first, run_count in runs:
            at = (run_first - first) * page_size
            got = files.read(
                "", (run_first - 1) * page_size, chunk[at : at + run_count * page_size]
            )
            # A short read is fine only where the WAL holds the rest (checkpoints grow the file).
            for page in range(run_first + got // page_size, run_first + run_count):
                if page not in frames:
                    raise _SnapshotUnavailable(f"page {page} is in neither the file nor the WAL")
        while next_wal < len(wal_pages) and wal_pages[next_wal] < first + count:
            page = wal_pages[next_wal]
            at = (page - first) * page_size
            offset = _WAL_HEADER_BYTES + (frames[page] - 1) * frame_size + _WAL_FRAME_HEADER_BYTES
            if files.read("-wal", offset, chunk[at : at + page_size]) < page_size:
                raise _SnapshotUnavailable("the WAL was truncated during the copy")
            next_wal += 1
        if first == 1:
            if bytes(chunk[:16]) != _SQLITE_HEADER:
                raise _SnapshotUnavailable("the first page has no SQLite header")
            # A self-contained copy: rollback-journal format (bytes 18-19), and a page count
            # that SQLite trusts (bytes 28-31, valid while bytes 92-95 equal bytes 24-27).
            chunk[18:20] = b"\x01\x01"
            chunk[28:32] = page_count.to_bytes(4, "big")
            chunk[92:96] = chunk[24:28]
        done = 0
        try:
            while done < len(chunk):
                done += out.write(chunk[done:])
        except OSError as exc:
            raise _CopyWriteError(exc) from exc
        written += done
        on_written(written)


def _copy_in_read_transaction(
    src: sqlite3.Connection,
    files: _SourceFiles,
    out: Any,
    on_written: Callable[[int], None],
    busy_timeout: float = DEFAULTS["busy_timeout"],
) -> bool:
    """One attempt of the direct copy; False when the WAL started over during it."""
    src.execute("BEGIN")
    try:
        # Reading the schema takes the read lock (and rolls back a crashed writer's journal).
        deadline = time.monotonic() + busy_timeout
        while True:
            try:
                src.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
                break
            except sqlite3.OperationalError as exc:
                if classify_sqlite_error(exc) is not SqliteProblem.BUSY:
                    raise
                if time.monotonic() >= deadline:
                    raise _BusyTimeout from exc
            # Waiting here, between SQLite's short waits, lets Ctrl+C be handled at once.
            time.sleep(0.05)
        page_size = src.execute("PRAGMA page_size").fetchone()[0]
        wal = None
        if str(src.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
            for _ in range(100):
                wal = _read_wal_snapshot(files, page_size)
                if wal is not None:
                    break
                time.sleep(0.001)
            else:
                raise _SnapshotUnavailable("the WAL index kept changing")
        page_count = wal.page_count if wal and wal.page_count else None
        if page_count is None:
            page_count = src.execute("PRAGMA page_count").fetchone()[0]
        if page_count == 0:
            raise _SnapshotUnavailable("the database is empty")
        _copy_pages(
            files, out, page_size=page_size, page_count=page_count, wal=wal, on_written=on_written
        )
        # Frames are never rewritten until the WAL starts over, which gives it new salts.
        return wal is None or not wal.frames or files.read_bytes("-wal", 16, 8) == wal.salts
    finally:
        if src.in_transaction:
            src.execute("COMMIT")


def _snapshot_files(
    src: sqlite3.Connection,
    files: _SourceFiles,
    temp: Path,
    busy_timeout: float = DEFAULTS["busy_timeout"],
) -> _TrailingHash | None:
    """Copy the database open on ``src`` into ``temp`` by reading its files under a read lock.

    The fast path of a backup: the read transaction pins one committed state (a
    rollback-journal database cannot be written while it is held; a WAL database's
    checkpoints cannot pass it), the pages are copied at memory speed, and SHA-256
    runs behind the writer. Returns the running hash, or None (``temp`` left empty)
    when this database needs SQLite's backup API: an empty or odd file, a WAL index
    that cannot be read or kept changing, a very long WAL.
    """
    for _attempt in range(3):
        hashing = _TrailingHash(temp)
        try:
            with open(temp, "r+b", buffering=0) as out:
                if _attempt:
                    # Not on an empty file: ext4 flushes a file truncated to zero when closed.
                    out.truncate(0)
                if _copy_in_read_transaction(src, files, out, hashing.advance, busy_timeout):
                    hashing.finish()
                    return hashing
        except _SnapshotUnavailable:
            hashing.cancel()
            break
        except BaseException:
            hashing.cancel()
            raise
        hashing.cancel()
    with open(temp, "r+b") as out:
        out.truncate(0)
    return None


# --- SQLite's backup API ---


class _CopyWatcher:
    """Watches a copy's temporary file grow: shows progress, and with ``flush`` fsyncs it.

    Flushing while SQLite is still writing overlaps the disk's work with the copy, so
    the fsync after verification finds little left to write. Not beside the direct
    copy: an fsync there slows it to the disk's pace while a rollback-journal source
    is locked (on Linux, the hash read behind it starts writeback instead). Progress is
    shown only on a terminal, for large databases.
    """

    FLUSH_EVERY_BYTES = 64 * 1024 * 1024

    def __init__(
        self, label: str, temp: Path, total: int, stream: TextIO | None, *, flush: bool
    ) -> None:
        self.label, self.temp, self.total = label, temp, total
        self.stream = stream if total >= PROGRESS_MIN_BYTES else None
        self.flush = flush and total >= self.FLUSH_EVERY_BYTES
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _CopyWatcher:
        if self.flush or self.stream is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        try:
            fd = os.open(self.temp, os.O_RDWR | getattr(os, "O_BINARY", 0))
        except OSError:
            return
        flushed = 0
        try:
            while not self._stop.wait(0.2):
                done = os.fstat(fd).st_size
                if self.flush and done - flushed >= self.FLUSH_EVERY_BYTES:
                    os.fsync(fd)
                    flushed = done
                if self.stream is not None:
                    percent = min(99, done * 100 // max(self.total, 1))
                    _write_quietly(self.stream, f"\r  copying {self.label}: {percent:3d}%")
        except OSError:
            pass  # the final fsync in _seal reports real write errors
        finally:
            os.close(fd)

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        if self.stream is not None:
            _write_quietly(self.stream, "\r" + " " * (len(self.label) + 20) + "\r")


def _snapshot(src: sqlite3.Connection, temp: Path, busy_timeout: float) -> None:
    """Copy the database open on ``src`` into the empty file ``temp`` with SQLite's backup API.

    The copy a restore makes, and a backup's where ``_snapshot_files`` cannot read the
    files directly. One step (pages=-1) copies a consistent snapshot; chunked steps
    restart for ever while the app writes. The destination skips its journal and sync
    (it is a temporary file, fsynced as a whole later), which halves the copy time and
    so the time a rollback-journal source is locked against the app's writers.
    """
    started = time.monotonic()

    def give_up_when_busy(status: int, remaining: int, total: int) -> None:
        # Python's backup loop retries a busy source for ever; bound it.
        if status in (SQLITE_BUSY, SQLITE_LOCKED):
            if time.monotonic() - started >= busy_timeout:
                raise _BusyTimeout

    try:
        dst = sqlite3.connect(str(temp), isolation_level=None)
        dst.execute("PRAGMA journal_mode=OFF")
        dst.execute("PRAGMA synchronous=OFF")
    except sqlite3.Error as exc:
        raise _CopyWriteError(exc) from exc
    try:
        src.backup(dst, pages=-1, progress=give_up_when_busy)
        try:
            # A copy of a WAL database is a WAL database; make it one self-contained file.
            # In exclusive locking mode (set now: during the copy it slows it by half) the
            # WAL index stays in memory and no -shm is made, which file systems without
            # shared mmap (FUSE, network shares) could not provide.
            dst.execute("PRAGMA locking_mode=EXCLUSIVE")
            dst.execute("PRAGMA journal_mode=DELETE")
        except sqlite3.Error as exc:
            raise _CopyWriteError(exc) from exc
    finally:
        dst.close()


# --- Sealed copy: the one pipeline ---


@dataclasses.dataclass(frozen=True)
class SealedCopy:
    """A temporary copy of one database: complete, passed quick_check, fsynced, hashed.

    It lives as long as its ``sealed_copy`` block, unless ``publish_file`` names it.
    """

    path: Path
    size: int
    sha256: str
    method: str  # "direct" (from the database's files) or "backup API" (SQLite's)


def _seal(temp: Path, what: str, hashing: _TrailingHash | None = None) -> tuple[int, str]:
    """Verify a finished copy with quick_check while hashing and fsyncing it: (size, sha256).

    The three run in parallel: SQLite, hashlib and fsync all release the GIL. A hash
    already running behind the copy (``hashing``) is waited for instead of started.
    """
    from concurrent.futures import ThreadPoolExecutor

    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            checked = pool.submit(check_database_file, temp)
            if hashing is not None:
                hashed = pool.submit(hashing.result)
            else:
                hashed = pool.submit(sha256_file, temp)
            synced = pool.submit(_fsync_file, temp)
            verdict, digest = checked.result(), hashed.result()
            synced.result()
        size = temp.stat().st_size
    except OSError as exc:
        raise describe_os_error(exc, temp, "verifying") from exc
    if verdict != "ok":
        raise VerificationFailed(
            text("error.copy_failed_check", what=what, verdict=verdict),
            hint=text("error.copy_failed_check_hint", what=what),
        )
    return size, digest


def _copy_live_database(
    source: Path, temp: Path, label: str, busy_timeout: float, progress_stream: TextIO | None
) -> _TrailingHash | None:
    """Copy a live database into ``temp``: directly (returning the hash running behind the
    copy), else through SQLite's backup API (None). Owns the connection and file handles."""
    total = _size_or_zero(source)
    # SQLite's own wait is kept short; the copy loops in Python up to busy_timeout.
    src = sqlite3.connect(
        sqlite_uri(source, "rw"),
        uri=True,
        timeout=min(busy_timeout, SQLITE_WAIT_SLICE_S),
        isolation_level=None,
    )
    files = _SourceFiles(source)
    try:
        with _CopyWatcher(label, temp, total, progress_stream, flush=False):
            hashing = _snapshot_files(src, files, temp, busy_timeout)
        if hashing is None:
            with _CopyWatcher(label, temp, total, progress_stream, flush=True):
                _snapshot(src, temp, busy_timeout)
        return hashing
    finally:
        if os.name == "nt":
            files.close()  # before SQLite's close, which may delete the -wal we hold
        src.close()
        files.close()


@contextlib.contextmanager
def sealed_copy(
    source: Path,
    folder: Path,
    *,
    name: str,
    busy_timeout: float = DEFAULTS["busy_timeout"],
    connection: sqlite3.Connection | None = None,
    progress_stream: TextIO | None = None,
) -> Iterator[SealedCopy]:
    """Copy one database into a new temporary file in ``folder`` and seal it: the one
    pipeline behind backups, safety copies and restores.

    Without ``connection``, ``source`` is a live database that this opens itself and
    copies directly from its files under a read transaction (through SQLite's backup API
    where that cannot be done), hashing the copy as it is written. With ``connection``
    (one the caller holds on ``source``, e.g. under an exclusive lock, or on a backup
    opened read-only), the copy goes through that connection and SQLite's backup API.
    Either way the copy is checked with quick_check, hashed and fsynced; every failure is
    a BackupError naming ``source`` (VerificationFailed when the check fails), and the
    temporary file is gone when the block ends unless it was published.
    """
    hashing: _TrailingHash | None = None
    with temporary_file(folder, name) as temp:
        try:
            try:
                if connection is None:
                    hashing = _copy_live_database(source, temp, name, busy_timeout, progress_stream)
                else:
                    total = _size_or_zero(source)
                    with _CopyWatcher(name, temp, total, progress_stream, flush=True):
                        _snapshot(connection, temp, busy_timeout)
            except (_BusyTimeout, _CopyWriteError, sqlite3.Error, OSError) as exc:
                raise _wrap_copy_error(exc, source, folder, busy_timeout) from exc
            size, digest = _seal(temp, str(source), hashing)
            method = "backup API" if hashing is None else "direct"
            yield SealedCopy(temp, size, digest, method)
        finally:
            if hashing is not None:
                hashing.cancel()


# --- Compression ---


def _zstandard() -> Any:
    try:
        import zstandard
    except ImportError:
        raise _usage_error(
            text("compress.needs_zstandard"),
            text("compress.needs_zstandard_hint", install=install_hint("zstandard")),
        ) from None
    return zstandard


def _compress_file(src: Path, dst: Path, compression: str) -> None:
    """Stream ``src`` into ``dst`` compressed, in fixed-size chunks, and fsync it."""
    import gzip

    with open(src, "rb") as plain, open(dst, "wb") as packed:
        if compression == "gzip":
            # mtime=0: the same database always packs to the same bytes.
            with gzip.GzipFile("", "wb", GZIP_LEVEL, packed, mtime=0) as stream:
                shutil.copyfileobj(plain, stream, HASH_CHUNK_BYTES)
        else:
            compressor = _zstandard().ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True)
            compressor.copy_stream(
                plain,
                packed,
                size=os.fstat(plain.fileno()).st_size,
                read_size=HASH_CHUNK_BYTES,
                write_size=HASH_CHUNK_BYTES,
            )
        packed.flush()
        os.fsync(packed.fileno())


def _decompress_file(src: Path, dst: Path, compression: str) -> str:
    """Unpack ``src`` into ``dst``; return the SHA-256 of the unpacked bytes.

    A truncated stream is an error: zstandard's readers and gzip on an empty file
    would quietly return what they got.
    """
    import gzip

    digest = hashlib.sha256()
    with open(src, "rb") as packed, open(dst, "wb") as plain:
        if compression == "gzip":
            if os.fstat(packed.fileno()).st_size == 0:
                raise BackupError(text("compress.empty", path=src))
            with gzip.GzipFile(fileobj=packed, mode="rb") as stream:
                for chunk in iter(lambda: stream.read(HASH_CHUNK_BYTES), b""):
                    digest.update(chunk)
                    plain.write(chunk)
        else:
            unpacker = _zstandard().ZstdDecompressor().decompressobj()
            for chunk in iter(lambda: packed.read(HASH_CHUNK_BYTES), b""):
                data = unpacker.decompress(chunk)
                digest.update(data)
                plain.write(data)
            if not unpacker.eof:
                raise BackupError(text("compress.truncated", path=src))
    return digest.hexdigest()


@contextlib.contextmanager
def unpacked_backup(path: Path, compression: str | None) -> Iterator[tuple[Path, str | None]]:
    """Yield (plain SQLite file, SHA-256 of its bytes or None); a packed backup is unpacked
    into a temporary file beside it, removed afterwards."""
    if not compression:
        yield path, None
        return
    with temporary_file(path.parent, "unpacked") as temp:
        try:
            digest = _decompress_file(path, temp, compression)
        except BackupError:
            raise
        except Exception as exc:  # gzip, zlib and zstandard each raise their own
            raise BackupError(text("compress.cannot_unpack", path=path, error=exc)) from exc
        yield temp, digest


# --- create_backup ---


def check_backup_file(path: Path, compression: str | None, *, quick: bool = True) -> str | Text:
    """quick_check (or integrity_check) of a backup, unpacked where it is packed: "ok" or
    the fault. Raises BackupError where a packed backup cannot be unpacked. An archive is
    read back against its manifest."""
    if compression == ARCHIVE_KIND:
        return check_archive_file(path)
    with unpacked_backup(path, compression) as (plain, _):
        with open(plain, "rb") as handle:
            # SQLite takes an empty file for an empty database; no backup is empty.
            if handle.read(16) != _SQLITE_HEADER:
                return text("verify.not_sqlite_start")
        return check_database_file(plain, quick=quick)


@dataclasses.dataclass(frozen=True)
class PreviousBackup:
    """The newest earlier backup of a database, as the run log recorded it, and every name
    in the backup folder that shares its file (hard links of unchanged nights)."""

    path: Path
    sha256: str
    content_sha256: str
    compression: str | None
    names: tuple[Path, ...] = ()


@dataclasses.dataclass(frozen=True)
class MadeBackup:
    """A backup just made: where, how big on disk, its checksums, and what it links to."""

    path: Path
    size: int
    sha256: str
    content_sha256: str
    compression: str | None = None
    linked_to: Path | None = None


def create_backup(
    db: DatabaseSpec,
    backup_dir: Path,
    *,
    taken_at: dt.datetime,
    busy_timeout: float = DEFAULTS["busy_timeout"],
    progress_stream: TextIO | None = None,
    compression: str | None = None,
    previous: PreviousBackup | None = None,
) -> MadeBackup:
    """Back up one database: a sealed copy, given its backup name without replacing a file.

    A crash at any moment leaves no file with a backup's name that is not a complete,
    verified backup. When the database is unchanged since ``previous`` (the same SHA-256),
    the older names that shared the previous file are re-linked to the fresh copy: one
    copy on disk, and a previous file that rotted is healed, never linked to unread. A
    compressed backup of an unchanged database gains a link to the previous packed file
    once that file is read and found intact (cheaper than packing again).
    """
    source = db.path
    if source.is_dir():
        raise BackupError(
            text("error.source_is_folder", source=source),
            hint=text("restore.target_folder_hint"),
        )
    if not source.exists():
        raise BackupError(
            text("error.database_missing", path=source),
            hint=text("error.database_missing_hint"),
        )

    def names() -> Iterator[str]:
        first = next_counter(backup_dir, db.name, taken_at)
        return (format_backup_name(db.name, taken_at, n, compression) for n in range(first, 10000))

    with sealed_copy(
        source,
        backup_dir,
        name=db.name,
        busy_timeout=busy_timeout,
        progress_stream=progress_stream,
    ) as copy:
        unchanged = (
            previous is not None
            and previous.content_sha256 == copy.sha256
            and previous.compression == compression
        )
        if not compression:
            final = publish_file(copy.path, backup_dir, names())
            if unchanged and previous is not None and share_file(final, previous.names):
                return MadeBackup(final, copy.size, copy.sha256, copy.sha256, None, previous.path)
            return MadeBackup(final, copy.size, copy.sha256, copy.sha256)
        if unchanged and previous is not None and _intact(previous):
            linked = add_file_name(previous.path, backup_dir, names())
            if linked is not None:
                size = linked.stat().st_size
                return MadeBackup(
                    linked, size, previous.sha256, copy.sha256, compression, previous.path
                )
        with temporary_file(backup_dir, db.name) as packed:
            try:
                _compress_file(copy.path, packed, compression)
                with unpacked_backup(packed, compression) as (_, unpacked_sha):
                    pass
            except OSError as exc:
                raise describe_os_error(exc, packed, "compressing") from exc
            except BackupError:
                raise
            except Exception as exc:  # zlib.error, zstandard.ZstdError
                raise BackupError(text("compress.failed", source=source, error=exc)) from exc
            if unpacked_sha != copy.sha256:
                raise BackupError(text("compress.differs", source=source))
            size, packed_sha = packed.stat().st_size, sha256_file(packed)
            final = publish_file(packed, backup_dir, names())
            return MadeBackup(final, size, packed_sha, copy.sha256, compression)


def _intact(previous: PreviousBackup) -> bool:
    """True when the previous backup is still a regular file with its recorded SHA-256."""
    try:
        if not stat.S_ISREG(os.lstat(previous.path).st_mode):
            return False
        return sha256_file(previous.path) == previous.sha256
    except OSError:
        return False


# ======================================================================================
# Retention
# ======================================================================================


def select_expired(
    backups: Sequence[BackupFile],
    *,
    now: dt.datetime,
    keep_days: int,
    keep_last: int,
    keep_daily: int = 0,
    keep_weekly: int = 0,
    keep_monthly: int = 0,
) -> list[BackupFile]:
    """Select the backups to delete; a backup survives if any rule keeps it.

    Rules: the newest ``keep_last`` (at least one, so retention never prunes into
    nothing); every backup younger than ``keep_days`` by the time in its name
    (``now`` is naive local time, as in names; a backup dated in the future is
    kept); and, as restic and borg do, the newest backup of each of the last
    ``keep_daily`` days, ``keep_weekly`` ISO weeks and ``keep_monthly`` months that
    have backups.
    """
    ordered = sorted(backups, key=lambda b: b.sort_key, reverse=True)
    keep = set(range(min(max(keep_last, 1), len(ordered))))
    cutoff = now - dt.timedelta(days=keep_days)
    keep.update(i for i, b in enumerate(ordered) if b.taken_at >= cutoff)
    periods: list[tuple[int, Callable[[dt.datetime], object]]] = [
        (keep_daily, lambda t: t.date()),
        (keep_weekly, lambda t: tuple(t.isocalendar())[:2]),
        (keep_monthly, lambda t: (t.year, t.month)),
    ]
    for count, period_of in periods:
        seen: set[object] = set()
        for index, backup in enumerate(ordered):
            period = period_of(backup.taken_at)
            if period in seen:
                continue
            if len(seen) == count:
                break
            seen.add(period)
            keep.add(index)
    return [b for i, b in enumerate(ordered) if i not in keep]


def prune_beside(
    new: str, existing: Sequence[BackupFile], *, now: dt.datetime, **rules: int
) -> tuple[list[BackupFile], list[Path], list[Text]]:
    """Prune by ``rules`` the files of one name now that ``new`` (a backup or archive just
    made) joins ``existing``; never ``new`` itself, whatever the clock says of other names.
    Returns (the files left, newest first; those deleted; the errors)."""
    made = _backup_file(Path(new))
    files = [*existing, *([made] if made else [])]
    expired = select_expired(files, now=now, **rules)
    deleted, errors = prune_backups([b for b in expired if str(b.path) != new])
    left = (b for b in files if b.path not in deleted)
    return sorted(left, key=lambda b: b.sort_key, reverse=True), deleted, errors


def prune_backups(expired: Sequence[BackupFile]) -> tuple[list[Path], list[Text]]:
    """Delete the selected backups; return (deleted, error messages). Links are never followed."""
    deleted: list[Path] = []
    errors: list[Text] = []
    for backup in expired:
        try:
            if not stat.S_ISREG(os.lstat(backup.path).st_mode):
                continue
            os.unlink(backup.path)
            deleted.append(backup.path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            errors.append(text("prune.cannot_delete", path=backup.path, error=exc.strerror or exc))
    return deleted, errors


# ======================================================================================
# Archives of the instance folder
# ======================================================================================

# An archive is a ZIP that Windows Explorer and every unzip read: UTF-8 names flagged as
# such, ZIP64 past 4 GB, and a manifest as its last member. Its databases are sealed copies
# (consistent, checked), never the live files with their -wal beside them.

ARCHIVE_MANIFEST = "database_backup_manifest.json"
ARCHIVE_FORMAT = 1
_MEMBER_KINDS = ("file", "database", "link", "folder")
# Members whose bytes are compressed already: stored, as deflating them again gains nothing.
STORED_SUFFIXES = frozenset(
    ".jpg .jpeg .png .webp .gif .avif .heic .heif .mp4 .m4v .mov .mkv .webm .avi .mp3 .m4a "
    ".aac .ogg .opus .flac .zip .gz .tgz .bz2 .xz .zst .7z .rar .br .age .woff2 "
    ".docx .xlsx .pptx .odt .ods .jar".split()
)
_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


@dataclasses.dataclass(frozen=True)
class ArchiveMember:
    """One entry of an archive, as its manifest lists it."""

    path: str  # relative, with "/"; a folder's ends in "/"
    kind: str  # "file", "database" (a sealed copy), "link" or "folder"
    size: int = 0
    mtime_ns: int = 0
    sha256: str | None = None
    target: str | None = None  # a link's

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"path": self.path, "kind": self.kind}
        if self.kind in ("file", "database"):
            data.update(size=self.size, mtime_ns=self.mtime_ns, sha256=self.sha256)
        elif self.kind == "link":
            data["target"] = self.target
        else:
            data["mtime_ns"] = self.mtime_ns
        return data


@dataclasses.dataclass(frozen=True)
class _Found:
    """A folder entry to archive, as the walk found it."""

    path: Path
    name: str  # the member's name
    kind: str
    size: int
    mtime_ns: int
    mode: int


@dataclasses.dataclass(frozen=True)
class MadeArchive:
    path: Path
    size: int
    sha256: str
    members: int
    databases: tuple[str, ...]
    # Not fatal, reported: read while they changed (the archive holds what was read), gone
    # before they were read, or not readable by this user (both left out).
    changed: tuple[str, ...] = ()
    vanished: tuple[str, ...] = ()
    unreadable: tuple[str, ...] = ()


class _ArchiveFault(Exception):
    """What is wrong with an archive: ``args[0]`` is a Text."""


def _is_link(info: os.stat_result) -> bool:
    """A symbolic link, or on Windows any reparse point (a junction): never followed."""
    reparse = getattr(stat, "FILE_ATTRIBUTE_REPARSE_POINT", 0)
    return stat.S_ISLNK(info.st_mode) or bool(getattr(info, "st_file_attributes", 0) & reparse)


def _excluded(relative: str, name: str, patterns: Sequence[str]) -> bool:
    import fnmatch

    return any(fnmatch.fnmatch(relative, p) or fnmatch.fnmatch(name, p) for p in patterns)


def _walk_for_archive(
    source: Path, backup_dir: Path, databases: Iterable[Path], exclude: Sequence[str]
) -> list[_Found]:
    """What an archive of ``source`` holds, in a stable order: every entry but the backup
    folder, temporary files, the excluded, and the -wal, -shm and -journal of databases."""
    skip = _path_key(backup_dir)
    configured = {_path_key(p) for p in databases}
    found: list[_Found] = []
    folders = [(source, "")]
    while folders:
        folder, prefix = folders.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise describe_os_error(exc, folder, "listing") from exc
        names_here = {e.name for e in entries}
        inner = []
        for entry in entries:
            relative = prefix + entry.name
            if _path_key(entry.path) == skip or is_temp_name(entry.name):
                continue
            if _excluded(relative, entry.name, exclude):
                continue
            try:
                info = entry.stat(follow_symlinks=False)  # the listing's own, where it has one
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise describe_os_error(exc, entry.path, "listing") from exc
            path, mode, mtime = Path(entry.path), info.st_mode, info.st_mtime_ns
            if _is_link(info):
                found.append(_Found(path, relative, "link", 0, mtime, mode))
            elif stat.S_ISDIR(info.st_mode):
                found.append(_Found(path, relative + "/", "folder", 0, mtime, mode))
                inner.append((path, relative + "/"))
            elif stat.S_ISREG(info.st_mode):
                side = next((s for s in _SQLITE_SIDE_FILES if entry.name.endswith(s)), None)
                main = path.with_name(entry.name[: -len(side)]) if side else None
                if main is not None and main.name in names_here:
                    if _path_key(main) in configured or _has_sqlite_header(main):
                        continue  # the database's sealed copy holds what it holds
                is_db = _path_key(path) in configured or _has_sqlite_header(path)
                kind = "database" if is_db else "file"
                found.append(_Found(path, relative, kind, info.st_size, mtime, mode))
        folders.extend(reversed(inner))
    return found


def _zip_info(name: str, mtime_ns: int, mode: int, *, deflate: bool) -> Any:
    import zipfile

    try:
        when = time.localtime(mtime_ns / 1e9)[:6]
    except (OverflowError, OSError, ValueError):  # a date Windows' localtime cannot hold
        when = (1980, 1, 1, 0, 0, 0)
    # ZIP's dates run from 1980 to 2107 (the manifest keeps the exact time).
    when = min(max(when, (1980, 1, 1, 0, 0, 0)), (2107, 12, 31, 23, 59, 58))
    info = zipfile.ZipInfo(name, date_time=when)  # type: ignore[arg-type]
    info.create_system = 3  # Unix: unzip restores the mode, and links, from external_attr
    info.external_attr = (mode & 0xFFFF) << 16 | (0x10 if name.endswith("/") else 0)
    info.compress_type = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    return info


class _ArchiveProgress:
    """A percentage on a terminal while a large folder is archived (nothing elsewhere)."""

    def __init__(self, label: str, total: int, stream: TextIO | None) -> None:
        self.label, self.total, self.done = label, total, 0
        self.stream = stream if total >= PROGRESS_MIN_BYTES else None
        self._shown = 0.0
        self._width = 0

    def add(self, count: int) -> None:
        self.done += count
        if self.stream is not None and time.monotonic() - self._shown >= 0.5:
            self._shown = time.monotonic()
            percent = min(99, self.done * 100 // max(self.total, 1))
            line = f"\r  {self.label}: {percent:3d}%"
            self._width = len(line)
            _write_quietly(self.stream, line)

    def close(self) -> None:
        if self.stream is not None and self._width:
            _write_quietly(self.stream, "\r" + " " * self._width + "\r")


class _AppendOnly:
    """A file that is only ever appended to, as zipfile sees it: it then never seeks back
    to patch a member's header (each member ends in a data descriptor instead), which some
    file systems (FUSE's FAT) cannot do, and every byte is written once, in order."""

    def __init__(self, raw: Any) -> None:
        self.raw, self.written = raw, 0

    def write(self, data: bytes) -> int:
        self.raw.write(data)
        self.written += len(data)
        return len(data)

    def tell(self) -> int:
        return self.written

    def seek(self, *_: Any) -> int:
        raise OSError(errno.ESPIPE, "an archive is written in one pass")

    def flush(self) -> None:
        self.raw.flush()


def _stream_into_zip(
    archive: Any, source: Path, info: Any, progress: _ArchiveProgress
) -> tuple[int, str, bool]:
    """Stream ``source`` into the open archive as ``info``: (bytes, SHA-256, whether it
    changed while read). Memory stays at one chunk whatever the file's size."""
    digest, copied = hashlib.sha256(), 0
    with open(source, "rb") as handle:
        before = os.fstat(handle.fileno())
        info.file_size = before.st_size  # zipfile picks ZIP64 from it
        with archive.open(info, "w", force_zip64=before.st_size > 2**30) as member:
            for chunk in iter(lambda: handle.read(HASH_CHUNK_BYTES), b""):
                digest.update(chunk)
                member.write(chunk)
                copied += len(chunk)
                progress.add(len(chunk))
        after = os.fstat(handle.fileno())
    changed = (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns)
    return copied, digest.hexdigest(), changed or copied != before.st_size


def _archive_one(
    archive: Any, item: _Found, backup_dir: Path, busy_timeout: float, progress: _ArchiveProgress
) -> tuple[ArchiveMember | None, str]:
    """Write one entry into the archive: (its manifest member or None, "ok", "changed",
    "vanished" or "unreadable")."""
    if item.kind == "folder":
        archive.writestr(_zip_info(item.name, item.mtime_ns, item.mode, deflate=False), b"")
        return ArchiveMember(item.name, "folder", mtime_ns=item.mtime_ns), "ok"
    if item.kind == "link":
        try:
            target = os.readlink(item.path)
        except FileNotFoundError:
            return None, "vanished"
        except OSError:
            return None, "unreadable"
        info = _zip_info(item.name, item.mtime_ns, stat.S_IFLNK | 0o777, deflate=False)
        archive.writestr(info, os.fsencode(target))
        return ArchiveMember(item.name, "link", target=target), "ok"
    deflate = item.path.suffix.lower() not in STORED_SUFFIXES
    info = _zip_info(item.name, item.mtime_ns, item.mode, deflate=deflate)
    try:
        if item.kind == "database":
            with sealed_copy(
                item.path, backup_dir, name=item.path.name, busy_timeout=busy_timeout
            ) as copy:
                size, digest, _ = _stream_into_zip(archive, copy.path, info, progress)
            status = "ok"
        else:
            size, digest, changed = _stream_into_zip(archive, item.path, info, progress)
            status = "changed" if changed else "ok"
    except FileNotFoundError:
        return None, "vanished"
    except PermissionError:
        return None, "unreadable"
    except BackupError as exc:
        if not os.path.lexists(item.path):
            return None, "vanished"
        raise BackupError(
            text("archive.database_failed", error=exc.text),
            hint=text("archive.database_failed_hint", name=item.name),
        ) from exc
    return ArchiveMember(item.name, item.kind, size, item.mtime_ns, digest), status


def create_archive(
    source: Path,
    backup_dir: Path,
    *,
    taken_at: dt.datetime,
    databases: Sequence[Path] = (),
    exclude: Sequence[str] = (),
    busy_timeout: float = DEFAULTS["busy_timeout"],
    progress_stream: TextIO | None = None,
    room: Callable[[int], None] | None = None,
) -> MadeArchive:
    """Archive the folder ``source`` into ``backup_dir`` as ``<folder>.<time>.zip``.

    Every database in it (``databases``, and any other file that starts as an SQLite
    database) goes in as a sealed copy; the rest as it is read, links as links. The ZIP is
    written under a temporary name, re-read and checked against its manifest, fsynced, and
    only then named: a killed run leaves no file with an archive's name. ``taken_at`` is
    naive local time, as in the name; ``room(estimate)`` may refuse to start (raising).
    """
    import zipfile

    if not source.is_dir():
        raise BackupError(
            text("archive.no_source", folder=source), hint=text("archive.no_source_hint")
        )
    found = _walk_for_archive(source, backup_dir, databases, exclude)
    estimate = sum(f.size for f in found)
    if room is not None:
        room(estimate)
    progress = _ArchiveProgress(source.name, estimate, progress_stream)
    members: list[ArchiveMember] = []
    reported: dict[str, list[str]] = {"changed": [], "vanished": [], "unreadable": []}
    with temporary_file(backup_dir, source.name + ARCHIVE_SUFFIX) as temp:
        try:
            with open(temp, "ab") as raw:
                archive = zipfile.ZipFile(_AppendOnly(raw), "w", allowZip64=True)
                with archive:
                    for item in found:
                        member, status = _archive_one(
                            archive, item, backup_dir, busy_timeout, progress
                        )
                        if member is not None:
                            members.append(member)
                        if status != "ok":
                            reported[status].append(item.name)
                    manifest = {
                        "format": ARCHIVE_FORMAT,
                        "tool": f"{SCRIPT_NAME} {__version__}",
                        "source": str(source),
                        "host": _host_name(),
                        "created_at": taken_at.strftime("%Y-%m-%dT%H:%M:%S"),
                        "members": [m.to_json() for m in members],
                        **reported,
                    }
                    body = json.dumps(manifest, ensure_ascii=False, indent=1).encode("utf-8")
                    info = _zip_info(ARCHIVE_MANIFEST, time.time_ns(), 0o100644, deflate=True)
                    archive.writestr(info, body)
        except OSError as exc:
            raise describe_os_error(exc, temp, "archiving") from exc
        finally:
            progress.close()
        problem = check_archive_file(temp)
        if problem != "ok":
            raise BackupError(text("archive.check_failed", folder=source, problem=problem))
        try:
            _fsync_file(temp)
            size, digest = temp.stat().st_size, sha256_file(temp)
        except OSError as exc:
            raise describe_os_error(exc, temp, "verifying") from exc
        first = next_counter(backup_dir, archive_key(source), taken_at)
        names = (format_archive_name(source.name, taken_at, seq) for seq in range(first, 10000))
        final = publish_file(temp, backup_dir, names)
    return MadeArchive(
        final,
        size,
        digest,
        len(members),
        tuple(m.path for m in members if m.kind == "database"),
        *(tuple(reported[k]) for k in ("changed", "vanished", "unreadable")),
    )


def _safe_member_name(name: str) -> bool:
    """A relative name that stays inside the folder it is extracted into."""
    if not name or name.startswith(("/", "\\")) or "\\" in name or "\x00" in name:
        return False
    if re.match(r"[A-Za-z]:", name) or (os.name == "nt" and ":" in name):
        return False
    return all(part not in ("", ".", "..") for part in name.rstrip("/").split("/"))


def _link_stays_inside(member: str, target: str) -> bool:
    """A link's target, read from where the link is, names something inside the folder."""
    if not target or os.path.isabs(target) or target.startswith(("/", "\\")):
        return False
    if re.match(r"[A-Za-z]:", target) or "\\" in target:
        return False
    joined = os.path.normpath(os.path.join(os.path.dirname(member), target))
    return joined != ".." and not joined.startswith(".." + os.sep) and not os.path.isabs(joined)


def _manifest_members(archive: Any) -> list[ArchiveMember]:
    """The archive's manifest, checked against the archive's own list: every member is
    named safely, listed once, and present, with nothing unlisted beside it."""
    try:
        manifest = json.loads(archive.read(ARCHIVE_MANIFEST).decode("utf-8"))
    except KeyError:
        raise _ArchiveFault(text("archive.no_manifest")) from None
    except ValueError as exc:
        raise _ArchiveFault(text("archive.bad_manifest", error=str(exc))) from exc
    listed = manifest.get("members") if isinstance(manifest, dict) else None
    if not isinstance(listed, list):
        raise _ArchiveFault(text("archive.bad_manifest", error='no "members" list'))
    members = []
    for item in listed:
        try:
            kind, path = item["kind"], item["path"]
            member = ArchiveMember(
                str(path),
                str(kind),
                int(item.get("size", 0)),
                int(item.get("mtime_ns", 0)),
                item.get("sha256"),
                item.get("target"),
            )
        except (TypeError, KeyError, ValueError):
            raise _ArchiveFault(text("archive.bad_manifest", error=repr(item)[:200])) from None
        if member.kind not in _MEMBER_KINDS:
            raise _ArchiveFault(text("archive.bad_manifest", error=repr(item)[:200]))
        members.append(member)
    names = [info.filename for info in archive.infolist()]
    for name in names:
        if not _safe_member_name(name):
            raise _ArchiveFault(text("archive.unsafe_name", name=name))
    listed_names = [m.path for m in members]
    if len(set(names)) != len(names) or len(set(listed_names)) != len(listed_names):
        raise _ArchiveFault(text("archive.twice"))
    unlisted = sorted(set(names) - set(listed_names) - {ARCHIVE_MANIFEST})
    missing = sorted(set(listed_names) - set(names))
    if unlisted or missing:
        raise _ArchiveFault(text("archive.not_listed", name=(unlisted + missing)[0]))
    return members


def _hash_member(archive: Any, member: ArchiveMember, out: Any = None) -> Text | None:
    """Read a member (writing it to ``out``): None when it matches the manifest, else why not."""
    digest, size = hashlib.sha256(), 0
    with archive.open(member.path) as stream:
        for chunk in iter(lambda: stream.read(HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
            size += len(chunk)
            if out is not None:
                out.write(chunk)
    if size != member.size or digest.hexdigest() != member.sha256:
        return text("archive.member_differs", name=member.path)
    return None


def check_archive_file(path: Path) -> str | Text:
    """Read every member of an archive back against its manifest: "ok" or what is wrong."""
    import zipfile
    import zlib

    try:
        with zipfile.ZipFile(path) as archive:
            for member in _manifest_members(archive):
                if member.kind in ("file", "database"):
                    problem = _hash_member(archive, member)
                    if problem is not None:
                        return problem
    except _ArchiveFault as fault:
        return fault.args[0]
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        return text("archive.bad_zip", error=str(exc) or type(exc).__name__)
    return "ok"


@dataclasses.dataclass(frozen=True)
class RestoredArchive:
    folder: Path
    files: int
    databases: tuple[str, ...]
    links_left_out: tuple[str, ...]  # links that would lead out of the folder


def restore_archive(archive_path: Path, into: Path, *, live: Sequence[Path]) -> RestoredArchive:
    """Extract an archive into ``into``, a new or empty folder that is none of ``live``.

    Every name is checked first (absolute paths, ``..`` and unlisted members refuse the
    whole archive), then each member is written into a temporary folder beside ``into``
    and checked against the manifest as it is written; only a complete, checked folder is
    given the name ``into``. Links are made last, and only those that stay inside.
    """
    import zipfile
    import zlib

    into = Path(os.path.abspath(into))
    if any(_path_key(into) == _path_key(p) for p in live):
        raise _usage_error(
            text("archive.into_live", folder=into), hint=text("archive.into_live_hint")
        )
    if os.path.lexists(into) and (not into.is_dir() or into.is_symlink() or any(into.iterdir())):
        raise _usage_error(
            text("archive.into_not_empty", folder=into), hint=text("archive.into_live_hint")
        )
    if not into.parent.is_dir():
        raise _usage_error(
            text("archive.into_no_parent", folder=into.parent),
            hint=text("archive.into_no_parent_hint"),
        )
    try:
        archive = zipfile.ZipFile(archive_path)
    except FileNotFoundError:
        raise _usage_error(
            text("archive.not_found", path=archive_path), hint=text("archive.not_found_hint")
        ) from None
    except OSError as exc:
        raise describe_os_error(exc, archive_path, "reading back") from exc
    except zipfile.BadZipFile as exc:
        raise BackupError(text("archive.damaged", path=archive_path, problem=str(exc))) from exc
    with archive:
        try:
            members = _manifest_members(archive)
        except _ArchiveFault as fault:
            raise _usage_error(
                text("archive.refused", path=archive_path, problem=fault.args[0]),
                hint=text("archive.refused_hint"),
            ) from None
        links = {m.path for m in members if m.kind == "link"}
        for member in members:
            parents = member.path.rstrip("/").split("/")[:-1]
            through = ["/".join(parents[: i + 1]) for i in range(len(parents))]
            if any(p in links for p in through):
                raise _usage_error(
                    text(
                        "archive.refused",
                        path=archive_path,
                        problem=text("archive.unsafe_name", name=member.path),
                    ),
                    hint=text("archive.refused_hint"),
                )
        temp = into.parent / format_temp_name(into.name)
        try:
            os.mkdir(temp)
        except OSError as exc:
            raise describe_os_error(exc, into.parent, "creating a temporary folder in") from exc
        try:
            left_out = _extract_members(archive, archive_path, members, temp)
            if os.path.lexists(into):
                os.rmdir(into)  # empty, as checked
            os.rename(temp, into)
        except OSError as exc:
            raise describe_os_error(exc, into, "restoring into") from exc
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise BackupError(text("archive.damaged", path=archive_path, problem=str(exc))) from exc
        finally:
            shutil.rmtree(temp, ignore_errors=True)
    files = sum(1 for m in members if m.kind in ("file", "database"))
    snapshots = tuple(m.path for m in members if m.kind == "database")
    return RestoredArchive(into, files, snapshots, tuple(left_out))


def _extract_members(
    archive: Any, archive_path: Path, members: Sequence[ArchiveMember], root: Path
) -> list[str]:
    """Write the members under ``root``, each checked; links last. Returns the links left out."""
    infos = {info.filename: info for info in archive.infolist()}
    folders = []
    for member in members:
        target = root.joinpath(*member.path.rstrip("/").split("/"))
        if member.kind == "folder":
            target.mkdir(parents=True, exist_ok=True)
            folders.append((target, member))
            continue
        if member.kind == "link":
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "xb") as out:
            problem = _hash_member(archive, member, out)
        if problem is not None:
            raise BackupError(text("archive.damaged", path=archive_path, problem=problem))
        mode = (infos[member.path].external_attr >> 16) & 0o777
        if mode:
            os.chmod(target, mode)
        os.utime(target, ns=(member.mtime_ns, member.mtime_ns))
    left_out = []
    for member in members:
        if member.kind != "link":
            continue
        if not member.target or not _link_stays_inside(member.path, member.target):
            left_out.append(member.path)
            continue
        link = root.joinpath(*member.path.split("/"))
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.symlink(member.target, link)
        except OSError:  # Windows without the right to make links
            left_out.append(member.path)
    for folder, member in reversed(folders):
        os.utime(folder, ns=(member.mtime_ns, member.mtime_ns))
    return left_out


# ======================================================================================
# Run log
# ======================================================================================


def _atomic_temp_name(path: Path) -> str:
    return f".{path.name}.{os.urandom(8).hex()}.tmp"


def remove_stale_log_temp_files(path: Path) -> list[Path]:
    """Delete the temporary copies of ``path`` a killed run left; call under the run lock."""
    pattern = re.compile(re.escape(f".{path.name}.") + r"[0-9a-f]{16}\.tmp")
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass
    return removed


def _atomic_write(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync and rename (owner-only
    unless ``mode`` says otherwise; the mode is exact, whatever the umask)."""
    temp = path.with_name(_atomic_temp_name(path))
    fd = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0), mode)
    try:
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def check_log_folder(path: Path) -> None:
    """Refuse, before anything is done, a run log that could not be written at the end."""
    try:
        is_folder = stat.S_ISDIR(os.stat(path.parent).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        is_folder = False
    except OSError as exc:
        raise describe_os_error(exc, path.parent, "opening the folder of the run log") from exc
    if not is_folder:
        raise _usage_error(text("usage.no_log_folder", path=path), text("usage.no_log_folder_hint"))


def _clean_run(run: dict[str, Any]) -> dict[str, Any]:
    """``run``, or a copy of it where results, destinations or alerts (when present) are
    made lists of dicts: a hand-edited log may hold anything there."""
    cleaned = run
    for key in ("results", "archives", "destinations", "alerts"):
        items = run.get(key, [])
        if not (isinstance(items, list) and all(isinstance(i, dict) for i in items)):
            cleaned = dict(cleaned) if cleaned is run else cleaned
            cleaned[key] = (
                [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []
            )
    return cleaned


class RunLog:
    """The run log: the runs it holds, and what they recorded.

    Read it once (``RunLog.read``) and ask it questions; under the run lock, ``append``
    writes the runs read plus the new one, so a run reads its log once. A hand-edited log may
    hold anything: only runs (and their results, destinations and alerts) of the expected
    shape are kept. A damaged log reads as empty, ``damaged``, so that ``append`` moves it
    aside; one that cannot be read at all is ``unreadable``, and ``append`` refuses it.
    """

    def __init__(
        self,
        path: Path,
        runs: Sequence[dict[str, Any]] = (),
        *,
        warning: str | Text | None = None,
        damaged: bool = False,
        unreadable: bool = False,
    ) -> None:
        self.path = path
        self.runs = [_clean_run(run) for run in runs if isinstance(run, dict)]
        self.warning = warning
        self.damaged = damaged
        self.unreadable = unreadable
        self._backups: dict[str, dict[str, Any]] | None = None
        self._other: dict[str, Any] = {"version": 1}  # the file's other keys, kept as they are

    @classmethod
    def read(cls, path: Path) -> RunLog:
        """Load the log without changing it; a problem is in ``warning``."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return cls(path)
        except OSError as exc:
            warning = text("log.unreadable", path=path, error=exc.strerror or str(exc))
            return cls(path, warning=warning, unreadable=True)
        try:
            data = json.loads(raw.decode("utf-8"))
        except ValueError as exc:  # UnicodeDecodeError included
            warning = text("log.damaged", path=path, problem=str(exc))
            return cls(path, warning=warning, damaged=True)
        if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
            warning = text("log.damaged", path=path, problem='no "runs" list')
            return cls(path, warning=warning, damaged=True)
        log = cls(path, data.pop("runs"))
        log._other = data
        return log

    @property
    def usable(self) -> bool:
        """True when the file exists and was read whole."""
        return not (self.damaged or self.unreadable) and os.path.lexists(self.path)

    def backup_runs(self, *, since: dt.datetime | None = None) -> Iterator[dict[str, Any]]:
        """The backup runs (not restores), oldest first; ``since``: started at or after it."""
        for run in self.runs:
            if run.get("kind", "backup") != "backup":
                continue
            if since is not None:
                started = parse_iso(run.get("started_at"))
                if started is None or started < since:
                    continue
            yield run

    def backups(self) -> dict[str, dict[str, Any]]:
        """The result recorded for each backup (and archive) a run made, by its ``_path_key``."""
        if self._backups is None:
            self._backups = {
                _path_key(result["backup"]): result
                for run in self.runs
                for result in [*run.get("results", []), *run.get("archives", [])]
                if isinstance(result.get("backup"), str)
            }
        return self._backups

    def last_archive(self) -> dict[str, Any] | None:
        """The newest archive result (made, failed or not started), with its run's start."""
        for run in reversed(self.runs):
            for result in reversed(run.get("archives", [])):
                return {**result, "started_at": run.get("started_at")}
        return None

    def checksums(self) -> dict[str, str]:
        """The SHA-256 recorded for each backup, by the backup's ``_path_key``."""
        return {
            k: v["sha256"] for k, v in self.backups().items() if isinstance(v.get("sha256"), str)
        }

    def recorded_sha256(self, path: Path) -> str | None:
        """The SHA-256 recorded for a backup, or for a restore's safety copy."""
        key = _path_key(path)
        digest = self.backups().get(key, {}).get("sha256")
        if isinstance(digest, str):
            return digest
        for run in self.runs:
            copy = run.get("safety_copy")
            if run.get("kind") == "restore" and isinstance(copy, str) and _path_key(copy) == key:
                digest = run.get("safety_copy_sha256")
        return digest if isinstance(digest, str) else None

    def last_results(self) -> dict[str, dict[str, Any]]:
        """Each database's result in the newest backup run that backed it up or failed to."""
        last: dict[str, dict[str, Any]] = {}
        for run in self.backup_runs():
            for result in run.get("results", []):
                if result.get("status") in ("ok", "failed"):
                    last[str(result.get("database"))] = result
        return last

    def last_destination_results(self) -> dict[str, dict[str, Any]]:
        """Each destination's result in the newest run that copied to it."""
        return {
            str(result.get("destination")): result
            for run in self.runs
            for result in run.get("destinations", [])
        }

    def sent_by(self, label: str) -> dict[str, str]:
        """The names a destination accepted in earlier runs, each with the SHA-256 of what
        was sent ("" where an older run did not record it)."""
        sent: dict[str, str] = {}
        for run in self.runs:
            for result in run.get("destinations", []):
                if result.get("destination") != label:
                    continue
                sums = result.get("sent") if isinstance(result.get("sent"), dict) else {}
                for name in result.get("uploaded") or []:
                    digest = sums.get(name)
                    sent[str(name)] = digest if isinstance(digest, str) else ""
        return sent

    def drills(self) -> dict[str, tuple[dict[str, Any], dt.datetime | None]]:
        """Each database's result in the newest drill that drilled it, with that drill's
        start."""
        last: dict[str, tuple[dict[str, Any], dt.datetime | None]] = {}
        for run in self.runs:
            if run.get("kind") != "drill" or not isinstance(run.get("drills"), list):
                continue
            started = parse_iso(run.get("started_at"))
            for drill in run["drills"]:
                if isinstance(drill, dict) and drill.get("status") in ("ok", "failed"):
                    last[str(drill.get("database"))] = (drill, started)
        return last

    def last_good_drill(self) -> dt.datetime | None:
        """When the newest drill that passed began."""
        found = None
        for run in self.runs:
            if run.get("kind") == "drill" and run.get("status") == "ok":
                found = parse_iso(run.get("started_at")) or found
        return found

    def first_run_at(self) -> dt.datetime | None:
        """When the oldest run the log still holds began."""
        for run in self.runs:
            started = parse_iso(run.get("started_at"))
            if started is not None:
                return started
        return None

    def damaged_in_last_run(self) -> list[str]:
        """The local backups the newest backup run found damaged (see LocalBackupCheck)."""
        for run in reversed(self.runs):
            if run.get("kind", "backup") == "backup":
                found = run.get("damaged_backups")
                if not isinstance(found, list):
                    return []
                return [str(i["backup"]) for i in found if isinstance(i, dict) and "backup" in i]
        return []

    def append(
        self, run: dict[str, Any], *, max_runs: int, now: dt.datetime | None = None
    ) -> str | Text | None:
        """Write the runs read and ``run`` to the file, atomically, keeping the newest
        ``max_runs``; returns a warning (a Text). Call under the run lock, on a log read
        under it.

        A damaged log is moved aside as ``<log>.damaged-<time>`` (nothing is lost) and a
        fresh one is started; ``now`` (the current time by default) dates the damaged copy.
        """
        path, warning = self.path, self.warning
        if self.unreadable:
            raise BackupError(
                text("log.not_logged", warning=warning), hint=text("log.not_logged_hint")
            )
        if self.damaged:
            try:
                with open(path, "rb") as handle:
                    is_database = handle.read(16) == _SQLITE_HEADER
            except OSError:
                is_database = False
            if is_database:
                raise BackupError(
                    text("log.is_database", path=path), hint=text("usage.other_log_file")
                )
            stamp = (now or _now_local()).strftime(TIMESTAMP_FORMAT)
            names = (f"{path.name}.damaged-{stamp}" + (f"-{n}" if n else "") for n in range(1000))
            try:
                aside = publish_file(path, path.parent, names)
            except OSError as exc:
                raise describe_os_error(exc, path, "moving aside the damaged run log") from exc
            warning = text("log.moved_aside", warning=warning, aside=aside)
            self.damaged, self.warning = False, None
        self.runs = (self.runs + [_clean_run(run)])[-max_runs:]
        self._backups = None
        # A Text (a drill's finding, a warning) is logged as its English text.
        document = {**self._other, "runs": self.runs}
        payload = json.dumps(document, indent=2, ensure_ascii=False, default=str)
        try:
            _atomic_write(path, payload.encode("utf-8"))
        except OSError as exc:
            raise describe_os_error(exc, path, "writing the run log") from exc
        return warning


# ======================================================================================
# Off-site copies
# ======================================================================================


# --- Encryption (age) ---

_RECIPIENT_HINT = text("encrypt.recipient_hint")


def _pyrage() -> Any:
    try:
        import pyrage
    except ImportError:
        raise _usage_error(text("encrypt.needs_pyrage"), install_hint("pyrage")) from None
    return pyrage


def load_recipients(values: Sequence[str]) -> list[Any]:
    """The age recipients of --encrypt-to: keys, or files of them; a bad one is a usage
    error (exit 2) that names it, and a secret key is refused as one."""
    pyrage = _pyrage()
    recipients = []
    for value in values:
        if _RECIPIENT_KEY.match(value):
            recipients.append(_parse_recipient(pyrage, value, "--encrypt-to"))
            continue
        path = Path(value)
        try:
            content = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise _usage_error(
                text("encrypt.no_recipients_file", value=value), _RECIPIENT_HINT
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise _usage_error(
                text("encrypt.cannot_read_recipients", path=path, error=exc)
            ) from exc
        if "PRIVATE KEY" in content or "AGE-SECRET-KEY-" in content.upper():
            raise _usage_error(
                text("encrypt.secret_key", where=f"--encrypt-to {path}"),
                text("encrypt.secret_key_file_hint"),
            )
        lines = [line.strip() for line in content.splitlines()]
        keys = [line for line in lines if line and not line.startswith("#")]
        if not keys:
            raise _usage_error(text("encrypt.no_recipient", path=path), _RECIPIENT_HINT)
        recipients += [_parse_recipient(pyrage, key, str(path)) for key in keys]
    return recipients


def _parse_recipient(pyrage: Any, key: str, where: str) -> Any:
    if key.upper().startswith("AGE-SECRET-KEY-"):
        raise _usage_error(text("encrypt.secret_key", where=where), text("encrypt.secret_key_hint"))
    try:
        if key.startswith("age1"):
            return pyrage.x25519.Recipient.from_str(key)
        return pyrage.ssh.Recipient.from_str(key)
    except Exception as exc:  # pyrage.RecipientError
        shown = key if len(key) <= 24 else key[:20] + "..."
        raise _usage_error(
            text("encrypt.not_a_public_key", where=where, shown=shown, error=exc),
            _RECIPIENT_HINT,
        ) from exc


def load_identities(path: Path) -> list[Any]:
    """The identities (secret keys) in ``path``: an age identity file, or an SSH private key."""
    pyrage = _pyrage()
    hint = text("encrypt.identity_hint")
    try:
        data = path.read_bytes()
    except OSError as exc:
        error = exc.strerror or exc
        raise _usage_error(
            text("encrypt.cannot_read_identity", path=path, error=error), hint
        ) from exc
    content = data.decode("utf-8", "replace")
    if "PRIVATE KEY-----" in content:
        try:
            return [pyrage.ssh.Identity.from_buffer(data)]
        except Exception as exc:  # pyrage.IdentityError
            raise _usage_error(
                text("encrypt.ssh_key", path=path, error=exc), text("encrypt.ssh_key_hint")
            ) from exc
    keys = [line.strip() for line in content.splitlines()]
    keys = [key for key in keys if key.upper().startswith("AGE-SECRET-KEY-")]
    if not keys:
        raise _usage_error(text("encrypt.no_identity", path=path), hint)
    try:
        return [pyrage.x25519.Identity.from_str(key) for key in keys]
    except Exception as exc:  # pyrage.IdentityError
        raise _usage_error(text("encrypt.bad_identity", path=path, error=exc), hint) from exc


def write_identity(path: Path, *, now: dt.datetime) -> str:
    """Write a new age identity to ``path`` (owner-only, never over a file); its public key."""
    pyrage = _pyrage()
    identity = pyrage.x25519.Identity.generate()
    public = str(identity.to_public())
    content = f"# created: {_iso(now)}\n# public key: {public}\n{identity}\n"
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0), 0o600)
    except FileExistsError:
        raise _usage_error(text("keygen.exists", path=path), text("keygen.exists_hint")) from None
    except OSError as exc:
        raise describe_os_error(exc, path, "creating") from exc
    try:
        with os.fdopen(fd, "w", encoding="ascii", newline="\n") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise describe_os_error(exc, path, "writing") from exc
    return public


@contextlib.contextmanager
def decrypted_backup(path: Path, identity_file: Path, folder: Path) -> Iterator[Path]:
    """Decrypt ``<backup name>.age`` into a private temporary folder in ``folder`` (removed
    afterwards; a killed run's by the next run), under the backup's own name."""
    inner = path.name[: -len(ENCRYPTED_SUFFIX)] if path.name.endswith(ENCRYPTED_SUFFIX) else ""
    if not (parse_restorable_name(inner) or parse_archive_name(inner)):
        raise _usage_error(
            text("decrypt.not_encrypted_name", file=path.name),
            text("decrypt.not_encrypted_name_hint"),
        )
    identities = load_identities(identity_file)
    if not path.is_file():
        raise BackupError(text("decrypt.no_file", path=path), hint=text("decrypt.check_path"))
    temp_folder = folder / format_temp_name("decrypted")
    try:
        os.mkdir(temp_folder, 0o700)
    except OSError as exc:
        raise describe_os_error(exc, folder, "creating a temporary folder in") from exc
    try:
        plain = temp_folder / inner
        try:
            _pyrage().decrypt_file(str(path), str(plain), identities)
        except OSError as exc:
            raise describe_os_error(exc, path, "decrypting") from exc
        except Exception as exc:  # pyrage.DecryptError
            raise BackupError(
                text("decrypt.failed", path=path, identity=identity_file, error=exc),
                hint=text("decrypt.failed_hint"),
            ) from exc
        yield plain
    finally:
        shutil.rmtree(temp_folder, ignore_errors=True)


@dataclasses.dataclass(frozen=True)
class Outgoing:
    """A file on its way to a destination: a local backup, or its encrypted copy."""

    path: Path  # what is read
    name: str  # what it is called there
    database: str
    size: int
    sha256: str


class Encryption:
    """Encrypts each local backup at most once per run: every destination receives the same
    ciphertext, checked against one SHA-256.

    The ciphertexts are temporary files in the backup folder (a killed run's are removed by
    the next run), deleted by ``close``. Only a backup that passed the local check (its
    recorded SHA-256, or quick_check) is encrypted; nothing plain is ever sent.
    """

    def __init__(self, recipients: list[Any], folder: Path) -> None:
        self.recipients, self.folder = recipients, folder
        self._made: dict[str, Outgoing] = {}

    def outgoing(self, backup: BackupFile) -> Outgoing:
        key = str(backup.path)
        if key not in self._made:
            name = backup.path.name + ENCRYPTED_SUFFIX
            temp = self.folder / format_temp_name(name)
            self._made[key] = Outgoing(temp, name, backup.name, 0, "")
            try:
                _pyrage().encrypt_file(str(backup.path), str(temp), self.recipients)
                size, digest = temp.stat().st_size, sha256_file(temp)
            except OSError as exc:
                raise describe_os_error(exc, backup.path, "encrypting") from exc
            except Exception as exc:  # pyrage.EncryptError
                raise BackupError(text("encrypt.failed", path=backup.path, error=exc)) from exc
            self._made[key] = Outgoing(temp, name, backup.name, size, digest)
        made = self._made[key]
        if not made.sha256:
            raise BackupError(text("encrypt.failed_earlier", path=backup.path))
        return made

    def close(self) -> None:
        for made in self._made.values():
            try:
                os.unlink(made.path)
            except OSError:
                pass  # the next run removes it as a stale temporary file


# --- Destinations ---


@dataclasses.dataclass
class DestinationResult:
    """What one destination got in one run."""

    destination: str
    status: str = "ok"
    uploaded: list[str] = dataclasses.field(default_factory=list)
    pruned: list[str] = dataclasses.field(default_factory=list)
    withheld: list[str] = dataclasses.field(default_factory=list)  # damaged local backups
    sent: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> SHA-256 sent
    damaged_copies: list[str] = dataclasses.field(default_factory=list)  # found, sent again
    error: str | None = None
    hint: str | None = None
    # The error as raised, to show in the operator's language (the log keeps ``error``).
    failure: BackupError | None = dataclasses.field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(dataclasses.replace(self, failure=None))
        del data["failure"]
        return data


class Destination:
    """Somewhere a copy of each backup goes after the local run."""

    label: str
    can_list = True

    def list_backups(self, names: Sequence[str]) -> dict[str, list[BackupFile]]:
        """The destination's backups of each named database, newest first."""
        raise NotImplementedError

    def upload(self, item: Outgoing) -> None:
        """Store ``item`` under its name, checked for size and checksum; or raise."""
        raise NotImplementedError

    def holds(self, copy: BackupFile, sha256: str) -> bool:
        """True when the destination's ``copy`` still is what was sent (``sha256``)."""
        raise NotImplementedError

    def delete(self, backup: BackupFile) -> None:
        """Delete one of the destination's backups (one that list_backups returned)."""
        raise NotImplementedError


class FolderDestination(Destination):
    """Another folder: an external disk, a mounted NAS or network share."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.label = str(folder)

    def list_backups(self, names: Sequence[str]) -> dict[str, list[BackupFile]]:
        if not self.folder.is_dir():
            raise BackupError(
                text("copy.no_folder", folder=self.folder), hint=text("copy.no_folder_hint")
            )
        return list_backups(self.folder, names, copies=True)

    def upload(self, item: Outgoing) -> None:
        with temporary_file(self.folder, item.name) as temp:
            try:
                with open(item.path, "rb") as src, open(temp, "wb") as dst:
                    shutil.copyfileobj(src, dst, HASH_CHUNK_BYTES)
                    dst.flush()
                    os.fsync(dst.fileno())
                copied_size, copied_sha = temp.stat().st_size, sha256_file(temp)
            except OSError as exc:
                raise describe_os_error(exc, self.folder, "copying a backup into") from exc
            if copied_size != item.size or copied_sha != item.sha256:
                raise BackupError(
                    text("copy.mismatch", file=item.name, folder=self.folder),
                    hint=text("copy.mismatch_hint"),
                )
            publish_file(temp, self.folder, [item.name])

    def holds(self, copy: BackupFile, sha256: str) -> bool:
        try:
            return sha256_file(copy.path) == sha256
        except OSError as exc:
            raise describe_os_error(exc, copy.path, "reading back") from exc

    def delete(self, backup: BackupFile) -> None:
        try:
            if stat.S_ISREG(os.lstat(backup.path).st_mode):
                os.unlink(backup.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise describe_os_error(exc, backup.path, "deleting") from exc


S3_PART_BYTES = 16 * 1024 * 1024


def _boto3() -> Any:
    try:
        import boto3
    except ImportError:
        raise BackupError(text("s3.needs_boto3"), hint=install_hint("boto3")) from None
    return boto3


def _s3_error(exc: Exception, where: str | Text) -> BackupError:
    response = getattr(exc, "response", None) or {}
    code = response.get("Error", {}).get("Code", "")
    hints = {
        "SignatureDoesNotMatch": "s3.check_secret",
        "InvalidAccessKeyId": "s3.check_key_id",
        "AccessDenied": "s3.access_denied",
        "NoSuchBucket": "s3.no_bucket",
    }
    return BackupError(
        text("s3.error", where=where, code=code or type(exc).__name__, error=exc),
        hint=text(hints.get(code, "s3.check_all")),
    )


def _addressing_style(endpoint: str | None) -> str:
    """Path-style requests for an endpoint given by address (MinIO, rclone on a LAN);
    virtual-hosted ones, which Aliyun OSS and Tencent COS require, for named hosts."""
    if not endpoint:
        return "auto"
    host = urllib.parse.urlsplit(endpoint).hostname or ""
    by_address = host == "localhost" or re.fullmatch(r"[\d.]+|[0-9a-fA-F:]+", host) is not None
    return "path" if by_address else "virtual"


def _md5_etags(path: Path, part_bytes: int) -> set[str]:
    """The ETags S3 may give ``path``: its MD5, and the multipart form for ``part_bytes``."""
    whole, parts = hashlib.md5(), []
    with open(path, "rb") as handle:
        for part in iter(lambda: handle.read(part_bytes), b""):
            whole.update(part)
            parts.append(hashlib.md5(part).digest())
    multipart = hashlib.md5(b"".join(parts)).hexdigest() + f"-{len(parts)}"
    return {whole.hexdigest(), multipart}


class S3Destination(Destination):
    """An S3 bucket or a compatible store (Aliyun OSS, Tencent COS, MinIO, R2, B2).

    Credentials come from boto3's usual places (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
    AWS_PROFILE or ``--s3-profile``), never from the command line.
    """

    def __init__(
        self,
        url: str,
        *,
        endpoint: str | None,
        profile: str | None,
        region: str | None,
        addressing: str | None = None,
    ) -> None:
        match = _S3_URL.fullmatch(url)
        if not match:
            raise _usage_error(text("s3.bad_url", url=url))
        self.bucket = match["bucket"]
        self.prefix = (match["prefix"] or "").strip("/")
        self.prefix += "/" if self.prefix else ""
        self.endpoint, self.profile, self.region = endpoint, profile, region
        self.addressing = addressing or _addressing_style(endpoint)
        where = f" at {mask_url(endpoint)}" if endpoint else ""
        self.label = f"s3://{self.bucket}/{self.prefix}{where}"
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            boto3 = _boto3()
            from botocore.config import Config as BotoConfig

            settings: dict[str, Any] = {
                "retries": {"max_attempts": 5, "mode": "standard"},
                "connect_timeout": 10,
                "read_timeout": 120,
                "s3": {"addressing_style": self.addressing},
                # boto3 1.36+ adds checksums in aws-chunked bodies that many S3-compatible
                # stores (OSS, COS, MinIO's older releases) refuse; checked after upload instead.
                "request_checksum_calculation": "when_required",
                "response_checksum_validation": "when_required",
            }
            try:
                config = BotoConfig(**settings)
            except TypeError:  # botocore before 1.36 has neither setting, nor the problem
                del settings["request_checksum_calculation"]
                del settings["response_checksum_validation"]
                config = BotoConfig(**settings)
            try:
                session = boto3.session.Session(profile_name=self.profile)
            except Exception as exc:  # botocore's ProfileNotFound
                raise _s3_error(exc, f"--s3-profile {self.profile}") from exc
            self._client = session.client(
                "s3",
                endpoint_url=self.endpoint,
                region_name=self.region or ("us-east-1" if self.endpoint else None),
                config=config,
            )
        return self._client

    def list_backups(self, names: Sequence[str]) -> dict[str, list[BackupFile]]:
        found: dict[str, list[BackupFile]] = {name: [] for name in names}
        try:
            pages = self.client().get_paginator("list_objects_v2")
            for page in pages.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for item in page.get("Contents", []):
                    filename = item["Key"][len(self.prefix) :]
                    parsed, encrypted = parse_copy_name(filename)
                    if "/" in filename or parsed is None or parsed.name not in found:
                        continue
                    found[parsed.name].append(
                        BackupFile(
                            Path(filename),
                            parsed.name,
                            parsed.taken_at,
                            parsed.seq,
                            int(item["Size"]),
                            (0, hash(item["Key"])),
                            parsed.compression,
                            encrypted,
                        )
                    )
        except BackupError:
            raise
        except Exception as exc:  # botocore's ClientError, BotoCoreError and their kin
            raise _s3_error(exc, text("s3.listing", label=self.label)) from exc
        for backups in found.values():
            backups.sort(key=lambda b: b.sort_key, reverse=True)
        return found

    def upload(self, item: Outgoing) -> None:
        from boto3.s3.transfer import TransferConfig

        key = self.prefix + item.name
        transfer = TransferConfig(
            multipart_threshold=S3_PART_BYTES, multipart_chunksize=S3_PART_BYTES, max_concurrency=2
        )
        try:
            client = self.client()
            client.upload_file(
                str(item.path),
                self.bucket,
                key,
                ExtraArgs={"Metadata": {"sha256": item.sha256}},
                Config=transfer,
            )
            head = client.head_object(Bucket=self.bucket, Key=key)
        except BackupError:
            raise
        except Exception as exc:
            raise _s3_error(exc, text("s3.uploading", file=item.name, label=self.label)) from exc
        if int(head["ContentLength"]) != item.size:
            raise BackupError(
                text(
                    "s3.size_after_upload",
                    label=self.label,
                    file=item.name,
                    size=head["ContentLength"],
                    expected=item.size,
                )
            )
        if str(head.get("ETag", "")).strip('"') not in _md5_etags(item.path, S3_PART_BYTES):
            # Encrypted or otherwise re-tagged objects: read it back and compare SHA-256.
            self._check_by_download(key, item.sha256)

    def holds(self, copy: BackupFile, sha256: str) -> bool:
        # An object is replaced whole, never changed in place: its size and the SHA-256
        # stored with it at upload tell a replaced one.
        key = self.prefix + copy.path.name
        try:
            head = self.client().head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise _s3_error(exc, text("s3.reading_back", key=key, label=self.label)) from exc
        return (
            int(head["ContentLength"]) == copy.size
            and head.get("Metadata", {}).get("sha256") == sha256
        )

    def _check_by_download(self, key: str, sha256: str) -> None:
        digest = hashlib.sha256()
        try:
            body = self.client().get_object(Bucket=self.bucket, Key=key)["Body"]
            for chunk in iter(lambda: body.read(HASH_CHUNK_BYTES), b""):
                digest.update(chunk)
        except Exception as exc:
            raise _s3_error(exc, text("s3.reading_back", key=key, label=self.label)) from exc
        if digest.hexdigest() != sha256:
            raise BackupError(text("s3.differs", label=self.label, key=key))

    def delete(self, backup: BackupFile) -> None:
        try:
            self.client().delete_object(Bucket=self.bucket, Key=self.prefix + backup.path.name)
        except Exception as exc:
            deleting = text("s3.deleting", file=backup.path.name, label=self.label)
            raise _s3_error(exc, deleting) from exc


UPLOAD_PLACEHOLDERS = ("path", "name", "database", "sha256", "size")


class CommandDestination(Destination):
    """Any uploader (bypy, BaiduPCS-Py, rclone, ossutil): its exit code decides success.

    A command cannot be listed, so what it was given is remembered in the run log,
    and its own retention applies at the far end.
    """

    can_list = False

    def __init__(self, template: str, timeout: float) -> None:
        self.template, self.timeout = template, timeout
        # The template may hold a secret (an ossutil key): show its program and a short
        # digest, which also tells two commands of the same program apart in the log.
        program = Path(template.split()[0]).name if template.split() else "?"
        digest = hashlib.sha256(template.encode()).hexdigest()[:8]
        self.label = f"command {program} #{digest}"

    def command(self, item: Outgoing) -> list[str]:
        """The command line for one file, each placeholder filled inside its argument."""
        values = {
            "path": str(item.path.resolve()),
            "name": item.name,
            "database": item.database,
            "sha256": item.sha256,
            "size": str(item.size),
        }
        try:
            return [word.format(**values) for word in split_command(self.template)]
        except (ValueError, KeyError, IndexError) as exc:
            names = ", ".join("{" + p + "}" for p in UPLOAD_PLACEHOLDERS)
            raise _usage_error(
                text("upload.bad_template", template=self.template, error=exc),
                text("upload.placeholders", names=names),
            ) from exc

    def upload(self, item: Outgoing) -> None:
        import subprocess

        command = self.command(item)
        try:
            code, last_line = run_command(command, timeout=self.timeout)
        except FileNotFoundError:
            raise BackupError(
                text("upload.not_found", label=self.label, program=command[0]),
                hint=text("upload.not_found_hint"),
            ) from None
        except subprocess.TimeoutExpired:
            timed_out = text("upload.timed_out", label=self.label, seconds=self.timeout)
            raise BackupError(timed_out) from None
        except OSError as exc:
            raise BackupError(text("upload.cannot_start", label=self.label, error=exc)) from exc
        if code != 0:
            values = {"label": self.label, "code": code, "file": item.name}
            raise BackupError(
                text("upload.exited", **values, said=last_line)
                if last_line
                else text("upload.exited_silent", **values),
                hint=text("upload.exited_hint"),
            )


def build_destinations(config: Config) -> list[Destination]:
    """The configured destinations, in the order they run."""
    destinations: list[Destination] = [FolderDestination(p) for p in config.copy_to]
    destinations += [
        S3Destination(
            url,
            endpoint=config.s3_endpoint,
            profile=config.s3_profile,
            region=config.s3_region,
            addressing=config.s3_addressing,
        )
        for url in config.s3
    ]
    destinations += [CommandDestination(t, config.upload_timeout) for t in config.upload_command]
    return destinations


class LocalBackupCheck:
    """Reads each local backup at most once per run before it leaves the machine.

    A backup the run log knows must still have its recorded SHA-256; one it does not know
    must pass quick_check. A backup this run just made and hashed is taken as it is.
    """

    def __init__(self, checksums: dict[str, str], fresh: set[str]) -> None:
        self.checksums, self.fresh = checksums, fresh
        self._digests: dict[str, str | None] = {}
        self.damaged: dict[str, Text] = {}  # path -> what is wrong with it

    def digest(self, backup: BackupFile) -> str | None:
        """The backup's SHA-256 when it is sound, else None (and it is listed in ``damaged``)."""
        key = _path_key(backup.path)
        if key in self._digests:
            return self._digests[key]
        recorded = self.checksums.get(key)
        if recorded is not None and key in self.fresh:
            self._digests[key] = recorded
            return recorded
        problem: Text | None = None
        actual: str | None = sha256_file(backup.path)
        if recorded is not None:
            if actual != recorded:
                problem = text("copy.sha_differs")
        else:
            try:
                verdict = check_backup_file(backup.path, backup.compression)
            except BackupError as exc:
                verdict = exc.text
            if verdict != "ok":
                problem = text("copy.unlogged_fails_check", verdict=verdict)
        if problem is not None:
            self.damaged[str(backup.path)] = problem
            actual = None
        self._digests[key] = actual
        return actual


def sync_destination(
    destination: Destination,
    config: Config,
    local: dict[str, list[BackupFile]],
    *,
    checks: LocalBackupCheck,
    prunable: set[str],
    sent_before: dict[str, str],
    encryption: Encryption | None,
    now: dt.datetime,
) -> DestinationResult:
    """Copy what the destination is missing, then apply retention there.

    Missing means: the newest local backup of each database, and every local backup
    newer than the destination's newest, so a destination that was down catches up on
    the next run without copying years of history. The destination's newest copy of each
    database is first read back against the SHA-256 it was sent with (``sent_before``, by
    name): a damaged one is deleted and sent again. Retention there follows the local
    rules, only for the tool's own names, and only for databases backed up in this run.
    A local backup that fails ``checks`` is never sent; newer sound ones still are. With
    ``encryption``, each is sent as ``<backup name>.age`` and nothing plain leaves.
    """
    result = DestinationResult(destination=destination.label)
    names = list(local)
    suffix = ENCRYPTED_SUFFIX if encryption is not None else ""
    try:
        remote = destination.list_backups(names) if destination.can_list else None
        for name, files in local.items():
            if not files:
                continue
            if remote is not None:
                copies = remote[name]
                newest_copy = copies[0] if copies else None
                sent = sent_before.get(newest_copy.path.name) if newest_copy else None
                if newest_copy and sent and not destination.holds(newest_copy, sent):
                    result.damaged_copies.append(newest_copy.path.name)
                    destination.delete(newest_copy)
                    copies = copies[1:]
                have = {b.path.name for b in copies}
                newest = copies[0].sort_key if copies else None
            else:
                have = set(sent_before)
                parsed = [parse_copy_name(n)[0] for n in sent_before]
                keys = [(p.taken_at, p.seq) for p in parsed if p and p.name == name]
                newest = max(keys) if keys else None
            missing = [
                f
                for i, f in enumerate(files)
                if f.path.name + suffix not in have
                and (i == 0 or newest is None or f.sort_key > newest)
            ]
            for backup in reversed(missing):
                digest = checks.digest(backup)
                if digest is None:
                    result.withheld.append(backup.path.name)
                    continue
                if encryption is not None:
                    item = encryption.outgoing(backup)
                else:
                    item = Outgoing(backup.path, backup.path.name, backup.name, backup.size, digest)
                destination.upload(item)
                result.uploaded.append(item.name)
                result.sent[item.name] = item.sha256
        if remote is not None:
            remote = destination.list_backups(names)
            for name in names:
                if name not in prunable:
                    continue
                for backup in select_expired(
                    remote[name],
                    now=now,
                    **config.retention(name),
                ):
                    destination.delete(backup)
                    result.pruned.append(backup.path.name)
    except Exception as exc:  # noqa: BLE001 - a destination's surprise must not stop the run
        error = as_backup_error(exc, destination.label, "copying to")
        result.status, result.error, result.hint = "failed", error.message, error.hint
        result.failure = error
    return result


# ======================================================================================
# Alerts
# ======================================================================================

NOTIFY_COMMAND_TIMEOUT_S = 60.0


def render_alert_text(run: dict[str, Any], lang: str = "en") -> str:
    """A short human summary of a run in ``lang``, for chat bots and mail (the details a run
    logged, errors among them, are quoted as logged)."""

    def tr(key: str, /, **values: Any) -> str:
        return text(key, **values).render(lang)

    failed = run.get("status") == "failed"
    kind = run.get("kind")
    what = tr("alert.drill" if kind == "drill" else "alert.archive" if kind else "alert.backup")
    head = "alert.failed" if failed else "alert.ok"
    lines = [tr(head, what=what, host=run.get("host"), time=run.get("started_at"))]
    for drill in run.get("drills") or []:
        if isinstance(drill, dict) and drill.get("status") == "failed":
            findings = "; ".join(str(render_text(f, lang)) for f in drill.get("findings") or [])
            lines.append(
                "- " + tr("alert.drill_failed", database=drill.get("database"), findings=findings)
            )
    if run.get("error"):  # the run stopped with an error (or never started)
        lines.append("- " + tr("alert.error", error=run.get("error")))
        if run.get("hint"):
            lines.append("  " + tr("alert.fix", hint=run.get("hint")))
    archives = [a for a in run.get("archives") or [] if isinstance(a, dict)]
    for result in [*run.get("results", []), *archives]:
        if result.get("status") == "failed" or (result.get("error") and result in archives):
            lines.append(f"- {result.get('database')}: {result.get('error')}")
        elif result.get("status") == "ok":
            lines.append(
                "- "
                + tr(
                    "alert.backed_up",
                    database=result.get("database"),
                    file=Path(str(result.get("backup"))).name,
                    size=result.get("size_bytes"),
                )
            )
    for result in run.get("destinations", []):
        destination = result.get("destination")
        for name in result.get("damaged_copies") or []:
            lines.append("- " + tr("run.copy_resent", file=name, destination=destination))
        if result.get("status") == "failed":
            error = result.get("error")
            lines.append("- " + tr("run.copy_failed", destination=destination, error=error))
    for damaged in run.get("damaged_backups") or []:
        if isinstance(damaged, dict):
            values = {"file": damaged.get("backup"), "problem": damaged.get("problem")}
            lines.append("- " + tr("alert.damaged_backup", **values))
    return "\n".join(lines)


def render_alert(run: dict[str, Any], fmt: str, lang: str = "en") -> dict[str, Any]:
    """The webhook body in the format a chat bot expects, its text in ``lang`` (``json``: the
    whole run as logged, in English, beside that text)."""
    summary = render_alert_text(run, lang)
    if fmt == "dingtalk" or fmt == "wecom":
        return {"msgtype": "text", "text": {"content": summary}}
    if fmt == "feishu":
        return {"msg_type": "text", "content": {"text": summary}}
    if fmt == "slack":
        return {"text": summary}
    return {"event": "database_backup", "text": summary, "run": run}


def should_alert(config: Config, failed: bool) -> bool:
    """Whether a run with this outcome is announced: an alert target is set, and
    ``--notify-on`` asks for this outcome."""
    if not (config.notify_url or config.notify_command):
        return False
    return config.notify_on == "always" or (config.notify_on == "failure") == failed


def http_request(url: str, body: bytes | None, *, timeout: float) -> str | Text | None:
    """POST ``body`` as JSON to ``url`` (GET when None); the error, free of the URL's secrets,
    or None when the server took it."""
    import socket
    import urllib.error  # here, not at the top: loading http.client slows every start
    import urllib.request

    headers = {"Content-Type": "application/json; charset=utf-8"} if body is not None else {}
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(65536)
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code} {exc.reason}"
    except urllib.error.URLError as exc:
        return f"URLError: {exc.reason}"
    except (TimeoutError, socket.timeout):  # one type from Python 3.10 on
        return text("http.timed_out", seconds=timeout)
    except Exception as exc:  # noqa: BLE001 - http.client's errors quote the URL: name only
        return text("http.server_error", error=type(exc).__name__)
    return None


def send_heartbeats(config: Config, *, failed: bool) -> list[dict[str, Any]]:
    """Ping each --heartbeat-url after a run: the URL itself on success, ``URL/fail`` on
    failure (healthchecks.io's convention); never raised, never longer than a few seconds."""
    sent = []
    for url in config.heartbeat_url:
        parts = urllib.parse.urlsplit(url)
        if failed:
            parts = parts._replace(path=parts.path.rstrip("/") + "/fail")
        error = http_request(urllib.parse.urlunsplit(parts), None, timeout=HEARTBEAT_TIMEOUT_S)
        sent.append(
            {
                "target": mask_url(url),
                "signal": "fail" if failed else "success",
                "status": "failed" if error else "ok",
                "error": error,
            }
        )
    return sent


def send_alerts(config: Config, run: dict[str, Any]) -> list[dict[str, Any]]:
    """Post the run to each webhook and run each alert command; failures are returned, never
    raised, and no secret from a URL is ever in them."""
    import subprocess

    deliveries = []
    body = render_alert(run, config.notify_format, config.lang)
    body = json.dumps(body, ensure_ascii=False, default=str).encode()
    for url in config.notify_url:
        error = http_request(url, body, timeout=config.notify_timeout)
        deliveries.append(
            {"target": mask_url(url), "status": "failed" if error else "ok", "error": error}
        )
    if config.notify_command:
        summary = json.dumps(
            render_alert(run, "json", config.lang), ensure_ascii=False, default=str
        )
        delivery = {"target": "command", "status": "ok", "error": None}
        try:
            code, _ = run_command(
                split_command(config.notify_command),
                timeout=NOTIFY_COMMAND_TIMEOUT_S,
                stdin_text=summary,
            )
            if code != 0:
                delivery.update(status="failed", error=f"exited {code}")
        except subprocess.TimeoutExpired:  # its text quotes the command, which may hold a secret
            delivery.update(
                status="failed", error=f"did not finish in {NOTIFY_COMMAND_TIMEOUT_S:g} s"
            )
        except (OSError, ValueError) as exc:
            delivery.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        deliveries.append(delivery)
    return deliveries


# ======================================================================================
# Runs
# ======================================================================================


@dataclasses.dataclass
class BackupResult:
    """What happened to one database in one run."""

    database: str
    source: str
    status: str  # "ok", "failed" or "skipped"
    backup: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    duration_s: float = 0.0
    error: str | None = None
    hint: str | None = None
    pruned: list[str] = dataclasses.field(default_factory=list)
    content_sha256: str | None = None  # of the database bytes; differs from sha256 when packed
    compression: str | None = None
    linked_to: str | None = None  # an unchanged database shares its previous backup's file
    # The error as raised, to show in the operator's language (the log keeps ``error``).
    failure: BackupError | None = dataclasses.field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(dataclasses.replace(self, failure=None))
        del data["failure"]
        return data


@dataclasses.dataclass
class ArchiveResult:
    """What happened to the archive of a folder in one run, or one --archive."""

    database: str  # the folder's archive_key, e.g. "instance/"
    source: str
    status: str  # "ok", "failed", or "skipped": it would not fit the disk budget
    backup: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    members: int = 0
    databases: list[str] = dataclasses.field(default_factory=list)
    changed: list[str] = dataclasses.field(default_factory=list)
    vanished: list[str] = dataclasses.field(default_factory=list)
    unreadable: list[str] = dataclasses.field(default_factory=list)
    duration_s: float = 0.0
    error: str | None = None
    hint: str | None = None
    pruned: list[str] = dataclasses.field(default_factory=list)
    failure: BackupError | None = dataclasses.field(default=None, repr=False, compare=False)

    to_json = BackupResult.to_json


class RunLock:
    """An OS lock on a file, so runs never interleave; the OS drops it when the process dies.

    Unlike a PID file, a lock left by a killed run cannot block the next one.
    """

    def __init__(self, path: Path, timeout: float, on_wait: Callable[[], None] | None = None):
        self.path, self.timeout, self.on_wait = path, timeout, on_wait
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise BackupError(
                    text("error.lock_is_link", path=self.path),
                    hint=text("error.lock_is_link_hint"),
                ) from exc
            raise describe_os_error(exc, self.path, "opening the run lock") from exc
        deadline = time.monotonic() + self.timeout
        announced = False
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                os.close(fd)
                raise BackupError(
                    text("error.locked", path=self.path, seconds=self.timeout),
                    exit_code=ExitCode.LOCKED,
                    hint=text("error.locked_hint"),
                )
            if not announced and self.on_wait is not None:
                self.on_wait()
                announced = True
            time.sleep(0.2)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            _unlock(self._fd)
            os.close(self._fd)
            self._fd = None


if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        except OSError:
            pass

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


@dataclasses.dataclass
class RunReport:
    """One run: its results, what it pruned, and warnings to show."""

    started_at: dt.datetime
    trigger: str
    results: list[BackupResult]
    finished_at: dt.datetime | None = None
    warnings: list[str | Text] = dataclasses.field(default_factory=list)
    removed_temp_files: list[str] = dataclasses.field(default_factory=list)
    destinations: list[DestinationResult] = dataclasses.field(default_factory=list)
    alerts: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    heartbeats: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # Local backups withheld from every destination: {"backup": path, "problem": text}.
    damaged_backups: list[dict[str, str | Text]] = dataclasses.field(default_factory=list)
    archives: list[ArchiveResult] = dataclasses.field(default_factory=list)

    @property
    def failed(self) -> bool:
        """A database, an archive or a destination failed, or a local backup is damaged (an
        undelivered alert, or an archive not started for the disk budget, does not fail a
        run)."""
        return bool(self.damaged_backups) or any(
            r.status == "failed" for r in [*self.results, *self.archives, *self.destinations]
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at or self.started_at),
            "trigger": self.trigger,
            "status": "failed" if self.failed else "ok",
            "host": _host_name(),
            "version": __version__,
            "results": [r.to_json() for r in self.results],
            **({"archives": [a.to_json() for a in self.archives]} if self.archives else {}),
            "pruned": [p for r in [*self.results, *self.archives] for p in r.pruned],
            "destinations": [d.to_json() for d in self.destinations],
            "damaged_backups": self.damaged_backups,
            "alerts": self.alerts,
            "heartbeats": self.heartbeats,
            "warnings": [str(warning) for warning in self.warnings],
        }


def run_backups(
    config: Config,
    *,
    trigger: str = "manual",
    clock: Callable[[], dt.datetime] = _now_local,
    on_result: Callable[[BackupResult], None] | None = None,
    on_lock_wait: Callable[[], None] | None = None,
    on_start: Callable[[dt.datetime], None] | None = None,
    progress_stream: TextIO | None = None,
) -> RunReport:
    """Back up every configured database under the run lock, prune, and log the run.

    ``on_start(started)`` is called once the run holds the lock: a run refused before (bad
    settings, no folder, the lock held) never announces itself as started.

    ``clock()`` is the aware local time: the run's start names its backups and dates the
    retention; its end is logged. A failed database does not stop the others, and is not
    pruned. A run that stops with an error (refused before it starts: the lock held past
    ``--lock-timeout``, a folder it cannot use; or failing later, as in writing the run log)
    is announced to the alert targets too, unless they already heard of its failure, then
    raised.
    """
    report: RunReport | None = None
    failure_announced = False
    try:
        check_run_requirements(config)
        check_log_folder(config.log_file)
        ensure_backup_dir(config.backup_dir, app_folder=config.app_folder())
        with RunLock(config.backup_dir / LOCK_FILE_NAME, config.lock_timeout, on_lock_wait):
            started = clock()
            report = RunReport(started_at=started, trigger=trigger, results=[])
            if on_start is not None:
                on_start(started)
            stale = remove_stale_temp_files(
                config.backup_dir, [db.path.name for db in config.databases]
            )
            stale += remove_stale_log_temp_files(config.log_file)
            if config.metrics is not None:
                stale += remove_stale_log_temp_files(config.metrics)
            report.removed_temp_files = [str(p) for p in stale]
            # The one read of the log and the one listing of the folder in a run.
            log = RunLog.read(config.log_file)
            local = list_backups(config.backup_dir, listed_names(config))
            for db in config.databases:
                previous = _previous_backup(local[db.name], log.backups())
                result = _backup_one(config, db, started, progress_stream, previous)
                report.results.append(result)
                if on_result is not None:
                    on_result(result)
            for result in report.results:
                if result.status != "ok" or result.backup is None:
                    continue
                local[result.database], deleted, errors = prune_beside(
                    result.backup,
                    local[result.database],
                    now=started.replace(tzinfo=None),
                    **config.retention(),
                )
                result.pruned = [str(p) for p in deleted]
                report.warnings.extend(errors)
            if archive_due(config, local[archive_key(config.archive_folder())], now=started):
                archive, errors = make_archive(
                    config, taken_at=started, listed=local, progress_stream=progress_stream
                )
                report.archives.append(archive)
                report.warnings.extend(errors)
            if config.copy_to or config.s3 or config.upload_command:
                _copy_off_site(config, report, log, local, started)
            report.finished_at = clock()
            if should_alert(config, report.failed):
                report.alerts = send_alerts(config, report.to_json())
                failure_announced = report.failed
                for alert in report.alerts:
                    if alert["status"] != "ok":
                        failed = text(
                            "run.alert_failed", target=alert["target"], error=alert["error"]
                        )
                        report.warnings.append(failed)
            report.heartbeats = send_heartbeats(config, failed=report.failed)
            report.warnings += [
                text("run.heartbeat_failed", target=beat["target"], error=beat["error"])
                for beat in report.heartbeats
                if beat["status"] != "ok"
            ]
            warning = log.append(report.to_json(), max_runs=config.log_max_runs, now=clock())
            if warning:
                report.warnings.append(warning)
    except Exception as exc:
        if not failure_announced:
            _announce_failed_run(config, report, trigger, clock(), exc)
        if report is None or not report.heartbeats:  # a run that never got to its end
            send_heartbeats(config, failed=True)
        raise
    return report


def check_run_requirements(config: Config) -> None:
    """Refuse, before a run starts (exit 2), settings this Python cannot carry out."""
    if config.compress == "zstd":
        _zstandard()
    if config.encrypt_to:
        load_recipients(config.encrypt_to)


def _announce_failed_run(
    config: Config, report: RunReport | None, trigger: str, at: dt.datetime, exc: Exception
) -> None:
    """Alert that a run stopped with an error (``report``: what it did before, if it began).

    A run refused before it starts (a held lock, an unusable folder) is a missed night the
    operator must hear of. Never raises: the run's own error must still reach the operator;
    an undelivered alert is added to that error's hint.
    """
    if not should_alert(config, True):
        return
    error = exc if isinstance(exc, BackupError) else unexpected_error(exc)
    if report is None:
        report = RunReport(started_at=at, trigger=trigger, results=[])
    report.finished_at = report.finished_at or at
    run = {**report.to_json(), "status": "failed", "error": error.message, "hint": error.hint}
    try:
        alerts = send_alerts(config, run)
    except Exception:  # noqa: BLE001 - a broken alert must not hide the run's own error
        return
    for alert in alerts:
        if alert["status"] != "ok" and isinstance(exc, BackupError):
            undelivered = text("run.alert_failed_too", target=alert["target"], error=alert["error"])
            if exc.hint_text:
                undelivered = text("run.hint_and", hint=exc.hint_text, more=undelivered)
            exc.hint, exc.hint_text = str(undelivered), undelivered


def _copy_off_site(
    config: Config,
    report: RunReport,
    log: RunLog,
    local: dict[str, list[BackupFile]],
    started: dt.datetime,
) -> None:
    """Bring every destination up to date with the local backups (``local``: the backup
    folder as this run left it); a failure fails only that destination."""
    checksums = log.checksums()
    fresh = set()
    for result in [*report.results, *report.archives]:
        if result.backup and result.sha256:
            checksums[_path_key(result.backup)] = result.sha256
            fresh.add(_path_key(result.backup))
    checks = LocalBackupCheck(checksums, fresh)
    prunable = {r.database for r in [*report.results, *report.archives] if r.status == "ok"}
    encryption = None
    if config.encrypt_to:
        try:
            encryption = Encryption(load_recipients(config.encrypt_to), config.backup_dir)
        except BackupError as exc:  # e.g. the recipients file went away during the run
            # Nothing is sent, plain or not; the run is still logged.
            for destination in build_destinations(config):
                failed = DestinationResult(destination.label, "failed", error=exc.message)
                failed.hint, failed.failure = exc.hint, exc
                report.destinations.append(failed)
            return
    try:
        for destination in build_destinations(config):
            report.destinations.append(
                sync_destination(
                    destination,
                    config,
                    local,
                    checks=checks,
                    prunable=prunable,
                    sent_before=log.sent_by(destination.label),
                    encryption=encryption,
                    now=started.replace(tzinfo=None),
                )
            )
    finally:
        if encryption is not None:
            encryption.close()
    # A damaged backup found by an earlier run is reported until it is gone or sound again.
    by_path = {str(b.path): b for files in local.values() for b in files}
    for path in log.damaged_in_last_run():
        if path in by_path:
            checks.digest(by_path[path])
    report.damaged_backups = [
        {"backup": path, "problem": problem} for path, problem in sorted(checks.damaged.items())
    ]


def _previous_backup(
    backups: Sequence[BackupFile], recorded: dict[str, dict[str, Any]]
) -> PreviousBackup | None:
    """The newest backup whose checksums the run log knows, for sharing one file between the
    backups of an unchanged database."""
    for backup in backups:
        result = recorded.get(_path_key(backup.path))
        if result and isinstance(result.get("sha256"), str):
            content = result.get("content_sha256") or result["sha256"]
            sharing = tuple(b.path for b in backups if b.file_id == backup.file_id)
            return PreviousBackup(
                backup.path, result["sha256"], content, backup.compression, sharing
            )
    return None


def _backup_one(
    config: Config,
    db: DatabaseSpec,
    taken_at: dt.datetime,
    progress_stream: TextIO | None,
    previous: PreviousBackup | None = None,
) -> BackupResult:
    result = BackupResult(database=db.name, source=str(db.path), status="ok")
    started = time.monotonic()
    try:
        if not db.required and not os.path.lexists(db.path):
            result.status = "skipped"
            result.error = "optional database not present"
            return result
        made = create_backup(
            db,
            config.backup_dir,
            taken_at=taken_at.replace(tzinfo=None),
            busy_timeout=config.busy_timeout,
            progress_stream=progress_stream,
            compression=config.compress,
            previous=previous,
        )
        result.backup, result.size_bytes, result.sha256 = str(made.path), made.size, made.sha256
        result.content_sha256, result.compression = made.content_sha256, made.compression
        result.linked_to = str(made.linked_to) if made.linked_to else None
    except Exception as exc:  # noqa: BLE001 - one database's surprise must not stop the others
        error = as_backup_error(exc, db.path, "backing up")
        result.status, result.error, result.hint = "failed", error.message, error.hint
        result.failure = error
    result.duration_s = round(time.monotonic() - started, 3)
    return result


def listed_names(config: Config) -> list[str]:
    """The names the backup folder is listed by: each database's, and the archives'."""
    return [db.name for db in config.databases] + [archive_key(config.archive_folder())]


def archive_due(config: Config, archives: Sequence[BackupFile], *, now: dt.datetime) -> bool:
    """True when --run archives: archives are on, and the newest (by the time in its name)
    is ``archive_every_days`` old, or there is none."""
    if config.archive_every_days <= 0:
        return False
    if not archives:
        return True
    age = now.replace(tzinfo=None) - archives[0].taken_at
    return age >= dt.timedelta(days=config.archive_every_days) - ARCHIVE_SLACK


def run_archive(
    config: Config,
    *,
    trigger: str = "manual",
    clock: Callable[[], dt.datetime] = _now_local,
    progress_stream: TextIO | None = None,
) -> tuple[ArchiveResult, list[str | Text]]:
    """--archive: one archive now, under the run lock, logged as a run of kind "archive"
    (and announced like a run where --notify-on asks). Returns it, and the warnings
    (pruning's, the run log's)."""
    check_log_folder(config.log_file)
    ensure_backup_dir(config.backup_dir, app_folder=config.app_folder())
    with RunLock(config.backup_dir / LOCK_FILE_NAME, config.lock_timeout):
        started = clock()
        remove_stale_temp_files(config.backup_dir, [db.path.name for db in config.databases])
        log = RunLog.read(config.log_file)
        listed = list_backups(config.backup_dir, listed_names(config))
        result, errors = make_archive(
            config, taken_at=started, listed=listed, progress_stream=progress_stream
        )
        warnings: list[str | Text] = list(errors)
        failed = result.status == "failed"
        record: dict[str, Any] = {
            "kind": "archive",
            "started_at": _iso(started),
            "finished_at": _iso(clock()),
            "trigger": trigger,
            "status": "failed" if failed else "ok",
            "host": _host_name(),
            "version": __version__,
            "archives": [result.to_json()],
            **({"warnings": [str(e) for e in errors]} if errors else {}),
        }
        if should_alert(config, failed):
            record["alerts"] = send_alerts(config, record)
        warning = log.append(record, max_runs=config.log_max_runs, now=clock())
        if warning:
            warnings.append(warning)
    return result, warnings


class ArchiveNotStarted(BackupError):
    """An archive that would not fit: the disk budget, or the free space."""


def _archive_room(config: Config, listed: dict[str, list[BackupFile]]) -> Callable[[int], None]:
    """A check of an archive's estimated size against the disk budget (the backup folder's
    share of its disk, --max-disk-percent; ``listed``: the folder's files) and the free
    space; raises ArchiveNotStarted."""

    def check(estimate: int) -> None:
        try:
            usage = shutil.disk_usage(config.backup_dir)
        except OSError:
            return  # the archive's own writing reports a real problem
        folder = backup_folder_usage(listed)[1]
        share = (folder + estimate) * 100 / usage.total if usage.total else 0.0
        if share > config.max_disk_percent:
            raise ArchiveNotStarted(
                text(
                    "archive.over_budget",
                    size=_format_size(estimate),
                    percent=share,
                    budget=config.max_disk_percent,
                ),
                hint=text("archive.over_budget_hint"),
            )
        if estimate > usage.free:
            raise ArchiveNotStarted(
                text("archive.no_room", size=_format_size(estimate), free=_format_size(usage.free)),
                hint=text("archive.over_budget_hint"),
            )

    return check


def make_archive(
    config: Config,
    *,
    taken_at: dt.datetime,
    listed: dict[str, list[BackupFile]],
    progress_stream: TextIO | None = None,
) -> tuple[ArchiveResult, list[Text]]:
    """Archive ``config.archive_folder()`` now, then keep the newest ``archive_keep``
    archives. ``listed``: the backup folder as ``list_backups`` lists it by
    ``listed_names``, brought up to date here. Never raises: returns the result and the
    errors of pruning."""
    folder = config.archive_folder()
    result = ArchiveResult(archive_key(folder), str(folder), "ok")
    errors: list[Text] = []
    started = time.monotonic()
    try:
        made = create_archive(
            folder,
            config.backup_dir,
            taken_at=taken_at.replace(tzinfo=None),
            databases=[db.path for db in config.databases],
            exclude=config.archive_exclude,
            busy_timeout=config.busy_timeout,
            progress_stream=progress_stream,
            room=_archive_room(config, listed),
        )
        result.backup, result.size_bytes, result.sha256 = str(made.path), made.size, made.sha256
        result.members, result.databases = made.members, list(made.databases)
        result.changed, result.vanished = list(made.changed), list(made.vanished)
        result.unreadable = list(made.unreadable)
        listed[result.database], deleted, errors = prune_beside(
            result.backup,
            listed[result.database],
            now=taken_at.replace(tzinfo=None),
            **config.retention(result.database),
        )
        result.pruned = [str(p) for p in deleted]
    except Exception as exc:  # noqa: BLE001 - the run goes on to its copies and its log
        error = as_backup_error(exc, folder, "archiving")
        result.status = "skipped" if isinstance(error, ArchiveNotStarted) else "failed"
        result.error, result.hint, result.failure = error.message, error.hint, error
    result.duration_s = round(time.monotonic() - started, 3)
    return result, errors


# ======================================================================================
# Verify and restore
# ======================================================================================


@dataclasses.dataclass
class VerifyResult:
    """One backup checked: SQLite's own check, and its SHA-256 against the run log."""

    path: str
    database: str | None
    ok: bool
    integrity: str | Text
    sha256: str | None = None
    expected_sha256: str | None = None
    error: str | Text | None = None

    def to_json(self) -> dict[str, Any]:
        # English, as the run log and JSON keep every message.
        data = dataclasses.asdict(dataclasses.replace(self, integrity="", error=None))
        data["integrity"] = str(self.integrity)
        data["error"] = None if self.error is None else str(self.error)
        return data


def verify_backup(path: Path, *, quick: bool = False, expected: str | None = None) -> VerifyResult:
    """Check one backup, read-only: integrity_check (or quick_check) and its SHA-256."""
    from concurrent.futures import ThreadPoolExecutor

    parsed = parse_restorable_name(path.name) or parse_archive_name(path.name)
    result = VerifyResult(str(path), parsed.name if parsed else None, ok=False, integrity="")
    try:
        info = os.lstat(path)
    except OSError as exc:
        result.error = text("verify.cannot_read", path=path, error=exc.strerror or exc)
        return result
    if not stat.S_ISREG(info.st_mode):
        result.error = text("verify.not_regular", path=path)
        return result
    compression = parsed.compression if parsed else None
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            checked = pool.submit(check_backup_file, path, compression, quick=quick)
            hashed = pool.submit(sha256_file, path)
            result.integrity, result.sha256 = checked.result(), hashed.result()
    except BackupError as exc:
        result.error = exc.text
        return result
    except OSError as exc:
        result.error = text("verify.cannot_read", path=path, error=exc.strerror or exc)
        return result
    result.expected_sha256 = expected
    if result.integrity != "ok":
        check = "quick_check" if quick else "integrity_check"
        if compression == ARCHIVE_KIND:
            check = ARCHIVE_MANIFEST
        result.error = text("verify.check_says", check=check, verdict=result.integrity)
    elif expected is not None and expected != result.sha256:
        result.error = text("verify.sha_differs")
    result.ok = result.error is None
    return result


def verify_backups(
    config: Config,
    files: Sequence[Path],
    *,
    quick: bool,
    log: RunLog,
    identity: Path | None = None,
) -> list[VerifyResult]:
    """Verify the named files, or when none are named every backup of the configured
    databases and every archive (each member against its manifest).

    An encrypted copy (``.age``) is decrypted with ``identity`` into a temporary folder,
    then verified as the local backup it is a copy of.
    """
    if not files:
        found = list_backups(config.backup_dir, listed_names(config))
        files = [b.path for backups in found.values() for b in backups]
    packed = any(
        getattr(parse_restorable_name(p.name), "compression", None)
        or p.name.endswith(ENCRYPTED_SUFFIX)
        for p in files
    )
    # Unpacking and decrypting write temporary files, which a run would take for stale ones.
    lock = (
        RunLock(config.backup_dir / LOCK_FILE_NAME, config.lock_timeout)
        if packed and config.backup_dir.is_dir()
        else contextlib.nullcontext()
    )
    results = []
    with lock:
        for path in files:
            if path.name.endswith(ENCRYPTED_SUFFIX) and identity is not None:
                results.append(_verify_encrypted(config, path, identity, quick=quick, log=log))
            else:
                expected = log.recorded_sha256(path)
                results.append(verify_backup(path, quick=quick, expected=expected))
    return results


def _verify_encrypted(
    config: Config, path: Path, identity: Path, *, quick: bool, log: RunLog
) -> VerifyResult:
    folder = config.backup_dir if config.backup_dir.is_dir() else path.parent
    try:
        with decrypted_backup(path, identity, folder) as plain:
            expected = log.recorded_sha256(config.backup_dir / plain.name)
            result = verify_backup(plain, quick=quick, expected=expected)
    except BackupError as exc:
        if exc.exit_code == ExitCode.USAGE:
            raise  # an identity file that cannot be used: the operator must fix it
        name = parse_copy_name(path.name)[0]
        return VerifyResult(
            str(path), name.name if name else None, ok=False, integrity="", error=exc.text
        )
    result.path = str(path)
    return result


@dataclasses.dataclass(frozen=True)
class RestorePlan:
    """Which backup goes back into which database, and what the run log knows of it."""

    backup: Path
    target: Path
    database: str
    expected_sha256: str | None = None  # None: the run log does not know this file
    backup_of: str | None = None  # the database the backup's name names
    encrypted_from: Path | None = None  # the .age file ``backup`` was decrypted from

    @property
    def other_database(self) -> bool:
        """True when the backup's name names another database than the one it replaces."""
        return self.backup_of is not None and self.backup_of != self.database


def plan_restore(
    config: Config, backup: Path, target: Path | None, *, log: RunLog | None = None
) -> RestorePlan:
    """Find the database a backup belongs to (from its name), unless ``target`` is given."""
    if not backup.is_file():
        raise BackupError(
            text("restore.no_backup", path=backup), hint=text("restore.no_backup_hint")
        )
    parsed = parse_restorable_name(backup.name)
    if target is None:
        match = [db for db in config.databases if parsed and db.name == parsed.name]
        if not match:
            raise _usage_error(
                text("restore.unknown_database", file=backup.name),
                text("restore.unknown_database_hint"),
            )
        target = match[0].path
    # The safety copy is named after the database it holds, so that restoring it
    # (the printed undo) goes back into that same database.
    replaced = [db for db in config.databases if _path_key(db.path) == _path_key(target)]
    if target.is_dir():
        raise _usage_error(
            text("restore.target_folder", path=target), text("restore.target_folder_hint")
        )
    if not target.parent.is_dir():
        raise _usage_error(
            text("restore.no_target_folder", path=target), text("restore.check_target")
        )
    if _is_backup_file(target, backup, config.backup_dir):
        raise _usage_error(
            text("restore.into_backup", path=target), text("restore.into_backup_hint")
        )
    name = replaced[0].name if replaced else target.name
    return RestorePlan(
        backup=backup,
        target=target,
        database=name,
        expected_sha256=log.recorded_sha256(backup) if log else None,
        # A target that is none of the configured databases (a scratch file) names nothing.
        backup_of=parsed.name if parsed and replaced else None,
    )


def _is_backup_file(target: Path, backup: Path, backup_dir: Path) -> bool:
    """True when ``target``, followed through any link, is in the backup folder or is the
    same file (hard links included) as the backup or any file there."""
    real = target.resolve()
    if real.parent == backup_dir.resolve() or real == backup.resolve():
        return True
    try:
        identity = (real.stat().st_dev, real.stat().st_ino)
    except OSError:
        return False
    kept = [backup] + (list(backup_dir.iterdir()) if backup_dir.is_dir() else [])
    for path in kept:
        try:
            info = path.stat()
        except OSError:
            continue
        if (info.st_dev, info.st_ino) == identity:
            return True
    return False


def _app_still_open(target: Path, cause: Text) -> BackupError:
    return BackupError(
        text("restore.in_use", path=target, cause=cause), hint=text("restore.in_use_hint")
    )


def _lock_for_restore(target: Path, wait: float) -> tuple[sqlite3.Connection, bool]:
    """Open ``target`` holding SQLite's exclusive lock until closed; return (conn, was_wal).

    A WAL database cannot leave WAL mode while any other connection has it open, so
    that switch is how an app holding it open is seen. A rollback-journal database
    shows only an open transaction, through BEGIN EXCLUSIVE. Opening also replays a
    hot WAL or rolls back a hot journal left by a crashed app, before the safety copy.
    """
    deadline = time.monotonic() + wait
    conn = sqlite3.connect(
        sqlite_uri(target, "rw"), uri=True, timeout=min(wait, 1.0), isolation_level=None
    )
    try:
        was_wal = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal"
        while was_wal:
            try:
                mode = str(conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0]).lower()
            except sqlite3.OperationalError as exc:
                if classify_sqlite_error(exc) is not SqliteProblem.BUSY:
                    raise
                mode = "wal"
            if mode != "wal":
                break
            if time.monotonic() >= deadline:
                raise _app_still_open(target, text("restore.wal_open"))
            time.sleep(0.2)
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        remaining_ms = max(200, int((deadline - time.monotonic()) * 1000))
        conn.execute(f"PRAGMA busy_timeout={remaining_ms}")
        try:
            conn.execute("BEGIN EXCLUSIVE")
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            conn.execute("PRAGMA locking_mode=NORMAL")
            if was_wal:
                conn.execute("PRAGMA journal_mode=WAL")
            raise _app_still_open(target, text("restore.in_transaction", error=exc)) from exc
        return conn, was_wal
    except BaseException:
        conn.close()
        raise


def _write_safety_copy(
    conn: sqlite3.Connection, config: Config, target: Path, name: str, taken_at: dt.datetime
) -> tuple[Path, str]:
    """Copy the database about to be replaced (open on ``conn``, which holds its exclusive
    lock) next to the backups, verified, owner-only; return its path and SHA-256."""
    with sealed_copy(
        target, config.backup_dir, name=name, busy_timeout=config.busy_timeout, connection=conn
    ) as copy:
        names = (format_safety_name(name, taken_at, seq) for seq in range(10000))
        return publish_file(copy.path, config.backup_dir, names), copy.sha256


def restore_backup(
    config: Config,
    plan: RestorePlan,
    *,
    clock: Callable[[], dt.datetime] = _now_local,
    lock_held: bool = False,
) -> dict[str, Any]:
    """Put a verified backup back into its database through SQLite; log it; return the record.

    The database is held under SQLite's exclusive lock from before the safety copy
    until the restored content is in place, so no process reads a half-restored
    file, and a hot WAL can never be replayed over the restored data. ``lock_held``:
    the caller holds the run lock already (it decrypted the backup under it).
    """
    started = clock()
    record: dict[str, Any] = {
        "kind": "restore",
        "started_at": _iso(started),
        "trigger": "manual",
        "database": plan.database,
        "backup": str(plan.encrypted_from or plan.backup),
        "target": str(plan.target),
        "safety_copy": None,
        "safety_copy_sha256": None,
        "moved_aside": [],
        "status": "failed",
        "error": None,
    }
    check_log_folder(config.log_file)
    ensure_backup_dir(config.backup_dir, app_folder=config.app_folder())
    lock = RunLock(config.backup_dir / LOCK_FILE_NAME, config.lock_timeout)
    with contextlib.nullcontext() if lock_held else lock:
        log = RunLog.read(config.log_file)
        expected = log.recorded_sha256(plan.backup) or plan.expected_sha256
        checked = verify_backup(plan.backup, expected=expected)
        if not checked.ok:
            raise BackupError(
                text("restore.refused", path=plan.backup, error=checked.error),
                hint=text("restore.refused_hint"),
            )
        parsed = parse_restorable_name(plan.backup.name)
        try:
            with unpacked_backup(plan.backup, parsed.compression if parsed else None) as (
                plain,
                _,
            ):
                _put_back(config, plan, plain, started.replace(tzinfo=None), record)
            record["status"] = "ok"
        except BackupError as exc:
            record["error"] = exc.message
            raise
        finally:
            record["finished_at"] = _iso(clock())
            log.append(record, max_runs=config.log_max_runs, now=clock())
    return record


class _DamagedTarget(Exception):
    """The database to restore into is itself damaged: SQLite cannot copy it aside."""


def _restore_in_place(
    config: Config, plan: RestorePlan, plain: Path, started: dt.datetime
) -> tuple[Path, str]:
    try:
        conn, was_wal = _lock_for_restore(plan.target, min(config.busy_timeout, RESTORE_WAIT_S))
    except sqlite3.Error as exc:
        damaged = classify_sqlite_error(exc) in (
            SqliteProblem.DAMAGED,
            SqliteProblem.NOT_A_DATABASE,
        )
        if damaged and _has_sqlite_header(plan.target):
            raise _DamagedTarget from exc
        error = _describe_sqlite_error(exc, plan.target)
        raise BackupError(
            text("restore.nothing_changed_after", error=error.text), hint=error.hint_text
        ) from exc
    restored = False
    try:
        try:
            safety, safety_sha = _write_safety_copy(
                conn, config, plan.target, plan.database, started.replace(tzinfo=None)
            )
        except (VerificationFailed, DatabaseDamaged) as exc:
            raise _DamagedTarget from exc
        src = sqlite3.connect(sqlite_uri(plain, "ro") + "&immutable=1", uri=True)
        try:
            # Through the target's rollback journal: a crash here leaves the old content.
            src.backup(conn, pages=-1)
        except sqlite3.Error as exc:
            raise BackupError(
                text("restore.failed", target=plan.target, error=exc),
                hint=text("restore.also_saved", path=safety),
            ) from exc
        finally:
            src.close()
        restored = True
        try:
            conn.execute("PRAGMA locking_mode=NORMAL")
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()  # drops the lock
            if was_wal:
                conn.execute("PRAGMA journal_mode=WAL")
            verdict = [str(row[0]) for row in conn.execute("PRAGMA quick_check").fetchall()]
        except sqlite3.Error as exc:
            raise BackupError(
                text("restore.check_after_failed", target=plan.target, error=exc),
                hint=text("restore.check_after_failed_hint"),
            ) from exc
        if verdict != ["ok"]:
            raise BackupError(
                text("restore.check_failed_after", path=plan.target),
                hint=text("restore.use_safety_copy", safety=safety),
            )
        return safety, safety_sha
    finally:
        if was_wal and not restored:
            # Refused or failed: leave the database in the journal mode it had.
            try:
                conn.execute("PRAGMA locking_mode=NORMAL")
                conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
                conn.execute("PRAGMA journal_mode=WAL")
            except sqlite3.Error:
                pass
        conn.close()


def _put_back(
    config: Config, plan: RestorePlan, plain: Path, started: dt.datetime, record: dict[str, Any]
) -> None:
    """Restore ``plain`` into the plan's database, recording what was kept aside."""
    if not plan.target.exists():
        record["moved_aside"] = [str(p) for p in _move_aside_leftovers(plan, started)]
        _restore_new_file(plan, plain, config.busy_timeout)
        return
    try:
        safety, safety_sha = _restore_in_place(config, plan, plain, started)
        record["safety_copy"], record["safety_copy_sha256"] = str(safety), safety_sha
    except _DamagedTarget:
        # The usual reason to restore: SQLite cannot copy a damaged database aside,
        # so its files are moved aside as they are, for salvage, and it is recreated.
        moved = _move_aside_leftovers(plan, started, with_database=True)
        record["moved_aside"] = [str(p) for p in moved]
        record["safety_copy"] = str(moved[0])
        _restore_new_file(plan, plain, config.busy_timeout, like=moved[0])


def _has_sqlite_header(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(16) == _SQLITE_HEADER
    except OSError:
        return False


def _move_aside_leftovers(
    plan: RestorePlan, started: dt.datetime, *, with_database: bool = False
) -> list[Path]:
    """Move a -wal, -shm or -journal left by a gone database out of the new one's way
    (and, for a damaged database, the database file itself).

    SQLite would replay a stale -wal into the recreated file; kept under a name of
    their own beside it, they are still there to inspect or salvage.
    """
    moved = []
    for suffix in (
        ("", "-wal", "-shm", "-journal") if with_database else ("-wal", "-shm", "-journal")
    ):
        leftover = Path(f"{plan.target}{suffix}")
        if not os.path.lexists(leftover):
            continue
        stamp = started.strftime(TIMESTAMP_FORMAT)
        names = (
            f"{plan.target.name}.{stamp}{'-' + str(n) if n else ''}{SAFETY_SUFFIX}{suffix}"
            for n in range(1000)
        )
        moved.append(publish_file(leftover, leftover.parent, names))
    return moved


def _restore_new_file(
    plan: RestorePlan, plain: Path, busy_timeout: float, *, like: Path | None = None
) -> None:
    """Recreate a database file that is gone: temporary file, verify, rename.

    The new file takes the mode, owner and journal mode of ``like`` (the damaged file
    it replaces), or else an ordinary mode and the folder's owner: a restore run by
    root must not leave a database the app's own user cannot open.
    """
    folder = plan.target.parent
    src = sqlite3.connect(sqlite_uri(plain, "ro") + "&immutable=1", uri=True)
    try:
        with sealed_copy(
            plan.backup, folder, name=plan.database, busy_timeout=busy_timeout, connection=src
        ) as copy:
            _adopt_ownership(copy.path, like or folder, is_folder=like is None)
            try:
                publish_file(copy.path, folder, [plan.target.name])
            except BackupError:
                raise BackupError(
                    text("restore.appeared", target=plan.target),
                    hint=text("restore.appeared_hint"),
                ) from None
    finally:
        src.close()
    if like is not None and _wal_in_header(like):
        conn = sqlite3.connect(sqlite_uri(plan.target, "rw"), uri=True, timeout=busy_timeout)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        finally:
            conn.close()


def _wal_in_header(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            header = handle.read(20)
    except OSError:
        return False
    return header.startswith(_SQLITE_HEADER) and header[18:20] == b"\x02\x02"


def _adopt_ownership(path: Path, reference: Path, *, is_folder: bool) -> None:
    """Give ``path`` the mode and owner of ``reference`` (a file), or of a new file in the
    folder ``reference``; best effort, as only root may give files away."""
    if os.name != "posix":
        return
    try:
        info = reference.stat()
        if is_folder:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(path, 0o666 & ~umask)
        else:
            os.chmod(path, stat.S_IMODE(info.st_mode))
        if os.geteuid() == 0:
            os.chown(path, info.st_uid, info.st_gid)
    except OSError:
        pass


# ======================================================================================
# Restore drills
# ======================================================================================


@dataclasses.dataclass
class DrillResult:
    """One database's drill: its newest backup restored into a scratch folder and compared
    with the live database."""

    database: str
    backup: str | None
    status: str  # "ok", "failed" or "skipped"
    # Each a Text: shown in the operator's language, logged in English.
    findings: list[str | Text] = dataclasses.field(default_factory=list)
    restore_s: float = 0.0
    check_s: float = 0.0
    tables: int = 0
    rows_read: int = 0
    backup_age_s: float | None = None
    compared: bool = False  # with the live database (False when it is gone)

    def to_json(self) -> dict[str, Any]:
        """The result as logged; the findings stay Text until the log writes them (in English)."""
        data = dataclasses.asdict(dataclasses.replace(self, findings=[]))
        data["findings"] = list(self.findings)
        return data


def drill_databases(
    config: Config,
    *,
    trigger: str = "manual",
    clock: Callable[[], dt.datetime] = _now_local,
) -> dict[str, Any]:
    """Restore each database's newest backup into a scratch folder, through the restore
    path, and check it against the live database; log the drill and alert on failure.

    The scratch folder is a temporary folder in the backup folder, never beside the live
    database; it is removed afterwards, and one that a killed drill left is removed by the
    next run. Returns the drill's record (``"kind": "drill"``) as logged.
    """
    started = clock()
    record: dict[str, Any] = {
        "kind": "drill",
        "started_at": _iso(started),
        "finished_at": None,
        "trigger": trigger,
        "status": "failed",
        "host": _host_name(),
        "version": __version__,
        "drills": [],
    }
    check_log_folder(config.log_file)
    ensure_backup_dir(config.backup_dir, app_folder=config.app_folder())
    with RunLock(config.backup_dir / LOCK_FILE_NAME, config.lock_timeout):
        remove_stale_temp_files(config.backup_dir, [db.path.name for db in config.databases])
        log = RunLog.read(config.log_file)
        found = list_backups(config.backup_dir, [db.name for db in config.databases])
        results = []
        for db in config.databases:
            if not found[db.name]:
                status = "skipped" if not db.required and not db.path.exists() else "failed"
                finding = [] if status == "skipped" else [text("drill.no_backup")]
                results.append(DrillResult(db.name, None, status, finding))
                continue
            results.append(drill_one(config, db, found[db.name][0], log, now=started))
        record["drills"] = [r.to_json() for r in results]
        failed = any(r.status == "failed" for r in results)
        record["status"] = "failed" if failed else "ok"
        record["finished_at"] = _iso(clock())
        if should_alert(config, failed):
            record["alerts"] = send_alerts(config, record)
        warning = log.append(record, max_runs=config.log_max_runs, now=clock())
        if warning:
            record["warnings"] = [warning]
    return record


def drill_one(
    config: Config, db: DatabaseSpec, backup: BackupFile, log: RunLog, *, now: dt.datetime
) -> DrillResult:
    """Restore ``backup`` into a scratch folder as --restore would, then check it."""
    result = DrillResult(db.name, str(backup.path), "failed")
    result.backup_age_s = (now.astimezone().replace(tzinfo=None) - backup.taken_at).total_seconds()
    scratch = config.backup_dir / format_temp_name("drill")
    began = time.monotonic()
    try:
        os.mkdir(scratch, 0o700)
        try:
            target = scratch / db.path.name
            plan = RestorePlan(backup.path, target, db.name, log.recorded_sha256(backup.path))
            checked = verify_backup(backup.path, expected=plan.expected_sha256)
            if not checked.ok:
                result.findings.append(text("drill.fails_check", error=checked.error))
                return result
            with unpacked_backup(backup.path, backup.compression) as (plain, _):
                _restore_new_file(plan, plain, config.busy_timeout)
            result.restore_s = round(time.monotonic() - began, 3)
            began = time.monotonic()
            result.findings += _compare_with_live(config, db, target, result)
            result.check_s = round(time.monotonic() - began, 3)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    except BackupError as exc:
        result.findings.append(exc.text)
    except (OSError, sqlite3.Error) as exc:
        result.findings.append(as_backup_error(exc, backup.path, "drilling").text)
    limit = dt.timedelta(hours=config.max_age_hours) + CHECK_GRACE
    if result.backup_age_s > limit.total_seconds():
        result.findings.append(text("drill.too_old", age=_age_text(result.backup_age_s)))
    result.status = "failed" if result.findings else "ok"
    return result


def _schema(conn: sqlite3.Connection) -> dict[tuple[str, str], str]:
    rows = conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
    ).fetchall()
    return {(kind, name): " ".join((sql or "").split()) for kind, name, sql in rows}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _compare_with_live(
    config: Config, db: DatabaseSpec, restored: Path, result: DrillResult
) -> list[str | Text]:
    """What is wrong with the restored copy: SQLite's checks, its schema and row counts
    against the live database (when there is one still), and any table that does not read
    end to end."""
    findings: list[str | Text] = []
    copy = sqlite3.connect(sqlite_uri(restored, "ro"), uri=True)
    live = (
        sqlite3.connect(sqlite_uri(db.path, "ro"), uri=True, timeout=config.busy_timeout)
        if db.path.exists()
        else None  # the database is gone: the backup is all there is, and is checked alone
    )
    result.compared = live is not None
    try:
        problems = [row[0] for row in copy.execute("PRAGMA integrity_check(20)")]
        if problems != ["ok"]:
            shown = "; ".join(problems[:3])
            if len(problems) > 3:
                findings.append(
                    text("drill.integrity_more", problems=shown, more=len(problems) - 3)
                )
            else:
                findings.append(text("drill.integrity", problems=shown))
        violations = copy.execute("PRAGMA foreign_key_check").fetchall()
        if violations:
            tables = sorted({row[0] for row in violations})
            values = {"count": len(violations), "tables": ", ".join(tables)}
            findings.append(text("drill.foreign_keys", **values))
        ours = _schema(copy)
        theirs = _schema(live) if live is not None else ours
        for kind, name in sorted(set(theirs) - set(ours)):
            findings.append(text("drill.missing_from_backup", kind=kind, name=name))
        for kind, name in sorted(set(ours) - set(theirs)):
            findings.append(text("drill.not_in_live", kind=kind, name=name))
        for key in sorted(set(ours) & set(theirs)):
            if ours[key] != theirs[key]:
                findings.append(text("drill.differs", kind=key[0], name=key[1]))
        floor = 1 - config.max_shrink_percent / 100
        for kind, name in sorted(ours):
            if kind != "table" or ours[(kind, name)].upper().startswith("CREATE VIRTUAL"):
                continue
            result.tables += 1
            try:
                rows = sum(1 for _ in copy.execute(f"SELECT * FROM {_quote(name)}"))
            except sqlite3.Error as exc:
                findings.append(text("drill.unreadable_table", name=name, error=str(exc)))
                continue
            result.rows_read += rows
            if live is None or (kind, name) not in theirs:
                continue
            (live_rows,) = live.execute(f"SELECT COUNT(*) FROM {_quote(name)}").fetchone()
            if rows < live_rows * floor:
                values = {"rows": rows, "live": live_rows, "percent": config.max_shrink_percent}
                findings.append(text("drill.shrank", name=name, **values))
    finally:
        copy.close()
        if live is not None:
            live.close()
    return findings


def drill_due(config: Config, log: RunLog, *, now: dt.datetime) -> bool:
    """True when automatic drills are on and no drill passed in ``drill_every_days``."""
    if config.drill_every_days <= 0:
        return False
    last = log.last_good_drill()
    return last is None or now - last >= dt.timedelta(days=config.drill_every_days)


def render_drill(record: dict[str, Any], symbols: Symbols, lang: str = "en") -> str:
    """The drill's short report in ``lang``: one block per database."""

    def tr(key: str, /, **values: Any) -> str:
        return text(key, **values).render(lang)

    lines = []
    for drill in record["drills"]:
        name, status = drill["database"], drill["status"]
        if status == "skipped":
            lines.append(f"{symbols.info} " + tr("drill.skipped", database=name))
            continue
        backup = Path(drill["backup"]).name if drill["backup"] else "-"
        if status == "ok":
            key = "drill.passed" if drill.get("compared") else "drill.passed_alone"
            values = {"tables": drill["tables"], "rows": drill["rows_read"]}
            line = tr(key, database=name, file=backup, seconds=drill["restore_s"], **values)
            lines.append(f"{symbols.ok} {line}")
        else:
            lines.append(f"{symbols.fail} " + tr("drill.failed", database=name, file=backup))
        lines += [f"   - {render_text(finding, lang)}" for finding in drill["findings"]]
    if record["status"] == "ok":
        lines.append(f"{symbols.ok} " + tr("drill.all_passed"))
    else:
        lines.append(f"{symbols.fail} " + tr("drill.any_failed"))
    return "\n".join(lines)


# ======================================================================================
# Reports
# ======================================================================================


@dataclasses.dataclass(frozen=True)
class Symbols:
    """Status marks; plain ASCII on consoles that cannot show the emoji."""

    ok: str
    fail: str
    warn: str
    info: str
    prune: str
    start: str

    @classmethod
    def for_stream(cls, stream: TextIO) -> Symbols:
        fancy = cls("✅", "❌", "⚠️", "ℹ️", "🗑️", "🔰")
        encoding = getattr(stream, "encoding", None) or "ascii"
        try:
            "".join(dataclasses.astuple(fancy)).encode(encoding)
        except (UnicodeEncodeError, LookupError):
            return cls("[OK]", "[FAILED]", "[WARN]", "[INFO]", "[DELETED]", "==>")
        return fancy


def _text_or_none(value: Any) -> str | None:
    """A log value shown as text; a hand-edited log may hold anything."""
    return None if value is None else str(value)


def collect_history(log: RunLog, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` per-database results of the log, newest first."""
    rows = []
    for run in reversed(log.runs):
        if run.get("kind") == "drill":
            rows += [
                {
                    "time": run.get("started_at"),
                    "action": "drill",
                    "database": drill.get("database"),
                    "file": _text_or_none(drill.get("backup")),
                    "size_bytes": None,
                    "status": drill.get("status"),
                    "error": "; ".join(str(f) for f in drill.get("findings") or [])
                    or (text("history.not_present") if drill.get("status") == "skipped" else None),
                    "trigger": run.get("trigger"),
                }
                for drill in run.get("drills") or []
                if isinstance(drill, dict)
            ]
        elif run.get("kind", "backup") not in ("backup", "archive"):
            rows.append(
                {
                    "time": run.get("started_at"),
                    "action": str(run.get("kind")),
                    "database": run.get("database"),
                    "file": _text_or_none(run.get("backup")),
                    "size_bytes": None,
                    "status": run.get("status"),
                    "error": _text_or_none(run.get("error")),
                    "trigger": run.get("trigger"),
                }
            )
        else:
            rows += [
                {
                    "time": run.get("started_at"),
                    "action": action,
                    "database": result.get("database"),
                    "file": _text_or_none(result.get("backup")),
                    "size_bytes": result.get("size_bytes"),
                    "status": result.get("status"),
                    "error": _text_or_none(result.get("error")),
                    "trigger": run.get("trigger"),
                }
                for action, key in (("backup", "results"), ("archive", "archives"))
                for result in run.get(key, [])
            ]
        if len(rows) >= limit:
            break
    return rows[:limit]


def collect_history_from_disk(config: Config, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` backups in the backup folder, newest first: the history when
    the run log is missing or cannot be read (each row's status is ``found``)."""
    found = list_backups(config.backup_dir, listed_names(config))
    backups = sorted(
        (b for files in found.values() for b in files), key=lambda b: b.sort_key, reverse=True
    )
    return [
        {
            "time": _iso(backup.taken_at.astimezone()),
            "action": "archive" if backup.compression == ARCHIVE_KIND else "backup",
            "database": backup.name,
            "file": str(backup.path),
            "size_bytes": backup.size,
            "status": "found",
            "error": None,
            "trigger": None,
        }
        for backup in backups[:limit]
    ]


def render_history(rows: Sequence[dict[str, Any]], symbols: Symbols, lang: str = "en") -> str:
    """History rows as an aligned text table, in ``lang`` (errors quoted as logged)."""

    def tr(key: str, /, **values: Any) -> str:
        return text(key, **values).render(lang)

    if not rows:
        return tr("history.empty")
    lines = [tr("history.header")]
    for row in rows:
        moment = parse_iso(row["time"])
        when = moment.strftime("%Y-%m-%d %H:%M:%S") if moment else str(row["time"])
        size = _format_size(row["size_bytes"], lang) if isinstance(row["size_bytes"], int) else "-"
        status = str(row["status"])
        mark = (
            symbols.ok
            if status == "ok"
            else symbols.info
            if status in ("skipped", "found")
            else symbols.fail
        )
        detail = Path(row["file"]).name if row["file"] else (row["error"] or "")
        if row.get("action") in ("restore", "restore_archive"):
            detail = tr("history.restored_from", file=detail)
        elif row.get("action") == "drill":
            key = "history.drill_of" if row["file"] else "history.drill"
            detail = tr(key, detail=detail)
        if row["file"] and row["error"]:
            detail += f" ({row['error']})"
        lines.append(
            f"{when:<19}  {str(row['database']):<22} {size:>12}  {mark} {status:<6} {detail}"
        )
    return "\n".join(lines)


def _unique_bytes(files: Iterable[BackupFile], seen: set[tuple[int, int]]) -> int:
    """Bytes on disk of ``files`` not in ``seen`` (files already counted), each hard-linked
    file once; adds them to ``seen``."""
    size = 0
    for backup in files:
        if backup.file_id not in seen:
            seen.add(backup.file_id)
            size += backup.size
    return size


def backup_folder_usage(backups: dict[str, list[BackupFile]]) -> tuple[int, int]:
    """The backup files listed and their bytes on disk, each hard-linked file counted once."""
    seen: set[tuple[int, int]] = set()
    size = sum(_unique_bytes(files, seen) for files in backups.values())
    return sum(len(files) for files in backups.values()), size


def collect_stats(
    config: Config,
    log: RunLog,
    *,
    now: dt.datetime,
    backups: dict[str, list[BackupFile]] | None = None,
) -> dict[str, Any]:
    """Per-database counts, sizes, ages, success rates; the backup folder's share of the disk.

    ``backups``: the folder's listing when the caller has it already.
    """
    names = [db.name for db in config.databases]
    if backups is None:
        backups = list_backups(config.backup_dir, listed_names(config))
    outcomes: dict[str, list[str]] = {name: [] for name in names}
    for run in log.backup_runs(since=now - dt.timedelta(days=config.keep_days)):
        for result in run.get("results", []):
            if result.get("database") in outcomes and result.get("status") in ("ok", "failed"):
                outcomes[result["database"]].append(result["status"])
    drills = log.drills()
    databases = []
    seen_files: set[tuple[int, int]] = set()
    folder_bytes = 0
    naive_now = now.astimezone().replace(tzinfo=None)
    for db in config.databases:
        files = backups[db.name]
        unique = _unique_bytes(files, seen_files)
        folder_bytes += unique
        results = outcomes[db.name]
        drill, drilled = drills.get(db.name, ({}, None))
        try:
            db_size: int | None = db.path.stat().st_size
        except OSError:
            db_size = None
        databases.append(
            {
                "database": db.name,
                "source": str(db.path),
                "source_size_bytes": db_size,
                "backups": len(files),
                "total_bytes": unique,
                "newest": files[0].path.name if files else None,
                "newest_at": _iso(files[0].taken_at.astimezone()) if files else None,
                "newest_age_s": (naive_now - files[0].taken_at).total_seconds() if files else None,
                "newest_size_bytes": files[0].size if files else None,
                "oldest": files[-1].path.name if files else None,
                "oldest_at": _iso(files[-1].taken_at.astimezone()) if files else None,
                "runs_in_window": len(results),
                "success_rate": (results.count("ok") / len(results)) if results else None,
                "last_drill_status": drill.get("status"),
                "last_drill_at": _iso(drilled) if drilled else None,
                "last_drill_findings": drill.get("findings"),
            }
        )
    folder = config.archive_folder()
    archives = backups.get(archive_key(folder), [])
    archive_bytes = _unique_bytes(archives, seen_files)
    folder_bytes += archive_bytes
    last = log.last_archive()
    try:
        usage = shutil.disk_usage(
            config.backup_dir if config.backup_dir.exists() else config.app_root
        )
        disk_total, disk_free = usage.total, usage.free
    except OSError:
        disk_total = disk_free = None
    share = (folder_bytes * 100 / disk_total) if disk_total else None
    return {
        "destinations": collect_destinations(config, log, now=now),
        "backup_dir": str(config.backup_dir),
        "keep_days": config.keep_days,
        "databases": databases,
        "archives": {
            "source": str(folder),
            "every_days": config.archive_every_days,
            "keep": config.archive_keep,
            "count": len(archives),
            "total_bytes": archive_bytes,
            "newest": archives[0].path.name if archives else None,
            "newest_at": _iso(archives[0].taken_at.astimezone()) if archives else None,
            "newest_age_s": (naive_now - archives[0].taken_at).total_seconds()
            if archives
            else None,
            "newest_size_bytes": archives[0].size if archives else None,
            "last_status": last.get("status") if last else None,
            "last_error": last.get("error") if last else None,
        },
        "backup_dir_bytes": folder_bytes,
        "disk_total_bytes": disk_total,
        "disk_free_bytes": disk_free,
        "disk_share_percent": share,
        "disk_budget_percent": config.max_disk_percent,
        "within_budget": share is None or share <= config.max_disk_percent,
    }


def collect_destinations(config: Config, log: RunLog, *, now: dt.datetime) -> list[dict[str, Any]]:
    """Each destination's newest copy of each database, and how its last run went."""
    names = [db.name for db in config.databases]
    naive_now = now.astimezone().replace(tzinfo=None)
    last = log.last_destination_results()
    found = []
    for destination in build_destinations(config):
        entry: dict[str, Any] = {
            "destination": destination.label,
            "last_run_status": last.get(destination.label, {}).get("status"),
            "last_run_error": last.get(destination.label, {}).get("error"),
            "newest": {},
            "error": None,
        }
        try:
            if destination.can_list:
                listed = destination.list_backups(names)
                newest = {n: (f[0].path.name, f[0].taken_at) for n, f in listed.items() if f}
            else:
                sent = [parse_copy_name(n)[0] for n in log.sent_by(destination.label)]
                newest = {}
                for parsed in sorted((p for p in sent if p), key=lambda p: (p.taken_at, p.seq)):
                    name = format_backup_name(
                        parsed.name, parsed.taken_at, parsed.seq, parsed.compression
                    )
                    newest[parsed.name] = (name, parsed.taken_at)
        except BackupError as exc:
            entry["error"] = exc.text
            newest = {}
        entry["newest"] = {
            name: {"file": file, "age_s": (naive_now - taken_at).total_seconds()}
            for name, (file, taken_at) in newest.items()
        }
        found.append(entry)
    return found


def render_stats(stats: dict[str, Any], symbols: Symbols, lang: str = "en") -> str:
    """The statistics as text in ``lang``, one block per database and one for the folder."""

    def tr(key: str, /, **values: Any) -> str:
        return text(key, **values).render(lang)

    lines = []
    for db in stats["databases"]:
        lines.append(f"{db['database']}  ({db['source']})")
        if db["backups"]:
            size = _format_size(db["total_bytes"], lang)
            lines.append("  " + tr("stats.backups", count=db["backups"], size=size))
            newest = parse_iso(db["newest_at"])
            oldest = parse_iso(db["oldest_at"])
            line = tr(
                "stats.newest",
                time=f"{newest:%Y-%m-%d %H:%M:%S}",
                age=_format_age(db["newest_age_s"], lang),
                size=_format_size(db["newest_size_bytes"], lang),
            )
            lines.append("  " + line)
            lines.append("  " + tr("stats.oldest", time=f"{oldest:%Y-%m-%d %H:%M:%S}"))
        else:
            lines.append(f"  {symbols.warn} " + tr("stats.no_backups"))
        if db["success_rate"] is not None:
            line = tr(
                "stats.success_rate",
                days=stats["keep_days"],
                percent=db["success_rate"] * 100,
                runs=db["runs_in_window"],
            )
            lines.append("  " + line)
        drilled = parse_iso(db.get("last_drill_at"))
        if drilled is not None:
            passed = db["last_drill_status"] == "ok"
            mark = symbols.ok if passed else symbols.fail
            key = "stats.last_drill_ok" if passed else "stats.last_drill_failed"
            lines.append(f"  {mark} " + tr(key, time=f"{drilled:%Y-%m-%d %H:%M:%S}"))
        else:
            lines.append(f"  {symbols.info} " + tr("stats.no_drill"))
    archives = stats["archives"]
    lines.append(tr("stats.archives", folder=archives["source"]))
    if archives["count"]:
        size = _format_size(archives["total_bytes"], lang)
        lines.append("  " + tr("stats.archive_count", count=archives["count"], size=size))
        newest = parse_iso(archives["newest_at"])
        line = tr(
            "stats.newest",
            time=f"{newest:%Y-%m-%d %H:%M:%S}",
            age=_format_age(archives["newest_age_s"], lang),
            size=_format_size(archives["newest_size_bytes"], lang),
        )
        lines.append("  " + line)
    else:
        lines.append(f"  {symbols.info} " + tr("stats.no_archives"))
    if archives["last_status"] in ("failed", "skipped"):
        mark = symbols.fail if archives["last_status"] == "failed" else symbols.warn
        line = tr("stats.archive_last_failed", error=archives["last_error"])
        lines.append(f"  {mark} {line}")
    if archives["every_days"]:
        lines.append("  " + tr("stats.archive_every", days=archives["every_days"]))
    else:
        lines.append("  " + tr("stats.archive_off"))
    lines.append(tr("stats.folder", path=stats["backup_dir"]))
    lines.append("  " + tr("stats.folder_size", size=_format_size(stats["backup_dir_bytes"], lang)))
    if stats["disk_total_bytes"]:
        mark = symbols.ok if stats["within_budget"] else symbols.warn
        line = tr(
            "stats.disk_share",
            percent=stats["disk_share_percent"],
            disk=_format_size(stats["disk_total_bytes"], lang),
            budget=stats["disk_budget_percent"],
        )
        lines.append(f"  {mark} {line}")
        lines.append("  " + tr("stats.free", size=_format_size(stats["disk_free_bytes"], lang)))
    for far in stats["destinations"]:
        lines.append(tr("stats.copies_at", destination=far["destination"]))
        if far["error"]:
            lines.append(f"  {symbols.warn} {render_text(far['error'], lang)}")
        for name, newest in far["newest"].items():
            age = _format_age(newest["age_s"], lang)
            lines.append(
                "  " + tr("stats.copy_newest", database=name, file=newest["file"], age=age)
            )
        if far["last_run_status"] == "failed":
            line = tr("stats.copy_last_run_failed", error=far["last_run_error"])
            lines.append(f"  {symbols.fail} {line}")
    return "\n".join(lines)


class CheckStatus(enum.IntEnum):
    """Nagios plugin states: the exit code of --check."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


def describe_damage(backup: BackupFile, logged_size: Any) -> Text | None:
    """A cheap look for damage (no full read): the size the run log recorded, and for a
    plain backup the SQLite header and the page count it declares. None when whole."""
    name = backup.path.name
    if isinstance(logged_size, int) and logged_size != backup.size:
        return text("verify.size_logged", file=name, size=backup.size, logged=logged_size)
    if backup.compression:
        return None
    try:
        with open(backup.path, "rb") as handle:
            header = handle.read(100)
    except OSError as exc:
        return text("verify.cannot_read", path=name, error=exc.strerror or exc)
    if len(header) < 100 or not header.startswith(_SQLITE_HEADER):
        return text("verify.not_sqlite", file=name)
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    page_count = int.from_bytes(header[28:32], "big")
    # The header's page count is valid when its "version-valid-for" matches the change counter.
    if header[92:96] == header[24:28] and page_size * page_count != backup.size:
        declared = page_size * page_count
        return text("verify.header_size", file=name, size=backup.size, declared=declared)
    return None


Problem = tuple[CheckStatus, Text]


@dataclasses.dataclass(frozen=True)
class _CheckInput:
    """What the rules of --check read: settings, time, figures, the folder and the log."""

    config: Config
    now: dt.datetime
    stats: dict[str, Any]
    backups: dict[str, list[BackupFile]]
    last_results: dict[str, dict[str, Any]]
    log: RunLog


def _rule_missing_or_stale(
    ci: _CheckInput, db: DatabaseSpec, figures: dict[str, Any]
) -> list[Problem]:
    """No backup of a database that should have one; the newest too old or dated ahead."""
    files = ci.backups[db.name]
    if not files:
        needed = db.required or figures["source_size_bytes"] is not None
        return [(CheckStatus.CRITICAL, text("check.no_backup", database=db.name))] if needed else []
    problems: list[Problem] = []
    age = dt.timedelta(seconds=figures["newest_age_s"])
    if age > dt.timedelta(hours=ci.config.max_age_hours) + CHECK_GRACE:
        problems.append(
            (
                CheckStatus.CRITICAL,
                text(
                    "check.stale",
                    database=db.name,
                    age=_age_text(age.total_seconds()),
                    limit=ci.config.max_age_hours,
                ),
            )
        )
    if files[0].taken_at > ci.now.astimezone().replace(tzinfo=None) + CHECK_GRACE:
        problems.append(
            (
                CheckStatus.WARNING,
                text("check.future", database=db.name, file=files[0].path.name),
            )
        )
    return problems


def _rule_newest_damaged(
    ci: _CheckInput, db: DatabaseSpec, figures: dict[str, Any]
) -> list[Problem]:
    """The newest backup's size and header, then its whole content against its SHA-256."""
    if not ci.backups[db.name]:
        return []
    newest = ci.backups[db.name][0]
    logged = ci.log.backups().get(_path_key(newest.path), {})
    damage = describe_damage(newest, logged.get("size_bytes"))
    if damage is None and isinstance(logged.get("sha256"), str):
        # Read in full: bit rot or tampering keeps the size and the header.
        try:
            if sha256_file(newest.path) != logged["sha256"]:
                damage = text("verify.sha_differs_run", path=newest.path)
        except OSError as exc:
            damage = text("verify.cannot_read", path=newest.path, error=exc.strerror or exc)
    if damage:
        return [(CheckStatus.CRITICAL, text("check.damaged", database=db.name, damage=damage))]
    return []


def _rule_last_run_failed(
    ci: _CheckInput, db: DatabaseSpec, figures: dict[str, Any]
) -> list[Problem]:
    """The last run that backed up this database failed."""
    last = ci.last_results.get(db.name)
    if last and last.get("status") == "failed":
        error = last.get("error")
        return [
            (CheckStatus.CRITICAL, text("check.last_run_failed", database=db.name, error=error))
        ]
    return []


def _rule_shrank(ci: _CheckInput, db: DatabaseSpec, figures: dict[str, Any]) -> list[Problem]:
    """The newest backup much smaller than the one before, or than the database."""
    files = ci.backups[db.name]
    if not files:
        return []
    newest, floor = files[0], 1 - ci.config.max_shrink_percent / 100
    previous, source_size = figures["previous_size_bytes"], figures["source_size_bytes"]
    same_kind = len(files) > 1 and files[1].compression == newest.compression
    if previous and same_kind and newest.size < previous * floor:
        return [
            (
                CheckStatus.WARNING,
                text(
                    "check.shrank",
                    database=db.name,
                    percent=newest.size * 100 / previous,
                ),
            )
        ]
    if not newest.compression and source_size and newest.size < source_size * floor:
        return [
            (
                CheckStatus.WARNING,
                text(
                    "check.smaller_than_database",
                    database=db.name,
                    percent=newest.size * 100 / source_size,
                ),
            )
        ]
    return []


def _rule_drill(ci: _CheckInput, db: DatabaseSpec, figures: dict[str, Any]) -> list[Problem]:
    """The last restore drill of this database failed, or the last good one is too old."""
    drill, started = ci.log.drills().get(db.name, ({}, None))
    if drill.get("status") == "failed":
        findings = "; ".join(str(f) for f in drill.get("findings") or [])
        failed = text("check.drill_failed", database=db.name, findings=findings)
        return [(CheckStatus.CRITICAL, failed)]
    limit = dt.timedelta(days=ci.config.max_drill_age)
    if started is not None:
        if ci.now - started > limit:
            age = _age_text((ci.now - started).total_seconds())
            return [(CheckStatus.WARNING, text("check.drill_old", database=db.name, age=age))]
        return []
    first = ci.log.first_run_at()
    if not ci.backups[db.name] or first is None or ci.now - first <= limit:
        return []  # a new install: the first drill is not due yet
    return [(CheckStatus.WARNING, text("check.no_drill", database=db.name))]


_DATABASE_RULES = (
    _rule_missing_or_stale,
    _rule_newest_damaged,
    _rule_last_run_failed,
    _rule_shrank,
    _rule_drill,
)


def _rule_held_back(ci: _CheckInput) -> list[Problem]:
    """Damaged backups the last run kept from the destinations (the newest of each database
    is judged by _rule_newest_damaged instead)."""
    newest = {str(files[0].path) for files in ci.backups.values() if files}
    return [
        (
            CheckStatus.CRITICAL,
            text("check.held_back", file=path),
        )
        for path in ci.log.damaged_in_last_run()
        if path not in newest and os.path.lexists(path)
    ]


def _rule_disk(ci: _CheckInput) -> list[Problem]:
    """The backup folder over its share of the disk; too little room for the next backup."""
    problems: list[Problem] = []
    share, free = ci.stats["disk_share_percent"], ci.stats["disk_free_bytes"]
    if share is not None and share > ci.config.max_disk_percent:
        problems.append(
            (
                CheckStatus.WARNING,
                text("check.over_budget", percent=share, budget=ci.config.max_disk_percent),
            )
        )
    needed = ci.stats["next_backup_bytes"]
    if free is not None and free < needed:
        problems.append(
            (
                CheckStatus.CRITICAL,
                text("check.disk_full", free=_format_size(free), needed=_format_size(needed)),
            )
        )
    return problems


def _rule_destinations(ci: _CheckInput) -> list[Problem]:
    """Destinations that fail, lack a database's copy, or hold only old copies."""
    problems: list[Problem] = []
    limit = dt.timedelta(hours=ci.config.max_age_hours) + CHECK_GRACE
    for far in ci.stats["destinations"]:
        where = far["destination"]
        if far["error"]:
            problems.append(
                (
                    CheckStatus.WARNING,
                    text("check.copies_error", destination=where, error=far["error"]),
                )
            )
        if far["last_run_status"] == "failed":
            problems.append(
                (
                    CheckStatus.WARNING,
                    text("run.copy_failed", destination=where, error=far["last_run_error"]),
                )
            )
        for db in ci.config.databases:
            newest = far["newest"].get(db.name)
            if newest is None and ci.backups[db.name] and not far["error"]:
                problems.append(
                    (
                        CheckStatus.WARNING,
                        text("check.no_copy", database=db.name, destination=where),
                    )
                )
            elif newest is not None and newest["age_s"] > limit.total_seconds():
                problems.append(
                    (
                        CheckStatus.WARNING,
                        text(
                            "check.copy_stale",
                            database=db.name,
                            destination=where,
                            age=_age_text(newest["age_s"]),
                        ),
                    )
                )
    return problems


def _rule_archive(ci: _CheckInput) -> list[Problem]:
    """Archives are on and the newest is older than archive_every_days + 1 days (none at
    all, past a new install's first such days); the last archive failed or did not start."""
    archives, every = ci.stats["archives"], ci.config.archive_every_days
    problems: list[Problem] = []
    if archives["last_status"] in ("failed", "skipped"):
        key = (
            "check.archive_failed"
            if archives["last_status"] == "failed"
            else "check.archive_not_started"
        )
        problems.append((CheckStatus.WARNING, text(key, error=archives["last_error"])))
    if every <= 0:
        return problems
    limit = dt.timedelta(days=every + 1)
    age = archives["newest_age_s"]
    if age is not None:
        if age > limit.total_seconds():
            stale = text("check.archive_old", age=_age_text(age), days=every + 1)
            problems.append((CheckStatus.WARNING, stale))
        return problems
    first = ci.log.first_run_at()
    if first is not None and ci.now - first > limit:
        problems.append((CheckStatus.WARNING, text("check.no_archive", days=every + 1)))
    return problems


_FOLDER_RULES = (_rule_held_back, _rule_disk, _rule_destinations, _rule_archive)


def collect_check(config: Config, log: RunLog, *, now: dt.datetime) -> dict[str, Any]:
    """Every figure --check judges, and the problems its rules find, worst first."""
    backups = list_backups(config.backup_dir, listed_names(config))
    stats = collect_stats(config, log, now=now, backups=backups)
    last_results = log.last_results()
    for db, figures in zip(config.databases, stats["databases"]):
        files, last = backups[db.name], last_results.get(db.name)
        figures["last_run_status"] = last.get("status") if last else None
        figures["previous_size_bytes"] = files[1].size if len(files) > 1 else None
    stats["next_backup_bytes"] = sum(f["source_size_bytes"] or 0 for f in stats["databases"])
    ci = _CheckInput(config, now, stats, backups, last_results, log)
    problems = [
        problem
        for db, figures in zip(config.databases, stats["databases"])
        for rule in _DATABASE_RULES
        for problem in rule(ci, db, figures)
    ]
    problems += [problem for rule in _FOLDER_RULES for problem in rule(ci)]
    problems.sort(key=lambda item: -item[0])
    status = problems[0][0] if problems else CheckStatus.OK
    stats.update(
        status=status.name,
        exit_code=int(status),
        # Each message a Text: shown in the operator's language, English in JSON.
        problems=[{"status": level.name, "message": message} for level, message in problems],
        max_age_hours=config.max_age_hours,
        max_shrink_percent=config.max_shrink_percent,
    )
    return stats


def render_check(check: dict[str, Any], lang: str = "en") -> str:
    """A Nagios plugin's output: the verdict (its word as Nagios wants it) on the first line,
    perfdata after ``|``, details; the words in ``lang``."""

    def tr(key: str, /, **values: Any) -> str:
        return text(key, **values).render(lang)

    problems = check["problems"]
    if problems:
        summary = "; ".join(str(render_text(p["message"], lang)) for p in problems)
    else:
        ages = [d["newest_age_s"] for d in check["databases"] if d["newest_age_s"] is not None]
        count = sum(1 for d in check["databases"] if d["backups"])
        summary = tr("check.ok", count=count)
        if ages:
            summary += tr("check.ok_newest", age=_age_text(max(ages)))
    perf = []
    for db in check["databases"]:
        if db["newest_age_s"] is not None:
            limit = int(check["max_age_hours"] * 3600)
            perf.append(f"'{db['database']} age'={int(db['newest_age_s'])}s;;{limit}")
    archives = check["archives"]
    if archives["newest_age_s"] is not None:
        limit = (archives["every_days"] + 1) * 86400 if archives["every_days"] else ""
        perf.append(f"'archive age'={int(archives['newest_age_s'])}s;{limit}")
    if check["disk_share_percent"] is not None:
        perf.append(
            f"'backup folder'={check['disk_share_percent']:.3f}%;{check['disk_budget_percent']:g}"
        )
    lines = [f"{check['status']}: {summary}" + (" | " + " ".join(perf) if perf else "")]
    for db in check["databases"]:
        if db["newest_age_s"] is not None:
            age = _format_age(db["newest_age_s"], lang)
            line = tr("check.database", database=db["database"], count=db["backups"], age=age)
        else:
            line = tr("check.database_empty", database=db["database"], count=db["backups"])
        status = db["last_run_status"] or tr("check.unknown")
        lines.append(line + tr("check.last_run", status=status))
    if archives["newest_age_s"] is not None:
        age = _format_age(archives["newest_age_s"], lang)
        lines.append(
            tr("check.archive", folder=archives["source"], count=archives["count"], age=age)
        )
    for far in check.get("destinations", []):
        copies = tr("check.list_separator").join(
            tr(
                "check.copy_newest",
                database=name,
                file=newest["file"],
                age=_age_text(newest["age_s"]),
            )
            for name, newest in far["newest"].items()
        )
        shown = far["error"] or copies or tr("check.no_copies_yet")
        lines.append(tr("check.copies_at", destination=far["destination"], copies=shown))
    if check["disk_free_bytes"] is not None:
        line = tr(
            "check.folder",
            size=_format_size(check["backup_dir_bytes"], lang),
            percent=check["disk_share_percent"],
            free=_format_size(check["disk_free_bytes"], lang),
        )
        lines.append(line)
    return "\n".join(lines)


# --- Metrics for Prometheus ---


def _metric_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(config: Config, log: RunLog, *, now: dt.datetime) -> str:
    """The backups' state in Prometheus' text format (for node_exporter's textfile
    collector): per database the newest backup, the last run and the last restore drill;
    the archives of the app folder; the backup folder's size and share of its disk."""
    stats = collect_stats(config, log, now=now)
    last_runs: dict[str, tuple[dict[str, Any], dt.datetime | None]] = {}
    for run in log.backup_runs():
        for result in run.get("results", []):
            if result.get("status") in ("ok", "failed"):
                last_runs[str(result.get("database"))] = (result, parse_iso(run.get("started_at")))
    drills = log.drills()
    families: list[tuple[str, str, list[tuple[str, float]]]] = []

    def family(name: str, text: str, samples: list[tuple[str, float]]) -> None:
        families.append((f"database_backup_{name}", text, samples))

    per_db: dict[str, list[tuple[str, float]]] = {
        key: []
        for key in (
            "backups",
            "newest_backup_timestamp_seconds",
            "newest_backup_size_bytes",
            "last_run_success",
            "last_run_timestamp_seconds",
            "last_run_duration_seconds",
            "last_drill_success",
            "last_drill_timestamp_seconds",
        )
    }
    for db in stats["databases"]:
        label = f'{{database="{_metric_label(db["database"])}"}}'
        per_db["backups"].append((label, db["backups"]))
        newest = parse_iso(db["newest_at"])
        if newest is not None:
            per_db["newest_backup_timestamp_seconds"].append((label, newest.timestamp()))
            per_db["newest_backup_size_bytes"].append((label, db["newest_size_bytes"]))
        result, started = last_runs.get(db["database"], ({}, None))
        if started is not None:
            per_db["last_run_success"].append((label, int(result.get("status") == "ok")))
            per_db["last_run_timestamp_seconds"].append((label, started.timestamp()))
            duration = result.get("duration_s")
            if isinstance(duration, (int, float)):
                per_db["last_run_duration_seconds"].append((label, duration))
        drill, drilled = drills.get(db["database"], ({}, None))
        if drilled is not None:
            per_db["last_drill_success"].append((label, int(drill.get("status") == "ok")))
            per_db["last_drill_timestamp_seconds"].append((label, drilled.timestamp()))
    texts = {
        "backups": "Backups of the database in the backup folder.",
        "newest_backup_timestamp_seconds": "When the newest backup was taken (Unix time).",
        "newest_backup_size_bytes": "Size of the newest backup.",
        "last_run_success": "1 when the last run backed the database up, 0 when it failed.",
        "last_run_timestamp_seconds": "When the last run that backed up the database began.",
        "last_run_duration_seconds": "How long the last backup of the database took.",
        "last_drill_success": "1 when the last restore drill passed, 0 when it failed.",
        "last_drill_timestamp_seconds": "When the last restore drill of the database began.",
    }
    for key, samples in per_db.items():
        family(key, texts[key], samples)
    family(
        "folder_size_bytes",
        "Bytes the backup folder holds, links counted once.",
        [("", stats["backup_dir_bytes"])],
    )
    if stats["disk_share_percent"] is not None:
        family(
            "folder_disk_share_ratio",
            "The backup folder's share of its disk (0 to 1).",
            [("", stats["disk_share_percent"] / 100)],
        )
        family(
            "disk_free_bytes",
            "Free bytes on the backup folder's disk.",
            [("", stats["disk_free_bytes"])],
        )
    archives = stats["archives"]
    label = f'{{folder="{_metric_label(archives["source"])}"}}'
    family(
        "archives", "Archives of the app folder in the backup folder.", [(label, archives["count"])]
    )
    newest_archive = parse_iso(archives["newest_at"])
    if newest_archive is not None:
        family(
            "newest_archive_timestamp_seconds",
            "When the newest archive of the app folder was taken (Unix time).",
            [(label, newest_archive.timestamp())],
        )
    family("metrics_timestamp_seconds", "When these metrics were written.", [("", now.timestamp())])
    lines = []
    for name, text, samples in families:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge"]
        lines += [f"{name}{label} {float(value)!r}" for label, value in samples]
    return "\n".join(lines) + "\n"


def write_metrics(config: Config, io: Output) -> None:
    """Write --metrics, atomically and readable by the collector; a failure is a warning."""
    if config.metrics is None:
        return
    try:
        text = render_metrics(config, RunLog.read(config.log_file), now=_now_local())
        _atomic_write(config.metrics, text.encode("utf-8"), mode=0o644)
    except (OSError, BackupError) as exc:
        error = (
            exc
            if isinstance(exc, BackupError)
            else describe_os_error(exc, config.metrics, "writing")
        )
        io.warn(text("metrics.not_written", error=error.text))


# ======================================================================================
# Scheduler
# ======================================================================================


def needs_catch_up(config: Config, *, now: dt.datetime) -> bool:
    """True when a database that should have backups has none, or none younger than a day."""
    backups = list_backups(config.backup_dir, [db.name for db in config.databases])
    naive_now = now.astimezone().replace(tzinfo=None)
    for db in config.databases:
        if not db.required and not db.path.exists():
            continue
        files = backups[db.name]
        if not files or naive_now - files[0].taken_at > CATCH_UP_AGE:
            return True
    return False


def load_timezone(name: str) -> Any:
    """The pytz zone named ``name``; a usage error (exit 2) when pytz or the zone is missing.

    pytz carries its own zone data, so a zone works the same on Windows, which has no
    IANA database for the standard library's zoneinfo.
    """
    try:
        import pytz
    except ImportError:
        raise _usage_error(text("usage.needs_pytz"), install_hint(*TIMEZONE_REQUIREMENTS)) from None
    try:
        return pytz.timezone(name)
    except pytz.UnknownTimeZoneError as exc:
        raise _usage_error(
            text("usage.unknown_timezone", name=name, error=exc),
            text("usage.unknown_timezone_hint"),
        ) from exc


def next_occurrence(at: str, zone: Any | None, after: dt.datetime) -> dt.datetime:
    """The first moment after ``after`` (naive local) when the clock shows ``at``: the
    computer's clock, or ``zone``'s (a pytz zone); as naive local time.

    On the computer's clock a time that a daylight-saving change skips is due as soon as the
    clock passes it, and a repeated hour runs once. In ``zone`` a skipped time runs at the
    same minutes an hour later, and the repeated hour runs once.
    """
    hour, minute, second = (int(part) for part in (at.split(":") + ["0"])[:3])
    at_time = dt.time(hour, minute, second)
    if zone is None:
        candidate = dt.datetime.combine(after.date(), at_time)
        return candidate if candidate > after else candidate + dt.timedelta(days=1)
    # Compared on the zone's wall clock, so the hour repeated when DST ends runs once.
    wall_now = after.astimezone().astimezone(zone).replace(tzinfo=None)
    day = wall_now.date() + dt.timedelta(days=1 if wall_now.time() >= at_time else 0)
    there = zone.normalize(zone.localize(dt.datetime.combine(day, at_time)))
    return there.astimezone().replace(tzinfo=None)


class Timetable:
    """The daily run times of --schedule, each with its next run (naive local time).

    Kept by hand rather than by a scheduling package: the clock is passed in, so the
    timetable is tested on a fake clock, and every run time, in a zone or not, follows
    ``next_occurrence``.
    """

    def __init__(self, run_at: Sequence[str], zone: Any | None, now: dt.datetime) -> None:
        self.zone = zone
        self.next_runs = {at: next_occurrence(at, zone, now) for at in run_at}

    @property
    def next_run(self) -> dt.datetime:
        return min(self.next_runs.values())

    def take_due(self, now: dt.datetime) -> bool:
        """True when a run time has come; every time that has come moves on to its next day,
        so the times a suspended computer slept through come to one run."""
        due = [at for at, when in self.next_runs.items() if when <= now]
        for at in due:
            self.next_runs[at] = next_occurrence(at, self.zone, now)
        return bool(due)


class StopFlag:
    """Set by SIGINT/SIGTERM; a sleep in progress is cut short, a backup in progress is not.

    A stop requested while ``busy`` (a backup runs) is acknowledged at once (``on_busy``);
    a second one stops the backup too, as KeyboardInterrupt (its temporary files are removed).
    """

    def __init__(self, on_busy: Callable[[], None] | None = None) -> None:
        self.requested = False
        self.sleeping = False
        self.busy = False
        self.on_busy = on_busy

    def request(self, *_: object) -> None:
        if self.sleeping:
            self.requested = True
            self.sleeping = False  # a second signal must not raise outside the sleep
            raise _StopSleeping
        if self.busy and self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self.busy and self.on_busy is not None:
            self.on_busy()

    def sleep(self, seconds: float) -> None:
        """Sleep, unless a stop was requested; a stop during the sleep ends it at once."""
        try:
            self.sleeping = True
            if not self.requested:
                time.sleep(seconds)
        except _StopSleeping:
            pass
        finally:
            self.sleeping = False


class _StopSleeping(Exception):
    pass


def run_scheduler(
    config: Config,
    job: Callable[[str], None],
    *,
    stop: StopFlag,
    say: Callable[[str], None],
    clock: Callable[[], dt.datetime] = _now_local,
    sleep: Callable[[float], None] | None = None,
) -> None:
    """Back up at each ``run_at`` time until ``stop`` is requested.

    ``clock()`` is the aware current time; ``job(trigger)`` runs a backup and must not
    raise. A start long after the last backup catches up at once. The scheduler wakes at
    least once a minute and compares the clock with the timetable, so a suspend, a clock
    change or a daylight-saving change is seen within a minute; all the run times missed
    while the computer slept come to a single run.
    """
    sleep = sleep or stop.sleep
    zone = load_timezone(config.timezone) if config.timezone else None

    def local_now() -> dt.datetime:
        return clock().astimezone().replace(tzinfo=None)

    lang = config.lang
    times = ", ".join(config.run_at)
    where = f" {config.timezone}" if config.timezone else ""
    say(text("schedule.started", times=times + where).render(lang))
    if needs_catch_up(config, now=clock()):
        say(text("schedule.catch_up").render(lang))
        job("schedule")
    # Made after the catch-up, so a time that passed during it is not run again at once.
    timetable = Timetable(config.run_at, zone, local_now())

    def say_next() -> None:
        wait = max(0.0, (timetable.next_run - local_now()).total_seconds())
        when = f"{timetable.next_run:%Y-%m-%d %H:%M:%S}"
        if zone is not None:
            there = timetable.next_run.astimezone().astimezone(zone)
            when = text(
                "schedule.here_and_there", when=when, there=f"{there:%H:%M}", zone=config.timezone
            ).render(lang)
        say(text("schedule.next", when=when, wait=_format_age(wait + 59, lang)).render(lang))

    say_next()
    while not stop.requested:
        idle = (timetable.next_run - local_now()).total_seconds()
        sleep(min(max(idle, 0.0), SCHEDULER_MAX_SLEEP_S))
        if stop.requested:
            break
        if timetable.take_due(local_now()):
            job("schedule")
            say_next()


# ======================================================================================
# Platform integration: Windows Task Scheduler and cron
# ======================================================================================


def _run_arguments(config: Config) -> list[str]:
    """``--run`` with the config file and every setting that was given as a flag.

    Webhook URLs and commands carry secrets: those belong in a config file, not in a
    batch file or crontab line that anyone reading the task can see.
    """
    secret = [s.option for s in SETTINGS if s.secret and s.key in config.from_flags]
    if secret:
        flags = ", ".join(secret)
        raise _usage_error(
            text("task.secret", flags=flags),
            text("task.secret_hint", config=DEFAULT_CONFIG_FILE),
        )
    args = ["--run"]
    if config.config_file is not None:
        args += ["--config", str(config.config_file)]
    if "lang" not in config.from_flags:  # the task speaks the language of who made it
        args += ["--lang", config.lang]
    for key in config.from_flags:
        setting, value = SETTING[key], getattr(config, key)
        if setting.kind == "databases":
            for db in value:
                args += [setting.option, f"{db.name}={db.path}"]
        elif setting.kind == "compress":
            args += [setting.option, value or "none"]
        elif setting.kind in ("paths", "texts", "urls"):
            for item in value:
                args += [setting.option, str(item)]
        else:
            args += [setting.option, f"{value}"]
    return args


def _batch_quote(text: str) -> str:
    # Inside double quotes cmd.exe still expands %VAR%; double the percent signs.
    return '"' + text.replace("%", "%%") + '"'


def render_windows_batch(config: Config, *, python: str) -> str:
    """The batch file Task Scheduler runs: one backup, output appended to a log, exit code kept."""
    quoted = [a for a in [python, *_run_arguments(config)] if '"' in a]
    if quoted:
        raise _usage_error(
            text("task.double_quote", value=quoted[0]),
            text("task.double_quote_hint", config=DEFAULT_CONFIG_FILE),
        )
    args = " ".join(a if a.startswith("-") else _batch_quote(a) for a in _run_arguments(config))
    log = f'"%~dp0{TASK_LOG_FILE_NAME}"'
    lines = [
        "@echo off",
        f"rem Runs one backup of this app's databases; written by {SCRIPT_NAME} --windows-task.",
        'rem Task Scheduler\'s "Last Run Result" shows the exit code: 0 ok, 1 failed, 2 bad',
        "rem configuration, 75 another backup was running.",
        'cd /d "%~dp0"',
        f"set PYTHONIOENCODING={_ansi_codepage(config.lang)}",
        f'{_batch_quote(python)} "%~dp0{SCRIPT_NAME}" {args} --trigger task >> {log} 2>&1',
        "exit /b %ERRORLEVEL%",
    ]
    return "\r\n".join(lines) + "\r\n"


def _ansi_codepage(lang: str) -> str:
    """The encoding of a task's log: Windows' ANSI code page, in which Notepad opens a file
    on every Windows (GBK, cp936, on a Chinese one). The .bat pins it, so that the log,
    appended to run after run, stays in one encoding whatever Python runs it (Python's
    default for a redirected file may change); a .bat written away from Windows takes the
    ANSI code page of a Windows in the task's language."""
    if os.name == "nt":  # pragma: no cover - Windows only
        import ctypes

        return f"cp{ctypes.windll.kernel32.GetACP()}"
    return "cp936" if lang == "zh" else "cp1252"


def _oem_codepage() -> str:
    if os.name == "nt":  # pragma: no cover - Windows only
        import ctypes

        return f"cp{ctypes.windll.kernel32.GetOEMCP()}"
    return "cp437"  # what cmd.exe uses on a US-English Windows, and under wine


def encode_windows_batch(text: str, codepage: str | None = None) -> bytes:
    """Encode a batch file as cmd.exe reads it: in the OEM code page, not UTF-8.

    A path the OEM code page cannot hold (a Chinese user name on an English Windows)
    is written in UTF-8 after ``chcp 65001``, which Windows 10 and later honour.
    """
    if text.isascii():
        return text.encode("ascii")
    try:
        return text.encode(codepage or _oem_codepage())
    except UnicodeEncodeError:
        first, rest = text.split("\r\n", 1)
        return f"{first}\r\nchcp 65001 >nul\r\n{rest}".encode()


def _task_name(app_root: Path) -> str:
    folder = re.sub(r"[^A-Za-z0-9_-]+", "_", app_root.name).strip("_") or "app"
    return f"DatabaseBackup_{folder}"


def render_schtasks_commands(config: Config, batch: Path) -> list[str]:
    """schtasks lines that create a daily task per ``run_at`` time, then one to test it."""
    name = _task_name(config.app_root)
    target = '"\\"' + str(batch) + '\\""'
    lines = []
    for index, at in enumerate(config.run_at):
        task = name if index == 0 else f"{name}_{index + 1}"
        lines.append(f'schtasks /Create /SC DAILY /ST {at[:5]} /TN "{task}" /TR {target} /F')
    lines.append(f'schtasks /Run /TN "{name}"')
    return lines


def render_cron_lines(config: Config, *, python: str, script: Path) -> list[str]:
    """crontab lines, one per ``run_at`` time, with absolute paths; % is escaped for cron."""
    import shlex

    command = " ".join(
        [
            "cd",
            shlex.quote(str(config.app_root)),
            "&&",
            shlex.quote(python),
            shlex.quote(str(script)),
            *(shlex.quote(a) for a in _run_arguments(config)),
            "--trigger",
            "cron",
            ">>",
            shlex.quote(str(config.app_root / "database_backup_cron.log")),
            "2>&1",
        ]
    ).replace("%", "\\%")
    lines = []
    for at in config.run_at:
        hour, minute = at.split(":")[:2]
        lines.append(f"{int(minute)} {int(hour)} * * * {command}")
    return lines


# ======================================================================================
# CLI
# ======================================================================================


class _ArgumentError(Exception):
    """argparse's complaint about the command line."""


# argparse's own messages (its gettext ids) in Chinese; an id missing here (another Python
# may word one differently) is shown in English.
_ARGPARSE_ZH = {
    "usage: ": "用法：",
    "options": "选项",
    "show this help message and exit": "显示本帮助并退出",
    "show program's version number and exit": "显示版本号并退出",
    "unrecognized arguments: %s": "无法识别的参数：%s",
    "expected one argument": "需要一个参数",
    "expected at least one argument": "至少需要一个参数",
    "argument %(argument_name)s: %(message)s": "参数 %(argument_name)s：%(message)s",
    "not allowed with argument %s": "不能与参数 %s 同时使用",
    "invalid choice: %(value)r (choose from %(choices)s)": (
        "无效的选项：%(value)r（可选：%(choices)s）"
    ),
    "invalid %(type)s value: %(value)r": "无效的 %(type)s 值：%(value)r",
    "ambiguous option: %(option)s could match %(matches)s": (
        "有歧义的选项：%(option)s 可能是 %(matches)s"
    ),
    "ignored explicit argument %r": "忽略了显式参数 %r",
    "the following arguments are required: %s": "缺少以下参数：%s",
}


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises on bad usage, so --check can answer UNKNOWN instead,
    and speaks ``lang``: its own strings come from TEXTS, argparse's from _ARGPARSE_ZH."""

    def __init__(self, *args: Any, lang: str = "en", **kwargs: Any) -> None:
        self.lang = lang
        with self._speaking():
            super().__init__(*args, **kwargs)

    @contextlib.contextmanager
    def _speaking(self) -> Iterator[None]:
        # argparse looks its messages up through its module's ``_`` when it needs them; in
        # Chinese, that lookup goes through the table for as long as the parser works.
        if self.lang != "zh":
            yield
            return
        english = argparse._  # type: ignore[attr-defined]
        argparse._ = lambda message: _ARGPARSE_ZH.get(message, english(message))  # type: ignore[attr-defined]
        try:
            yield
        finally:
            argparse._ = english  # type: ignore[attr-defined]

    def parse_args(self, *args: Any, **kwargs: Any) -> Any:
        with self._speaking():
            return super().parse_args(*args, **kwargs)

    def format_usage(self) -> str:
        with self._speaking():
            return super().format_usage()

    def format_help(self) -> str:
        with self._speaking():
            return super().format_help()

    def error(self, message: str) -> NoReturn:
        # Before Python 3.12, argparse put "argument X: " in front of its message untranslated.
        prefixed = re.fullmatch(r"argument (\S+): (.*)", message, re.DOTALL)
        if self.lang == "zh" and prefixed:
            template = _ARGPARSE_ZH["argument %(argument_name)s: %(message)s"]
            message = template % {"argument_name": prefixed[1], "message": prefixed[2]}
        raise _ArgumentError(message)


def build_parser(lang: str = "en") -> argparse.ArgumentParser:
    """The command line, in ``lang``: one action and its options."""

    def tr(key: str, /, **values: Any) -> str:
        return text(key, **values).render(lang)

    parser = _Parser(
        prog=SCRIPT_NAME,
        usage="%(prog)s ACTION [OPTIONS]   " + tr("help.usage_tail"),
        description=tr("help.description"),
        epilog=tr("help.epilog"),
        lang=lang,
    )
    actions = parser.add_argument_group(tr("help.actions")).add_mutually_exclusive_group()
    act = actions.add_argument
    act("--run", action="store_true", help=tr("help.run"))
    act("--history", action="store_true", help=tr("help.history"))
    act("--stats", action="store_true", help=tr("help.stats"))
    act("--verify", nargs="*", metavar="FILE", help=tr("help.verify"))
    act("--restore", metavar="FILE", help=tr("help.restore"))
    act("--check", action="store_true", help=tr("help.check"))
    act("--drill", action="store_true", help=tr("help.drill"))
    act("--archive", action="store_true", help=tr("help.archive"))
    act("--restore-archive", metavar="FILE", help=tr("help.restore_archive"))
    act("--schedule", action="store_true", help=tr("help.schedule"))
    act("--windows-task", action="store_true", help=tr("help.windows_task", batch=BATCH_FILE_NAME))
    act("--cron", action="store_true", help=tr("help.cron"))
    act("--show-config", action="store_true", help=tr("help.show_config"))
    act("--keygen", metavar="FILE", help=tr("help.keygen"))
    act("--decrypt", metavar="FILE.age", help=tr("help.decrypt"))

    settings = parser.add_argument_group(tr("help.settings"))
    settings.add_argument(
        "--config",
        metavar="FILE",
        help=tr("cli.with_default", help=tr("help.config"), default=DEFAULT_CONFIG_FILE),
    )
    far = parser.add_argument_group(tr("help.far"))
    for setting in SETTINGS:
        options: dict[str, Any] = {"dest": setting.attribute, "help": setting.help_text(lang)}
        if setting.kind in ("int", "float"):
            options["type"] = int if setting.kind == "int" else float
        if setting.kind in ("databases", "paths", "texts", "urls", "times"):
            options["action"] = "append"
        if setting.choices:
            options["choices"] = setting.choices
        else:
            options["metavar"] = setting.metavar
        group = far if setting.group == "far" else settings
        group.add_argument(setting.option, **options)

    more = parser.add_argument_group(tr("help.action_options")).add_argument
    more("--json", action="store_true", help=tr("help.json"))
    more(
        "--limit",
        type=int,
        metavar="N",
        help=tr("cli.with_default", help=tr("help.limit"), default=DEFAULT_HISTORY_LIMIT),
    )
    more("--quick", action="store_true", help=tr("help.quick"))
    more("--target", metavar="PATH", help=tr("help.target"))
    more("--identity", metavar="KEYFILE", help=tr("help.identity"))
    more("--output", metavar="FILE", help=tr("help.output"))
    more("--into", metavar="DIR", help=tr("help.into"))
    more("--yes", action="store_true", help=tr("help.yes"))
    more("--allow-unlogged", action="store_true", help=tr("help.allow_unlogged"))
    more("--allow-other-database", action="store_true", help=tr("help.allow_other_database"))
    more(
        "--trigger",
        choices=TRIGGERS,
        help=tr("cli.with_default", help=tr("help.trigger"), default=TRIGGERS[0]),
    )
    more("--python", metavar="PATH", help=tr("help.python"))
    more("--debug", action="store_true", help=tr("help.debug"))
    more("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


class Output:
    """Where the CLI writes, in the operator's language: stdout for results, stderr for
    errors and progress."""

    def __init__(self, out: TextIO, err: TextIO, lang: str = "en") -> None:
        self.out, self.err, self.lang = out, err, lang
        self.symbols = Symbols.for_stream(out)

    def tr(self, message: str | Text) -> str:
        """``message`` in this output's language."""
        return str(render_text(message, self.lang))

    # Output is a courtesy and the run log is the record: a closed pipe or console
    # (``| head``, a task whose window closed) never aborts a run.
    def say(self, message: str | Text = "") -> None:
        _write_quietly(self.out, self.tr(message) + "\n")

    def warn(self, message: str | Text) -> None:
        warning = self.tr(text("cli.warning", message=message))
        _write_quietly(self.err, f"{self.symbols.warn} {warning}\n")

    def error(self, message: str | Text) -> None:
        _write_quietly(self.err, self.tr(message) + "\n")

    def print_json(self, data: Any) -> None:
        # A Text in the data is English there: JSON reads the same in every language.
        document = json.dumps(data, indent=2, ensure_ascii=False, default=str)
        try:
            document.encode(getattr(self.out, "encoding", None) or "ascii")
        except (UnicodeEncodeError, LookupError):
            # \uXXXX escapes keep every path intact on a console that cannot show it.
            document = json.dumps(data, indent=2, ensure_ascii=True, default=str)
        self.say(document)


def _cmd_run(
    config: Config, args: argparse.Namespace, io: Output, stop: StopFlag | None = None
) -> int:
    sym = io.symbols
    rule = "=" * 72

    def on_start(started: dt.datetime) -> None:
        if args.json:
            return
        io.say(rule)
        io.say(f"{sym.start} " + io.tr(text("run.title", time=f"{started:%Y-%m-%d %H:%M:%S}")))
        io.say(rule)

    def on_result(result: BackupResult) -> None:
        if args.json:
            return
        if result.status == "ok":
            key = "run.backed_up_unchanged" if result.linked_to else "run.backed_up"
            line = text(
                key,
                database=result.database,
                file=Path(result.backup or "").name,
                size=result.size_bytes or 0,
            )
            io.say(f"{sym.ok} " + io.tr(line))
        elif result.status == "skipped":
            line = text("run.skipped", database=result.database, source=result.source)
            io.say(f"{sym.info} " + io.tr(line))
        else:
            failure = result.failure
            error = failure.text if failure is not None else result.error
            hint = failure.hint_text if failure is not None else result.hint
            io.say(f"{sym.fail} {result.database}: " + io.tr(error or ""))
            if hint:
                io.say("   " + io.tr(text("cli.hint", hint=hint)))

    report = run_backups(
        config,
        trigger=args.trigger,
        on_result=on_result,
        on_lock_wait=lambda: io.warn(text("run.lock_wait")),
        on_start=on_start,
        progress_stream=io.err if io.err.isatty() and not args.json else None,
    )
    for warning in report.warnings:
        io.warn(warning)
    if not args.json:
        ok = [r for r in report.results if r.status == "ok"]
        for archive in report.archives:
            _say_archive(io, archive)
        pruned = [p for r in report.results for p in r.pruned]
        for path in pruned:
            io.say(f"{sym.prune} " + io.tr(text("run.pruned", file=os.path.basename(path))))
        for far in report.destinations:
            for name in far.damaged_copies:
                line = text("run.copy_resent", file=name, destination=far.destination)
                io.say(f"{sym.warn} " + io.tr(line))
            if far.status == "ok":
                key = "run.copies_encrypted" if config.encrypt_to else "run.copies"
                line = text(
                    key,
                    destination=far.destination,
                    copied=len(far.uploaded),
                    pruned=len(far.pruned),
                )
                io.say(f"{sym.ok} " + io.tr(line))
            else:
                failure = far.failure
                error = failure.text if failure is not None else far.error
                hint = failure.hint_text if failure is not None else far.hint
                line = text("run.copy_failed", destination=far.destination, error=error)
                io.say(f"{sym.fail} " + io.tr(line))
                if hint:
                    io.say("   " + io.tr(text("cli.hint", hint=hint)))
        for damaged in report.damaged_backups:
            line = text("run.damaged_backup", file=damaged["backup"], problem=damaged["problem"])
            io.say(f"{sym.fail} " + io.tr(line))
            io.say("   " + io.tr(text("cli.hint", hint=text("run.damaged_backup_hint"))))
        if not pruned:
            io.say(f"{sym.info} " + io.tr(text("run.nothing_pruned")))
        io.say(rule)
        if report.failed:
            io.say(f"{sym.fail} " + io.tr(text("run.finished_with_failures")))
        else:
            io.say(f"{sym.ok} " + io.tr(text("run.finished")))
        made = sum(r.size_bytes or 0 for r in ok)
        written = sum(r.size_bytes or 0 for r in ok if not r.linked_to)
        linked = sum(1 for r in ok if r.linked_to)
        key = "run.summary_made_linked" if linked else "run.summary_made"
        io.say("   " + io.tr(text(key, count=len(ok), linked=linked, written=written)))
        io.say("   " + io.tr(text("run.summary_size", size=made, mb=made / 2**20)))
        io.say("   " + io.tr(text("run.summary_pruned", count=len(pruned))))
        files, size = backup_folder_usage(list_backups(config.backup_dir, listed_names(config)))
        io.say("   " + io.tr(text("run.summary_folder_files", files=files)))
        folder = text("run.summary_folder_size", size=size, mb=size / 2**20)
        io.say("   " + io.tr(folder))
        io.say("   " + io.tr(text("run.summary_path", path=config.backup_dir)))
        io.say(rule)
    failed, drill = report.failed, None
    # A scheduled run (never a manual one) that succeeded also drills a restore when one is
    # due; not after a failed backup (it has its own alert) nor once a stop was requested.
    if (
        args.trigger != TRIGGERS[0]
        and not failed
        and not (stop is not None and stop.requested)
        and drill_due(config, RunLog.read(config.log_file), now=_now_local())
    ):
        drill = drill_databases(config, trigger=args.trigger)
        failed = drill["status"] == "failed"
        if not args.json:
            io.say(render_drill(drill, io.symbols, io.lang))
    if args.json:
        io.print_json({**report.to_json(), "drill": drill})
    write_metrics(config, io)
    return ExitCode.FAILED if failed else ExitCode.OK


def _cmd_history(config: Config, args: argparse.Namespace, io: Output) -> int:
    if args.limit < 1:
        raise _usage_error(text("usage.limit"))
    log = RunLog.read(config.log_file)
    warning, source = log.warning, "run log"
    if not log.usable:
        # Backups outlive their log: list what is on disk rather than claim there is none.
        rows = collect_history_from_disk(config, args.limit)
        source = "backup folder"
        if warning is None:
            warning = text("history.no_log", path=config.log_file)
        if rows:
            warning = text("history.from_disk", warning=warning, folder=config.backup_dir)
    else:
        rows = collect_history(log, args.limit)
    if warning:
        io.warn(warning)
    if args.json:
        io.print_json(
            {
                "log_file": str(config.log_file),
                "source": source,
                "warning": warning,
                "backups": rows,
            }
        )
    else:
        io.say(render_history(rows, io.symbols, io.lang))
    return ExitCode.OK


def _cmd_stats(config: Config, args: argparse.Namespace, io: Output) -> int:
    log = RunLog.read(config.log_file)
    if log.warning:
        io.warn(log.warning)
    stats = collect_stats(config, log, now=_now_local())
    if args.json:
        io.print_json(stats)
    else:
        io.say(render_stats(stats, io.symbols, io.lang))
    return ExitCode.OK


def _cmd_show_config(config: Config, args: argparse.Namespace, io: Output) -> int:
    io.print_json(config.to_json())
    return ExitCode.OK


def _cmd_schedule(config: Config, args: argparse.Namespace, io: Output) -> int:
    stop = StopFlag(on_busy=lambda: io.error(text("schedule.stopping")))
    for name in ("SIGINT", "SIGTERM", "SIGBREAK"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), stop.request)

    def job(trigger: str) -> None:
        # Never raise into the scheduler: a failed run is logged and the timetable goes on.
        job_args = argparse.Namespace(**{**vars(args), "trigger": trigger, "json": False})
        stop.busy = True
        try:
            _cmd_run(config, job_args, io, stop)
        except BackupError as exc:
            _print_error(io, exc)
        except Exception as exc:  # noqa: BLE001 - the scheduler must survive anything
            io.error(text("cli.error", message=text("schedule.unexpected", error=repr(exc))))
            if args.debug:
                import traceback

                traceback.print_exc(file=io.err)
        finally:
            stop.busy = False

    if config.timezone:
        load_timezone(config.timezone)  # fail fast on a missing package or bad zone
    check_run_requirements(config)
    run_scheduler(config, job, stop=stop, say=io.say)
    io.say(text("schedule.stopped"))
    return ExitCode.OK


def _cmd_windows_task(config: Config, args: argparse.Namespace, io: Output) -> int:
    check_run_requirements(config)  # not a task that fails every night
    python = args.python or sys.executable
    batch = config.app_root / BATCH_FILE_NAME
    content = render_windows_batch(config, python=python)
    try:
        _atomic_write(batch, encode_windows_batch(content))
        if os.name == "posix":
            os.chmod(batch, 0o755)
    except OSError as exc:
        raise describe_os_error(exc, batch, "writing") from exc
    io.say(f"{io.symbols.ok} " + io.tr(text("task.wrote", path=batch)))
    io.say("")
    io.say(text("task.create"))
    commands = render_schtasks_commands(config, batch)
    for line in commands[:-1]:
        io.say(f"  {line}")
    io.say(text("task.test"))
    io.say(f"  {commands[-1]}")
    io.say("")
    io.say(text("task.explain_create", log=TASK_LOG_FILE_NAME))
    io.say(text("task.explain_test"))
    return ExitCode.OK


def _cmd_cron(config: Config, args: argparse.Namespace, io: Output) -> int:
    import shlex

    check_run_requirements(config)  # not a line that fails every night
    lines = render_cron_lines(
        config, python=args.python or sys.executable, script=Path(__file__).resolve()
    )
    io.say("# " + io.tr(text("cron.lines", times=", ".join(config.run_at))))
    for line in lines:
        io.say(line)
    io.say("")
    io.say(text("cron.install"))
    for line in lines:
        io.say(f"  (crontab -l 2>/dev/null; printf '%s\\n' {shlex.quote(line)}) | crontab -")
    if config.timezone:
        io.say(text("cron.zone_note", zone=config.timezone))
    return ExitCode.OK


def _cmd_verify(config: Config, args: argparse.Namespace, io: Output) -> int:
    log = RunLog.read(config.log_file)
    if log.warning:
        io.warn(log.warning)
    files = [_resolve(name, Path.cwd()) for name in args.verify]
    encrypted = [f for f in files if f.name.endswith(ENCRYPTED_SUFFIX)]
    identity = _identity_for(args, encrypted[0]) if encrypted else None
    results = verify_backups(config, files, quick=args.quick, log=log, identity=identity)
    failed = [r for r in results if not r.ok]
    if args.json:
        io.print_json({"ok": not failed, "backups": [r.to_json() for r in results]})
    elif not results:
        io.say(f"{io.symbols.fail} " + io.tr(text("verify.none", folder=config.backup_dir)))
    else:
        for r in results:
            known = text("verify.sha_logged" if r.expected_sha256 else "verify.sha_unlogged")
            verdict = (
                io.tr(text("verify.ok", integrity=r.integrity, known=known))
                if r.ok
                else io.tr(r.error or "")
            )
            io.say(f"{io.symbols.ok if r.ok else io.symbols.fail} {Path(r.path).name}: {verdict}")
        passed = len(results) - len(failed)
        io.say(text("verify.summary", passed=passed, total=len(results)))
    # No backup at all is a failure too: a daily --verify must not pass on an empty folder.
    return ExitCode.FAILED if failed or not results else ExitCode.OK


def _confirm(io: Output, question: str) -> bool:
    io.out.write(f"{question} " + io.tr(text("restore.type_yes")))
    io.out.flush()
    try:
        # Only the whole word: a stray "y" must not replace a database.
        return sys.stdin.readline().strip().lower() == "yes"
    except (OSError, ValueError):
        return False


def _restore_risks(
    config: Config, plan: RestorePlan, args: argparse.Namespace, log_warning: str | Text | None
) -> list[tuple[Text, str, bool]]:
    """What could make this restore a mistake: (text, the flag that accepts it, accepted)."""
    risks = []
    if plan.expected_sha256 is None:
        values = {"file": plan.backup.name, "log": config.log_file}
        unlogged = (
            text("restore.risk_unlogged_unread", **values, warning=log_warning)
            if log_warning
            else text("restore.risk_unlogged", **values)
        )
        risks.append((unlogged, "--allow-unlogged", bool(args.allow_unlogged)))
    if plan.other_database:
        other = text(
            "restore.risk_other_database",
            file=plan.backup.name,
            backup_of=plan.backup_of,
            target=plan.target,
            database=plan.database,
        )
        risks.append((other, "--allow-other-database", bool(args.allow_other_database)))
    return risks


def _undo_command(config: Config, safety_copy: str, target: Path) -> str:
    """The command that puts the replaced database back, as it runs when pasted."""
    words = [sys.executable, str(Path(__file__).resolve())]
    if config.config_file is not None:
        words += ["--config", str(config.config_file)]
    if "databases" in config.from_flags:
        for db in config.databases:
            words += ["--db", f"{db.name}={db.path}"]
    for key in ("backup_dir", "log_file"):
        if key in config.from_flags:
            words += [SETTING[key].option, str(getattr(config, key))]
    words += ["--restore", safety_copy, "--target", str(target), "--yes"]
    return shell_command(words)


def _cmd_restore(config: Config, args: argparse.Namespace, io: Output) -> int:
    target = _resolve(args.target, Path.cwd()) if args.target else None
    backup = _resolve(args.restore, Path.cwd())
    if not backup.name.endswith(ENCRYPTED_SUFFIX):
        return _restore_confirmed(config, args, io, backup, target)
    identity = _identity_for(args, backup)
    check_log_folder(config.log_file)
    ensure_backup_dir(config.backup_dir, app_folder=config.app_folder())
    # Under the run lock: a run would take the decrypted copy for a stale temporary file.
    with RunLock(config.backup_dir / LOCK_FILE_NAME, config.lock_timeout):
        with decrypted_backup(backup, identity, config.backup_dir) as plain:
            return _restore_confirmed(config, args, io, plain, target, encrypted_from=backup)


def _identity_for(args: argparse.Namespace, path: Path) -> Path:
    if not args.identity:
        raise _usage_error(
            text("decrypt.needs_identity", file=path.name), text("decrypt.needs_identity_hint")
        )
    return _resolve(args.identity, Path.cwd())


def _restore_confirmed(
    config: Config,
    args: argparse.Namespace,
    io: Output,
    backup: Path,
    target: Path | None,
    *,
    encrypted_from: Path | None = None,
) -> int:
    """Plan a restore of ``backup``, name its risks, ask (or take --yes), then restore."""
    log = RunLog.read(config.log_file)
    plan = plan_restore(config, backup, target, log=log)
    if encrypted_from is not None:
        # Known by the name of the local backup it is a copy of.
        recorded = log.recorded_sha256(config.backup_dir / backup.name)
        plan = dataclasses.replace(plan, encrypted_from=encrypted_from, expected_sha256=recorded)
    risks = _restore_risks(config, plan, args, log.warning)
    question = io.tr(text("restore.question", target=plan.target, backup=plan.backup.name))
    if args.yes:
        for risk, flag, accepted in risks:
            if not accepted:
                raise _usage_error(
                    text("restore.refusing", risk=risk), text("restore.refusing_hint", flag=flag)
                )
        for risk, _, _ in risks:
            io.warn(risk)
    else:
        warned = "".join(f"{io.symbols.warn} {io.tr(risk)}.\n" for risk, _, _ in risks)
        question = warned + question
        if not (sys.stdin.isatty() and io.out.isatty()):
            raise _usage_error(text("restore.not_a_terminal"), text("restore.not_a_terminal_hint"))
        if not _confirm(io, question):
            io.say(text("restore.nothing_changed"))
            return ExitCode.FAILED
    record = restore_backup(config, plan, lock_held=encrypted_from is not None)
    if args.json:
        io.print_json(record)
        return ExitCode.OK
    restored = text("restore.done", target=plan.target, backup=plan.backup.name)
    io.say(f"{io.symbols.ok} " + io.tr(restored))
    for path in record["moved_aside"]:
        io.say("   " + io.tr(text("restore.moved_aside", path=path)))
    if record["safety_copy"] and record["safety_copy"] not in record["moved_aside"]:
        io.say("   " + io.tr(text("restore.kept", path=record["safety_copy"])))
        undo = _undo_command(config, record["safety_copy"], plan.target)
        io.say("   " + io.tr(text("restore.undo", command=undo)))
    io.say("   " + io.tr(text("restore.start_app")))
    return ExitCode.OK


def _cmd_check(config: Config, args: argparse.Namespace, io: Output) -> int:
    log = RunLog.read(config.log_file)
    check = collect_check(config, log, now=_now_local())
    if log.warning:
        check["problems"].append({"status": "WARNING", "message": log.warning})
        if check["exit_code"] < CheckStatus.WARNING:
            check.update(status="WARNING", exit_code=int(CheckStatus.WARNING))
    if args.json:
        io.print_json(check)
    else:
        io.say(render_check(check, io.lang))
    write_metrics(config, io)
    return check["exit_code"]


def _say_archive(io: Output, result: ArchiveResult) -> None:
    """An archive's lines in a report: made (with what it reports) and pruned, or why not."""
    sym = io.symbols
    if result.status == "ok":
        line = text(
            "archive.made",
            file=Path(result.backup or "").name,
            members=result.members,
            databases=len(result.databases),
            size=_format_size(result.size_bytes or 0, io.lang),
        )
        io.say(f"{sym.ok} " + io.tr(line))
        reported = (
            (result.changed, "archive.changed"),
            (result.vanished, "archive.vanished"),
            (result.unreadable, "archive.unreadable"),
        )
        for names, key in reported:
            for name in names:
                io.say(f"{sym.warn} " + io.tr(text(key, name=name)))
        for path in result.pruned:
            io.say(f"{sym.prune} " + io.tr(text("archive.pruned", file=os.path.basename(path))))
        return
    failure = result.failure
    mark = sym.warn if result.status == "skipped" else sym.fail
    key = "archive.not_started" if result.status == "skipped" else "archive.failed"
    error = failure.text if failure is not None else result.error
    io.say(f"{mark} " + io.tr(text(key, folder=result.source, error=error)))
    hint = failure.hint_text if failure is not None else result.hint
    if hint:
        io.say("   " + io.tr(text("cli.hint", hint=hint)))


def _cmd_archive(config: Config, args: argparse.Namespace, io: Output) -> int:
    progress = io.err if io.err.isatty() and not args.json else None
    result, warnings = run_archive(config, progress_stream=progress)
    for warning in warnings:
        io.warn(warning)
    if args.json:
        io.print_json(result.to_json())
    else:
        _say_archive(io, result)
    return ExitCode.OK if result.status == "ok" else ExitCode.FAILED


def restore_archive_logged(
    config: Config,
    archive: Path,
    into: Path,
    *,
    live: Path,
    clock: Callable[[], dt.datetime] = _now_local,
) -> RestoredArchive:
    """``restore_archive`` under the run lock, logged as a run of kind "restore_archive"
    (a refusal, which writes nothing, is not logged)."""
    started = clock()
    record: dict[str, Any] = {
        "kind": "restore_archive",
        "started_at": _iso(started),
        "trigger": "manual",
        "database": archive_key(live),
        "backup": str(archive),
        "target": str(into),
        "status": "failed",
        "error": None,
    }
    check_log_folder(config.log_file)
    folder_exists = config.backup_dir.is_dir()
    lock = RunLock(config.backup_dir / LOCK_FILE_NAME, config.lock_timeout)

    def log(**outcome: Any) -> None:
        record.update(outcome, finished_at=_iso(clock()))
        RunLog.read(config.log_file).append(record, max_runs=config.log_max_runs, now=clock())

    with lock if folder_exists else contextlib.nullcontext():
        try:
            restored = restore_archive(
                archive, into, live=[live, config.backup_dir, config.app_root]
            )
        except BackupError as exc:
            if exc.exit_code != ExitCode.USAGE and folder_exists:
                log(error=exc.message)
            raise
        if folder_exists:
            log(status="ok")
    return restored


def _swap_commands(restored: Path, live: Path, backup_dir: Path) -> list[str]:
    """The commands that put a restored folder in the live one's place (the app stopped),
    for this system's shell; the backup folder, when inside, moves across."""
    import shlex

    old = live.with_name(live.name + ".old")
    moves = [(live, old), (restored, live)]
    if _path_key(backup_dir.parent) == _path_key(live):
        moves.append((old / backup_dir.name, live / backup_dir.name))
    if os.name == "nt":
        return [f'move "{a}" "{b}"' for a, b in moves]
    return [" && ".join(f"mv {shlex.quote(str(a))} {shlex.quote(str(b))}" for a, b in moves)]


def _cmd_restore_archive(config: Config, args: argparse.Namespace, io: Output) -> int:
    if not args.into:
        raise _usage_error(text("archive.needs_into"), hint=text("archive.needs_into_hint"))
    archive = _resolve(args.restore_archive, Path.cwd())
    live = config.archive_folder()
    into = _resolve(args.into, Path.cwd())
    restored = restore_archive_logged(config, archive, into, live=live)
    if args.json:
        io.print_json(
            {
                "archive": str(archive),
                "folder": str(restored.folder),
                "files": restored.files,
                "databases": list(restored.databases),
                "links_left_out": list(restored.links_left_out),
            }
        )
        return ExitCode.OK
    sym = io.symbols
    line = text(
        "archive.restored",
        files=restored.files,
        databases=len(restored.databases),
        archive=archive.name,
        folder=restored.folder,
    )
    io.say(f"{sym.ok} " + io.tr(line))
    for name in restored.links_left_out:
        io.say(f"{sym.warn} " + io.tr(text("archive.link_left_out", name=name)))
    io.say(io.tr(text("archive.swap", live=live)))
    for command in _swap_commands(restored.folder, live, config.backup_dir):
        io.say(f"   {command}")
    io.say(io.tr(text("archive.swap_after", old=live.with_name(live.name + ".old"))))
    return ExitCode.OK


def _cmd_drill(config: Config, args: argparse.Namespace, io: Output) -> int:
    record = drill_databases(config, trigger=args.trigger)
    for warning in record.get("warnings", []):
        io.warn(warning)
    if args.json:
        io.print_json(record)
    else:
        io.say(render_drill(record, io.symbols, io.lang))
    write_metrics(config, io)
    return ExitCode.FAILED if record["status"] == "failed" else ExitCode.OK


def _cmd_keygen(config: Config, args: argparse.Namespace, io: Output) -> int:
    path = _resolve(args.keygen, Path.cwd())
    public = write_identity(path, now=_now_local())
    io.say(f"{io.symbols.ok} " + io.tr(text("keygen.wrote", path=path)))
    io.say(text("keygen.public", public=public))
    io.say("")
    io.say(text("keygen.advice", public=public))
    return ExitCode.OK


def _cmd_decrypt(config: Config, args: argparse.Namespace, io: Output) -> int:
    if not args.identity or not args.output:
        raise _usage_error(text("decrypt.needs"), text("decrypt.needs_hint"))
    source = _resolve(args.decrypt, Path.cwd())
    output = _resolve(args.output, Path.cwd())
    if os.path.lexists(output):
        raise _usage_error(
            text("decrypt.output_exists", path=output), text("decrypt.choose_output")
        )
    if not output.parent.is_dir():
        raise _usage_error(
            text("restore.no_target_folder", path=output), text("decrypt.check_output")
        )
    identity = _resolve(args.identity, Path.cwd())
    with decrypted_backup(source, identity, output.parent) as plain:
        try:
            publish_file(plain, output.parent, [output.name])
        except OSError as exc:
            raise describe_os_error(exc, output, "writing") from exc
    io.say(f"{io.symbols.ok} " + io.tr(text("decrypt.done", file=source.name, output=output)))
    return ExitCode.OK


_COMMANDS: dict[str, Callable[[Config, argparse.Namespace, Output], int]] = {
    "run": _cmd_run,
    "history": _cmd_history,
    "stats": _cmd_stats,
    "show_config": _cmd_show_config,
    "schedule": _cmd_schedule,
    "windows_task": _cmd_windows_task,
    "cron": _cmd_cron,
    "verify": _cmd_verify,
    "restore": _cmd_restore,
    "check": _cmd_check,
    "drill": _cmd_drill,
    "archive": _cmd_archive,
    "restore_archive": _cmd_restore_archive,
    "keygen": _cmd_keygen,
    "decrypt": _cmd_decrypt,
}


# Action options and the actions they mean something to; any other action refuses them,
# so that "--run --target x" is not mistaken for something it does not do.
_ACTION_OPTIONS: dict[str, tuple[str, ...]] = {
    "json": (
        "run",
        "history",
        "stats",
        "verify",
        "restore",
        "check",
        "show_config",
        "drill",
        "archive",
        "restore_archive",
    ),
    "limit": ("history",),
    "quick": ("verify",),
    "target": ("restore",),
    "identity": ("verify", "restore", "decrypt"),
    "output": ("decrypt",),
    "into": ("restore_archive",),
    "yes": ("restore",),
    "allow_unlogged": ("restore",),
    "allow_other_database": ("restore",),
    "trigger": ("run", "drill"),
    "python": ("windows_task", "cron"),
}


def check_action_options(args: argparse.Namespace, action: str) -> None:
    """Refuse an action option given to an action it means nothing to (exit 2)."""
    for option, actions in _ACTION_OPTIONS.items():
        if getattr(args, option) in (None, False) or action in actions:
            continue
        used_by = ", ".join("--" + a.replace("_", "-") for a in actions)
        flag, given = "--" + option.replace("_", "-"), "--" + action.replace("_", "-")
        raise _usage_error(
            text("cli.option_not_for", option=flag, action=given, used_by=used_by),
            text("cli.leave_out", option=flag),
        )
    if args.limit is None:
        args.limit = DEFAULT_HISTORY_LIMIT
    if args.trigger is None:
        args.trigger = TRIGGERS[0]


def _unknown(io: Output, reason: str | Text, *, as_json: bool) -> int:
    """--check could not judge: a monitor reads UNKNOWN and the reason, exit 3."""
    if as_json:
        problem = {"status": "UNKNOWN", "message": str(reason)}
        io.print_json({"status": "UNKNOWN", "exit_code": 3, "problems": [problem]})
    else:
        io.say("UNKNOWN: " + io.tr(reason))
    return CheckStatus.UNKNOWN


def _print_error(io: Output, exc: BackupError) -> None:
    io.error(f"{io.symbols.fail} " + io.tr(text("cli.error", message=exc.text)))
    if exc.hint_text:
        io.error("   " + io.tr(text("cli.hint", hint=exc.hint_text)))


def _safe_streams() -> tuple[TextIO, TextIO]:
    """stdout and stderr that replace what the console cannot encode instead of crashing."""
    # pythonw.exe (a task without a console) has no streams at all.
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="replace")
            except (ValueError, OSError):
                pass
    return sys.stdout, sys.stderr


def _language_in_argv(argv: Sequence[str]) -> str | None:
    """The language a ``--lang`` among the arguments names, if a known one."""
    for index, arg in enumerate(argv):
        value = arg[len("--lang=") :] if arg.startswith("--lang=") else None
        if arg == "--lang" and index + 1 < len(argv):
            value = argv[index + 1]
        if value in LANGUAGES:
            return value
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run one action, and turn errors into a message and an exit code."""
    out, err = _safe_streams()
    argv = list(sys.argv[1:] if argv is None else argv)
    # The language is needed before the command line is understood (its errors, --help):
    # a --lang among the arguments, else the environment's; the config file's comes later.
    lang = _language_in_argv(argv) or detect_language(os.environ)
    io = Output(out, err, lang)
    parser = build_parser(lang)
    try:
        args = parser.parse_args(argv)
    except _ArgumentError as exc:
        if "--check" in argv:
            return _unknown(io, str(exc), as_json="--json" in argv)
        parser.print_usage(err)
        io.error(f"{SCRIPT_NAME}: " + io.tr(text("cli.error", message=str(exc))))
        return ExitCode.USAGE
    action = next((name for name in _COMMANDS if getattr(args, name) not in (None, False)), None)
    if action is None:
        parser.print_usage(err)
        io.error(f"{SCRIPT_NAME}: " + io.tr(text("cli.error", message=text("cli.choose_action"))))
        return ExitCode.USAGE
    try:
        check_action_options(args, action)
        config = build_config(args)
        io.lang = config.lang
        return _COMMANDS[action](config, args, io)
    except BackupError as exc:
        if args.debug:
            import traceback

            traceback.print_exc(file=err)
        if action == "check":
            return _unknown(io, exc.text, as_json=args.json)
        _print_error(io, exc)
        return exc.exit_code
    except KeyboardInterrupt:
        for temp in list(_LIVE_TEMP_FILES):
            _remove_temp_file(temp)
        io.error(text("cli.interrupted"))
        return 130
    except Exception as exc:  # noqa: BLE001 - no traceback reaches the user without --debug
        if args.debug:
            import traceback

            traceback.print_exc(file=err)
        if action == "check":
            return _unknown(io, unexpected_error(exc).text, as_json=args.json)
        _print_error(io, unexpected_error(exc))
        return ExitCode.FAILED


if __name__ == "__main__":
    sys.exit(main())
