"""The classifier: every rule of DESIGN.md's "outcomes and classification", in order."""

from __future__ import annotations

import asyncio
import builtins
import math
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import resilience as rs
from resilience import (
    AllFallbacksFailed,
    AllTiersFailed,
    BulkheadFull,
    CircuitOpenError,
    ConfigError,
    QueueFull,
    RateLimited,
    ResilienceError,
    RetryExhausted,
    TimeoutExceeded,
)
from resilience.classify import DEFAULT_HTTP_STATUS, Classification, Classifier, Verdict
from resilience.classify import parse_retry_after as parse

T, P, R, S = Verdict.TRANSIENT, Verdict.PERMANENT, Verdict.RATE_LIMITED, Verdict.SUCCESS
NOW = 1767225600.0  # 2026-01-01T00:00:00Z
C = rs.DEFAULT_CLASSIFIER


def verdict(outcome: object, clf: Classifier = C) -> Verdict:
    return clf.classify(outcome).verdict


# --- duck-typed HTTP errors (what requests, aiohttp and friends raise) ---------------------


class Resp:
    """A response lookalike: `.status_code` and `.headers`."""

    def __init__(self, status_code: int, headers: Mapping[str, str] | None = None) -> None:
        self.status_code = status_code
        self.headers = dict(headers or {})


class RequestsHTTPError(OSError):
    """Shaped like requests.HTTPError: an IOError whose `.response` may be None."""

    def __init__(self, *args: object, response: Resp | None = None) -> None:
        super().__init__(*args)
        self.response = response


class AioResponseError(Exception):
    """Shaped like aiohttp.ClientResponseError: `.status` and `.headers` on the exception."""

    def __init__(self, status: int, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status}")
        self.status = status
        self.headers = headers


class StatusError(Exception):
    def __init__(self, status_code: object, headers: object = None) -> None:
        super().__init__(status_code)
        self.status_code = status_code
        self.headers = headers


# --- rule 1: the types you pass ---------------------------------------------------------


class Base(Exception):
    pass


class Child(Base):
    pass


def test_user_transient_and_permanent_types_and_their_subclasses() -> None:
    clf = Classifier(transient=(Base,), permanent=(KeyError,))
    assert verdict(Base(), clf) is T
    assert verdict(Child(), clf) is T  # subclasses match
    assert verdict(KeyError("k"), clf) is P
    assert verdict(Base(), C) is P  # unknown to the default classifier


def test_a_single_type_is_accepted_as_well_as_a_tuple() -> None:
    clf = Classifier(transient=Base, permanent=ValueError)
    assert verdict(Child(), clf) is T
    assert verdict(ValueError(), clf) is P


def test_permanent_is_checked_before_transient() -> None:
    clf = Classifier(transient=(Base,), permanent=(Child,))
    assert verdict(Child(), clf) is P
    assert verdict(Base(), clf) is T


def test_user_types_override_every_default_rule() -> None:
    clf = Classifier(permanent=(ConnectionError,), transient=(FileNotFoundError, StatusError))
    assert verdict(ConnectionResetError(), clf) is P
    assert verdict(FileNotFoundError(), clf) is T
    assert verdict(StatusError(404), clf) is T  # before the status rule
    assert verdict(ConnectionResetError()) is T  # the default is untouched


def test_bad_classifier_arguments_are_all_reported() -> None:
    with pytest.raises(ConfigError) as info:
        Classifier(
            transient=(KeyError, "nope"),  # type: ignore[arg-type]
            permanent=(3,),  # type: ignore[arg-type]
            http_status={404: "transient", 99: T, "x": T},  # type: ignore[dict-item]
            result=42,  # type: ignore[arg-type]
        )
    locations = [loc for loc, _ in info.value.errors]
    assert locations == [
        "transient",
        "permanent",
        "http_status[404]",
        "http_status[99]",
        "http_status['x']",
        "result",
    ]
    assert isinstance(info.value, ValueError)


# --- rule 2: the library's own errors ---------------------------------------------------


def test_circuit_open_and_rate_limited_are_rate_limited_with_the_wait() -> None:
    c = C.classify(CircuitOpenError("payments", 12.5, "open", "6 of 10 calls failed"))
    assert (c.verdict, c.retry_after) == (R, 12.5)
    c = C.classify(RateLimited(0.25, operation="api"))
    assert (c.verdict, c.retry_after) == (R, 0.25)
    # the wait is the instance's, not a cached one
    assert C.classify(RateLimited(3.0)).retry_after == 3.0
    assert C.classify(CircuitOpenError("p", 0.0, "half_open")).retry_after == 0.0


