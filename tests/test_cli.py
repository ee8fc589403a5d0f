"""The `minicnn` command: every subcommand runs and has --help."""
import subprocess
import sys

import pytest

from minicnn import cli


def test_summary_prints_the_lecture_tables(capsys):
    assert cli.main(["summary"]) == 0
    out = capsys.readouterr().out
    assert "Total params: 55,744" in out and out.count("Total params: 3,453,121") == 2
    assert "conv2d (Conv2D)              (None, 26, 26, 32)        320" in out
    assert "dropout (Dropout)" in out


def test_gradcheck_prints_a_table_that_passes(capsys):
    assert cli.main(["gradcheck", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "central differences" in out and "all gradients agree" in out
    for case in ("Conv2D", "MaxPooling2D", "Dense", "Flatten", "Dropout", "Activation",
                 "binary_crossentropy", "model"):
        assert case in out
    assert "FAILED" not in out


@pytest.mark.parametrize("args", [["--help"], ["summary", "--help"], ["gradcheck", "--help"]])
def test_every_subcommand_has_help(args):
    result = subprocess.run([sys.executable, "-m", "minicnn.cli", *args], capture_output=True,
                            text=True, check=True)
    assert "usage: minicnn" in result.stdout


def test_unknown_model_is_refused_with_the_choices():
    result = subprocess.run([sys.executable, "-m", "minicnn.cli", "summary", "vgg"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "invalid choice: 'vgg'" in result.stderr
    assert "cnn-dropout" in result.stderr
