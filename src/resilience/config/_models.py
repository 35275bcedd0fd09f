"""The pydantic models of one operation's settings: one section per policy.

Each section's keys are that policy's keyword arguments. The bounds are NOT written here:
every section model calls its policy's own `validate(**kwargs)` (the function the policy's
constructor calls), so the config layer and the policies cannot disagree. The models add the
file layout (sub-tables for `backoff`, `window`, `budget`), unknown-key checks, `false` for
"off" (TOML has no null), and the construction of the policy objects.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import os
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .._duration import DURATION_HINT, parse_duration
from .._errors import ConfigError
from ._merge import format_location

__all__ = [
    "SECTIONS",
    "BackoffSettings",
    "BreakerSettings",
    "BudgetSettings",
    "BulkheadSettings",
    "ChaosSettings",
    "FallbackSettings",
    "OperationPolicy",
    "RateLimitSettings",
    "RetrySettings",
    "StaleCacheSettings",
    "TimeoutSettings",
    "WindowSettings",
    "problems_of",
    "redact_table",
    "safe_url",
    "store_problem",
]

Path = tuple[str, ...]
Problem = tuple[Path, str]

SECTIONS: tuple[str, ...] = (
    "timeout",
    "retry",
    "attempt_timeout",
    "rate_limit",
    "breaker",
    "bulkhead",
    "chaos",
    "fallback",
)
"""The policy sections of an operation, outermost first: the order of the built Pipeline
(`Pipeline.standard`'s order, fault injection innermost; the fallback chain goes around the
whole pipeline)."""

_ERROR_TYPE = "resilience_config"


@functools.cache
def _policy(module: str, name: str) -> Any:
    return getattr(importlib.import_module(f"resilience.{module}"), name)


def _freeze(value: Any) -> Hashable:
    """A type-exact key of a raw table (1, 1.0 and True are different settings).

    Unhashable leaves make the key unhashable: the lookup raises TypeError.
    """
    kind = type(value)
    if kind is dict:
        return tuple([(k, _freeze(v)) for k, v in value.items()])
    if kind is list:
        return (list, tuple([_freeze(v) for v in value]))
    return (kind, value)


# Raw table -> its problems. Files repeat the same sections (everything inherited from a
# preset or [defaults] is identical), so most are checked once. Bounded; values are lists of
# strings, so the cache holds no policy objects.
_PROBLEMS: dict[tuple[type, Hashable], list[tuple[tuple[str, ...], str]]] = {}
_PROBLEMS_MAX = 4096


def _split(argument: str) -> Path:
    # the policies report nested arguments as "window.size"
    return tuple(argument.split(".")) if argument else ()


def unknown_key(key: object, accepted: Sequence[str]) -> str:
    """The message for an unknown key: what is accepted, and the likely intended key.

    Example:
        >>> unknown_key("max_attempt", ["max_attempts", "deadline"])
        "unknown setting; did you mean 'max_attempts'? accepted: max_attempts, deadline"
    """
    close = difflib.get_close_matches(str(key), list(accepted), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown setting; {hint}accepted: {', '.join(accepted)}"


def _percent_hint(value: Any) -> str:
    """The hint for a rate written as a percentage: 50 gets "did you mean 0.5?"."""
    if isinstance(value, int | float) and not isinstance(value, bool) and 1 < value <= 100:
        return f" (did you mean {value / 100:g}? rates are fractions: 0.5 is 50%)"
    return ""


# --- store URLs ---------------------------------------------------------------------------

_STORE_SCHEMES = ("memory", "sqlite", "redis", "rediss", "unix")
_STORE_FORMS = (
    'accepted: "memory", "sqlite:///relative.db", "sqlite:////absolute/path.db", '
    '"redis://[user:password@]host:port/db", "rediss://...", "unix:///path/redis.sock"'
)


def safe_url(value: object) -> object:
    """A store URL with its password written `***` (anything else unchanged).

    Example:
        >>> safe_url("redis://:s3cret@cache:6379/0")
        'redis://:***@cache:6379/0'
    """
    if not isinstance(value, str) or value == "memory":
        return value
    if "://" not in value:  # not a URL: shown only when nothing in it can be a password
        return value if "@" not in value else "<hidden>"
    # lazily: config never imports what is built from it until it is needed
    redact: Callable[[str], tuple[str, tuple[str, ...]]] = _policy("stores", "_redact_url")
    safe, secrets = redact(value)
    return safe if secrets else value  # as written when it holds no secret


def redact_table(table: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a file-layout table with every `store` URL's password written `***`."""
    return {
        k: (redact_table(v) if isinstance(v, Mapping) else (safe_url(v) if k == "store" else v))
        for k, v in table.items()
    }


