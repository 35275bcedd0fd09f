"""How the demo shows itself: plain text lines, or a rich live table on a terminal."""

from __future__ import annotations

from typing import TextIO

from ._act import Act

__all__ = ["Plain", "Rich", "wants_rich"]


class Plain:
    """Plain text lines: one per phase and per notable event, a status line every ~second."""

    def __init__(self, out: TextIO, fast: bool) -> None:
        self.out = out
        self.every = 0.5 if fast else 1.0
        self._last = 0.0

    def __enter__(self) -> Plain:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def line(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def update(self, act: Act, now: float, force: bool = False) -> None:
        if force or now - self._last >= self.every:
            self._last = now
            self.line("    " + status(act))


class Rich:
    """A rich Live table, refreshed as calls happen; event lines print above it."""

    def __init__(self, out: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=out)
        self.live = Live(console=self.console, refresh_per_second=12, transient=False)
        self._last = 0.0

    def __enter__(self) -> Rich:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def line(self, text: str) -> None:
        self.live.console.print(text, markup=False, highlight=False)

    def update(self, act: Act, now: float, force: bool = False) -> None:
        if not force and now - self._last < 0.05:
            return
        self._last = now
        from rich.table import Table
        from rich.text import Text

        text, style = act.state()
        table = Table(title=act.title, title_justify="left")
        table.add_column("phase")
        table.add_column("service")
        table.add_column("state")
        for header, _ in act.columns:
            table.add_column(header, justify="right")
        for phase in act.phases:
            tally = act.tallies.get(phase.name)
            if tally is None:
                continue
            current = phase is act.current
            table.add_row(
                phase.name,
                Text(phase.service, style="bold" if current else ""),
                Text(text, style=style) if current else "",
                *(str(tally[key]) for _, key in act.columns),
            )
        table.caption = act.detail()
        self.live.update(table)


def status(act: Act) -> str:
    tally = act.tally
    text, _ = act.state()
    service = act.current.service if act.current else ""
    counts = " ".join(f"{header} {tally[key]:>3}" for header, key in act.columns)
    detail = act.detail()
    return f"service {service:<17} | {text:<24} | {counts}" + (f" | {detail}" if detail else "")


def wants_rich(plain: bool, out: TextIO) -> bool:
    if plain or not out.isatty():
        return False
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True
