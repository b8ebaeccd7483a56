"""`vigil backtest`, `vigil capture` and `vigil replay`: what rules would have done over history,
history cut into a fixture file, history copied to a sandbox topic."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
from confluent_kafka import KafkaException

from app.backtest.capture import write_capture
from app.backtest.parallel import BacktestFailed
from app.backtest.progress import ProgressBar
from app.backtest.report import compare_rule_sets, render_compare, render_summary, report_lines, summarize, summary_json
from app.backtest.republish import RepublishRefused, parse_speed, republish
from app.backtest.run import BacktestRequest, BacktestResult, run_backtest
from app.backtest.source import SourceError
from app.backtest.times import TimeRange, TimeSpecError, parse_range
from app.cli import CliContext, pass_cli, print_json
from app.model.events import now_ms
from app.rules.loader import load_rules

__all__ = ["backtest_command", "capture_command", "replay_command"]

_TIME_HELP = "ISO-8601 (2024-05-03T10:15:00Z) or relative (-7d, 2h30m, now)"


def _quiet_logs() -> None:
    """Warnings on stderr as plain lines; the rules stage's notices are about live workers
    (unsigned actions, silences) and say nothing about a backtest."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("app.rules.stage").setLevel(logging.ERROR)


def time_range_option(from_text: str | None, to_text: str | None, *, default_from: str = "-1h") -> TimeRange:
    """The --from/--to range, or a one-line usage error."""
    try:
        return parse_range(from_text, to_text, now_ms=now_ms(), default_from=default_from)
    except TimeSpecError as exc:
        raise click.UsageError(str(exc)) from None


def _check_rules(directories: list[Path]) -> None:
    """Every rule file error (file:line) on stderr and exit 1, before anything is read."""
    total = 0
    for directory in directories:
        errors = load_rules(directory)[1]
        for error in errors:
            click.echo(str(error), err=True)
        total += len(errors)
    if total:
        raise click.ClickException(f"{total} error(s) in {', '.join(map(str, directories))}; "
                                   f"fix them and run again (vigil rules check)")


def _report_unreadable(result: BacktestResult) -> None:
    if not result.unreadable:
        return
    for item in result.unreadable_listed[:20]:
        click.echo(f"unreadable record skipped: {item}", err=True)
    if result.unreadable > 20:
        click.echo(f"... and {result.unreadable - 20} more", err=True)


@click.command("backtest")
@click.option("--rules", "rules_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="the rules to backtest (a rules directory)")
@click.option("--compare", "compare_dir", type=click.Path(file_okay=False, path_type=Path),
              help="a second rules directory: show where its firings differ from --rules'")
@click.option("--from", "from_text", metavar="TIME", help=f"start of the range (default -1h); {_TIME_HELP}")
@click.option("--to", "to_text", metavar="TIME", help="end of the range (default now; +DURATION: after --from)")
@click.option("--topic", default="events", show_default=True, help="the topic of events to replay")
@click.option("--subject", metavar="GLOB", help="only events whose subject matches")
@click.option("--report", "report_file", type=click.Path(dir_okay=False, path_type=Path),
              help="write every would-be action to this file (JSON lines)")
@click.option("--processes", type=click.IntRange(min=1), help="processes to use (default: one per core)")
@click.option("--json", "as_json", is_flag=True, help="a machine-readable summary on stdout")
@pass_cli
def backtest_command(cli: CliContext, rules_dir: Path, compare_dir: Path | None, from_text: str | None,
                     to_text: str | None, topic: str, subject: str | None, report_file: Path | None,
                     processes: int | None, as_json: bool) -> None:
    """What the rules in --rules would have done over a range of history (and, with --compare, what
    a second rule set would have done differently).

    Runs the worker's own pipeline (status, transitions, windows, absence) and rules stage over the
    range, in event time on a virtual clock, with fresh state: absence timers, absent_for, ttls,
    windows, registers, for:, counts, sequences and throttles all advance by event time. Nothing
    is executed and nothing is written to live topics."""
    _quiet_logs()
    time_range = time_range_option(from_text, to_text)
    directories = [rules_dir, *([compare_dir] if compare_dir else [])]
    _check_rules(directories)
    request = BacktestRequest(rules_dirs=tuple(directories), time_range=time_range, topic=topic, subject=subject,
                              processes=processes)
    bar = ProgressBar()
    try:
        result = run_backtest(cli.settings, request, progress=bar)
    except (SourceError, BacktestFailed) as exc:
        raise click.ClickException(str(exc)) from None
    except KafkaException as exc:
        raise click.ClickException(f"cannot read {topic}: {exc}") from None
    finally:
        bar.close()
    compare = compare_dir is not None
    if report_file is not None:
        with open(report_file, "w", encoding="utf-8") as out:
            for line in report_lines(result.actions, compare=compare):
                out.write(line + "\n")
    _report_unreadable(result)
    if as_json:
        print_json(_summary(result, compare))
    elif result.no_data:
        click.echo(f"no events in {cli.settings.topic(topic)} in {time_range.describe()}")
    else:
        click.echo(render_compare(compare_rule_sets(result.actions)) if compare
                   else render_summary(summarize(result.actions)))
        click.echo(_footer(result), err=True)


def _footer(result: BacktestResult) -> str:
    skipped = f", {result.unreadable:,} unreadable record(s) skipped" if result.unreadable else ""
    filtered = f" ({result.filtered:,} not matching --subject)" if result.filtered else ""
    return (f"{result.read:,} events{filtered} in {result.request.time_range.describe()}, "
            f"{result.counts.alerts:,} transition(s), {len(result.actions):,} would-be action(s); "
            f"{result.elapsed_s:.1f}s ({result.events_per_s:,.0f} events/s, {result.processes} process(es))"
            f"{skipped}")


def _summary(result: BacktestResult, compare: bool) -> dict[str, object]:
    request = result.request
    counts = result.counts
    return {"topic": request.topic, "from": request.time_range.from_ms, "to": request.time_range.to_ms,
            "subject": request.subject, "rules": [str(d) for d in request.rules_dirs], "events": result.read,
            "filtered": result.filtered, "replayed": counts.events, "transitions": counts.alerts,
            "windows_closed": counts.windows,
            "rejected": dict(counts.rejected), "agent_errors": dict(counts.agent_errors),
            "render_failures": {str(k): v for k, v in counts.render_failures.items()},
            "unreadable": result.unreadable, "unreadable_records": [
                {"topic": u.topic, "partition": u.partition, "offset": u.offset, "reason": u.reason}
                for u in result.unreadable_listed],
            "actions": len([a for a in result.actions if a.ruleset == 0]),
            **({"actions_b": len([a for a in result.actions if a.ruleset == 1])} if compare else {}),
            **summary_json(result.actions, 2 if compare else 1),
            "no_data": result.no_data, "elapsed_s": round(result.elapsed_s, 3),
            "events_per_s": round(result.events_per_s), "processes": result.processes}


@click.command("capture")
@click.option("--from", "from_text", metavar="TIME", help=f"start of the range (default -1h); {_TIME_HELP}")
@click.option("--to", "to_text", metavar="TIME", help="end of the range (default now; +DURATION: after --from)")
@click.option("--topic", default="events", show_default=True, help="the topic to capture")
@click.option("--subject", metavar="GLOB", help="only events whose subject matches")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="file (default: stdout)")
@pass_cli
def capture_command(cli: CliContext, from_text: str | None, to_text: str | None, topic: str, subject: str | None,
                    output: Path | None) -> None:
    """Cut a slice of history into a fixture file (JSON lines) for `vigil rules test`.

        vigil capture --from 2024-05-03T10:00Z --to +2h --subject 'db*' > incident.jsonl"""
    _quiet_logs()
    time_range = time_range_option(from_text, to_text)
    bar = ProgressBar(noun="records")
    out = open(output, "wb") if output is not None else sys.stdout.buffer  # noqa: SIM115 (closed below)
    try:
        counts = write_capture(cli.settings, cli.settings.topic(topic), time_range, out, subject=subject,
                               on_progress=bar.show)
    except SourceError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        bar.close()
        if output is not None:
            out.close()
        else:
            out.flush()
    for item in counts.listed[:20]:
        click.echo(f"unreadable record skipped: {item}", err=True)
    kept = counts.records - counts.unreadable - counts.filtered
    click.echo(f"captured {kept:,} record(s) of {cli.settings.topic(topic)} in {time_range.describe()}"
               + (f"; {counts.unreadable:,} unreadable record(s) skipped" if counts.unreadable else "")
               + ("" if kept else " (no data in the range)"), err=True)


