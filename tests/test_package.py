"""The package as a user meets it: import cost, the CLI's help and exit codes."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

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


# -- packaging and typing: what an installed wheel gives a user and their type checker ---------

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """The wheel built from a copy of the sources (the shared tree gets no build/ folder)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tmp / name)
    shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            str(tmp),
            "-w",
            str(tmp / "dist"),
        ],
        check=True,
        capture_output=True,
        cwd=tmp,
    )
    (path,) = (tmp / "dist").glob("droplab-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_holds_py_typed_and_license(wheel):
    names = wheel.namelist()
    assert "droplab/py.typed" in names
    (license_file,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert "MIT License" in wheel.read(license_file).decode()
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    meta = wheel.read(metadata).decode()
    for line in ("License-Expression: MIT", "License-File: LICENSE", "Classifier: Typing :: Typed"):
        assert line in meta.splitlines()
    assert "Project-URL: " in meta and "Keywords: dropout" in meta


def test_extra_all_is_user_features_only(wheel):
    (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    all_reqs = [
        line
        for line in wheel.read(metadata).decode().splitlines()
        if line.startswith("Requires-Dist:") and 'extra == "all"' in line
    ]
    assert len(all_reqs) == 1 and "fast,ray,report" in all_reqs[0].replace(" ", "")
    assert not any(tool in all_reqs[0] for tool in ("pytest", "ruff", "mypy"))


def test_type_checking_imports_list_every_public_name():
    tree = ast.parse((ROOT / "src/droplab/__init__.py").read_text())
    (block,) = [
        n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"
    ]
    seen = {}
    for node in block.body:
        for alias in node.names:
            seen[alias.name] = node.module
    for name, module in droplab._EXPORTS.items():
        assert seen.get(name) == module, f"{name} is not imported from {module} under TYPE_CHECKING"
    for name in droplab._SUBMODULES:
        assert seen.get(name) == "droplab", f"submodule {name} missing under TYPE_CHECKING"


def test_mypy_sees_real_signatures(tmp_path):
    mypy = pytest.importorskip("mypy.api")
    snippet = tmp_path / "snippet.py"
    snippet.write_text(
        "import droplab\nreveal_type(droplab.dropout)\nreveal_type(droplab.Dropout)\n"
        "reveal_type(droplab.derive_seed)\n"
    )
    config = tmp_path / "mypy.ini"
    # torch & co. are skipped (Any) to keep the check fast; droplab's own signatures are real
    config.write_text(
        "[mypy]\n[mypy-torch.*,numba.*,numpy.*,rich.*,matplotlib.*]\nfollow_imports = skip\n"
    )
    out, err, status = mypy.run(
        ["--config-file", str(config), "--cache-dir", str(tmp_path / "cache"), str(snippet)]
    )
    assert status == 0, out + err
    revealed = [
        line.split("Revealed type is ", 1)[1] for line in out.splitlines() if "Revealed" in line
    ]
    assert len(revealed) == 3 and '"Any"' not in revealed, out  # the lazy names are not Any
    assert revealed[0].startswith('"def (x: Any, p: float | None =, training: bool =')
    assert "-> droplab.layers.Dropout" in revealed[1]
    assert revealed[2] == '"def (seed: int, step: int) -> int"'


def test_help_names_no_file_users_lack():
    doc = droplab.__doc__
    assert "API.md" not in doc and "shared/" not in doc
    assert "droplab --help" in doc


def test_missing_numba_is_said_once():
    """Without numba, backend="auto" falls back to torch's ops and warns once per process."""
    code = (
        "import importlib.util, warnings, torch\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda n, *a: None if n == 'numba' else real(n, *a)\n"
        "import droplab\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    for _ in range(3):\n"
        "        y = droplab.dropout(torch.ones(4096), 0.5, seed=0)\n"
        "print(len(w), w[0].category.__name__, str(w[0].message))\n"
        "print(bool(torch.equal(y != 0, droplab.dropout_mask((4096,), 0.5, seed=0))))\n"
    )
    lines = run(code).splitlines()
    count, category, message = lines[0].split(" ", 2)
    assert (count, category) == ("1", "RuntimeWarning")
    assert message.startswith("numba is not installed: backend='auto' runs PyTorch's dropout ops")
    assert lines[1] == "True"  # same bits on the fallback
