"""How long `import resilience` takes, against the libraries users already import.

Each candidate is imported in a fresh interpreter with `python -X importtime`; the cumulative
time of its top-level line is taken. The candidates are interleaved and reshuffled every round,
and the median of the rounds is reported (default 10). Target: `import resilience` <= 60 ms
(BASELINES.md).

    .venv/bin/python -m benchmarks.import_time [--rounds N]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import statistics
import subprocess
import sys
from pathlib import Path

from ._harness import table

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 60.0
PEERS = ["anyio", "pybreaker", "tenacity", "stamina", "pydantic", "structlog", "prometheus_client"]
HEAVY = ["pydantic", "prometheus_client", "structlog", "sqlite3", "redis", "tenacity", "httpx"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])])
    return env


def import_seconds(module: str) -> float:
    """Cumulative import time of `module` in a fresh interpreter, in seconds."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    for line in out.stderr.splitlines():
        if line.startswith("import time:"):
            _, cumulative, name = (p.strip() for p in line[len("import time:") :].split("|"))
            if name == module:
                return int(cumulative) / 1e6
    raise RuntimeError(f"no importtime line for {module}")


FIRST_USE = {
    "import resilience": "import resilience",
    "resilience + CircuitBreaker": "import resilience; resilience.CircuitBreaker",
    "resilience + Retry": "import resilience; resilience.Retry",
    "import pybreaker": "import pybreaker",
    "import tenacity": "import tenacity",
}


def first_use_seconds(statement: str) -> float:
    """Wall time of `statement` in a fresh interpreter (what a user waits for on first use)."""
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=_env(), capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip())


def heavy_modules_loaded() -> list[str]:
    code = f"import sys, resilience; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], env=_env(), capture_output=True, text=True, check=True
    )
    return [m for m in out.stdout.strip().split(",") if m]


def _available(statement: str) -> bool:
    first = statement.split(";")[0].split()[-1]
    return importlib.util.find_spec(first) is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)

    candidates = ["resilience", *(p for p in PEERS if importlib.util.find_spec(p) is not None)]
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for name in candidates:  # warm the file-system cache and .pyc files
        import_seconds(name)
    for _ in range(args.rounds):
        order = list(candidates)
        random.shuffle(order)
        for name in order:
            samples[name].append(import_seconds(name))
    medians = {name: statistics.median(values) for name, values in samples.items()}

    print(
        table(
            f"import time (median of {args.rounds}, -X importtime cumulative)",
            medians,
            baseline="resilience",
        )
    )
    uses = {name: stmt for name, stmt in FIRST_USE.items() if _available(stmt)}
    use_samples: dict[str, list[float]] = {name: [] for name in uses}
    for _ in range(args.rounds):
        order = list(uses)
        random.shuffle(order)
        for name in order:
            use_samples[name].append(first_use_seconds(uses[name]))
    use_medians = {name: statistics.median(values) for name, values in use_samples.items()}
    print()
    print(
        table(
            f"first use, wall time (median of {args.rounds})",
            use_medians,
            baseline="import resilience",
        )
    )

    ours = medians["resilience"] * 1000
    verdict = "OK" if ours <= TARGET_MS else "OVER TARGET"
    print(f"\nimport resilience: {ours:.1f} ms (target <= {TARGET_MS:.0f} ms): {verdict}")
    heavy = heavy_modules_loaded()
    print(f"heavy modules loaded by `import resilience`: {', '.join(heavy) or 'none'}")
    return 0 if ours <= TARGET_MS and not heavy else 1


if __name__ == "__main__":
    sys.exit(main())