def test_an_infinite_wait_is_not_passed_on() -> None:
    # A forced-open breaker has no time left to wait for; a retry must not sleep(inf).
    c = C.classify(CircuitOpenError("payments", math.inf, "forced_open"))
    assert c.verdict is R
    assert c.retry_after is None
    assert C.classify(RateLimited(math.inf)).retry_after is None
    assert C.classify(RateLimited(math.nan)).retry_after is None


@pytest.mark.parametrize(
    "exc",
    [
        TimeoutExceeded(2.0, operation="llm"),
        BulkheadFull(10, 0, operation="db"),
        AllTiersFailed({"dc1": ConnectionError()}),
        AllFallbacksFailed([ConnectionError()]),
    ],
    ids=type,
)
def test_library_errors_that_are_transient(exc: BaseException) -> None:
    assert verdict(exc) is T


@pytest.mark.parametrize(
    "exc",
    [
        ConfigError([("x", "bad")]),
        RetryExhausted(3, None),
        QueueFull(10),
        ResilienceError("x"),
    ],
    ids=type,
)
def test_other_library_errors_are_permanent(exc: BaseException) -> None:
    assert verdict(exc) is P


def test_library_errors_win_over_their_builtin_bases() -> None:
    # ConfigError is a ValueError and TimeoutExceeded a TimeoutError: rule 2 decides first,
    # but a user's own types still come first of all.
    assert verdict(ConfigError("x"), Classifier(transient=(ValueError,))) is T
    assert verdict(TimeoutExceeded(1.0), Classifier(permanent=(TimeoutError,))) is P


# --- rule 3: HTTP status ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (408, T),
        (425, T),
        (429, R),
        (500, T),
        (502, T),
        (503, T),
        (504, T),
        (400, P),
        (401, P),
        (403, P),
        (404, P),
        (409, P),
        (422, P),
        (501, P),
        (505, P),
        (599, P),
    ],
)
def test_status_codes(status: int, expected: Verdict) -> None:
    assert verdict(StatusError(status)) is expected
    assert verdict(RequestsHTTPError(response=Resp(status))) is expected
    assert verdict(AioResponseError(status)) is expected
    assert C.verdict_for_status(status) is expected


def test_non_error_statuses_on_an_exception_are_permanent() -> None:
    # An exception that carries 200 or 302 still failed; it is not a success.
    assert verdict(StatusError(200)) is P
    assert verdict(StatusError(302)) is P
    assert C.verdict_for_status(204) is S


def test_a_status_that_is_not_an_int_is_ignored() -> None:
    assert verdict(StatusError("503")) is P  # falls through to "unknown"
    assert verdict(StatusError(True)) is P  # bool is not a status
    assert verdict(StatusError(503.0)) is P


def test_http_status_is_merged_over_the_defaults() -> None:
    clf = Classifier(http_status={404: T, 503: P, 418: R})
    assert verdict(StatusError(404), clf) is T
    assert verdict(StatusError(503), clf) is P
    assert verdict(StatusError(418), clf) is R
    assert verdict(StatusError(502), clf) is T  # defaults kept
    assert verdict(StatusError(429), clf) is R
    assert verdict(StatusError(404)) is P  # the default classifier is unchanged
    assert DEFAULT_HTTP_STATUS[503] is T


def test_retry_after_seconds_from_headers() -> None:
    c = C.classify(StatusError(429, {"Retry-After": "3"}))
    assert (c.verdict, c.retry_after, c.reason) == (R, 3.0, "HTTP 429")
    c = C.classify(StatusError(503, {"retry-after": "1.5"}))
    assert (c.verdict, c.retry_after) == (T, 1.5)
    assert C.classify(StatusError(429)).retry_after is None
    assert C.classify(StatusError(429, {"Retry-After": "soon"})).retry_after is None
    assert C.classify(StatusError(429, "not a mapping")).retry_after is None
    # a permanent status does not carry a wait
    assert C.classify(StatusError(404, {"Retry-After": "3"})).retry_after is None


def test_retry_after_http_date_from_response_headers() -> None:
    # measured from the real wall clock: about 10 000 s ahead
    future = format_datetime(datetime.fromtimestamp(time.time() + 10_000, UTC), usegmt=True)
    c = C.classify(RequestsHTTPError(response=Resp(503, {"Retry-After": future})))
    assert c.verdict is T
    assert c.retry_after is not None
    assert 9_000 < c.retry_after <= 10_000


