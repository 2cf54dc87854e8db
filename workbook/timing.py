"""Timing implementations side by side, as the report's speed section and `make bench` do."""
import time


def interleaved_times(fns: dict, rounds: int, budget: float, own_clock=()) -> dict:
    """{name: seconds per call of each of its rounds}: the functions take turns, round by round,
    so that the machine's drift touches them alike; each round calls each once. Stops early once
    `budget` seconds have passed (after at least 3 rounds). A function named in own_clock returns
    the seconds to count itself (a training loop's own time, its set-up left out)."""
    times = {name: [] for name in fns}
    start = time.perf_counter()
    for r in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            got = fn()
            times[name].append(got if name in own_clock else time.perf_counter() - t0)
        if r >= 2 and time.perf_counter() - start > budget:
            break
    return times
