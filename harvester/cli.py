"""The `harvester` command line: run, check-config, replay, bench, dead-letters, version."""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harvester import __version__
from harvester.config.loader import LoadedConfig, load_config
from harvester.errors import ConfigError

if TYPE_CHECKING:
    from harvester.backtest import BacktestResult
    from harvester.evaluate import Evaluation
    from harvester.models import Signal
    from harvester.onsets import LabelledEvent

EX_CONFIG = 78  # sysexits.h: configuration error


def _config_or_exit(path: str | None) -> LoadedConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        raise SystemExit(EX_CONFIG) from None


def _summary(loaded: LoadedConfig) -> str:
    cfg = loaded.config
    sources = ", ".join(f"{s.instance_name} ({s.type})" for s in cfg.sources) or "none"
    sinks = ", ".join(f"{s.instance_name} ({s.type})" for s in cfg.alerts.sinks) or "none"
    rules = ", ".join(r.name for r in cfg.rules) or "none"
    return (
        f"config ok: {loaded.path}\n"
        f"  sources ({len(cfg.sources)}): {sources}\n"
        f"  rules ({len(cfg.rules)}): {rules}\n"
        f"  sinks ({len(cfg.alerts.sinks)}): {sinks}\n"
        f"  database: {cfg.db_path}"
    )


def cmd_check_config(args: argparse.Namespace) -> int:
    print(_summary(_config_or_exit(args.config)))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    loaded = _config_or_exit(args.config)
    from harvester.app import App
    from harvester.logging import configure_logging

    configure_logging(loaded.config.log.level, loaded.config.log.format, loaded.secrets)

    async def main() -> None:
        app = App(loaded)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, app.request_stop)
        # systemctl reload (ExecReload=kill -HUP): rules, routes and sinks, sources stay connected.
        loop.add_signal_handler(signal.SIGHUP, app.request_reload)
        await app.run()

    asyncio.run(main())
    return 0


def _parse_speed(text: str) -> float | None:
    if text in ("max", "inf"):
        return None
    try:
        speed = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive factor or 'max', got {text!r}") from None
    if speed <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive factor or 'max', got {text!r}")
    return speed


