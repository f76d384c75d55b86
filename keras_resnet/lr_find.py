"""A learning-rate range test: train a few steps with the rate growing exponentially, watch the
loss, and suggest a rate (Smith 2017, "Cyclical Learning Rates for Training Neural Networks",
§3.3; the form fastai's ``lr_find`` made popular).

The model, optimizer, loss, augmentation and batch are those of a run with the same
configuration (``keras_resnet.train.flow.prepare``); only the rate differs: step ``i`` of ``n``
trains at ``start_lr * (end_lr / start_lr) ** (i / (n - 1))``. The loss of each batch is
recorded and smoothed (an exponential moving average, ``smoothing`` 0.98, bias-corrected), and
the test stops once the smoothed loss passes ``diverge`` (4) times its least, or is not finite.
Three rules read the smoothed curve up to that point:

- ``valley``: the middle (in log rate) of the longest fall of the loss: the longest
  sequence of steps, not necessarily adjacent, each with a lower loss than the one before;
- ``steepest``: where the loss falls fastest against the log rate;
- ``minimum/10``: a tenth of the rate at the least loss.

The model comes back with its starting weights; with ``repeats`` each repeat starts from them
with its own data order (data seed ``seed + repeat``). It suggests; it never changes a run.

Example:
    >>> result = lr_find("resnet8", "digits", steps=50, epochs=1)  # doctest: +SKIP
    >>> sorted(result.suggestions)  # doctest: +SKIP
    ['minimum/10', 'steepest', 'valley']
"""

import csv
import dataclasses
import os

import keras
import numpy as np

from keras_resnet.errors import InvalidArgument
from keras_resnet.saving import atomic_path
from keras_resnet.train import flow
from keras_resnet.train.config import RunConfig, default_run_dir
from keras_resnet.train.detection import default_model
from keras_resnet.train.lr_range import (  # noqa: F401  (the range test's parts, here too)
    RULES,
    LRRamp,
    check_range,
    ramp,
    smooth,
    suggest,
)

RULE_TEXT = {
    "valley": "the middle of the longest fall of the smoothed loss",
    "steepest": "the steepest fall of the smoothed loss",
    "minimum/10": "a tenth of the rate at the least smoothed loss",
}
CSV_NAME, PNG_NAME = "lr_find.csv", "lr_find.png"


class RangeTest:
    """A model and its training data, set up as a run of ``config`` would set them up, that
    trains a few steps at given rates and returns to its starting weights each time.

    Args:
        config: a :class:`~keras_resnet.train.config.RunConfig` of a run from scratch.
        output_dir: where :func:`lr_find` writes (made here); None: ``lr_find/`` in the run
            directory (``runs/MODEL-DATASET/lr_find``).

    Example:
        >>> test = RangeTest(RunConfig.from_options("resnet8", epochs=1))  # doctest: +SKIP
        >>> test.run([0.01] * 20, diverge=None).losses[-1] > 0  # doctest: +SKIP
        True
    """

    def __init__(self, config, output_dir=None):
        if not isinstance(config, RunConfig):
            raise InvalidArgument(f"`config` must be a RunConfig; got {type(config).__name__}.")
        if config.fine_tune is not None:
            raise InvalidArgument("The range test takes a run from scratch; got a fine-tuning "
                                  f"config (`weights` {config.fine_tune.weights!r}).")
        if config.hardware.steps_per_execution not in ("auto", 1):
            raise InvalidArgument("`steps_per_execution` must be 'auto' or 1 for a range test "
                                  "(the rate changes every step); got "
                                  f"{config.hardware.steps_per_execution!r}.")
        run_dir = config.output.run_dir or default_run_dir(config)
        self.output_dir = os.fspath(output_dir or os.path.join(run_dir, "lr_find"))
        config = dataclasses.replace(
            config, hardware=dataclasses.replace(config.hardware, steps_per_execution=1),
            output=dataclasses.replace(config.output, run_dir=self.output_dir, resume=True,
                                       export=False))
        self.prepared = flow.prepare(config)
        models = (self.prepared.trained, self.prepared.net)
        self._variables = list({id(v): v for m in models for v in m.weights}.values())
        self._start = [keras.ops.convert_to_numpy(v).copy() for v in self._variables]
        self._batches = {}

    @property
    def config(self):
        """The resolved run configuration."""
        return self.prepared.config

    def batches(self, repeat=0):
        """The training batches of ``repeat`` (data seed ``seed + repeat``), endless."""
        if repeat not in self._batches:
            train = (self.prepared.splits.train if repeat == 0 else
                     flow.training_data(self.prepared, self.config.seed + repeat))
            self._batches[repeat] = train.repeat()
        return self._batches[repeat]

    def restore(self):
        """Put the starting weights back."""
        for variable, value in zip(self._variables, self._start):
            variable.assign(value)

    def run(self, lrs, repeat=0, smoothing=0.98, diverge=4.0, verbose=0):
        """Train from the starting weights one step per rate of ``lrs`` (a fresh optimizer of
        the run's recipe), on the batches of ``repeat``; then restore the weights.

        Returns:
            The :class:`LRRamp` with the losses it recorded.

        Example:
            >>> test.run(ramp(1e-7, 10, 100)).diverged  # doctest: +SKIP
            True
        """
        prepared, recorder = self.prepared, LRRamp(lrs, smoothing, diverge)
        try:
            with prepared.setup.strategy.scope():
                flow.compile_for_run(prepared.trained, self.config, prepared.setup.global_batch,
                                     prepared.recipe, float(lrs[0]), len(lrs))
            prepared.trained.fit(self.batches(repeat), epochs=1, steps_per_epoch=len(lrs),
                                 callbacks=[recorder], verbose=verbose, shuffle=False)
        finally:
            self.restore()
        return recorder


