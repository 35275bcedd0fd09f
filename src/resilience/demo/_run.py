"""Running acts: phases, the live view, the summary and the exit status."""

from __future__ import annotations

import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TextIO

from .. import events
from ._act import Act, Report, Run
from ._servers import FlakyService
from ._view import Plain, Rich, wants_rich
from .breaker import BreakerAct
from .config import ConfigAct
from .crdt import CrdtAct
from .failover import FailoverAct
from .fallback import FallbackAct
from .metrics import MetricsAct
from .migrate import MigrateAct
from .queue import QueueAct
from .retry import RetryAct

__all__ = ["ACTS", "ACT_NAMES", "run_demo"]

ACTS: tuple[type[Act], ...] = (
    RetryAct,
    BreakerAct,
    FallbackAct,
    FailoverAct,
    QueueAct,
    CrdtAct,
    ConfigAct,
    MigrateAct,
    MetricsAct,
)
"""The acts, in the order they run. The metrics act comes last: it scrapes the whole run."""

ACT_NAMES: tuple[str, ...] = tuple(cls.name for cls in ACTS)


def _run_act(act: Act, view: Plain | Rich) -> None:
    act.started = time.monotonic()
    act.say = lambda text: view.line(f"  [{time.monotonic() - act.started:5.2f} s] {text}")
    act.tick = lambda: view.update(act, time.monotonic())
    unsubscribe = events.subscribe(act.on_event)
    try:
        for phase in act.phases:
            act.current = phase
            act.tallies[phase.name] = Counter()
            view.line(f"-- {phase.name}: {phase.title}")
            if phase.enter is not None:
                phase.enter()
            start = time.monotonic()
            while True:
                elapsed = time.monotonic() - start
                if elapsed >= phase.max_seconds or (elapsed >= phase.min_seconds and phase.done()):
                    break
                act.step()
                view.update(act, time.monotonic())
                time.sleep(act.interval)
            view.update(act, time.monotonic(), force=True)
    finally:
        unsubscribe()


def run_demo(
    fast: bool = False,
    plain: bool = False,
    *,
    out: TextIO | None = None,
    acts: Sequence[str] | None = None,
    act: str | None = None,
) -> int:
    """Run the demo; returns 0 when every act showed what it should, 1 otherwise.

    Args:
        fast: shorter phases (under 10 s in all instead of under 30 s), for tests.
        plain: plain text lines even on a terminal with rich installed.
        out: where the output goes (default: sys.stdout).
        acts: run only the acts with these names or labels (`ACT_NAMES`: "retry",
            "breaker", ..., or the summary's labels: "circuit breaker", "offline queue");
            default: all of them.
        act: run this one act (what `resilience demo ACT` passes).

    Raises:
        ValueError: an act name that does not exist.
    """
    stream = out if out is not None else sys.stdout
    wanted = None if acts is None and act is None else {*(acts or ()), *([act] if act else [])}
    chosen = [cls for cls in ACTS if wanted is None or {cls.name, cls.label} & wanted]
    unknown = (wanted or set()) - {n for cls in ACTS for n in (cls.name, cls.label)}
    if unknown:
        raise ValueError(f"no such act: {', '.join(sorted(unknown))}; acts: {', '.join(ACT_NAMES)}")
    try:
        return _run(chosen, fast, plain, stream)
    except KeyboardInterrupt:
        print("\ndemo interrupted", file=stream, flush=True)
        return 130


