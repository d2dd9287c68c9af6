"""MkDocs hooks (mkdocs.yml `hooks:`): the command pages take their options from reenact's own argument parser.

- A line `<!-- reenact-help: NAME -->` in a page (the rest of the line is for readers of the Markdown on GitHub)
  becomes the `reenact NAME --help` text, read from `reenact.cli.build_parser()` at build time, so a page cannot
  list an option the command lacks or miss one it has.
- Every command must have its page, `commands/NAME.md`, carrying that line: a new command without one fails the
  build (`mkdocs build --strict` runs in `.ci/run`).
- Pages written for GitHub's Markdown (`GITHUB_LISTS`: the experiment log) get their lists in Python-Markdown's
  form: nested lists indented by 4 rather than 2, and a blank line before a list that follows a paragraph, else
  the site runs nested items into their paragraph.
- The pictures in `examples/` (made by the scripts beside them, shown in the README too) are copied into the site
  at `examples/`, so pages link them as the README does.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"^<!-- reenact-help: ([a-z]+) -->.*$", re.MULTILINE)  # the rest of the line: for GitHub
PICTURES = (".jpg", ".png", ".gif")
GITHUB_LISTS = {"model-log.md"}
LIST_ITEM = re.compile(r"^ *([-*+]|\d+\.) ")


@functools.cache
def commands() -> dict[str, argparse.ArgumentParser]:
    """Each `reenact` subcommand's parser, by name."""
    from reenact.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def help_of(parser: argparse.ArgumentParser) -> str:
    """The parser's --help as a terminal 88 columns wide shows it, without colour."""
    saved = {name: os.environ.get(name) for name in ("COLUMNS", "NO_COLOR")}
    os.environ.update(COLUMNS="88", NO_COLOR="1")  # argparse wraps to the terminal's width (COLUMNS)
    try:
        return parser.format_help().rstrip()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name)
            else:
                os.environ[name] = value


def on_files(files: Files, config) -> Files:
    missing = [name for name in commands() if files.get_file_from_path(f"commands/{name}.md") is None]
    if missing:
        raise PluginError(f"no page for reenact {', '.join(missing)}: add docs/commands/NAME.md with its help marker")
    for picture in sorted((ROOT / "examples").iterdir()):
        if picture.suffix in PICTURES:
            files.append(File(f"examples/{picture.name}", str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files


def python_markdown_lists(markdown: str) -> str:
    """GitHub-style lists (nested by 2 spaces, a list straight after a paragraph line) as Python-Markdown reads them.
    For pages without fenced code, whose only indented lines are list content."""
    lines: list[str] = []
    for line in markdown.splitlines():
        indent = len(line) - len(line.lstrip(" "))
        if LIST_ITEM.match(line) and lines and lines[-1].strip() and not LIST_ITEM.match(lines[-1]):
            lines.append("")
        lines.append(" " * indent + line)  # indentation doubled
    return "\n".join(lines) + "\n"


def on_page_markdown(markdown: str, page, config, files) -> str:
    parsers = commands()
    src = page.file.src_uri
    if src in GITHUB_LISTS:
        if "```" in markdown:
            raise PluginError(f"{src}: python_markdown_lists() cannot handle fenced code")
        markdown = python_markdown_lists(markdown)
    if src.startswith("commands/") and src != "commands/index.md":
        name = src.removeprefix("commands/").removesuffix(".md")
        if f"<!-- reenact-help: {name} -->" not in markdown:
            raise PluginError(f"{src}: no '<!-- reenact-help: {name} -->' line for the command's options")

    def help_text(match: re.Match) -> str:
        name = match.group(1)
        if name not in parsers:
            raise PluginError(f"{src}: there is no command 'reenact {name}'")
        return f"```text\n{help_of(parsers[name])}\n```"

    return MARKER.sub(help_text, markdown)
