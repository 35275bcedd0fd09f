"""Python code that configures tenacity, stamina, backoff, pybreaker, circuitbreaker,
aiobreaker or purgatory, read with `ast` (never imported, never run).

A call is a site only when its name really comes from the library (imports and aliases are
resolved; a project's own `retry` or urllib3's `Retry` is not one). Literal settings and module
constants are read; anything else is reported as `dynamic` and left out of the config (never
guessed). A breaker or retrier built once and used by several functions is one operation.
"""

from __future__ import annotations

import ast
import datetime
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._core import _Entry, _Op, _Run
from ._python import _circuitbreaker, _pybreaker, _tenacity
from ._report import MigrationReport

_MAX_FILE = 2 * 1024 * 1024
_MAX_FILES = 20000
_LIBRARIES = (
    "tenacity",
    "stamina",
    "backoff",
    "pybreaker",
    "circuitbreaker",
    "aiobreaker",
    "purgatory",
)
# qualified name -> (library, what it is)
_SITES = {
    "tenacity.retry": ("tenacity", "decorator"),
    "tenacity.Retrying": ("tenacity", "retrier"),
    "tenacity.AsyncRetrying": ("tenacity", "retrier"),
    "stamina.retry": ("stamina", "decorator"),
    "stamina.retry_context": ("stamina", "retrier"),
    "stamina.RetryingCaller": ("stamina", "retrier"),
    "stamina.AsyncRetryingCaller": ("stamina", "retrier"),
    "backoff.on_exception": ("backoff", "decorator"),
    "backoff.on_predicate": ("backoff", "decorator"),
    "pybreaker.CircuitBreaker": ("pybreaker", "breaker"),
    "aiobreaker.CircuitBreaker": ("aiobreaker", "breaker"),
    "circuitbreaker.circuit": ("circuitbreaker", "decorator"),
    "circuitbreaker.CircuitBreaker": ("circuitbreaker", "breaker"),
    "purgatory.AsyncCircuitBreakerFactory": ("purgatory", "factory"),
    "purgatory.SyncCircuitBreakerFactory": ("purgatory", "factory"),
}
# each legacy keyword -> the settings it decides (what becomes `dynamic` when it is not literal)
_TARGETS = {
    "tenacity": {"stop": ["retry.max_attempts", "retry.deadline"], "wait": ["retry.backoff"]},
    "stamina": {
        "attempts": ["retry.max_attempts"],
        "timeout": ["retry.deadline"],
        "wait_initial": ["retry.backoff"],
        "wait_max": ["retry.backoff"],
        "wait_jitter": ["retry.backoff"],
        "wait_exp_base": ["retry.backoff"],
    },
    "backoff": {
        "max_tries": ["retry.max_attempts"],
        "max_time": ["retry.deadline"],
        "wait_gen": ["retry.backoff"],
        "factor": ["retry.backoff"],
        "base": ["retry.backoff"],
        "max_value": ["retry.backoff"],
        "interval": ["retry.backoff"],
        "jitter": ["retry.backoff"],
    },
    "breaker": {
        "fail_max": ["breaker.minimum_calls", "breaker.window"],
        "failure_threshold": ["breaker.minimum_calls", "breaker.window"],
        "threshold": ["breaker.minimum_calls", "breaker.window"],
        "default_threshold": ["breaker.minimum_calls", "breaker.window"],
        "reset_timeout": ["breaker.open_duration"],
        "recovery_timeout": ["breaker.open_duration"],
        "timeout_duration": ["breaker.open_duration"],
        "ttl": ["breaker.open_duration"],
        "default_ttl": ["breaker.open_duration"],
        "success_threshold": ["breaker.half_open_calls"],
    },
}
_ALL = {
    "tenacity": ["retry.max_attempts", "retry.deadline", "retry.backoff"],
    "stamina": ["retry.max_attempts", "retry.deadline", "retry.backoff"],
    "backoff": ["retry.max_attempts", "retry.deadline", "retry.backoff"],
    "breaker": ["breaker.minimum_calls", "breaker.window", "breaker.open_duration"],
}
_EXCEPTION_NOTE = (
    "exceptions are code: pass on=(...) to rs.Retry or a Classifier; "
    "here the default classifier decides what is retried"
)
# exception types the default classifier already retries (builtins, by the OSError rule or
# its table of client libraries' transport errors, and the LLM SDKs' errors): `on=` them is
# what happens here anyway
_TRANSIENT = {
    "ConnectionError", "TimeoutError", "ConnectionResetError", "ConnectionRefusedError",
    "ConnectionAbortedError", "BrokenPipeError", "OSError", "IOError", "socket.timeout",
    "asyncio.TimeoutError", "httpx.TransportError", "httpx.TimeoutException",
    "httpx.ConnectError", "httpx.ConnectTimeout", "httpx.ReadTimeout", "httpx.WriteTimeout",
    "httpx.PoolTimeout", "httpx.NetworkError", "httpx.ReadError", "httpx.WriteError",
    "httpx.RemoteProtocolError", "httpcore.TimeoutException", "httpcore.NetworkError",
    "aiohttp.ClientConnectionError", "aiohttp.ServerTimeoutError",
    "aiohttp.ClientConnectorError", "aiohttp.ServerDisconnectedError",
    "requests.ConnectionError", "requests.Timeout", "requests.exceptions.ConnectionError",
    "requests.exceptions.Timeout", "requests.exceptions.ConnectTimeout",
    "requests.exceptions.ReadTimeout", "redis.ConnectionError", "redis.TimeoutError",
    "redis.exceptions.ConnectionError", "redis.exceptions.TimeoutError",
    "urllib3.exceptions.TimeoutError", "urllib3.exceptions.ProtocolError",
    "openai.APIConnectionError", "openai.APITimeoutError", "openai.RateLimitError",
    "openai.InternalServerError", "anthropic.APIConnectionError", "anthropic.APITimeoutError",
    "anthropic.RateLimitError", "anthropic.InternalServerError",
}  # fmt: skip


