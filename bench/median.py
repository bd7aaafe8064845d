#!/usr/bin/env python3
"""Medians of several bench/run.sh outputs.

    bench/run.sh > run1.log; bench/run.sh > run2.log; bench/run.sh > run3.log
    bench/median.py run1.log run2.log run3.log

Reads the `JSON {...}` lines, groups them by server, scenario and field, and prints the
median of each numeric field with the range of the runs in brackets.
"""

import json
import statistics
import sys
from collections import defaultdict


def main(paths):
    values = defaultdict(list)
    order = []
    for path in paths:
        with open(path) as log:
            for line in log:
                if not line.startswith("JSON "):
                    continue
                result = json.loads(line[len("JSON "):])
                key = (result.pop("server"), result.pop("scenario"))
                for field, value in result.items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        if (key, field) not in values:
                            order.append((key, field))
                        values[(key, field)].append(value)
    for (server, scenario), field in order:
        runs = values[((server, scenario), field)]
        spread = f"[{min(runs):g}–{max(runs):g}]" if len(runs) > 1 else ""
        print(f"{server:<10} {scenario:<30} {field:<28} {statistics.median(runs):>12g} {spread}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
