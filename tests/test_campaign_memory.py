"""Memory of the campaign detector and the near-duplicate index bounded by counts (a busy cluster is
never idle for a whole window, so time alone bounds nothing), while campaigns still fire and escalate.

Time is the `ts` each observation carries; nothing reads a clock.
"""

from __future__ import annotations

import random
import string

from harvester.config.detectors import CampaignConfig
from harvester.engine.detectors import campaign as campaign_module
from harvester.engine.detectors.base import Observation
from harvester.engine.detectors.campaign import CampaignDetector, index_for
from harvester.engine.detectors.near_duplicates import Cluster, NearDuplicateIndex, PostRef
from harvester.models import Post, Severity, Signal
from tests.helpers import CAMPAIGN_MESSAGE as MESSAGE
from tests.helpers import T0
from tests.helpers import post_at as post

START = T0.timestamp()


def distinct_text(rng: random.Random) -> str:
    return " ".join("".join(rng.choices(string.ascii_lowercase, k=6)) for _ in range(8))


def test_a_view_remembers_at_most_four_times_min_accounts_and_still_escalates() -> None:
    det = CampaignDetector("acme", CampaignConfig(min_accounts=5, cooldown=60))
    signals: list[Signal] = []
    most = 0
    for n in range(300):  # 300 distinct accounts, one a second, all within the window
        ts = START + n
        signals += det.observe(Observation(ts, post(n, MESSAGE, f"a{n}", ts), 0.0))
        most = max([most, *(len(view.authors) for view in det.clusters.values())])
    assert most == 20
    # Fired on the 5th account; escalated when its cooldown was over, to the top level (20 accounts
    # are 4 x min_accounts: more could not raise it), and never again.
    assert [(s.at.timestamp() - START, s.severity) for s in signals] == [
        (4, Severity.LOW),
        (64, Severity.HIGH),
    ]
    assert [s.evidence["distinct_accounts"] for s in signals] == [5, 20]


def test_a_rule_keeps_at_most_max_views_views_and_still_fires() -> None:
    det = CampaignDetector("r", CampaignConfig(min_accounts=3))
    rng = random.Random(1)
    n = 0
    for k in range(400):  # 400 clusters big enough for a view, each of one chatty account
        text = distinct_text(rng)
        for _ in range(3):
            n += 1
            ts = START + n * 0.1
            assert det.observe(Observation(ts, post(n, text, f"u{k}", ts), 0.0)) == []
    assert len(det.clusters) == campaign_module._MAX_VIEWS
    assert det.own_index is not None and len(det.own_index.clusters) == 400  # the index keeps more
    signals: list[Signal] = []
    for i in range(3):
        ts = START + n * 0.1 + 1 + i
        signals += det.observe(Observation(ts, post(10_000 + i, MESSAGE, f"bot{i}", ts), 0.0))
    assert [s.evidence["distinct_accounts"] for s in signals] == [3]
    assert len(det.clusters) == campaign_module._MAX_VIEWS


def test_a_smaller_max_clusters_caps_the_views_too() -> None:
    assert CampaignDetector("r", CampaignConfig(max_clusters=7))._max_views == 7
    assert CampaignDetector("r", CampaignConfig())._max_views == campaign_module._MAX_VIEWS


def test_a_dropped_view_opened_again_counts_the_clusters_recent_posts() -> None:
    index = NearDuplicateIndex(max_distance=6, min_chars=30, window=600, max_clusters=100, recent=10)
    det = CampaignDetector("acme", CampaignConfig(min_accounts=5, max_clusters=2), index=index)
    rng = random.Random(2)
    n = 0
    signals: list[Signal] = []

    def send(text: str, author: str) -> None:
        nonlocal n
        n += 1
        obs = Observation(START + n, post(n, text, author, START + n), 0.0)
        obs.cluster = index.place(obs, ("acme",))
        signals.extend(det.observe(obs))

    for _ in range(5):
        send(MESSAGE, "a0")  # a view of the message's cluster, one account so far
    message_seed = next(iter(det.clusters))
    for _ in range(2):
        text = distinct_text(rng)
        for _ in range(5):
            send(text, "chatty")  # two more views push the message's out
    assert message_seed not in det.clusters
    for author in ("a1", "a2", "a3", "a4"):
        send(MESSAGE, author)
    # a0 is counted again from the cluster's recent posts: five accounts at a4's post
    assert [s.evidence["distinct_accounts"] for s in signals] == [5]
    assert signals[0].at.timestamp() == START + n


