"""Helpers for the production-operation tests (issue 9): a notify socket and a daemon subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


class NotifySocket:
    """What systemd listens on under Type=notify: a unix datagram socket, bound to a short path (the
    108-byte limit rules out pytest's long tmp paths) or to an abstract name (`@...`)."""

    def __init__(self, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._dir: str | None = None
        if abstract:
            name = f"harvester-test-{os.getpid()}-{id(self)}"
            self.sock.bind(b"\0" + name.encode())
            self.env_value = "@" + name
        else:
            self._dir = tempfile.mkdtemp(prefix="hv-", dir="/tmp")
            path = os.path.join(self._dir, "notify")
            self.sock.bind(path)
            self.env_value = path
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []

    def env(self, watchdog_usec: int | None = None, watchdog_pid: int | None = None) -> dict[str, str]:
        env = {"NOTIFY_SOCKET": self.env_value}
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        if watchdog_pid is not None:
            env["WATCHDOG_PID"] = str(watchdog_pid)
        return env

    async def receive(self, within: float) -> dict[str, str]:
        data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(self.sock, 65536), within)
        message = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
        self.messages.append(message)
        return message

    async def until(self, predicate: Callable[[dict[str, str]], bool], within: float) -> dict[str, str]:
        async with asyncio.timeout(within):
            while True:
                message = await self.receive(within)
                if predicate(message):
                    return message

    def kinds(self) -> list[str]:
        """The first key of each message received: READY, WATCHDOG, STATUS, RELOADING, STOPPING."""
        return [next(iter(m)) for m in self.messages]

    def close(self) -> None:
        self.sock.close()
        if self._dir is not None:
            with_path = os.path.join(self._dir, "notify")
            if os.path.exists(with_path):
                os.unlink(with_path)
            os.rmdir(self._dir)


def parse_line(raw: bytes) -> dict[str, Any]:
    """A JSON log line, or the raw text of anything else the process printed."""
    try:
        value = json.loads(raw)
    except ValueError:
        return {"raw": raw.decode(errors="replace")}
    return value if isinstance(value, dict) else {"raw": raw.decode(errors="replace")}


class DaemonProcess:
    """`harvester run` in a subprocess; its output (stdout and stderr together) read line by line."""

    def __init__(self, config: Path, state_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        base = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        self.env = {**base, "HARVESTER_STATE_DIR": str(state_dir), "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        # The command line; a test may wrap it (strace).
        self.command = [sys.executable, "-m", "harvester", "run", "--config", str(config)]
        self.preexec: Callable[[], None] | None = None  # run in the child before exec (rlimits)

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.command,
            limit=16 * 2**20,  # debug logging can write long lines (whole payloads)
            preexec_fn=self.preexec,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.env,
            cwd=REPO,
        )

    async def _next(self) -> dict[str, Any] | None:
        assert self.proc is not None and self.proc.stdout is not None
        raw = await self.proc.stdout.readline()
        if not raw:
            return None
        self.raw.append(raw)
        line = parse_line(raw)
        self.lines.append(line)
        return line

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool], within: float) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                line = await self._next()
                if line is None:
                    raise AssertionError(f"daemon exited; last lines: {self.lines[-8:]}")
                if predicate(line):
                    return line

    def event(self, name: str) -> Callable[[dict[str, Any]], bool]:
        return lambda line: line.get("event") == name

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def stop(self, sig: int = signal.SIGTERM, within: float = 20) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        async with asyncio.timeout(within):
            while await self._next() is not None:
                pass
            return await self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()

    def output(self) -> str:
        return b"".join(self.raw).decode(errors="replace")


def synthetic_replay_file(
    path: Path, posts: int, *, rate: float = 25.0, seed: int = 42, every: float = 60
) -> list[str]:
    """Write `posts` synthetic posts (everyday chatter plus brand crises every minute of event time) as
    a replay JSONL file; return their ids in file order. A crisis starts every `every` seconds."""
    from datetime import UTC, datetime

    from harvester.sources.synthetic import SyntheticScenarios
    from harvester.sources.synthetic_text import DEFAULT_START, StreamGenerator

    plan = SyntheticScenarios(first_after=40, every=every, duration=every / 2, kinds=["brand_crisis"]).plan()
    stream = StreamGenerator(seed=seed, source="rp", rate=rate, origin=DEFAULT_START.timestamp(), plan=plan)
    ts = DEFAULT_START.timestamp()
    ids = []
    with path.open("w", encoding="utf-8") as out:
        for seq in range(1, posts + 1):
            when = datetime.fromtimestamp(ts, UTC)
            post = stream.post(seq, ts, when, when)
            record = {
                "id": post.native_id,
                "text": post.text,
                "author": post.author,
                "created_at": ts,
                "likes": post.likes,
                "followers": post.followers,
            }
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            ids.append(post.native_id)
            ts += 1.0 / stream.rate_at(ts)
    return ids


class Zygote:
    """tests/issue9_zygote.py: forks warm `harvester run` daemons (see its docstring for why)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(Path(__file__).with_name("issue9_zygote.py")),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=self.env,
            cwd=REPO,
        )

    async def _ask(self, line: str, within: float = 60) -> str:
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()
        async with asyncio.timeout(within):
            answer = await self.proc.stdout.readline()
        if not answer:
            raise AssertionError("the zygote exited")
        return answer.decode().strip()

    async def run(self, config: Path, logfile: Path) -> int:
        answer = await self._ask(f"run {config} {logfile}")
        assert answer.startswith("pid "), answer
        return int(answer.split()[1])

    async def wait(self, pid: int, within: float = 60) -> int:
        answer = await self._ask(f"wait {pid}", within)
        assert answer.startswith("exit "), answer
        return int(answer.split()[1])

    async def close(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"quit\n")
        await self.proc.stdin.drain()
        self.proc.stdin.close()
        try:
            async with asyncio.timeout(10):
                await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def wait_for_log_line(
    logfile: Path, predicate: Callable[[dict[str, Any]], bool], within: float
) -> dict[str, Any]:
    """Follow a daemon's log file until a line matches (a file: the zygote's children write to one)."""
    offset = 0
    pending = b""
    async with asyncio.timeout(within):
        while True:
            with logfile.open("rb") as log:
                log.seek(offset)
                chunk = log.read()
            offset += len(chunk)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line = parse_line(raw)
                if predicate(line):
                    return line
            await asyncio.sleep(0.05)  # a file has no readiness to wait on; bounded by `within`
