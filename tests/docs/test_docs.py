"""The documentation is tested: links resolve, examples run, commands and settings exist.

Conventions for ``docs/*.md`` (and README.md):

* every relative link (``[text](path)``, ``[text](path#anchor)``, ``[text](#anchor)``)
  names a file that exists and, for a Markdown file, a heading that exists;
* every ```` ```python ```` block runs, unless the line before its fence (blank lines
  aside) is ``<!-- skip -->``. The runnable blocks of one page run in order in ONE fresh
  Python process, like the cells of a notebook (names defined in one block are seen by
  the next), in a fresh temporary working directory with ``LOOPLINE_HOME`` inside it and
  no other ``LOOPLINE_*`` variable set. A failure points at the page and its line. Skipped
  blocks must still compile. The slow tests run every page again on PostgreSQL, S3 and
  Redis (the team shape: only the settings change);
* every ``loopline ...`` command line in a ```` ```bash ````, ```` ```sh ```` or
  ```` ```console ```` block (in console blocks, the lines after a ``$`` prompt) parses
  with the real Typer app: the sub-commands exist, the options exist, the required
  arguments are there and the values have the right types. ``loopline ...`` in inline code
  must name a real command with real options (placeholders such as NAME are allowed
  there). ``make X`` names a Makefile target;
* every ``LOOPLINE_*`` variable the docs name is read somewhere in the code;
* every ``loopline`` command is documented somewhere, and docs/README.md links every page.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer.main

from loopline.cli.main import app
from tests.conftest import env_without_loopline

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
FILES = [ROOT / "README.md", *PAGES]
SKIP = "<!-- skip -->"
SHELLS = {"bash", "sh", "shell", "console"}
# Examples are small; a page that takes longer than this is a defect of the page.
PAGE_TIMEOUT_S = 240

_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_INLINE = re.compile(r"(`+)(.+?)\1")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_SETTING = re.compile(r"\bLOOPLINE_[A-Z0-9_]*[A-Z0-9]\b")


@dataclass(frozen=True)
class Block:
    """A fenced code block: its page, the line of its first code line, language, text."""

    page: Path
    line: int
    lang: str
    code: str
    skip: bool

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def parse(page: Path) -> tuple[list[Block], list[tuple[int, str]]]:
    """The page's fenced blocks, and its prose lines (outside fences) with their numbers."""
    blocks: list[Block] = []
    prose: list[tuple[int, str]] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    last_text = ""
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            prose.append((i + 1, lines[i]))
            if lines[i].strip():
                last_text = lines[i].strip()
            i += 1
            continue
        fence, lang = m.group(2), m.group(3).lower()
        start = i + 1
        j = start
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        blocks.append(Block(page, start + 1, lang, "\n".join(lines[start:j]), last_text == SKIP))
        last_text = ""
        i = j + 1
    return blocks, prose


PARSED = {page: parse(page) for page in FILES}