def store_problem(value: object) -> str | None:
    """What is wrong with a `store` setting; None when it is usable. Nothing is connected to.

    Example:
        >>> store_problem("sqlite:///state.db") is None
        True
        >>> print(store_problem("reddis://:pw@cache:6379"))
        unknown store scheme 'reddis' in 'reddis://:***@cache:6379'; did you mean 'redis'? ...
    """
    if not isinstance(value, str):
        return f"must be a store URL string, got {type(value).__name__}; {_STORE_FORMS}"
    if value == "memory":
        return None
    from urllib.parse import urlsplit

    shown = safe_url(value)
    scheme, sep, rest = value.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _STORE_SCHEMES or scheme == "memory":
        word = scheme if sep else value.lower()
        close = difflib.get_close_matches(word, _STORE_SCHEMES, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        what = f"unknown store scheme {scheme!r} in" if sep else "not a store URL:"
        return f"{what} {shown!r}; {hint}{_STORE_FORMS}"
    if scheme == "sqlite":
        if not rest.startswith("/") or not rest[1:].strip():
            return (
                f"{shown!r} names no file; write sqlite:///relative.db or "
                "sqlite:////absolute/path.db"
            )
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in range
    except ValueError as exc:
        return f"not a usable store URL {shown!r}: {_scrub_url(str(exc), value)}"
    if scheme == "unix":
        return None if parts.path.strip("/") else f"{shown!r} names no socket path"
    if not parts.hostname:
        return f"{shown!r} names no host; {_STORE_FORMS}"
    db = parts.path.strip("/")
    if db and not db.isdigit():
        return f"{shown!r}: the database after the host must be a number (/0), got {db!r}"
    return None


def _scrub_url(text: str, url: str) -> str:
    redact: Callable[[str], tuple[str, tuple[str, ...]]] = _policy("stores", "_redact_url")
    scrub: Callable[[str, tuple[str, ...]], str] = _policy("stores", "_scrub")
    return scrub(text, redact(url)[1])


def scrub_messages(messages: list[Problem], table: Any) -> list[Problem]:
    """`messages` with the password of any URL found in `table`'s strings written `***`.

    A backstop for messages that echo a value as written (`breaker = "redis://:pw@h"` is
    "must be a table, got str ..."); the store checks never show a password themselves.
    """
    urls: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str) and "://" in value:
            urls.append(value)
        elif isinstance(value, Mapping):
            for v in value.values():
                walk(v)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v)

    walk(table)
    if not urls:
        return messages
    out = []
    for path, message in messages:
        for url in urls:
            message = _scrub_url(message, url)
        out.append((path, message))
    return out


# One store per distinct URL per process: every operation configured with the same URL shares
# one client (one connection pool, one SQLite connection).
_STORES: dict[str, Any] = {}
_STORES_LOCK = threading.Lock()


def build_store(url: str | None) -> Any:
    """The store object for a checked `store` URL; None for "memory" (the policy's default:
    a private `MemoryStore`). Built on first use and then shared by URL."""
    if url is None or url == "memory":
        return None
    scheme, _, rest = url.partition("://")
    sqlite = scheme.lower() == "sqlite"
    # a relative file is the one in the working directory of the first build, for good
    key = f"sqlite:///{os.path.abspath(rest[1:])}" if sqlite else url
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None:
            if sqlite:
                store = _policy("stores", "SQLiteStore")(key.partition(":///")[2])
            else:
                store = _policy("stores", "RedisStore")(url)
            _STORES[key] = store
        return store


def _raise(problems: list[Problem]) -> None:
    if problems:
        raise PydanticCustomError(
            _ERROR_TYPE,
            "{count} invalid setting(s)",
            {"count": len(problems), "problems": problems},
        )


def _seconds(value: str) -> Any:
    """A duration string as seconds; unchanged when it is not one (reported as a problem)."""
    try:
        return parse_duration(value)
    except ValueError:
        return value  # reported by _duration_problems


