"""Every `harness ...` command line quoted in README.md and docs/ parses with the CLI's parser,
so a renamed or removed flag fails the suite instead of the reader."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from harness.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
#: the CLI as a user types it: the entry point, the venv's, or the module under torchrun
PREFIX = re.compile(r"(?:^|\s)(?:\.venv/bin/)?(?:harness|-m harness\.cli)(?=\s|$)")


def _code(text: str) -> list[str]:
    """Lines of fenced code blocks (continuations joined) and inline code spans."""
    out: list[str] = []
    for block in re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S):
        out.extend(block.replace("\\\n", " ").splitlines())
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    out.extend(re.findall(r"`([^`\n]+)`", prose))
    return out


def quoted_commands() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for line in _code(doc.read_text()):
            line = line.split(" #")[0].strip()
            m = PREFIX.search(line)
            if m is None:
                continue
            found.append((f"{doc.relative_to(REPO)}: {line}", line[m.end():]))
    return found


COMMANDS = quoted_commands()


def test_the_docs_quote_commands() -> None:
    assert len(COMMANDS) >= 10, COMMANDS     # the extraction itself works


@pytest.mark.parametrize("where,args", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_quoted_command_parses(where: str, args: str) -> None:
    argv = shlex.split(args.replace("\\|", "|"))
    # placeholders (NAME, S, PROFILE): a value of the right type where the flag needs one
    argv = ["0" if prev == "--seed" and tok.isupper() else tok
            for prev, tok in zip(["", *argv], argv) if tok != "..."]
    parser = build_parser()
    subcommands = set(parser._subparsers._group_actions[0].choices)   # noqa: SLF001
    sub = next((i for i, t in enumerate(argv) if t in subcommands), None)
    bare = sub is None or not any(t.startswith("-") for t in argv[sub + 1:])
    try:
        # a complete command must parse; a subcommand named in prose must at least exist
        parser.parse_args(argv + (["--help"] if bare else []))
    except SystemExit as exc:
        if exc.code != 0 or not bare:
            pytest.fail(f"{where}: the CLI refuses it (exit {exc.code})")


def test_relative_links_resolve() -> None:
    """Every relative link of README.md and docs/ points at a file of the repository."""
    broken = []
    for doc in DOCS:
        prose = re.sub(r"```.*?```|`[^`\n]*`", "", doc.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)#\s]+)", prose):
            if not target.startswith(("http://", "https://")) \
                    and not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(REPO)}: {target}")
    assert broken == []
