"""The systemd notify and watchdog protocol, against a local datagram socket (no systemd needed)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from harvester.sd_notify import Notifier, watchdog_seconds
from tests.issue9_helpers import DaemonProcess, NotifySocket


@pytest.fixture
def notify_socket() -> object:
    sock = NotifySocket()
    yield sock
    sock.close()


async def test_messages_reach_a_path_socket(notify_socket: NotifySocket) -> None:
    notifier = Notifier.from_env(notify_socket.env())
    assert notifier.enabled and notifier.ping_interval is None  # no WATCHDOG_USEC: no watchdog
    assert notifier.ready("running: 1 sources")
    assert await notify_socket.receive(2) == {"READY": "1", "STATUS": "running: 1 sources"}
    assert notifier.status("a\nmultiline   status")
    assert await notify_socket.receive(2) == {"STATUS": "a multiline status"}  # one line, never two keys
    assert notifier.reloading()
    reloading = await notify_socket.receive(2)
    assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0
    assert notifier.stopping()
    assert await notify_socket.receive(2) == {"STOPPING": "1"}
    notifier.close()


async def test_abstract_namespace_socket() -> None:
    sock = NotifySocket(abstract=True)
    try:
        assert sock.env_value.startswith("@")
        notifier = Notifier.from_env(sock.env())
        assert notifier.ping()
        assert await sock.receive(2) == {"WATCHDOG": "1"}
        notifier.close()
    finally:
        sock.close()


def test_no_socket_is_a_no_op() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert not notifier.ready() and not notifier.ping() and not notifier.stopping()
    assert notifier.ping_interval is None
    # A vsock address or garbage is not ours to speak to: treated as no socket.
    assert not Notifier.from_env({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled


def test_watchdog_interval_and_pid() -> None:
    assert watchdog_seconds({"WATCHDOG_USEC": "30000000"}, pid=10) == 30.0
    assert watchdog_seconds({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "10"}, pid=10) == 30.0
    assert watchdog_seconds({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "11"}, pid=10) is None
    assert watchdog_seconds({"WATCHDOG_USEC": "0"}, pid=10) is None
    assert watchdog_seconds({"WATCHDOG_USEC": "soon"}, pid=10) is None
    notifier = Notifier.from_env({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "20000000"}, pid=1)
    assert notifier.ping_interval == 10.0  # half of WatchdogSec
    # Without a socket there is nobody to ping, whatever WATCHDOG_USEC says.
    assert Notifier.from_env({"WATCHDOG_USEC": "20000000"}, pid=1).ping_interval is None


async def test_a_vanished_socket_never_raises(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "gone"))
    assert not notifier.ready()
    assert not notifier.ping()
    notifier.close()


async def test_watchdog_loop_pings_at_half_the_interval(notify_socket: NotifySocket) -> None:
    notifier = Notifier.from_env(notify_socket.env(watchdog_usec=8_000_000))
    sleeps: list[float] = []
    enough = asyncio.Event()

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:
            enough.set()
        await asyncio.sleep(0)

    task = asyncio.create_task(notifier.run_watchdog(fake_sleep))
    await asyncio.wait_for(enough.wait(), 5)
    task.cancel()
    assert sleeps[:3] == [4.0, 4.0, 4.0]
    for _ in range(3):
        assert await notify_socket.receive(2) == {"WATCHDOG": "1"}
    notifier.close()


FAST = """
state_dir: ${HARVESTER_STATE_DIR}
stats_interval: 0.5s
log: {format: json}
sources:
  - type: synthetic
    name: demo
    rate: 200
    seed: 5
rules:
  - name: brands
    keywords: [acme air, globex bank]
alerts:
  sinks:
    - type: log
"""


@pytest.mark.timeout(90)
async def test_daemon_sends_ready_watchdog_stopping_in_order(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    config = tmp_path / "harvester.yaml"
    config.write_text(FAST)
    # WATCHDOG_PID names a process that is not the daemon in the test, so leave it unset; 0.4 s
    # WatchdogSec makes the daemon ping every 0.2 s.
    daemon = DaemonProcess(config, tmp_path / "state", env=notify_socket.env(watchdog_usec=400_000))
    await daemon.start()
    try:
        ready = await notify_socket.until(lambda m: "READY" in m, within=45)
        assert ready["STATUS"].startswith("running: 1 sources")
        await daemon.wait_for(daemon.event("harvester starting"), within=10)
        pings = 0
        while pings < 3:
            pings += (await notify_socket.receive(10)).get("WATCHDOG") == "1"
        # The stats line also goes to systemctl status.
        await notify_socket.until(lambda m: m.get("STATUS", "").endswith("alerts sent"), within=10)
        daemon.send(signal.SIGTERM)
        await notify_socket.until(lambda m: "STOPPING" in m, within=15)
        assert await daemon.stop(within=20) == 0
    finally:
        daemon.kill()
    kinds = notify_socket.kinds()
    assert kinds[0] == "READY", kinds
    # The watchdog keeps pinging through the drain (TimeoutStopSec bounds that), so only the pings
    # between READY and STOPPING are checked.
    assert "WATCHDOG" in kinds[1 : kinds.index("STOPPING")]
    assert "READY" not in kinds[1:]


async def test_watchdog_pid_of_another_process_turns_the_watchdog_off(notify_socket: NotifySocket) -> None:
    notifier = Notifier.from_env(notify_socket.env(watchdog_usec=400_000, watchdog_pid=os.getpid() + 1))
    assert notifier.enabled and notifier.ping_interval is None
    await asyncio.wait_for(notifier.run_watchdog(), 1)  # returns at once: nothing to ping