_REASSIGNED = ast.Name(id="<reassigned>")  # a module name bound twice is not a constant


_BUILTIN_TRANSIENT = {n for n in _TRANSIENT if "." not in n}


class _Dynamic(Exception):
    """A value the source does not state (a variable, a call, a settings object)."""


@dataclass
class _Ref:
    """A name: a library function/class (`tenacity.wait_none`) or any other (`ValueError`)."""

    qual: str


@dataclass
class _Call:
    qual: str
    args: list[Any]
    kwargs: dict[str, Any]


@dataclass
class _Site:
    """One operation found in the code."""

    name: str
    library: str
    site: str
    function: str
    kind: str  # "decorator" | "retrier" | "breaker" | "factory" | "loop" | "call"
    call: ast.Call | None
    module: _Module
    decorator: ast.expr | None = None  # the decorator node to rewrite (inline sites)
    uses: list[str] = field(default_factory=list)
    rewrite: list[tuple[str, int]] = field(default_factory=list)  # (file, decorator line)
    defaults: dict[str, Any] = field(default_factory=dict)  # a subclass's class attributes
    defaults_module: _Module | None = None  # where that subclass is defined

    @property
    def where_line(self) -> int:
        return int(self.site.rsplit(":", 1)[-1])


@dataclass
class _Module:
    path: Path
    name: str  # dotted, relative to the root
    tree: ast.Module
    imports: dict[str, str] = field(default_factory=dict)
    consts: dict[str, ast.expr] = field(default_factory=dict)
    classes: dict[str, tuple[str, dict[str, ast.expr]]] = field(default_factory=dict)
    stars: list[str] = field(default_factory=list)  # `from tenacity import *`
    local: dict[str, int] = field(default_factory=dict)  # names the module binds: first line


@dataclass
class _Found:
    sites: dict[str, _Site] = field(default_factory=dict)
    dynamic: dict[str, list[str]] = field(default_factory=dict)

    def annotate(self, report: MigrationReport) -> None:
        for site in self.sites.values():
            op = report.operations.get(site.name)
            if op is None:
                continue
            if op.site is None:  # the operation's first site
                op.library, op.site, op.function = site.library, site.site, site.function
                op.dynamic = list(self.dynamic.get(site.name, []))
            elif site.library not in (op.library or "").split("+"):
                op.library = f"{op.library}+{site.library}"
            op.uses += [u for u in [site.site, *site.uses] if u not in op.uses]
            if site.rewrite:
                report.rewrites.setdefault(site.name, []).extend(site.rewrite)


# --- reading files ------------------------------------------------------------------------


def _files(run: _Run, source: Any) -> Iterator[tuple[Path, str, str]]:
    """(path, module name, text) of every Python file of `source`."""
    if isinstance(source, str) and ("\n" in source or not source.strip()):
        yield Path("<text>"), "module", source
        return
    root = Path(source)
    if root.is_file() or root.suffix == ".py":
        paths, base = [root], root.parent
    elif root.is_dir():
        paths = sorted(
            p
            for p in root.rglob("*.py")
            if not any(
                part.startswith(".") or part in ("__pycache__", "node_modules", "site-packages")
                for part in p.relative_to(root).parts
            )
        )
        base = root
    else:
        run.problem(str(source), "no such file or directory")
        return
    for path in paths[:_MAX_FILES]:
        try:
            if path.stat().st_size > _MAX_FILE:
                run.warn(f"{path}: larger than {_MAX_FILE} bytes: skipped")
                continue
            text = path.read_bytes().decode("utf-8-sig")
        except FileNotFoundError:
            run.problem(str(path), "file not found")
            continue
        except (OSError, UnicodeDecodeError) as exc:
            run.warn(f"{path}: cannot read ({exc}): skipped")
            continue
        rel = path.relative_to(base).with_suffix("")
        parts = [p for p in rel.parts if p]
        if parts and parts[-1] == "__init__":
            parts = parts[:-1] or [base.name or "module"]
        yield path, ".".join(parts) or path.stem, text


def _python_source(run: _Run, source: Any) -> _Found:
    found = _Found()
    modules: list[_Module] = []
    for path, name, text in _files(run, source):
        try:
            tree = ast.parse(text, filename=str(path))
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            if str(path) == "<text>" or (isinstance(source, str | Path) and Path(source).is_file()):
                run.problem(str(path), f"not valid Python: {exc}")
            else:
                run.warn(f"{path}: not valid Python ({exc}): skipped")
            continue
        module = _Module(path, name, tree)
        _scan_module(module)
        modules.append(module)
    if run.problems:
        return found
    classes = {
        f"{m.name}.{cls}": (root, attrs, m)
        for m in modules
        for cls, (root, attrs) in m.classes.items()
    }
    for module in modules:
        try:
            _Visitor(run, module, found, classes).visit(module.tree)
        except RecursionError:
            run.problem(str(module.path), "nested too deeply")
    shared: dict[str, _Site] = {}
    for site in found.sites.values():
        shared.setdefault(site.name, site)
    for module in modules:  # uses of shared breakers and retriers, in any module
        _Uses(module, shared).visit(module.tree)
    if not found.sites and not run.problems:
        run.problem(
            "source",
            "no tenacity, stamina, backoff, pybreaker, circuitbreaker, "
            "aiobreaker or purgatory site found",
        )
    for site in found.sites.values():
        _map_site(run, site, found)
    return found


