"""Compare a `lmaload bench --json` document with benchmarks/targets.json.

    python3 benchmarks/check.py RESULTS.json [--gate ratio,budget]

Prints every target with the measured value; exits 1 when a target of a gated kind is missed
(CI gates the kinds that hold on a noisy shared machine: ratios measured in one run, and memory).
"""

import argparse
import json
import sys
from pathlib import Path

TARGETS = Path(__file__).with_name("targets.json")


def lookup(results: dict, dotted: str) -> float | str:
    """The value at ``dotted``, or why its benchmark was skipped (it says, e.g. without root)."""
    value = results
    for key in dotted.split("."):
        if "skipped" in value:
            return f"skipped: {value['skipped']}"
        if key not in value:
            return "skipped: not measured in this run"
        value = value[key]
    return float(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--gate", default="ratio,budget", help="kinds of target that must hold")
    args = parser.parse_args()
    results = json.loads(args.results.read_text())
    targets = json.loads(TARGETS.read_text())
    gated = set(args.gate.split(",")) if args.gate else set()
    missed = 0
    for kind in ("ratio", "budget", "absolute"):
        for name, target in targets[kind].items():
            value = lookup(results, name)
            if isinstance(value, str):
                print(f"{kind:8} {target['what']:45} {value}")
                continue
            ok = value >= target["min"] if "min" in target else value <= target["max"]
            bound = f">= {target['min']:,}" if "min" in target else f"<= {target['max']:,}"
            verdict = "ok" if ok else ("MISSED" if kind in gated else "below target")
            print(f"{kind:8} {target['what']:45} {value:16,.6g}  {bound:>14}  {verdict}")
            missed += not ok and kind in gated
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
