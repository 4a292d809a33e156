"""PBAs per second and per CPU-second of the reference LMA over the raw Mobility Header, beside a
trivial raw-MH echo loaded the same way in the same run (``lmaload.bench_raw``: two network
namespaces joined by a veth pair; root and iproute2).

    python3 benchmarks/lma_raw.py            # 20 000 and 200 000 MNs at windows 64, 256, 1024
    python3 benchmarks/lma_raw.py --quick    # 50 000 MNs at windows 256 and 1024 (as in CI)
    python3 benchmarks/lma_raw.py --mns 20000 --windows 64 --json
"""

from __future__ import annotations

import argparse
import json
import sys

from lmaload import bench_raw


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the smaller plan of lmaload bench")
    parser.add_argument("--mns", type=int, nargs="+", help="mobile nodes per load")
    parser.add_argument("--windows", type=int, nargs="+", help="PBUs outstanding at most")
    parser.add_argument("--json", action="store_true", help="print the results document")
    args = parser.parse_args()
    if (reason := bench_raw.unavailable()) is not None:
        print(f"lma_raw: {reason}", file=sys.stderr)
        return 1
    results = bench_raw.run(
        args.quick, tuple(args.mns) if args.mns else None, tuple(args.windows or ()) or None
    )
    print(json.dumps(results, indent=2) if args.json else bench_raw.format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
