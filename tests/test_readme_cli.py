"""The README's CLI synopses name exactly the options argparse accepts, for every subcommand."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from edge_mcepl.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"
OPTION = re.compile(r"--[a-z0-9][a-z0-9-]*")


def readme_synopses() -> dict[str, set[str]]:
    """Subcommand ("profile detect" for a nested one, "" for the top level) → the options its synopsis names."""
    synopses: list[str] = []  # `edge-mcepl …` plus its indented continuation lines, comments cut
    for block in re.findall(r"```text\n(.*?)```", README.read_text(), flags=re.S):
        for line in block.splitlines():
            line = line.split("#")[0].rstrip()
            if line.startswith("edge-mcepl "):
                synopses.append(line)
            elif line.startswith(" ") and line.strip() and synopses:
                synopses[-1] += " " + line.strip()
    found: dict[str, set[str]] = {}
    for line in synopses:
        words = line.split()
        if words[1] == "profile":  # `profile detect … | show … | list …`: one synopsis per action
            named = [(f"profile {part.split()[0]}", part) for part in " ".join(words[2:]).split(" | ")]
        else:
            named = [("" if words[1].startswith("--") else words[1], line)]
        for command, text in named:
            found.setdefault(command, set()).update(OPTION.findall(text))
    return found


def argparse_options() -> dict[str, set[str]]:
    """The same mapping from the parser: every long option but --help and the hidden ones."""

    def options(parser: argparse.ArgumentParser) -> set[str]:
        return {s for a in parser._actions if a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)
                for s in a.option_strings if s.startswith("--")}

    parser = build_parser()
    out = {"": options(parser)}
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, child in sub.choices.items():
        nested = [a for a in child._actions if isinstance(a, argparse._SubParsersAction)]
        for action, grandchild in (nested[0].choices.items() if nested else []):
            out[f"{name} {action}"] = options(grandchild)
        if not nested:
            out[name] = options(child)
    return out


def test_every_subcommands_readme_synopsis_names_its_options():
    readme, parsed = readme_synopses(), argparse_options()
    assert set(readme) == set(parsed), "a subcommand without a README synopsis, or one that does not exist"
    for command in sorted(parsed):
        missing, extra = parsed[command] - readme[command], readme[command] - parsed[command]
        assert not missing and not extra, f"{command}: README lacks {sorted(missing)}, has extra {sorted(extra)}"
