"""The `autonas` command: parsing, errors, factories and --version (the demo itself runs in integration_tests)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import autonas
from autonas import cli
from autonas.demo.options import DemoOptions


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "autonas", *args], capture_output=True, text=True, cwd=cwd)


def test_version_prints_the_package_version() -> None:
    result = _run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"autonas {autonas.__version__}"


def test_console_script_is_installed_and_answers_version() -> None:
    script = Path(sys.executable).with_name("autonas")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert (result.returncode, result.stdout.strip()) == (0, f"autonas {autonas.__version__}")


def test_no_command_is_a_usage_error() -> None:
    result = _run()
    assert result.returncode == 2
    assert "COMMAND" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["demo", "--flops-limit", "0"], "--flops-limit: must be a percentage in (0, 100], got '0'"),
        (["demo", "--flops-limit", "half"], "--flops-limit: must be a percentage such as 50 or 50%, got 'half'"),
        (["demo", "--epochs", "-1"], "--epochs: must be an integer >= 0, got '-1'"),
        (["demo", "--search-iters", "0"], "--search-iters: must be a positive integer, got '0'"),
        (["demo", "--seed", "x"], "--seed: must be an integer, got 'x'"),
        (["demo", "--seed", "-3"], "--seed: must be an integer >= 0, got '-3'"),
        (["profile", "m:f", "--input-shape", "1,0,8"], "--input-shape: must be comma-separated positive integers"),
    ],
)
def test_bad_flags_are_rejected_naming_flag_and_value(args: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_demo_flags_reach_the_options() -> None:
    args = cli.build_parser().parse_args(
        [
            "demo",
            "--epochs",
            "2",
            "--flops-limit",
            "30%",
            "--output",
            "out",
            "--seed",
            "7",
            "--search-iters",
            "9",
            "--finetune-epochs",
            "0",
            "--sampling",
            "uniform",
            "--no-progress",
        ]
    )
    assert (args.epochs, args.flops_limit, args.output, args.seed, args.search_iters, args.finetune_epochs) == (
        2,
        30.0,
        Path("out"),
        7,
        9,
        0,
    )
    assert args.no_progress and args.sampling == "uniform" and args.handler is cli.run_demo_command


def test_demo_defaults_are_the_options_defaults() -> None:
    args = cli.build_parser().parse_args(["demo"])
    defaults = DemoOptions()
    assert (args.epochs, args.flops_limit, args.output, args.seed, args.search_iters, args.finetune_epochs) == (
        defaults.epochs,
        defaults.flops_limit,
        defaults.output,
        defaults.seed,
        defaults.search_iters,
        defaults.finetune_epochs,
    )
    assert args.sampling == defaults.sampling == "sandwich"
    assert defaults.flops_limit == 50.0


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("flops_limit", 120.0, "flops_limit"),
        ("search_iters", 0, "search_iters"),
        ("epochs", -2, "epochs"),
        ("lr", 0.0, "lr"),
        ("sampling", "sandwiches", "sampling must be one of"),
    ],
)
def test_demo_options_validate(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DemoOptions(**{field: value})


@pytest.mark.parametrize(("text", "shape"), [("1,3,224,224", (1, 3, 224, 224)), ("2x1x8x8", (2, 1, 8, 8)), ("5", (5,))])
def test_parse_shape(text: str, shape: tuple[int, ...]) -> None:
    assert cli.parse_shape(text) == shape


@pytest.mark.parametrize("text", ["", "1,,3", "1,-3", "a,b"])
def test_parse_shape_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="comma-separated positive integers"):
        cli.parse_shape(text)


def test_load_factory_from_a_module_and_a_file(tmp_path: Path) -> None:
    assert cli.load_factory("autonas.demo.model:SignalNet") is autonas.demo.model.SignalNet
    source = tmp_path / "zoo.py"
    source.write_text(
        textwrap.dedent("""
        class Zoo:
            @staticmethod
            def small():
                return "small"
    """)
    )
    assert cli.load_factory(f"{source}:Zoo.small")() == "small"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("autonas.demo.model", "expected MODULE:FACTORY"),
        (":SignalNet", "expected MODULE:FACTORY"),
        ("autonas.no_such_module:f", "cannot import module 'autonas.no_such_module'"),
        ("autonas.demo.model:NoSuchNet", "'autonas.demo.model' has no attribute 'NoSuchNet'"),
        ("autonas.demo.model:NUM_CLASSES", "is not callable: it is a int"),
        ("missing_dir/models.py:build", "no such file: missing_dir/models.py"),
    ],
)
def test_load_factory_errors(spec: str, message: str) -> None:
    with pytest.raises(cli.CommandError, match=message.replace("(", r"\(")):
        cli.load_factory(spec)


def test_profile_of_something_that_is_not_a_module_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "factories.py").write_text("def numbers():\n    return [1, 2, 3]\n")
    result = _run("profile", "factories:numbers", "--input-shape", "1,3", cwd=tmp_path)
    assert result.returncode == 2
    assert "autonas: error: factories:numbers returned a list, not a torch.nn.Module" in result.stderr


TINY_MLP = "from torch import nn\n\ndef mlp():\n    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))\n"


def test_profile_with_a_wrong_input_shape_says_which_shape_failed(tmp_path: Path) -> None:
    (tmp_path / "tiny.py").write_text(TINY_MLP)
    result = _run("profile", "tiny.py:mlp", "--input-shape", "1,5", cwd=tmp_path)
    assert result.returncode == 2
    assert "autonas: error: Sequential fails on an input of shape (1, 5)" in result.stderr
    assert "--input-shape" in result.stderr


def test_profile_of_a_model_with_nothing_to_search_points_to_no_convert(tmp_path: Path) -> None:
    (tmp_path / "tiny.py").write_text(TINY_MLP)
    result = _run("profile", "tiny.py:mlp", "--input-shape", "1,3", cwd=tmp_path)
    assert result.returncode == 2
    assert "does not contain any configurable hyperparameters" in result.stderr
    assert "--no-convert" in result.stderr
    plain = _run("profile", "tiny.py:mlp", "--input-shape", "1,3", "--no-convert", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert "full" in plain.stdout


ROOT = Path(__file__).resolve().parents[3]


def test_demo_help_says_where_the_files_go(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args(["demo", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: autonas-demo, relative to the current folder)" in text
    assert "created if missing and checked before training" in text


@pytest.mark.parametrize("where", ["results", "results/run1"])
def test_demo_output_that_cannot_be_a_folder_fails_before_training(where: str, tmp_path: Path) -> None:
    blocker = tmp_path / "results"
    blocker.write_text("last week's results")
    output = tmp_path / where
    result = _run("demo", "--output", str(output), "--no-progress")
    what = "it" if output == blocker else str(blocker)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"autonas: error: --output: cannot write {output}: {what} is a file, not a folder"
    ]
    assert result.stdout == ""  # no training started
    assert blocker.read_text() == "last week's results"


def test_profile_of_a_factory_that_needs_arguments_is_a_one_line_error() -> None:
    result = _run("profile", "torch.nn:Conv2d")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "autonas: error: calling torch.nn:Conv2d with no arguments failed (TypeError: Conv2d.__init__() missing 3 "
        "required positional arguments: 'in_channels', 'out_channels', and 'kernel_size'); FACTORY must build "
        "the model by itself"
    ]


def test_profile_without_torchvision_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    for name in [name for name in sys.modules if name.partition(".")[0] == "torchvision"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision now fails as if not installed
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["profile", "torchvision.models:resnet18"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "autonas: error: cannot import module 'torchvision.models': torchvision is not installed; install it "
        "together with the torch it was built for, e.g. pip install torch==2.14.1 torchvision==0.29.1"
    ]


def test_the_torchvision_pin_is_the_repository_pair_and_documented() -> None:
    pinned = [line for line in (ROOT / "constraints-vision.txt").read_text().splitlines() if line[:1].isalpha()]
    assert " ".join(pinned) == cli.TORCHVISION_PIN
    assert f"pip install {cli.TORCHVISION_PIN}" in (ROOT / "docs" / "cli.md").read_text()
