"""`CampaignDetector.idle_for`: when it says a post needs nothing, skipping `observe` for it changes
nothing (same signals, same state), and it says so for most posts.

Time is the `ts` each observation carries; nothing reads a clock.
"""

from __future__ import annotations

import random
import string
from datetime import timedelta

from harvester.config.detectors import CampaignConfig
from harvester.engine.detectors.base import Observation
from harvester.engine.detectors.campaign import CampaignDetector, index_for
from harvester.models import Post, Signal
from tests.helpers import T0, make_post

START = T0.timestamp()
MESSAGES = (
    "Acme Air is hiding the truth about the engine failures on their new planes, the regulators were "
    "told months ago and nobody did anything, share this before they delete it",
    "Globex bank froze thousands of savings accounts overnight without any warning at all, move your "
    "money out today before they freeze yours as well, tell everyone you know",
)
CONFIGS = {
    "quick": CampaignConfig(min_accounts=3, window=60, cooldown=40),
    "slow": CampaignConfig(min_accounts=6, window=120, cooldown=300, max_clusters=4),
    "strict": CampaignConfig(min_accounts=4, max_distance=3, min_chars=60),
}


def stream(seed: int, count: int) -> list[tuple[float, Post, tuple[str, ...]]]:
    """Bursts of campaign variants from many accounts between stretches of everyday posts only, a
    few posts a little late."""
    rng = random.Random(seed)
    posts = []
    ts = START
    for n in range(count):
        ts += rng.uniform(0.05, 1.0)
        if (n // 150) % 2 == 0 and rng.random() < 0.6:
            text = rng.choice(MESSAGES).replace("truth", rng.choice(("story", "facts", "truth")))
            author = f"bot{rng.randrange(60)}"
        else:
            text = " ".join("".join(rng.choices(string.ascii_lowercase, k=5)) for _ in range(9))
            author = f"user{rng.randrange(500)}"
        late = rng.uniform(0, 20) if rng.random() < 0.05 else 0.0
        rules = tuple(name for name in CONFIGS if rng.random() < 0.7) or ("quick",)
        post = make_post(n, text, at=T0 + timedelta(seconds=ts - late - START), author=author)
        posts.append((ts - late, post, rules))
    return posts


def run(
    skipping: bool, posts: list[tuple[float, Post, tuple[str, ...]]]
) -> tuple[list[Signal], list[object], int]:
    # Few clusters in the shared index: a cluster a rule has a view of gets pushed out by the chatter
    # and opened again, smaller than the view (which the rule keeps).
    index = index_for(CONFIGS.values())
    index.max_clusters = 40
    detectors = {name: CampaignDetector(name, config, index=index) for name, config in CONFIGS.items()}
    signals: list[Signal] = []
    skipped = 0
    for ts, post, rules in posts:
        obs = Observation(ts, post, 0.0)
        obs.cluster = index.place(obs, rules)
        for name in rules:
            detector = detectors[name]
            if skipping and detector.idle_for(obs):
                skipped += 1
                continue
            signals += detector.observe(obs)
    states: list[object] = [d.snapshot() for d in detectors.values()]
    states += [d.now for d in detectors.values()]
    return signals, states, skipped


def test_skipping_the_posts_idle_for_says_need_nothing_changes_nothing() -> None:
    posts = stream(1, 3000)
    signals, states, _ = run(False, posts)
    skipped_signals, skipped_states, skipped = run(True, posts)
    assert len(signals) >= 5  # campaigns fired (and escalated or were held) along the way
    assert [(s.id, s.severity, s.at, s.evidence) for s in skipped_signals] == [
        (s.id, s.severity, s.at, s.evidence) for s in signals
    ]
    assert skipped_states == states
    assert skipped > 0.5 * sum(len(rules) for _, _, rules in posts)


def test_a_detector_with_its_own_index_is_never_idle() -> None:
    det = CampaignDetector("solo", CampaignConfig())
    obs = Observation(START, make_post(1, MESSAGES[0], at=T0, author="a"), 0.0)
    assert not det.idle_for(obs)
    assert det.now == START
