#!/usr/bin/env python3
"""The group writer's rhythm, from a benchmark run's server log.

The group writer logs each group it writes at debug level (`group written`: its size, how long its
first change queued, the time at the end of each phase) and the SQLite syncer each sync of the WAL.
This reads such a log and prints, for the cancellations' groups (imports left out) in the middle
three fifths of the run: how many changes a group held (mean and quartiles), how busy the writer was
(its groups' time over the span), each phase's time per change, the gaps between one group's end and
the next one's start (deciles: a long gap is the writer idle, every caller waiting on a sync or on
its answer), and the syncs' durations. It measures; it asserts nothing.

    RESCIND_BENCH_SERVER_LOG=rescind_store=debug,warn target/release/rescind bench \\
        --orders 20000 --scenarios own-store --no-reference > run.log 2>&1
    python3 tools/group_log.py run.log
"""
import datetime, re, statistics, sys

COLOUR = re.compile(r"\x1b\[[0-9;]*m")
EVENT = re.compile(r"^(?P<at>\S+Z) .*?rescind_store::\w+: (?P<what>group written|WAL synced)(?P<fields>.*)$")
FIELD = re.compile(r"(\w+)=(\d+)")


def events(path):
    """(microseconds since the epoch, what, {field: number}) for each group and sync logged."""
    for line in open(path, encoding="utf-8", errors="replace"):
        matched = EVENT.match(COLOUR.sub("", line.rstrip("\n")))
        if matched:
            at = datetime.datetime.fromisoformat(matched["at"].replace("Z", "+00:00")).timestamp() * 1e6
            yield at, matched["what"], {key: int(value) for key, value in FIELD.findall(matched["fields"])}


def deciles(values):
    return " ".join(f"{value:.0f}" for value in statistics.quantiles(values, n=10)) if len(values) > 1 else "—"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    logged = list(events(sys.argv[1]))
    groups = [(at, fields) for at, what, fields in logged if what == "group written"
              and fields.get("size", 0) > 0 and fields.get("imports", 0) == 0]
    if len(groups) < 5:
        sys.exit("fewer than five groups of changes in the log: was it written with rescind_store=debug?")
    groups = groups[len(groups) // 5: len(groups) * 4 // 5]
    changes = sum(fields["size"] for _, fields in groups)
    busy = sum(fields["committed_us"] for _, fields in groups)
    span = groups[-1][0] - (groups[0][0] - groups[0][1]["committed_us"])
    sizes = [fields["size"] for _, fields in groups]
    print(f"{len(groups)} groups, {changes} changes over {span / 1e3:.1f} ms ({changes / span * 1e6:.0f}/s); "
          f"the writer busy {100 * busy / span:.1f} % of the time")
    print(f"changes per group: mean {changes / len(groups):.1f}, quartiles "
          + " ".join(f"{q:.0f}" for q in statistics.quantiles(sizes, n=4)))
    phases = [("load", "imported_us", "loaded_us"), ("decide", "loaded_us", "decided_us"),
              ("write", "decided_us", "written_us"), ("commit", "written_us", "committed_us")]
    print("per change: " + ", ".join(
        f"{name} {sum(f[end] - f[start] for _, f in groups) / changes:.1f} µs" for name, start, end in phases)
        + f", all {busy / changes:.1f} µs")
    gaps = [later[0] - later[1]["committed_us"] - earlier[0] for earlier, later in zip(groups, groups[1:])]
    print(f"gaps between groups, deciles (µs): {deciles(gaps)}")
    first, last = groups[0][0], groups[-1][0]
    syncs = [fields["took_us"] for at, what, fields in logged if what == "WAL synced" and first <= at <= last]
    if syncs:
        print(f"WAL syncs: {len(syncs)}, deciles (µs): {deciles(syncs)}")


if __name__ == "__main__":
    main()