def test_aiohttp_like_status_with_headers() -> None:
    c = C.classify(AioResponseError(429, {"Retry-After": "2"}))
    assert (c.verdict, c.retry_after) == (R, 2.0)


def test_requests_like_error_of_one_class_is_not_mis_cached() -> None:
    # The same class with .response None, 404, 503, None again: each judged on its own.
    clf = Classifier()
    for _ in range(3):
        assert clf.classify(RequestsHTTPError("no response")).verdict is T  # an OSError
        assert clf.classify(RequestsHTTPError(response=Resp(404))).verdict is P
        c = clf.classify(RequestsHTTPError(response=Resp(503, {"Retry-After": "4"})))
        assert (c.verdict, c.retry_after) == (T, 4.0)
        assert clf.classify(RequestsHTTPError(response=Resp(429))).verdict is R


def test_a_status_attribute_set_on_one_instance_is_seen_after_the_type_was_cached() -> None:
    class APIError(Exception):
        pass

    clf = Classifier()
    assert clf.classify(APIError()).verdict is P  # the type's verdict is now cached
    e = APIError()
    e.status_code = 503  # type: ignore[attr-defined]
    assert clf.classify(e).verdict is T
    e2 = APIError()
    e2.response = Resp(429, {"Retry-After": "7"})  # type: ignore[attr-defined]
    assert clf.classify(e2) == Classification(R, 7.0, "HTTP 429")
    assert clf.classify(APIError()).verdict is P


def _http_error(status: int, headers: dict[str, str] | None = None) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "https://api.example.com/v1/items")
    response = httpx.Response(status, headers=headers, request=request)
    return httpx.HTTPStatusError(f"{status}", request=request, response=response)


def test_real_httpx_status_errors() -> None:
    c = C.classify(_http_error(429, {"Retry-After": "3"}))
    assert (c.verdict, c.retry_after) == (R, 3.0)
    c = C.classify(_http_error(503, {"retry-after": "Thu, 01 Jan 1970 00:00:00 GMT"}))
    assert (c.verdict, c.retry_after) == (T, 0.0)  # a date in the past: no wait
    assert C.classify(_http_error(404)).verdict is P
    assert C.classify(_http_error(500)).verdict is T
    assert C.classify(_http_error(404)).verdict is P  # not cached across statuses


def test_real_httpx_responses_as_results() -> None:
    request = httpx.Request("GET", "https://api.example.com/")
    by_status = Classifier(results_by_status=True)
    ok = httpx.Response(200, request=request)
    busy = httpx.Response(429, headers={"Retry-After": "2"}, request=request)
    gone = httpx.Response(404, request=request)
    assert by_status.classify(ok).verdict is S
    assert by_status.classify(busy) == Classification(R, 2.0, "HTTP 429")
    assert by_status.classify(gone).verdict is P
    assert C.classify(busy) == Classification(R, 2.0, "HTTP 429")  # asked directly: by status
    assert C.classify_result(busy).verdict is S  # what policies see without results_by_status
    assert not C.inspects_results
    assert by_status.inspects_results


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.ConnectTimeout("slow"),
        httpx.PoolTimeout("full"),
        httpx.RemoteProtocolError("eof"),
        httpx.ReadError("reset"),
    ],
    ids=type,
)
def test_httpx_transport_errors_are_transient(exc: BaseException) -> None:
    assert verdict(exc) is T


def test_httpx_errors_that_will_not_heal_are_permanent() -> None:
    assert verdict(httpx.UnsupportedProtocol("ftp://")) is P
    assert verdict(httpx.LocalProtocolError("bad header")) is P


def test_classify_does_not_import_httpx() -> None:
    code = (
        "import sys, resilience as rs\n"
        "rs.DEFAULT_CLASSIFIER.classify(ConnectionError())\n"
        "rs.DEFAULT_CLASSIFIER.classify(KeyError())\n"
        "assert 'httpx' not in sys.modules, 'httpx imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- rule 4: OSError and friends ------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionError(),
        ConnectionResetError(),
        ConnectionRefusedError(),
        ConnectionAbortedError(),
        BrokenPipeError(),
        TimeoutError(),
        OSError(5, "I/O error"),
        InterruptedError(),
    ],
    ids=type,
)
def test_os_and_network_errors_are_transient(exc: BaseException) -> None:
    assert verdict(exc) is T