class _Section(BaseModel):
    """What every section shares: unknown keys, `false` = None, the policy's own validate."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    # keys whose `false` means None (TOML cannot write null)
    _nullable: ClassVar[frozenset[str]] = frozenset()
    # keys that are ours, not the policy's (checked here, never passed to it)
    _config_only: ClassVar[frozenset[str]] = frozenset()
    # sub-tables: key -> the model that checks it
    _tables: ClassVar[dict[str, type[_Section]]] = {}
    # keys holding seconds: a number or a duration string ("500ms", "10s", "PT1M")
    _durations: ClassVar[frozenset[str]] = frozenset()
    # keys holding a fraction (0.5 = 50%): a percentage gets a "did you mean" hint
    _rates: ClassVar[frozenset[str]] = frozenset()
    # keys holding a store URL: checked here (never connected to), built by `build`; a
    # password in one is never shown (repr, errors, `config show`)
    _urls: ClassVar[frozenset[str]] = frozenset()
    # keys with a few accepted words: a near miss gets a "did you mean" hint
    _choices: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __repr_args__(self) -> Any:
        urls = self._urls
        for key, value in super().__repr_args__():
            yield key, (safe_url(value) if key in urls else value)

    @classmethod
    def _validate_fn(cls) -> Callable[..., list[tuple[str, str]]] | None:
        """The policy's `validate`; None when the section has no policy of its own."""
        return None

    @classmethod
    def _extra_kwargs(cls) -> dict[str, Any]:
        """Arguments the policy requires that are not settings (a breaker's name)."""
        return {}

    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return data

    @classmethod
    def _own_problems(cls, data: dict[str, Any]) -> list[Problem]:
        """Checks of the config-only keys."""
        return []

    @classmethod
    def _normalise(cls, data: Any) -> Any:
        data = cls._shorthand(data)
        if isinstance(data, Mapping):
            nullable, durations = cls._nullable, cls._durations
            data = {
                k: (
                    None
                    if v is False and k in nullable
                    else (_seconds(v) if type(v) is str and k in durations else v)
                )
                for k, v in data.items()
            }
        return data

    @classmethod
    def _duration_problems(cls, data: Mapping[str, Any]) -> list[Problem]:
        """Duration keys whose string did not parse (left as strings by `_normalise`)."""
        return [
            ((k,), f"must be {DURATION_HINT}, got {v!r:.60}")
            for k, v in data.items()
            if k in cls._durations and isinstance(v, str)
        ]

    @classmethod
    def problems(cls, data: Any) -> list[Problem]:
        """Every problem with this section's raw table, as (relative path, message)."""
        data = cls._normalise(data)
        if not isinstance(data, Mapping):
            return [((), f"must be a table, got {type(data).__name__} {data!r:.80}")]
        out: list[Problem] = cls._duration_problems(data)
        kwargs: dict[str, Any] = {}
        accepted = list(cls.model_fields)
        for key, value in data.items():
            if not isinstance(key, str) or key not in accepted:
                out.append(((str(key),), unknown_key(key, accepted)))
            elif key in cls._config_only or (key in cls._durations and isinstance(value, str)):
                continue
            elif key in cls._tables and value is not None:
                sub = cls._tables[key]
                sub_problems = sub.problems(value)
                out += [((key, *p), m) for p, m in sub_problems]
                if not sub_problems:
                    kwargs[key] = sub._as_argument(sub._normalise(value))
            else:
                kwargs[key] = value
        validate = cls._validate_fn()
        if validate is not None:
            try:
                found = validate(**cls._extra_kwargs(), **kwargs)
            except Exception as exc:  # a check that broke on a hostile value: still a problem
                found = [("", f"rejected by the policy: {type(exc).__name__}: {exc}")]
            bad = {p[0] for p, _ in out if len(p) == 1}  # reported already: not twice
            out += [
                (_split(arg), msg + cls._hint(arg, data.get(arg)))
                for arg, msg in found
                if arg not in bad
            ]
        out += [
            ((k,), problem)
            for k in cls._urls
            if k in data and (problem := store_problem(data[k])) is not None
        ]
        out += cls._own_problems(dict(data))
        return out

    @classmethod
    def _hint(cls, key: str, value: Any) -> str:
        """A "did you mean" for a rejected value: a rate as a percentage, a near miss."""
        if key in cls._rates:
            return _percent_hint(value)
        close = difflib.get_close_matches(str(value), cls._choices.get(key, ()), n=1, cutoff=0.6)
        return f" (did you mean {close[0]!r}?)" if close else ""

    @classmethod
    def _as_argument(cls, data: Mapping[str, Any]) -> Any:
        """What the parent policy's validate receives for this sub-table."""
        return dict(data)

    @model_validator(mode="before")
    @classmethod
    def _check(cls, data: Any) -> Any:
        data = cls._normalise(data)
        key: tuple[type, Hashable] | None = (cls, _freeze(data))
        try:
            found = _PROBLEMS.get(key)  # type: ignore[arg-type]
        except TypeError:  # unhashable leaves: check without the cache
            key = found = None
        if found is None:
            found = cls.problems(data)
            if key is not None and len(_PROBLEMS) < _PROBLEMS_MAX:
                _PROBLEMS[key] = found
        _raise(found)
        return data

    def arguments(self) -> dict[str, Any]:
        """The policy's keyword arguments for the keys that were set (sub-tables built).

        Example:
            >>> RetrySettings(max_attempts=4).arguments()
            {'max_attempts': 4}
        """
        out: dict[str, Any] = {}
        for key in self.model_fields_set:
            if key in self._config_only:
                continue
            value = getattr(self, key)
            if isinstance(value, _Section):
                value = value.build_argument()
            out[key] = value
        return out

    def build_argument(self) -> Any:
        """This sub-table as the object the parent policy takes (a Backoff, a window)."""
        return self.table()

    def table(self) -> dict[str, Any]:
        """The file layout of the keys that were set (None written as false)."""
        out: dict[str, Any] = {}
        for key in self.model_fields_set:
            value = getattr(self, key)
            if isinstance(value, _Section):
                value = value.table()
            elif value is None and key in self._nullable:
                value = False
            out[key] = value
        return {k: out[k] for k in type(self).model_fields if k in out}


