"""The README and the docs site against the program: options they name exist, every command has its page with all
its options, the quick start writes only into the ignored out/, and the README's commands are what .ci/run runs."""

from __future__ import annotations

import argparse
import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from reenact.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# Every page a newcomer reads (the experiment log is history: the options of its time).
PAGES = [ROOT / "README.md", ROOT / "models" / "MODEL_CARD.md", ROOT / "probes" / "README.md",
         *sorted(p for p in DOCS.rglob("*.md") if p.name != "model-log.md")]
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


COMMANDS = _commands()


def _options(parser: argparse.ArgumentParser) -> list[str]:
    """The options a command has (a hidden one, there only to refuse a mistake with a reason, is not one)."""
    return [s for action in parser._actions if action.help != argparse.SUPPRESS for s in action.option_strings]


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {s for s in _options(parser) if s.startswith("--")}


ANY_FLAG = set().union(*(_flags(p) for p in COMMANDS.values())) | {"--help", "--version"}


def _code(text: str) -> tuple[list[str], list[str]]:
    """(lines of fenced code blocks, inline code spans) of a Markdown text."""
    blocks = [line for block in re.findall(r"^ *```[^\n]*\n(.*?)^ *```", text, flags=re.DOTALL | re.MULTILINE)
              for line in block.splitlines()]
    prose = re.sub(r"^ *```.*?^ *```", "", text, flags=re.DOTALL | re.MULTILINE)
    return blocks, [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)]  # spans may wrap lines


def _invocations(chunk: str) -> list[tuple[str, list[str]]]:
    """Each `reenact COMMAND ...` in a line of code or a code span, with the options given to it."""
    chunk = chunk.split(" #")[0]
    found = []
    for match in re.finditer(r"\breenact (\w+)(.*?)(?=\breenact \w|$)", chunk):
        command, rest = match.groups()
        if command in COMMANDS:
            found.append((command, FLAG.findall(rest)))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_options_a_page_names_exist(page: Path) -> None:
    text = page.read_text()
    blocks, spans = _code(text)
    wrong = [f"reenact {command} {flag}" for chunk in blocks + spans for command, flags in _invocations(chunk)
             for flag in flags if flag not in _flags(COMMANDS[command]) | {"--help"}]
    # A span that is an option on its own (`--au AU12=+1.5`): on a command's page, that command's; elsewhere, any's.
    command = page.stem if page.parent == DOCS / "commands" and page.stem in COMMANDS else None
    allowed = _flags(COMMANDS[command]) | {"--help"} if command else ANY_FLAG
    wrong += [span for span in spans if span.startswith("--") and FLAG.match(span).group() not in allowed]
    assert not wrong, f"{page.relative_to(ROOT)} names options that do not exist: {sorted(set(wrong))}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_a_page_with_all_its_options(command: str) -> None:
    """The page carries the marker that the MkDocs hook (docs/hooks.py) turns into the command's --help, and the
    page as the site shows it names every option of the command."""
    page = DOCS / "commands" / f"{command}.md"
    assert page.is_file(), f"reenact {command} has no page {page.relative_to(ROOT)}"
    text = page.read_text()
    assert f"<!-- reenact-help: {command} -->" in text
    assert f"commands/{command}.md" in (ROOT / "mkdocs.yml").read_text(), f"{page.name} is not in mkdocs.yml's nav"
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]'): the rendered page is not checked")
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)

    class Page:  # what the hook reads of MkDocs' page object
        class file:
            src_uri = f"commands/{command}.md"

    shown = hooks.on_page_markdown(text, Page, None, None)
    missing = [s for s in _options(COMMANDS[command]) if s not in shown]
    assert not missing, f"the {command} page does not show {missing}"


def test_the_shared_options_table_is_true() -> None:
    """Each row of the commands overview's table of shared options: its options, in each command it names."""
    text = (DOCS / "commands" / "index.md").read_text()
    table = text.split("## Options shared by several commands", 1)[1].split("\n\n", 2)[1]
    rows = [line.split("|")[1:3] for line in table.splitlines()[2:]]
    assert len(rows) >= 5
    wrong = [f"reenact {command} {flag}" for options, commands in rows for command in re.findall(r"`(\w+)`", commands)
             for flag in FLAG.findall(options) if flag not in _flags(COMMANDS[command])]
    assert not wrong, f"docs/commands/index.md says these exist: {wrong}"


def test_every_docs_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = [p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")]
    assert [p for p in pages if p not in nav] == []


def _block_after(text: str, heading: str) -> list[str]:
    """The lines of the first fenced code block under a heading."""
    section = text.split(heading, 1)[1]
    block = section.split("```", 2)[1]
    return [line.split("  #")[0].strip() for line in block.splitlines()[1:] if line.strip()]


def test_the_quick_start_writes_only_into_the_ignored_out_folder() -> None:
    lines = _block_after((ROOT / "README.md").read_text(), "## Quick start")
    assert "/out/" in (ROOT / ".gitignore").read_text().split()
    written = []
    for line in lines:
        words = shlex.split(line)
        if words[:2] == ["python", "examples/astronaut.py"]:
            written.append(words[2])
        written += [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-o", "--output", "--plot", "--report")]
    assert written and all(path == "out" or path.startswith("out/") for path in written), written


def test_the_readme_installs_and_tests_as_ci_does() -> None:
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    development = _block_after((ROOT / "README.md").read_text(), "## Development")
    assert development and [line for line in development if line not in ci] == []
    assert "python -m pytest -q" in development and "mkdocs build --strict" in development


def test_the_front_pages_stay_short() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150
    assert (ROOT / "models" / "MODEL_CARD.md").stat().st_size <= 10_000
