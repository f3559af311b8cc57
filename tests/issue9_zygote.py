"""A warm parent that forks real `harvester run` daemons on request (issue 9's kill -9 test).

Not collected by pytest. Importing harvester and its client libraries (aiohttp, tweepy, discord.py,
asyncpraw) costs 2 to 6 s on a loaded 2-core machine; twenty restarts would spend minutes in imports.
This process imports them once and then forks: each child is a separate process running the daemon's
real entry point (`harvester.cli.main(["run", ...])`) from a clean state (no event loop, no thread has
been started before the fork), and the test kills it with a real SIGKILL.

Protocol, one line each way on stdin/stdout:
    run CONFIG LOGFILE  ->  pid N          fork a daemon; its stdout and stderr go to LOGFILE
    wait N              ->  exit CODE      reap it (CODE is negative for a signal, as in subprocess)
    quit                                   exit
"""

from __future__ import annotations

import os
import sys

import harvester.cli  # the whole daemon, plugins included, imported once before any fork
import harvester.plugins


def serve() -> None:
    for line in sys.stdin:
        command, *args = line.split()
        if command == "run":
            config, logfile = args
            pid = os.fork()
            if pid == 0:
                fd = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.close(fd)
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                sys.stdout = os.fdopen(1, "w", buffering=1)
                sys.stderr = os.fdopen(2, "w", buffering=1)
                code = 1
                try:
                    code = harvester.cli.main(["run", "--config", config])
                finally:
                    sys.stdout.flush()
                    os._exit(code)
            print(f"pid {pid}", flush=True)
        elif command == "wait":
            _, status = os.waitpid(int(args[0]), 0)
            print(f"exit {os.waitstatus_to_exitcode(status)}", flush=True)
        elif command == "quit":
            return


if __name__ == "__main__":
    serve()
