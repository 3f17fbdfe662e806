#!/usr/bin/env python3
"""Two builds of rescind compared by the benchmark, in alternating runs.

This machine's speed drifts by a fifth or more from one minute to the next, so one run of each build
says little. This runs `rescind bench` with the same arguments for build A and build B in turn —
A, B, then B, A, and so on, so that neither always runs second — and prints, for each measured line
(own-store, workflow, large, http-floor; not the steady scenario, whose rate is set), B's figures against A's: the rate, the server's CPU per request, its
group writer's and, on a PostgreSQL server here, PostgreSQL's — each as the mean of the pairs' log
ratios, with its standard error. Eight pairs of 20 000-order own-store runs gave ±2.8 % on the rate
here (BENCHMARKS.md, thirty-first session): an effect smaller than about twice the error is not shown.
It measures; it asserts nothing.

    python3 tools/bench_pairs.py PAIRS BUILD_A BUILD_B -- BENCH_ARGUMENTS...
    python3 tools/bench_pairs.py 5 /tmp/rescind-before target/release/rescind -- \\
        --database-url postgres://postgres@127.0.0.1:5432/test --orders 15000 --scenarios own-store --no-reference
"""
import math, re, statistics, subprocess, sys

# A measured line: `OwnStore   12345/s  p50 … (… server CPU 90 µs each (group writer 44), PostgreSQL 76 µs, …)`.
LINE = re.compile(r"^(?P<name>OwnStore|Workflow|Large|HttpFloor)\s.*?(?P<rate>\d+)/s")
FIGURES = {
    "rate": None,
    "server CPU": re.compile(r"server CPU (\d+) µs"),
    "group writer": re.compile(r"group writer (\d+)\)"),
    "PostgreSQL": re.compile(r"PostgreSQL (\d+) µs"),
}


def measure(build, arguments):
    """One run of `build`: {line name: {figure: value}}."""
    output = subprocess.run([build, "bench", *arguments], capture_output=True, text=True, check=True).stdout
    lines = {}
    for line in output.splitlines():
        matched = LINE.match(line)
        if not matched:
            continue
        figures = {"rate": float(matched["rate"])}
        for figure, pattern in FIGURES.items():
            found = pattern and pattern.search(line)
            if found:
                figures[figure] = float(found[1])
        lines[matched["name"]] = figures
    return lines


def summary(pairs):
    """B against A over `pairs` of (a, b): mean log ratio as a percentage, ± its standard error."""
    logs = [math.log(b / a) for a, b in pairs if a > 0 and b > 0]
    if not logs:
        return "—"
    mean = statistics.mean(logs)
    error = statistics.stdev(logs) / math.sqrt(len(logs)) if len(logs) > 1 else float("nan")
    return f"{100 * (math.exp(mean) - 1):+.1f} % ± {100 * error:.1f}"


def main():
    if len(sys.argv) < 5 or sys.argv[4] != "--":
        sys.exit(__doc__)
    count, builds, arguments = int(sys.argv[1]), sys.argv[2:4], sys.argv[5:]
    runs = {0: [], 1: []}
    for pair in range(count):
        for side in (0, 1) if pair % 2 == 0 else (1, 0):
            lines = measure(builds[side], arguments)
            runs[side].append(lines)
            shown = ", ".join(f"{name} {figures['rate']:.0f}/s" for name, figures in lines.items())
            print(f"pair {pair + 1} {'AB'[side]}: {shown}", flush=True)
    for name in runs[0][0]:
        print(f"{name}, B ({builds[1]}) against A ({builds[0]}), {count} pairs:")
        for figure in FIGURES:
            pairs = [
                (a[name][figure], b[name][figure])
                for a, b in zip(runs[0], runs[1])
                if figure in a.get(name, {}) and figure in b.get(name, {})
            ]
            if pairs:
                means = " → ".join(f"{statistics.mean(side):.0f}" for side in zip(*pairs))
                print(f"  {figure:<13} {means:<16} {summary(pairs)}")


if __name__ == "__main__":
    main()
