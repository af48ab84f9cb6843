"""Every example's `--help`: the module docstring with its usage lines,
and each option with its meaning and its default (examples/_common.py's
`parser` and the scripts' `parse`)."""

import argparse
import os
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")
SCRIPTS = (
    "char_lm",
    "clockwork_generation",
    "learning_to_execute",
    "renet_classifier",
    "sequential_mnist",
)
# Their default is the opposite of what they do: the help leaves it out.
SWITCHES = (argparse._StoreTrueAction, argparse._StoreFalseAction)

pytestmark = pytest.mark.backend_independent


def import_example(name):
    """The module examples/`name`.py, imported as tests/test_examples.py
    imports it."""
    sys.path.insert(0, EXAMPLES)
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


def collapse(text):
    """`text` with every run of whitespace made one space."""
    return " ".join(text.split())


def script_help(name, monkeypatch, capsys):
    """(the `--help` text of examples/`name`.py, its parser)."""
    script = import_example(name)
    # Terminal-independent output: 80 columns, no colour.
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("PYTHON_COLORS", "0")
    parsers = []
    make_parser = script._common.parser

    def recording_parser(doc):
        parsers.append(make_parser(doc))
        return parsers[-1]

    monkeypatch.setattr(script._common, "parser", recording_parser)
    with pytest.raises(SystemExit) as exit_info:
        script.parse(["--help"])
    assert exit_info.value.code == 0
    assert len(parsers) == 1
    return capsys.readouterr().out, parsers[0]


def options(parser):
    """The parser's actions but --help."""
    return [
        action
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction)
    ]


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_shows_the_docstring_usage_lines(name, monkeypatch, capsys):
    text, _ = script_help(name, monkeypatch, capsys)
    doc = import_example(name).__doc__
    lines = [line.strip() for line in text.splitlines()]
    assert doc.splitlines()[0] in lines
    usage = [
        line.strip()
        for line in doc.splitlines()
        if line.strip().startswith("python examples/")
    ]
    assert usage, f"{name}'s docstring has no usage lines"
    for line in usage:
        # RawDescriptionHelpFormatter keeps the docstring's lines as they
        # are: each is a line of the help.
        assert line in lines, line


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_explains_every_option(name, monkeypatch, capsys):
    text, parser = script_help(name, monkeypatch, capsys)
    assert options(parser)
    for action in options(parser):
        for option in action.option_strings:
            assert option in text, option
        assert action.help and action.help.strip(), action.option_strings


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_shows_every_default(name, monkeypatch, capsys):
    text, parser = script_help(name, monkeypatch, capsys)
    text = collapse(text)
    # An option without a default: its help says what its absence means.
    assert "(default: None)" not in text
    formatter = parser._get_formatter()
    shown = 0
    for action in options(parser):
        if action.default in (None, argparse.SUPPRESS):
            continue
        if isinstance(action, SWITCHES):
            # "--no-augment (default: True)" would mislead.
            assert formatter._get_help_string(action) == action.help
            continue
        assert collapse(f"(default: {action.default})") in text, (
            action.option_strings
        )
        shown += 1
    assert shown
