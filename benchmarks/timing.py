"""Statistics and timing of repeated measurements: spread, percentiles, interleaved rounds.

Imports neither Keras nor TensorFlow.
"""

import statistics
import time


def spread(values):
    """Median and spread of repeated measurements: min, max, quartiles, IQR, n, the values."""
    values = [float(v) for v in values]
    ordered = sorted(values)
    if len(values) >= 2:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1 = q3 = ordered[0]
    return {"median": statistics.median(ordered), "min": ordered[0], "max": ordered[-1],
            "q1": q1, "q3": q3, "iqr": q3 - q1, "mean": statistics.fmean(ordered),
            "n": len(values), "values": values}


def percentile(values, q):
    """The ``q``-th percentile (0..100) of ``values``, linear interpolation."""
    ordered = sorted(float(v) for v in values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def interleaved(functions, rounds, rotate=True, progress=True):
    """Call every function of ``functions`` (name -> callable returning a count) once per round.

    Rounds are interleaved so that a drift of the machine hits every function alike; with
    ``rotate`` the order shifts by one each round so no function always runs first.

    Returns:
        name -> list of rates (count / seconds), one per round.
    """
    names = list(functions)
    rates = {name: [] for name in names}
    for round_index in range(rounds):
        if progress:
            print(f"  round {round_index + 1}/{rounds}", flush=True)
        shift = round_index % len(names) if rotate and names else 0
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            count = functions[name]()
            rates[name].append(count / (time.perf_counter() - start))
    return rates
