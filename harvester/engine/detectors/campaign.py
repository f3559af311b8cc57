"""Coordinated campaign: near-duplicate texts from many distinct accounts within minutes.

The clustering itself is shared by every rule (`near_duplicates`: SimHash fingerprints, clusters as
balls around a seed, found through LSH bands). This detector counts, per cluster its rule's posts
fall in, the distinct accounts that posted there during the last `window` seconds, and fires once
they reach `min_accounts`. A cluster with fewer posts than that (nearly every one) costs it nothing:
it keeps a view only of clusters that grew that far. A rule with a stricter `max_distance` or a
longer `min_chars` than the others skips the posts of a shared cluster that are too far from its
seed or too short.

Memory is bounded by counts, not only by time: a busy cluster is never idle for a whole window, and
Python does not give freed memory back, so what a long run holds must be reached early. A rule keeps
views of at most `_MAX_VIEWS` clusters (the least recently active go first: a campaign's cluster gets
posts all the time, and a view dropped and opened again recounts the cluster's recent posts), and a
view remembers at most `4 x min_accounts` accounts: from there on the severity cannot rise any more
(`_severity`), and the campaign fired long before. Each account costs one small value, its last time
and its followers in one `complex` (see `_Cluster.authors`). A rule remembers the accounts of at most
`_MAX_CAMPAIGNS` fired campaigns, at most `16 x min_accounts` each, in a filter of a fixed size
(`_Accounts`).

What is not a campaign:
- reposts ("RT @user: ..."): many accounts repeating one post is that post going viral, which the
  viral-post detector reports (they are never clustered);
- a wave of identical reactions to one post (every member replies to or quotes the same post:
  "this is so true"), for the same reason. The cost: reply-bombing of a single post is left to the
  viral detector, which sees it as references to that post;
- a second cluster of a campaign that already fired (its seed within twice `max_distance` of the
  fired one, or half of its accounts already counted there): one campaign, one alert.
"""

from __future__ import annotations

import heapq
import math
from base64 import b64decode, b64encode
from collections import OrderedDict
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from hashlib import blake2b
from itertools import pairwise
from typing import Any

from harvester.config.detectors import CampaignConfig
from harvester.engine.detectors.base import (
    MIN_COOLDOWN_S,
    Observation,
    RuleDetector,
    at,
    encode_json,
    finite,
)
from harvester.engine.detectors.near_duplicates import (
    NearDuplicateIndex,
    NearDuplicates,
    Placed,
)
from harvester.engine.simhash import distance
from harvester.models import Post, Severity, Signal

KIND = "campaign"
_MAX_VIEWS = 128  # clusters a rule keeps a view of (fewer if its `max_clusters` says so)
_ACCOUNTS_PER_LEVEL = 4  # accounts a view remembers, per `min_accounts`: the top severity needs 4x
# Accounts a fired campaign remembers to recognise its other clusters (half of a cluster's accounts
# known): 16 x min_accounts covers a campaign of up to 32 x min_accounts accounts (480 by default);
# a bigger one is still recognised by its clusters' seeds.
_CAMPAIGN_ACCOUNTS_PER_LEVEL = 16
_MAX_AUTHORS = 1000
# The fired campaigns' account filters (`_Accounts`): bits per account remembered, a power of two.
_FILTER_BITS_PER_ACCOUNT = 32
_MIN_FILTER_BITS = 1024
_FILTER_SIZES = frozenset(1 << n for n in range(10, 17))  # probes are 16 bits: at most 65,536
_MAX_CAMPAIGNS = 16  # campaigns remembered (while their cooldown runs) to keep their other clusters quiet
_LOW_FOLLOWERS = 100  # an account this small is cheap to create in bulk
_EXAMPLE_AUTHORS = 10
_LEVELS = (Severity.LOW, Severity.MEDIUM, Severity.HIGH)
_TOP_RANK = _LEVELS[-1].rank
_NO_FOLLOWERS = -1.0  # the imaginary part of an account's entry when its followers are not known


