"""The content of every alert message, decided in one place, and the escaping each platform needs.

`build_message` turns a notification into a `Message`: what happened to which rule, how unusual
(observed vs baseline, score), when it started, the top example posts with author and link, the top
terms and a dashboard link. The renderers below (plain text, HTML, Telegram MarkdownV2, Slack mrkdwn,
Discord markdown) only lay that content out; sinks never compose text of their own.

Every string that came from a post or a rule is hostile: it may hold markup, HTML, or mentions such
as `@everyone`. Each renderer escapes it for its platform so it is shown, never interpreted.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from harvester.alerts.notification import ExamplePost, as_notification
from harvester.models import Alert, Severity

SEVERITY_COLOURS: dict[Severity, int] = {
    Severity.INFO: 0x9E9E9E,
    Severity.LOW: 0x2196F3,
    Severity.MEDIUM: 0xFFC107,
    Severity.HIGH: 0xFF5722,
    Severity.CRITICAL: 0xD32F2F,
}
EXAMPLE_CHARS = 280  # an example post is a glimpse, not the whole thread
TOP_TERMS = 8
OTHERS = 20  # a burst of 50 signals is one message, but not a wall of 49 summaries


@dataclass(frozen=True, slots=True)
class Message:
    key: str
    title: str
    severity: Severity
    colour: int
    rule: str
    kind: str
    summary: str
    observed: float
    baseline: float
    score: float
    started_at: datetime
    at: datetime
    examples: tuple[ExamplePost, ...]
    top_terms: tuple[tuple[str, int], ...]
    dashboard_url: str | None
    others: tuple[str, ...]  # summaries of (up to OTHERS of) the group's other signals
    total: int = 1  # signals in the message

    @property
    def colour_hex(self) -> str:
        return f"#{self.colour:06X}"

    @property
    def more(self) -> int:
        """Signals in the group beyond the lead and the `others` listed."""
        return max(0, self.total - 1 - len(self.others))

    @property
    def facts(self) -> list[tuple[str, str]]:
        """The figures every renderer shows, as (label, value) pairs."""
        rows = [
            ("Observed", _number(self.observed)),
            ("Baseline", _number(self.baseline)),
            ("Score", _number(self.score)),
            ("Started", self.started_at.strftime("%Y-%m-%d %H:%M:%S UTC")),
        ]
        if self.others:
            rows.append(("Grouped", f"{self.total} signals"))
        return rows


def _number(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"


def _top_terms(evidence: dict[str, Any]) -> tuple[tuple[str, int], ...]:
    terms = []
    for item in evidence.get("top_terms") or []:
        if isinstance(item, list | tuple) and len(item) == 2:
            terms.append((str(item[0]), int(item[1])))
    return tuple(terms[:TOP_TERMS])


def dashboard_link(base: str | None, rule: str) -> str | None:
    if not base:
        return None
    return f"{base.rstrip('/')}/?rule={quote(rule, safe='')}"


def build_message(alert: Alert) -> Message:
    note = as_notification(alert)
    lead = note.signal
    rest = [s.summary for s in note.signals if s.id != lead.id]
    title = f"[{lead.severity.value.upper()}] {lead.kind.replace('_', ' ')} on {lead.rule}"
    examples = tuple(
        ExamplePost(e.uid, e.author, _clip(e.text, EXAMPLE_CHARS), e.url, e.source) for e in note.examples
    )
    return Message(
        key=note.key,
        title=title,
        severity=lead.severity,
        colour=SEVERITY_COLOURS[lead.severity],
        rule=lead.rule,
        kind=lead.kind,
        summary=lead.summary,
        observed=lead.observed,
        baseline=lead.baseline,
        score=lead.score,
        started_at=lead.window_start,
        at=lead.at,
        examples=examples,
        top_terms=_top_terms(lead.evidence),
        dashboard_url=dashboard_link(note.dashboard_url, lead.rule),
        others=tuple(rest[:OTHERS]),
        total=1 + len(rest),
    )


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())  # newlines in a post would break list layouts
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ----------------------------------------------------------------------------------- plain / HTML


def plain_text(message: Message) -> str:
    lines = [message.title, "", message.summary, ""]
    lines += [f"{label}: {value}" for label, value in message.facts]
    if message.top_terms:
        lines += ["", "Top terms: " + ", ".join(f"{t} ({n})" for t, n in message.top_terms)]
    if message.examples:
        lines += ["", "Example posts:"]
        for post in message.examples:
            lines.append(f"- @{post.author}: {post.text}" + (f" <{post.url}>" if post.url else ""))
    if message.others:
        lines += ["", "Also in this group:"] + [f"- {summary}" for summary in message.others]
        if message.more:
            lines.append(f"- and {message.more} more")
    if message.dashboard_url:
        lines += ["", f"Dashboard: {message.dashboard_url}"]
    return "\n".join(lines) + "\n"


def html_body(message: Message) -> str:
    e = html.escape
    parts = [
        f'<h2 style="color:{message.colour_hex}">{e(message.title)}</h2>',
        f"<p>{e(message.summary)}</p>",
        "<table>"
        + "".join(f"<tr><th align=left>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in message.facts)
        + "</table>",
    ]
    if message.top_terms:
        parts.append(
            "<p><b>Top terms:</b> " + e(", ".join(f"{t} ({n})" for t, n in message.top_terms)) + "</p>"
        )
    if message.examples:
        items = []
        for post in message.examples:
            link = f' <a href="{e(post.url)}">link</a>' if post.url and _is_web_url(post.url) else ""
            items.append(f"<li><b>@{e(post.author)}</b>: {e(post.text)}{link}</li>")
        parts.append("<p><b>Example posts</b></p><ul>" + "".join(items) + "</ul>")
    if message.others:
        parts.append(
            "<p><b>Also in this group</b></p><ul>"
            + "".join(f"<li>{e(s)}</li>" for s in message.others)
            + (f"<li>and {message.more} more</li>" if message.more else "")
            + "</ul>"
        )
    if message.dashboard_url:
        parts.append(f'<p><a href="{e(message.dashboard_url)}">Open the dashboard</a></p>')
    return "<html><body>" + "\n".join(parts) + "</body></html>\n"


def _is_web_url(url: str) -> bool:
    # A post's url comes from the platform, but a javascript: link in an email would still be a trap.
    return url.startswith(("https://", "http://"))


# ------------------------------------------------------------------------------ Telegram MarkdownV2

_MDV2_SPECIAL = re.compile(r"([_*\[\]()~`>#+\-=|{}.!\\])")
_MDV2_URL_SPECIAL = re.compile(r"([)\\])")


def escape_markdown_v2(text: str) -> str:
    """Telegram MarkdownV2: every one of _*[]()~`>#+-=|{}.! and the backslash is escaped in text."""
    return _MDV2_SPECIAL.sub(r"\\\1", text)


def escape_markdown_v2_url(url: str) -> str:
    """Inside the (...) of an inline link only ) and the backslash must be escaped."""
    return _MDV2_URL_SPECIAL.sub(r"\\\1", url)


def markdown_v2(message: Message, limit: int = 4096) -> str:
    x = escape_markdown_v2
    lines = [f"*{x(message.title)}*", "", x(message.summary), ""]
    lines += [f"*{x(label)}:* {x(value)}" for label, value in message.facts]
    if message.top_terms:
        lines += ["", "*Top terms:* " + x(", ".join(f"{t} ({n})" for t, n in message.top_terms))]
    for post in message.examples:
        line = f"• *@{x(post.author)}*: {x(post.text)}"
        if post.url and _is_web_url(post.url):
            line += f" [link]({escape_markdown_v2_url(post.url)})"
        lines.append(line)
    if message.others:
        lines += ["", "*Also in this group:*"] + [f"• {x(s)}" for s in message.others]
        if message.more:
            lines.append(x(f"… and {message.more} more"))
    if message.dashboard_url:
        lines += ["", f"[Open the dashboard]({escape_markdown_v2_url(message.dashboard_url)})"]
    return _cut_lines(lines, limit, x("…"))


def _cut_lines(lines: list[str], limit: int, ellipsis: str) -> str:
    # Cut between lines, never inside one: half an escape sequence or half a link is a 400 from the API.
    out: list[str] = []
    used = 0
    for line in lines:
        if used + len(line) + 1 > limit - len(ellipsis) - 1:
            out.append(ellipsis)
            break
        out.append(line)
        used += len(line) + 1
    return "\n".join(out)


# ------------------------------------------------------------------------------------ Slack mrkdwn


def escape_slack(text: str) -> str:
    """Slack's three control characters. With `<` escaped, `<!channel>` or `<@U123>` cannot be injected."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_link(url: str, label: str) -> str:
    # `|` and `>` would end the link early; Slack's own clients percent-encode them.
    safe = url.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C")
    return f"<{safe}|{escape_slack(label)}>"


# ---------------------------------------------------------------------------------- Discord markdown

_DISCORD_SPECIAL = re.compile(r"([\\*_~`|>#\[\]()-])")


def escape_discord(text: str) -> str:
    """Discord markdown escaped, and mentions broken with a zero-width space as a second line of defence
    (the webhook payload also sets `allowed_mentions` to parse nothing)."""
    text = _DISCORD_SPECIAL.sub(r"\\\1", text)
    return re.sub(r"@(everyone|here|[!&]?\d)", "@\u200b\\1", text)
