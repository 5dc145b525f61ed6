"""Shared by the benchmark scripts: the median of repeated wall-clock timings after a warm-up."""

import statistics
import time


def median_time(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
