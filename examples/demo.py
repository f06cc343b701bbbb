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
        if (
            run(
                "report",
                "--config",
                cfg,
                "--from",
                "2026-11-20",
                "--to",
                "2026-11-21",
                "--out",
                str(out.relative_to(ROOT)),
            )
            != 0
        ):
            return 1
        print(f"\nPDF report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
