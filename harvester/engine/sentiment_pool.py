"""Text analysis of matched posts in a worker process, so VADER uses the second core of a small VPS.

VADER is pure Python and costs more than everything else the pipeline does per post put together;
on the event loop's thread it caps throughput at one core. Batches of texts go to a worker process
(spawned, never forked: the parent has threads) and come back in the same order as `TextFacts`: the
compound score, and, since the worker reads the text anyway, the post's words and their SimHash
fingerprint (tokenizing and fingerprinting cost a tenth of VADER; done here, they cost the event
loop nothing). If a worker dies, the batch is analysed inline and the pool is rebuilt: no post goes
unscored.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import structlog

from harvester.engine.sentiment import SentimentScorer
from harvester.engine.simhash import simhash, words

log = structlog.get_logger(__name__)

_worker_scorer: SentimentScorer | None = None


def _init_worker(extra_lexicon: Path | None) -> None:
    global _worker_scorer  # noqa: PLW0603 - one analyzer per worker process, built once
    _exit_with_parent()
    _worker_scorer = SentimentScorer(extra_lexicon)


def _exit_with_parent() -> None:
    """End this worker the moment the daemon is gone, even after a kill -9 that gave it no chance to
    shut the pool down: otherwise the worker lingers as an orphan holding the daemon's stdout."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


# (VADER compound, the words of `harvester.engine.simhash.words` joined by spaces, their SimHash): a
# plain tuple with one string, the cheapest thing to send back across the process boundary.
TextFacts = tuple[float, str, int]


def analyse_text(scorer: SentimentScorer, text: str) -> TextFacts:
    features = words(text)
    return scorer.score(text), " ".join(features), simhash(features)


def analyse_texts(texts: Sequence[str]) -> list[TextFacts]:
    """Runs in the worker: analyse a batch of texts."""
    scorer = _worker_scorer or SentimentScorer()
    return [analyse_text(scorer, text) for text in texts]


def default_workers() -> int:
    """One worker when there is a second core to put it on; none (inline scoring) otherwise."""
    return 1 if (os.cpu_count() or 1) >= 2 else 0


class SentimentPool:
    """Analyses batches in worker processes, or inline when there are none or they cannot run.

    Any failure of the pool (a worker killed, a process that cannot start) costs no scores: the batch
    is analysed inline. The pool is rebuilt up to `MAX_REBUILDS` times; after that harvester keeps
    scoring inline rather than spawning processes in a loop.
    """

    MAX_REBUILDS = 5

    def __init__(self, workers: int, extra_lexicon: Path | None = None) -> None:
        self.workers = workers
        self.extra_lexicon = extra_lexicon
        self.rebuilds = 0
        self._inline = SentimentScorer(extra_lexicon)
        self._executor: ProcessPoolExecutor | None = None

    @property
    def in_process(self) -> bool:
        return self._executor is None

    def start(self) -> None:
        if self.workers > 0 and self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(self.extra_lexicon,),
            )

    async def analyse(self, texts: list[str]) -> list[TextFacts]:
        if not texts:
            return []
        if self._executor is not None:
            try:
                return await asyncio.wrap_future(self._executor.submit(analyse_texts, texts))
            except (BrokenProcessPool, OSError, RuntimeError) as exc:
                self._recover(exc)
        return [analyse_text(self._inline, text) for text in texts]

    def _recover(self, exc: BaseException) -> None:
        self.close()
        if self.rebuilds >= self.MAX_REBUILDS:
            log.error("sentiment workers keep failing; scoring inline from now on", error=repr(exc))
            self.workers = 0
            return
        self.rebuilds += 1
        log.error("sentiment worker failed; scored this batch inline, starting a new worker", error=repr(exc))
        self.start()

    def close(self) -> None:
        if self._executor is not None:
            # Waiting is short (at most the batch in flight) and lets the worker exit and be reaped.
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
