"""Command line: configuration, logging, one copy per folder, and the exit code.

Why the exit code matters: a scheduler (``--once`` every minute) or a service manager only
sees the code, so anything left unsent — still spooled, or moved to ``failed/`` by this
run — makes it non-zero, after a log line per file naming what was not stored and why.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Optional

from .uploader import STATE_DIR, Config, Uploader

#: Exit code when something stayed unsent (2 is argparse's, for bad arguments).
EXIT_UNSENT = 3


def parse_args(argv: Optional[list] = None) -> Config:
    """Read the configuration from arguments, falling back to QCWX_* environment variables."""
    env = os.environ
    parser = argparse.ArgumentParser(description="qcwx 质控数据接口程序（监视文件夹并上传）")
    for flag, kind, default, text in (
        ("--folder", str, env.get("QCWX_FOLDER"), "LIS 导出质控文件的文件夹（或 QCWX_FOLDER）"),
        ("--url", str, env.get("QCWX_URL"), "平台地址，如 https://qc.example.cn（或 QCWX_URL）"),
        ("--api-key", str, env.get("QCWX_API_KEY"),
         "实验室接口密钥 qcwx_…（或 QCWX_API_KEY；建议用环境变量）"),
        ("--interval", float, float(env.get("QCWX_INTERVAL", 10)), "扫描间隔秒数（默认 10）"),
        ("--settle", float, 2.0, "文件最后修改后等待多少秒才发送（默认 2，避免读到未写完的文件）"),
        ("--max-backoff", float, 300.0, "重试间隔上限秒数（默认 300）"),
        ("--timeout", float, 120.0, "单次上传超时秒数"),
        ("--item-retries", int, 50, "有结果未保存时重发的次数上限，之后移至 failed/（默认 50）"),
        ("--attempts", int, 5,
         "每个文件每轮最多发送几次（服务器繁忙、连接失败、结果可重试时在本轮内重发；默认 5）"),
    ):
        parser.add_argument(flag, type=kind, default=default, help=text)
    parser.add_argument("--once", action="store_true",
                        help="处理一轮后退出（供计划任务调用；有未发送的内容时退出码为 3）")
    parser.add_argument("--verbose", action="store_true", help="输出调试信息")
    args = parser.parse_args(argv)
    missing = [n for n, v in (("--folder", args.folder), ("--url", args.url),
                              ("--api-key", args.api_key)) if not v]
    if missing:
        parser.error(f"缺少参数：{'、'.join(missing)}")
    if not args.url.startswith(("http://", "https://")):
        parser.error("--url 必须以 http:// 或 https:// 开头")
    if args.attempts < 1:
        parser.error("--attempts 至少为 1")
    folder = Path(args.folder).expanduser().resolve()
    if not folder.is_dir():
        parser.error(f"文件夹不存在：{folder}")
    logging.getLogger().setLevel(logging.DEBUG if args.verbose else logging.INFO)
    return Config(folder, args.url, args.api_key.strip(), args.interval, args.settle,
                  args.max_backoff, args.timeout, args.once, max(1, args.item_retries),
                  args.attempts)


def setup_logging(folder: Path) -> None:
    """Log to ``qcwx_uploader.log`` in the folder and to the console, one line per event."""
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    root = logging.getLogger()
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    for handler in (logging.FileHandler(folder / "qcwx_uploader.log", encoding="utf-8"),
                    logging.StreamHandler(sys.stderr)):
        handler.setFormatter(fmt)
        root.addHandler(handler)


@contextlib.contextmanager
def single_instance(state: Path):
    """Refuse a second copy on the same folder (two senders would break first-in first-out)."""
    state.mkdir(parents=True, exist_ok=True)
    fh = open(state / "lock", "a+")  # held for the process lifetime
    try:
        if os.name == "nt":
            import msvcrt
            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise SystemExit(f"另一个接口程序正在处理 {state.parent}，本进程退出") from None
    try:
        yield
    finally:
        fh.close()


def main(argv: Optional[list] = None) -> int:
    """Run the program: parse the configuration, lock the folder, loop; 3 if unsent."""
    cfg = parse_args(argv)
    setup_logging(cfg.folder)
    with single_instance(cfg.folder / STATE_DIR):
        uploader = Uploader(cfg)

        def stop(_signum, _frame):
            uploader.stopping = True

        signal.signal(signal.SIGINT, stop)
        if hasattr(signal, "SIGTERM"):
            signal.signal(signal.SIGTERM, stop)
        unsent = uploader.run()
    return EXIT_UNSENT if unsent else 0