@pytest.mark.parametrize(
    "exc",
    [
        FileNotFoundError(),
        FileExistsError(),
        PermissionError(),
        IsADirectoryError(),
        NotADirectoryError(),
        OSError(2, "No such file"),  # OSError(ENOENT) constructs a FileNotFoundError
    ],
    ids=type,
)
def test_file_system_errors_are_permanent(exc: BaseException) -> None:
    assert verdict(exc) is P


def test_foreign_transport_errors_are_recognised_by_module_and_name() -> None:
    # A class from "redis.exceptions" named ConnectionError, without importing redis.
    cls = type("ConnectionError", (Exception,), {"__module__": "redis.exceptions"})
    assert verdict(cls()) is T
    sub = type("Sub", (cls,), {"__module__": "myapp"})
    assert verdict(sub()) is T
    other = type("ConnectionError", (Exception,), {"__module__": "myapp.errors"})
    assert verdict(other()) is P


def test_urllib3_and_http_client_transport_errors_are_transient() -> None:
    import http.client

    # urllib3's hierarchy (its errors are not OSErrors), rebuilt without importing it
    mod = {"__module__": "urllib3.exceptions"}
    base = type("HTTPError", (Exception,), mod)
    timeout = type("TimeoutError", (base,), mod)
    connect = type("ConnectTimeoutError", (timeout,), mod)
    new_conn = type("NewConnectionError", (connect,), mod)
    protocol = type("ProtocolError", (base,), mod)
    decode = type("DecodeError", (base,), mod)
    for cls in (timeout, connect, new_conn, protocol):
        assert verdict(cls()) is T, cls
    assert verdict(decode()) is P
    assert verdict(http.client.IncompleteRead(b"partial", 100)) is T
    assert verdict(http.client.RemoteDisconnected("closed")) is T  # a ConnectionResetError
    assert verdict(http.client.InvalidURL("x")) is P


# --- exception groups -------------------------------------------------------------------


def test_exception_groups_are_judged_by_their_leaves() -> None:
    transient = ExceptionGroup("x", [ConnectionError(), TimeoutError()])
    assert verdict(transient) is T
    mixed = ExceptionGroup("x", [ConnectionError(), ValueError()])
    assert verdict(mixed) is P
    limited = ExceptionGroup(
        "x",
        [
            ConnectionError(),
            StatusError(429, {"Retry-After": "2"}),
            ExceptionGroup("inner", [RateLimited(5.0), RateLimited(1.0)]),
        ],
    )
    c = C.classify(limited)
    assert (c.verdict, c.retry_after) == (R, 5.0)  # the longest wait of all leaves
    assert verdict(BaseExceptionGroup("x", [KeyboardInterrupt()])) is P
    # the same group type with other leaves is not answered from a cache
    assert verdict(ExceptionGroup("x", [ConnectionError()])) is T
    assert verdict(ExceptionGroup("x", [KeyError()])) is P
    # a user's types come first, for the group and for its leaves
    assert verdict(mixed, Classifier(transient=(ValueError,))) is T
    assert verdict(transient, Classifier(permanent=(ExceptionGroup,))) is P


@pytest.mark.anyio
async def test_a_real_task_group_failure_is_transient() -> None:
    import anyio

    async def call_backend() -> None:
        await anyio.sleep(0)
        raise ConnectionResetError("peer reset")

    with pytest.raises(BaseExceptionGroup) as info:
        async with anyio.create_task_group() as tg:
            tg.start_soon(call_backend)
            tg.start_soon(call_backend)
    assert verdict(info.value) is T


# --- rule 5 and results ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc", [ValueError(), KeyError(), RuntimeError(), ZeroDivisionError(), Base()], ids=type
)
def test_unknown_exceptions_are_permanent(exc: BaseException) -> None:
    c = C.classify(exc)
    assert c == Classification(P, None, c.reason)
    assert not c.retryable


def test_results_are_success_unless_a_rule_says_otherwise() -> None:
    assert C.classify(42) == Classification(S, None, "returned")
    assert C.classify(None).verdict is S
    # Asked directly, the classifier reads a returned response's status (DESIGN.md: "any
    # object with .status_code"); the policies look at results only when `inspects_results`.
    assert C.classify(Resp(503)).verdict is T
    assert C.classify(Resp(200)).verdict is S
    assert not C.inspects_results
    assert C.classify_result(Resp(503)).verdict is S


