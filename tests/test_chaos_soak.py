"""The soak runner (`resilience.chaos.soak`, `resilience soak`): a faulty workload for a while,
then leak detection that a leaking workload cannot pass."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import resilience as rs
from resilience.chaos import SoakReport, soak

ROOT = Path(__file__).resolve().parent.parent


def test_a_clean_workload_passes_and_meets_faults() -> None:
    report = soak(duration=0.3, workers=2, error_rate=0.3, seed=1)
    assert isinstance(report, SoakReport)
    assert report.ok, report.summary()
    assert report.leaks == ()
    assert report.calls > 50
    assert report.calls == report.successes + report.failures + report.rejections
    assert report.faults > 0  # the injector fired; retries absorbed most of it
    assert report.successes > report.failures
    assert report.threads[0] == report.threads[1]
    assert "no leaks" in report.summary()


def test_memory_that_keeps_growing_is_a_leak() -> None:
    kept: list[bytes] = []

    def leaky(i: int) -> None:
        kept.append(bytes(10_000))

    # by count, not time: 160 calls after the warm-up whatever the machine's load
    report = soak(leaky, calls=200, workers=2, error_rate=0.0, memory_limit=200_000)
    assert not report.ok
    assert any("memory" in leak for leak in report.leaks)
    assert report.calls == report.successes == len(kept) == 200
    # what the calls after the warm-up kept, and no more than that plus some slack
    assert 160 * 10_000 <= report.memory_growth < 160 * 10_000 + 200_000


def test_a_timed_soak_measures_after_the_warm_up_even_when_the_baseline_overruns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The baseline's collection overrunning the whole nominal duration (a busy machine, a big
    heap) must not leave the leak check no time to see anything: the run after the baseline
    still lasts four fifths of the duration (it used to stop at once: no leak reported)."""
    import gc

    collect, collections = gc.collect, [0]
    pause = threading.Event()  # never set: its wait() is a sleep

    def slow_collect(*args: int) -> int:
        collections[0] += 1
        if collections[0] == 2:  # the one before the baseline
            pause.wait(0.3)
        return collect(*args)

    kept: list[bytes] = []

    def leaky(i: int) -> None:
        kept.append(bytes(10_000))
        pause.wait(0.001)  # at most ~1,000 calls a second: bounded memory

    monkeypatch.setattr(gc, "collect", slow_collect)
    report = soak(leaky, duration=0.2, workers=1, error_rate=0.0, memory_limit=50_000)
    assert collections[0] >= 2
    assert report.duration >= 0.3 + 0.2 * 4 / 5
    assert not report.ok, report.summary()
    assert any("memory" in leak for leak in report.leaks)


def test_a_slow_collection_after_the_warm_up_does_not_hide_a_leak(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # In a big, busy process (a test suite on 2 loaded cores) the collection before the
    # baseline can take longer than the whole run: the measured part must still get its time.
    import gc
    import time

    collect = gc.collect
    calls = [0]

    def slow_collect(*args: int) -> int:
        if sys._getframe(1).f_globals.get("__name__") == "resilience.chaos":
            calls[0] += 1
        if calls[0] == 2:  # soak's second: it ends the warm-up (the first is before the run)
            calls[0] += 1
            time.sleep(0.5)  # longer than the run's duration
        return collect(*args)

    kept: list[bytes] = []
    monkeypatch.setattr(gc, "collect", slow_collect)
    report = soak(lambda i: kept.append(bytes(10_000)), duration=0.3, workers=2, error_rate=0.0)
    assert not report.ok, report.summary()
    assert any("memory" in leak for leak in report.leaks)


def test_threads_left_running_are_a_leak() -> None:
    release = threading.Event()
    started: list[threading.Thread] = []

    def spawns(i: int) -> None:
        if len(started) < 3:
            t = threading.Thread(target=release.wait, daemon=True)
            started.append(t)
            t.start()

    try:
        report = soak(spawns, duration=0.2, workers=1, error_rate=0.0)
    finally:
        release.set()
        for t in started:
            t.join()
    assert not report.ok
    assert any("thread" in leak for leak in report.leaks)


def test_file_descriptors_left_open_are_a_leak(tmp_path: Path) -> None:
    if not os.path.isdir("/proc/self/fd") and not os.path.isdir("/dev/fd"):
        pytest.skip("no way to count open file descriptors here")
    opened: list[int] = []

    def opens(i: int) -> None:
        if len(opened) < 3:
            opened.append(os.open(tmp_path / f"f{len(opened)}", os.O_CREAT | os.O_RDONLY))

    try:
        report = soak(opens, duration=0.2, workers=1, error_rate=0.0)
    finally:
        for fd in opened:
            os.close(fd)
    assert any("file descriptor" in leak for leak in report.leaks)


def test_bad_arguments_are_listed_together() -> None:
    with pytest.raises(rs.ConfigError) as info:
        soak(duration=0, calls=4, workers=0, error_rate=2.0)
    assert {loc for loc, _ in info.value.errors} == {"duration", "calls", "workers", "error_rate"}


def test_too_many_workers_are_refused_before_any_thread_starts() -> None:
    before = threading.active_count()
    with pytest.raises(rs.ConfigError) as info:
        soak(duration=1e9, workers=100_000)
    assert [loc for loc, _ in info.value.errors] == ["workers"]
    assert "<= 256" in str(info.value)
    assert threading.active_count() == before


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "resilience", "soak", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_soak_command() -> None:
    ok = _cli("--duration", "0.3", "--workers", "2")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "no leaks" in ok.stdout
    bad = _cli("--duration", "0")
    assert bad.returncode == 2
    assert "duration" in bad.stderr
