"""The root command loads a command's module only when that command runs (start-up cost), and the map
that says where each command lives agrees with what the modules register."""

from __future__ import annotations

import importlib
import subprocess
import sys

import click

from adapterhub.cli import main
from adapterhub.cli.app import COMMAND_MODULES, cli


def test_the_command_map_names_exactly_the_commands_each_module_registers():
    for module in sorted(set(COMMAND_MODULES.values())):
        importlib.import_module(module, "adapterhub.cli")
    registered = dict(cli.registered)
    assert set(registered) == set(COMMAND_MODULES)
    for name, command in registered.items():
        assert command.callback.__module__ == "adapterhub.cli" + COMMAND_MODULES[name], name
    assert set(cli.commands) == set(COMMAND_MODULES)  # click's mapping is always whole


def test_running_one_command_loads_only_its_module(cache):
    probe = ("import sys; from adapterhub.cli import main; rc = main(sys.argv[1:]); "
             "print('CMDS', sorted(m.rsplit('.', 1)[1] for m in sys.modules if m.startswith('adapterhub.cli.')"
             " and m.endswith(('_cmds', '_cmd'))))")
    proc = subprocess.run([sys.executable, "-c", probe, "cache", "ls", "--json"], capture_output=True, text=True,
                          timeout=120)
    assert "CMDS ['store_cmds']" in proc.stdout, (proc.stdout, proc.stderr)


def test_help_lists_every_command_and_an_unknown_one_is_a_usage_error(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMAND_MODULES:
        assert f"  {name} " in out, name
    assert main(["no-such-command"]) == 2
    assert "No such command" in capsys.readouterr().err
    ctx = click.Context(cli)
    assert cli.list_commands(ctx) == sorted(COMMAND_MODULES)
