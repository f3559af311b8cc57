"""The JSON API on a daemon that saw a brand crisis, the token, the Host check and the silences."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from harvester.app import App
from tests.web_helpers import TOKEN, config, finished, running, url, wait_until


async def call(
    session: aiohttp.ClientSession, method: str, address: str, **kw: Any
) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with session.request(method, address, **kw) as response:
        body = await response.json() if response.content_type == "application/json" else await response.text()
        return response.status, body, response


def stored_signals(app: App) -> bool:
    return app.router is not None and app.router.signals > 0


async def test_signals_alerts_posts_and_rules(tmp_path: Path) -> None:
    async with running(config(tmp_path, limit=25 * 200, crisis=True)) as app, aiohttp.ClientSession() as s:
        await wait_until(finished(app), within=50)
        await wait_until(lambda: stored_signals(app) and app.router is not None and app.router.queue.empty())
        status, body, _ = await call(s, "GET", url(app, "/api/signals"))
        assert status == 200 and body["signals"], body
        first = body["signals"][0]
        assert {"id", "rule", "kind", "severity", "at", "summary", "evidence", "examples"} <= set(first)
        crisis = [x for x in body["signals"] if x["rule"].startswith("brand-")]
        assert crisis, [x["rule"] for x in body["signals"]]
        rule, kind = crisis[0]["rule"], crisis[0]["kind"]
        _, by_rule, _ = await call(s, "GET", url(app, "/api/signals"), params={"rule": rule, "kind": kind})
        assert by_rule["signals"] and all(x["rule"] == rule and x["kind"] == kind for x in by_rule["signals"])
        at = by_rule["signals"][-1]["at"]
        _, after, _ = await call(s, "GET", url(app, "/api/signals"), params={"rule": rule, "since": at})
        _, before, _ = await call(s, "GET", url(app, "/api/signals"), params={"rule": rule, "until": at})
        assert all(x["at"] >= at for x in after["signals"]) and all(x["at"] < at for x in before["signals"])
        assert len(after["signals"]) >= 1
        # example posts of a signal are the stored posts its evidence names
        with_examples = [x for x in body["signals"] if x["examples"]]
        assert with_examples and all(e["text"] for e in with_examples[0]["examples"])

        status, alerts, _ = await call(s, "GET", url(app, "/api/alerts"))
        assert status == 200 and alerts["alerts"] and alerts["alerts"][0]["sink"] == "console"
        _, none, _ = await call(s, "GET", url(app, "/api/alerts"), params={"status": "dead"})
        assert none["alerts"] == []

        _, page1, _ = await call(s, "GET", url(app, "/api/posts"), params={"rule": rule, "limit": 3})
        assert len(page1["posts"]) == 3 and page1["next_offset"] == 3
        assert all(rule in p["rules"] for p in page1["posts"])
        params = {"rule": rule, "limit": 3, "offset": 3}
        _, page2, _ = await call(s, "GET", url(app, "/api/posts"), params=params)
        assert {p["uid"] for p in page1["posts"]}.isdisjoint(p["uid"] for p in page2["posts"])
        word = page1["posts"][0]["text"].split()[0]
        _, found, _ = await call(s, "GET", url(app, "/api/posts"), params={"q": word.upper(), "limit": 20})
        assert found["posts"] and all(word.lower() in p["text"].lower() for p in found["posts"])
        _, nothing, _ = await call(s, "GET", url(app, "/api/posts"), params={"q": "no-such-text-%_"})
        assert nothing == {"posts": [], "next_offset": None}

        status, rules, _ = await call(s, "GET", url(app, "/api/rules"))
        names = [r["name"] for r in rules["rules"]]
        assert status == 200 and names == [r.name for r in app.config.rules]
        assert sum(r["matched"] for r in rules["rules"]) == app.processor.matched  # type: ignore[union-attr]

        status, problem, _ = await call(s, "GET", url(app, "/api/posts"), params={"limit": "many"})
        assert status == 400 and "limit" in problem["error"]
        status, problem, _ = await call(s, "GET", url(app, "/api/signals"), params={"since": "yesterday"})
        assert status == 400 and "since" in problem["error"]


async def test_silences_create_list_expire(tmp_path: Path) -> None:
    async with running(config(tmp_path)) as app, aiohttp.ClientSession() as s:
        status, created, _ = await call(
            s,
            "POST",
            url(app, "/api/silences"),
            json={"matchers": {"rule": "brand-*"}, "duration": "30m", "comment": "launch"},
        )
        assert status == 201, created
        silence = created["silence"]
        assert silence["matchers"] == {"rule": "brand-*"} and silence["comment"] == "launch"
        _, listed, _ = await call(s, "GET", url(app, "/api/silences"))
        assert [x["id"] for x in listed["silences"]] == [silence["id"]]
        status, _, _ = await call(s, "DELETE", url(app, f"/api/silences/{silence['id']}"))
        assert status == 200
        _, listed, _ = await call(s, "GET", url(app, "/api/silences"))
        assert listed["silences"] == []
        _, everything, _ = await call(s, "GET", url(app, "/api/silences"), params={"include_expired": "1"})
        assert [x["state"] for x in everything["silences"]] == ["expired"]
        status, _, _ = await call(s, "DELETE", url(app, f"/api/silences/{silence['id']}"))
        assert status == 404
        bad_bodies: list[Any] = [{"matchers": {}}, {"matchers": {"rule": 1}}]
        bad_bodies.append({"matchers": {"a": "b"}, "duration": "soon"})
        for bad in [*bad_bodies, [1]]:
            status, problem, _ = await call(s, "POST", url(app, "/api/silences"), json=bad)
            assert status == 400, (bad, problem)
        status, _, _ = await call(s, "GET", url(app, "/api/dead-letters"))
        assert status == 200
        status, routing, _ = await call(s, "GET", url(app, "/api/status"))
        assert status == 200 and "backlog" in routing


async def test_token_protects_api_ws_and_dashboard_but_not_healthz(tmp_path: Path) -> None:
    async with running(config(tmp_path, token=TOKEN)) as app, aiohttp.ClientSession() as s:
        for path in ("/api/rules", "/health", "/metrics", "/ws", "/"):
            status, _, _ = await call(s, "GET", url(app, path))
            assert status == 401, path
        status, _, _ = await call(s, "GET", url(app, "/healthz"))
        assert status == 200
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        status, _, _ = await call(s, "GET", url(app, "/api/rules"), headers=bearer)
        assert status == 200
        status, _, _ = await call(s, "GET", url(app, "/api/rules"), headers={"Authorization": "Bearer nope"})
        assert status == 401
        async with s.ws_connect(url(app, f"/ws?token={TOKEN}")) as ws:
            hello = await ws.receive_json(timeout=10)
            assert hello["type"] == "hello"
        # Opening the dashboard with ?token= leaves a cookie: the page's own requests need nothing else.
        # (unsafe: aiohttp keeps cookies of IP-address hosts only when told to, browsers always do)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            status, page, response = await call(browser, "GET", url(app, f"/?token={TOKEN}"))
            assert status == 200 and "harvester" in page.lower()
            assert "httponly" in str(response.cookies).lower()
            status, _, _ = await call(browser, "GET", url(app, "/api/rules"))
            assert status == 200


async def test_metrics_and_healthz_openness_follow_the_config(tmp_path: Path) -> None:
    cfg = config(tmp_path, token=TOKEN, open_metrics=True, open_healthz=False)
    async with running(cfg) as app, aiohttp.ClientSession() as s:
        assert (await call(s, "GET", url(app, "/metrics")))[0] == 200
        assert (await call(s, "GET", url(app, "/healthz")))[0] == 401


async def test_without_a_token_only_loopback_host_names_are_served(tmp_path: Path) -> None:
    async with running(config(tmp_path)) as app, aiohttp.ClientSession() as s:
        status, _, _ = await call(s, "GET", url(app, "/api/rules"), headers={"Host": "evil.example:80"})
        assert status == 403  # a DNS name rebound to 127.0.0.1 by another site's page
        status, _, _ = await call(s, "GET", url(app, "/api/rules"), headers={"Host": "localhost"})
        assert status == 200
