#!/usr/bin/env python3
"""What durable history (or Redis) costs: papo's variants side by side in ../shared/bench, N times.

    make bench-compare                          # durable vs --memory, three runs
    python bench/compare.py --variants durable,memory,redis --runs 3

The machine is shared and its noise is ±30 % run to run, so variants are
only compared *within* one run of the shared bench (the same minutes, the
same load generator), and the run is repeated. For each run it prints, per
variant: the chat scenario (~100k deliveries/s offered: ratio, p50, p99,
server CPU), the highest sustained step of the saturation scenario, and the
server CPU at the highest step that every variant passed (when that step is
at least 700k deliveries/s, the issue's comparison point). The last column
of a variant is its CPU there over the first variant's (durable, the
default): ``≤ 1.10`` for ``--memory`` would mean durability costs ≤ 10 %.

The shared bench is copied to a scratch folder and built there once
(``setup.sh``), since ``../shared`` may be read-only. ``redis`` needs a
``redis-server`` on 127.0.0.1:6379 (its database 15 is flushed first).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "bench"
#: The step the issue compares at: the highest passed by all, if at least this.
MIN_COMPARE = 700_000

#: Server options of each variant (after the common ones).
VARIANTS: dict[str, list[str]] = {
    "durable": [],
    "memory": ["--memory"],
    "redis": ["--redis", "redis://127.0.0.1:6379/15"],
}


def server_cmd(variant: str, data: Path) -> str:
    common = [
        sys.executable, str(ROOT / "server.py"), "--host", "127.0.0.1", "--port", "{port}",
        "--data", str(data / variant), "--rate-limit", "0", "--max-connections", "20000",
        "--max-connections-per-ip", "0", "--log-level", "WARNING",
    ]  # fmt: skip
    return " ".join([*common, *VARIANTS[variant]])


def prepare(shared: Path, scratch: Path) -> Path:
    """A built copy of the shared bench in ``scratch`` (built once, reused)."""
    bench = scratch / "shared-bench"
    if not (bench / "loadgen").exists():
        shutil.rmtree(bench, ignore_errors=True)
        shutil.copytree(shared, bench, ignore=shutil.ignore_patterns("results", ".venv"))
        print(f"building the shared bench in {bench} ...", flush=True)
        subprocess.run(["bash", "setup.sh"], cwd=bench, check=True, stdout=subprocess.DEVNULL)
    return bench


def one_run(bench: Path, variants: list[str], scenarios: str, data: Path, out: Path) -> None:
    cmd = [sys.executable, "run.py", "--peers", "none", "--scenarios", scenarios,
           "--chat-runs", "1", "--results", str(out), "--cwd", str(ROOT)]  # fmt: skip
    for variant in variants:
        cmd += ["--server-cmd", server_cmd(variant, data), "--name", variant, "--path", "/"]
    if "redis" in variants:
        subprocess.run(["redis-cli", "-n", "15", "flushdb"], check=False, capture_output=True)
    subprocess.run(cmd, cwd=bench, check=True)


def summarize(path: Path) -> dict[str, dict[str, Any]]:
    """Per variant: its chat run, its sat steps by offered rate, its best sat step."""
    found: dict[str, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row.get("type") != "run":
            continue
        entry = found.setdefault(row["server"], {"chat": None, "sat": {}})
        if row["scenario"] == "chat":
            entry["chat"] = row
        elif row["scenario"] == "sat":
            entry["sat"][row["offered_deliveries_per_s"]] = row
    for entry in found.values():
        passed = [r for r in entry["sat"].values() if r.get("ok")]
        entry["best"] = max(passed, key=lambda r: r["offered_deliveries_per_s"], default=None)
    return found


def table(run: int, found: dict[str, dict[str, Any]], variants: list[str]) -> list[str]:
    passed = [
        {rate for rate, r in found.get(v, {}).get("sat", {}).items() if r.get("ok")}
        for v in variants
    ]
    passed_by_all = set.intersection(*passed)
    common = max(passed_by_all, default=0)
    lines = [
        f"\nrun {run}: highest step passed by all = {common:,} deliveries/s"
        + ("" if common >= MIN_COMPARE else f" (below {MIN_COMPARE:,}: no CPU comparison)"),
        "| variant | chat ratio | chat p50 ms | chat p99 ms | chat CPU % | sat best/s "
        "| CPU % at common step | CPU vs first |",
        "|---|---|---|---|---|---|---|---|",
    ]
    base = None
    for v in variants:
        entry = found.get(v, {"chat": None, "sat": {}, "best": None})
        chat = entry["chat"] or {}
        best = entry["best"]
        at = entry["sat"].get(common) if common >= MIN_COMPARE else None
        cpu = at.get("server_cpu_pct") if at else None
        if base is None:
            base = cpu
        cells = [
            v,
            chat.get("delivery_ratio", "-"),
            chat.get("p50_ms", "-"),
            chat.get("p99_ms", "-"),
            chat.get("server_cpu_pct", "-"),
            f"{best['deliveries_per_s']:,}" if best else "-",
            cpu if cpu is not None else "-",
            f"{cpu / base:.2f}" if cpu and base else "-",
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="runs of the shared bench (3)")
    parser.add_argument(
        "--variants",
        default="durable,memory",
        help=f"comma-separated, of {', '.join(VARIANTS)}; the first is the reference",
    )
    parser.add_argument("--scenarios", default="chat,sat", help="shared bench scenarios")
    parser.add_argument("--shared", type=Path, default=SHARED, help="the shared bench folder")
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "papo-cmp")
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        parser.error(f"--variants: unknown {', '.join(unknown) or '(none given)'}")
    if not (args.shared / "loadgen.c").exists():
        parser.error(f"no shared bench at {args.shared} (loadgen.c missing)")
    args.scratch.mkdir(parents=True, exist_ok=True)
    bench = prepare(args.shared, args.scratch)
    report: list[str] = []
    for run in range(1, args.runs + 1):
        data = Path(tempfile.mkdtemp(prefix="data-", dir=args.scratch))
        out = args.scratch / f"run{run}.jsonl"
        out.unlink(missing_ok=True)
        try:
            one_run(bench, variants, args.scenarios, data, out)
        finally:
            shutil.rmtree(data, ignore_errors=True)
        report += table(run, summarize(out), variants)
        print("\n".join(report[-(len(variants) + 3) :]), flush=True)
    print("\n".join(["", "# all runs", *report]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
