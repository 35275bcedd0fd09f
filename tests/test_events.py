"""The event stream: subscribe/unsubscribe, delivery, broken listeners, frozen events."""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from resilience import events
from resilience.events import CallCompleted, CallRejected, Event, StateTransition


@pytest.fixture(autouse=True)
def _no_leftover_listeners() -> Iterator[None]:
    assert not events.enabled, "a listener leaked in from another test"
    yield
    assert not events.enabled, "this test leaked a listener"


@pytest.fixture
def unraisable(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What reached sys.unraisablehook (instead of pytest's hook, which fails the test)."""
    seen: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    return seen


def test_subscribe_delivers_and_unsubscribe_stops() -> None:
    seen: list[Event] = []
    stop = events.subscribe(seen.append)
    assert events.enabled
    first = CallRejected("payments", "circuit_open", 3.0)
    events.emit(first)
    stop()
    assert not events.enabled
    events.emit(CallRejected("payments", "circuit_open", 1.0))
    assert seen == [first]
    assert seen[0] is first  # the object itself, not a copy


def test_multiple_listeners_in_subscription_order() -> None:
    order: list[str] = []
    stops = [events.subscribe(lambda e, n=n: order.append(n)) for n in "abc"]
    events.emit(Event("x"))
    assert order == ["a", "b", "c"]
    stops[1]()
    events.emit(Event("x"))
    assert order == ["a", "b", "c", "a", "c"]
    assert events.enabled
    stops[0]()
    stops[2]()
    assert not events.enabled


def test_unsubscribe_is_idempotent_and_removes_only_its_own_subscription() -> None:
    seen: list[Event] = []
    first = events.subscribe(seen.append)
    second = events.subscribe(seen.append)  # the same callback, subscribed twice
    first()
    first()  # a second call must not remove `second`
    events.emit(Event("x"))
    assert len(seen) == 1
    second()
    assert not events.enabled


def test_a_raising_listener_does_not_break_emit_and_is_reported(unraisable: list[Any]) -> None:
    seen: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    stops = [events.subscribe(broken), events.subscribe(seen.append)]
    try:
        event = StateTransition("payments", "closed", "open", "6 of 10 calls failed")
        events.emit(event)  # does not raise
    finally:
        for stop in stops:
            stop()
    assert seen == [event]  # the next listener still ran
    assert len(unraisable) == 1
    report = unraisable[0]
    assert report.exc_type is RuntimeError
    assert str(report.exc_value) == "listener bug"
    assert report.exc_traceback is not None
    assert "listener" in report.err_msg
    assert report.object is event


def test_the_default_unraisable_hook_accepts_the_report(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The report object must be something the interpreter's own hook can print.
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)
    stop = events.subscribe(lambda e: 1 / 0)
    try:
        events.emit(Event("payments"))
    finally:
        stop()
    err = capsys.readouterr().err
    assert "ZeroDivisionError" in err
    assert "resilience event listener" in err


def test_enabled_toggles_with_subscriptions() -> None:
    assert events.enabled is False
    stop_a = events.subscribe(lambda e: None)
    stop_b = events.subscribe(lambda e: None)
    assert events.enabled is True
    stop_a()
    assert events.enabled is True
    stop_b()
    assert events.enabled is False


def test_emit_with_no_listener_is_a_no_op() -> None:
    events.emit(Event("nobody listens"))


def test_a_listener_may_unsubscribe_itself_while_being_called() -> None:
    seen: list[Event] = []
    stop: list[Any] = []

    def once(event: Event) -> None:
        seen.append(event)
        stop[0]()

    stop.append(events.subscribe(once))
    events.emit(Event("a"))
    events.emit(Event("b"))
    assert [e.operation for e in seen] == ["a"]


def test_concurrent_subscribe_and_unsubscribe_lose_nothing(fast_switching: None) -> None:
    counts = [0] * 8

    def work(i: int) -> None:
        for _ in range(200):
            stop = events.subscribe(lambda e: None)
            counts[i] += 1
            stop()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    keeper = events.subscribe(lambda e: None)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert events.enabled
    assert len(events._listeners) == 1
    keeper()


ALL_EVENT_TYPES = [
    getattr(events, name)
    for name in events.__all__
    if isinstance(getattr(events, name), type) and issubclass(getattr(events, name), Event)
]


def test_every_event_type_is_listed() -> None:
    names = {cls.__name__ for cls in ALL_EVENT_TYPES}
    expected = {
        "Event", "CallCompleted", "CallRejected", "StateTransition", "RetryAttempted",
        "RetryGaveUp", "TimeoutOccurred", "BulkheadEvent", "FallbackServed", "FailoverSwitched",
        "TierRecovered", "QueueEnqueued", "QueueDelivered", "QueueDeadLettered", "QueueDepth",
        "FaultInjected", "ConfigChanged",
    }  # fmt: skip
    assert expected <= names  # more may be added; none may go
    defined = {
        name
        for name, value in vars(events).items()
        if isinstance(value, type) and issubclass(value, Event)
    }
    assert defined <= set(events.__all__), "an event type is missing from events.__all__"


@pytest.mark.parametrize("cls", ALL_EVENT_TYPES, ids=lambda c: c.__name__)
def test_events_are_frozen_slotted_dataclasses(cls: type[Event]) -> None:
    assert dataclasses.is_dataclass(cls)
    assert "__slots__" in cls.__dict__
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.default is not dataclasses.MISSING:
            continue
        values[field.name] = {"str": "x", "int": 1, "float": 1.0, "bool": True}.get(
            str(field.type), {"a": 1}
        )
    event = cls(**values)
    assert not hasattr(event, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.operation = "other"  # type: ignore[misc]
    assert event == cls(**values)
    assert event.operation == "x"


def test_event_fields() -> None:
    done = CallCompleted("db", "success", 0.012)
    assert (done.outcome, done.duration, done.slow) == ("success", 0.012, False)
    assert CallRejected("db", "bulkhead_full").retry_after is None
    t = StateTransition("db", "open", "half_open")
    assert (t.from_state, t.to_state, t.reason) == ("open", "half_open", "")
    assert (
        repr(t)
        == "StateTransition(operation='db', from_state='open', to_state='half_open', reason='')"
    )


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads every few microseconds, so an unlocked read-modify-write would race."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


# --- field names: safe for every logging pipeline --------------------------------------------

RESERVED = {"level", "event", "timestamp", "logger", "msg", "exc_info", "stack_info"}


def _event_classes() -> list[type[Event]]:
    """Every event dataclass events.py defines, listed in __all__ or not."""
    return [
        value
        for value in vars(events).values()
        if isinstance(value, type) and issubclass(value, Event) and dataclasses.is_dataclass(value)
    ]


def test_no_event_field_collides_with_logging_reserved_names() -> None:
    import logging

    # everything a LogRecord owns: `extra=` with one of these raises KeyError in logging
    record = set(vars(logging.LogRecord("n", 10, "p", 1, "m", None, None))) | {"message", "asctime"}
    classes = _event_classes()
    assert len(classes) >= 17
    for cls in classes:
        names = {f.name for f in dataclasses.fields(cls)}
        assert not names & RESERVED, (cls.__name__, names & RESERVED)
        assert not names & record, (cls.__name__, names & record)


def test_fallback_served_says_degradation_and_level_is_a_deprecated_alias() -> None:
    served = events.FallbackServed("quotes", "CACHE_ONLY", "cache", 1)
    assert served.degradation == "CACHE_ONLY"
    assert "level" not in {f.name for f in dataclasses.fields(served)}
    with pytest.warns(DeprecationWarning, match="degradation"):
        assert served.level == "CACHE_ONLY"


def test_config_use_and_register_emit_config_changed() -> None:
    from resilience import config

    seen: list[Event] = []
    stop = events.subscribe(seen.append)
    previous = config.use(config.load(environ={"RESILIENCE_ENV": "testing"}))
    try:
        config.register("ev.search", {"timeout": 2.0})
    finally:
        config.use(previous)
        stop()
    changes = [e for e in seen if isinstance(e, events.ConfigChanged)]
    assert [(e.operation, e.environment) for e in changes[:2]] == [
        ("*", "testing"),
        ("ev.search", "testing"),
    ]
    assert len(changes) == 3  # and the restore


def test_per_call_is_set_only_by_listeners_that_want_every_call() -> None:
    assert events.per_call is False
    quiet = events.subscribe(lambda e: None, per_call=False)
    assert events.enabled is True
    assert events.per_call is False
    loud = events.subscribe(lambda e: None)
    assert events.per_call is True
    loud()
    assert events.per_call is False
    assert events.enabled is True
    quiet()
    assert (events.enabled, events.per_call) == (False, False)


def test_without_a_per_call_listener_a_plain_success_emits_nothing() -> None:
    import resilience as rs

    seen: list[Event] = []
    stop = events.subscribe(seen.append, per_call=False)
    try:
        br = rs.CircuitBreaker("ev.quiet", minimum_calls=2)
        bh = rs.Bulkhead(2, name="ev.quiet.bh")
        for _ in range(5):
            assert bh.call(br.call, int) == 0
        assert seen == []  # the lock-free happy path stayed lock-free
        failing = rs.CircuitBreaker("ev.quiet.2", minimum_calls=2)
        for _ in range(2):
            with pytest.raises(ConnectionError):
                failing.call(_raise_connection_error)
        assert any(isinstance(e, StateTransition) and e.to_state == "open" for e in seen)
    finally:
        stop()


def _raise_connection_error() -> None:
    raise ConnectionError("down")
