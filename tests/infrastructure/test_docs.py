"""The README is the front door (CONTRACT §10): short, and every relative link in it and in docs/ resolves.

`make docs` (mkdocs build --strict) checks the links between docs pages; nothing checks the README's
links into docs/, nor catches a docs page that links out of docs/. This does, with the Markdown parser
MkDocs itself uses (Python-Markdown with the same extensions), so a link is what MkDocs would render:
links in code blocks are not links, and anchors are the heading ids the `toc` extension generates.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import markdown
import pytest
from pydantic import BaseModel

from usersync.runtime import settings
from usersync.runtime.metrics import SyncMetric
from usersync_dev.template import REPO_ROOT, load_template

TEMPLATE = load_template()

README = REPO_ROOT / "README.md"
DOCS = REPO_ROOT / "docs"
README_MAX_LINES = 200
# What mkdocs.yml enables that changes what is a link or a heading (admonitions indent their body: without
# the extension a link inside one would be read as a code block and go unchecked).
EXTENSIONS = [
    "toc",
    "tables",
    "admonition",
    "attr_list",
    "md_in_html",
    "pymdownx.superfences",
    "pymdownx.details",
]


class _Hrefs(HTMLParser):
    """Collects every `href` of an `<a>` in rendered HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs.extend(value for name, value in attrs if name == "href" and value)


def _render(path: Path) -> tuple[list[str], set[str]]:
    """The hrefs of a Markdown file and the ids of its headings, as MkDocs would render them."""
    md = markdown.Markdown(extensions=EXTENSIONS)
    parser = _Hrefs()
    parser.feed(md.convert(path.read_text(encoding="utf-8")))

    def ids(tokens: list[dict[str, object]]) -> set[str]:
        found: set[str] = set()
        for token in tokens:
            found.add(str(token["id"]))
            children = token["children"]
            assert isinstance(children, list)
            found |= ids(children)
        return found

    return parser.hrefs, ids(md.toc_tokens)


def broken_links(path: Path, root: Path) -> list[str]:
    """Every relative link in `path` whose file is missing, lies outside `root`, or lacks its anchor."""
    hrefs, own_ids = _render(path)
    problems: list[str] = []
    for href in hrefs:
        parts = urlsplit(href)
        if parts.scheme or parts.netloc:  # https:, mailto:, //host: not ours to check offline
            continue
        target = (path.parent / unquote(parts.path)).resolve() if parts.path else path.resolve()
        if not target.is_relative_to(root.resolve()):
            problems.append(f"{href}: outside {root.name or root}")
        elif not target.exists():
            problems.append(f"{href}: no such file")
        elif parts.fragment and target.suffix == ".md":
            target_ids = own_ids if target == path.resolve() else _render(target)[1]
            if parts.fragment not in target_ids:
                problems.append(f"{href}: no heading with id {parts.fragment!r}")
    return problems


def test_readme_is_a_front_door() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines: move detail into docs/"


def test_readme_links_resolve() -> None:
    hrefs, _ = _render(README)
    assert any(href.startswith("docs/") for href in hrefs), "the README links into docs/"
    assert broken_links(README, REPO_ROOT) == []


@pytest.mark.parametrize("page", sorted(DOCS.rglob("*.md")), ids=lambda p: str(p.relative_to(DOCS)))
def test_docs_links_stay_inside_docs_and_resolve(page: Path) -> None:
    # A link out of docs/ (../bench/results.md) works on GitHub but not on the built site.
    assert broken_links(page, DOCS) == []


def test_the_checker_finds_what_is_broken(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other\n\n## A section\n", encoding="utf-8")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# Page\n\n"
        "[fine](other.md#a-section) [self](#page) [web](https://example.com/x.md)\n\n"
        "[missing](nothere.md) [anchor](other.md#no-such) [out](../README.md) [own](#nope)\n\n"
        "```md\n[in code](ignored.md)\n```\n\n"
        "!!! note\n    [in an admonition](alsomissing.md)\n",
        encoding="utf-8",
    )
    (tmp_path / "README.md").write_text("# R\n", encoding="utf-8")
    assert broken_links(page, tmp_path / "docs") == [
        "nothere.md: no such file",
        "other.md#no-such: no heading with id 'no-such'",
        "../README.md: outside docs",
        "#nope: no heading with id 'nope'",
        "alsomissing.md: no such file",
    ]


# ---------------------------------------------------------------- the pages name what exists
# The configuration page and the runbook are only useful while every name in them is real: a renamed
# parameter, metric or log message must fail here, not in an operator's terminal during an incident.

CONFIGURATION = DOCS / "configuration.md"
RUNBOOK = DOCS / "operating.md"


def _section(path: Path, heading: str) -> str:
    """The text under `## heading`, up to the next `## `."""
    text = path.read_text(encoding="utf-8")
    start = text.index(f"## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _table_names(section: str) -> set[str]:
    """The backticked names in the first column of a Markdown table (`A` / `B` count as two)."""
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([^`]+)`", line.split("|")[1]))
    return names


def _settings_variables() -> set[str]:
    """Every environment variable a function's settings model reads (its fields' aliases)."""
    found: set[str] = set()
    for model in vars(settings).values():
        if isinstance(model, type) and issubclass(model, BaseModel):
            found.update(field.alias for field in model.model_fields.values() if field.alias)
    return found


def _template_variables() -> set[str]:
    names = set(TEMPLATE["Globals"]["Function"]["Environment"]["Variables"])
    for resource in TEMPLATE["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            names.update(resource["Properties"].get("Environment", {}).get("Variables", {}))
    return names


def test_configuration_lists_every_template_parameter() -> None:
    assert _table_names(_section(CONFIGURATION, "Template parameters")) == set(TEMPLATE["Parameters"])


def test_configuration_lists_every_environment_variable() -> None:
    documented = _table_names(_section(CONFIGURATION, "Environment variables"))
    assert documented == _settings_variables() | _template_variables()


def test_runbook_explains_every_metric_and_names_no_other() -> None:
    section = _section(RUNBOOK, "What each metric means")
    assert _table_names(section) == {metric.value for metric in SyncMetric}
    # Anywhere in the runbook, a metric-shaped name is a metric, a parameter or a resource of the template.
    known = {m.value for m in SyncMetric} | set(TEMPLATE["Parameters"]) | set(TEMPLATE["Resources"])
    shaped = re.findall(
        r"`((?:Sync|Webhook|Authorizer|Reconcile)[A-Z]\w*)`", RUNBOOK.read_text(encoding="utf-8")
    )
    assert set(shaped) - known == set()


def test_runbook_log_messages_and_fields_are_logged() -> None:
    source = "\n".join(
        path.read_text(encoding="utf-8")
        for folder in ("layers/shared/usersync", "functions")
        for path in (REPO_ROOT / folder).rglob("*.py")
    )
    text = RUNBOOK.read_text(encoding="utf-8")
    messages = re.findall(
        r"`([a-z][^`]*)`", text.split("Messages worth knowing by heart:")[1].split("\n\n")[0]
    )
    assert len(messages) >= 10
    assert [m for m in messages if f'"{m}"' not in source] == []
    # The fields usersync adds (the second table of "Log fields"); Powertools' own are in the prose above it.
    fields = _table_names(_section(RUNBOOK, "Log fields"))
    assert "errorCode" in fields
    # Each is logged as a key ("userId"), appended (eventType=...) or set (logger.set_correlation_id).
    logged = [f for f in fields if f'"{f}"' in source or f"{f}=" in source or f"set_{f}(" in source]
    assert sorted(fields - set(logged)) == []
