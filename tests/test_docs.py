"""The README and docs/: every relative link resolves, every page is reachable, the two commands exist."""

import re
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

PAGES = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
# [text](target) and ![alt](target), outside code; the target up to a space, ')' or '#'.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s#]+)(?:#[^)]*)?\)")


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    return [target for target in LINK.findall(text) if not re.match(r"^[a-z]+:", target)]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_resolves(page):
    missing = [target for target in links(page) if not (page.parent / target).exists()]
    assert missing == [], f"{page.relative_to(PROJECT_ROOT)} links to missing files: {missing}"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(PROJECT_ROOT / target).resolve() for target in links(PROJECT_ROOT / "README.md")}
    pages = {page.resolve() for page in (PROJECT_ROOT / "docs").glob("*.md")}
    assert sorted(page.name for page in pages - linked) == []


def test_the_readme_fits_on_a_few_screens():
    assert len((PROJECT_ROOT / "README.md").read_text().splitlines()) <= 125


def test_the_two_commands_exist():
    text = (PROJECT_ROOT / "README.md").read_text()
    block = re.search(r"## Two commands.*?```bash\n(.*?)```", text, flags=re.DOTALL)
    assert block, "the README has a 'Two commands' section with a bash block"
    commands = [line.split("#")[0].split() for line in block.group(1).splitlines() if line.strip()]
    assert [command[:2] for command in commands] == [["bash", "scripts/reproduce.sh"], ["bash", "scripts/test.sh"]]
    assert all((PROJECT_ROOT / command[1]).is_file() for command in commands)
    # And the CI runs exactly the README's test command.
    assert "bash scripts/test.sh" in (PROJECT_ROOT / ".ci/run").read_text()
