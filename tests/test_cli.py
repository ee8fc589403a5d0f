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


def _subcommands(parser=None, prefix=()):
    """Every command path of the parser: ('summary',), ('data', 'split'), ..."""
    import argparse
    parser = parser or cli.build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = list(_subcommands(sub, prefix + (name,)))
                yield from nested or [prefix + (name,)]


@pytest.mark.parametrize("path", [()] + list(_subcommands()), ids=" ".join)
def test_every_subcommand_has_help(path):
    result = subprocess.run([sys.executable, "-m", "minicnn.cli", *path, "--help"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.startswith(f"usage: minicnn {' '.join(path)}".rstrip())


def test_the_readme_commands_table_lists_every_subcommand_and_no_other():
    from pathlib import Path
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Commands", 1)[1].split("\n## ", 1)[0]
    nested = {path[0] for path in _subcommands() if len(path) > 1}      # data split, ...
    listed = set()
    for line in table.splitlines():
        if line.startswith("| `minicnn "):
            words = line.split("`")[1].split()[1:]
            listed.add(tuple(words[:2]) if words[0] in nested else (words[0],))
    assert listed == set(_subcommands())


def test_the_help_and_the_readme_describe_the_same_demo():
    from pathlib import Path

    from minicnn import datasets, flows
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    run = flows.resolve("scratch")
    lecture_help = subprocess.run([sys.executable, "-m", "minicnn.cli", "lecture", "--help"],
                                  capture_output=True, text=True, check=True).stdout
    train, validation = 2 * datasets.SAMPLE_TRAIN, 2 * datasets.SAMPLE_VALIDATION
    rate = f"{run.hyper.learning_rate:.0e}".replace("e-0", "e-")         # 3e-4
    for text in (" ".join(readme.split()), " ".join(lecture_help.split())):
        assert f"{train} train, {validation} validation" in text or \
            f"({train} cats and dogs to train on, {validation} to validate" in text
        assert f"{run.hyper.epochs} epochs" in text and rate in text


def test_unknown_model_is_refused_with_the_choices():
    result = subprocess.run([sys.executable, "-m", "minicnn.cli", "summary", "vgg"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "invalid choice: 'vgg'" in result.stderr
    assert "cnn-dropout" in result.stderr