@click.command("replay")
@click.option("--to-topic", "target", required=True, help="the sandbox topic to copy history to")
@click.option("--from", "from_text", metavar="TIME", help=f"start of the range (default -1h); {_TIME_HELP}")
@click.option("--to", "to_text", metavar="TIME", help="end of the range (default now; +DURATION: after --from)")
@click.option("--topic", default="events", show_default=True, help="the topic to copy from")
@click.option("--subject", metavar="GLOB", help="only events whose subject matches")
@click.option("--speed", default="max", show_default=True, help="max, or a pace like 1x, 10x (by the timestamps)")
@click.option("--create", is_flag=True, help="create --to-topic like the source if it does not exist")
@click.option("--force", is_flag=True, help="allow writing to the live events topic (or onto the source)")
@click.option("--json", "as_json", is_flag=True, help="a machine-readable summary on stdout")
@pass_cli
def replay_command(cli: CliContext, target: str, from_text: str | None, to_text: str | None, topic: str,
                   subject: str | None, speed: str, create: bool, force: bool, as_json: bool) -> None:
    """Copy history (or the part about --subject) to a sandbox topic, keeping keys, timestamps and
    headers, so a staging stack can be driven by real history. --to-topic is used as given (no
    topic prefix); the live events topic is refused unless --force."""
    _quiet_logs()
    time_range = time_range_option(from_text, to_text)
    try:
        pace = parse_speed(speed)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--speed") from None
    bar = ProgressBar(noun="records")
    source = cli.settings.topic(topic)
    try:
        counts = republish(cli.settings, source, target, time_range, subject=subject, speed=pace, force=force,
                           create=create, on_progress=bar.show)
    except (RepublishRefused, SourceError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        bar.close()
    for item in counts.read.listed[:20]:
        click.echo(f"unreadable record skipped: {item}", err=True)
    if as_json:
        print_json({"source": source, "target": target, "from": time_range.from_ms, "to": time_range.to_ms,
                    "copied": counts.copied, "read": counts.read.records, "filtered": counts.read.filtered,
                    "unreadable": counts.read.unreadable})
    else:
        click.echo(f"copied {counts.copied:,} record(s) from {source} to {target} ({time_range.describe()})"
                   + (f"; {counts.read.unreadable:,} unreadable record(s) skipped" if counts.read.unreadable else "")
                   + ("" if counts.copied else " (no data in the range)"))
