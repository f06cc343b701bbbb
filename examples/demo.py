"""`make demo`: scan the bundled sample logs, print the findings, write the PDF report.

Runs the installed `log-auditor` command exactly as a user would.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "demo.toml"
STATE = ROOT / "build" / "demo"
EXE = str(Path(sys.executable).with_name("log-auditor"))


def run(*args: str) -> int:
    print(f"$ log-auditor {' '.join(args)}", flush=True)
    return subprocess.call([EXE, *args], cwd=ROOT)


def main() -> int:
    shutil.rmtree(STATE, ignore_errors=True)
    STATE.mkdir(parents=True, mode=0o700)
    cfg = str(CONFIG.relative_to(ROOT))
    steps = [
        ("scan", "--config", cfg, "examples/logs/api-access.log", "examples/logs/legacy-http.log"),
        ("status", "--config", cfg),
        ("findings", "--config", cfg),
    ]
    for step in steps:
        if run(*step) != 0:
            return 1
        print()
    have_report = subprocess.call(
        [EXE, "report", "--help"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    if have_report == 0:
        out = ROOT / "reports" / "demo-2026-11-20.pdf"
        args = ["report", "--config", cfg, "--from", "2026-11-20", "--to", "2026-11-21"]
        args += ["--out", str(out.relative_to(ROOT))]
        print(f"$ log-auditor {' '.join(args)}", flush=True)
        done = subprocess.run(
            [EXE, *args], check=False, cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        print(done.stdout, end="", flush=True)
        if done.returncode != 0:
            return 1
        # An issued report is never overwritten: a second demo writes ...-r2.pdf, and the
        # command's first line says where.
        lines = done.stdout.splitlines()
        written = ROOT / lines[0].strip() if lines and lines[0].strip() else out
        print(f"\nPDF report: {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