def test_result_callable() -> None:
    def judge(value: object) -> Verdict | None:
        if value == "busy":
            return R
        if value is None:
            return T
        return None

    clf = Classifier(result=judge)
    assert clf.inspects_results
    assert clf.classify("busy").verdict is R
    assert clf.classify(None).verdict is T
    assert clf.classify("fine").verdict is S
    assert clf.classify(ValueError()).verdict is P  # exceptions do not go to result=


def test_result_callable_sees_retry_after_of_the_value() -> None:
    clf = Classifier(result=lambda v: R if v.status_code == 429 else None)
    c = clf.classify(Resp(429, {"Retry-After": "5"}))
    assert (c.verdict, c.retry_after, c.reason) == (R, 5.0, "result")


def test_result_callable_errors_propagate() -> None:
    def judge(value: object) -> Verdict | None:
        raise LookupError("judge broke")

    with pytest.raises(LookupError, match="judge broke"):
        Classifier(result=judge).classify(1)


def test_results_by_status() -> None:
    clf = Classifier(results_by_status=True, http_status={404: T})
    assert clf.classify(Resp(200)).verdict is S
    assert clf.classify(Resp(304)).verdict is S
    assert clf.classify(Resp(404)).verdict is T
    assert clf.classify(Resp(400)).verdict is P
    assert clf.classify(Resp(503, {"Retry-After": "1"})).retry_after == 1.0
    assert clf.classify("no status here").verdict is S


def test_verdict_and_classification_basics() -> None:
    assert [v.retryable for v in (S, T, P, R)] == [False, True, False, True]
    c = Classification(R, 2.0, "HTTP 429")
    assert c.retryable
    with pytest.raises(AttributeError):
        c.verdict = T  # type: ignore[misc]
    assert not hasattr(c, "__dict__")
    assert "Classifier(" in repr(Classifier(transient=(KeyError,)))


def test_public_names_are_the_classify_module_objects() -> None:
    assert rs.Classifier is Classifier
    assert rs.Verdict is Verdict
    assert rs.parse_retry_after is parse
    assert rs.Classification is Classification


# --- parse_retry_after ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("7", 7.0),
        (" 120 ", 120.0),
        ("1.5", 1.5),
        (".5", 0.5),
        ("86400", 86400.0),
        (b"30", 30.0),
        ("Thu, 01 Jan 2026 00:00:30 GMT", 30.0),
        ("Thursday, 01-Jan-26 00:01:00 GMT", 60.0),  # RFC 850 form
        ("Wed, 31 Dec 2025 23:59:00 GMT", 0.0),  # in the past: no wait
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
    ],
)
def test_parse_retry_after_valid(text: str, seconds: float) -> None:
    assert parse(text, now=NOW) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "-1",
        "-0",
        "+5",
        "nan",
        "NaN",
        "inf",
        "-inf",
        "1e400",
        "1e3",
        "1" * 400,
        "",
        "   ",
        "soon",
        "1_000",
        "0x10",
        "\u0663",  # ARABIC-INDIC DIGIT THREE: float() takes it, HTTP does not
        "1.2.3",
        ".",
        "5 seconds",
        b"\xff\xfe\x00garbage",
        "Thu, 01 Jan 2026 00:00:30",  # a naive date: no zone
        "Thu, 01 Jan 2026 00:00:30 -0000",  # "-0000" means "zone unknown" in RFC 5322
        "Thu, 32 Jan 2026 00:00:30 GMT",
        "Mon, 01 Jan 99999999 00:00:00 GMT",
    ],
)
def test_parse_retry_after_malformed_is_none(text: str | bytes) -> None:
    assert parse(text, now=NOW) is None  # type: ignore[arg-type]


def test_parse_retry_after_non_text_is_none() -> None:
    assert parse(None) is None  # type: ignore[arg-type]
    assert parse(5) is None  # type: ignore[arg-type]


def test_a_real_asyncio_timeout_is_transient() -> None:
    async def slow() -> None:
        await asyncio.sleep(1)

    async def main() -> BaseException:
        try:
            await asyncio.wait_for(slow(), 0.001)
        except BaseException as exc:
            return exc
        raise AssertionError("no timeout")

    exc = asyncio.run(main())
    assert isinstance(exc, asyncio.TimeoutError)
    assert verdict(exc) is T