# --- timeout ------------------------------------------------------------------------------


class TimeoutSettings(_Section):
    """`timeout = 30.0`, `timeout = "30s"` or `timeout = { seconds = 30.0, mode = "thread" }`.

    Builds `Timeout(...)`. Seconds may be written as a duration string ("500ms", "PT1M").

    Example:
        >>> TimeoutSettings.model_validate(2.5).seconds
        2.5
        >>> TimeoutSettings.model_validate("1m").seconds
        60.0
    """

    seconds: float
    mode: str = "cooperative"
    max_workers: int | None = None

    _durations = frozenset({"seconds"})

    @classmethod
    def _validate_fn(cls) -> Callable[..., list[tuple[str, str]]]:
        return _policy("timeout", "Timeout").validate  # type: ignore[no-any-return]

    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, int | float | str) and not isinstance(data, bool):
            return {"seconds": data}
        return data

    @classmethod
    def _own_problems(cls, data: dict[str, Any]) -> list[Problem]:
        return [] if "seconds" in data else [(("seconds",), "required")]

    def build(self, name: str, clock: Any = None) -> Any:
        """A `Timeout` for operation `name`."""
        return _policy("timeout", "Timeout")(name=name, clock=clock, **self.arguments())


# --- retry ----------------------------------------------------------------------------------


def _required(factory: Callable[..., Any]) -> tuple[frozenset[str], frozenset[str]]:
    """(all keyword names, required names) of a factory, minus the non-settings."""
    names, required = set(), set()
    for p in inspect.signature(factory).parameters.values():
        if p.name in ("seed", "random", "clock", "cls", "self") or p.kind in (
            p.VAR_POSITIONAL,
            p.VAR_KEYWORD,
        ):
            continue
        names.add(p.name)
        if p.default is p.empty:
            required.add(p.name)
    return frozenset(names), frozenset(required)


@functools.cache
def _backoff_kinds() -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    backoff = _policy("retry", "Backoff")
    kinds = ("constant", "linear", "exponential", "decorrelated")
    return {k: _required(getattr(backoff, k)) for k in kinds}


