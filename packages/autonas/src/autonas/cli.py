"""The ``autonas`` command: ``autonas demo``, ``autonas profile MODULE:FACTORY`` and ``autonas --version``.

Heavy imports (torch, the demo) happen inside the commands, so ``autonas --version`` and
``autonas --help`` answer at once.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import autonas
from autonas.demo.options import SAMPLINGS, DemoOptions
from autonas_search.files import writable_folder

#: A torch/torchvision pair that installs and imports together (the repository's constraints-vision.txt).
TORCHVISION_PIN = "torch==2.14.1 torchvision==0.29.1"


class CommandError(Exception):
    """A user error the command reports as ``autonas: error: ...`` with exit status 2."""


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def _percentage(text: str) -> float:
    """``"50"`` or ``"50%"`` -> 50.0; must lie in (0, 100]."""
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a percentage such as 50 or 50%, got {text!r}") from None
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"must be a percentage in (0, 100], got {text!r}")
    return value


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1,3,224,224"`` -> ``(1, 3, 224, 224)``; every size must be a positive integer."""
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated positive integers such as 1,3,224,224, got {text!r}"
        ) from None
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"must be comma-separated positive integers such as 1,3,224,224, got {text!r}")
    return shape


def load_factory(spec: str) -> Callable[[], Any]:
    """Resolve ``MODULE:FACTORY`` (a dotted module, or a path to a ``.py`` file) to the callable it names.

    ``FACTORY`` may be dotted (``models:Zoo.small``). The current directory is importable, as with
    ``python -m``.
    """
    module_name, sep, attribute = spec.rpartition(":")
    if not sep or not module_name or not attribute:
        raise CommandError(f"expected MODULE:FACTORY (e.g. torchvision.models:resnet18), got {spec!r}")
    module = _import_module(module_name)
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise CommandError(f"{module_name!r} has no attribute {attribute!r} (from {spec!r})") from None
    if not callable(target):
        raise CommandError(f"{spec!r} is not callable: it is a {type(target).__name__}")
    return target


def _import_module(name: str) -> ModuleType:
    if name.endswith(".py"):
        path = Path(name)
        if not path.is_file():
            raise CommandError(f"no such file: {name}")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is not None and error.name.partition(".")[0] == "torchvision":
            raise CommandError(
                f"cannot import module {name!r}: torchvision is not installed; install it together with the torch "
                f"it was built for, e.g. pip install {TORCHVISION_PIN}"
            ) from None
        raise CommandError(f"cannot import module {name!r}: {error}") from None


def _build_model(spec: str) -> Any:
    """Call the factory ``spec`` names with no arguments; its failure becomes a one-line error."""
    factory = load_factory(spec)
    try:
        return factory()
    except Exception as error:
        lines = str(error).strip().splitlines()
        reason = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
        raise CommandError(
            f"calling {spec} with no arguments failed ({reason}); FACTORY must build the model by itself"
        ) from None


def run_profile(args: argparse.Namespace) -> int:
    """Build the model, convert it to an AutoNAS search space (unless ``--no-convert``) and profile it."""
    import torch
    from torch import nn

    import autonas as an
    from autonas_modes import ApplyModeError

    model = _build_model(args.factory)
    if not isinstance(model, nn.Module):
        raise CommandError(f"{args.factory} returned a {type(model).__name__}, not a torch.nn.Module")
    dummy_input = torch.randn(args.input_shape)
    try:
        with torch.no_grad():
            model.eval()(dummy_input)
    except Exception as error:
        raise CommandError(
            f"{type(model).__name__} fails on an input of shape {tuple(args.input_shape)} ({error}); "
            "give the right one with --input-shape"
        ) from None
    if not args.no_convert and not an.is_dynamic(model):
        try:
            model = an.convert(model, mode="autonas")
        except ApplyModeError as error:
            raise CommandError(f"{error} (--no-convert profiles the model as it is)") from None
    an.profile(model, dummy_input)
    return 0