@dataclasses.dataclass(eq=False)
class LRFindResult:
    """What a range test found (:func:`lr_find`).

    Fields:
        lrs: the rate of each step taken (by the longest repeat).
        losses, smoothed: per repeat, each batch's loss and the moving average.
        diverged: per repeat, whether it stopped on divergence (the last step then diverged:
            the rules read the steps before it).
        suggestions: ``{rule: rate}`` of the smoothed curve (with repeats: their mean over
            the steps every repeat reached).
        repeat_suggestions: per repeat, its own ``{rule: rate}``.
        minimum_lr: the rate at the least smoothed loss (the mean with repeats).
        run_learning_rate: the rate a run of this configuration starts at.
        csv_path, png_path: the files written.
        steps: the ramp's planned steps.

    Example:
        >>> result.suggestions["valley"]  # doctest: +SKIP
        0.021
    """

    lrs: np.ndarray
    losses: tuple
    smoothed: tuple
    diverged: tuple
    suggestions: dict
    repeat_suggestions: tuple
    minimum_lr: float
    run_learning_rate: float
    csv_path: str = None
    png_path: str = None
    steps: int = None

    @property
    def curves(self):
        """``(repeats, steps)``: each repeat's smoothed loss over the steps every repeat
        reached before diverging."""
        usable = [len(s) - d for s, d in zip(self.smoothed, self.diverged)]
        return np.array([s[:min(usable)] for s in self.smoothed])

    @property
    def mean(self):
        """The smoothed loss averaged over the repeats, per step (:attr:`curves`)."""
        return self.curves.mean(axis=0)

    @property
    def spread(self):
        """``(low, high, std)`` of the smoothed loss over the repeats, per step."""
        curves = self.curves
        return curves.min(axis=0), curves.max(axis=0), curves.std(axis=0)

    def lines(self):
        """What the command line prints: each rule's rate, the run's, the files.

        Example:
            >>> print("\\n".join(result.lines()))  # doctest: +SKIP
        """
        out = []
        for rule in RULES:
            rate = self.suggestions[rule]
            text = f"{rate:.3g}" if rate is not None else "none (too few steps before it diverged)"
            each = ["-" if s[rule] is None else f"{s[rule]:.3g}" for s in self.repeat_suggestions]
            if len(each) > 1:
                text += f" (repeats: {', '.join(each)})"
            out.append(f"{rule}: {text} - {RULE_TEXT[rule]}")
        ends = ", ".join(f"step {len(s)} of {self.steps} ({'diverged' if d else 'end'})"
                         for s, d in zip(self.losses, self.diverged))
        out.append(f"least smoothed loss at lr {self.minimum_lr:.3g}; stopped at {ends}")
        out.append(f"a run of this configuration starts at lr {self.run_learning_rate:.3g}")
        out += [f"written: {path}" for path in (self.csv_path, self.png_path) if path]
        return out


def _result(lrs, recorders, run_rate):
    losses = tuple(np.array(r.losses) for r in recorders)
    smoothed = tuple(np.array(r.smoothed) for r in recorders)
    diverged = tuple(r.diverged for r in recorders)
    steps = max(len(loss) for loss in losses)
    each = tuple(suggest(lrs, s[:len(s) - d]) for s, d in zip(smoothed, diverged))
    result = LRFindResult(np.asarray(lrs[:steps], float), losses, smoothed, diverged, {}, each,
                          float("nan"), float(run_rate), steps=len(lrs))
    mean = result.mean
    result.suggestions = suggest(lrs, mean) if len(recorders) > 1 else dict(each[0])
    if len(mean):
        result.minimum_lr = float(lrs[np.argmin(mean)])
    return result


