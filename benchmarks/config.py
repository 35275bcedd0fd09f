"""Config: `load` of a 200-operation file, `cfg.operation()`, and a call through `@resilient`.

Targets (BASELINES.md): load < 50 ms; cfg.operation() < 5 us; `@resilient("op")` <= 1.1x the
same Pipeline built by hand.

Run: .venv/bin/python -m benchmarks.config
"""

from __future__ import annotations

import tempfile
import tomllib
from pathlib import Path

import resilience as rs
from resilience import config

from ._harness import compare, fmt_time, loop, table

OPS = 200
ENVIRON = {"RESILIENCE_ENV": "production"}


def _file(directory: Path) -> Path:
    lines = ['environment = "production"', "[defaults]", "retry = { max_attempts = 3 }"]
    presets = ["production", "critical", "high_throughput", "best_effort"]
    for i in range(OPS):
        lines += [
            f'[operations."service{i % 20}.op{i}"]',
            f'preset = "{presets[i % 4]}"',
            f"timeout = {5 + i % 10}.0",
            f"retry = {{ max_attempts = {1 + i % 3}, deadline = 10.0, backoff = "
            f'{{ kind = "exponential", initial = 0.{1 + i % 5}, maximum = 5.0 }} }}',
            f"breaker = {{ minimum_calls = {10 + i % 7}, window = {{ kind = "
            f'"{"count" if i % 2 else "time"}", '
            f"{'size = 50' if i % 2 else 'seconds = 30'} }} }}",
            f"bulkhead = {{ max_concurrent = {10 + i}, max_waiting = {i % 5} }}",
        ]
    path = directory / "resilience.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _cold_load(path: Path) -> object:
    from resilience.config import _models

    _models._PROBLEMS.clear()  # forget the sections checked by earlier loads
    return config.load(path, environ=ENVIRON)


def bench_load(path: Path) -> dict[str, float]:
    text = path.read_text()
    return compare(
        {
            "tomllib.loads (floor: parsing alone)": loop(lambda: tomllib.loads(text)),
            f"config.load ({OPS} operations)": loop(lambda: config.load(path, environ=ENVIRON)),
            "config.load, check cache cleared": loop(lambda: _cold_load(path)),
        },
        number=3,
        repeat=9,
    )


def bench_operation(path: Path) -> dict[str, float]:
    cfg = config.load(path, environ=ENVIRON)
    declared = cfg.operations[57]
    d: dict[str, object] = {declared: 1}
    cfg.operation("never.declared")
    return compare(
        {
            "dict lookup (floor)": loop(lambda: d[declared]),
            "cfg.operation(declared)": loop(lambda: cfg.operation(declared)),
            "cfg.operation(undeclared)": loop(lambda: cfg.operation("never.declared")),
        },
        number=200_000,
        repeat=9,
    )


def bench_resilient() -> dict[str, float]:
    table = {
        "timeout": False,
        "retry": {"max_attempts": 3, "deadline": 10.0},
        "breaker": {"minimum_calls": 20},
        "bulkhead": {"max_concurrent": 64},
    }
    config.use(config.load(data={"operations": {"bench": table}}, environ=ENVIRON))

    @rs.resilient("bench")
    def via_config(x: int) -> int:
        return x

    # the same settings (production preset under the table), built by hand
    policy = config.current().operation("bench")
    hand = rs.Pipeline(*policy.policies("hand"), name="hand")

    @hand
    def by_hand(x: int) -> int:
        return x

    def bare(x: int) -> int:
        return x

    via_config(1)  # the first call builds the pipeline
    return compare(
        {
            "bare function (floor)": loop(lambda: bare(1)),
            "Pipeline built by hand": loop(lambda: by_hand(1)),
            '@resilient("bench")': loop(lambda: via_config(1)),
        },
        number=20_000,
        repeat=15,
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = _file(Path(tmp))
        load = bench_load(path)
        print(table(f"config.load of a {OPS}-operation TOML file (target < 50 ms)", load))
        for case in (f"config.load ({OPS} operations)", "config.load, check cache cleared"):
            t = load[case]
            print(f"-> {case}: {fmt_time(t)} ({'OK' if t < 0.050 else 'OVER'} the 50 ms target)")
        print()
        op = bench_operation(path)
        print(table("cfg.operation() (target < 5 us)", op))
        worst = max(op["cfg.operation(declared)"], op["cfg.operation(undeclared)"])
        print(f"-> cfg.operation: {fmt_time(worst)} ({'OK' if worst < 5e-6 else 'OVER'})\n")
    res = bench_resilient()
    print(table("a call through @resilient vs the same Pipeline by hand (target <= 1.1x)", res,
                baseline="Pipeline built by hand"))  # fmt: skip
    ratio = res['@resilient("bench")'] / res["Pipeline built by hand"]
    print(f"-> @resilient / hand: {ratio:.2f}x ({'OK' if ratio <= 1.1 else 'OVER'})")


if __name__ == "__main__":
    main()
