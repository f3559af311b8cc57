"""The accounts a fired campaign remembers (to keep its other clusters quiet): a filter of a fixed
size, allocated whole when the campaign fires, saved in snapshots as one string that reads the same
in another process, and snapshots that list the names (taken before the filter) still restore.

Time is the `ts` each observation carries; nothing reads a clock.
"""

from __future__ import annotations

import json
import random

from harvester.config.detectors import CampaignConfig
from harvester.engine.detectors.base import Observation
from harvester.engine.detectors.campaign import (
    CampaignDetector,
    _account_hash,
    _Accounts,
    _Cluster,
    _hashes_of,
)
from harvester.models import Signal
from tests.helpers import CAMPAIGN_MESSAGE as MESSAGE
from tests.helpers import T0
from tests.helpers import post_at as post

START = T0.timestamp()
# The same accounts push a reworded version: a cluster of its own, far from the first one's seed.
OTHER = "Share this before they delete it: Acme Air hides engine failures from every passenger today"


def half_known(accounts: _Accounts, names: list[str]) -> bool:
    return accounts.knows_half([_account_hash(name) for name in names])


def wave(det: CampaignDetector, text: str, start: float, accounts: int, first: int = 0) -> list[Signal]:
    signals: list[Signal] = []
    for i in range(accounts):
        ts = start + i
        signals += det.observe(Observation(ts, post(first + i, text, f"bot{i}", ts), 0.0))
    return signals


def test_the_filter_is_allocated_whole_when_the_campaign_fires() -> None:
    det = CampaignDetector("acme", CampaignConfig(min_accounts=15))
    assert len(wave(det, MESSAGE, START, 15)) == 1
    (campaign,) = det.campaigns.values()
    size = len(campaign.authors.bits)
    assert size * 8 >= 32 * 16 * 15  # 32 bits for each of the 16 x min_accounts accounts it may hold
    assert len(campaign.authors) == 15
    wave(det, MESSAGE, START + 20, 300, first=100)  # more accounts than it keeps, on the same cluster
    assert len(campaign.authors) == 16 * 15
    assert len(campaign.authors.bits) == size


def test_the_filter_knows_what_it_was_given_and_rarely_what_it_was_not() -> None:
    accounts = _Accounts(240)
    names = [f"account_{n}" for n in range(240)]
    for name in names:
        accounts.add(name)
    assert len(accounts) == 240 and all(name in accounts for name in names)
    assert half_known(accounts, names)
    strangers = [f"stranger_{n}" for n in range(30)]
    assert half_known(accounts, names[:15] + strangers[:15])
    assert half_known(accounts, names[:15] + strangers[:14])
    assert not half_known(accounts, names[:14] + strangers[:15]) and not half_known(accounts, strangers)
    assert not half_known(accounts, strangers[:15] + names[:14])  # (the order does not matter)
    assert half_known(accounts, strangers[:15] + names[:15])
    others = [f"someone_else_{n}" for n in range(20_000)]
    false = sum(1 for name in others if name in accounts)
    assert false <= 10  # about 1 in 5,000 expected (four probes, 34 bits an account here)
    accounts.add(names[0])
    assert len(accounts) == 240  # an account added again counts once


def test_the_probes_do_not_depend_on_the_process() -> None:
    # blake2b of the name, not the salted str hash: pinned, so a snapshot taken by another process
    # (another PYTHONHASHSEED) finds the same bits.
    assert _Accounts(15)._probes(_account_hash("bot1")) == (373, 890, 527, 825)


def test_a_restarted_detector_still_knows_the_campaigns_accounts() -> None:
    det = CampaignDetector("acme", CampaignConfig(min_accounts=15))
    assert len(wave(det, MESSAGE, START, 20)) >= 1
    state = json.loads(json.dumps(det.snapshot()))  # as the engine stores it
    ((_seed, _until, bits, count),) = state["campaigns"]
    assert isinstance(bits, str) and count == 20
    restored = CampaignDetector("acme", CampaignConfig(min_accounts=15))
    restored.restore(state)
    assert json.loads(json.dumps(restored.snapshot())) == state
    assert wave(restored, OTHER, START + 60, 20, first=100) == []  # the same accounts: one campaign
    fresh = CampaignDetector("acme", CampaignConfig(min_accounts=15))
    assert len(wave(fresh, OTHER, START + 60, 20, first=100)) == 1  # (without the campaign it fires)


def test_a_snapshot_listing_the_names_still_restores() -> None:
    det = CampaignDetector("acme", CampaignConfig(min_accounts=15))
    assert len(wave(det, MESSAGE, START, 20)) >= 1
    state = json.loads(json.dumps(det.snapshot()))
    ((seed, until, _bits, _count),) = state["campaigns"]
    state["campaigns"] = [[seed, until, sorted(f"bot{i}" for i in range(20))]]  # the older form
    restored = CampaignDetector("acme", CampaignConfig(min_accounts=15))
    restored.restore(state)
    (campaign,) = restored.campaigns.values()
    assert len(campaign.authors) == 20
    assert wave(restored, OTHER, START + 60, 20, first=100) == []


def test_a_filter_saved_at_another_size_keeps_its_size() -> None:
    small = _Accounts(100)  # 4,096 bits; a detector with min_accounts 15 makes 8,192
    rng = random.Random(3)
    names = ["".join(rng.choices("abcdefgh", k=8)) for _ in range(32)]
    for name in names:
        small.add(name)
    saved = small.saved()
    det = CampaignDetector("acme", CampaignConfig(min_accounts=15))
    det.restore({"clusters": [], "campaigns": [[1, START + 1800, saved, len(small)]]})
    (campaign,) = det.campaigns.values()
    assert len(campaign.authors.bits) == len(small.bits) == 512
    assert all(name in campaign.authors for name in names) and len(campaign.authors) == 32


def test_a_clusters_account_hashes_are_kept_and_stay_bounded() -> None:
    cluster = _Cluster(seed=1, text="t", first_seen=0.0, last_seen=0.0)
    cluster.authors = {f"acct{i}": complex(0.0, -1.0) for i in range(20)}
    names = list(cluster.authors)
    assert _hashes_of(cluster, names) == [_account_hash(name) for name in names]
    assert cluster.hashes is not None and len(cluster.hashes) == 20
    kept = cluster.hashes
    assert _hashes_of(cluster, names[:5]) == [_account_hash(name) for name in names[:5]]
    assert cluster.hashes is kept  # asked again: worked out from the cache
    # Accounts that left the view are not kept for ever: past twice the view's accounts (+16), the
    # cache starts afresh.
    gone = [f"old{i}" for i in range(60)]
    _hashes_of(cluster, gone)
    assert _hashes_of(cluster, names) == [_account_hash(name) for name in names]
    assert len(cluster.hashes) <= 2 * len(cluster.authors) + 16 + len(names)
