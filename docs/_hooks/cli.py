"""mkdocs hook: the CLI reference (docs/cli.md) is generated from the argparse parser.

The page holds the marker `<!-- cli-reference -->`; at build time it becomes the `--help` of
`resilience` and of each subcommand, so the page cannot drift from the parser.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

MARKER = "<!-- cli-reference -->"


def reference() -> str:
    """Markdown: one section per command, its `--help` in a text block."""
    from resilience.__main__ import _parser

    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal: pin it
    try:
        parser = _parser()
        out = ["## resilience", "", "```text", parser.format_help().rstrip(), "```", ""]
        for name, sub in _subcommands(parser):
            out += [f"## resilience {name}", "", "```text", sub.format_help().rstrip(), "```", ""]
        return "\n".join(out)
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns


def _subcommands(
    parser: argparse.ArgumentParser, prefix: str = ""
) -> list[tuple[str, argparse.ArgumentParser]]:
    out: list[tuple[str, argparse.ArgumentParser]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append((prefix + name, sub))
                out += _subcommands(sub, prefix + name + " ")
    return out


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, reference())
    return markdown