def run_demo_command(args: argparse.Namespace) -> int:
    """Run the MNIST-1D demo with the command-line settings."""
    try:
        writable_folder(args.output)  # now, not after minutes of training when the results are written
    except OSError as error:
        raise CommandError(f"--output: {error}") from None
    from autonas.demo.run import run_demo

    options = DemoOptions(
        epochs=args.epochs,
        flops_limit=args.flops_limit,
        output=args.output,
        seed=args.seed,
        search_iters=args.search_iters,
        finetune_epochs=args.finetune_epochs,
        progress=not args.no_progress,
        sampling=args.sampling,
    )
    run_demo(options)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``autonas`` command."""
    parser = argparse.ArgumentParser(
        prog="autonas", description="Weight-sharing neural architecture search for PyTorch."
    )
    parser.add_argument("--version", action="version", version=f"autonas {autonas.__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")
    _add_demo_command(commands)
    _add_profile_command(commands)
    return parser


def _add_demo_command(commands: Any) -> None:
    """The ``demo`` subcommand and its options."""
    demo = commands.add_parser(
        "demo",
        help="train, search, export and fine-tune a CNN on MNIST-1D signals",
        description="Train a small 1-D CNN supernet on MNIST-1D (generated locally), search the best "
        "subnet under a FLOPs limit, export and fine-tune it, print original vs found subnet and write "
        "the exported model, its checkpoint, its architecture state, a plot of the candidates and the results "
        "to the --output folder (autonas-demo in the current folder unless given).",
    )
    defaults = DemoOptions()
    demo.add_argument(
        "--epochs",
        type=_non_negative_int,
        default=defaults.epochs,
        help="supernet training epochs (default: %(default)s)",
    )
    demo.add_argument(
        "--flops-limit",
        type=_percentage,
        default=defaults.flops_limit,
        metavar="PERCENT",
        help="FLOPs budget in percent of the original model (default: %(default)s)",
    )
    demo.add_argument(
        "--output",
        type=Path,
        default=defaults.output,
        metavar="DIR",
        help="folder for the written files, created if missing and checked before training "
        "(default: %(default)s, relative to the current folder)",
    )
    demo.add_argument(
        "--seed", type=_non_negative_int, default=defaults.seed, help="random seed (default: %(default)s)"
    )
    demo.add_argument(
        "--search-iters",
        type=_positive_int,
        default=defaults.search_iters,
        help="candidates visited by the search (default: %(default)s)",
    )
    demo.add_argument(
        "--finetune-epochs",
        type=_non_negative_int,
        default=defaults.finetune_epochs,
        help="fine-tuning epochs of the found subnet (default: %(default)s)",
    )
    demo.add_argument(
        "--sampling",
        choices=SAMPLINGS,
        default=defaults.sampling,
        help="supernet training: the maximal, the minimal and two random subnets per step with in-place "
        "distillation (sandwich), or one random subnet per step (uniform) (default: %(default)s)",
    )
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    demo.set_defaults(handler=run_demo_command)


def _add_profile_command(commands: Any) -> None:
    """The ``profile`` subcommand and its options."""
    profile = commands.add_parser(
        "profile",
        help="print FLOPs and parameters of a model's search space",
        description="Build a model from MODULE:FACTORY, convert it with the default AutoNAS rules and print "
        "the FLOPs and parameters of its min, centroid and max subnets.",
    )
    profile.add_argument(
        "factory",
        metavar="MODULE:FACTORY",
        help="a callable returning an nn.Module, e.g. torchvision.models:resnet18 or models.py:build",
    )
    profile.add_argument(
        "--input-shape",
        type=parse_shape,
        default=(1, 3, 224, 224),
        metavar="SHAPE",
        help="shape of the dummy input, comma-separated (default: 1,3,224,224)",
    )
    profile.add_argument("--no-convert", action="store_true", help="profile the model as it is, without converting")
    profile.set_defaults(handler=run_profile)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``autonas`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except CommandError as error:
        parser.exit(2, f"autonas: error: {error}\n")
