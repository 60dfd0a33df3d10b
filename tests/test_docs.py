"""The repository explains itself: README and docs link only to what the repository holds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _relative_links(page: Path) -> list[str]:
    links = LINK.findall(page.read_text(encoding="utf-8"))
    return [link for link in links if not re.match(r"[a-z]+:", link) and not link.startswith("#")]


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_every_relative_link_resolves_inside_the_repository(page: Path) -> None:
    # Prepare
    links = _relative_links(page)

    # Execute
    targets = [(page.parent / link.split("#")[0]).resolve() for link in links]

    # Assert
    outside = [str(t) for t in targets if not t.is_relative_to(ROOT)]
    missing = [str(t) for t in targets if not t.exists()]
    assert outside == [] and missing == []


def test_readme_links_the_architecture_map_which_covers_flow_trust_and_gaps() -> None:
    # Prepare
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    architecture = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")

    # Execute
    headings = re.findall(r"^## (.+)$", architecture, flags=re.MULTILINE)

    # Assert
    assert "docs/architecture.md" in _relative_links(ROOT / "README.md")
    assert "shared/" not in readme
    assert {"How a job flows", "How the money flows", "Trust assumptions"} <= set(headings)
    assert "What is not yet defended" in headings
