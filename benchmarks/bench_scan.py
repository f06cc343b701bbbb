"""`make bench`: whole-process `log-auditor scan` of generated nginx-combined lines.

Runs each command several times on the same file (a fresh store each time), reports the
median wall time, lines/s and peak memory, side by side with goaccess on the same file in
the same run, and the cost of detection (all bundled rules vs. none). Memory is that of
the whole process tree (the scan and its decode workers), sampled every 50 ms: peak RSS
of the main process, peak RSS summed over the tree, and peak PSS of the tree (shared pages
divided among the processes: the fairest total).

    .venv/bin/python benchmarks/bench_scan.py [--lines N] [--runs K]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from gen_lines import lines
from procmem import PeakSampler, TreeMemory


def ensure_input(n: int) -> Path:
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    path = out / f"nginx-combined-{n}.log"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with tmp.open("w") as f:
            buf: list[str] = []
            for line in lines(n):
                buf.append(line)
                if len(buf) >= 10000:
                    f.write("\n".join(buf) + "\n")
                    buf.clear()
            if buf:
                f.write("\n".join(buf) + "\n")
        tmp.rename(path)
    return path


def run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, TreeMemory]:
    """Wall seconds and peak memory (KiB) of one command and its children."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as errf:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errf, env=env)
        sampler = PeakSampler(proc.pid)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        peak = sampler.stop()
        errf.seek(0)
        err = errf.read().decode(errors="replace")[-2000:]
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"command failed: {' '.join(cmd)}\n{err}")
    # The kernel's own peak of the main process, in case the sampler missed it.
    main = max(peak.main_rss, usage.ru_maxrss)
    return wall, TreeMemory(main, max(peak.rss, main), peak.pss, peak.processes)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    src = ensure_input(args.lines)
    exe = str(Path(sys.executable).with_name("log-auditor"))
    work = Path(tempfile.mkdtemp(prefix="la-bench-"))
    no_rules = work / "norules.toml"
    no_rules.write_text("[rules]\nbundled = false\n")
    empty = work / "all.toml"
    empty.write_text("")
    variants: dict[str, list[str]] = {
        "log-auditor scan (all rules)": [
            exe,
            "scan",
            "--config",
            str(empty),
            "--quiet",
            "--format",
            "nginx-combined",
        ],
        "log-auditor scan (no rules)": [
            exe,
            "scan",
            "--config",
            str(no_rules),
            "--quiet",
            "--format",
            "nginx-combined",
        ],
    }
    results: dict[str, list[tuple[float, TreeMemory]]] = {k: [] for k in variants}
    goaccess = shutil.which("goaccess")
    if goaccess:
        results["goaccess --log-format=COMBINED -o out.json"] = []
    for i in range(args.runs):
        for name, base in variants.items():
            db = work / f"run{i}-{abs(hash(name))}.db"
            results[name].append(run([*base, "--db", str(db), str(src)]))
            for p in work.glob(f"run{i}-*"):
                p.unlink()
        if goaccess:
            out = work / "out.json"
            results["goaccess --log-format=COMBINED -o out.json"].append(
                run(
                    [
                        goaccess,
                        str(src),
                        "--log-format=COMBINED",
                        "--no-progress",
                        "--no-parsing-spinner",
                        "-o",
                        str(out),
                    ]
                )
            )
    print(
        f"input: {src} ({args.lines:,} lines, {src.stat().st_size / 1e6:.1f} MB), "
        f"{args.runs} runs, median"
    )
    print(
        f"{'command':48} {'wall s':>8} {'lines/s':>10} {'best':>10}"
        f" {'RSS main':>9} {'RSS tree':>9} {'PSS tree':>9} (MiB, peak)"
    )
    medians: dict[str, float] = {}
    for name, samples in results.items():
        wall = statistics.median(s[0] for s in samples)
        best = min(s[0] for s in samples)
        mem = [s[1] for s in samples]
        main = statistics.median(m.main_rss for m in mem) / 1024
        rss = statistics.median(m.rss for m in mem) / 1024
        pss = statistics.median(m.pss for m in mem) / 1024
        medians[name] = wall
        print(
            f"{name:48} {wall:8.2f} {args.lines / wall:10,.0f} {args.lines / best:10,.0f}"
            f" {main:9.1f} {rss:9.1f} {pss:9.1f}"
        )
    all_rules = medians["log-auditor scan (all rules)"]
    none = medians["log-auditor scan (no rules)"]
    print(
        f"cost of detection: {all_rules - none:.2f} s "
        f"({(all_rules - none) / args.lines * 1e6:.2f} us/line)"
    )
    ga = medians.get("goaccess --log-format=COMBINED -o out.json")
    if ga:
        print(f"speed vs goaccess: {ga / all_rules:.2f}x (all rules), {ga / none:.2f}x (no rules)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
