"""Bounds for a random split of calls, so a test of one fails for a wrong split and almost never by chance.

gRPC's weighted_target picks a locality at random for each call. A fixed bound such as "each of three gets at
least 5 of 30" fails by chance about once in 30 runs; the bounds here come from the binomial distribution
with a stated false-alarm rate instead.
"""

from __future__ import annotations

from math import comb

# Chance that a correct split falls outside its range in one check: about one CI run in a million per check.
FALSE_ALARM = 1e-6


def binomial_range(calls: int, share: float, false_alarm: float = FALSE_ALARM) -> range:
    """The counts one destination with probability `share` per call gets in `calls` calls, but for `false_alarm`."""
    pmf = [comb(calls, k) * share**k * (1 - share) ** (calls - k) for k in range(calls + 1)]
    tail = false_alarm / 2
    low, below = 0, 0.0
    while below + pmf[low] <= tail:
        below += pmf[low]
        low += 1
    high, above = calls, 0.0
    while above + pmf[high] <= tail:
        above += pmf[high]
        high -= 1
    return range(low, high + 1)