def write_csv(result, path):
    """``lr_find.csv``: per step its rate, each repeat's loss and smoothed loss (blank after a
    repeat stopped), and with repeats the mean, min, max and std of the smoothed loss.

    Example:
        >>> write_csv(result, "runs/lr_find/lr_find.csv")  # doctest: +SKIP
    """
    repeats = len(result.losses)
    header = (["step", "lr"] + [f"loss_{r + 1}" for r in range(repeats)]
              + [f"smoothed_{r + 1}" for r in range(repeats)])
    columns = list(result.losses) + list(result.smoothed)
    if repeats > 1:
        header += ["smoothed_mean", "smoothed_min", "smoothed_max", "smoothed_std"]
        columns += [result.mean, *result.spread]
    with atomic_path(path, suffix=".csv") as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for step, lr in enumerate(result.lrs):
                writer.writerow([step, repr(float(lr))] + [
                    repr(float(column[step])) if step < len(column) else "" for column in columns])


def plot(result, path):
    """``lr_find.png``: the loss against the rate (log axis), each rule's rate marked and named
    in the legend, the run's rate dotted; with repeats the band of their smoothed losses.

    Example:
        >>> plot(result, "runs/lr_find/lr_find.png")  # doctest: +SKIP
    """
    from matplotlib.figure import Figure  # no pyplot: no backend switch (as train.results)

    figure = Figure(figsize=(7, 4.5))
    axis = figure.subplots()
    for loss in result.losses:
        axis.plot(result.lrs[:len(loss)], loss, color="0.6", alpha=0.5, linewidth=0.8)
    curve = result.mean
    if len(result.losses) > 1:
        low, high, _ = result.spread
        axis.fill_between(result.lrs[:len(curve)], low, high, color="C0", alpha=0.25,
                          label=f"smoothed loss, min-max of {len(result.losses)} repeats")
    axis.plot(result.lrs[:len(curve)], curve, color="C0", label="smoothed loss"
              + (" (mean)" if len(result.losses) > 1 else ""))
    for colour, rule in zip(("C1", "C2", "C3"), RULES):
        rate = result.suggestions[rule]
        if rate is not None:
            axis.axvline(rate, color=colour, linestyle="--", label=f"{rule}: {rate:.2g}")
    axis.axvline(result.run_learning_rate, color="0.3", linestyle=":",
                 label=f"the run's rate: {result.run_learning_rate:.2g}")
    if len(curve):
        axis.set_ylim(0.9 * np.min(curve), 1.1 * max(np.max(curve), curve[0]))
    axis.set_xscale("log")
    axis.set_xlabel("learning rate")
    axis.set_ylabel("training loss")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize="small")
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=100)


def lr_find(model=None, dataset="digits", *, start_lr=1e-7, end_lr=10.0, steps=100, repeats=3,
            smoothing=0.98, diverge=4.0, output_dir=None, **options):
    """Run a learning-rate range test for a run's configuration and suggest rates.

    Args:
        model: a model name, ``.keras`` path or ``keras.Model`` (as
            :func:`keras_resnet.runs.train`; None: its default), a
            :class:`~keras_resnet.train.config.RunConfig`, or a :class:`RangeTest` already
            set up. A model object is trained in place and gets its starting weights back.
        dataset, **options: the run's, as :func:`keras_resnet.runs.train` takes them (with a
            model, not a config).
        start_lr, end_lr, steps: the exponential ramp, one rate per step.
        repeats: the tests to run, each from the starting weights with its own data order
            (3: one test's rule can be two decades off on the digits, their mean was not).
        smoothing: the moving average's factor; diverge: stop once the smoothed loss passes
            this many times its least (None: run every step).
        output_dir: where ``lr_find.csv`` and ``lr_find.png`` go; None: ``lr_find/`` in the
            run directory (``runs/MODEL-DATASET/lr_find``).

    Returns:
        An :class:`LRFindResult`.

    Example:
        >>> lr_find("resnet8", "digits", steps=50).suggestions["valley"]  # doctest: +SKIP
        0.02
    """
    check_range(start_lr, end_lr, steps, repeats)
    if isinstance(model, RangeTest):
        test = model
    else:
        if isinstance(model, RunConfig):
            if options or dataset != "digits":
                given = sorted(options) or dataset
                raise InvalidArgument("Give a RunConfig alone, or a model with `dataset` and "
                                      f"options; got a RunConfig and {given!r}.")
            config = model
        else:
            model = default_model(dataset, options.get("task", "auto")) if model is None else model
            config = RunConfig.from_options(model, dataset, **options)
        test = RangeTest(config, output_dir)
    lrs = ramp(start_lr, end_lr, steps)
    verbose = flow.fit_verbosity(test.config.output.verbose)  # off a terminal: a line a repeat
    recorders = [test.run(lrs, repeat, smoothing, diverge, verbose) for repeat in range(repeats)]
    result = _result(lrs, recorders, test.prepared.learning_rate)
    folder = os.fspath(output_dir or test.output_dir)
    result.csv_path = os.path.join(folder, CSV_NAME)
    result.png_path = os.path.join(folder, PNG_NAME)
    write_csv(result, result.csv_path)
    plot(result, result.png_path)
    return result
