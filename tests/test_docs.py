"""Every ```python block in docs/ (sub-folders too) and README.md runs as written (each page in
one namespace)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([*ROOT.joinpath("docs").rglob("*.md"), ROOT / "README.md"])
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = BLOCK.findall(page.read_text(encoding="utf-8"))
    if not blocks:
        pytest.skip("no python examples on this page")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    for block in blocks:
        exec(compile(block, str(page), "exec"), namespace)


def _nav_pages(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [p for value in node.values() for p in _nav_pages(value)]
    if isinstance(node, list):
        return [p for item in node for p in _nav_pages(item)]
    return []


def test_the_nav_lists_every_page_once() -> None:
    import yaml

    site = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    listed = _nav_pages(site["nav"])
    docs = ROOT / "docs"
    pages = sorted(p.relative_to(docs).as_posix() for p in docs.rglob("*.md")
                   if not p.relative_to(docs).as_posix().startswith("_"))  # fmt: skip
    assert sorted(set(listed)) == pages, "pages missing from (or extra in) mkdocs.yml's nav"
    assert len(listed) == len(set(listed)), "a page listed twice in mkdocs.yml's nav"


def test_the_api_reference_covers_every_public_module() -> None:
    reference = "\n".join(
        p.read_text(encoding="utf-8") for p in (ROOT / "docs" / "api").glob("*.md")
    )
    modules = ["resilience.integrations.httpx", "resilience.integrations.openai",
               "resilience.integrations.anthropic", "resilience.integrations.requests",
               "resilience.integrations.asgi", "resilience.integrations.opentelemetry",
               "resilience.crdt", "resilience._deadline.deadline", "resilience.testing",
               "resilience.chaos", "resilience.metrics", "resilience.events"]  # fmt: skip
    for module in modules:
        assert f"::: {module}\n" in reference, module