class BackoffSettings(_Section):
    """`backoff = { kind = "exponential", initial = 0.5, multiplier = 2.0, maximum = 20.0 }`.

    Kinds and their keys are those of `Backoff.constant(delay)`, `Backoff.linear(initial, step,
    maximum)`, `Backoff.exponential(initial, multiplier, maximum, jitter)` and
    `Backoff.decorrelated(initial, maximum)`; `jitter = false` means no jitter.

    Example:
        >>> backoff = BackoffSettings.model_validate({"kind": "exponential", "maximum": "2s"})
        >>> backoff.kind, backoff.maximum
        ('exponential', 2.0)
    """

    kind: Literal["constant", "linear", "exponential", "decorrelated"]
    delay: float | None = None
    initial: float | None = None
    step: float | None = None
    multiplier: float | None = None
    maximum: float | None = None
    jitter: Literal["full", "equal"] | None = None

    _nullable = frozenset({"jitter"})
    _durations = frozenset({"delay", "initial", "step", "maximum"})

    @classmethod
    def problems(cls, data: Any) -> list[Problem]:
        data = cls._normalise(data)
        if not isinstance(data, Mapping):
            return [((), f"must be a table, got {type(data).__name__} {data!r:.80}")]
        kinds = _backoff_kinds()
        kind = data.get("kind")
        if not isinstance(kind, str) or kind not in kinds:
            close = difflib.get_close_matches(str(kind), list(kinds), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return [
                (("kind",), f"must be one of {', '.join(map(repr, kinds))}; got {kind!r}{hint}")
            ]
        allowed, required = kinds[kind]
        out: list[Problem] = cls._duration_problems(data)
        out += [
            (
                (str(k),),
                f"is not a setting of a {kind} backoff; "
                + unknown_key(k, sorted(allowed)).removeprefix("unknown setting; "),
            )
            for k in data
            if k != "kind" and k not in allowed
        ]
        out += [((k,), "required") for k in sorted(required) if data.get(k) is None]
        args = {
            k: v
            for k, v in data.items()
            if (k in allowed or k == "kind") and not (k in cls._durations and isinstance(v, str))
        }
        if kind == "constant" and args.get("delay") is None:
            args["delay"] = 0.0  # reported as required above; keep validate from guessing
        try:
            found = _policy("retry", "Backoff").validate(**args)
        except Exception as exc:  # a check that broke on a hostile value: still a problem
            found = [("", f"rejected by Backoff: {type(exc).__name__}: {exc}")]
        return out + [(_split(arg), msg) for arg, msg in found]

    @classmethod
    def _as_argument(cls, data: Mapping[str, Any]) -> Any:
        return _policy("retry", "Backoff").from_dict(data)

    def build_argument(self) -> Any:
        """The `Backoff` object."""
        args = {k: getattr(self, k) for k in self.model_fields_set}
        return _policy("retry", "Backoff").from_dict(args | {"kind": self.kind})

    def table(self) -> dict[str, Any]:
        return {"kind": self.kind} | super().table()


class BudgetSettings(_Section):
    """`budget = { ratio = 0.2, min_per_second = 10 }`: a `RetryBudget`; `false` for none.

    Example:
        >>> BudgetSettings.model_validate({"ratio": 0.1}).ratio
        0.1
    """

    ratio: float | None = None
    min_per_second: float | None = None
    ttl: float | None = None

    _durations = frozenset({"ttl"})
    _rates = frozenset({"ratio"})

    @classmethod
    def _validate_fn(cls) -> Callable[..., list[tuple[str, str]]]:
        return _policy("retry", "RetryBudget").validate  # type: ignore[no-any-return]

    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {} if data is True else data

    @classmethod
    def _as_argument(cls, data: Mapping[str, Any]) -> Any:
        return _policy("retry", "RetryBudget")(**data)

    def build_argument(self) -> Any:
        """A new `RetryBudget` (one per built Retry: budgets count their own calls)."""
        return _policy("retry", "RetryBudget")(**self.arguments())


class RetrySettings(_Section):
    """`retry = { max_attempts = 5, deadline = 60.0, backoff = {...}, budget = {...} }`.

    `deadline = false` means no deadline. `allow_retry_storm = true` accepts a policy the
    retry-storm checks would refuse (see the docs); it is not passed to `Retry`.

    Example:
        >>> RetrySettings(max_attempts=4, deadline=10.0).arguments()["deadline"]
        10.0
    """

    max_attempts: int | None = None
    backoff: BackoffSettings | None = None
    deadline: float | None = None
    respect_retry_after: bool | None = None
    budget: BudgetSettings | None = None
    max_retry_after: float | None = None
    allow_retry_storm: bool = False

    _nullable = frozenset({"deadline", "budget"})
    _config_only = frozenset({"allow_retry_storm"})
    _durations = frozenset({"deadline", "max_retry_after"})
    _tables = {"backoff": BackoffSettings, "budget": BudgetSettings}

    @classmethod
    def _validate_fn(cls) -> Callable[..., list[tuple[str, str]]]:
        return _policy("retry", "Retry").validate  # type: ignore[no-any-return]

    @classmethod
    def _own_problems(cls, data: dict[str, Any]) -> list[Problem]:
        v = data.get("allow_retry_storm", False)
        return (
            []
            if isinstance(v, bool)
            else [(("allow_retry_storm",), f"must be true or false, got {v!r}")]
        )

    def build(self, name: str, clock: Any = None) -> Any:
        """A `Retry` for operation `name`."""
        return _policy("retry", "Retry")(name=name, clock=clock, **self.arguments())


# --- circuit breaker ------------------------------------------------------------------


class WindowSettings(_Section):
    """`window = { kind = "count", size = 100 }` or `{ kind = "time", seconds = 60 }`.

    Example:
        >>> WindowSettings.model_validate({"kind": "time", "seconds": 30}).seconds
        30.0
    """

    kind: Literal["count", "time"] = "count"
    size: int | None = None
    seconds: float | None = None
    buckets: int | None = None

    _durations = frozenset({"seconds"})

    @classmethod
    def problems(cls, data: Any) -> list[Problem]:
        data = cls._normalise(data)
        if not isinstance(data, Mapping):
            return [((), f"must be a table, got {type(data).__name__} {data!r:.80}")]
        kind = data.get("kind", "count")
        keys = {"count": ("size",), "time": ("seconds", "buckets")}.get(str(kind))
        if keys is None:
            return [(("kind",), f"must be 'count' or 'time'; got {kind!r}")]
        out: list[Problem] = cls._duration_problems(data)
        out += [
            (
                (str(k),),
                f"is not a setting of a {kind} window; "
                + unknown_key(k, keys).removeprefix("unknown setting; "),
            )
            for k in data
            if k != "kind" and k not in keys
        ]
        args = {
            k: v
            for k, v in data.items()
            if k in keys and not (k in cls._durations and isinstance(v, str))
        }
        window = _policy("breaker", "CountWindow" if kind == "count" else "TimeWindow")
        try:
            found = window.validate(**args)
        except Exception as exc:  # a check that broke on a hostile value: still a problem
            found = [("", f"rejected by the window: {type(exc).__name__}: {exc}")]
        return out + [(_split(arg), msg) for arg, msg in found]

    @classmethod
    def _as_argument(cls, data: Mapping[str, Any]) -> Any:
        return {"kind": "count"} | dict(data)

    def build_argument(self) -> Any:
        """The `CountWindow` or `TimeWindow`."""
        args = {k: getattr(self, k) for k in self.model_fields_set if k != "kind"}
        return _policy("breaker", "CountWindow" if self.kind == "count" else "TimeWindow")(**args)

    def table(self) -> dict[str, Any]:
        return {"kind": self.kind} | super().table()


class BreakerSettings(_Section):
    """`breaker = { failure_rate_threshold = 0.5, minimum_calls = 20, window = {...}, ... }`.

    `slow_call_threshold = false` / `open_duration_max = false` mean none. `store` is where
    the breaker's state lives: "memory" (default: this process alone), "sqlite:///path.db",
    "redis://[user:password@]host:port/db", "rediss://..." or "unix://..." (one record per
    operation name, shared by every process using the same store).

    Example:
        >>> BreakerSettings.model_validate({"failure_rate_threshold": 0.25}).failure_rate_threshold
        0.25
    """

    failure_rate_threshold: float | None = None
    slow_call_threshold: float | None = None
    slow_call_rate_threshold: float | None = None
    minimum_calls: int | None = None
    window: WindowSettings | None = None
    open_duration: float | None = None
    open_duration_max: float | None = None
    half_open_calls: int | None = None
    store: str | None = None

    _nullable = frozenset({"slow_call_threshold", "open_duration_max"})
    _config_only = frozenset({"store"})
    _urls = frozenset({"store"})
    _tables = {"window": WindowSettings}
    _durations = frozenset({"slow_call_threshold", "open_duration", "open_duration_max"})
    _rates = frozenset({"failure_rate_threshold", "slow_call_rate_threshold"})

    @classmethod
    def _validate_fn(cls) -> Callable[..., list[tuple[str, str]]]:
        return _policy("breaker", "CircuitBreaker").validate  # type: ignore[no-any-return]

    @classmethod
    def _extra_kwargs(cls) -> dict[str, Any]:
        return {"name": "operation"}

    def build(self, name: str, clock: Any = None) -> Any:
        """A `CircuitBreaker` named `name` (on the `store` URL's store, shared by URL)."""
        return _policy("breaker", "CircuitBreaker")(
            name, clock=clock, store=build_store(self.store), **self.arguments()
        )


# --- bulkhead, rate limiter --------------------------------------------------------------


class BulkheadSettings(_Section):
    """`bulkhead = { max_concurrent = 50, max_waiting = 100 }`.

    Example:
        >>> BulkheadSettings.model_validate({"max_concurrent": 8}).max_concurrent
        8
    """

    max_concurrent: int | None = None
    max_waiting: int | None = None
    max_wait: float | None = None

    _nullable = frozenset({"max_wait"})
    _durations = frozenset({"max_wait"})

    @classmethod
    def _validate_fn(cls) -> Callable[..., list[tuple[str, str]]]:
        return _policy("bulkhead", "Bulkhead").validate  # type: ignore[no-any-return]

    def build(self, name: str, clock: Any = None) -> Any:
        """A `Bulkhead` for operation `name`."""
        return _policy("bulkhead", "Bulkhead")(name=name, clock=clock, **self.arguments())


class RateLimitSettings(_Section):
    """`rate_limit = { rate = 100, per = 1.0, burst = 20, wait = false, max_wait = 0.5 }`.

    `burst = false` / `max_wait = false` mean the policy's "none". `store` is where the bucket
    lives (the URLs of `BreakerSettings.store`: limiters of one operation on one shared store
    share one limit); `on_store_error` ("fail_closed", the default, or "fail_open") is what
    calls get while that store fails.

    Example:
        >>> RateLimitSettings.model_validate({"rate": 5, "per": "1s"}).per
        1.0
    """

    rate: float | None = None
    per: float | None = None
    burst: float | None = None
    wait: bool | None = None
    max_wait: float | None = None
    store: str | None = None
    on_store_error: str | None = None

    _nullable = frozenset({"burst", "max_wait"})
    _durations = frozenset({"per", "max_wait"})
    _config_only = frozenset({"store"})
    _urls = frozenset({"store"})
    _choices = {"on_store_error": ("fail_closed", "fail_open")}

    @classmethod
    def _validate_fn(cls) -> Callable[..., list[tuple[str, str]]]:
        return _policy("ratelimit", "RateLimiter").validate  # type: ignore[no-any-return]

    def build(self, name: str, clock: Any = None) -> Any:
        """A `RateLimiter` for operation `name` (on the `store` URL's store, shared by URL)."""
        return _policy("ratelimit", "RateLimiter")(
            name=name, clock=clock, store=build_store(self.store), **self.arguments()
        )


# --- fallback --------------------------------------------------------------------------------


_LEVELS = ("full", "degraded", "limited", "cache_only")


class StaleCacheSettings(_Section):
    """`stale_cache = { max_age = 300, max_size = 1024 }`: serve the last good answer.

    Example:
        >>> StaleCacheSettings.model_validate({"max_age": "5m"}).max_age
        300.0
    """

    max_age: float | None = None
    max_size: int | None = None

    _durations = frozenset({"max_age"})

    @classmethod
    def _validate_fn(cls) -> Callable[..., list[tuple[str, str]]]:
        return _policy("fallback", "StaleCache").validate  # type: ignore[no-any-return]

    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {} if data is True else data


class FallbackSettings(_Section):
    """`fallback = { stale_cache = { max_age = 300 }, default = "busy", level = "limited" }`.

    Steps tried after the call fails with a retryable error: the stale cache (if set), then
    the default value (if set), served at `level`.

    Example:
        >>> FallbackSettings.model_validate({"stale_cache": {"max_age": 60}}).stale_cache
        StaleCacheSettings(max_age=60.0, max_size=None)
    """

    stale_cache: StaleCacheSettings | None = None
    default: Any = None
    level: Literal["full", "degraded", "limited", "cache_only"] | None = None

    _nullable = frozenset({"stale_cache"})
    _tables = {"stale_cache": StaleCacheSettings}

    @classmethod
    def _own_problems(cls, data: dict[str, Any]) -> list[Problem]:
        out: list[Problem] = []
        if data.get("stale_cache") is None and "default" not in data:
            out.append(((), "needs `stale_cache` or `default` (or set fallback = false)"))
        level = data.get("level", "limited")
        if level is not None and level not in _LEVELS:
            out.append((("level",), f"must be one of {', '.join(_LEVELS)}; got {level!r}"))
        return out

    def steps(self, clock: Any = None) -> list[Any]:
        """The fallback steps (`StaleCache`, `Default`) this section describes."""
        fallback = importlib.import_module("resilience.fallback")
        out: list[Any] = []
        if self.stale_cache is not None:
            out.append(fallback.StaleCache(clock=clock, **self.stale_cache.arguments()))
        if "default" in self.model_fields_set:
            level = fallback.DegradationLevel[(self.level or "limited").upper()]
            out.append(fallback.Default(self.default, level))
        return out


# --- chaos ---------------------------------------------------------------------------------


class ChaosSettings(_Section):
    """`chaos = { error_rate = 0.1, latency = 0.5, latency_rate = 0.05, seed = 7 }`.

    `FaultInjection` (resilience.chaos) innermost, standing in for a failing dependency.
    Loading a config that enables it in production warns (`ChaosInProductionWarning`).

    Example:
        >>> ChaosSettings.model_validate({"error_rate": 0.1}).error_rate
        0.1
    """

    error_rate: float | None = None
    latency: float | None = None
    latency_rate: float | None = None
    seed: int | str | None = None

    _nullable = frozenset({"latency", "seed"})
    _durations = frozenset({"latency"})
    _rates = frozenset({"error_rate", "latency_rate"})

    @classmethod
    def _validate_fn(cls) -> Callable[..., list[tuple[str, str]]]:
        try:
            return _policy("chaos", "FaultInjection").validate  # type: ignore[no-any-return]
        except (ImportError, AttributeError):
            return lambda **_: [("", "fault injection (resilience.chaos) is not available")]

    def build(self, name: str, clock: Any = None) -> Any:
        """A `FaultInjection` for operation `name`."""
        return _policy("chaos", "FaultInjection")(name=name, clock=clock, **self.arguments())


# --- one operation ---------------------------------------------------------------------


_SECTION_MODELS: dict[str, type[_Section]] = {
    "timeout": TimeoutSettings,
    "attempt_timeout": TimeoutSettings,
    "retry": RetrySettings,
    "breaker": BreakerSettings,
    "bulkhead": BulkheadSettings,
    "rate_limit": RateLimitSettings,
    "fallback": FallbackSettings,
    "chaos": ChaosSettings,
}

_STORE_SECTIONS = ("breaker", "rate_limit")

_PRESET_NAMES: Callable[[], tuple[str, ...]] = lambda: ()  # noqa: E731 - set by _presets


class OperationPolicy(BaseModel):
    """One operation's policies: one optional section per policy (None = off).

    Sections: `timeout` (the whole call), `retry`, `attempt_timeout` (each attempt), `rate_limit`,
    `breaker`, `bulkhead`, `chaos`, `fallback`; each
    section's keys are its policy's keyword arguments. `preset` names the preset it was built
    on. In a file, `false` turns a section off. `store` (a store URL, as `breaker.store`) is
    the store of the `breaker` and `rate_limit` sections that do not name their own; set in
    `[defaults]` it applies to every operation.

    Example:
        >>> from resilience import config
        >>> p = config.OperationPolicy.model_validate(
        ...     {"timeout": 5.0, "retry": {"max_attempts": 4}, "breaker": False})
        >>> p.retry.max_attempts, p.breaker is None
        (4, True)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: str | None = None
    store: str | None = None
    timeout: TimeoutSettings | None = None
    retry: RetrySettings | None = None
    attempt_timeout: TimeoutSettings | None = None
    breaker: BreakerSettings | None = None
    bulkhead: BulkheadSettings | None = None
    rate_limit: RateLimitSettings | None = None
    fallback: FallbackSettings | None = None
    chaos: ChaosSettings | None = None

    @model_validator(mode="before")
    @classmethod
    def _off(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            data = {
                k: (None if v is False and k in _SECTION_MODELS else v) for k, v in data.items()
            }
            store = data.get("store")
            if store is not None and store_problem(store) is None:
                for section in _STORE_SECTIONS:  # a section's own `store` wins
                    table = data.get(section)
                    if isinstance(table, Mapping) and "store" not in table:
                        data[section] = {**table, "store": store}
        return data

    @field_validator("store", mode="before")
    @classmethod
    def _known_store(cls, value: Any) -> Any:
        problem = None if value is None else store_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    def __repr_args__(self) -> Any:
        for key, value in super().__repr_args__():
            yield key, (safe_url(value) if key == "store" else value)

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str | None) -> str | None:
        names = _PRESET_NAMES()
        if value is not None and names and value not in names:
            raise ValueError(f"unknown preset {value!r}; accepted: {', '.join(names)}")
        return value

    # -- building -----------------------------------------------------------------------

    def sections(self) -> dict[str, _Section]:
        """The sections that are on, outermost first."""
        return {s: v for s in SECTIONS if (v := getattr(self, s)) is not None}

    def policies(self, name: str, *, clock: Any = None) -> list[Any]:
        """The policy objects, outermost first (the fallback is not one: see `build`)."""
        out = []
        for section, settings in self.sections().items():
            if section != "fallback":
                out.append(settings.build(name, clock))  # type: ignore[attr-defined]
        return out

    def table(self) -> dict[str, Any]:
        """The file layout of this policy (sections that are off written as false)."""
        out: dict[str, Any] = {}
        if self.preset is not None:
            out["preset"] = self.preset
        if self.store is not None:
            out["store"] = self.store
        for s in SECTIONS:
            v = getattr(self, s)
            out[s] = False if v is None else v.table()
        return out


# --- errors ------------------------------------------------------------------------------


def problems_of(exc: ValidationError) -> list[Problem]:
    """A pydantic ValidationError of these models as (path, message) pairs, every one."""
    out: list[Problem] = []
    for err in exc.errors(include_url=False):
        loc = tuple(str(p) for p in err["loc"])
        if err["type"] == _ERROR_TYPE:
            out += [((*loc, *p), m) for p, m in err["ctx"]["problems"]]
        elif err["type"] == "extra_forbidden":
            out.append((loc, unknown_key(loc[-1] if loc else "", _accepted(loc[:-1]))))
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] != "value_error":
                msg = f"{msg}, got {err.get('input')!r:.80}"
            out.append((loc, msg))
    return out


def _accepted(parent: tuple[str, ...]) -> list[str]:
    if not parent:
        return list(OperationPolicy.model_fields)
    model = _SECTION_MODELS.get(parent[0])
    for key in parent[1:]:
        model = (model._tables if model else {}).get(key)
    return list(model.model_fields) if model else []


def validate_table(data: Any, location: Path = ()) -> OperationPolicy:
    """Validate one operation's raw table; `ConfigError` lists every problem with its location.

    Example:
        >>> validate_table({"retry": {"max_attempts": 0}}, ("operations", "x"))
        Traceback (most recent call last):
        ...
        resilience._errors.ConfigError: 1 invalid setting:
          operations.x.retry.max_attempts: must be >= 1, got 0
    """
    try:
        return OperationPolicy.model_validate(data)
    except ValidationError as exc:
        found = scrub_messages(problems_of(exc), data)
        raise ConfigError([(format_location((*location, *p)), m) for p, m in found]) from None
