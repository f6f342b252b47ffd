"""The package as a user meets it: import cost, the CLI's help and exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

import droplab
from droplab.__main__ import COMMANDS, main


def run(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_import_is_light():
    loaded = run(
        "import sys, droplab; droplab.__version__; print(' '.join(sorted(sys.modules)))"
    ).split()
    for heavy in ("torch", "numba", "matplotlib", "ray", "rich"):
        assert heavy not in loaded, f"`import droplab` imports {heavy}"


def test_help_does_not_import_torch():
    loaded = run(
        "import sys\nfrom droplab.__main__ import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('MODULES', ' '.join(sorted(sys.modules)))"
    )
    modules = loaded.split("MODULES", 1)[1].split()
    assert "torch" not in modules and "numba" not in modules


def test_every_public_name_resolves():
    for name in droplab.__all__:
        assert getattr(droplab, name) is not None, name


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        droplab.nope  # noqa: B018


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert f"droplab {command}" in capsys.readouterr().out


def test_unknown_command_exits_2_with_one_line(capsys):
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "droplab: error: unknown command 'frobnicate' (choose from " + ", ".join(COMMANDS) + ")"
    ]


def test_python_m_droplab_works():
    out = subprocess.run(
        [sys.executable, "-m", "droplab", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"droplab {droplab.__version__}"
