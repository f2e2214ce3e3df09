"""--help says what each option does and what it defaults to; flags look like flags; --version works."""
from __future__ import annotations

import click
import pytest
import typer
from typer.testing import CliRunner

import promptcli
from promptcli.cli import app

COMMANDS = [["run"], ["render"], ["validate"], ["sweep"], ["tune"], ["runs", "list"], ["models", "list"]]


def help_text(command: list[str]) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "240", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return result.output


def commands(group, path=()):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from commands(command, (*path, name))
        else:
            yield " ".join((*path, name)), command


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_flags_show_no_value_placeholder(command):
    """Typer printed `--quiet <bool>`, as if the flag took a value."""
    text = help_text(command)
    assert "--help" in text and "<bool>" not in text


def test_every_option_is_explained():
    """`tune --normalize/--calibrate` (and once --epochs, --seed...) had no help text."""
    bare = [f"{name} {param.opts[0]}" for name, command in commands(typer.main.get_command(app))
            for param in command.params if isinstance(param, click.Option) and not param.help]
    assert not bare


@pytest.mark.parametrize("command,default", [(["run"], "~/.cache/promptcli/store.sqlite"),
                                             (["run"], "runs/<template>-<time>"),
                                             (["tune"], "runs/tune-<template>-<time>")])
def test_help_keeps_its_defaults(command, default):
    """Rich markup ate every `[default: ...]`, so help never said where the run store lives."""
    assert default in " ".join(help_text(command).replace("│", " ").split())


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"promptcli {promptcli.__version__}"