@dataclass(slots=True)
class _Cluster:
    seed: int
    text: str
    first_seen: float
    last_seen: float
    posts: int = 0
    # account -> its last post's time here + its followers (or _NO_FOLLOWERS) x 1j; oldest first.
    # One complex is one 32-byte object holding both exactly; a (time, followers) tuple was three
    # objects and about 110 bytes, and a long run holds tens of thousands of these.
    authors: dict[str, complex] = field(default_factory=dict)
    examples: list[tuple[int, str]] = field(default_factory=list)  # min-heap of (engagement, uid)
    # The post every member so far replies to or quotes ("" while none has a ref): a reaction wave.
    reacts_to: str | None = ""
    fired_rank: int = -1
    cooldown_until: float = -math.inf
    campaign: int | None = None  # seed of the cluster whose signal covers this one
    # Whether `authors` is in the order of their times (no late post came yet), and the newest time:
    # while it is, the first account is the least recent, and once it is in the window all are.
    ordered: bool = True
    newest: float = -math.inf
    # Its accounts' `_account_hash`es, once a fired campaign asked (see `_part_of_fired_campaign`):
    # a ready cluster held by the rule-wide gap is asked again on each of its posts, and a blake2b
    # per account each time was a twelfth of the engine's time with 1,000 rules.
    hashes: dict[str, int] | None = None

    def add(self, post: Post | Placed, ts: float, examples: int, max_authors: int) -> None:
        self.posts += 1
        if ts > self.last_seen:  # noqa: PLR1730 (cheaper than max(): this runs for each counted post)
            self.last_seen = ts
        authors = self.authors
        author = post.author
        previous = authors.pop(author, None)
        if previous is not None or len(authors) < max_authors:
            seen = ts if previous is None or ts >= previous.real else previous.real
            followers = post.followers
            authors[author] = complex(seen, _NO_FOLLOWERS if followers is None else followers)
            if seen < self.newest:
                self.ordered = False
            else:
                self.newest = seen
        if self.posts == 1:
            self.reacts_to = post.ref
        elif post.ref != self.reacts_to:
            self.reacts_to = None
        item = (post.engagement, post.uid)
        if len(self.examples) < examples:
            heapq.heappush(self.examples, item)
        elif item > self.examples[0]:
            heapq.heapreplace(self.examples, item)

    def forget_before(self, cutoff: float) -> None:
        """Drop accounts whose last post here is older than `cutoff` (oldest first: usually O(1))."""
        authors = self.authors
        while authors:
            author, entry = next(iter(authors.items()))
            if entry.real >= cutoff:
                return
            del authors[author]

    def accounts_since(self, cutoff: float) -> list[tuple[str, int | None]]:
        # A late post can leave an old entry behind a newer one, so count exactly.
        return [(a, _followers(entry)) for a, entry in self.authors.items() if entry.real >= cutoff]

    def all_since(self, cutoff: float) -> bool:
        """Whether every account posted here at `cutoff` or later, known without looking at them all."""
        authors = self.authors
        return self.ordered and (not authors or next(iter(authors.values())).real >= cutoff)

    @property
    def reaction_wave(self) -> bool:
        return bool(self.reacts_to)

    def row(self) -> list[Any]:
        """A compact, JSON-ready form for the snapshot."""
        # Tuples (one object; JSON writes them as lists): a snapshot lists every account of every
        # view at once, tens of thousands of them, and a list is two blocks.
        authors = [(a, entry.real, _followers(entry)) for a, entry in self.authors.items()]
        return [
            self.seed, self.text, self.first_seen, self.last_seen, self.posts, self.reacts_to,
            self.fired_rank, finite(self.cooldown_until), self.campaign, authors,
        ]  # fmt: skip

    @classmethod
    def from_row(cls, row: list[Any]) -> _Cluster:
        seed, text, first, last, posts, reacts_to, rank, until, campaign, authors = row
        cluster = cls(int(seed), str(text), float(first), float(last), int(posts))
        cluster.reacts_to = reacts_to
        cluster.fired_rank = int(rank)
        cluster.cooldown_until = -math.inf if until is None else float(until)
        cluster.campaign = None if campaign is None else int(campaign)
        cluster.authors = {
            str(a): complex(float(seen), _NO_FOLLOWERS if f is None else int(f)) for a, seen, f in authors
        }
        times = [entry.real for entry in cluster.authors.values()]
        cluster.ordered = all(a <= b for a, b in pairwise(times))
        cluster.newest = max(times, default=-math.inf)
        return cluster