def _scan_module(module: _Module) -> None:
    package = module.name.rsplit(".", 1)[0] if "." in module.name else ""
    bound: set[str] = set()
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    module.imports[alias.asname] = alias.name
                else:
                    module.imports[alias.name.split(".")[0]] = alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".") if package else []
                parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
                base = ".".join([*parts, *([base] if base else [])])
            for alias in node.names:
                if alias.name != "*":
                    module.imports[alias.asname or alias.name] = f"{base}.{alias.name}"
                elif base.split(".")[0] in _LIBRARIES:
                    module.stars.append(base.split(".")[0])
    for node in module.tree.body:  # names the module binds itself shadow imports
        targets: list[ast.expr] = []
        value: ast.expr = _REASSIGNED
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
            module.local.setdefault(node.name, node.lineno)
        elif isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        elif isinstance(node, ast.AugAssign):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Name):
                if target.id in module.consts or len(targets) > 1:
                    module.consts[target.id] = _REASSIGNED
                else:
                    module.consts[target.id] = value
    for node in module.tree.body:  # subclasses configured by class attributes
        if isinstance(node, ast.ClassDef):
            for base_node in node.bases:
                qual = _qual(module, base_node)
                if (
                    qual
                    in (
                        "circuitbreaker.CircuitBreaker",
                        "pybreaker.CircuitBreaker",
                        "aiobreaker.CircuitBreaker",
                    )
                    or qual in module.classes
                ):
                    attrs: dict[str, ast.expr] = {}
                    root = qual
                    if qual in module.classes:
                        root, inherited = module.classes[qual]
                        attrs.update(inherited)
                    for stmt in node.body:
                        if (
                            isinstance(stmt, ast.Assign)
                            and len(stmt.targets) == 1
                            and isinstance(stmt.targets[0], ast.Name)
                        ):
                            attrs[stmt.targets[0].id] = stmt.value
                    module.classes[node.name] = (root, attrs)
                    module.imports.pop(node.name, None)


_STAR_PREFIXES = {
    "tenacity": ("stop_", "wait_", "retry_", "before_", "after_"),
    "backoff": ("on_", "expo", "constant", "fibo", "full_jitter", "random_jitter"),
}


def _public(library: str, name: str) -> bool:
    """Is `name` one that `from library import *` binds (as far as sites go)?"""
    if f"{library}.{name}" in _SITES or name in ("Retrying", "AsyncRetrying"):
        return True
    return name.startswith(_STAR_PREFIXES.get(library, ()))


def _canonical(qual: str) -> str:
    """`tenacity.stop.stop_after_attempt` -> `tenacity.stop_after_attempt`."""
    parts = qual.split(".")
    if parts[0] in _LIBRARIES and len(parts) > 2:
        return f"{parts[0]}.{parts[-1]}"
    return qual


def _qual(module: _Module, node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        if node.id in module.classes:
            return node.id
        if node.id in module.local and node.lineno > module.local[node.id]:
            return None  # the module's own `def retry(...)` shadows the import from here on
        target = module.imports.get(node.id)
        if target is None:
            for library in module.stars:
                if _public(library, node.id):
                    return f"{library}.{node.id}"
        return _canonical(target) if target else None
    if isinstance(node, ast.Attribute):
        inner = _qual(module, node.value)
        return _canonical(f"{inner}.{node.attr}") if inner else None
    return None


def _dotted(node: ast.expr) -> str:
    try:
        return ast.unparse(node)
    except Exception:  # pragma: no cover - ast.unparse of a parsed node
        return "?"


def _evaluate(module: _Module, node: ast.expr, depth: int = 0) -> Any:
    """The value of a literal expression, with module constants, timedelta and library calls
    resolved; raises _Dynamic for anything the source does not state."""
    if depth > 50:
        raise _Dynamic
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Tuple | ast.List):
        return [_evaluate(module, e, depth + 1) for e in node.elts]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _evaluate(module, node.operand, depth + 1)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
        raise _Dynamic
    if isinstance(node, ast.BinOp):
        left = _evaluate(module, node.left, depth + 1)
        right = _evaluate(module, node.right, depth + 1)
        if isinstance(left, _Call | _Ref) or isinstance(right, _Call | _Ref):
            op = {ast.BitOr: "|", ast.BitAnd: "&", ast.Add: "+"}.get(type(node.op))
            if op is None:
                raise _Dynamic
            return _Call(op, [left, right], {})
        if isinstance(left, list) and isinstance(right, list) and isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Mult) and (isinstance(left, list) or isinstance(right, list)):
            items, times = (left, right) if isinstance(left, list) else (right, left)
            if isinstance(times, int) and not isinstance(times, bool) and 0 <= times <= 1000:
                return items * times
            raise _Dynamic
        numbers = (int, float)
        if (
            isinstance(left, numbers)
            and isinstance(right, numbers)
            and not isinstance(left, bool)
            and not isinstance(right, bool)
        ):
            try:
                if isinstance(node.op, ast.Add):
                    return left + right
                if isinstance(node.op, ast.Sub):
                    return left - right
                if isinstance(node.op, ast.Mult):
                    return left * right
                if isinstance(node.op, ast.Div):
                    return left / right
                if isinstance(node.op, ast.Pow) and abs(right) <= 64 and abs(left) <= 1e6:
                    return left**right
            except (ZeroDivisionError, OverflowError):
                raise _Dynamic from None
        raise _Dynamic
    if isinstance(node, ast.Name) and node.id in module.consts and node.id not in module.imports:
        return _evaluate(module, module.consts[node.id], depth + 1)
    if isinstance(node, ast.Name | ast.Attribute):
        qual = _qual(module, node)
        if qual and qual.split(".")[0] in _LIBRARIES:
            return _Ref(qual)
        if isinstance(node, ast.Name) and node.id in __builtins__:  # type: ignore[operator]
            return _Ref(node.id)
        if qual or isinstance(node, ast.Attribute):
            return _Ref(qual or _dotted(node))  # an exception class from elsewhere
        raise _Dynamic
    if isinstance(node, ast.Call):
        qual = _qual(module, node.func) or ""
        if qual == "datetime.timedelta" or qual.endswith(".timedelta"):
            if any(k.arg is None for k in node.keywords):
                raise _Dynamic
            parts = [_evaluate(module, a, depth + 1) for a in node.args]
            named = {str(k.arg): _evaluate(module, k.value, depth + 1) for k in node.keywords}
            try:
                return datetime.timedelta(*parts, **named).total_seconds()
            except (TypeError, ValueError, OverflowError):
                raise _Dynamic from None
        if qual.split(".")[0] in _LIBRARIES:
            if any(k.arg is None for k in node.keywords):
                raise _Dynamic
            args: list[Any] = []
            for a in node.args:
                if isinstance(a, ast.Starred):  # wait_chain(*[wait_fixed(3)] * 3 + [...])
                    spread = _evaluate(module, a.value, depth + 1)
                    if not isinstance(spread, list):
                        raise _Dynamic
                    args += spread
                else:
                    args.append(_evaluate(module, a, depth + 1))
            return _Call(
                qual,
                args,
                {str(k.arg): _evaluate(module, k.value, depth + 1) for k in node.keywords},
            )
    raise _Dynamic


