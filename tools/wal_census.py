#!/usr/bin/env python3
"""Which tables and indexes the pages of an own-store benchmark's commits belong to.

Runs `rescind bench --scenarios own-store` on SQLite, copies the server's write-ahead log 1.5 s into
the measured run, maps every frame's page to its table or index (SQLite's `dbstat`, read-only on the
live file), and prints the frames of each per commit. Divide by the group size the server logs
(`RESCIND_BENCH_SERVER_LOG=warn,rescind_store=debug`, `size=` of "group written") for frames per
cancellation. Used in BENCHMARKS.md (fifteenth session); it measures, it asserts nothing.

    python3 tools/wal_census.py target/release/rescind [orders]
"""
import collections, re, shutil, sqlite3, struct, subprocess, sys, tempfile, time

binary = sys.argv[1]
orders = sys.argv[2] if len(sys.argv) > 2 else "40000"
with tempfile.TemporaryDirectory() as folder:
    output_path = f"{folder}/bench.out"
    with open(output_path, "w") as output:
        bench = subprocess.Popen(
            [binary, "bench", "--orders", orders, "--clients", "64", "--scenarios", "own-store", "--no-reference"],
            stdout=output, stderr=subprocess.STDOUT)
    while "imported" not in open(output_path).read():
        time.sleep(0.1)
    servers = subprocess.run(["pgrep", "-af", "serve --listen"], capture_output=True, text=True).stdout
    database = re.search(r"sqlite://(\S+)", servers).group(1)
    time.sleep(1.5)
    shutil.copy(database + "-wal", f"{folder}/copy.wal")
    live = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    owner = dict(live.execute("SELECT pageno, name FROM dbstat"))
    live.close()
    bench.wait()
    print(open(output_path).read().strip().splitlines()[-1])
    wal = open(f"{folder}/copy.wal", "rb").read()

# The WAL's format: sqlite.org/fileformat2.html, "The Write-Ahead Log".
page_size = struct.unpack(">I", wal[8:12])[0]
salt = wal[16:24]
offset, commits, frames = 32, 0, collections.Counter()
while offset + 24 + page_size <= len(wal) and wal[offset + 8:offset + 16] == salt:
    page, size_after_commit = struct.unpack(">II", wal[offset:offset + 8])
    frames[owner.get(page, "(a page new since the map)")] += 1
    commits += size_after_commit != 0
    offset += 24 + page_size
total = sum(frames.values())
print(f"{page_size}-byte pages: {total} frames in {commits} commits, {total / max(commits, 1):.1f} per commit")
for name, count in frames.most_common():
    print(f"  {name:40s} {count / max(commits, 1):7.2f} per commit")
