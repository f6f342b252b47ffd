"""UCI inputs are validated (issue 20): every inconsistent file is named, nothing runs on it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from droplab.__main__ import main
from droplab.studies.uci import UCIDataError, load_uci

SHIPPED = Path(__file__).parent / "data" / "uci"


@pytest.fixture
def boston(tmp_path) -> Path:
    shutil.copytree(SHIPPED / "bostonHousing", tmp_path / "bostonHousing")
    return tmp_path


def edit(folder: Path, name: str, text: str) -> Path:
    path = folder / "bostonHousing" / name
    path.write_text(text)
    return path


def first_train_row(folder: Path) -> int:
    return int(float((folder / "bostonHousing" / "index_train_0.txt").read_text().split()[0]))


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("index_train_0.txt", "-1\n2\n", r"row indices must be in \[0, 505\], got -1"),
        ("index_train_0.txt", "1.5\n2\n", "row indices must be integers, got 1.5"),
        ("index_train_0.txt", "506\n", r"row indices must be in \[0, 505\], got 506"),
        ("index_train_0.txt", "3\n3\n", "a row index repeats"),
        ("index_features.txt", "0\n13\n", "the features include the target column 13"),
        ("dropout_rates.txt", "0.005\n1.5\n", r"dropout rates must be in \[0, 1\)"),
        ("tau_values.txt", "0\n", "tau values must be > 0"),
        ("n_splits.txt", "0\n", r"the number of splits must be in \[1, "),
        ("n_hidden.txt", "", "is empty"),
    ],
)
def test_bad_files_are_named(boston, name, text, message):
    path = edit(boston, name, text)
    with pytest.raises(UCIDataError, match=message) as raised:
        load_uci("boston", boston)
    assert str(path) in str(raised.value)


def test_test_rows_equal_to_train_rows_are_refused(boston):
    row = first_train_row(boston)
    path = edit(boston, "index_test_0.txt", f"{row}\n")
    with pytest.raises(
        UCIDataError, match=f"test rows are also training rows of split 0 .*row {row}"
    ):
        load_uci("boston", boston)
    assert path.exists()


def test_nan_in_the_data_and_a_missing_file_are_named(boston):
    data = boston / "bostonHousing" / "data.txt"
    lines = data.read_text().splitlines()
    lines[3] = " ".join(["nan"] + lines[3].split()[1:])
    data.write_text("\n".join(lines) + "\n")
    with pytest.raises(UCIDataError, match=f"{data} holds NaN or inf"):
        load_uci("boston", boston)
    shutil.copy(SHIPPED / "bostonHousing" / "data.txt", data)
    (boston / "bostonHousing" / "tau_values.txt").unlink()
    with pytest.raises(UCIDataError, match=r"tau_values.txt is missing"):
        load_uci("boston", boston)


def test_the_cli_says_it_in_one_line_and_exits_1(boston, tmp_path, capsys):
    edit(boston, "index_train_0.txt", "-1\n")
    argv = ["mc", "--uci", "boston", "--data-dir", str(boston), "--out", str(tmp_path / "o")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "index_train_0.txt: row indices must be in [0, 505], got -1" in err


def test_the_shipped_datasets_pass():
    for name in ("bostonHousing", "yacht"):
        if (SHIPPED / name).exists():
            data = load_uci(name, SHIPPED)
            assert data.splits and data.X.shape[0] == data.y.shape[0]