# --- finding sites ------------------------------------------------------------------------


class _Visitor(ast.NodeVisitor):
    def __init__(
        self,
        run: _Run,
        module: _Module,
        found: _Found,
        classes: dict[str, tuple[str, dict[str, ast.expr], _Module]],
    ) -> None:
        self.run, self.module, self.found, self.classes = run, module, found, classes
        self.stack: list[str] = []

    def where(self, node: ast.AST) -> str:
        return f"{self.module.path}:{getattr(node, 'lineno', 0)}"

    def kind_of(self, call: ast.expr) -> tuple[str, str, dict[str, Any]] | None:
        """(library, kind, class defaults) when `call` is a library call."""
        if not isinstance(call, ast.Call):
            return None
        qual = _qual(self.module, call.func)
        if qual is None:
            return None
        if qual in self.module.classes:
            root, attrs = self.module.classes[qual]
            library = root.split(".")[0]
            return library, "breaker", {"class": qual, **attrs}
        if qual in self.classes:  # a subclass defined in another module of the project
            root, attrs, defined = self.classes[qual]
            return root.split(".")[0], "breaker", {"class": qual, "module": defined, **attrs}
        if qual in _SITES:
            library, kind = _SITES[qual]
            return library, kind, {}
        return None

    def add(
        self,
        name: str,
        library: str,
        kind: str,
        node: ast.AST,
        function: str,
        call: ast.Call | None,
        defaults: dict[str, Any] | None = None,
        join: bool = False,
    ) -> _Site:
        taken = {s.name: s for s in self.found.sites.values()}
        base, n = name, 2
        other = taken.get(name)
        if (
            join
            and other is not None
            and other.function == function
            and _group(other.library) != _group(library)
        ):
            # a retry and a breaker decorating one function: one operation, one pipeline
            key = f"{name}#{len(self.found.sites)}"
            if _group(library) == "retry" and other.where_line < getattr(node, "lineno", 0):
                self.run.warn(f"{name}: the breaker decorates the retry there; here the retry "
                              "is outside the breaker (the pipeline's fixed order)")  # fmt: skip
        else:
            while name in taken:
                name, n = f"{base}.{n}", n + 1
            if name != base:
                self.run.warn(f"{self.where(node)}: a second site for {base!r}: it is "
                              f"operation {name!r}")  # fmt: skip
            key = name
        site = _Site(
            name,
            library,
            self.where(node),
            function,
            kind,
            call,
            self.module,
            defaults=defaults or {},
        )
        self.found.sites[key] = site
        return site

    def factory_of(self, decorator: ast.expr) -> _Site | None:
        if not isinstance(decorator, ast.Call) or not isinstance(decorator.func, ast.Name):
            return None
        for site in self.found.sites.values():
            if site.kind == "factory" and site.name == f"{self.module.name}.{decorator.func.id}":
                return site
        return None

    def qualname(self, leaf: str) -> str:
        return ".".join([*self.stack, leaf])

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        self.stack.append(node.name)
        for stmt in node.body:
            self.visit(stmt)
        self.stack.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        qualname = self.qualname(node.name)
        op_name = f"{self.module.name}.{qualname}"
        for decorator in node.decorator_list:
            found = self.kind_of(decorator)
            factory = self.factory_of(decorator)
            if factory is not None:  # purgatory: @breakers("circuit", threshold=..., ttl=...)
                assert isinstance(decorator, ast.Call)
                assert factory.call is not None
                inherited = {k.arg: k.value for k in factory.call.keywords if k.arg}
                site = self.add(op_name, "purgatory", "decorator", decorator, qualname,
                                decorator, {**inherited, "module": factory.module},
                                join=True)  # fmt: skip
                site.decorator = decorator
                site.rewrite.append((str(self.module.path), decorator.lineno))
                continue
            if found is None:
                qual = _qual(self.module, decorator)
                if qual in ("tenacity.retry", "circuitbreaker.circuit"):  # bare @retry
                    library = qual.split(".")[0]
                    site = self.add(
                        op_name, library, "decorator", decorator, qualname, None, join=True
                    )
                    site.decorator = decorator
                    site.rewrite.append((str(self.module.path), decorator.lineno))
                else:
                    self.visit(decorator)
                continue
            library, kind, defaults = found
            assert isinstance(decorator, ast.Call)
            site = self.add(
                op_name, library, kind, decorator, qualname, decorator, defaults, join=True
            )
            site.decorator = decorator
            site.rewrite.append((str(self.module.path), decorator.lineno))
            for arg in [*decorator.args, *[k.value for k in decorator.keywords]]:
                self.visit(arg)
        self.stack.append(node.name)
        for stmt in node.body:
            self.visit(stmt)
        self.stack.pop()
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                self.visit(default)

    visit_AsyncFunctionDef = visit_FunctionDef

    def target_name(self, target: ast.expr) -> str | None:
        if isinstance(target, ast.Name):
            return self.qualname(target.id)
        if (
            isinstance(target, ast.Attribute)
            and isinstance(target.value, ast.Name)
            and target.value.id in ("self", "cls")
        ):
            owner = self.stack[:-1] if len(self.stack) > 1 else self.stack
            return ".".join([*owner, target.attr])
        return None

    def assigned(self, targets: list[ast.expr], value: ast.expr, node: ast.AST) -> bool:
        found = self.kind_of(value)
        call = value
        if found is None and isinstance(value, ast.Call) and self.kind_of(value.func):
            found = self.kind_of(value.func)  # fetch = backoff.on_exception(...)(fetch_raw)
            assert isinstance(value.func, ast.Call)
            call = value.func
        if found is None or len(targets) != 1:
            return False
        leaf = self.target_name(targets[0])
        if leaf is None:
            return False
        library, kind, defaults = found
        assert isinstance(call, ast.Call)
        self.add(f"{self.module.name}.{leaf}", library, kind, node, leaf, call, defaults)
        for arg in [*call.args, *[k.value for k in call.keywords]]:
            self.visit(arg)
        return True

    def visit_Assign(self, node: ast.Assign) -> None:
        if not self.assigned(node.targets, node.value, node):
            self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is None or not self.assigned([node.target], node.value, node):
            self.generic_visit(node)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        found = self.kind_of(node.iter)
        if found is not None:
            library, _kind, defaults = found
            function = ".".join(self.stack) or "<module>"
            assert isinstance(node.iter, ast.Call)
            self.add(
                f"{self.module.name}.{function}",
                library,
                "loop",
                node,
                function,
                node.iter,
                defaults,
            )
            for stmt in node.body + node.orelse:
                self.visit(stmt)
            return
        self.generic_visit(node)

    visit_AsyncFor = visit_For

    def visit_Call(self, node: ast.Call) -> None:
        # backoff.on_exception(...)(fn), tenacity.retry(...)(fn), Retrying(...)(fn, ...)
        found = self.kind_of(node.func)
        if found is not None and isinstance(node.func, ast.Call):
            library, kind, defaults = found
            function = _dotted(node.args[0]) if node.args else ".".join(self.stack) or "<module>"
            owner = ".".join(self.stack)
            name = f"{self.module.name}.{owner + '.' if owner else ''}{function}"
            self.add(name, library, "call", node, function, node.func, defaults)
            for arg in [*node.func.args, *[k.value for k in node.func.keywords], *node.args]:
                self.visit(arg)
            return
        found = self.kind_of(node)
        if found is not None:  # a library object built where no name holds it
            library, kind, defaults = found
            function = ".".join(self.stack) or "<module>"
            self.add(
                f"{self.module.name}.{function}", library, kind, node, function, node, defaults
            )
            return
        self.generic_visit(node)


