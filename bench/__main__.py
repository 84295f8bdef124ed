"""`python -m bench`: run every benchmark module (bench_*.py) in order."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main() -> None:
    only = set(sys.argv[1:])
    modules = pkgutil.iter_modules([str(Path(__file__).parent)])
    names = sorted(m.name for m in modules if m.name.startswith("bench_"))
    for name in names:
        if only and name not in only:
            continue
        print(f"== {name}", flush=True)
        importlib.import_module(f"bench.{name}").main()


if __name__ == "__main__":
    main()