def _account_hash(name: str) -> int:
    """A 64-bit hash of an account name that is the same in every process (`hash` of a str is salted
    per process, and a fired campaign's filter is saved in snapshots)."""
    return int.from_bytes(blake2b(name.encode(), digest_size=8).digest(), "little")


def _hashes_of(cluster: _Cluster, names: Collection[str]) -> list[int]:
    """The `_account_hash` of each of `names` (accounts of `cluster`), kept on the cluster."""
    cache = cluster.hashes
    if cache is None or len(cache) > 2 * len(cluster.authors) + 16:  # (accounts gone from the view)
        cache = cluster.hashes = {}
    out = []
    for name in names:
        value = cache.get(name)
        if value is None:
            value = cache[name] = _account_hash(name)
        out.append(value)
    return out


class _Accounts:
    """The accounts a fired campaign has seen, as a Bloom filter of a fixed size, allocated whole
    when the campaign fires: what a long run holds is then reached at once, instead of a set filling
    to `limit` names over the campaign's cooldown (half an hour, a million posts at a busy rate),
    and a snapshot saves it as one string rather than a list of names.

    `len` counts the accounts added (up to `limit`); `in` may say yes for an account never added,
    with a chance under 1 in 5,000 once `limit` are in (32 bits an account or more, four probes),
    which only matters to the "half of a cluster's accounts already counted" test. The probes come from
    blake2b of the name, so a snapshot reads the same in another process (`hash` of a str is
    salted per process)."""

    __slots__ = ("bits", "count", "limit", "mask")

    def __init__(self, limit: int, bits: bytes | None = None, count: int = 0) -> None:
        if bits is not None and len(bits) * 8 in _FILTER_SIZES:
            self.bits = bytearray(bits)  # as saved (its size, even if `limit` changed since)
            self.count = count
        else:
            size = max(_MIN_FILTER_BITS, 1 << (_FILTER_BITS_PER_ACCOUNT * limit - 1).bit_length())
            self.bits = bytearray(size // 8)
            self.count = 0
        self.mask = len(self.bits) * 8 - 1
        self.limit = limit

    def __len__(self) -> int:
        return self.count

    def _probes(self, h: int) -> tuple[int, int, int, int]:
        mask = self.mask
        return h & mask, (h >> 16) & mask, (h >> 32) & mask, (h >> 48) & mask

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        bits = self.bits
        return all(bits[p >> 3] >> (p & 7) & 1 for p in self._probes(_account_hash(name)))

    def add(self, name: str) -> None:
        self.add_hash(_account_hash(name))

    def add_hash(self, h: int) -> None:
        """Add the account whose `_account_hash` is `h`."""
        bits, mask = self.bits, self.mask
        new = False
        for p in (h & mask, (h >> 16) & mask, (h >> 32) & mask, (h >> 48) & mask):  # `_probes`
            byte, bit = p >> 3, 1 << (p & 7)
            held = bits[byte]
            if not held & bit:
                bits[byte] = held | bit
                new = True
        if new:  # (an account whose four bits were all set already counts as known: see `in`)
            self.count += 1

    def knows_half(self, hashes: list[int]) -> bool:
        """Whether at least half of the accounts whose `_account_hash`es are `hashes` (each once)
        were added, give or take a false positive. An account not added nearly always fails at its
        first probe, and the answer is known once half are found, or can no longer be."""
        bits, mask = self.bits, self.mask
        needed = (len(hashes) + 1) // 2
        left = len(hashes)
        for h in hashes:
            if needed > left:
                return False
            left -= 1
            p = h & mask
            if not bits[p >> 3] >> (p & 7) & 1:
                continue
            p = (h >> 16) & mask
            if not bits[p >> 3] >> (p & 7) & 1:
                continue
            p = (h >> 32) & mask
            if not bits[p >> 3] >> (p & 7) & 1:
                continue
            p = (h >> 48) & mask
            if bits[p >> 3] >> (p & 7) & 1:
                needed -= 1
                if not needed:
                    return True
        return needed <= 0

    def saved(self) -> str:
        return b64encode(self.bits).decode("ascii")


@dataclass(slots=True)
class _Campaign:
    """A campaign that fired: its accounts (from all of its clusters, as they keep posting) and how
    long its other clusters stay quiet."""

    seed: int
    until: float
    authors: _Accounts  # at most `authors.limit` remembered

    def enlist(self, authors: Iterable[str]) -> None:
        accounts = self.authors
        for author in authors:
            if accounts.count >= accounts.limit:
                return
            accounts.add(author)


class CampaignDetector(RuleDetector):
    kind = KIND

    def __init__(
        self, rule: str, config: CampaignConfig, examples: int = 3, index: NearDuplicateIndex | None = None
    ) -> None:
        super().__init__(rule)
        self.config = config
        self.examples = examples
        self.cooldown = max(config.cooldown, MIN_COOLDOWN_S)
        # The engine shares one index among all rules and places each post before the rules see it;
        # a detector on its own (a test, a tool) places its posts in an index of its own.
        self.own_index = None if index is not None else index_for([config])
        self.clusters: OrderedDict[int, _Cluster] = OrderedDict()  # by seed, least recently active first
        self.campaigns: dict[int, _Campaign] = {}  # by the seed of the cluster that fired
        self.now = -math.inf
        # The rule-wide MIN_COOLDOWN_S gap: a cluster ready while it runs waits here, not dropped.
        self.quiet_until = -math.inf
        self.waiting: dict[int, None] = {}
        self._oldest_seen = math.inf  # last_seen of the first view in `clusters` (see `_note_oldest`)
        self._window = config.window  # read for every post (a model's attribute costs more)
        self._min_accounts = config.min_accounts
        self._max_views = min(config.max_clusters, _MAX_VIEWS)
        self._max_authors = _ACCOUNTS_PER_LEVEL * config.min_accounts
        self._campaign_accounts = min(_MAX_AUTHORS, _CAMPAIGN_ACCOUNTS_PER_LEVEL * config.min_accounts)

    # -- observation -----------------------------------------------------------------------------
    def observe(self, obs: Observation) -> list[Signal]:
        # The common case, nearly every post of every rule, costs a few comparisons: time passes
        # (views are forgotten, a held cluster fires) only when `advance` has something to do, and
        # a post in a cluster too small for the rule and without a view of it is not looked at.
        ts = obs.ts
        now = self.now
        if ts > now:
            self.now = now = ts
        # `advance` does something only if a view has been idle for a window or the rule-wide gap
        # is over for a held cluster.
        due = now - self._window > self._oldest_seen or (self.waiting and now >= self.quiet_until)
        signals = self.advance(ts) if due else []
        if self.own_index is not None:
            obs.cluster = self.own_index.place(obs, (self.rule,))
        shared = obs.cluster
        if shared is None:
            return signals
        clusters = self.clusters
        if shared.posts < self._min_accounts and (not clusters or shared.seed not in clusters):
            return signals  # fewer posts than accounts needed, as for nearly every post: nothing to do
        cluster = clusters.get(shared.seed)
        signal = self._count(obs, shared, cluster)
        self._note_oldest()
        if signal is not None:
            signals.append(signal)
        return signals

    def _count(self, obs: Observation, shared: NearDuplicates, cluster: _Cluster | None) -> Signal | None:
        """Count a post of a shared cluster this rule has a view of, or that just grew big enough."""
        cfg, ts = self.config, obs.ts
        if cluster is None:
            cluster = self._open(shared, ts)  # counts this post too, with the cluster's recent ones
        elif (
            ts < self.now - cfg.window
            or shared.chars < cfg.min_chars
            or (shared.fingerprint ^ shared.seed).bit_count() > cfg.max_distance
        ):
            return None
        else:
            cluster.add(obs.post, ts, self.examples, self._max_authors)
        cluster.forget_before(self.now - cfg.window)
        if cluster.campaign is not None and cluster.campaign in self.campaigns:
            self.campaigns[cluster.campaign].enlist((obs.post.author,))
        self.clusters.move_to_end(cluster.seed)
        return self._evaluate(cluster, ts)

    def _note_oldest(self) -> None:
        """Remember when the least recently active view was last seen: until the window has passed
        since, `advance` would forget nothing (views change only in `_count`, `advance`, `restore`)."""
        clusters = self.clusters
        self._oldest_seen = next(iter(clusters.values())).last_seen if clusters else math.inf

    def _open(self, shared: NearDuplicates, ts: float) -> _Cluster:
        """This rule's view of a shared cluster that now holds enough posts to matter: the rule's
        own posts among its recent ones (the newest is the post being observed)."""
        cfg = self.config
        cluster = _Cluster(shared.seed, shared.text, ts, ts)
        cutoff = self.now - cfg.window
        mine = [
            placed
            for placed in shared.recent
            if self.rule in placed.rules
            and placed.chars >= cfg.min_chars
            and placed.ts >= cutoff
            and placed.distance <= cfg.max_distance
        ]
        if mine:
            cluster.first_seen = min(placed.ts for placed in mine)
        for placed in mine:
            cluster.add(placed, placed.ts, self.examples, self._max_authors)
        self.clusters[cluster.seed] = cluster
        if len(self.clusters) > self._max_views:
            self._remove(next(iter(self.clusters.values())))
        return cluster

    def advance(self, ts: float) -> list[Signal]:
        """Forget views idle for a whole window; fire a cluster held by the rule-wide gap."""
        self.now = max(self.now, ts)
        cutoff = self.now - self.config.window
        while self.clusters:
            oldest = next(iter(self.clusters.values()))
            if oldest.last_seen >= cutoff:
                break
            self._remove(oldest)
        self._note_oldest()
        if not self.waiting or self.now < self.quiet_until:
            return []
        seed = next(iter(self.waiting))
        del self.waiting[seed]
        cluster = self.clusters.get(seed)
        signal = None if cluster is None else self._evaluate(cluster, self.now)
        return [] if signal is None else [signal]

    def _remove(self, cluster: _Cluster) -> None:
        del self.clusters[cluster.seed]
        self.waiting.pop(cluster.seed, None)

    # -- verdict ---------------------------------------------------------------------------------
    def _evaluate(self, cluster: _Cluster, ts: float) -> Signal | None:
        cfg = self.config
        authors = cluster.authors
        if len(authors) < cfg.min_accounts or cluster.reaction_wave:
            return None
        # A cluster that fired stays quiet through its cooldown, and after it can only escalate:
        # settle that before counting its accounts (a busy fired cluster gets a post a second).
        if cluster.fired_rank >= 0 and (ts < cluster.cooldown_until or cluster.fired_rank >= _TOP_RANK):
            return None
        # A ready cluster held by the rule-wide gap is judged again on each of its posts (it may turn
        # out to belong to a campaign that fired meanwhile), so its accounts are listed, and their
        # followers counted, only when needed: when all are in the window, they are `authors`.
        cutoff = ts - cfg.window
        accounts: list[tuple[str, int | None]] | None = None
        names: Collection[str]
        if cluster.all_since(cutoff):
            names = authors.keys()
        else:
            accounts = cluster.accounts_since(cutoff)
            names = [author for author, _ in accounts]
        if len(names) < cfg.min_accounts:
            return None
        if cluster.fired_rank >= 0:
            accounts = cluster.accounts_since(cutoff) if accounts is None else accounts
            low_share, _ = _low_follower_share(accounts)
            severity = self._severity(len(accounts), low_share)
            if ts < cluster.cooldown_until or severity.rank <= cluster.fired_rank:
                return None
        elif self._part_of_fired_campaign(cluster, names, ts):
            return None
        if ts < self.quiet_until:
            self.waiting[cluster.seed] = None
            return None
        accounts = cluster.accounts_since(cutoff) if accounts is None else accounts
        low_share, known = _low_follower_share(accounts)
        severity = self._severity(len(accounts), low_share)
        cluster.fired_rank = severity.rank
        cluster.cooldown_until = ts + self.cooldown
        self.quiet_until = ts + MIN_COOLDOWN_S
        self._remember_campaign(cluster, accounts, ts)
        return self._signal(
            cluster, ts, accounts=accounts, severity=severity, low_share=low_share, known=known
        )

    def _part_of_fired_campaign(self, cluster: _Cluster, names: Collection[str], ts: float) -> bool:
        """A campaign's variants may open several clusters; only the first one to fire alerts.

        Another cluster belongs to it if its seed is within twice `max_distance` of the fired seed
        (some posts could join either) or if half of its accounts (`names`, each once) already
        posted in the campaign.
        """
        hashes: list[int] | None = None  # the names' hashes, worked out once for all campaigns
        for campaign in self.campaigns.values():
            if ts >= campaign.until:
                continue
            near = distance(cluster.seed, campaign.seed) <= 2 * self.config.max_distance
            # (The shared accounts are counted only when there could be enough of them.)
            if not near and 2 * len(campaign.authors) >= len(names):
                if hashes is None:
                    hashes = _hashes_of(cluster, names)
                near = campaign.authors.knows_half(hashes)
            if near:
                cluster.campaign = campaign.seed
                cluster.fired_rank = Severity.HIGH.rank  # covered: no escalation of a duplicate either
                cluster.cooldown_until = campaign.until
                campaign.enlist(names)
                return True
        return False

    def _remember_campaign(
        self, cluster: _Cluster, accounts: list[tuple[str, int | None]], ts: float
    ) -> None:
        live = [c for c in self.campaigns.values() if c.until > ts and c.seed != cluster.seed]
        self.campaigns = {c.seed: c for c in live[-(_MAX_CAMPAIGNS - 1) :]}
        campaign = _Campaign(cluster.seed, ts + self.cooldown, _Accounts(self._campaign_accounts))
        campaign.enlist(author for author, _ in accounts)
        self.campaigns[cluster.seed] = campaign
        cluster.campaign = cluster.seed

    def _severity(self, accounts: int, low_share: float | None) -> Severity:
        ratio = accounts / self.config.min_accounts
        level = 2 if ratio >= 4 else 1 if ratio >= 2 else 0
        # Nearly all accounts tiny: the signature of accounts made for the purpose.
        if low_share is not None and low_share >= 0.8:
            level += 1
        return _LEVELS[min(level, len(_LEVELS) - 1)]

    def _signal(
        self,
        cluster: _Cluster,
        ts: float,
        *,
        accounts: list[tuple[str, int | None]],
        severity: Severity,
        low_share: float | None,
        known: int,
    ) -> Signal:
        cfg = self.config
        window_start = max(cluster.first_seen, ts - cfg.window)
        count = len(accounts)
        summary = (
            f"{count} accounts posted near-identical text for rule {self.rule!r} "
            f"within {cfg.window:g}s: {_quote(cluster.text, 80)}"
        )
        if low_share is not None:
            summary += f" ({low_share:.0%} with under {_LOW_FOLLOWERS} followers)"
        evidence: dict[str, Any] = {
            "distinct_accounts": count,
            "posts": cluster.posts,
            "window_s": cfg.window,
            "first_seen": at(cluster.first_seen).isoformat(),
            "representative_text": cluster.text,
            "fingerprint": f"{cluster.seed:016x}",
            "low_follower_share": None if low_share is None else round(low_share, 3),
            "followers_known": known,
            "example_authors": [a for a, _ in accounts[-_EXAMPLE_AUTHORS:]],
            "example_uids": [uid for _, uid in heapq.nlargest(self.examples, cluster.examples)],
        }
        # The seed names the cluster: two clusters opened in the same instant must not share an id.
        key = f"{KIND}:{cluster.seed:016x}:{severity.value}"
        return Signal(
            id=Signal.make_id(self.rule, key, at(cluster.first_seen)),
            rule=self.rule,
            kind=KIND,
            severity=severity,
            at=at(ts),
            window_start=at(window_start),
            window_end=at(ts),
            observed=float(count),
            baseline=float(cfg.min_accounts),
            score=round(count / cfg.min_accounts, 2),
            summary=summary,
            evidence=evidence,
        )

    # -- persistence -----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Views with at least two accounts or a signal behind them, the campaigns that fired, and the
        rule-wide gap. (The shared clusters are saved by the engine, with its index.)"""
        clusters = [c.row() for c in self._saved_views()]
        quiet = finite(self.quiet_until)
        return {"clusters": clusters, "campaigns": self._campaign_rows(), "quiet_until": quiet}

    def snapshot_json(self) -> str:
        """`snapshot()` as JSON text, the same as `json.dumps(snapshot(), separators=(",", ":"))`,
        built one view at a time.

        A snapshot lists every account of every view (tens of thousands in a busy run): built whole,
        then encoded, that is a few megabytes of small objects at once, every snapshot, and Python
        keeps the arenas they took (a few survivors pin each one), so the resident size rose by a
        step at each snapshot. One view's row at a time, encoded at once, is a few kilobytes."""
        rows = ",".join(map(encode_json, map(_Cluster.row, self._saved_views())))
        campaigns, quiet = encode_json(self._campaign_rows()), encode_json(finite(self.quiet_until))
        return f'{{"clusters":[{rows}],"campaigns":{campaigns},"quiet_until":{quiet}}}'

    def _saved_views(self) -> Iterator[_Cluster]:
        return (c for c in self.clusters.values() if len(c.authors) >= 2 or c.fired_rank >= 0)

    def _campaign_rows(self) -> list[list[Any]]:
        return [[c.seed, c.until, c.authors.saved(), c.authors.count] for c in self.campaigns.values()]

    def restore(self, state: dict[str, Any]) -> None:
        self.clusters.clear()
        self.waiting.clear()
        for row in state.get("clusters", []):
            cluster = _Cluster.from_row(row)
            self.clusters[cluster.seed] = cluster
        self.campaigns = {}
        for seed, until, *accounts in state.get("campaigns", []):
            self.campaigns[int(seed)] = _Campaign(int(seed), float(until), self._accounts(accounts))
        quiet = state.get("quiet_until")
        self.quiet_until = -math.inf if quiet is None else float(quiet)
        self.now = max((c.last_seen for c in self.clusters.values()), default=-math.inf)
        self._note_oldest()

    def _accounts(self, saved: list[Any]) -> _Accounts:
        """A fired campaign's accounts from its snapshot row: the filter and its count, or (a snapshot
        taken before the filter) the names."""
        if len(saved) == 2 and isinstance(saved[0], str):
            bits, count = saved
            return _Accounts(self._campaign_accounts, b64decode(bits), int(count))
        accounts = _Accounts(self._campaign_accounts)
        for name in saved[0] if saved else ():
            if accounts.count < accounts.limit:
                accounts.add(str(name))
        return accounts


def _followers(entry: complex) -> int | None:
    """The followers an account's entry in `_Cluster.authors` holds (None: not known)."""
    followers = entry.imag
    return None if followers < 0 else int(followers)


def _low_follower_share(accounts: list[tuple[str, int | None]]) -> tuple[float | None, int]:
    """Share of accounts under _LOW_FOLLOWERS followers among those whose count is known (None if
    fewer than half are known: a share of a few would say little)."""
    known = [f for _, f in accounts if f is not None]
    if 2 * len(known) < len(accounts) or not known:
        return None, len(known)
    return sum(1 for f in known if f < _LOW_FOLLOWERS) / len(known), len(known)


def _quote(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[: limit - 1] + "…")


def index_for(configs: Iterable[CampaignConfig]) -> NearDuplicateIndex:
    """One index that serves every rule of `configs`: the widest radius and window, the shortest
    texts and the most clusters any of them asks for (each rule then applies its own)."""
    configs = list(configs)
    return NearDuplicateIndex(
        max_distance=max(c.max_distance for c in configs),
        min_chars=min(c.min_chars for c in configs),
        window=max(c.window for c in configs),
        max_clusters=max(c.max_clusters for c in configs),
        # Enough of a cluster's latest posts for the rule that needs the most accounts to count them:
        # a rule opens its view when its post finds the cluster holding `min_accounts` posts, so its
        # earlier posts there are among the first `min_accounts`, and twice that leaves room for the
        # other rules' posts and a view opened again after it was dropped.
        recent=2 * max(c.min_accounts for c in configs),
    )
