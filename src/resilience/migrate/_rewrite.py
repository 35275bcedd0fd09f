"""`resilience migrate src/ --rewrite`: a libcst codemod that puts `@rs.resilient("<op>")` in
place of each site's decorator, as a unified diff; files are written only when asked.

Everything that is not a site's decorator is kept byte for byte (libcst keeps comments and
formatting); `import resilience as rs` is added once per changed file, after its imports.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._core import MigrationError
from ._report import MigrationReport


def _transform(text: str, lines: dict[int, str], label: str) -> str:
    try:
        import libcst as cst
        from libcst.metadata import MetadataWrapper, PositionProvider
    except ImportError:
        raise MigrationError(
            [("--rewrite", "needs libcst: pip install 'resilience-primitives[migrate]'")]
        ) from None

    class Decorators(cst.CSTTransformer):
        METADATA_DEPENDENCIES = (PositionProvider,)

        def __init__(self) -> None:
            super().__init__()
            self.changed = False

        def _line(self, node: cst.CSTNode) -> int:
            return int(self.get_metadata(PositionProvider, node).start.line)

        def leave_FunctionDef(
            self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef
        ) -> cst.FunctionDef:
            kept: list[cst.Decorator] = []
            placed: set[str] = set()
            for original, updated in zip(
                original_node.decorators, updated_node.decorators, strict=True
            ):
                op = lines.get(self._line(original.decorator))
                if op is None:
                    kept.append(updated)
                    continue
                self.changed = True
                if op in placed:  # two decorators of one operation: one resilient()
                    continue
                placed.add(op)
                expression = cst.parse_expression(f"rs.resilient({json.dumps(op)})")
                kept.append(updated.with_changes(decorator=expression))
            if not self.changed:
                return updated_node
            return updated_node.with_changes(decorators=kept)

        def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
            if not self.changed or _has_rs_import(updated_node):
                return updated_node
            body = list(updated_node.body)
            index = 0
            for i, stmt in enumerate(body):
                if _is_import_or_docstring(stmt, i):
                    index = i + 1
                else:
                    break
            body.insert(index, cst.parse_statement("import resilience as rs\n"))
            return updated_node.with_changes(body=body)

    try:
        module = cst.parse_module(text)
    except Exception as exc:  # libcst's ParserSyntaxError
        raise MigrationError([(label, f"libcst cannot parse it: {exc}")]) from None
    wrapper = MetadataWrapper(module)
    result = wrapper.visit(Decorators())
    return str(result.code)


def _has_rs_import(module: Any) -> bool:
    import libcst as cst

    for stmt in module.body:
        if isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                if isinstance(small, cst.Import):
                    for alias in small.names:
                        name = cst.Module([]).code_for_node(alias.name)
                        asname = alias.asname
                        bound = (
                            cst.Module([]).code_for_node(asname.name)
                            if asname is not None
                            else name
                        )
                        if name == "resilience" and bound == "rs":
                            return True
    return False


def _is_import_or_docstring(stmt: Any, index: int) -> bool:
    import libcst as cst

    if not isinstance(stmt, cst.SimpleStatementLine):
        return False
    for small in stmt.body:
        if isinstance(small, cst.Import | cst.ImportFrom):
            continue
        if index == 0 and isinstance(small, cst.Expr) and isinstance(small.value, cst.SimpleString):
            continue
        return False
    return True


def rewrite(report: MigrationReport, *, write: bool = False) -> str:
    """The unified diff that replaces each site's decorator with `@rs.resilient(...)`.

    Args:
        report: a report of `migrate(..., format="python")`.
        write: apply the changes to the files (default: only return the diff).

    Returns:
        The unified diff of every changed file ("" when nothing changes).

    Raises:
        MigrationError: libcst is missing, or a file cannot be read, parsed or written.

    Example:
        >>> import pathlib, tempfile
        >>> from resilience import migrate
        >>> from resilience.migrate import rewrite
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "jobs.py").write_text(
        ...     "import pybreaker\\n\\n@pybreaker.CircuitBreaker(fail_max=3)\\ndef run():\\n"
        ...     "    pass\\n")
        >>> for line in rewrite(migrate.migrate(d)).splitlines()[-6:-2]:
        ...     print(line)
        +import resilience as rs
        <BLANKLINE>
        -@pybreaker.CircuitBreaker(fail_max=3)
        +@rs.resilient("jobs.run")
    """
    per_file: dict[str, dict[int, str]] = {}
    for op, places in report.rewrites.items():
        for path, line in places:
            per_file.setdefault(path, {})[line] = op
    out: list[str] = []
    for path, lines in sorted(per_file.items()):
        if path == "<text>":
            continue
        target = Path(path)
        try:
            text = target.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MigrationError([(path, f"cannot read: {exc}")]) from None
        new = _transform(text, lines, path)
        if new == text:
            continue
        out += _diff(text.splitlines(keepends=True), new.splitlines(keepends=True), path)
        if write:
            try:
                target.write_bytes(new.encode("utf-8"))
            except OSError as exc:
                raise MigrationError([(path, f"cannot write: {exc}")]) from None
    return "".join(out)


def _diff(old: Sequence[str], new: Sequence[str], path: str) -> list[str]:
    try:
        shown = str(Path(path).resolve().relative_to(Path.cwd()))
        before, after = f"a/{shown}", f"b/{shown}"
    except (ValueError, OSError):
        before = after = path
    lines = list(difflib.unified_diff(old, new, before, after))
    return [line if line.endswith("\n") else line + "\n" for line in lines]
