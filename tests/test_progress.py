"""Progress reporting: plain timestamped lines off a terminal (flushed as they happen), a live view on one."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time

from unetnas.cli.progress import BudgetState, LiveReporter, PlainReporter, format_line, make_reporter

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}"


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_one_per_event_with_timestamps():
    out, clock = io.StringIO(), Clock()
    with PlainReporter(out, interval_s=60, clock=clock) as rep:
        rep.rung_started(3, 1, "promote", 1.2e12)
        rep.rung_finished(3, 1, {"val_loss": 0.21134, "alignment": None, "tifa": 0.3, "train_flops": 1.2e12, "x": 1})
        rep.trial_ended(3, "pruned", reason="dominated at rung 1")
        rep.message("budget exhausted:\nstopping")
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and all(re.match(STAMP + " ", line) for line in lines)
    assert lines[0].endswith("rung-start trial=3 rung=1 kind=promote target_flops=1.2e+12")
    assert lines[1].endswith("rung-done trial=3 rung=1 val_loss=0.2113 tifa=0.3 train_flops=1.2e+12")  # None left out
    assert lines[2].endswith("trial trial=3 status=pruned reason='dominated at rung 1'")
    assert lines[3].endswith("note text='budget exhausted: stopping'")  # never broken across lines


def test_budget_line_is_periodic_and_state_read_only_when_due():
    out, clock, calls = io.StringIO(), Clock(), []

    def state() -> BudgetState:
        calls.append(clock.t)
        return BudgetState(4e12, 1e12, 2e13, {"running": 1, "complete": 2})

    rep = PlainReporter(out, interval_s=60, clock=clock)
    assert rep.tick(state)  # first call: shown
    clock.t += 30
    assert not rep.tick(state)  # too soon: state() not even called
    clock.t += 31
    assert rep.tick(state)
    assert rep.tick(state, force=True)
    assert len(calls) == 3
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].endswith("budget spent=4e+12 reserved=1e+12 budget=2e+13 used=25.0% running=1 complete=2")


def test_make_reporter_chooses_by_terminal():
    assert isinstance(make_reporter(io.StringIO()), PlainReporter)
    term = Terminal()
    rep = make_reporter(term, extra=lambda: "pareto table here")
    try:
        assert isinstance(rep, LiveReporter)
        rep.rung_started(0, 0, "new")
        rep.tick(lambda: BudgetState(1e12, 0.0, 4e12, {"running": 1}), force=True)
    finally:
        rep.close()
    shown = term.getvalue()
    assert "budget" in shown and "rung-start trial=0" in shown and "pareto table here" in shown
    assert isinstance(make_reporter(term, plain=True), PlainReporter)  # forced, e.g. with --json


def test_lines_reach_a_redirected_file_while_the_process_runs(tmp_path):
    log = tmp_path / "progress.log"
    code = (
        "import sys, time\n"
        "from unetnas.cli.progress import make_reporter\n"
        "rep = make_reporter()\n"
        "rep.rung_started(0, 0, 'new')\n"
        "time.sleep(60)\n"
    )
    with log.open("w") as f:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=f, stderr=subprocess.STDOUT)
    try:
        for _ in range(200):
            if "rung-start" in log.read_text():
                break
            time.sleep(0.1)
        assert proc.poll() is None  # still running
        assert re.match(STAMP + " rung-start trial=0 rung=0 kind=new$", log.read_text().strip())
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_format_line_quotes_values_with_spaces_or_equals():
    line = format_line("x", {"a": "p q", "b": "k=v", "c": "", "d": None, "e": 2}, 0.0)
    assert line.split(" ", 1)[1] == "x a='p q' b='k=v' c='' e=2"