class _Uses(ast.NodeVisitor):
    """Decorators and calls that use a shared breaker or retrier (`@db_breaker`)."""

    def __init__(self, module: _Module, shared: dict[str, _Site]) -> None:
        self.module, self.shared = module, shared

    def resolve(self, node: ast.expr) -> _Site | None:
        if isinstance(node, ast.Name):
            target = self.module.imports.get(node.id)
            name = target if target else f"{self.module.name}.{node.id}"
            return self.shared.get(name) or self.shared.get(f"{self.module.name}.{node.id}")
        if isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            head, _, rest = dotted.partition(".")
            target = self.module.imports.get(head)
            if target:
                return self.shared.get(f"{target}.{rest}")
        return None

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for decorator in node.decorator_list:
            site = self.resolve(decorator)
            if site is not None and site.kind in ("breaker", "retrier", "decorator"):
                where = f"{self.module.path}:{decorator.lineno}"
                site.uses.append(where)
                site.rewrite.append((str(self.module.path), decorator.lineno))
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in ("call", "call_async", "wraps"):
            site = self.resolve(func.value)
        else:
            site = self.resolve(func)
        if site is not None:
            site.uses.append(f"{self.module.path}:{node.lineno}")
        self.generic_visit(node)


# --- mapping one site ---------------------------------------------------------------------


