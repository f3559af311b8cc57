"""The pure generator behind the `synthetic` source: vocabulary, authors, daily rhythm and scenarios.

No I/O and no wall clock: `StreamGenerator.post(seq, ts, ...)` turns a sequence number and an event
time into a `Post`, drawing every choice from one seeded `random.Random`, so a seed reproduces a stream.
The collector in `harvester.sources.synthetic` only decides *when* posts happen.

The stream is a mix of everyday chatter, cashtag posts about `TICKERS` and posts about the fictional
`BRANDS`; each ticker or brand gets a few percent of the traffic, so a scenario that multiplies one of
them is a real change. Scenarios follow a fixed schedule in event time (`ScenarioPlan`), cycle through
their kinds, and pick their target from a rng seeded by (seed, scenario index), so `scenario_at(t)`
is a pure function that tests and logs can ask.

Everything that can be precomputed is (filled-in sentences, decorations, author and ticker sampling
tables): the benchmark runs this at tens of thousands of posts per second, so a post costs a handful of
`random()` calls, list lookups, one string concatenation and the `Post` itself.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cache
from typing import Literal

from harvester.models import MAX_TEXT_CHARS, Post

# ---------------------------------------------------------------------------------------------------
# Public names: what a demo config or a test writes rules against.

TICKERS: tuple[str, ...] = ("AAPL", "TSLA", "NVDA", "AMD", "GME", "SPY", "BTC", "ETH", "SOL", "DOGE")
CRYPTO_TICKERS = frozenset({"BTC", "ETH", "SOL", "DOGE"})

# Fictional companies only: a demo must never put words in a real company's mouth.
BRANDS: tuple[str, ...] = ("Acme Air", "Globex Bank", "Initech", "Hooli", "Umbrella Foods", "Stark Mobile")
BRAND_KEYWORDS: dict[str, str] = {brand: brand.lower() for brand in BRANDS}

ScenarioKind = Literal["brand_crisis", "ticker_pump", "campaign", "viral"]
SCENARIO_KINDS: tuple[ScenarioKind, ...] = ("brand_crisis", "ticker_pump", "campaign", "viral")

DEFAULT_START = datetime(2026, 1, 5, tzinfo=UTC)

# Shares of everyday traffic. Each brand gets BRAND_SHARE / len(BRANDS) (2.5%), each ticker about 1-2%.
CHATTER_SHARE = 0.70
TICKER_SHARE = 0.15
BRAND_SHARE = 0.15
FOREIGN_SHARE_OF_CHATTER = 0.05
LONG_CHATTER_SHARE = 0.15  # chatter posts with a second sentence, for a realistic spread of lengths
CHATTER_OPENER_SHARE = 0.6

AUTHOR_COUNT = 5000

# ---------------------------------------------------------------------------------------------------
# Vocabulary. Sentences carry words VADER scores (love, great, terrible, worst...) in both directions.


def _lines(block: str) -> tuple[str, ...]:
    """One entry per non-empty line: keeps long lists of sentences readable."""
    return tuple(line.strip() for line in block.splitlines() if line.strip())


def _sentences(block: str) -> tuple[str, ...]:
    """Like `_lines`, ending each line with a full stop unless it already ends in punctuation or emoji."""
    return tuple(line + "." if line[-1].isalnum() else line for line in _lines(block))


def _words(block: str) -> tuple[str, ...]:
    """One entry per whitespace-separated word (hashtags, emoji, name parts)."""
    return tuple(block.split())


_CHATTER = _sentences("""
Finally got my coffee and the day already feels so much better
Traffic this morning was an absolute nightmare, almost an hour to go five miles
Anyone else watching the game tonight? That last quarter was wild
Made homemade pasta for the first time and honestly it turned out great
My neighbor's dog has been barking since six and I am losing my mind
Rainy Sunday, a good book and some tea. Perfect lazy afternoon
Why do meetings that could have been an email always run late
Just finished a 10k run, legs are dead but I feel amazing
The new season of that show is so disappointing compared to the first one
Trying to learn guitar at 35, my fingers hate me but it is fun
Power went out for two hours and I realized how boring I am without wifi
Grocery prices are getting ridiculous, paid twice what I did last year
Best concert I have been to in years, the crowd was incredible
Can someone explain why printers still do not work properly in 2026
Spent all weekend cleaning the garage and found my old game console
Missed my train by ten seconds, great start to the week
Homemade bread attempt number four, still looks sad but tastes good
Cannot believe how warm it is today for January
Working from home with a toddler is pure chaos, send help
That new coffee place downtown is seriously overrated, long line and bitter espresso
Reading a really good thriller right now and I cannot put it down
Our team finally shipped the project we have been working on for months, so proud
Flat tire on the way to work and of course it is raining too
Honestly the sunset tonight was beautiful, had to stop and take a picture
I have watched this movie ten times and it still makes me cry
Gym was packed at 6am, everyone and their new year resolutions
Tried a new ramen spot, the broth was amazing but the service was slow
My cat knocked my phone off the table again and she has no remorse
Who decided that Monday mornings should start so early
Planning a trip to the mountains next month, any tips for easy hikes
Kids are finally asleep, time for a quiet hour of video games
Lost my keys for the third time this week, I need a better system
Just adopted a rescue puppy and my heart is so full
The podcast episode about deep sea creatures was fascinating
Feeling kind of burned out lately, taking tomorrow off to recharge
Our local team lost again, at this point I am used to the pain
The farmers market had the best strawberries I have ever tasted
Learned to make sourdough years ago and I still bake every single week
""")
# Openers and tails multiply the combinations, so unrelated accounts rarely write near-identical
# posts by chance: a coordinated campaign must stand out from everyday chatter.
_CHATTER_OPENERS = _lines("""
Monday again.
Quick update.
Long day.
Okay so.
Story time.
Real talk.
Random thought.
Not gonna lie.
Well then.
Day off today.
Update from the couch.
Can confirm.
Hot take incoming.
No context needed.
Small rant.
Good morning all.
""")
_CHATTER_TAILS = _lines("""
Anyway, how is everyone doing?
Not sure how I feel about it.
10/10 would recommend.
Never again.
Wish me luck.
Life is good.
Send coffee.
Thoughts?
What a day.
Small wins.
Is it just me?
Happy Friday everyone!
Ugh.
Still smiling though.
More updates later.
That is all, carry on.
Grateful for the little things.
Why is this so hard.
Honestly not bad at all.
Could be worse I guess.
""")
_CHATTER_HASHTAGS = _words("""
#MondayMotivation #coffee #WFH #gaming #foodie #weekend #music #running #booklover #photography
#nowplaying #travel #sourdough #tbt
""")
# A few posts in other languages: (lang, sentences, tails), combined like English chatter.
_FOREIGN: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "es",
        _lines("""
            Qué día tan bonito, me encanta este clima y el café de la mañana.
            El tráfico hoy fue horrible, casi una hora para llegar al trabajo.
            Por fin terminé el proyecto en el que llevaba meses trabajando.
            Anoche vimos una película buenísima con toda la familia.
        """),
        _lines("""
            Qué ganas de que llegue el finde.
            Feliz viernes a todos.
            No puedo más, la verdad.
            Vamos a ver qué pasa.
            Gracias por leer.
        """),
    ),
    (
        "de",
        _lines("""
            Endlich Wochenende, ich freue mich auf einen ruhigen Abend mit einem guten Buch.
            Der Zug hatte schon wieder Verspätung, so langsam reicht es mir wirklich.
            Heute zum ersten Mal selbst Brot gebacken und es ist richtig gut geworden.
            Das Konzert gestern war unglaublich, die Stimmung war fantastisch.
        """),
        _lines("""
            Mal sehen wie es weitergeht.
            Schönen Abend euch allen.
            Typisch Montag.
            Kaffee hilft immer.
            Mehr dazu später.
        """),
    ),
    (
        "pt",
        _lines("""
            Hoje o jogo foi incrível, que vitória emocionante para o nosso time.
            Fiz pão caseiro pela primeira vez e ficou muito bom mesmo.
            O trânsito hoje estava terrível, quase duas horas para chegar em casa.
            Comecei um livro novo e não consigo parar de ler.
        """),
        _lines("""
            Bom dia a todos.
            Que semana, hein.
            Vamos que vamos.
            Depois conto mais.
            Partiu fim de semana.
        """),
    ),
    (
        "fr",
        _lines("""
            Il pleut encore à Paris, parfait pour rester au chaud avec un thé.
            Le nouveau restaurant du quartier est vraiment excellent, je le recommande.
            Enfin fini ce projet au travail, quel soulagement après tous ces mois.
            Le train avait encore du retard ce matin, franchement ça devient pénible.
        """),
        _lines("""
            Bonne journée à tous.
            On verra bien.
            Vivement le week-end.
            Je vous raconte plus tard.
            Voilà voilà.
        """),
    ),
)
# Who, when and where: everyday posts of different people differ in such details even when they
# say the same thing ("Missed my train again"), so unrelated accounts do not write near-identical
# posts by chance. Without them, at a busy stream's rate, a few thousand distinct everyday texts
# repeated often enough within ten minutes to look like coordinated campaigns from many accounts:
# the campaign detector fired on ordinary chatter. Three picks from pools of 16 to 18 give about
# 5,000 combinations per language; the words are neutral to VADER, so sentiment is unchanged.
_DETAILS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "en": (
        _lines("""
            This morning
            After work
            Around noon
            Last night
            On my lunch break
            Before the school run
            At 2am
            On Sunday
            Yesterday evening
            Right after the meeting
            On the way home
            First thing today
            At the weekend
            Late tonight
            Over breakfast
            This afternoon
            On my day off
            Just now
        """),
        _lines("""
            with my sister
            with Sam
            with the kids
            with my roommate
            with Priya
            with grandma
            with the neighbours
            with Marco
            with two people from work
            with my partner
            with Aiko
            with the team
            with my brother
            with Jess and Tom
            with my dad
            with Olu
            with the dog
        """),
        _lines("""
            downtown
            near the station
            at the mill
            on Elm Street
            by the river
            in the city centre
            at my cousin's place
            in the suburbs
            near campus
            at the harbour
            on the high street
            in the park
            at the mall
            out by the airport
            in Leeds
            in Austin
            in Lyon
            near the stadium
        """),
    ),
    "es": (
        ("Esta mañana", "Anoche", "Después del trabajo", "El domingo", "Al mediodía", "Hoy temprano",
         "Ayer por la tarde", "De camino a casa", "En el almuerzo", "Este finde", "A las dos",
         "Antes de cenar", "Por la noche", "Hace un rato", "En mi día libre", "Tras la reunión"),
        ("con mi hermana", "con Lucía", "con los niños", "con mi pareja", "con Javi", "con mis padres",
         "con la vecina", "con dos amigos", "con el equipo", "con mi primo", "con Marta", "con mi abuela",
         "con Diego", "con los compañeros", "con mi tío", "con Sofía"),
        ("en el centro", "en Valencia", "cerca de la estación", "en el parque", "en casa de mi prima",
         "en el barrio", "junto al río", "en Sevilla", "en la playa", "en el mercado", "en Bilbao",
         "cerca del campus", "en la plaza", "en el puerto", "en Granada", "en la oficina"),
    ),
    "de": (
        ("Heute früh", "Gestern Abend", "Nach der Arbeit", "Am Sonntag", "Mittags", "Vorhin",
         "Am Wochenende", "Auf dem Heimweg", "In der Mittagspause", "Spät am Abend", "Um zwei Uhr",
         "Vor dem Frühstück", "Heute Nachmittag", "Am freien Tag", "Nach dem Meeting", "Gerade eben"),
        ("mit meiner Schwester", "mit Jonas", "mit den Kindern", "mit meinem Partner", "mit Lena",
         "mit meinen Eltern", "mit den Nachbarn", "mit zwei Freunden", "mit dem Team", "mit meinem Cousin",
         "mit Anna", "mit Oma", "mit Felix", "mit den Kollegen", "mit meinem Onkel", "mit Clara"),
        ("in der Stadt", "in Hamburg", "am Bahnhof", "im Park", "bei meiner Cousine", "im Viertel",
         "am Fluss", "in Köln", "am See", "auf dem Markt", "in Leipzig", "an der Uni", "am Marktplatz",
         "am Hafen", "in Dresden", "im Büro"),
    ),
    "pt": (
        ("Hoje cedo", "Ontem à noite", "Depois do trabalho", "Domingo", "Na hora do almoço", "Agora há pouco",
         "Neste fim de semana", "A caminho de casa", "De manhã", "Tarde da noite", "Às duas",
         "Antes do jantar", "Hoje à tarde", "Em meu dia de folga", "Depois da reunião", "Logo cedo"),
        ("com minha irmã", "com o João", "com as crianças", "com meu namorado", "com a Bia", "com meus pais",
         "com a vizinha", "com dois amigos", "com o time", "com meu primo", "com a Carol", "com minha avó",
         "com o Pedro", "com os colegas", "com meu tio", "com a Luísa"),
        ("pelo centro", "em Recife", "perto da estação", "pelo parque", "na casa da minha prima",
         "pelo bairro", "perto do rio", "em Curitiba", "na praia", "na feira", "em Salvador",
         "perto da faculdade", "na praça", "perto do porto", "em Belém", "pelo escritório"),
    ),
    "fr": (
        ("Ce matin", "Hier soir", "Après le boulot", "Dimanche", "À midi", "En fin de journée",
         "Ce week-end", "En rentrant", "Pendant la pause", "Vers minuit", "À deux heures",
         "Avant le dîner", "Cet après-midi", "Pendant mon jour de congé", "Après la réunion", "Tôt ce matin"),
        ("avec ma sœur", "avec Hugo", "avec les enfants", "avec mon copain", "avec Chloé", "avec mes parents",
         "avec la voisine", "avec deux amis", "avec l'équipe", "avec mon cousin", "avec Léa", "avec mamie",
         "avec Louis", "avec les collègues", "avec mon oncle", "avec Inès"),
        ("en ville", "à Lyon", "près de la gare", "au parc", "chez ma cousine", "dans le quartier",
         "au bord de la Seine", "à Nantes", "à la plage", "au marché", "à Lille", "près de la fac",
         "sur la place", "au port", "à Bordeaux", "au bureau"),
    ),
}  # fmt: skip

_EMOJI = _words("😂 ❤️ 🔥 😭 🙄 👍 ☕ 🎉 😅 🙏 💀 ✨ 😍 🤔")

_TICKER_ANY = _sentences("""
Loaded up on more {t} today, feeling really good about this position
{t} breaking out nicely with great volume this morning
Love how {t} held support today, bulls look strong
{t} looking weak here, I would be careful chasing it
Got burned on {t} again, terrible entry on my part
{t} dumping hard into the close, this is ugly
What is everyone's price target for {t} this quarter?
Watching {t} closely into the close today
{t} volume is about average today, nothing exciting happening
Anyone have a good thread on {t} fundamentals?
Took some profit on {t}, happy with the trade
Not touching {t} until it shows some real strength
{t} chart is a mess right now, no clear trend
Added a small {t} position today, nothing crazy
""")
_TICKER_STOCK = _sentences("""
{t} earnings next week, holding my calls and hoping for the best
Bought some {t} puts as a hedge, the market feels shaky
Analyst downgrade on {t} this morning, kind of disappointing
{t} dividend news looks solid, long term holders are happy
""")
_TICKER_CRYPTO = _sentences("""
Moved my {t} to a cold wallet finally, feels safer
{t} network fees are low again, nice time to move funds
Staking rewards on {t} are decent this month
{t} got rejected at resistance again, annoying
""")
_TICKER_TAILS = _lines("""
Not financial advice.
NFA, DYOR.
Chart looks interesting.
We will see.
Could go either way honestly.
Patience pays.
Risk management matters.
Stay safe out there.
Thoughts?
Long term I am still bullish.
""")
_STOCK_HASHTAGS = _words("#stocks #trading #investing #daytrading #markets")
_CRYPTO_HASHTAGS = _words("#crypto #altcoins #web3 #hodl")

_PUMP = _sentences("""
{t} to the moon 🚀🚀🚀 buy now before it is too late, huge gains coming
Just went all in on {t}, best opportunity of the year, LFG 🚀
{t} is going to explode, massive gains incoming, do not miss this amazing run 🚀
Buy now! {t} is the next 100x and I love it, this is incredible 🚀🌕
{t} breaking out, so bullish, love this! To the moon 🚀💎🙌
Incredible momentum on {t}, buy the dip and hold, we all win together 🚀
Everyone is finally waking up to {t}, what a beautiful green candle, huge win 🚀
{t} squeeze is on, best day ever for holders, let's go 🚀🚀
""")
_PUMP_TAILS = _lines("""
💎🙌
LFG!!!
#tothemoon
Easy money, love it.
Best trade ever.
Thank me later 😎
Generational wealth incoming.
Winning!
""")

_BRAND_PRODUCTS = {
    "Acme Air": ("flight", "app", "check-in", "lounge", "boarding process"),
    "Globex Bank": ("app", "debit card", "wire transfer", "branch", "savings account"),
    "Initech": ("software", "latest update", "support portal", "license server", "desktop client"),
    "Hooli": ("phone", "search", "mail app", "cloud storage", "smart speaker"),
    "Umbrella Foods": ("frozen pizza", "cereal", "snack bars", "yogurt", "delivery"),
    "Stark Mobile": ("signal", "data plan", "5G", "monthly bill", "customer service"),
}
_BRAND_NORMAL = _sentences("""
Really impressed with {b} today, the {p} was great
Shoutout to {b} for making the {p} so easy, love it
Honestly the {b} {p} has gotten so much better this year
The {b} {p} is super slow today, kind of annoying
Not happy with {b} lately, the {p} keeps giving me trouble
Does anyone know if {b} changed their {p} recently?
Thinking about switching to {b}, how is their {p}?
Used the {b} {p} for the first time today, pretty smooth experience
The {b} {p} was fine, nothing special but it works
Small complaint but the {b} {p} could use some work
Good experience with {b} support about my {p}, thanks team
Comparing options and {b} seems decent for the {p}
""")
_BRAND_TAILS = _lines("""
Anyway.
Just saying.
Curious if others see the same.
Will update.
Thanks in advance!
Overall okay.
We will see how it goes.
Not bad.
Mixed feelings honestly.
Pretty happy so far.
""")
_BRAND_HASHTAGS = ("#customerservice", "#review")

_CRISIS_EVENTS = {
    "Acme Air": (
        "cancelled my flight with no warning",
        "lost my luggage and refuses a refund",
        "delayed every flight out of the hub for hours",
    ),
    "Globex Bank": (
        "got hacked and customer accounts were drained",
        "froze my account and will not refund the fees",
        "is facing a lawsuit over hidden fees",
    ),
    "Initech": (
        "pushed an update that bricked every machine in our office",
        "has been in a total outage all day",
        "leaked customer data in a breach",
    ),
    "Hooli": (
        "got hacked and leaked millions of passwords",
        "is down worldwide and support is silent",
        "is being sued for spying on users",
    ),
    "Umbrella Foods": (
        "announced a recall over salmonella",
        "made my whole family sick",
        "pulled products after contamination was found",
    ),
    "Stark Mobile": (
        "had an outage that killed service for the whole city",
        "double charged my bill and refuses a refund",
        "cancelled my plan without asking",
    ),
}
_CRISIS = _sentences("""
{b} {e}. Absolutely terrible, I am furious
Unbelievable. {b} {e} and support will not answer. Worst company ever
{b} {e}?! This is a scam and a disgrace
Never again. {b} {e}. I want a refund now, this is awful
So angry right now, {b} {e}. Lawsuit incoming, what a horrible mess
Is anyone else affected? {b} {e}. Ridiculous and disgusting
{b} {e}. Cancelled everything with them, total scam
""")
_CRISIS_TAILS = _lines("""
Shame on you.
Unacceptable.
Thread below 👇
😡
🤬
#refund
Delayed and ignored.
""")

_CAMPAIGN_BRAND = (
    "Everyone needs to know the truth about {t}. They are hiding massive problems from customers "
    "and the media is silent. Share this before it gets deleted",
    "I am done with {t} and you should be too. They lie to customers every single day. "
    "Cancel your account today and tell your friends",
)
_CAMPAIGN_TICKER = (
    "Insiders are quietly buying {t} right now. A huge announcement is coming this week that will "
    "change everything. Get in before it is too late",
    "{t} is the most undervalued asset on the market today. Smart money is loading up quietly. "
    "Do not sell, just hold and share this",
)
# One swapped word or phrase per variant keeps the texts near-identical, as a real campaign's are.
_CAMPAIGN_SWAPS = (
    ("Everyone", "Everybody"),
    ("massive", "huge"),
    ("huge", "massive"),
    ("today", "now"),
    ("friends", "family"),
    ("quietly", "silently"),
    ("Share this", "Repost this"),
    ("every single day", "all the time"),
    ("Smart money", "Big money"),
    ("too late", "gone"),
    ("the media", "the press"),
)
_CAMPAIGN_EMOJI = _words("🚨 👀 🔥 ‼️ 💯")
_CAMPAIGN_HANDLE_WORDS = _words("""
truth patriot freedom real eagle wolf voice citizen alpha honest liberty wise signal awake
""")

_VIRAL_ORIGINS = _sentences("""
My dog just learned to open the fridge by himself. I am both proud and terrified of what comes next
Unpopular opinion: every meeting should have a hard fifteen minute limit. Productivity would double overnight
Just found out my grandma has been secretly running a bakery from her garage for twenty years. Absolute legend
Hot take: breakfast for dinner is the greatest invention in human history and I will not be taking questions
Today a stranger paid for my coffee, so I paid for the next person. The line kept it going for two hours
""")
_VIRAL_REACTIONS = _lines("""
This is the best thing I have read all week 😂
Absolutely agree with every single word of this
lol no, hard disagree with this take honestly
This is so wholesome, it made my whole day ❤️
Why is this so true, I feel personally attacked
I cannot stop laughing at this, it is perfect
Legend behavior honestly, we need more of this
Screaming 💀 this is the funniest thing on here today
Sending this to everyone I know right now
Restoring my faith in people one post at a time
""")

# Where posts come from: each author lives on one platform and posts in a few channels there.
_PLATFORM_WEIGHTS = (("twitter", 45), ("reddit", 25), ("bluesky", 12), ("discord", 10), ("mastodon", 8))
# Per platform: channels for (chatter, tickers, brands).
_PLATFORM_CHANNELS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "twitter": (("twitter",), ("twitter",), ("twitter",)),
    "bluesky": (("bluesky",), ("bluesky",), ("bluesky",)),
    "mastodon": (("mastodon/#home",), ("mastodon/#finance",), ("mastodon/#home",)),
    "reddit": (
        ("reddit/r/AskReddit", "reddit/r/CasualConversation", "reddit/r/movies", "reddit/r/Cooking"),
        ("reddit/r/wallstreetbets", "reddit/r/stocks", "reddit/r/CryptoCurrency"),
        ("reddit/r/customerservice", "reddit/r/personalfinance", "reddit/r/technology"),
    ),
    "discord": (
        ("discord/#general", "discord/#off-topic"),
        ("discord/#trading", "discord/#crypto"),
        ("discord/#support",),
    ),
}
CHATTER, TICKER, BRAND = 0, 1, 2  # indexes into an author's channels

_FIRST_NAMES = _words("""
alex sam jordan mika lee chris taylor nina omar priya jules dana kai ravi zoe leo ana ben emma
yuki noor ivan lucia tom mei
""")
_HANDLE_WORDS = _words("""
trades codes bakes runs reads hikes writes plays builds draws cooks lifts films sings travels
knits fixes dreams brews rides
""")

# Sizes of the precomputed sampling tables (powers of two: an index is int(random() * size)).
_AUTHOR_TABLE = 1 << 15
_DECOR_TABLE = 256
_MENTION_TABLE = 1024
_NOISE_MINUTES = 1024


# ---------------------------------------------------------------------------------------------------
# Time shape


def daily_rhythm(ts: float) -> float:
    """Activity by hour of event time (UTC): 0.4x at 04:00, 1.6x at 16:00, averaging 1x over a day."""
    hour = (ts % 86_400.0) / 3600.0
    return 1.0 + 0.6 * math.cos(2.0 * math.pi * (hour - 16.0) / 24.0)


@cache
def _noise_table(seed: int) -> tuple[float, ...]:
    """Slowly wandering per-minute factors around 1 (an AR(1) walk), so the rate is not a perfect curve."""
    rng = random.Random(f"synthetic-noise:{seed}")
    level, values = 0.0, []
    for _ in range(_NOISE_MINUTES):
        level = 0.9 * level + rng.gauss(0.0, 0.02)
        values.append(1.0 + max(-0.15, min(0.15, level)))
    mean = sum(values) / len(values)
    return tuple(v / mean for v in values)


def slowest_rate_factor(seed: int) -> float:
    """A lower bound on (instantaneous rate / configured rate): the quietest hour at the lowest noise.

    Scenarios only ever add posts, so `n / (rate * this)` seconds is an upper bound on the event time
    that n posts can span; a resumed pace-max run starts there so event time never runs backwards.
    """
    return 0.4 * min(_noise_table(seed))


# ---------------------------------------------------------------------------------------------------
# Authors


@dataclass(frozen=True, slots=True)
class Author:
    handle: str
    followers: int
    platform: str
    url_prefix: str  # the post's sequence number is appended
    channels: tuple[str, str, str]  # (chatter, ticker, brand)


def _make_author(rng: random.Random, handle: str, followers: int, platform: str) -> Author:
    chatter, tickers, brands = _PLATFORM_CHANNELS[platform]
    channels = (rng.choice(chatter), rng.choice(tickers), rng.choice(brands))
    return Author(handle, followers, platform, f"https://example.com/{platform}/{handle}/", channels)


def _random_handle(rng: random.Random) -> str:
    first, word = rng.choice(_FIRST_NAMES), rng.choice(_HANDLE_WORDS)
    style = rng.randrange(4)
    if style == 0:
        return f"{first}_{word}"
    if style == 1:
        return f"{first}{rng.randrange(10, 10_000)}"
    if style == 2:
        return f"{first}{word}{rng.randrange(100)}"
    return f"the_{first}_{rng.randrange(1000)}"


@dataclass(frozen=True, slots=True)
class AuthorPool:
    authors: tuple[Author, ...]
    table: tuple[Author, ...]  # authors repeated by activity: a uniform pick is a Zipf-like pick
    celebrities: tuple[Author, ...]  # the highest follower counts, for viral posts


@cache
def author_pool(seed: int) -> AuthorPool:
    """Several thousand authors with log-normal followers and Zipf-Mandelbrot activity (1 / (rank + 10)).

    Depends on the seed only, not on where a run resumed, so the cast is the same after a restart.
    """
    rng = random.Random(f"synthetic-authors:{seed}")
    platforms = [p for p, _ in _PLATFORM_WEIGHTS]
    platform_weights = [w for _, w in _PLATFORM_WEIGHTS]
    handles: set[str] = set()
    authors: list[Author] = []
    while len(authors) < AUTHOR_COUNT:
        handle = _random_handle(rng)
        if handle in handles:
            continue
        handles.add(handle)
        followers = int(rng.lognormvariate(5.7, 1.8))  # median ~300, a few with millions
        platform = rng.choices(platforms, platform_weights)[0]
        authors.append(_make_author(rng, handle, followers, platform))
    activity = [1.0 / (rank + 10) for rank in range(len(authors))]
    table = tuple(rng.choices(authors, weights=activity, k=_AUTHOR_TABLE))
    celebrities = tuple(sorted(authors, key=lambda a: a.followers, reverse=True)[:20])
    return AuthorPool(tuple(authors), table, celebrities)


# ---------------------------------------------------------------------------------------------------
# Precomputed text pieces


def _compact(brand: str) -> str:
    return brand.replace(" ", "")


def _cashtag(ticker: str) -> str:
    return f"${ticker}"


def _ticker_sentences(ticker: str) -> tuple[str, ...]:
    specific = _TICKER_CRYPTO if ticker in CRYPTO_TICKERS else _TICKER_STOCK
    return tuple(t.format(t=_cashtag(ticker)) for t in _TICKER_ANY + specific)


# Popular names get more talk; each stays at a few percent of the whole stream.
_TICKER_WEIGHTS = {"AAPL": 1.2, "TSLA": 1.5, "NVDA": 1.5, "AMD": 0.8, "GME": 0.6} | {
    "SPY": 1.2, "BTC": 1.6, "ETH": 1.0, "SOL": 0.6, "DOGE": 0.5,
}  # fmt: skip
TICKER_SHARES: dict[str, float] = {
    t: TICKER_SHARE * w / sum(_TICKER_WEIGHTS.values()) for t, w in _TICKER_WEIGHTS.items()
}
BRAND_SHARES: dict[str, float] = {b: BRAND_SHARE / len(BRANDS) for b in BRANDS}
# A viral thread adds, on average, as much volume as a brand surge would.
_VIRAL_BASE_SHARE = BRAND_SHARE / len(BRANDS)


def _decorations(
    rng: random.Random, hashtags: Sequence[str], p_tag: float, p_emoji: float, p_url: float
) -> tuple[str, ...]:
    """A table of post endings (hashtags, emoji, a link, or nothing) to pick from uniformly."""
    out = []
    for _ in range(_DECOR_TABLE):
        parts = []
        if rng.random() < p_tag:
            parts.extend(rng.sample(list(hashtags), k=min(len(hashtags), rng.choice((1, 1, 2)))))
        if rng.random() < p_emoji:
            parts.append(rng.choice(_EMOJI) * rng.choice((1, 1, 2)))
        if rng.random() < p_url:
            parts.append(f"https://example.com/link/{rng.getrandbits(32):08x}")
        out.append("".join(" " + p for p in parts))
    return tuple(out)


def _mentions(rng: random.Random, pool: AuthorPool) -> tuple[str, ...]:
    """Post openings: mostly nothing, sometimes an @reply to another author."""
    return tuple(
        f"@{rng.choice(pool.authors).handle} " if rng.random() < 0.15 else "" for _ in range(_MENTION_TABLE)
    )


@dataclass(frozen=True, slots=True)
class _Topic:
    """Everything needed to write an everyday post about one ticker or brand."""

    sentences: tuple[str, ...]
    tails: tuple[str, ...]
    endings: tuple[str, ...]


def _ticker_topic(rng: random.Random, ticker: str) -> _Topic:
    tags = _CRYPTO_HASHTAGS if ticker in CRYPTO_TICKERS else _STOCK_HASHTAGS
    return _Topic(_ticker_sentences(ticker), _TICKER_TAILS, _decorations(rng, tags, 0.35, 0.15, 0.05))


def _brand_topic(rng: random.Random, brand: str) -> _Topic:
    sentences = tuple(t.format(b=brand, p=p) for t in _BRAND_NORMAL for p in _BRAND_PRODUCTS[brand])
    tags = (*_BRAND_HASHTAGS, f"#{_compact(brand)}")
    return _Topic(sentences, _BRAND_TAILS, _decorations(rng, tags, 0.3, 0.2, 0.05))


def _table(rng: random.Random, weights: dict[str, float], size: int = 1024) -> tuple[str, ...]:
    """Names repeated by weight, for a uniform pick that follows the weights."""
    names = list(weights)
    return tuple(rng.choices(names, weights=[weights[n] for n in names], k=size))


# Engagement: likes are a log-normal fraction of followers; reposts and replies a fraction of likes.
def _engagement_table(rng: random.Random) -> tuple[tuple[float, int, int], ...]:
    return tuple(
        (rng.lognormvariate(-5.0, 1.2), rng.randint(3, 12), rng.randint(4, 20)) for _ in range(_DECOR_TABLE)
    )


# ---------------------------------------------------------------------------------------------------
# Scenarios


@dataclass(frozen=True, slots=True)
class ScenarioPlan:
    """When scenarios happen, in seconds of event time from the stream's origin."""

    enabled: bool = True
    first_after: float = 30.0
    every: float = 300.0
    duration: float = 90.0
    kinds: tuple[ScenarioKind, ...] = SCENARIO_KINDS
    intensity: float = 10.0


