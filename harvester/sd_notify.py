"""The systemd notification protocol (sd_notify(3)), with no dependency beyond the standard library.

Under `Type=notify` systemd passes `$NOTIFY_SOCKET`, a unix datagram socket (a path, or a name in the
abstract namespace written with a leading `@`). The daemon sends newline-separated `KEY=VALUE`
assignments to it: `READY=1` once the sources are started, `STATUS=...` for `systemctl status`,
`RELOADING=1` / `READY=1` around a SIGHUP reload, `STOPPING=1` when the drain begins, and
`WATCHDOG=1` at least once per `WatchdogSec` (`$WATCHDOG_USEC`) so that a stuck event loop gets the
service restarted. We ping at half the interval, from a task on the event loop itself: if the loop
stops turning, the pings stop.

`$WATCHDOG_PID`, when set, names the process the watchdog is meant for; in any other process (a
child started with the same environment) the watchdog is off. Without `$NOTIFY_SOCKET` every call is
a no-op, so the daemon behaves the same outside systemd. A failed send is logged once and never
raises: notification is a courtesy to the service manager, not a reason to stop collecting.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping

import structlog

log = structlog.get_logger(__name__)

# systemd truncates STATUS= in `systemctl status`; a long one only costs datagram space.
MAX_STATUS_CHARS = 200


def _socket_address(raw: str) -> str | bytes | None:
    """`$NOTIFY_SOCKET` as an address for sendto: a path, or the abstract name as bytes with a NUL."""
    if not raw:
        return None
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()
    if raw.startswith("/"):
        return raw
    return None  # systemd also knows vsock addresses ("vsock:..."); not for a service on a VPS


def watchdog_seconds(env: Mapping[str, str], pid: int) -> float | None:
    """The WatchdogSec systemd asked this process for, in seconds, or None when it is off for us."""
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner and (not owner.isdigit() or int(owner) != pid):
        return None
    return int(usec) / 1_000_000


class Notifier:
    """Sends sd_notify messages; every method is a no-op when there is no notify socket."""

    def __init__(self, address: str | bytes | None, watchdog: float | None = None) -> None:
        self.address = address
        self.watchdog = watchdog if address is not None else None
        self.sent: list[str] = []  # kept short: only the kinds of message, for tests and debugging
        self._sock: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, pid: int | None = None) -> Notifier:
        env = os.environ if env is None else env
        return cls(_socket_address(env.get("NOTIFY_SOCKET", "")), watchdog_seconds(env, pid or os.getpid()))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def ping_interval(self) -> float | None:
        """Half of WatchdogSec, as sd_watchdog_enabled(3) advises: one late ping is not a restart."""
        return None if self.watchdog is None else self.watchdog / 2

    def send(self, *assignments: str) -> bool:
        if self.address is None:
            return False
        message = "\n".join(assignments)
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(message.encode("utf-8", "replace"), self.address)
        except OSError as exc:
            if not self._failed:  # a socket that vanished would otherwise log on every ping
                self._failed = True
                log.warning("systemd notification failed", error=str(exc))
            return False
        self._failed = False
        self.sent.append(assignments[0].split("=", 1)[0])
        del self.sent[:-100]
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *self._status(status))

    def reloading(self) -> bool:
        # Since systemd 253 a RELOADING=1 must carry the monotonic time it was sent at.
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={now_usec}")

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *self._status(status))

    def status(self, text: str) -> bool:
        return self.send(*self._status(text))

    def ping(self) -> bool:
        return self.send("WATCHDOG=1")

    @staticmethod
    def _status(text: str | None) -> list[str]:
        if text is None:
            return []
        return ["STATUS=" + " ".join(text.split())[:MAX_STATUS_CHARS]]

    async def run_watchdog(self, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """Ping every `ping_interval` until cancelled; returns at once when the watchdog is off."""
        interval = self.ping_interval
        if interval is None:
            return
        while True:
            self.ping()
            await sleep(interval)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