def test_parse_retry_after_date_defaults_to_now() -> None:
    far = format_datetime(datetime(2999, 1, 1, tzinfo=UTC), usegmt=True)
    wait = parse(far)
    assert wait is not None
    assert wait > 10 * 365 * 86400
    assert parse("Thu, 01 Jan 1970 00:00:00 GMT") == 0.0


@given(st.text() | st.binary())
def test_parse_retry_after_is_never_negative_nan_or_infinite(text: str | bytes) -> None:
    wait = parse(text, now=NOW)
    assert wait is None or (math.isfinite(wait) and wait >= 0)


@given(st.integers(min_value=0, max_value=10**12) | st.floats(min_value=0, max_value=1e12))
def test_parse_retry_after_round_trips_plain_numbers(value: float) -> None:
    text = str(value) if isinstance(value, int) else f"{value:.6f}"
    assert parse(text) == pytest.approx(float(text))


# --- totality ----------------------------------------------------------------------------------


class Hostile:
    """Every attribute access raises, __class__ included."""

    def __getattribute__(self, name: str) -> object:
        raise RuntimeError(f"no {name} for you")


class HostileError(Exception):
    def __getattribute__(self, name: str) -> object:
        raise RuntimeError(f"no {name} for you")


class LyingStatus(Exception):
    @property
    def status_code(self) -> int:
        raise RuntimeError("status unavailable")

    @property
    def headers(self) -> dict[str, str]:
        raise RuntimeError("headers unavailable")


class BadHeaders(Exception):
    status_code = 429

    class headers:
        @staticmethod
        def get(name: str) -> str:
            raise RuntimeError("broken mapping")


def test_hostile_objects_are_classified_not_raised() -> None:
    by_status = Classifier(results_by_status=True)
    for clf in (C, by_status):
        assert clf.classify(Hostile()).verdict is S
        assert clf.classify(HostileError()).verdict is P
        assert clf.classify(LyingStatus()).verdict is P
        c = clf.classify(BadHeaders())
        assert (c.verdict, c.retry_after) == (R, None)


def _exception_instances() -> st.SearchStrategy[BaseException]:
    builtin_types = [
        t
        for t in vars(builtins).values()
        if isinstance(t, type)
        and issubclass(t, BaseException)
        and not issubclass(t, BaseExceptionGroup)
    ]

    def build(t: type[BaseException], args: tuple[object, ...]) -> BaseException:
        try:
            return t(*args)
        except Exception:
            return t.__new__(t)  # an instance that skipped __init__: still an exception

    return st.builds(
        build,
        st.sampled_from(
            [*builtin_types, TimeoutExceeded, StatusError, AioResponseError, HostileError]
        ),
        st.tuples(st.integers(-1000, 1000) | st.text(max_size=5) | st.none()),
    )


def _attribute_soup() -> st.SearchStrategy[dict[str, object]]:
    values = st.none() | st.integers() | st.floats() | st.text(max_size=8) | st.builds(Hostile)
    headers = st.dictionaries(st.sampled_from(["Retry-After", "retry-after", "x"]), values)
    return st.fixed_dictionaries(
        {},
        optional={
            "status_code": values,
            "status": values,
            "headers": headers | values,
            "response": st.none()
            | st.builds(
                lambda s, h: type("R", (), {"status_code": s, "headers": h})(), values, headers
            ),
        },
    )


@given(_exception_instances(), _attribute_soup())
def test_classify_is_total_on_exceptions(exc: BaseException, attrs: dict[str, object]) -> None:
    for name, value in attrs.items():
        try:
            setattr(exc, name, value)
        except Exception:
            pass
    for clf in (C, Classifier(results_by_status=True, transient=(KeyError,))):
        c = clf.classify(exc)
        assert isinstance(c, Classification)
        assert c.verdict is not S
        assert c.retry_after is None or (math.isfinite(c.retry_after) and c.retry_after >= 0)


@given(
    st.none()
    | st.integers()
    | st.floats()
    | st.text()
    | st.binary()
    | st.lists(st.integers())
    | st.builds(Hostile)
    | st.builds(lambda a: type("Obj", (), a)(), _attribute_soup())
)
def test_classify_is_total_on_arbitrary_objects(value: object) -> None:
    for clf in (C, Classifier(results_by_status=True)):
        c = clf.classify(value)
        assert isinstance(c, Classification)
        assert c.retry_after is None or (math.isfinite(c.retry_after) and c.retry_after >= 0)
