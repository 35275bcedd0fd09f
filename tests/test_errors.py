"""The error hierarchy and what the errors say."""

from __future__ import annotations

import concurrent.futures
import copy
import math

import pytest

import resilience as rs
from resilience import _errors
from resilience._validate import Errors, raise_if

ALL_ERRORS = [getattr(_errors, name) for name in _errors.__all__]


def test_every_error_is_exported_from_the_package() -> None:
    for cls in ALL_ERRORS:
        assert getattr(rs, cls.__name__) is cls
        assert cls.__name__ in rs.__all__


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda c: c.__name__)
def test_every_class_is_a_resilience_error(cls: type[BaseException]) -> None:
    assert issubclass(cls, rs.ResilienceError)
    assert issubclass(cls, Exception)
    assert cls.__doc__


def test_builtin_bases_keep_existing_except_clauses_working() -> None:
    assert issubclass(rs.TimeoutExceeded, TimeoutError)
    assert issubclass(rs.ConfigError, ValueError)
    assert issubclass(rs.QueueFull, rs.QueueError)
    with pytest.raises(TimeoutError):
        raise rs.TimeoutExceeded(2.0, operation="llm")
    with pytest.raises(ValueError):
        raise rs.ConfigError([("x", "bad")])


def test_resilience_error_carries_the_operation() -> None:
    e = rs.ResilienceError("boom", operation="payments")
    assert (str(e), e.operation) == ("boom", "payments")
    assert rs.ResilienceError().operation is None


def test_config_error_lists_every_error_with_its_location() -> None:
    e = rs.ConfigError(
        [("breaker.minimum_calls", "must be >= 1, got 0"), ("retry.deadline", "must be > 0")],
        operation="payments",
    )
    assert e.errors == [
        ("breaker.minimum_calls", "must be >= 1, got 0"),
        ("retry.deadline", "must be > 0"),
    ]
    assert str(e) == (
        "2 invalid settings for 'payments':\n"
        "  breaker.minimum_calls: must be >= 1, got 0\n"
        "  retry.deadline: must be > 0"
    )
    assert e.operation == "payments"
    one = rs.ConfigError([("x", "bad")])
    assert str(one) == "1 invalid setting:\n  x: bad"
    text = rs.ConfigError("the whole file is not TOML")
    assert text.errors == [("", "the whole file is not TOML")]
    assert str(text) == "1 invalid setting:\n  the whole file is not TOML"


def test_validate_errors_and_raise_if_report_everything_at_once() -> None:
    errors = Errors()
    errors.positive("open_duration", -1)
    errors.positive("timeout", math.inf)
    errors.non_negative("delay", -0.5)
    errors.fraction("failure_rate_threshold", 1.5)
    errors.integer("minimum_calls", 2.0, minimum=1)
    errors.integer("half_open_calls", 0, minimum=1)
    errors.at_least("open_duration_max", 1.0, "open_duration", 30.0)
    errors.one_of("jitter", "half", ["full", None])
    errors.positive("rate", True)  # bool is not a number here
    errors.positive("rate", math.nan)
    errors.positive("ok", 1)  # no error
    raise_if([], "payments")  # nothing to raise
    with pytest.raises(rs.ConfigError) as info:
        raise_if(errors, "payments")
    locations = [loc for loc, _ in info.value.errors]
    assert locations == [
        "open_duration",
        "timeout",
        "delay",
        "failure_rate_threshold",
        "minimum_calls",
        "half_open_calls",
        "open_duration_max",
        "jitter",
        "rate",
        "rate",
    ]
    text = str(info.value)
    assert text.startswith("10 invalid settings for 'payments':")
    assert "open_duration: must be > 0 and finite, got -1" in text
    assert "jitter: must be one of 'full', None; got 'half'" in text
    assert "open_duration_max: must be >= open_duration (30.0), got 1.0" in text


def test_circuit_open_error_message_and_fields() -> None:
    e = rs.CircuitOpenError("payments", 12.5, "open", "6 of 10 calls failed")
    assert str(e) == "circuit 'payments' is open after 6 of 10 calls failed; next trial in 12.5 s"
    assert (e.name, e.remaining, e.state, e.operation) == ("payments", 12.5, "open", "payments")
    assert str(rs.CircuitOpenError("p", 3.0)) == "circuit 'p' is open; next trial in 3.0 s"
    assert "forced open" in str(rs.CircuitOpenError("p", math.inf, "forced_open"))
    assert "reset()" in str(rs.CircuitOpenError("p", math.inf, "forced_open"))
    assert "half-open" in str(rs.CircuitOpenError("p", 0.0, "half_open"))


