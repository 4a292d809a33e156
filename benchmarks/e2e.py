"""End to end: the generator on one core, the embedded LMA pair on the other, beside a compiled
request/response yardstick, all in one run (``lmaload.bench_e2e``; also ``lmaload bench --e2e``).

    python3 benchmarks/e2e.py [--quick] [--json]
"""

import argparse
import json

from lmaload.bench_e2e import format_report, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter trials, 20 000 MNs")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    results = run(quick=args.quick)
    print(json.dumps(results, indent=2) if args.json else format_report(results))


if __name__ == "__main__":
    main()
