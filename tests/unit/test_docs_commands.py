"""The docs stay true: every `switchboard …` command line they show parses, every
``SWITCHBOARD_*`` variable they name is one a command reads, and claims the protocol doc makes
about validation hold.

Commands are taken from fenced code blocks and inline code spans of README.md, docs/*.md and
turn-config/README.md. A command "parses" when its subcommand path exists (its ``--help``
exits 0) and every flag shown is an option of that command or of a group on its path. The
allowed variables come from the settings loader, so keys added later are covered without
editing this test.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from signaling.core import protocol, settings
from signaling.tools.cli import cli

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", ROOT / "turn-config" / "README.md", *(ROOT / "docs").glob("*.md")])
#: Placeholders a doc may put where the reader fills in values.
PLACEHOLDERS = {"…", "...", "COMMAND"}
FENCE = re.compile(r"^```.*?$(.*?)^```", re.M | re.S)
INLINE = re.compile(r"(?<!`)`(switchboard [^`]+)`(?!`)")
ENV = re.compile(r"\bSWITCHBOARD_[A-Z0-9]+(?:_[A-Z0-9]+)*\b")


@dataclass(frozen=True)
class Shown:
    where: str
    words: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.where}: switchboard {' '.join(self.words)}"


def _segments(text: str) -> list[list[str]]:
    """Shell words of ``text`` split into simple commands (at ``&&``, ``|``, ``;``)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        words = list(lexer)
    except ValueError:  # an unbalanced quote in prose: read it word by word
        words = text.split()
    out: list[list[str]] = [[]]
    for word in words:
        if word in ("&&", "||", "|", ";", "&", "(", ")", "$("):
            out.append([])
        else:
            out[-1].append(word)
    return [seg for seg in out if seg]


def _clean(word: str) -> str:
    return word.strip("[]").rstrip("….,:;").rstrip(")")


def shown_commands() -> list[Shown]:
    found: list[Shown] = []
    for doc in DOCS:
        text = doc.read_text()
        name = doc.relative_to(ROOT).as_posix()
        for block in FENCE.finditer(text):
            lines = block.group(1).replace("\\\n", " ").splitlines()
            for number, line in enumerate(lines):
                line = line.strip()
                if line.startswith("$ "):
                    line = line[2:]
                if "switchboard" not in line:
                    continue
                for seg in _segments(line):
                    if seg[0] == "switchboard":
                        found.append(Shown(f"{name} (code block line {number + 1})", tuple(seg[1:])))
        for span in INLINE.finditer(text):
            words = span.group(1).split()
            found.append(Shown(f"{name} (inline)", tuple(words[1:])))
    return found


SHOWN = shown_commands()


def test_docs_show_commands() -> None:
    # The walk above must not silently find nothing (a changed fence style, a moved file).
    assert len(SHOWN) >= 30, SHOWN
    groups = {s.words[0] for s in SHOWN if s.words}
    assert {"serve", "sfu", "admin", "turn", "loadtest", "config"} <= groups


def _options(command: click.Command) -> dict[str, bool]:
    """Option names of ``command`` → whether the option takes a value."""
    names = {"--help": False}
    for param in command.params:
        if isinstance(param, click.Option):
            takes_value = not (param.is_flag or param.count)
            for opt in (*param.opts, *param.secondary_opts):
                names[opt] = takes_value
    return names


@pytest.mark.parametrize("shown", SHOWN, ids=str)
def test_shown_command_parses(shown: Shown) -> None:
    command: click.Command = cli
    path: list[str] = []
    allowed = _options(cli)
    value_next = False
    for raw in shown.words:
        word = _clean(raw)
        if value_next:  # the value of the previous option
            value_next = False
            continue
        if not word or raw in PLACEHOLDERS or word in PLACEHOLDERS:
            continue
        if word.startswith("-") and len(word) > 1:
            flag, eq, _ = word.partition("=")
            assert flag in allowed, f"{shown}: `switchboard {' '.join(path)}` has no option {flag}"
            value_next = allowed[flag] and not eq and not raw.endswith("]")
            continue
        if isinstance(command, click.Group):
            sub = command.get_command(click.Context(command), word)
            assert sub is not None, f"{shown}: `switchboard {' '.join(path)}` has no command {word!r}"
            command = sub
            path.append(word)
            allowed |= _options(sub)
        # Otherwise a positional argument (ROOM, PEER…): nothing to check.
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, f"{shown}: `switchboard {' '.join(path)} --help` failed:\n{result.output}"


def _help_texts(command: click.Command) -> list[str]:
    texts = [command.help or ""]
    texts += [p.help or "" for p in command.params if isinstance(p, click.Option)]
    texts += [str(p.envvar) for p in command.params if p.envvar]
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            texts += _help_texts(sub)
    return texts


def _documented_env() -> list[tuple[str, str]]:
    out = [(doc.relative_to(ROOT).as_posix(), m.group(0)) for doc in DOCS for m in ENV.finditer(doc.read_text())]
    out += [("--help", m.group(0)) for text in _help_texts(cli) for m in ENV.finditer(text)]
    return out


def test_docs_name_variables() -> None:
    assert len(_documented_env()) >= 10


@pytest.mark.parametrize(("where", "name"), sorted(set(_documented_env())), ids=lambda v: str(v))
def test_documented_variable_is_read(where: str, name: str) -> None:
    known = settings.env_names()
    assert name in known or name.startswith(settings.TEST_ENV_PREFIX), (
        f"{where} names {name}, which no command reads (known: SWITCHBOARD_<SECTION>_<KEY> of the config "
        f"keys, and {', '.join(sorted(settings.CLIENT_ENV))})"
    )


def test_protocol_doc_sdp_is_a_plain_string() -> None:
    # docs/protocol.md: an `sdp` that is a {type, sdp} object is refused with bad-message.
    frame = '{"type": "publish", "cseq": 1, "sdp": {"type": "offer", "sdp": "v=0"}}'
    with pytest.raises(protocol.ProtocolError) as info:
        protocol.parse(frame, max_bytes=65536, max_signal_bytes=32768)
    assert info.value.error.code == "bad-message"
    assert "plain string" in (ROOT / "docs" / "protocol.md").read_text()


def test_ci_runs_the_readme_commands() -> None:
    # The README's first block is the whole setup; CI installs the same way and runs the same
    # test command, verbatim, as its last step.
    readme = (ROOT / "README.md").read_text()
    first_block = FENCE.search(readme)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).strip().splitlines()]
    install, test_command = commands
    assert install == "pip install -e '.[test]' && switchboard serve"
    ci = (ROOT / ".ci" / "run").read_text()
    steps = [line.strip() for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert steps[-1] == test_command == "python -m pytest"
    assert "-m pip install" in ci and "-e '.[test]'" in ci
    assert "python3 -m venv --clear" in ci and "pip check" in ci and "/readyz" in ci