def _map_site(run: _Run, site: _Site, found: _Found) -> None:
    literal: dict[str, Any] = {}
    dynamic: list[str] = []
    labels: dict[str, str] = {}
    group = site.library if site.library in ("tenacity", "stamina", "backoff") else "breaker"
    call = site.call
    args: list[Any] = []
    if call is not None:
        for index, arg in enumerate(call.args):
            try:
                if isinstance(arg, ast.Starred):
                    raise _Dynamic
                value = _evaluate(site.module, arg)
                if site.library != "backoff" and index == 0 and _foreign(value):
                    raise _Dynamic
                args.append(value)
            except _Dynamic:
                args.append(_Dynamic)
                if index == 0 and group == "breaker":  # CircuitBreaker(FAILS), circuit(N)
                    dynamic += _TARGETS["breaker"]["fail_max"]
                elif index == 0 and group == "backoff":  # the wait generator
                    dynamic += _TARGETS["backoff"]["wait_gen"]
                elif index == 0 and site.library == "purgatory":
                    pass  # the circuit's name
                else:
                    dynamic.append(f"<argument {index + 1}>")
        for keyword in call.keywords:
            if keyword.arg is None:
                dynamic += _ALL[group]
                continue
            try:
                value = _evaluate(site.module, keyword.value)
                if keyword.arg in _TARGETS[group] and _foreign(value):
                    raise _Dynamic  # stop_after_attempt(settings.n)
                literal[keyword.arg] = value
            except _Dynamic:
                if group == "tenacity" and keyword.arg == "stop":
                    dynamic += _stop_paths(site.module, keyword.value)
                else:
                    dynamic += _TARGETS[group].get(keyword.arg, [f"({keyword.arg})"])
                labels[keyword.arg] = f"{site.site} {keyword.arg}"
    defined = site.defaults.get("module", site.module)
    for attr, expr in site.defaults.items():  # a subclass's FAILURE_THRESHOLD = 10
        key = attr.lower()
        if attr in ("class", "module") or key in literal:
            continue
        try:
            literal[key] = _evaluate(defined, expr)
        except _Dynamic:
            dynamic += _TARGETS[group].get(key, [f"({key})"])
    previous = run.name
    run.name = site.name
    try:
        op = run.op(site.name)
        before = len(op.entries)
        if site.library == "tenacity":
            _tenacity_site(run, op, site, args, literal)
        elif site.library == "stamina":
            _stamina_site(run, op, site, args, literal)
        elif site.library == "backoff":
            _backoff_site(run, op, site, args, literal)
        else:
            _breaker_site(run, op, site, args, literal)
        renamed: dict[str, str] = {}
        for entry in op.entries[before:]:  # report keys with where they are
            if not entry.key.startswith(site.site):
                renamed[entry.key] = entry.key = f"{site.site} {entry.key}"
        for where, found_labels in op.sources.items():  # so that clamping finds them
            op.sources[where] = [renamed.get(label, label) for label in found_labels]
    finally:
        run.name = previous
    for d in dynamic:
        if d.startswith("<"):  # a positional argument this reader cannot place
            op.unmapped(f"{site.site} {d}", "computed in the code; check it by hand")
    dynamic = list(dict.fromkeys(d for d in dynamic if not d.startswith("<")))
    for path in dynamic:  # never guessed: what the code computes stays out of the config
        section, _, key = path.partition(".")
        table = op.table.get(section)
        if isinstance(table, dict):
            table.pop(key, None)
            if not table:
                op.table.pop(section, None)
        op.entries.append(_Entry(f"{site.site} {path} (dynamic)", 0.0))
        op.warn(f"{path} is computed in the code (not a literal): set it by hand")
    found.dynamic.setdefault(site.name, []).extend(d for d in dynamic if d not in
                                                   found.dynamic.get(site.name, []))  # fmt: skip


def _stop_paths(module: _Module, node: ast.expr) -> list[str]:
    """What a tenacity stop the code computes decides: attempts, the deadline, or both."""
    if isinstance(node, ast.BinOp):
        return _stop_paths(module, node.left) + _stop_paths(module, node.right)
    if isinstance(node, ast.Call):
        name = (_qual(module, node.func) or "").rsplit(".", 1)[-1]
        if name == "stop_after_attempt":
            return ["retry.max_attempts"]
        if name in ("stop_after_delay", "stop_before_delay"):
            return ["retry.deadline"]
        if name in ("stop_any", "stop_all"):
            return [p for arg in node.args for p in _stop_paths(module, arg)]
    return list(_TARGETS["tenacity"]["stop"])


def _group(library: str) -> str:
    return "retry" if library in ("tenacity", "stamina", "backoff") else "breaker"


def _foreign(value: Any) -> bool:
    """Does a setting's value hold a name from outside the library (a variable)?"""
    if isinstance(value, _Ref):
        return value.qual.split(".")[0] not in _LIBRARIES
    if isinstance(value, _Call):
        return any(_foreign(v) for v in [*value.args, *value.kwargs.values()])
    if isinstance(value, list):
        return any(_foreign(v) for v in value)
    return False


def _text(value: Any) -> str:
    """A library value back as tenacity expression text (what `_tenacity` reads)."""
    if isinstance(value, _Ref):
        return value.qual.split(".")[-1]
    if isinstance(value, _Call):
        if value.qual in ("|", "&", "+"):
            return f"({_text(value.args[0])} {value.qual} {_text(value.args[1])})"
        inner = [_text(a) for a in value.args] + [
            f"{k}={_text(v)}" for k, v in value.kwargs.items()
        ]
        return f"{value.qual.split('.')[-1]}({', '.join(inner)})"
    if isinstance(value, float) and not math.isfinite(value):
        return "float('inf')" if value > 0 else "float('-inf')"
    return repr(value)


def _exceptions(op: _Op, site: _Site, value: Any, key: str) -> None:
    names = [
        v.qual if isinstance(v, _Ref) else "?"
        for v in (value if isinstance(value, list) else [value])
    ]
    if names and all(n in _TRANSIENT or n.split(".")[-1] in _BUILTIN_TRANSIENT for n in names):
        op.mapped(f"{site.site} {key}", "the default classifier (these are transient here)")
    else:
        op.unmapped(f"{site.site} {key}", _EXCEPTION_NOTE)