def _run(chosen: list[type[Act]], fast: bool, plain: bool, stream: TextIO) -> int:
    started = time.monotonic()
    rich = wants_rich(plain, stream)
    results: list[tuple[int, type[Act], Report]] = []

    def say(text: str = "") -> None:
        print(text, file=stream, flush=True)

    from prometheus_client import CollectorRegistry

    from ..metrics import MetricsCollector

    run = Run(collector=MetricsCollector(registry=CollectorRegistry()))
    with run.collector, FlakyService("quotes") as service:
        say(f"flaky service listening on {service.base}")
        for number, cls in enumerate(chosen, 1):
            say(f"== {number}/{len(chosen)} {cls.title}")
            report = _play(cls, service, fast, rich, stream, say, run)
            say(f"  => {'ok' if report.ok else 'FAILED'}: {report.what}")
            for line in textwrap.wrap(report.figures, 92):
                say(f"     {line}")
            results.append((number, cls, report))
    elapsed = time.monotonic() - started
    if rich:
        _summary_rich(results, elapsed, stream)
    else:
        for line in _summary_plain(results, elapsed):
            say(line)
    return 0 if results and all(report.ok for _, _, report in results) else 1


def _play(
    cls: type[Act],
    service: FlakyService,
    fast: bool,
    rich: bool,
    stream: TextIO,
    say: Callable[[str], None],
    run: Run | None = None,
) -> Report:
    """Build and run one act; an act that could not run reports it instead of stopping all."""
    service.mode = "up"
    try:
        act = cls(service, fast)
    except Exception as exc:
        return Report(f"could not start: {exc!r}", "", [("the act started", False)])
    if run is not None:
        act.run = run
    try:
        say(f"   {act.setup}")
        view: Plain | Rich = Rich(stream) if rich else Plain(stream, fast)
        with view:
            _run_act(act, view)
    except Exception as exc:
        return Report(f"stopped by an unexpected error: {exc!r}", "", [("the act ran", False)])
    finally:
        act.close()  # servers, files: also on Ctrl-C
    report = act.report()
    act.run.played[act.name] = act
    return report


def _summary_lines(results: list[tuple[int, type[Act], Report]], elapsed: float) -> str:
    acts_ok = sum(report.ok for _, _, report in results)
    checks = [passed for _, _, report in results for _, passed in report.checks]
    return (
        f"demo finished in {elapsed:.1f} s: {acts_ok} of {len(results)} acts showed what they "
        f"should ({sum(checks)} of {len(checks)} checks passed)"
    )


def _summary_plain(results: list[tuple[int, type[Act], Report]], elapsed: float) -> list[str]:
    lines = ["", "== Summary", f" {'#':<2} {'act':<16} {'result':<7} what happened / figures"]
    indent = " " * 29
    for number, cls, report in results:
        text = textwrap.wrap(report.what, 72) + textwrap.wrap(report.figures, 72)
        result = "ok" if report.ok else "FAILED"
        lines.append(f" {number:<2} {cls.label:<16} {result:<7} {text[0] if text else ''}")
        lines.extend(indent + line for line in text[1:])
    lines.append("")
    lines.append("checks:")
    for number, cls, report in results:
        for description, passed in report.checks:
            lines.append(f"  [{'ok' if passed else 'FAIL'}] {number} {cls.label}: {description}")
    lines.append(_summary_lines(results, elapsed))
    return lines


def _summary_rich(
    results: list[tuple[int, type[Act], Report]], elapsed: float, stream: TextIO
) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=stream)
    utf = console.encoding.lower().startswith("utf")
    marks = ("✓ ", "✗ ") if utf else ("ok ", "FAIL ")
    table = Table(title="Summary", title_justify="left", show_lines=True)
    for column in ("#", "act", "result", "what happened", "figures", "checks"):
        table.add_column(column)
    for number, cls, report in results:
        checks = Text()
        for i, (description, passed) in enumerate(report.checks):
            if i:
                checks.append("\n")
            checks.append(marks[0] if passed else marks[1], style="green" if passed else "bold red")
            checks.append(description)
        table.add_row(
            str(number),
            cls.label,
            Text("ok", style="green") if report.ok else Text("FAILED", style="bold red"),
            Text(report.what),
            Text(report.figures),
            checks,
        )
    console.print(table)
    console.print(_summary_lines(results, elapsed), markup=False, highlight=False)
