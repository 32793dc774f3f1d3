"""The model's one command line: `python -m training COMMAND [options]` (`COMMAND --help` for its options).

Each command is one module's main(); only the command that runs is imported, so torch, onnxruntime and the
SageMaker SDK load only for the commands that use them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, what it does): in the order of the model's life
COMMANDS = {
    "stage-data": ("training.stage_data",
                   "stage the bicycle/motorcycle images from CIFAR-100 (or PNGs, or reviewers' labels)"),
    "train": ("training.train", "train the classifier on staged images and export a model directory"),
    "cv": ("training.cv", "k-fold cross-validation of the training recipe: accuracy, automation, precision"),
    "evaluate": ("training.evaluate", "accuracy, F1 and confusion of a model directory on labelled images"),
    "gate": ("training.gate", "compare a challenger model with the champion: may it replace it?"),
    "quantize": ("training.quantize", "an int8 copy of a model directory (static QDQ, calibrated on training images)"),
    "export": ("training.export", "export a model directory again with today's exporter (probabilities unchanged)"),
    "serve": ("training.serving.endpoint", "serve a model over HTTP as a SageMaker endpoint does"),
    "benchmark": ("training.serving.benchmark", "how fast PyTorch, ONNX Runtime and the HTTP endpoint classify"),
    "sagemaker": ("training.sagemaker.cli", "train, deploy, update, monitor and tear down on SageMaker"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training", description=__doc__.split("\n")[0].split(": ", 1)[0] + ".",
        epilog="commands:\n" + "\n".join(f"  {name:<11} {text}" for name, (_, text) in COMMANDS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=COMMANDS, metavar="COMMAND", help="one of the commands below")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the command's own options (COMMAND --help)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    return module.main(args.args)


if __name__ == "__main__":
    sys.exit(main())
