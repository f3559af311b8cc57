"""The rule schema: what a user watches for, and how a post matches.

A post matches a rule when

    (any of keywords / cashtags / symbols / regex matches, or match_all)
    AND every entry of all_of appears AND no entry of exclude appears
    AND its source and language pass the rule's filters.

A rule with only `all_of` matches posts that contain all of them. How the matching is done (one pass
over the text for all rules) lives in `harvester.engine.rules`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from harvester.config.base import NAME_PATTERN, Strict
from harvester.config.detectors import (
    CampaignConfig,
    CrisisConfig,
    SentimentShiftConfig,
    SilenceConfig,
    ViralConfig,
    VolumeSpikeConfig,
)

_CASHTAG_FORM = re.compile(r"[A-Za-z][A-Za-z0-9.]{0,9}")
_SYMBOL_FORM = re.compile(r"[A-Z][A-Z0-9]{0,9}")
_LANG_FORM = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{2,8})*")


def _word_set(block: str) -> frozenset[str]:
    return frozenset(block.split())


# Upper-case words that posts write for reasons other than a ticker: English words shouted or opening
# a sentence, chat and market abbreviations. A bare symbol from this list would match half the
# firehose ("ON my way", "ALL IN", "AI is eating the world"), so it must be written as a cashtag.
COMMON_WORDS = _word_set(
    """
    A I AM AN AS AT AH AD AI AW BE BY DO EH GO HA HE HI ID IF IN IS IT ME MY NO OF OH OK ON OR OW OX SO TO
    UH UM UP US WE YA YE YO OP PM PS RE TV PC UK EU DM GM GG DD PT IV AH EV HR PR VS IQ IP OG RN RT TL
    ALL AND ANY APP ARE ASK ATE BAD BAG BED BET BIG BIT BOX BOY BUT BUY CAN CAR CAT COP CRY CUT DAD DAY
    DID DIE DIG DIP DOG DRY DUE EAR EAT EGG END EYE FAN FAR FAT FEW FIT FIX FLY FOR FUN GAS GET GOD GOT
    GUY HAD HAS HAT HER HEY HIM HIS HIT HOT HOW HUG ICE ILL ITS JOB JOY KEY KID LAB LAW LAY LED LEG LET
    LIE LIT LOG LOL LOT LOW MAD MAN MAP MAX MAY MEN MET MIX MOM NET NEW NOR NOT NOW NUT ODD OFF OIL OLD
    OMG ONE OUR OUT OWN PAY PET PIN POP PRO PUT RAN RAW RED RIP ROW RUN SAD SAT SAW SAY SEA SEE SET SHE
    SIT SIX SKY SON SUN TAX TEA TEN THE TIE TIP TOO TOP TOY TRY TWO USE VAN WAR WAS WAY WET WHO WHY WIN
    WON WOW YEA YES YET YOU ZOO
    ABLE ALSO AWAY BABY BACK BALL BANK BASE BEAR BEAT BEEN BEER BEST BIKE BILL BIRD BLUE BODY BOND BOOK
    BORN BOSS BOTH BULL BURN BUSY CALL CAME CARD CARE CASH CASE CITY CLUB COAL COLD COME COOK COOL COPY
    COST CUTE DARK DATA DATE DEAD DEAL DEAR DEBT DEEP DOES DONE DOOR DOWN DRAW DROP DUMP EACH EARN EASY
    EDGE EDIT ELSE EPIC EVEN EVER EXIT FACE FACT FAIL FAIR FALL FARM FAST FEAR FEED FEEL FELL FELT FILE
    FILL FILM FIND FINE FIRE FIRM FISH FIVE FLAT FLOW FOOD FOOT FORM FOUR FREE FROM FUEL FULL FUND GAIN
    GAME GAVE GIFT GIRL GIVE GLAD GOAL GOES GOLD GONE GOOD GRAB GREW GROW HAIR HALF HALL HAND HARD HATE
    HAVE HEAD HEAR HEAT HELD HELL HELP HERE HERO HIGH HIKE HILL HIRE HOLD HOLE HOME HOPE HOST HOUR HUGE
    HUNT HURT IDEA INTO IRON ITEM JUST KEEP KEPT KIDS KILL KIND KING KNEW KNOW LACK LADY LAND LAST LATE
    LEAD LEFT LESS LIFE LIFT LIKE LINE LINK LIST LIVE LOAN LOCK LONG LOOK LORD LOSE LOSS LOST LOUD LOVE
    LUCK MADE MAIL MAIN MAKE MALL MANY MARK MEAL MEAN MEAT MEET MILK MIND MINE MISS MODE MOOD MOON MORE
    MOST MOVE MUCH MUST NAME NEAR NEED NEWS NEXT NICE NINE NONE NOTE OKAY ONCE ONLY OPEN OVER PACK PAGE
    PAID PAIN PAIR PARK PART PASS PAST PATH PEAK PICK PINK PLAN PLAY PLUS POLL POOL POOR POST PULL PUMP
    PURE PUSH RACE RAIN RARE RATE READ REAL REST RICH RIDE RING RISE RISK ROAD ROCK ROLE ROOF ROOM ROOT
    RULE RUSH SAFE SAID SALE SAME SAVE SEAT SEEK SEEM SEEN SELF SELL SEND SENT SHIP SHOP SHOT SHOW SHUT
    SICK SIDE SIGN SING SITE SIZE SKIN SLOW SNOW SOFT SOLD SOME SONG SOON SORT SOUL SPOT STAR STAY STEP
    STOP SUCH SURE TAKE TALK TALL TANK TASK TEAM TECH TELL TERM TEST TEXT THAN THAT THEM THEN THEY THIN
    THIS THUS TIME TINY TOLD TOOK TOUR TOWN TREE TRIP TRUE TURN TYPE UNIT UPON USED USER VAST VERY VIEW
    VOTE WAGE WAIT WAKE WALK WALL WANT WARM WASH WAVE WEAK WEAR WEEK WELL WENT WERE WEST WHAT WHEN WIDE
    WIFE WILD WILL WIND WINE WISH WITH WOOD WORD WORK YARD YEAH YEAR YOUR ZERO ZONE
    ABOUT ABOVE AFTER AGAIN ALIVE ALONE AWARE BEING BELOW BLACK BRAIN BREAK BRING BUILD CHEAP CHECK
    CLEAN CLEAR CLOSE COULD CRAZY DOING DREAM DRIVE EARLY EARTH ENJOY EVERY FAITH FALSE FIRST FOCUS FORCE
    FRESH FRONT FUNNY GIVEN GLORY GOING GRAND GREAT GREEN GROUP HAPPY HEART HEAVY HOUSE HUMAN LARGE LATER
    LAUGH LEARN LEVEL LIGHT LOCAL LUCKY MAGIC MAJOR MAYBE MONEY MONTH MUSIC NEVER NIGHT NORTH OTHER PARTY
    PEACE PHONE PLACE PLANE POINT POWER PRICE PROUD QUICK QUIET RADIO READY RIGHT ROUND SCORE SENSE SHARE
    SHARP SHORT SINCE SLEEP SMALL SMART SMILE SOLID SOUND SOUTH SPACE SPEED SPEND SPORT STAND START STILL
    STOCK STORE STORY STYLE SUGAR SUPER SWEET TABLE THANK THEIR THERE THESE THING THINK THOSE TODAY TOTAL
    TRADE TRUST TRUTH UNDER UNTIL VALUE VIDEO VOICE WATCH WATER WHERE WHICH WHILE WHITE WHOLE WORLD WORRY
    WORTH WOULD WRITE WRONG YOUNG
    AMEN ASAP ATH BRB BTW CEO CFO CPI DYOR EOD EPS ETF FAQ FED FOMO FTW FYI GDP HODL IDK IMHO IMO IPO IRL
    LMAO NFA NFT NYC OTC RIP ROFL SEC SMH TBH TIL USA USD WTF YOLO
    """
)


def _symbol_problem(symbol: str) -> str | None:
    """Why `symbol` cannot be a bare symbol, or None when it can."""
    if symbol.startswith("$"):
        return f"{symbol!r} is a cashtag; list it under cashtags (symbols are bare words such as TSLA)"
    if not _SYMBOL_FORM.fullmatch(symbol):
        if _SYMBOL_FORM.fullmatch(symbol.upper()):
            return (
                f"{symbol!r} is not upper case; symbols match only upper-case words "
                f"(write {symbol.upper()!r}, or use keywords to match any case)"
            )
        return f"expected an upper-case symbol of letters and digits such as TSLA, got {symbol!r}"
    if symbol in COMMON_WORDS:
        return f"{symbol!r} is a common word; write the cashtag ${symbol} instead"
    if len(symbol) == 1:
        return f"{symbol!r} is a single letter; write the cashtag ${symbol} instead"
    return None


# YAML 1.1 reads an unquoted ON, YES, TRUE (and OFF, NO, FALSE) as a boolean; say so instead of
# pydantic's "Input should be a valid string".
_YAML_BOOLEANS = {True: ("ON", "YES or TRUE", "true"), False: ("NO", "OFF or FALSE", "false")}


class RuleConfig(Strict):
    """One thing the user cares about (the module docstring says when a post matches)."""

    name: str = Field(pattern=NAME_PATTERN)
    keywords: list[str] = []
    cashtags: list[str] = []
    symbols: list[str] = []
    regex: list[str] = []
    all_of: list[str] = []
    exclude: list[str] = []
    sources: list[str] = []
    langs: list[str] = []
    match_all: bool = False
    # Detector settings: only the keys given override the engine's defaults (see engine/presets.py).
    sensitivity: Literal["low", "medium", "high"] | None = None
    volume_spike: VolumeSpikeConfig | None = None
    sentiment: SentimentShiftConfig | None = None
    viral: ViralConfig | None = None
    campaign: CampaignConfig | None = None
    crisis: CrisisConfig | None = None
    silence: SilenceConfig | None = None

    @field_validator("keywords", "cashtags", "symbols", "regex", "all_of", "exclude", "langs", mode="before")
    @classmethod
    def _list_of_strings(cls, values: Any, info: ValidationInfo) -> Any:
        if isinstance(values, str):
            raise ValueError(f"expected a list such as [{values}], got {values!r}")
        if not isinstance(values, list):
            return values  # pydantic reports the wrong type
        out = []
        for value in values:
            if isinstance(value, bool):
                word, others, as_read = _YAML_BOOLEANS[value]
                if info.field_name == "symbols":
                    raise ValueError(
                        f"{word!r} is a common word; write the cashtag ${word} instead "
                        f"(YAML reads an unquoted {word}, {others} as {as_read})"
                    )
                raise ValueError(
                    f"got {as_read}: YAML reads an unquoted yes, no, on, off, true or false as a boolean; "
                    f"quote the word, e.g. '{word.lower()}'"
                )
            out.append(str(value) if isinstance(value, int) and info.field_name != "symbols" else value)
        return out

    @field_validator("keywords", "all_of", "exclude")
    @classmethod
    def _non_empty_words(cls, values: list[str], info: ValidationInfo) -> list[str]:
        for word in values:
            if not word.strip():
                raise ValueError(f"{info.field_name} cannot be empty strings")
        return values

    @field_validator("cashtags")
    @classmethod
    def _cashtag_form(cls, values: list[str]) -> list[str]:
        out = []
        for tag in values:
            bare = tag.removeprefix("$")
            if not _CASHTAG_FORM.fullmatch(bare):
                raise ValueError(f"expected a cashtag such as $BTC, got {tag!r}")
            out.append(bare.upper())
        return out

    @field_validator("symbols")
    @classmethod
    def _bare_symbols(cls, values: list[str]) -> list[str]:
        for symbol in values:
            problem = _symbol_problem(symbol)
            if problem is not None:
                raise ValueError(problem)
        return values

    @field_validator("regex")
    @classmethod
    def _compiles(cls, values: list[str]) -> list[str]:
        for pattern in values:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
        return values

    @field_validator("langs")
    @classmethod
    def _language_codes(cls, values: list[str]) -> list[str]:
        # Lower case with '-', as the matcher compares them ("pt_BR" and "pt-br" are the same tag).
        out = []
        for lang in values:
            code = lang.strip().lower().replace("_", "-")
            if not _LANG_FORM.fullmatch(code):
                raise ValueError(f"expected a language code such as en or pt-BR, got {lang!r}")
            out.append(code)
        return out

    @model_validator(mode="after")
    def _has_something_to_match(self) -> RuleConfig:
        if not (
            self.keywords or self.cashtags or self.symbols or self.regex or self.all_of or self.match_all
        ):
            raise ValueError("a rule needs keywords, cashtags, symbols, regex or all_of (or match_all: true)")
        return self
