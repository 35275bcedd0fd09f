"""Backoff: every kind's bounds, growth and jitter spread, on a seeded random source."""

from __future__ import annotations

import random
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

import resilience as rs
from resilience.retry import Backoff


def test_constant_waits_exactly_the_delay() -> None:
    b = Backoff.constant(0.25)
    assert [b.delay(n) for n in range(1, 8)] == [0.25] * 7
    assert b.jitter is None


def test_linear_grows_by_step_and_stops_at_maximum() -> None:
    b = Backoff.linear(initial=0.5, step=0.25, maximum=1.2)
    assert [b.delay(n) for n in range(1, 6)] == [0.5, 0.75, 1.0, 1.2, 1.2]


def test_exponential_without_jitter_starts_at_initial_and_doubles() -> None:
    b = Backoff.exponential(initial=0.1, multiplier=2, maximum=1.0, jitter=None)
    assert [b.delay(n) for n in range(1, 7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_exponential_defaults_to_full_jitter() -> None:
    assert Backoff.exponential().jitter == "full"
    assert Backoff.linear().jitter is None


def test_huge_attempt_numbers_do_not_overflow() -> None:
    b = Backoff.exponential(initial=1, multiplier=10, maximum=30, jitter=None)
    assert b.delay(10_000) == 30.0


def test_full_jitter_spreads_over_zero_to_base() -> None:
    b = Backoff.exponential(initial=1.0, multiplier=2, maximum=100, jitter="full", seed=7)
    samples = [b.delay(3) for _ in range(2000)]  # base 4.0
    assert min(samples) >= 0.0
    assert max(samples) <= 4.0
    assert min(samples) < 0.2
    assert max(samples) > 3.8
    assert statistics.mean(samples) == pytest.approx(2.0, abs=0.15)


def test_equal_jitter_keeps_half_and_spreads_the_rest() -> None:
    b = Backoff.exponential(initial=1.0, multiplier=2, maximum=100, jitter="equal", seed=3)
    samples = [b.delay(2) for _ in range(2000)]  # base 2.0
    assert min(samples) >= 1.0
    assert max(samples) <= 2.0
    assert statistics.mean(samples) == pytest.approx(1.5, abs=0.08)


def test_decorrelated_grows_from_previous_within_bounds() -> None:
    b = Backoff.decorrelated(initial=0.1, maximum=5.0, random=random.Random(1))
    previous = None
    waits = []
    for attempt in range(1, 40):
        previous = b.delay(attempt, previous)
        waits.append(previous)
        assert 0.1 <= previous <= 5.0
    assert max(waits) > 2.0  # it climbs towards the cap
    # the AWS formula: the next wait is within [initial, 3 * previous]
    b2 = Backoff.decorrelated(initial=0.1, maximum=100.0, seed=5)
    for _ in range(500):
        assert 0.1 <= b2.delay(4, previous=0.4) <= 1.2


def test_seed_makes_jitter_reproducible() -> None:
    a = Backoff.exponential(seed=42)
    b = Backoff.exponential(seed=42)
    assert [a.delay(n) for n in range(1, 10)] == [b.delay(n) for n in range(1, 10)]


@given(
    kind=st.sampled_from(["linear", "exponential"]),
    initial=st.floats(0, 10),
    extra=st.floats(0, 100),
    attempt=st.integers(1, 10_000),
    jitter=st.sampled_from(["full", "equal", None]),
)
def test_every_delay_is_within_zero_and_maximum(
    kind: str, initial: float, extra: float, attempt: int, jitter: rs.retry.Jitter
) -> None:
    maximum = initial + extra
    b = Backoff(kind, initial=initial, maximum=maximum, step=1.0, jitter=jitter, seed=1)
    assert 0.0 <= b.delay(attempt) <= maximum


@pytest.mark.parametrize(
    ("factory", "argument"),
    [
        (lambda: Backoff.constant(-1), "delay"),
        (lambda: Backoff.exponential(initial=-0.1), "initial"),
        (lambda: Backoff.exponential(initial=2, maximum=1), "maximum"),
        (lambda: Backoff.exponential(multiplier=0.5), "multiplier"),
        (lambda: Backoff.linear(step=-1), "step"),
        (lambda: Backoff.exponential(jitter="half"), "jitter"),  # type: ignore[arg-type]
        (lambda: Backoff.decorrelated(initial=0), "initial"),
        (lambda: Backoff.exponential(maximum=float("inf")), "maximum"),
    ],
)
def test_bad_arguments_name_the_argument(factory: object, argument: str) -> None:
    with pytest.raises(rs.ConfigError) as info:
        factory()  # type: ignore[operator]
    assert argument in [loc for loc, _ in info.value.errors]


def test_from_dict_round_trips_and_refuses_unknown_keys() -> None:
    for b in (
        Backoff.constant(1.5),
        Backoff.linear(0.1, 0.2, 3.0),
        Backoff.exponential(0.5, 3.0, 20.0, jitter="equal"),
        Backoff.decorrelated(0.2, 9.0),
    ):
        assert Backoff.from_dict(b.to_dict()) == b
    with pytest.raises(rs.ConfigError) as info:
        Backoff.from_dict({"kind": "constant", "delay": 1, "step": 2})
    assert info.value.errors[0][0] == "step"
    with pytest.raises(rs.ConfigError):
        Backoff.from_dict({"kind": "fibonacci"})


def test_validate_is_the_config_layers_entry_point() -> None:
    assert Backoff.validate(kind="exponential", initial=0.5, maximum=20.0) == []
    errors = Backoff.validate(kind="linear", initial=-1, step=-1, maximum=-2)
    assert {loc for loc, _ in errors} == {"initial", "step", "maximum"}


@given(
    initial=st.floats(0.001, 10),
    extra=st.floats(0, 100),
    previous=st.one_of(st.none(), st.floats(0, 1000)),
    seed=st.integers(0, 2**32),
)
def test_decorrelated_delays_stay_within_initial_and_maximum(
    initial: float, extra: float, previous: float | None, seed: int
) -> None:
    b = Backoff.decorrelated(initial=initial, maximum=initial + extra, seed=seed)
    delay = b.delay(5, previous)
    assert initial <= delay <= initial + extra
