"""Retry(on=...) stamina-style, the note on a PERMANENT error, and bare-decorator misuse."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

import resilience as rs
from resilience.testing import VirtualClock


class PaymentGatewayError(Exception):
    """A user's own exception type: the default classifier does not know it (PERMANENT)."""


class Flaky:
    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


@pytest.mark.parametrize("engine", ["tenacity", "native"])
@pytest.mark.parametrize(
    "on",
    [
        PaymentGatewayError,
        (KeyError, PaymentGatewayError),
        lambda exc: isinstance(exc, PaymentGatewayError) and "busy" in str(exc),
    ],
    ids=["type", "tuple", "predicate"],
)
def test_on_names_errors_to_retry(on: Any, engine: str) -> None:
    clock = VirtualClock()
    rt = rs.Retry(max_attempts=3, on=on, clock=clock, engine=engine)  # type: ignore[arg-type]
    fn = Flaky(PaymentGatewayError("busy"), PaymentGatewayError("busy"))
    assert rt.call(fn) == "ok"
    assert fn.calls == 3
    assert len(clock.sleeps) == 2


def test_on_leaves_everything_else_to_the_classifier() -> None:
    rt = rs.Retry(max_attempts=3, on=PaymentGatewayError, backoff=rs.Backoff.constant(0))
    fn = Flaky(ConnectionError("transient anyway"), ValueError("permanent"))
    with pytest.raises(ValueError):
        rt.call(fn)
    assert fn.calls == 2  # ConnectionError retried by the classifier, ValueError not


def test_on_keeps_a_rate_limited_verdict_and_its_retry_after() -> None:
    class Busy(Exception):
        status_code = 429
        headers = {"Retry-After": "7"}

    clock = VirtualClock()
    rt = rs.Retry(max_attempts=2, on=Busy, clock=clock, backoff=rs.Backoff.constant(1))
    assert rt.call(Flaky(Busy())) == "ok"
    assert clock.sleeps == [7.0]


def test_a_predicate_that_says_no_leaves_the_error_permanent() -> None:
    rt = rs.Retry(max_attempts=3, on=lambda exc: False, backoff=rs.Backoff.constant(0))
    fn = Flaky(PaymentGatewayError("declined"))
    with pytest.raises(PaymentGatewayError):
        rt.call(fn)
    assert fn.calls == 1


def test_bad_on_is_a_config_error() -> None:
    for bad in (int, (KeyError, "x"), "ConnectionError", 3):
        with pytest.raises(rs.ConfigError) as info:
            rs.Retry(on=bad)  # type: ignore[arg-type]
        assert info.value.errors[0][0] == "on"


@pytest.mark.parametrize("engine", ["tenacity", "native"])
def test_an_unknown_exception_type_says_why_it_was_not_retried(engine: str) -> None:
    # the biggest surprise for tenacity and stamina users: one attempt, and now a reason
    rt = rs.Retry(max_attempts=3, name="payments", engine=engine)  # type: ignore[arg-type]
    error = PaymentGatewayError("gateway timeout")
    fn = Flaky(error)
    with pytest.raises(PaymentGatewayError) as info:
        rt.call(fn)
    assert info.value is error
    assert fn.calls == 1
    (note,) = error.__notes__
    assert "'payments'" in note
    assert "PaymentGatewayError is PERMANENT" in note
    assert "unknown exception type: pass on= or a Classifier" in note


def test_a_known_permanent_error_says_which_rule_decided() -> None:
    class NotFound(Exception):
        status_code = 404

    error = NotFound()
    with pytest.raises(NotFound):
        rs.Retry(max_attempts=3).call(Flaky(error))
    assert "HTTP 404" in error.__notes__[0]


@pytest.mark.anyio
async def test_the_note_is_added_once_through_nested_retries() -> None:
    inner = rs.Retry(max_attempts=2)
    outer = rs.Retry(max_attempts=2)
    error = PaymentGatewayError("no")

    async def pay() -> None:
        raise error

    with pytest.raises(PaymentGatewayError):
        await outer.acall(inner.acall, pay)
    assert len(error.__notes__) == 1


def test_the_note_shows_in_an_uncaught_traceback() -> None:
    code = (
        "import resilience as rs\n"
        "class PaymentGatewayError(Exception): pass\n"
        "@rs.Retry(max_attempts=3)\n"
        "def pay():\n"
        "    raise PaymentGatewayError('declined')\n"
        "pay()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 1
    assert "unknown exception type: pass on= or a Classifier" in out.stderr


def test_bare_retry_decorator_shows_the_right_spelling() -> None:
    with pytest.raises(TypeError) as info:

        @rs.Retry  # type: ignore[arg-type]
        def pay() -> None: ...

    assert "@rs.Retry()" in str(info.value)
    assert "pay" in str(info.value)


def test_bare_breaker_decorator_shows_the_right_spelling() -> None:
    with pytest.raises(TypeError) as info:

        @rs.CircuitBreaker  # type: ignore[arg-type]
        async def pay() -> None: ...

    assert '@rs.CircuitBreaker("name"' in str(info.value)


def test_a_policy_class_in_a_pipeline_is_refused_at_once() -> None:
    with pytest.raises(rs.ConfigError) as info:
        rs.Pipeline(rs.Retry, rs.CircuitBreaker("x"))  # type: ignore[arg-type]
    ((loc, message),) = info.value.errors
    assert loc == "policies[0]"
    assert "rs.Retry(...)" in message
    assert "class" in message
    with pytest.raises(rs.ConfigError):
        rs.Pipeline(rs.Bulkhead(2), object())  # type: ignore[arg-type]