def _tenacity_site(
    run: _Run, op: _Op, site: _Site, args: list[Any], literal: dict[str, Any]
) -> None:
    data: dict[str, Any] = {}
    for key, value in literal.items():
        if key in ("stop", "wait"):
            data[key] = _text(value)
        elif key == "retry":
            if isinstance(value, _Call) and value.qual.endswith("retry_if_exception_type"):
                _exceptions(op, site, value.args[0] if value.args else _Ref("Exception"), key)
            else:
                op.unmapped(
                    f"{site.site} retry",
                    "retry predicates are code: classify errors with a Classifier",
                )
        elif key == "reraise":
            data[key] = value
        elif key in ("sleep",):
            op.ignored(f"{site.site} {key}")
        else:
            data[key] = None if value is None else f"<{key}>"
    if "retry" not in literal:
        op.warn(
            "retry (not set): tenacity retries every exception; here the classifier "
            "retries transient errors only (pass on=... to rs.Retry for more)"
        )
    _tenacity(run, data)
    stated = {k.arg for k in site.call.keywords} if site.call is not None else set()
    if "stop" in stated and "stop" not in literal:  # computed in code: `dynamic` says so
        op.warnings = [w for w in op.warnings if not w.startswith("stop (not set)")]
        op.entries = [e for e in op.entries if e.key != "stop (not set)"]


def _stamina_site(
    run: _Run, op: _Op, site: _Site, args: list[Any], literal: dict[str, Any]
) -> None:
    from ._core import _backoff_max, _Bad, _int, _positive, _retry, _seconds

    where = site.site

    def get(key: str, default: Any, convert: Any) -> Any:
        if key not in literal:
            return default
        if literal[key] is None:
            op.mapped(f"{where} {key}", f"retry ({key} off)")
            return None
        try:
            value = convert(literal[key])
        except _Bad as exc:
            run.problem(f"{where} {key}", str(exc))
            return default
        return value

    attempts = get("attempts", 10, lambda v: _positive(_int(v)))
    timeout = get("timeout", 45.0, lambda v: _positive(_seconds(v)))
    initial = get("wait_initial", 0.1, _seconds)
    maximum = get("wait_max", 5.0, _seconds)
    jitter = get("wait_jitter", 1.0, _seconds)
    base = get("wait_exp_base", 2.0, lambda v: _positive(float(_seconds(v))))
    if "on" in literal:
        _exceptions(op, site, literal["on"], "on")
    known = {"on", "attempts", "timeout", "wait_initial", "wait_max", "wait_jitter",
             "wait_exp_base"}  # fmt: skip
    for key in literal:
        if key not in known:
            op.unmapped(f"{where} {key}", "not a stamina setting this migrator knows")
    for key in ("attempts", "timeout"):
        if key in literal and literal[key] is not None:
            op.mapped(
                f"{where} {key}",
                "retry.max_attempts" if key == "attempts" else "retry.deadline",
                1.0 if key == "attempts" else 0.9,
                ""
                if key == "attempts"
                else "stamina stops once the timeout has "
                "passed; here no wait starts that would cross it",
            )
    exact = not jitter
    for key in ("wait_initial", "wait_max", "wait_jitter", "wait_exp_base"):
        if key in literal:
            op.mapped(f"{where} {key}", "retry.backoff", 1.0 if exact else 0.9)
    if jitter:
        op.warn(
            f"stamina adds up to {jitter:g} s of random jitter to each wait; here the waits "
            "are the exponential ones without it"
        )
        if not any(k in literal for k in ("wait_initial", "wait_max", "wait_jitter")):
            op.entries.append(_Entry(f"{where} wait (stamina's default jitter)", 0.9))
    if attempts is None and timeout is None:
        op.warn(
            "stamina retries forever (attempts=None, timeout=None); unbounded retries are "
            "refused here: max_attempts and deadline come from the preset"
        )
        op.entries.append(_Entry(f"{where} attempts", 0.5))
    if "attempts" not in literal or "timeout" not in literal:
        op.warn("omitted settings take stamina's defaults: 10 attempts, 45 s timeout")
    top = max(float(maximum), float(initial))
    backoff = {
        "kind": "exponential",
        "initial": float(initial),
        "multiplier": float(base),
        "maximum": top if math.isfinite(top) else _backoff_max(initial, base, attempts or 10),
        "jitter": False,
    }
    if float(base) < 1:
        run.problem(f"{where} wait_exp_base", f"must be >= 1, got {base}")
        return
    _retry(
        op,
        attempts=attempts if attempts is not None else (100 if timeout else None),
        backoff=backoff,
        deadline=timeout,
    )
    if attempts is None and timeout is None:
        op.table["retry"].pop("max_attempts", None)
        op.table["retry"].pop("deadline", None)


