"""The README cannot drift from the CLI: every `ulma ...` command in its shell blocks parses with
ulma's own argument parsers (the real subcommands, options and values), and every option that
`ulma <command> --help` lists is named in the README."""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from ulma.cli import errors, main

README = Path(__file__).resolve().parents[2] / "README.md"
_PREFIXES = (["ulma"], ["python3", "-m", "ulma"], ["python", "-m", "ulma"])
PLACEHOLDERS = {"PID": "4242"}  # words that stand for a value the reader fills in


class _Parsed(Exception):
    """Raised by a parser that accepted its arguments: the command stops before doing anything."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__(parser.prog)
        self.parser = parser


def parsed_by(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The parser that accepted `ulma argv` (its options and values, their ranges checked);
    fails the test with what the parser said if it refused them."""
    real = errors.Parser.parse

    def parse(self: errors.Parser, args: list[str]) -> argparse.Namespace:
        real(self, args)
        raise _Parsed(self)

    monkeypatch.setattr(errors.Parser, "parse", parse)
    try:
        code = main._main(argv)
    except _Parsed as done:
        return done.parser
    except SystemExit as exc:
        pytest.fail(f"`ulma {shlex.join(argv)}` is refused by ulma's parser (exit {exc.code})")
    pytest.fail(f"`ulma {shlex.join(argv)}` was not parsed (exit {code})")


def shell_commands() -> Iterator[tuple[int, list[str]]]:
    """(line number, argv after `ulma`) of every ulma command in the README's sh blocks."""
    in_sh = False
    for number, line in enumerate(README.read_text().splitlines(), 1):
        if line.startswith("```"):
            in_sh = line.strip() in ("```sh", "```bash", "```shell")
            continue
        if not in_sh:
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError:  # an unbalanced quote inside a comment's prose
            words = shlex.split(line.split(" #", 1)[0], comments=True)
        command: list[str] = []
        for word in [*words, "&&"]:
            if word in ("&&", "||", "|", ";", "&"):
                while command and re.fullmatch(r"[A-Z_]+=\S*", command[0]):  # VAR=value ulma ...
                    command.pop(0)
                for prefix in _PREFIXES:
                    if command[:len(prefix)] == prefix and len(command) > len(prefix):
                        yield number, [PLACEHOLDERS.get(w, w) for w in command[len(prefix):]]
                command = []
            else:
                command.append(word)


COMMANDS = list(shell_commands())


def test_the_readme_shows_commands_of_every_subcommand() -> None:
    assert {argv[0] for _, argv in COMMANDS} >= set(main.COMMANDS), COMMANDS


@pytest.mark.parametrize(("line", "argv"), COMMANDS, ids=[f"line{n}" for n, _ in COMMANDS])
def test_each_readme_command_parses(line: int, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    if argv[0] in ("--help", "-h", "--version"):
        return
    assert argv[0] in main.COMMANDS, f"README line {line}: no such command {argv[0]!r}"
    parsed_by(argv, monkeypatch)


@pytest.mark.parametrize("command", main.COMMANDS)
def test_every_option_in_help_is_in_the_readme(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    sample = {"run": ["script.py"], "record": ["-o", "x.ulma", "script.py"], "report": ["x.ulma"],
              "export": ["x.ulma", "--format", "text", "-o", "-"], "attach": ["1"],
              "collect": ["--listen", "127.0.0.1:0"], "history": ["top"]}[command]
    parser = parsed_by([command, *sample], monkeypatch)
    text = README.read_text()
    def named(option: str) -> bool:
        return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None

    parsers = [parser]
    for action in parser._actions:  # and every subcommand's (`ulma history top`, ...)
        if isinstance(action, argparse._SubParsersAction):
            parsers += list(action.choices.values())
    listed = [action for each in parsers for action in each._actions  # what --help shows (not the hidden)
              if action.option_strings and action.help != argparse.SUPPRESS
              and "--help" not in action.option_strings]
    missing = [action.option_strings[-1] for action in listed if not any(map(named, action.option_strings))]
    assert not missing, f"`ulma {command} --help` lists options the README never names: {missing}"
