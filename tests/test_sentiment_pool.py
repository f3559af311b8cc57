"""Text analysis in a worker process: same scores, survives a dead worker, dies with its parent."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

from harvester.engine.sentiment import SentimentScorer
from harvester.engine.sentiment_pool import SentimentPool
from harvester.engine.simhash import simhash, words

TEXTS = ["I love this, great work", "worst outage ever, refund now", "the sky is blue", ""]


async def pool_scores(pool: SentimentPool, texts: list[str]) -> list[float]:
    return [facts[0] for facts in await pool.analyse(texts)]


async def test_the_worker_sends_back_the_words_and_fingerprint_the_engine_would_work_out() -> None:
    pool = SentimentPool(1)
    pool.start()
    try:
        text = "RT @jo: Acme Air lost my bag AGAIN https://t.co/x #fail"
        [(score, joined, fingerprint)] = await pool.analyse([text])
        assert score == SentimentScorer().score(text)
        assert joined.split() == words(text) == ["rt", "acme", "air", "lost", "my", "bag", "again", "fail"]
        assert fingerprint == simhash(words(text))
    finally:
        pool.close()


async def test_worker_scores_equal_inline_scores() -> None:
    pool = SentimentPool(1)
    pool.start()
    try:
        assert await pool_scores(pool, TEXTS) == [SentimentScorer().score(t) for t in TEXTS]
        assert await pool_scores(pool, []) == []
    finally:
        pool.close()


async def test_inline_when_no_workers() -> None:
    pool = SentimentPool(0)
    pool.start()
    scores = await pool_scores(pool, TEXTS)
    assert scores[0] > 0.5 and scores[1] < -0.5 and scores[2] == 0.0


async def test_a_killed_worker_costs_no_scores() -> None:
    pool = SentimentPool(1)
    pool.start()
    try:
        await pool_scores(pool, TEXTS)  # the worker is up
        assert pool._executor is not None
        for pid in list(pool._executor._processes):
            os.kill(pid, signal.SIGKILL)
        assert await pool_scores(pool, TEXTS) == [SentimentScorer().score(t) for t in TEXTS]
        assert pool.rebuilds == 1
        # the new worker works
        assert await pool_scores(pool, TEXTS[:1]) == [SentimentScorer().score(TEXTS[0])]
    finally:
        pool.close()


CHILD = """
import asyncio, sys
from harvester.engine.sentiment_pool import SentimentPool
async def main():
    pool = SentimentPool(1)
    pool.start()
    await pool.analyse(["warm up"])
    print(*pool._executor._processes, flush=True)
    await asyncio.Event().wait()
if __name__ == "__main__":  # the spawned worker imports this file too
    asyncio.run(main())
"""


def test_worker_exits_when_the_daemon_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert child.stdout is not None
    worker = int(child.stdout.readline())
    watch = os.pidfd_open(worker)
    try:
        child.kill()
        child.wait(timeout=10)
        readable, _, _ = select.select([watch], [], [], 10)  # a pidfd turns readable when the process ends
        assert readable == [watch], "the sentiment worker outlived the daemon"
    finally:
        os.close(watch)
        child.stdout.close()


async def test_a_pool_that_cannot_start_falls_back_to_inline_for_good() -> None:
    pool = SentimentPool(1)

    class Unstartable:
        def submit(self, *args: object) -> object:
            raise RuntimeError("cannot start a process here")

        def shutdown(self, **kwargs: object) -> None:
            pass

    pool.start = lambda: setattr(pool, "_executor", Unstartable())  # type: ignore[method-assign]
    pool.start()
    expected = [SentimentScorer().score(t) for t in TEXTS]
    for _ in range(SentimentPool.MAX_REBUILDS + 3):
        assert await pool_scores(pool, TEXTS) == expected
    assert pool.rebuilds == SentimentPool.MAX_REBUILDS and pool.workers == 0 and pool.in_process
