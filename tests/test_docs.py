"""The documentation stays true to the command line and stays a user's documentation.

* docs/cli.md documents every subcommand (nested ones such as ``ncodec train image`` too) under
  a heading naming it, and every long option of that subcommand inside its section, as the real
  argparse parser builds them;
* README.md is a short user's page (at most 250 lines);
* README.md, CHANGELOG.md and every page under docs/ carry no development history (dates,
  numbered work sessions, issue numbers) and no paths into the developers' data folder;
* relative links in those pages point at files that exist;
* docs/format.md names the versions and tail masses the code uses, and its container example is
  what the code writes.
"""
from __future__ import annotations

import argparse
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
CLI_MD = DOCS / "cli.md"
README_MAX_LINES = 250

# (what is forbidden, pattern); case-insensitive
FORBIDDEN = [
    ("a path into ../shared", re.compile(r"\.\./shared")),
    ("a work-session reference", re.compile(r"\bsessions?\b", re.IGNORECASE)),
    ("an issue number", re.compile(r"\bissues?\s+#?\d", re.IGNORECASE)),
    ("a date", re.compile(r"\b20\d\d-\d\d-\d\d\b")),
]
_PARSER_NAMES = ("build_parser", "make_parser", "get_parser", "create_parser", "parser")


def _build_parser() -> argparse.ArgumentParser:
    """The ``ncodec`` command's parser, from whichever function of ``ncodec.cli`` builds it."""
    from ncodec import cli

    candidates = [getattr(cli, n) for n in _PARSER_NAMES if callable(getattr(cli, n, None))]
    candidates += [f for n, f in sorted(vars(cli).items())
                   if "parser" in n.lower() and callable(f) and not isinstance(f, type) and f not in candidates]
    for make in candidates:
        try:
            params = inspect.signature(make).parameters
        except (TypeError, ValueError):
            params = {}
        # a parser that fills subcommands lazily is asked for the complete one
        kwargs = {name: False for name in ("defer", "lazy") if name in params}
        try:
            parser = make(**kwargs)
        except TypeError:           # needs arguments: not the builder
            continue
        if isinstance(parser, argparse.ArgumentParser):
            return parser
    pytest.fail("ncodec.cli has no function that builds the argument parser")


def _subcommands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, parser) of every subcommand, nested ones included, e.g. (("train", "image"), p)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _subcommands(sub, (*path, name))


def _long_options(parser: argparse.ArgumentParser) -> list[str]:
    return sorted({s for a in parser._actions if not isinstance(a, argparse._HelpAction)
                   for s in a.option_strings if s.startswith("--")})


def _has_subcommands(parser: argparse.ArgumentParser) -> bool:
    return any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)