@dataclass(frozen=True, slots=True)
class Scenario:
    """One injected event: what, about whom, and when (event time, end exclusive)."""

    index: int
    kind: ScenarioKind
    target: str
    start: datetime
    end: datetime

    def as_dict(self) -> dict[str, object]:
        return {
            "index": self.index,
            "kind": self.kind,
            "target": self.target,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class _Segment:
    """A stretch of event time with or without a scenario: [start, end)."""

    index: int | None
    start: float
    end: float


def _segment_at(plan: ScenarioPlan, origin: float, ts: float) -> _Segment:
    if not plan.enabled or not plan.kinds:
        return _Segment(None, -math.inf, math.inf)
    first = origin + plan.first_after
    if ts < first:
        return _Segment(None, -math.inf, first)
    index = int((ts - first) // plan.every)
    start = first + index * plan.every
    end = start + plan.duration
    if ts < end:
        return _Segment(index, start, end)
    return _Segment(None, end, start + plan.every)


def _pick_target(rng: random.Random, kind: ScenarioKind, pool: AuthorPool) -> str:
    if kind == "brand_crisis":
        return rng.choice(BRANDS)
    if kind == "ticker_pump":
        return _cashtag(rng.choice(TICKERS))
    if kind == "campaign":
        return rng.choice([*BRANDS, *(_cashtag(t) for t in TICKERS)])
    return "@" + rng.choice(pool.celebrities).handle


class _ScenarioStream(ABC):
    """The extra posts of one active scenario, on top of everyday traffic."""

    # True while the scenario owes the stream a post that must come first (the viral original).
    pending_first = False

    def __init__(self, gen: StreamGenerator, scenario: Scenario, rng: random.Random) -> None:
        self.gen = gen
        self.scenario = scenario
        self.rng = rng  # the scenario's own rng: its content depends on (seed, index) only
        self.start = scenario.start.timestamp()
        self.duration = max(scenario.end.timestamp() - self.start, 1e-9)

    @abstractmethod
    def extra_rate(self, base_rate: float, ts: float) -> float:
        """Posts per second this scenario adds at event time `ts`, given the everyday rate then."""

    @abstractmethod
    def make(self, seq: int, created_at: datetime, received_at: datetime) -> Post:
        """One scenario post."""


class _Surge(_ScenarioStream):
    """A target's volume rises to `intensity` x its everyday rate, all of it in one tone (crisis or pump)."""

    def __init__(
        self,
        gen: StreamGenerator,
        scenario: Scenario,
        rng: random.Random,
        *,
        share: float,
        sentences: tuple[str, ...],
        tails: tuple[str, ...],
        category: int,
    ) -> None:
        super().__init__(gen, scenario, rng)
        self.share = share
        self.sentences = sentences
        self.tails = tails
        self.category = category

    def extra_rate(self, base_rate: float, ts: float) -> float:
        return max(self.gen.plan.intensity - 1.0, 0.0) * base_rate * self.share

    def make(self, seq: int, created_at: datetime, received_at: datetime) -> Post:
        random_ = self.gen.random
        text = (
            self.sentences[int(random_() * len(self.sentences))]
            + " "
            + self.tails[int(random_() * len(self.tails))]
        )
        return self.gen.build(
            seq, self.gen.any_author(), text, self.category, created_at=created_at, received_at=received_at
        )


def _brand_crisis(gen: StreamGenerator, scenario: Scenario, rng: random.Random) -> _ScenarioStream:
    brand = scenario.target
    sentences = tuple(t.format(b=brand, e=e) for t in _CRISIS for e in _CRISIS_EVENTS[brand])
    tails = (*_CRISIS_TAILS, f"#{_compact(brand)}Down", f"#Boycott{_compact(brand)}")
    return _Surge(
        gen, scenario, rng, share=BRAND_SHARES[brand], sentences=sentences, tails=tails, category=BRAND
    )


def _ticker_pump(gen: StreamGenerator, scenario: Scenario, rng: random.Random) -> _ScenarioStream:
    ticker = scenario.target.removeprefix("$")
    sentences = tuple(t.format(t=scenario.target) for t in _PUMP)
    return _Surge(
        gen,
        scenario,
        rng,
        share=TICKER_SHARES[ticker],
        sentences=sentences,
        tails=_PUMP_TAILS,
        category=TICKER,
    )


class _Campaign(_ScenarioStream):
    """30-60 brand-new accounts posting one message with small variations, each about three times."""

    POSTS_PER_ACCOUNT = 3

    def __init__(self, gen: StreamGenerator, scenario: Scenario, rng: random.Random) -> None:
        super().__init__(gen, scenario, rng)
        self.accounts = self._new_accounts(rng.randint(30, 60))
        self.variants = self._variants(scenario.target)
        self.posted = 0

    def _new_accounts(self, count: int) -> list[Author]:
        taken = {a.handle for a in self.gen.pool.authors}
        accounts: list[Author] = []
        while len(accounts) < count:
            w1, w2 = self.rng.sample(_CAMPAIGN_HANDLE_WORDS, 2)
            handle = f"{w1}{w2}{self.rng.randrange(10_000, 100_000)}"
            if handle not in taken:
                taken.add(handle)
                accounts.append(_make_author(self.rng, handle, self.rng.randrange(0, 40), "twitter"))
        return accounts

    def _variants(self, target: str) -> list[str]:
        is_ticker = target.startswith("$")
        message = self.rng.choice(_CAMPAIGN_TICKER if is_ticker else _CAMPAIGN_BRAND).format(t=target)
        tags = (
            (f"#{target[1:]}Army", "#DoNotSell")
            if is_ticker
            else (f"#Boycott{_compact(target)}", "#TheTruth")
        )
        variants = [message]
        for _ in range(11):
            text = message
            swaps = [(a, b) for a, b in _CAMPAIGN_SWAPS if a in text]
            if swaps and self.rng.random() < 0.7:
                old, new = self.rng.choice(swaps)
                text = text.replace(old, new, 1)
            if self.rng.random() < 0.5:
                text += " " + self.rng.choice(_CAMPAIGN_EMOJI)
            if self.rng.random() < 0.5:
                text += " " + self.rng.choice(tags)
            variants.append(text)
        return variants

    def extra_rate(self, base_rate: float, ts: float) -> float:
        return len(self.accounts) * self.POSTS_PER_ACCOUNT / self.duration

    def make(self, seq: int, created_at: datetime, received_at: datetime) -> Post:
        # Round-robin, so the first len(accounts) posts already come from as many distinct accounts.
        author = self.accounts[self.posted % len(self.accounts)]
        self.posted += 1
        text = self.variants[int(self.gen.random() * len(self.variants))]
        category = TICKER if self.scenario.target.startswith("$") else BRAND
        return self.gen.build(seq, author, text, category, created_at=created_at, received_at=received_at)


class _Viral(_ScenarioStream):
    """A high-follower account's post, then a stream of reposts, replies and quotes that keeps growing.

    Reposts carry the original's running engagement counts (as platforms report them on a repost),
    so the original's likes and reposts visibly climb over the scenario. Every reference names the
    original in `Post.ref`, as the platforms' APIs do, so detectors can follow it.
    """

    def __init__(self, gen: StreamGenerator, scenario: Scenario, rng: random.Random) -> None:
        super().__init__(gen, scenario, rng)
        handle = scenario.target.removeprefix("@")
        self.celebrity = next(a for a in gen.pool.celebrities if a.handle == handle)
        self.original = rng.choice(_VIRAL_ORIGINS)
        self.original_url = ""
        self.original_uid = ""
        self.pending_first = True
        self.references = 0

    def extra_rate(self, base_rate: float, ts: float) -> float:
        # Averages the same extra volume as a surge, but ramps from 0.2x to 1.8x across the window.
        progress = min(max((ts - self.start) / self.duration, 0.0), 1.0)
        average = max(self.gen.plan.intensity - 1.0, 0.0) * base_rate * _VIRAL_BASE_SHARE
        return average * (0.2 + 1.6 * progress)

    def make(self, seq: int, created_at: datetime, received_at: datetime) -> Post:
        if self.pending_first:
            self.pending_first = False
            post = self.gen.build(
                seq, self.celebrity, self.original, CHATTER, created_at=created_at, received_at=received_at
            )
            self.original_url = post.url or ""
            self.original_uid = post.uid
            return post
        self.references += 1
        kind = self.gen.random()
        reaction = _VIRAL_REACTIONS[int(self.gen.random() * len(_VIRAL_REACTIONS))]
        author = self.gen.any_author()
        if kind < 0.5:
            return self._repost(seq, author, created_at, received_at)
        text = f"@{self.celebrity.handle} {reaction}" if kind < 0.8 else f"{reaction} {self.original_url}"
        return self._referencing(
            self.gen.build(seq, author, text, CHATTER, created_at=created_at, received_at=received_at)
        )

    def _referencing(self, post: Post) -> Post:
        return replace(post, ref=self.original_uid)

    def _repost(self, seq: int, author: Author, created_at: datetime, received_at: datetime) -> Post:
        # Each visible reference stands for many more on a real platform; scale by the audience.
        reach = max(1, self.celebrity.followers // 5000)
        reposts = self.references * reach
        text = f"RT @{self.celebrity.handle}: {self.original}"
        return self._referencing(
            self.gen.build(
                seq,
                author,
                text,
                CHATTER,
                created_at=created_at,
                received_at=received_at,
                counts=(reposts * 4, reposts, reposts // 3),
            )
        )


_SCENARIO_STREAMS: dict[
    ScenarioKind, Callable[[StreamGenerator, Scenario, random.Random], _ScenarioStream]
] = {
    "brand_crisis": _brand_crisis,
    "ticker_pump": _ticker_pump,
    "campaign": _Campaign,
    "viral": _Viral,
}


# ---------------------------------------------------------------------------------------------------
# The generator


class StreamGenerator:
    """Posts for a synthetic stream, and the rate at which they should happen at a given event time.

    `origin` (a POSIX timestamp) anchors the scenario schedule. `start_seq` only seeds the rng, so a run
    resumed from a cursor is reproducible too. `on_scenario` is called with the new `Scenario` (or None)
    whenever the stream enters or leaves one, as seen by `post`/`rate_at`.
    """

    def __init__(
        self,
        *,
        seed: int,
        source: str,
        rate: float,
        origin: float,
        plan: ScenarioPlan | None = None,
        start_seq: int = 1,
        on_scenario: Callable[[Scenario | None], None] | None = None,
    ) -> None:
        self.seed = seed
        self.source = source
        self._uid_prefix = Post.make_uid(source, "")
        self.base_rate = rate
        self.origin = origin
        self.plan = plan or ScenarioPlan()
        self.on_scenario = on_scenario
        self.pool = author_pool(seed)
        rng = random.Random(f"synthetic:{seed}:{start_seq}")
        self.random = rng.random
        self._noise = _noise_table(seed)
        self._mentions = _mentions(rng, self.pool)
        self._chatter_endings = _decorations(rng, _CHATTER_HASHTAGS, 0.2, 0.3, 0.05)
        self._foreign_endings = _decorations(rng, (), 0.0, 0.3, 0.0)
        self._ticker_table = _table(rng, _TICKER_WEIGHTS)
        self._tickers = {t: _ticker_topic(rng, t) for t in TICKERS}
        self._brands = tuple(_brand_topic(rng, b) for b in BRANDS)
        self._engagement = _engagement_table(rng)
        # Cached for the current stretch of event time; `_refresh` recomputes them when ts leaves it.
        self._valid_from = math.inf
        self._valid_until = -math.inf
        self._segment_index: int | None = None
        self._active: _ScenarioStream | None = None
        self._total_rate = rate
        self._scenario_share = 0.0

    # -- schedule ------------------------------------------------------------------------------------

    def scenario_at(self, when: datetime | float) -> Scenario | None:
        """The scenario active at event time `when` (a datetime or a POSIX timestamp), if any."""
        ts = when.timestamp() if isinstance(when, datetime) else when
        index = _segment_at(self.plan, self.origin, ts).index
        return None if index is None else self._scenario(index)[0]

    def _scenario(self, index: int) -> tuple[Scenario, random.Random]:
        rng = random.Random(f"synthetic-scenario:{self.seed}:{index}")
        kind = self.plan.kinds[index % len(self.plan.kinds)]
        start = self.origin + self.plan.first_after + index * self.plan.every
        scenario = Scenario(
            index=index,
            kind=kind,
            target=_pick_target(rng, kind, self.pool),
            start=datetime.fromtimestamp(start, UTC),
            end=datetime.fromtimestamp(start + self.plan.duration, UTC),
        )
        return scenario, rng

    # -- rate ----------------------------------------------------------------------------------------

    def rate_at(self, ts: float) -> float:
        """Posts per second at event time `ts`: everyday rate x daily rhythm x noise, plus any scenario."""
        if not self._valid_from <= ts < self._valid_until:
            self._refresh(ts)
        return self._total_rate

    def _refresh(self, ts: float) -> None:
        """Recompute the cached rate and scenario; valid to the next whole second or schedule change."""
        segment = _segment_at(self.plan, self.origin, ts)
        if segment.index != self._segment_index:
            self._enter(segment.index)
        base = self.base_rate * daily_rhythm(ts) * self._noise[int(ts // 60.0) % _NOISE_MINUTES]
        extra = self._active.extra_rate(base, ts) if self._active is not None else 0.0
        self._total_rate = base + extra
        self._scenario_share = extra / self._total_rate
        second = math.floor(ts)
        self._valid_from = max(float(second), segment.start)
        self._valid_until = min(second + 1.0, segment.end)

    def _enter(self, index: int | None) -> None:
        self._segment_index = index
        if index is None:
            self._active = None
        else:
            scenario, rng = self._scenario(index)
            self._active = _SCENARIO_STREAMS[scenario.kind](self, scenario, rng)
        if self.on_scenario is not None:
            self.on_scenario(self._active.scenario if self._active is not None else None)

    # -- posts ---------------------------------------------------------------------------------------

    def post(self, seq: int, ts: float, created_at: datetime, received_at: datetime) -> Post:
        """Post number `seq` at event time `ts` (`created_at` is the same instant as a datetime)."""
        if not self._valid_from <= ts < self._valid_until:
            self._refresh(ts)
        active = self._active
        if active is not None and (active.pending_first or self.random() < self._scenario_share):
            return active.make(seq, created_at, received_at)
        return self._everyday_post(seq, created_at, received_at)

    def any_author(self) -> Author:
        return self.pool.table[int(self.random() * _AUTHOR_TABLE)]

    def _everyday_post(self, seq: int, created_at: datetime, received_at: datetime) -> Post:
        r = self.random()
        lang = "en"
        if r < CHATTER_SHARE * FOREIGN_SHARE_OF_CHATTER:
            category, (lang, text) = CHATTER, self._foreign_text()
        elif r < CHATTER_SHARE:
            category, text = CHATTER, self._chatter_text()
        elif r < CHATTER_SHARE + TICKER_SHARE:
            ticker = self._ticker_table[int(self.random() * len(self._ticker_table))]
            category, text = TICKER, self._topic_text(self._tickers[ticker])
        else:
            category, text = BRAND, self._topic_text(self._brands[int(self.random() * len(self._brands))])
        return self.build(
            seq, self.any_author(), text, category, created_at=created_at, received_at=received_at, lang=lang
        )

    def _details(self, lang: str) -> str:
        """Who, when and where, as a short sentence of its own (see `_DETAILS`)."""
        random_ = self.random
        when, company, place = _DETAILS[lang]
        return (
            when[int(random_() * len(when))]
            + " "
            + company[int(random_() * len(company))]
            + " "
            + place[int(random_() * len(place))]
            + "."
        )

    def _foreign_text(self) -> tuple[str, str]:
        random_ = self.random
        lang, sentences, tails = _FOREIGN[int(random_() * len(_FOREIGN))]
        return lang, (
            sentences[int(random_() * len(sentences))]
            + " "
            + self._details(lang)
            + " "
            + tails[int(random_() * len(tails))]
            + self._foreign_endings[int(random_() * _DECOR_TABLE)]
        )

    def _chatter_text(self) -> str:
        random_ = self.random
        text = _CHATTER[int(random_() * len(_CHATTER))]
        if random_() < CHATTER_OPENER_SHARE:
            text = _CHATTER_OPENERS[int(random_() * len(_CHATTER_OPENERS))] + " " + text
        if random_() < LONG_CHATTER_SHARE:
            text += " " + _CHATTER[int(random_() * len(_CHATTER))]
        return (
            self._mentions[int(random_() * _MENTION_TABLE)]
            + text
            + " "
            + self._details("en")
            + " "
            + _CHATTER_TAILS[int(random_() * len(_CHATTER_TAILS))]
            + self._chatter_endings[int(random_() * _DECOR_TABLE)]
        )

    def _topic_text(self, topic: _Topic) -> str:
        random_ = self.random
        return (
            self._mentions[int(random_() * _MENTION_TABLE)]
            + topic.sentences[int(random_() * len(topic.sentences))]
            + " "
            + self._details("en")
            + " "
            + topic.tails[int(random_() * len(topic.tails))]
            + topic.endings[int(random_() * _DECOR_TABLE)]
        )

    def build(
        self,
        seq: int,
        author: Author,
        text: str,
        category: int,
        *,
        created_at: datetime,
        received_at: datetime,
        lang: str = "en",
        counts: tuple[int, int, int] | None = None,
    ) -> Post:
        """Wrap text into a Post: ids, url, channel, and engagement loosely tied to followers."""
        native_id = str(seq)
        if counts is None:
            like_rate, repost_div, reply_div = self._engagement[int(self.random() * _DECOR_TABLE)]
            likes = int(author.followers * like_rate)
            counts = (likes, likes // repost_div, likes // reply_div)
        likes, reposts, replies = counts
        # `Post.make_uid` and `cap_text`, inlined: this runs once per synthetic post.
        uid = self._uid_prefix + native_id
        if len(text) > MAX_TEXT_CHARS:
            text = text[:MAX_TEXT_CHARS]
        if author.platform == "reddit":  # Reddit reports a score and a comment count, not likes
            return Post(
                uid, self.source, native_id, author.handle, text,
                created_at, received_at, author.url_prefix + native_id, author.channels[category], lang,
                None, None, replies, likes, author.followers,
            )  # fmt: skip
        return Post(
            uid, self.source, native_id, author.handle, text,
            created_at, received_at, author.url_prefix + native_id, author.channels[category], lang,
            likes, reposts, replies, None, author.followers,
        )  # fmt: skip