def test_a_shared_cluster_keeps_twice_the_largest_min_accounts_of_recent_posts() -> None:
    index = index_for([CampaignConfig(min_accounts=15), CampaignConfig(min_accounts=40)])
    assert index.recent == 80
    index = index_for([CampaignConfig()])
    for n in range(100):
        ts = START + n
        cluster = index.place(Observation(ts, post(n, MESSAGE, f"a{n}", ts), 0.0), ("r",))
    assert isinstance(cluster, Cluster) and cluster.posts == 100
    assert [p.uid for p in cluster.recent] == [f"test:{n}" for n in range(70, 100)]


def test_recent_posts_older_than_the_window_are_let_go() -> None:
    index = NearDuplicateIndex(max_distance=6, min_chars=30, window=100, max_clusters=100)
    for n in range(50):
        index.place(Observation(START + n, post(n, MESSAGE, f"a{n}", START + n), 0.0), ("r",))
    # The cluster is still live (its last post 71 s ago), but its posts before 20 s are out of the
    # window: no rule would count them.
    cluster = index.place(Observation(START + 120, post(99, MESSAGE, "z", START + 120), 0.0), ("r",))
    assert isinstance(cluster, Cluster) and cluster.posts == 51
    assert [p.ts - START for p in cluster.recent] == [*range(20, 50), 120]


def test_a_recent_post_is_one_flat_record_without_the_post() -> None:
    index = index_for([CampaignConfig()])
    first = post(1, MESSAGE, "a", START, followers=12)
    second = post(2, MESSAGE.replace("truth", "story"), "b", START + 1)
    index.place(Observation(START, first, 0.0), ("r",))
    cluster = index.place(Observation(START + 1, second, 0.0), ("r", "s"))
    assert isinstance(cluster, Cluster)
    one, two = cluster.recent
    assert (one.post, two.post) == (PostRef.of(first), PostRef.of(second))
    assert (one.distance, two.distance) == (0, (cluster.seed ^ cluster.fingerprint).bit_count())
    assert two.distance > 0 and (one.rules, two.rules) == (("r",), ("r", "s"))
    assert not any(isinstance(field, Post) for placed in cluster.recent for field in placed)


def test_followers_survive_an_accounts_single_value_and_a_restart() -> None:
    det = CampaignDetector("acme", CampaignConfig(min_accounts=5))
    followers = [None, 0, 99, 100, 10**12]
    signals: list[Signal] = []
    for n, count in enumerate(followers):
        ts = START + n
        signals += det.observe(Observation(ts, post(n, MESSAGE, f"a{n}", ts, count), 0.0))
    assert [s.evidence["followers_known"] for s in signals] == [4]
    assert signals[0].evidence["low_follower_share"] == 0.5  # 0 and 99 of the four known
    state = det.snapshot()
    (row,) = state["clusters"]
    assert [f for _, _, f in row[-1]] == followers
    restored = CampaignDetector("acme", CampaignConfig(min_accounts=5))
    restored.restore(state)
    assert restored.snapshot() == state


def test_a_fired_campaign_remembers_at_most_sixteen_times_min_accounts() -> None:
    det = CampaignDetector("acme", CampaignConfig(min_accounts=2, cooldown=60))
    for n in range(200):
        ts = START + n
        det.observe(Observation(ts, post(n, MESSAGE, f"a{n}", ts), 0.0))
    (campaign,) = det.campaigns.values()
    assert len(campaign.authors) == 32