def test_hot_path_rejections_are_fresh_and_have_no_dict_growth() -> None:
    a = rs.CircuitOpenError("p", 1.0)
    b = rs.CircuitOpenError("p", 1.0)
    assert a is not b
    assert a.__traceback__ is None
    for _ in range(3):
        try:
            raise rs.CircuitOpenError("p", 1.0)
        except rs.CircuitOpenError as e:
            tb = e.__traceback__
            assert tb is not None
            assert tb.tb_next is None  # one frame: nothing accumulates across raises


def test_other_messages_name_the_operation_and_the_reason() -> None:
    assert str(rs.TimeoutExceeded(2.0, operation="llm")) == "'llm' did not finish within 2 s"
    assert str(rs.TimeoutExceeded(0.5)) == "the call did not finish within 0.5 s"
    assert rs.TimeoutExceeded(0.5).timeout == 0.5
    full = rs.BulkheadFull(10, 5, operation="db")
    assert str(full) == (
        "bulkhead 'db' is full: 10 calls running and 5 waiting; shed load or raise max_concurrent"
    )
    assert (full.max_concurrent, full.max_waiting, full.operation) == (10, 5, "db")
    limited = rs.RateLimited(0.25, operation="api")
    assert str(limited) == "rate limit reached for 'api'; next token in 0.250 s"
    assert limited.retry_after == 0.25
    ex = rs.RetryExhausted(3, {"status": "pending"}, operation="poll")
    assert (
        str(ex)
        == "'poll' still returned a retryable result after 3 attempts: {'status': 'pending'}"
    )
    assert (ex.attempts, ex.last_result) == (3, {"status": "pending"})
    assert "after 1 attempt:" in str(rs.RetryExhausted(1, None))
    fb = rs.AllFallbacksFailed([ConnectionError("down"), KeyError("k")], operation="quotes")
    assert str(fb) == (
        "fallback chain 'quotes': all 2 steps failed (ConnectionError: down; KeyError: 'k')"
    )
    tiers = rs.AllTiersFailed(
        {"dc1": ConnectionError("x"), "dc2": TimeoutError()}, operation="ldap"
    )
    assert str(tiers).startswith(
        "failover 'ldap': every tier failed (dc1: ConnectionError: x; dc2:"
    )
    assert list(tiers.errors) == ["dc1", "dc2"]
    assert "nothing was stored" in str(rs.QueueFull(100))
    assert rs.QueueFull(100).max_items == 100


def test_a_long_last_result_is_truncated_in_the_message() -> None:
    ex = rs.RetryExhausted(2, "x" * 10_000)
    assert len(str(ex)) < 400


SAMPLES = [
    rs.ResilienceError("boom", operation="op"),
    rs.ConfigError([("a", "must be > 0"), ("b", "bad")], operation="payments"),
    rs.CircuitOpenError("p", 2.0, "open", "6 of 10 calls failed"),
    rs.RetryExhausted(3, {"status": "pending"}, operation="poll"),
    rs.TimeoutExceeded(2.0, operation="llm"),
    rs.BulkheadFull(3, 4, operation="db"),
    rs.RateLimited(1.5, operation="api"),
    rs.AllFallbacksFailed([ConnectionError("down")], operation="quotes"),
    rs.AllTiersFailed({"dc1": ConnectionError("x")}, operation="ldap"),
    rs.QueueError("corrupt file"),
    rs.QueueFull(100),
    rs.CRDTError("tampered"),
]


@pytest.mark.parametrize("exc", SAMPLES, ids=lambda e: type(e).__name__)
def test_errors_copy_with_their_fields(exc: rs.ResilienceError) -> None:
    # copy and deepcopy go through __reduce__, as sending an exception to another process
    # does: the default re-calls __init__ with the formatted message and breaks or garbles.
    for clone in (copy.copy(exc), copy.deepcopy(exc)):
        assert type(clone) is type(exc)
        assert str(clone) == str(exc)
        assert clone.operation == exc.operation
        for name in ("errors", "timeout", "attempts", "last_result", "max_items", "retry_after",
                     "name", "remaining", "state", "max_concurrent", "max_waiting"):  # fmt: skip
            if hasattr(exc, name):
                assert repr(getattr(clone, name)) == repr(getattr(exc, name)), name


def _raise_timeout() -> None:
    raise rs.TimeoutExceeded(2.5, operation="llm")


def test_an_error_raised_in_a_worker_process_arrives_intact() -> None:
    with concurrent.futures.ProcessPoolExecutor(1) as pool:
        future = pool.submit(_raise_timeout)
        with pytest.raises(rs.TimeoutExceeded) as info:
            future.result(timeout=30)
    assert info.value.timeout == 2.5
    assert info.value.operation == "llm"
    assert str(info.value) == "'llm' did not finish within 2.5 s"
    assert isinstance(info.value, TimeoutError)
