"""``python -m benchmarks [--quick] [--only NAME ...] [--report-only]``: run the benchmarks, write the report.

Results go to docs/benchmarks.json (raw numbers, merged with earlier runs section by section, so ``--only``
refreshes one section) and docs/benchmarks.md + docs/img/*.png (rendered from that JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import inspect
import json
import logging
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from . import report
from .common import Progress, loadavg, machine_info, versions

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "benchmarks.json"

#: section name -> module; each has ``run(quick, progress)`` (a coroutine function or a plain one).
SECTIONS = {
    "clients": "benchmarks.clients",
    "load": "benchmarks.load",
    "memory": "benchmarks.memory",
    "hitratio": "benchmarks.hitratio",
    "sidecar": "benchmarks.sidecar_bench",  # the sidecar engineer's; skipped while it is not there
    "failover": "benchmarks.failover",
    "near": "benchmarks.near",
}


def _loop_runner() -> asyncio.Runner:
    """uvloop when installed (what uvicorn uses, so what the sidecar runs on); the same loop for every client."""
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def _call(fn: Callable[..., Any], quick: bool, progress: Progress) -> Any:
    """Call a section's ``run``: ours take (quick, progress); the sidecar's may take only ``quick``."""
    params = inspect.signature(fn).parameters
    args: tuple[Any, ...] = (quick, progress) if len(params) >= 2 else (quick,)
    if inspect.iscoroutinefunction(fn):
        with _loop_runner() as runner:
            coro: Coroutine[Any, Any, Any] = fn(*args)
            return runner.run(coro)
    return fn(*args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs: the whole thing in < 2 minutes")
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), metavar="NAME", help=", ".join(SECTIONS))
    parser.add_argument("--report-only", action="store_true", help="re-render docs from docs/benchmarks.json")
    args = parser.parse_args(argv)
    progress = Progress()
    # Slow-operation warnings would flood the terminal under deliberate overload; the check itself still runs.
    logging.getLogger("mobius_cache").setLevel(logging.ERROR)

    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if not args.report_only:
        results["machine"] = machine_info()
        results["versions"] = versions()
        for name in args.only or list(SECTIONS):
            module_name = SECTIONS[name]
            if importlib.util.find_spec(module_name) is None:
                progress(f"{name}: {module_name} is not there yet, skipped")
                continue
            progress(f"{name}: start (load average {loadavg()})")
            started = time.monotonic()
            data = _call(importlib.import_module(module_name).run, args.quick, progress)
            elapsed = time.monotonic() - started
            results[name] = {
                "quick": args.quick,
                "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                "seconds": round(elapsed, 1),
                "data": data,
            }
            progress(f"{name}: done in {elapsed:.1f}s")
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(results, indent=1, default=str) + "\n")
    if not results:
        print("no results yet: run without --report-only first", file=sys.stderr)
        return 1
    written = report.write(results, ROOT / "docs")
    progress(f"wrote {', '.join(str(p.relative_to(ROOT)) for p in written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