# -- (a) links ------------------------------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|__|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    kept = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in ("L", "N"))
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    counts: dict[str, int] = {}
    prose = PARSED[page][1] if page in PARSED else parse(page)[1]
    for _, line in prose:
        m = _HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = counts.get(base, 0)
        counts[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(page: Path) -> list[tuple[int, str]]:
    out = []
    for number, line in PARSED[page][1]:
        text = _INLINE.sub("", line)
        out.extend((number, m.group(1)) for m in _LINK.finditer(text))
    return out


@pytest.mark.parametrize("page", FILES, ids=_rel)
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for number, target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            broken.append(f"{_rel(page)}:{number}: {target} -> no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{_rel(page)}:{number}: {target} -> no heading #{anchor}")
    assert not broken, "\n".join(broken)


def test_the_index_links_every_page_and_the_readme_links_the_index() -> None:
    index = DOCS / "README.md"
    linked = {
        (DOCS / t.partition("#")[0]).resolve() for _, t in links(index) if not t.startswith("#")
    }
    missing = [_rel(p) for p in PAGES if p != index and p.resolve() not in linked]
    assert not missing, f"docs/README.md does not link: {missing}"
    readme_targets = {t.partition("#")[0] for _, t in links(ROOT / "README.md")}
    assert "docs/README.md" in readme_targets, "README.md does not link docs/README.md"


# -- (b) runnable examples ------------------------------------------------------------------

_RUNNER = r"""
import json, os, sys, traceback
sys.path.insert(0, os.getcwd())  # as in an interactive session: modules written by a page import
blocks = json.load(open(sys.argv[1]))
ns = {"__name__": "__main__"}
for b in blocks:
    code = compile("\n" * (b["line"] - 1) + b["code"], b["page"], "exec")
    try:
        exec(code, ns)
    except BaseException:
        traceback.print_exc()
        print(f"\nFAILED: the block at {b['page']}:{b['line']}", file=sys.stderr)
        sys.exit(1)
"""


def python_blocks(page: Path) -> list[Block]:
    blocks = PARSED[page][0] if page in PARSED else parse(page)[0]
    return [b for b in blocks if b.lang in ("python", "py")]


RUNNABLE = [p for p in PAGES if any(not b.skip for b in python_blocks(p))]
# Pages whose examples start a model server or train several models: over ~20 s on a
# loaded 2-core machine, so they run with the slow tests (make test runs them).
SLOW_PAGES = {"serving.md", "training.md"}


PY_BLOCKS = [b for p in FILES for b in python_blocks(p)]


@pytest.mark.parametrize("block", PY_BLOCKS, ids=[b.where for b in PY_BLOCKS])
def test_python_blocks_compile(block: Block) -> None:
    compile(block.code, block.where, "exec")


def run_page(page: Path, tmp_path: Path, settings: dict[str, str]) -> None:
    """Run the page's runnable blocks in one fresh process with only ``settings`` set."""
    work = tmp_path / "work"
    work.mkdir()
    blocks = [
        {"page": str(page), "line": b.line, "code": b.code}
        for b in python_blocks(page)
        if not b.skip
    ]
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    (tmp_path / "runner.py").write_text(_RUNNER)
    env = env_without_loopline()
    env.update({"LOOPLINE_HOME": str(work / ".loopline"), "PYTHONWARNINGS": "ignore"})
    env.update(settings)
    result = subprocess.run(
        [sys.executable, str(tmp_path / "runner.py"), str(tmp_path / "blocks.json")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=PAGE_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]


@pytest.mark.parametrize(
    "page",
    [pytest.param(p, marks=[pytest.mark.slow] if p.name in SLOW_PAGES else []) for p in RUNNABLE],
    ids=_rel,
)
def test_runnable_examples_run(page: Path, tmp_path: Path) -> None:
    run_page(page, tmp_path, {})


@pytest.mark.slow
@pytest.mark.parametrize("page", RUNNABLE, ids=_rel)
def test_runnable_examples_run_on_the_team_shape(
    page: Path, tmp_path: Path, pg_uri: str, s3_env: None, s3_url: str, redis_url: str
) -> None:
    """The same examples on PostgreSQL, S3 and Redis: only the settings change."""
    settings = {k: v for k, v in os.environ.items() if k.startswith("LOOPLINE_S3_")}
    settings.update(
        {"LOOPLINE_URI": pg_uri, "LOOPLINE_ARTIFACTS": s3_url, "LOOPLINE_ONLINE_STORE": redis_url}
    )
    run_page(page, tmp_path, settings)


# -- (c) commands ---------------------------------------------------------------------------

ROOT_COMMAND = typer.main.get_command(app)


def _command_lines(block: Block) -> list[tuple[int, str]]:
    """The command lines of a shell block, continuation lines joined, prompts removed."""
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for offset, raw in enumerate(block.code.splitlines()):
        line = raw.rstrip()
        if block.lang == "console" and not pending:
            if not line.lstrip().startswith("$ "):
                continue  # output
            line = line.lstrip()[2:]
        if not pending:
            start = block.line + offset
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append((start, pending + line))
        pending = ""
    if pending:
        out.append((start, pending))
    return out


def _commands(line: str) -> list[list[str]]:
    """The simple commands of a shell line: split at | && || ; &, env assignments dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    found: list[list[str]] = [[]]
    for tok in lexer:
        if tok in ("|", "||", "&&", ";", "&", "(", ")"):
            found.append([])
        else:
            found[-1].append(tok)
    out = []
    for cmd in found:
        while cmd and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", cmd[0]):
            cmd = cmd[1:]
        if cmd:
            out.append(cmd)
    return out


def resolve(args: list[str]) -> tuple[list[str], Any, list[str]]:
    """Walk the command tree: (the command path, the leaf command, its own arguments)."""
    cmd: Any = ROOT_COMMAND
    path: list[str] = []
    rest = list(args)
    while getattr(cmd, "commands", None) is not None:
        while rest and rest[0].startswith("-"):
            opt = rest.pop(0)
            if opt == "--help":
                return path, cmd, ["--help"]
            _check_option(cmd, opt, path)
        if not rest:
            raise AssertionError(f"`loopline {' '.join(path)}` needs a sub-command")
        name = rest.pop(0)
        if name not in cmd.commands:
            raise AssertionError(
                f"`loopline {' '.join(path)}` has no sub-command {name!r}; "
                f"it has: {', '.join(sorted(cmd.commands))}"
            )
        cmd = cmd.commands[name]
        path.append(name)
    return path, cmd, rest


def _option_names(cmd: Any) -> set[str]:
    names: set[str] = set()
    for p in cmd.params:
        names.update(getattr(p, "opts", []) if p.param_type_name == "option" else [])
        names.update(getattr(p, "secondary_opts", []))
    return names | {"--help"}


def _check_option(cmd: Any, token: str, path: list[str]) -> None:
    name = token.split("=", 1)[0]
    if name not in _option_names(cmd):
        raise AssertionError(
            f"`loopline {' '.join(path)}` has no option {name}; "
            f"it has: {', '.join(sorted(_option_names(cmd)))}"
        )


def check_full(args: list[str]) -> list[str]:
    """Parse a whole command line as the CLI would (without running it); the path."""
    path, cmd, rest = resolve(args)
    if "--help" in rest:
        return path
    for tok in rest:
        if tok.startswith("-") and tok != "-" and not re.match(r"^-\d", tok):
            _check_option(cmd, tok, path)
    try:
        cmd.make_context(" ".join(["loopline", *path]), list(rest), resilient_parsing=False)
    except Exception as exc:  # the CLI's own parse error, e.g. a missing argument
        raise AssertionError(f"`loopline {' '.join([*path, *rest])}`: {exc}") from exc
    return path


def check_names(args: list[str]) -> list[list[str]]:
    """Inline mentions: the command paths named and their option names (placeholders
    allowed). ``loopline data`` names a group, ``loopline runs ls/show`` two commands,
    ``loopline ...`` nothing in particular."""
    cmd: Any = ROOT_COMMAND
    path: list[str] = []
    rest = list(args)
    while getattr(cmd, "commands", None) is not None:
        while rest and rest[0].startswith("-"):
            _check_option(cmd, rest.pop(0), path)
        if not rest or rest[0] == "...":
            return [path]
        name = rest.pop(0)
        names = name.split("/")
        unknown = [n for n in names if n not in cmd.commands]
        if unknown:
            raise AssertionError(
                f"`loopline {' '.join(path)}` has no sub-command {unknown[0]!r}; "
                f"it has: {', '.join(sorted(cmd.commands))}"
            )
        if len(names) > 1:
            return [[*path, n] for n in names]
        cmd = cmd.commands[name]
        path.append(name)
    for tok in rest:
        if tok.startswith("--") or re.match(r"^-[A-Za-z]$", tok):
            _check_option(cmd, tok, path)
    return [path]


def _is_loopline(exe: str) -> bool:
    return exe == "loopline" or exe.endswith("/loopline")


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return {m.group(1) for m in re.finditer(r"^([A-Za-z][\w-]*):", text, re.MULTILINE)}


def shell_commands() -> list[tuple[str, list[str]]]:
    found = []
    for page in FILES:
        for block in PARSED[page][0]:
            if block.lang not in SHELLS:
                continue
            for number, line in _command_lines(block):
                for cmd in _commands(line):
                    if _is_loopline(cmd[0]) or cmd[0] == "make":
                        found.append((f"{_rel(page)}:{number}", cmd))
    return found


SHELL_COMMANDS = shell_commands()


def paragraphs(page: Path) -> list[tuple[int, str]]:
    """The prose of a page as paragraphs (an inline code span may cross a line break)."""
    out: list[tuple[int, str]] = []
    start, lines = 0, []
    prev = -1
    for number, line in [*PARSED[page][1], (10**9, "")]:
        if not line.strip() or number != prev + 1:
            if lines:
                out.append((start, " ".join(lines)))
            start, lines = number, []
        if line.strip():
            if not lines:
                start = number
            lines.append(line.strip())
        prev = number
    return out


def inline_commands() -> list[tuple[str, list[str]]]:
    found = []
    for page in FILES:
        for number, text in paragraphs(page):
            for m in _INLINE.finditer(text):
                code = m.group(2).strip()
                if code.startswith(("loopline ", ".venv/bin/loopline ")):
                    try:
                        tokens = shlex.split(code)
                    except ValueError:
                        tokens = code.split()
                    found.append((f"{_rel(page)}:{number}", tokens))
    return found


INLINE_COMMANDS = inline_commands()


def test_the_docs_have_commands_to_check() -> None:
    assert len(SHELL_COMMANDS) > 50 and len(INLINE_COMMANDS) > 20


@pytest.mark.parametrize(("where", "cmd"), SHELL_COMMANDS, ids=[w for w, _ in SHELL_COMMANDS])
def test_shell_commands_exist(where: str, cmd: list[str]) -> None:
    if cmd[0] == "make":
        unknown = [t for t in cmd[1:] if "=" not in t and t not in makefile_targets()]
        assert not unknown, f"{where}: no Makefile target {unknown}"
        return
    try:
        check_full(cmd[1:])
    except AssertionError as exc:
        raise AssertionError(f"{where}: {exc}") from None


@pytest.mark.parametrize(("where", "cmd"), INLINE_COMMANDS, ids=[w for w, _ in INLINE_COMMANDS])
def test_inline_commands_exist(where: str, cmd: list[str]) -> None:
    try:
        check_names(cmd[1:])
    except AssertionError as exc:
        raise AssertionError(f"{where}: {exc}") from None


def _leaf_paths() -> set[str]:
    found: set[str] = set()

    def walk(prefix: list[str], cmd: Any) -> None:
        subs = getattr(cmd, "commands", None)
        if subs is None:
            found.add(" ".join(prefix))
            return
        for name, sub in subs.items():
            walk([*prefix, name], sub)

    walk([], ROOT_COMMAND)
    return found


def test_every_command_is_documented() -> None:
    documented: set[str] = set()
    for _, cmd in SHELL_COMMANDS:
        if _is_loopline(cmd[0]):
            documented.add(" ".join(resolve(cmd[1:])[0]))
    for _, cmd in INLINE_COMMANDS:
        documented.update(" ".join(p) for p in check_names(cmd[1:]))
    missing = sorted(_leaf_paths() - documented)
    assert not missing, f"commands no page shows: {missing}"


# -- settings -------------------------------------------------------------------------------


def known_settings() -> set[str]:
    names: set[str] = set()
    sources = [*ROOT.joinpath("src").rglob("*.py"), *ROOT.joinpath("scripts").glob("*")]
    sources += [ROOT / "Makefile", ROOT / "tests" / "conftest.py"]
    for path in sources:
        if path.is_file():
            names.update(_SETTING.findall(path.read_text(encoding="utf-8", errors="replace")))
    from loopline.config import Settings
    from loopline.serving.serve_settings import ServeSettings

    names.update(f"LOOPLINE_{f.upper()}" for f in Settings.model_fields)
    names.update(f"LOOPLINE_SERVE_{f.upper()}" for f in ServeSettings.model_fields)
    return names


def test_every_setting_named_exists() -> None:
    known = known_settings()
    unknown = []
    for page in FILES:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            unknown.extend(
                f"{_rel(page)}:{number}: {name}"
                for name in _SETTING.findall(line)
                if name not in known
            )
    assert not unknown, "settings the code does not read:\n" + "\n".join(unknown)


def test_audit_anchors_in_the_docs_parse() -> None:
    """An anchor a page shows is one ``loopline audit verify --anchor`` takes: the parse
    check above passes any text, and a digit too many made the example exit 2."""
    from loopline.core.audit import Anchor
    from loopline.errors import InvalidInput

    found = []
    for where, cmd in SHELL_COMMANDS:
        for i, tok in enumerate(cmd):
            if tok == "--anchor" and i + 1 < len(cmd):
                found.append((where, cmd[i + 1]))
            elif tok.startswith("--anchor="):
                found.append((where, tok.partition("=")[2]))
    assert found, "no page shows `loopline audit verify --anchor`"
    bad = []
    for where, text in found:
        try:
            Anchor.parse(text)
        except InvalidInput as exc:
            bad.append(f"{where}: {exc}")
    assert not bad, "\n".join(bad)
