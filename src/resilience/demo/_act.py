"""What every act is: phases against a service, live counters from events, a report."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import events
from ._servers import FlakyService

__all__ = ["Act", "Phase", "Report", "Run"]


@dataclass(frozen=True)
class Phase:
    """What the service does for a while, and when the phase has shown what it should."""

    name: str
    title: str
    service: str  # what the service does, as shown ("up", "down", "primary stopped", ...)
    min_seconds: float
    max_seconds: float
    done: Callable[[], bool] = lambda: False
    enter: Callable[[], None] | None = None


@dataclass
class Report:
    """What an act showed: one sentence, its figures, and the checks it had to pass."""

    what: str
    figures: str
    checks: list[tuple[str, bool]]

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(passed for _, passed in self.checks)


@dataclass
class Run:
    """What the acts of one run share.

    `collector` is a `MetricsCollector` attached for the whole run (the metrics act scrapes
    it); `played` holds the acts played so far, by name, so a later act can check its figures
    against theirs (one number per fact).
    """

    collector: Any = None
    played: dict[str, Act] = field(default_factory=dict)


class Act:
    """A client protected by the library, the phases it runs through, and what happened.

    Subclasses build their primitives in `__init__`, make one call in `step()`, read their
    live counters from events in `on_event()`, and judge the run in `report()`.
    """

    name = ""  # the CLI's name: `resilience demo NAME`
    label = ""  # short name, for the summary
    title = ""
    columns: tuple[tuple[str, str], ...] = ()  # (header, tally key) shown live

    def __init__(self, service: FlakyService, fast: bool) -> None:
        self.service = service
        self.scale = 0.3 if fast else 1.0
        self.interval = 0.01 if fast else 0.025
        self.setup = ""
        self.phases: list[Phase] = []
        self.tallies: dict[str, Counter[str]] = {}
        self.current: Phase | None = None
        self.started = 0.0
        self.say: Callable[[str], None] = lambda text: None
        self.run = Run()  # the run it is part of (set before its phases start)
        self.tick: Callable[[], None] = lambda: None

    @property
    def phase(self) -> str:
        return self.current.name if self.current else ""

    @property
    def tally(self) -> Counter[str]:
        return self.tallies[self.phase]

    def total(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for tally in self.tallies.values():
            total.update(tally)
        return total

    def mode(self, mode: str) -> Callable[[], None]:
        def enter() -> None:
            self.service.mode = mode

        return enter

    def step(self) -> None:
        raise NotImplementedError

    def state(self) -> tuple[str, str]:
        """The protected client's state in a few words, and a rich style for it."""
        return "", ""

    def detail(self) -> str:
        return ""

    def on_event(self, event: events.Event) -> None:
        pass

    def report(self) -> Report:
        raise NotImplementedError

    def close(self) -> None:
        pass
