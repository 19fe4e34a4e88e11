"""Progress of long commands: plain timestamped lines where stdout is not a terminal, a live view where it is.

A log file or a pipe gets one line per event, flushed at once, so ``tail -f`` and log collectors see progress while
the command runs::

    2026-12-01T10:00:00+0000 rung-start trial=3 rung=1 kind=promote target_flops=1.2e+12
    2026-12-01T10:00:41+0000 rung-done trial=3 rung=1 val_loss=0.2113 alignment=0.153 train_flops=1.2e+12 wall_s=41
    2026-12-01T10:01:00+0000 budget spent=4.1e+12 reserved=1.2e+12 budget=2e+13 used=26.5% running=1 complete=2

A terminal gets a rich live view (budget bar, trial counts, the latest events, and an optional extra renderable such
as a Pareto table) instead. ``make_reporter`` chooses. Usage in a command::

    with make_reporter(extra=lambda: pareto_table()) as rep:
        rep.rung_started(trial, rung, kind, target_flops)
        ...                                   # long work; call rep.tick(state) from its per-step callback
        rep.rung_finished(trial, rung, record)
        rep.tick(state, force=True)           # state: a () -> BudgetState callable, called only when a line is due
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

INTERVAL_S = 60.0  # a budget line at most this often (plain) or a refresh of the bar (live)
RECORD_KEYS = ("val_loss", "tifa", "alignment", "alignment_se", "train_flops", "steps", "wall_s")


@dataclass(frozen=True)
class BudgetState:
    """The FLOPs account at one moment and, optionally, trial counts by status (``{"running": 2, ...}``)."""

    spent: float
    reserved: float
    budget: float
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def used(self) -> float:
        return (self.spent + self.reserved) / self.budget if self.budget else 0.0


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    text = " ".join(str(v).split())  # one line, whatever the value held
    return repr(text) if (" " in text or "=" in text or not text) else text


def format_line(event: str, fields: dict[str, Any], when: float) -> str:
    """``<ISO 8601 local time> <event> key=value ...``: one line, whatever the values hold (None fields left out)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(when))
    parts = [stamp, event, *(f"{k}={_value(v)}" for k, v in fields.items() if v is not None)]
    return " ".join(" ".join(parts).splitlines())


class Reporter:
    """Receives a command's events; subclasses decide how to show them. Use as a context manager."""

    def __init__(self, interval_s: float = INTERVAL_S, clock: Callable[[], float] = time.time) -> None:
        self.interval_s, self.clock = interval_s, clock
        self._last_budget: float | None = None

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:  # noqa: B027 (optional hook)
        pass

    def event(self, name: str, **fields: Any) -> None:
        raise NotImplementedError

    # -- the search's events -------------------------------------------------------------------------------------
    def rung_started(self, trial: int, rung: int, kind: str, target_flops: float | None = None) -> None:
        self.event("rung-start", trial=trial, rung=rung, kind=kind, target_flops=target_flops)

    def rung_finished(self, trial: int, rung: int, record: dict[str, Any]) -> None:
        self.event("rung-done", trial=trial, rung=rung, **{k: record.get(k) for k in RECORD_KEYS})

    def trial_ended(self, trial: int, status: str, **fields: Any) -> None:
        self.event("trial", trial=trial, status=status, **fields)

    def message(self, text: str) -> None:
        self.event("note", text=text)

    def tick(self, state: Callable[[], BudgetState], *, force: bool = False) -> bool:
        """Show the budget if ``interval_s`` passed since it was last shown (or ``force``); ``state`` is called only
        then. Returns whether it was shown."""
        now = self.clock()
        if not force and self._last_budget is not None and now - self._last_budget < self.interval_s:
            return False
        self._last_budget = now
        self.show_budget(state())
        return True

    def show_budget(self, s: BudgetState) -> None:
        self.event("budget", spent=s.spent, reserved=s.reserved, budget=s.budget, used=f"{s.used:.1%}", **s.counts)


class PlainReporter(Reporter):
    """One flushed line per event on ``stream``: for log files, pipes and CI."""

    def __init__(self, stream: TextIO, interval_s: float = INTERVAL_S, clock: Callable[[], float] = time.time) -> None:
        super().__init__(interval_s, clock)
        self.stream = stream

    def event(self, name: str, **fields: Any) -> None:
        self.stream.write(format_line(name, fields, self.clock()) + "\n")
        self.stream.flush()


class LiveReporter(Reporter):
    """A rich live view on a terminal: budget bar, trial counts, the latest events and ``extra()`` below them."""

    def __init__(
        self,
        stream: TextIO,
        extra: Callable[[], Any] | None = None,
        interval_s: float = 2.0,
        clock: Callable[[], float] = time.time,
        keep: int = 6,
    ) -> None:
        from rich.console import Console
        from rich.live import Live
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        super().__init__(interval_s, clock)
        self.console = Console(file=stream, force_terminal=True)
        self.extra = extra
        columns = (TextColumn("[bold]budget"), BarColumn(), TextColumn("{task.fields[text]}"), TimeElapsedColumn())
        self.bar = Progress(*columns, console=self.console)
        self.task = self.bar.add_task("budget", total=1.0, text="")
        self.counts = ""
        self.events: deque[str] = deque(maxlen=keep)
        self.live = Live(self._view(), console=self.console, refresh_per_second=2, transient=False)
        self.live.start()

    def _view(self) -> Any:
        from rich.console import Group
        from rich.text import Text

        parts: list[Any] = [self.bar, Text(self.counts, style="dim")]
        parts += [Text(line, overflow="ellipsis", no_wrap=True) for line in self.events]
        if self.extra is not None:
            parts.append(self.extra())
        return Group(*parts)

    def event(self, name: str, **fields: Any) -> None:
        now = self.clock()
        rest = format_line(name, fields, now).split(" ", 1)[1]
        self.events.append(f"{time.strftime('%H:%M:%S', time.localtime(now))} {rest}")
        self.live.update(self._view())

    def show_budget(self, s: BudgetState) -> None:
        text = f"{s.spent:.3g} spent, {s.reserved:.3g} reserved of {s.budget:.3g} FLOPs"
        self.bar.update(self.task, total=s.budget or 1.0, completed=s.spent + s.reserved, text=text)
        self.counts = ", ".join(f"{k} {v}" for k, v in s.counts.items())
        self.live.update(self._view())

    def close(self) -> None:
        self.live.update(self._view())
        self.live.stop()


def make_reporter(
    stream: TextIO | None = None,
    *,
    extra: Callable[[], Any] | None = None,
    interval_s: float = INTERVAL_S,
    plain: bool | None = None,
) -> Reporter:
    """A ``LiveReporter`` if ``stream`` (default stdout) is a terminal, else a ``PlainReporter``; ``plain`` forces
    the choice (e.g. ``--json`` runs print their summary on stdout and their progress as lines on stderr)."""
    stream = stream if stream is not None else sys.stdout
    if plain is None:
        plain = not (hasattr(stream, "isatty") and stream.isatty())
    if plain:
        return PlainReporter(stream, interval_s)
    return LiveReporter(stream, extra)
