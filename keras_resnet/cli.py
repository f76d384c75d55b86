"""The ``keras-resnet`` command line: thin wrappers over the package's modules."""

import argparse
import os
import sys


def _summary(args):
    from keras_resnet.summary import summary_table

    from keras_resnet.architectures import NAMED_MODELS

    unknown = [name for name in args.models if name not in NAMED_MODELS]
    if unknown:
        print(
            f"keras-resnet summary: unknown model {unknown[0]!r}; choose from "
            f"{', '.join(NAMED_MODELS)}",
            file=sys.stderr,
        )
        return 2
    print(summary_table(args.models or None))
    return 0


def build_parser():
    """The argument parser of ``keras-resnet``."""
    from keras_resnet.architectures import NAMED_MODELS

    parser = argparse.ArgumentParser(
        prog="keras-resnet",
        description="ResNets of He et al. 2015 for Keras 3: summarize, train, export, serve.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    summary = commands.add_parser(
        "summary", help="depth, parameters and multiply-adds of every model vs the paper"
    )
    summary.add_argument(
        "models", nargs="*", metavar="MODEL",
        help=f"models to list (default: all of {', '.join(NAMED_MODELS)})",
    )
    summary.set_defaults(run=_summary)
    return parser


def main(argv=None):
    """Entry point of the ``keras-resnet`` console script."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
