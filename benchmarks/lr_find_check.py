"""Does the learning-rate range test point where a sweep of short runs at fixed rates does?

On the default run (``keras-resnet train``: ResNet-20 on the offline digits, the paper's CIFAR
recipe, batch 32) it runs ``keras_resnet.lr_find`` (an exponential ramp over ``--steps``
batches from ``--start-lr`` to ``--end-lr``, ``--repeats`` times, each with its own data
order), then, from the same starting weights and on the first repeat's batches, one short run
per fixed rate of a log grid (``--grid-from`` to ``--grid-to``, ``--per-decade`` rates a
decade), each ``--run-steps`` long (default: one epoch of the training split). A short run's
figure is its training loss at the end: the mean of its last ``--last`` batch losses (inf once
it diverged). Prints both, the rate of the finder's least smoothed loss, the best fixed rate,
and whether the best fixed rate lies within a decade of the range the finder's suggestions
span.

Commands:

    python -m benchmarks.lr_find_check                 # 3 x 100 steps, rates 1e-4 .. 10
    python -m benchmarks.lr_find_check --repeats 1 --per-decade 1
"""

import argparse
import math
import tempfile
import time

import numpy as np


def _final_loss(losses, last):
    tail = np.asarray(losses[-last:], float)
    return float(tail.mean()) if np.all(np.isfinite(tail)) else math.inf


def sweep(test, rates, steps, last):
    """``{rate: final training loss}`` of a short run per rate, each from the starting
    weights (``keras_resnet.lr_find.RangeTest``), on the range test's own batches."""
    found = {}
    for rate in rates:
        recorder = test.run(np.full(steps, rate), diverge=None)
        found[rate] = _final_loss(recorder.losses, last)
        print(f"  fixed lr {rate:9.3g}: final training loss {found[rate]:.4f}", flush=True)
    return found


def verdict(result, best):
    """``(low, high, inside)``: the range of the suggestions and whether ``best`` lies within
    a decade of it."""
    rates = [rate for rate in result.suggestions.values() if rate is not None]
    low, high = min(rates), max(rates)
    return low, high, low / 10 <= best <= high * 10


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="steps of the ramp")
    parser.add_argument("--start-lr", type=float, default=1e-7)
    parser.add_argument("--end-lr", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--run-steps", type=int, default=None,
                        help="steps of each fixed-rate run (default: one epoch)")
    parser.add_argument("--grid-from", type=float, default=1e-4)
    parser.add_argument("--grid-to", type=float, default=10.0)
    parser.add_argument("--per-decade", type=int, default=2)
    parser.add_argument("--last", type=int, default=10,
                        help="batches averaged for a short run's final loss")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import keras_resnet  # noqa: F401  (first, quietly: this package sets KERAS_RESNET_QUIET)
    # isort: split

    from keras_resnet.lr_find import RangeTest, lr_find
    from keras_resnet.train.config import RunConfig

    started = time.time()
    decades = math.log10(args.grid_to / args.grid_from)
    rates = np.geomspace(args.grid_from, args.grid_to, round(decades * args.per_decade) + 1)
    with tempfile.TemporaryDirectory() as folder:
        test = RangeTest(RunConfig.from_options(seed=args.seed, verbose=0), output_dir=folder)
        result = lr_find(test, start_lr=args.start_lr, end_lr=args.end_lr, steps=args.steps,
                         repeats=args.repeats)
        batch = test.prepared.setup.global_batch
        print(f"range test, {test.config.model_name} on {test.config.data.dataset}, batch "
              f"{batch}, {args.repeats} x {args.steps} steps from {args.start_lr:g} to "
              f"{args.end_lr:g}:")
        for line in result.lines()[:-2]:  # not the temporary files
            print(f"  {line}")
        run_steps = args.run_steps or test.prepared.splits.info.num_examples // batch
        print(f"short runs of {run_steps} steps at fixed rates:")
        losses = sweep(test, rates, run_steps, args.last)
    best = min(losses, key=losses.get)
    low, high, inside = verdict(result, best)
    print(f"finder's least smoothed loss at lr {result.minimum_lr:.3g}; best fixed rate "
          f"{best:.3g} (final loss {losses[best]:.4f}); "
          f"{abs(math.log10(result.minimum_lr / best)):.2f} decades apart")
    print(f"suggestions span {low:.3g} .. {high:.3g}: the best fixed rate is "
          f"{'within' if inside else 'NOT within'} a decade of it")
    print(f"{time.time() - started:.0f} s in all")


if __name__ == "__main__":
    main()