def _parse_duration(text: str) -> float:
    from harvester.config.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parse_sigmas(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of standard deviations, got {text!r}")
    return value


def cmd_replay(args: argparse.Namespace) -> int:
    if args.compare and args.onsets is None:
        print(
            "replay: --compare needs --onsets EVENTS (the events to compare the detectors on)",
            file=sys.stderr,
        )
        return 2  # a usage error, like argparse's
    loaded = _config_or_exit(args.config)
    from harvester.backtest import run_backtest
    from harvester.engine.peak_baseline import PeakBaseline
    from harvester.onsets import EventsFileError, read_events

    config = loaded.config.model_copy(
        update={"engine": loaded.config.engine.model_copy(update={"clock": "event"})}
    )

    def show(sig: Signal) -> None:
        if args.json:
            print(json.dumps(sig.to_json(), sort_keys=True), flush=True)
        else:
            print(
                f"{sig.at.isoformat()}  {sig.rule:<16} {sig.kind:<14} {sig.severity.value:<8} {sig.summary}",
                flush=True,
            )

    path = Path(args.file)
    if not path.is_file():
        print(f"replay: file not found: {path}", file=sys.stderr)
        return 66  # EX_NOINPUT
    events: list[LabelledEvent] | None = None
    if args.onsets is not None:
        if not Path(args.onsets).is_file():
            print(f"replay: events file not found: {args.onsets}", file=sys.stderr)
            return 66
        try:
            events = read_events(Path(args.onsets), default_window=args.event_window)
        except EventsFileError as exc:
            print(f"replay: {exc}", file=sys.stderr)
            return 65  # EX_DATAERR
    baseline = None
    if args.compare:
        baseline = PeakBaseline.for_rules(
            config.rules,
            config.engine.volume_spike,
            window=args.baseline_window,
            sigmas=args.baseline_sigma,
            cooldown=args.baseline_cooldown,
        )
    try:
        # With labelled events the evaluation replaces the list of signals.
        result = run_backtest(
            path, config, speed=args.speed, on_signal=None if events is not None else show, baseline=baseline
        )
    except ValueError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 65  # EX_DATAERR
    days = result.replayed_seconds / 86400
    print(
        f"replayed {result.posts} posts ({result.matched} matched, {result.duplicates} duplicates, "
        f"{result.malformed} malformed) over {days:.2f} days of event time: {len(result.signals)} signals"
        + (f" ({len(result.baseline_signals)} from the peak baseline)" if baseline is not None else ""),
        file=sys.stderr,
    )
    if events is not None:
        _print_evaluation(args, events, result)
    return 0


def _print_evaluation(
    args: argparse.Namespace, events: Sequence[LabelledEvent], result: BacktestResult
) -> None:
    from harvester.evaluate import evaluate, format_comparison, format_report

    def score(signals: list[Signal]) -> Evaluation:
        return evaluate(signals, events, replayed_seconds=result.replayed_seconds, early=args.early)

    ours = score(result.signals)
    theirs = score(result.baseline_signals) if args.compare else None
    if args.json:
        document = ours.as_json()
        document["early_s"] = args.early
        if theirs is not None:
            document["baseline"] = theirs.as_json() | {
                "detector": f"mean + {args.baseline_sigma:g} sigma peak (Huginn PeakDetectorAgent)",
                "window_s": args.baseline_window,
                "sigma": args.baseline_sigma,
            }
        print(json.dumps(document))
    elif theirs is not None:
        print(format_comparison(ours, theirs, f"mean+{args.baseline_sigma:g}sigma peak"))
    else:
        print(format_report(ours))


def cmd_bench(args: argparse.Namespace) -> int:
    from harvester.bench import run_bench

    figures = run_bench(
        posts=args.posts,
        seed=args.seed,
        sentiment_workers=args.sentiment_workers,
        rate=args.rate,
        engine_posts=args.engine_posts,
        rule_posts=args.rule_posts,
    )
    if args.json:
        print(json.dumps(figures.as_json()))
    else:
        print(figures.as_text())
    return 0


def cmd_dead_letters(args: argparse.Namespace) -> int:
    """List dead-lettered alerts, or put them back in the outbox (a running daemon picks them up
    within `alerts.poll_interval`)."""
    if args.action == "resend" and not (args.all or args.sink or args.key):
        print("dead-letters resend: say what to resend: --all, --sink NAME or --key KEY", file=sys.stderr)
        return 2
    loaded = _config_or_exit(args.config)
    from harvester.alerts.router import dead_letter_dict
    from harvester.errors import StoreError
    from harvester.store import Store

    async def main() -> int:
        store = await Store.open(loaded.config.db_path)
        try:
            if args.action == "list":
                entries = [dead_letter_dict(e) for e in await store.dead_letters(args.sink, args.limit)]
                if args.json:
                    print(json.dumps(entries))
                elif not entries:
                    print("no dead letters")
                else:
                    print(f"{len(entries)} dead letters (newest first):")
                    for e in entries:
                        print(
                            f"  {e['key']}  sink={e['sink']}  attempts={e['attempts']}  "
                            f"error={e['last_error']}"
                        )
                return 0
            import time

            count = await store.requeue_dead(time.time(), sink=args.sink, key=args.key)
            print(f"requeued {count} dead letter{'s' if count != 1 else ''}")
            return 0 if count else 1
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except StoreError as exc:
        print(f"dead-letters: {exc}", file=sys.stderr)
        return 74  # EX_IOERR


def cmd_version(args: argparse.Namespace) -> int:
    print(f"harvester {__version__} (Python {platform.python_version()})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harvester", description="Real-time social-media monitoring daemon: spikes, sentiment, alerts."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--config",
            "-c",
            metavar="FILE",
            help="config file (default: $HARVESTER_CONFIG, ./config/harvester.yaml, "
            "/etc/harvester/harvester.yaml)",
        )
        return p

    p = with_config(sub.add_parser("run", help="run the daemon until SIGTERM / Ctrl-C"))
    p.set_defaults(func=cmd_run)
    p = with_config(sub.add_parser("check-config", help="validate the config and rules, print a summary"))
    p.set_defaults(func=cmd_check_config)
    p = with_config(sub.add_parser("replay", help="backtest: run rules and detectors over a JSONL/CSV file"))
    p.add_argument("file", help="posts to replay (.jsonl or .csv; see the README for the fields)")
    p.add_argument(
        "--speed",
        type=_parse_speed,
        default=None,
        metavar="X",
        help="pace by event time: 1 = real time, 60 = a minute per second, 'max' (default) = no pacing",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print each signal as one JSON object per line (with --onsets: one object, the evaluation)",
    )
    p.add_argument(
        "--onsets",
        metavar="EVENTS",
        help="labelled events (CSV or JSONL: name, onset, optional rule and end): print the delay to the "
        "first signal of each event and the false alarms per day instead of every signal",
    )
    p.add_argument(
        "--event-window",
        type=_parse_duration,
        default=3600.0,
        metavar="DURATION",
        help="how long an event without an `end` lasts (default 1h)",
    )
    p.add_argument(
        "--early",
        type=_parse_duration,
        default=900.0,
        metavar="DURATION",
        help="a signal this long before a labelled onset still detects the event, with a negative delay "
        "(default 15m: labels are approximate)",
    )
    p.add_argument(
        "--compare",
        action="store_true",
        help="with --onsets: also run a mean + 3 sigma peak detector (Huginn's) on the same posts and "
        "show both evaluations side by side",
    )
    p.add_argument(
        "--baseline-window",
        type=_parse_duration,
        default=3600.0,
        metavar="DURATION",
        help="--compare: the peak detector's mean and sigma cover this much of past buckets (default 1h)",
    )
    p.add_argument(
        "--baseline-sigma",
        type=_parse_sigmas,
        default=3.0,
        metavar="K",
        help="--compare: alarm above mean + K sigma (default 3)",
    )
    p.add_argument(
        "--baseline-cooldown",
        type=_parse_duration,
        default=None,
        metavar="DURATION",
        help="--compare: quiet time after a peak alarm (default: each rule's volume_spike.cooldown)",
    )
    p.set_defaults(func=cmd_replay)
    p = sub.add_parser("bench", help="push synthetic posts through the real pipeline and print figures")
    p.add_argument("--posts", type=int, default=200_000, help="how many posts (default 200000)")
    p.add_argument("--seed", type=int, default=7, help="synthetic stream seed")
    p.add_argument(
        "--rate",
        type=float,
        default=None,
        metavar="R",
        help="pace the posts at R per second in real time instead of as fast as possible "
        "(measures latency when the daemon keeps up)",
    )
    p.add_argument(
        "--sentiment-workers",
        type=int,
        default=None,
        metavar="N",
        help="sentiment worker processes (default: auto, 1 with 2+ cores; 0 scores inline)",
    )
    p.add_argument(
        "--engine-posts",
        type=int,
        default=20_000,
        metavar="N",
        help="measure the engine alone with 1, 100 and 1,000 generated rules on N of the posts "
        "(default 20000; 0 skips it)",
    )
    p.add_argument(
        "--rule-posts",
        type=int,
        default=50_000,
        metavar="N",
        help="then run the daemon again with each of those rule sets, N posts each "
        "(default 50000; 0 skips it)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_bench)
    p = with_config(sub.add_parser("dead-letters", help="list or re-send alerts that could not be delivered"))
    p.add_argument("action", choices=["list", "resend"])
    p.add_argument("--sink", metavar="NAME", help="only this sink's dead letters")
    p.add_argument("--key", metavar="KEY", help="resend: only the alert with this idempotency key")
    p.add_argument("--all", action="store_true", help="resend: every dead letter")
    p.add_argument("--limit", type=int, default=100, metavar="N", help="list: at most N (default 100)")
    p.add_argument("--json", action="store_true", help="list: print a JSON array")
    p.set_defaults(func=cmd_dead_letters)
    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