def _backoff_site(
    run: _Run, op: _Op, site: _Site, args: list[Any], literal: dict[str, Any]
) -> None:
    from ._core import _backoff_max, _Bad, _int, _positive, _retry, _seconds

    where = site.site
    gen = args[0] if args else literal.pop("wait_gen", _Ref("backoff.expo"))
    if (
        site.call is not None
        and site.call.func
        and _qual(site.module, site.call.func) == "backoff.on_predicate"
    ):
        op.unmapped(
            f"{where} on_predicate", "retrying on a result is code: pass Classifier(result=...)"
        )
    elif len(args) > 1:
        _exceptions(op, site, args[1], "exception")
    elif "exception" in literal:
        _exceptions(op, site, literal.pop("exception"), "exception")

    def get(key: str, convert: Any) -> Any:
        if key not in literal or literal[key] is None:
            return None
        try:
            return convert(literal[key])
        except _Bad as exc:
            run.problem(f"{where} {key}", str(exc))
            return None

    tries = get("max_tries", lambda v: _positive(_int(v)))
    max_time = get("max_time", lambda v: _positive(_seconds(v)))
    if tries is not None:
        op.mapped(f"{where} max_tries", "retry.max_attempts")
    if max_time is not None:
        op.mapped(
            f"{where} max_time",
            "retry.deadline",
            0.9,
            "backoff shortens the last wait "
            "to end at max_time and tries once more; here no wait crosses the deadline",
        )
    if tries is None and max_time is None:
        op.warn(
            "backoff retries forever without max_tries or max_time; unbounded retries are "
            "refused here: max_attempts and deadline come from the preset"
        )
        op.entries.append(_Entry(f"{where} max_tries", 0.5))
    gen_name = gen.qual.split(".")[-1] if isinstance(gen, _Ref) else "?"
    jitter_ref = literal.get("jitter", _Ref("backoff.full_jitter"))
    jitter_name = (
        "none"
        if jitter_ref is None
        else (jitter_ref.qual.split(".")[-1] if isinstance(jitter_ref, _Ref) else "?")
    )
    jitters: dict[str, str | bool] = {"full_jitter": "full", "none": False}
    jitter = jitters.get(jitter_name, False)
    jitter_exact = jitter_name in ("full_jitter", "none")
    attempts = tries if tries is not None else 100 if max_time else 5
    backoff: dict[str, Any] | None = None
    try:
        if gen_name == "expo":
            factor = _seconds(literal.get("factor", 1))
            base = float(_seconds(literal.get("base", 2)))
            cap = literal.get("max_value")
            maximum = _seconds(cap) if cap is not None else _backoff_max(factor, base, attempts)
            if base < 1:
                raise _Bad(f"base must be >= 1, got {base:g}")
            backoff = {
                "kind": "exponential",
                "initial": factor,
                "multiplier": base,
                "maximum": max(maximum, factor),
                "jitter": jitter,
            }
            quality = 1.0 if jitter_exact else 0.8
        elif gen_name == "constant":
            interval = literal.get("interval", args[2] if len(args) > 2 else 1)
            delay = _seconds(interval)
            backoff = {"kind": "constant", "delay": delay, "jitter": jitter or False}
            quality = 1.0 if jitter_exact else 0.8
        elif gen_name == "fibo":
            cap = literal.get("max_value")
            maximum = _seconds(cap) if cap is not None else _backoff_max(1.0, 1.618, attempts)
            backoff = {
                "kind": "exponential",
                "initial": 1.0,
                "multiplier": 1.618,
                "maximum": max(maximum, 1.0),
                "jitter": jitter,
            }
            quality = 0.7
        else:
            quality = 0.0
    except _Bad as exc:
        run.problem(f"{where} wait_gen", str(exc))
        return
    label = f"{where} wait_gen ({gen_name})"
    if backoff is None:
        op.unmapped(label, "a custom wait generator is code: pick a Backoff kind")
    else:
        op.mapped(
            label,
            "retry.backoff",
            quality,
            ""
            if quality == 1
            else "Fibonacci waits (1, 1, 2, 3, 5...) are approximated by x1.618 exponential ones"
            if gen_name == "fibo"
            else "the jitter function differs",
        )
    for key in ("giveup", "on_success", "on_backoff", "on_giveup"):
        if key in literal:
            op.unmapped(f"{where} {key}", "hooks are code: subscribe to resilience.events")
    read = {"max_tries", "max_time", "factor", "base", "max_value", "interval", "jitter",
            "wait_gen", "giveup", "on_success", "on_backoff", "on_giveup", "exception",
            "predicate"}  # fmt: skip
    for key in literal:
        if key in ("logger", "backoff_log_level", "giveup_log_level", "raise_on_giveup"):
            op.ignored(f"{where} {key}")
        elif key not in read:
            op.unmapped(f"{where} {key}", "not a backoff setting this migrator knows")
    _retry(
        op, attempts=attempts if (tries or max_time) else None, backoff=backoff, deadline=max_time
    )
    if not (tries or max_time):
        op.table["retry"].pop("max_attempts", None)
        op.table["retry"].pop("deadline", None)


def _breaker_site(
    run: _Run, op: _Op, site: _Site, args: list[Any], literal: dict[str, Any]
) -> None:
    library = site.library
    data = dict(literal.items())
    data.pop("name", None)
    where = site.site
    for key in ("exclude", "expected_exception"):
        if key in data:
            value = data.pop(key)
            if (
                key == "expected_exception"
                and isinstance(value, _Ref)
                and value.qual in ("Exception", "BaseException")
            ):
                op.mapped(
                    f"{where} {key}",
                    "(every exception counts)",
                    0.9,
                    "here only the failures the classifier calls transient count",
                )
            else:
                op.unmapped(
                    f"{where} {key}", "exceptions are code: classify them with a Classifier"
                )
    for key in list(data):
        if not isinstance(data[key], int | float | str | bool | type(None)):
            op.unmapped(
                f"{where} {key}",
                "code, not configuration (listeners, storage, fallbacks): see the docs",
            )
            del data[key]
    if library == "aiobreaker":
        if "timeout_duration" in data:
            data["reset_timeout"] = data.pop("timeout_duration")
        _pybreaker(run, data)
    elif library == "pybreaker":
        if args and "fail_max" not in data and args[0] is not _Dynamic:
            data["fail_max"] = args[0]
        _pybreaker(run, data)
    elif library == "purgatory":
        own_threshold, own_ttl = data.pop("threshold", None), data.pop("ttl", None)
        threshold = own_threshold if own_threshold is not None else data.pop("default_threshold", 5)
        ttl = own_ttl if own_ttl is not None else data.pop("default_ttl", 30)
        data.pop("default_threshold", None)
        data.pop("default_ttl", None)
        if args and isinstance(args[0], str):
            op.mapped(f"{where} circuit", "the operation (one breaker state per circuit name)")
        _circuitbreaker(run, {"failure_threshold": threshold, "recovery_timeout": ttl, **data})
    else:
        if args and "failure_threshold" not in data and args[0] is not _Dynamic:
            data["failure_threshold"] = args[0]
        _circuitbreaker(run, data)