def _section(text: str, command: str) -> str | None:
    """The part of ``text`` under the heading that names ``command`` in backticks, up to the next
    heading of the same or a higher level (None if there is no such heading)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(#+)\s", line)
        if m and re.search(r"`" + re.escape(command) + r"`", line):
            level = len(m.group(1))
            end = next((j for j in range(i + 1, len(lines))
                        if (h := re.match(r"^(#+)\s", lines[j])) and len(h.group(1)) <= level), len(lines))
            return "\n".join(lines[i:end])
    return None


def _pages() -> list[Path]:
    return [README, ROOT / "CHANGELOG.md", *sorted(DOCS.rglob("*.md"))]


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    return _build_parser()


@pytest.fixture(scope="module")
def cli_md() -> str:
    assert CLI_MD.is_file(), "docs/cli.md is missing"
    return CLI_MD.read_text(encoding="utf-8")


def test_parser_has_the_known_subcommands(parser):
    """The walk below finds nested subcommands (a parser change that hid them would make the
    documentation checks vacuous)."""
    found = {" ".join(path) for path, _ in _subcommands(parser)}
    for command in ("encode", "decode", "info", "models", "demo", "train image", "eval audio", "bench", "plot"):
        assert command in found, f"ncodec {command} is no longer a subcommand"


def test_every_subcommand_has_a_section_in_cli_md(parser, cli_md):
    missing = [" ".join(path) for path, _ in _subcommands(parser)
               if _section(cli_md, "ncodec " + " ".join(path)) is None]
    assert not missing, f"docs/cli.md has no heading for: {', '.join('ncodec ' + m for m in missing)}"


def test_every_long_option_is_documented_in_its_subcommand_section(parser, cli_md):
    undocumented = []
    for path, sub in _subcommands(parser):
        command = "ncodec " + " ".join(path)
        section = _section(cli_md, command)
        if section is None:
            continue        # reported by the test above
        for flag in _long_options(sub):
            if not re.search(re.escape(flag) + r"(?![\w-])", section):
                undocumented.append(f"{command} {flag}")
    assert not undocumented, "docs/cli.md does not document: " + "; ".join(undocumented)


def test_every_long_option_appears_in_cli_md(parser, cli_md):
    """The plain form of the requirement: every option string appears somewhere in docs/cli.md."""
    flags = {f for _, sub in _subcommands(parser) for f in _long_options(sub)} | set(_long_options(parser))
    missing = sorted(f for f in flags if f not in cli_md)
    assert not missing, f"docs/cli.md never mentions {', '.join(missing)}"


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"


def test_readme_keeps_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/ncodec demo" in text
    assert 'python3 -m venv .venv && .venv/bin/pip install -q -e ".[test]" && .venv/bin/python -m pytest -q' in text


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_pages_carry_no_development_history(page):
    if not page.exists():
        pytest.fail(f"{page.relative_to(ROOT)} is missing")
    problems = []
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        for what, pattern in FORBIDDEN:
            if m := pattern.search(line):
                problems.append(f"line {number}: {what} ({m.group(0)!r})")
    assert not problems, f"{page.relative_to(ROOT)}: " + "; ".join(problems)


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    if not page.exists():
        pytest.fail(f"{page.relative_to(ROOT)} is missing")
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0]
        if path and not (page.parent / path).exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)} links to missing files: {', '.join(broken)}"


def test_docs_pages_exist():
    for name in ("cli.md", "api.md", "format.md", "design.md", "models.md", "experiments.md",
                 "results/image.md", "results/video.md", "results/audio.md"):
        assert (DOCS / name).is_file(), f"docs/{name} is missing"


def _format_md() -> str:
    return (DOCS / "format.md").read_text(encoding="utf-8")


def test_format_md_names_the_current_versions_and_tail_masses():
    """docs/format.md states the container format and coder versions the code writes, and the tail
    masses of the image and audio Gaussian rows an independent decoder must rebuild."""
    from ncodec.audio.latent import TAIL_MASS as AUDIO_TAIL_MASS
    from ncodec.container import CODER_VERSION, FORMAT_VERSION
    from ncodec.entropy.tables import TAIL_MASS as IMAGE_TAIL_MASS

    def short(x: float) -> str:         # 1e-09 -> 1e-9
        return re.sub(r"e-0*(\d)", r"e-\1", f"{x:.0e}")

    text = _format_md()
    assert f"**container format {FORMAT_VERSION}**, **coder {CODER_VERSION}**" in text
    assert f"container format version: {FORMAT_VERSION}" in text
    assert f"Image: `T = {short(IMAGE_TAIL_MASS)}`" in text
    assert f"audio: `T = {short(AUDIO_TAIL_MASS)}`" in text


def test_format_md_container_example_is_what_the_code_writes():
    """The annotated 79-byte example in docs/format.md is byte for byte what ``Container`` writes."""
    from ncodec.container import Container

    text = _format_md()
    start = text.index("```\n", text.index("Example: a container")) + 4
    example = bytearray()
    for line in text[start:text.index("```", start)].splitlines():
        for token in line.split():
            if not re.fullmatch(r"[0-9a-f]{2}", token):
                break
            example.append(int(token, 16))
    written = Container("audio", "mdct", bytes(range(8)), {"n": -3, "f": 0.5, "s": "é", "b": b"\x01\x02",
                                                          "l": [1, -2, 300]}, {"z": b"ab", "y": b"xyz"}).to_bytes()
    assert bytes(example) == written
    assert Container.from_bytes(bytes(example)).fields["l"] == [1, -2, 300]
