"""Shipped alerts and dashboard: Prometheus alerting rules and a Grafana dashboard, written
from the same metric families (`resilience.metrics.FAMILIES`) the collector emits.

`resilience observability --alerts rules.yml --dashboard dashboard.json` writes both. Every
metric name in every expression is built from `FAMILIES`, so renaming a metric renames it
here too (a test checks each name against a run of every primitive).

Example:
    >>> from resilience._observability import alert_rules, dashboard
    >>> [rule["alert"] for rule in alert_rules()["groups"][0]["rules"]][:2]
    ['ResilienceCircuitOpen', 'ResilienceFallbackShareHigh']
    >>> dashboard()["title"]
    'Resilience'
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from ._errors import ConfigError
from .metrics import FAMILIES, Family, _is_name

__all__ = ["alert_rules", "cli", "dashboard"]

_FAMILY = {f.name: f for f in FAMILIES}


def _name(family: str, namespace: str) -> str:
    assert family in _FAMILY, family  # only names the collector emits
    return f"{namespace}_{family}" if namespace else family


def _rule(
    alert: str,
    expr: str,
    for_: str,
    severity: str,
    summary: str,
    description: str,
    runbook: str,
) -> dict[str, Any]:
    return {
        "alert": alert,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity},
        "annotations": {"summary": summary, "description": description, "runbook": runbook},
    }


def _check(namespace: object, **options: object) -> None:
    """Raise ConfigError listing every bad option (a namespace that would make invalid metric
    names, a share outside (0, 1], a non-positive duration or rate)."""
    errors: list[tuple[str, str]] = []
    if not (namespace == "" or _is_name(namespace, colon=True)):
        errors.append(("namespace", f"must be a Prometheus metric name prefix, got {namespace!r}"))
    for key, value in options.items():
        share = key.endswith("_share")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 < value < math.inf
            or (share and value > 1)
        ):
            rule = "must be a share in (0, 1]" if share else "must be > 0 and finite"
            errors.append((key, f"{rule}, got {value!r}"))
    if errors:
        raise ConfigError(errors)


def alert_rules(
    namespace: str = "resilience",
    *,
    breaker_open_minutes: int = 5,
    fallback_share: float = 0.1,
    retries_exhausted_per_second: float = 0.1,
    queue_growth_minutes: int = 15,
    rate_limited_share: float = 0.1,
) -> dict[str, Any]:
    """Prometheus alerting rules (the rule file's structure, as a dict).

    Args:
        namespace: the collector's namespace.
        breaker_open_minutes: a breaker open (or forced open) this long alerts.
        fallback_share: alert when fallbacks exceed this share of an operation's calls.
        retries_exhausted_per_second: alert when retry loops give up faster than this.
        queue_growth_minutes: alert when a queue has grown for this long.
        rate_limited_share: alert when rate limiting refuses this share of calls.

    Example:
        >>> rules = alert_rules(breaker_open_minutes=10)["groups"][0]["rules"]
        >>> rules[0]["for"]
        '10m'
    """
    _check(
        namespace,
        breaker_open_minutes=breaker_open_minutes,
        fallback_share=fallback_share,
        retries_exhausted_per_second=retries_exhausted_per_second,
        queue_growth_minutes=queue_growth_minutes,
        rate_limited_share=rate_limited_share,
    )
    n = namespace

    def m(family: str) -> str:
        return _name(family, n)

    calls = f"sum by (operation) (rate({m('calls_total')}[5m]))"
    rules = [
        _rule(
            "ResilienceCircuitOpen",
            f'max by (operation) ({m("circuit_state")}{{state=~"open|forced_open"}}) == 1',
            f"{breaker_open_minutes}m",
            "warning",
            "Circuit breaker {{ $labels.operation }} open for more than "
            f"{breaker_open_minutes} minutes",
            "Calls to {{ $labels.operation }} are refused without running: the dependency "
            "kept failing, or an operator forced the breaker open.",
            "Runbook: check the dependency behind {{ $labels.operation }} (its health, recent "
            "deploys, credentials); a forced-open breaker stays open until someone resets it.",
        ),
        _rule(
            "ResilienceFallbackShareHigh",
            f"sum by (operation) (rate({m('fallbacks_total')}[5m])) / {calls} > {fallback_share:g}",
            "10m",
            "warning",
            "{{ $labels.operation }} serves more than "
            f"{fallback_share:.0%} of calls from a fallback",
            "Users of {{ $labels.operation }} get degraded answers (cached, limited or "
            "default): {{ $value | humanizePercentage }} of calls.",
            "Runbook: find the failing primary step in the fallback chain (see the fallbacks "
            "panel by level) and restore it; check how stale the cached answers are.",
        ),
        _rule(
            "ResilienceRetriesExhausted",
            f"sum by (operation, reason) (rate({m('retries_exhausted_total')}[5m])) "
            f"> {retries_exhausted_per_second:g}",
            "5m",
            "warning",
            "Retries of {{ $labels.operation }} give up ({{ $labels.reason }})",
            "Retry loops of {{ $labels.operation }} end without success "
            "{{ $value | humanize }} times a second; reason: {{ $labels.reason }}.",
            "Runbook: reason=attempts or deadline: the dependency fails for longer than the "
            "retry policy covers; circuit_open: the breaker refused the call (see "
            "ResilienceCircuitOpen); budget: the retry budget is spent, a retry storm was "
            "avoided.",
        ),
        _rule(
            "ResilienceQueueGrowing",
            f"sum by (queue) (delta({m('queue_depth')}[{queue_growth_minutes}m])) > 0 "
            f"and sum by (queue) ({m('queue_depth')}) > 0",
            f"{queue_growth_minutes}m",
            "warning",
            "Offline queue {{ $labels.queue }} keeps growing",
            "{{ $labels.queue }} has grown for "
            f"{queue_growth_minutes} minutes: items are stored faster than they are "
            "delivered.",
            "Runbook: check that the drain is running and the sink is reachable; the queue "
            "is durable, nothing is lost yet, but it is bounded by disk.",
        ),
        _rule(
            "ResilienceDeadLetters",
            f"sum by (queue) (increase({m('queue_dead_letters_total')}[10m])) > 0",
            "0m",
            "critical",
            "Offline queue {{ $labels.queue }} dead-lettered items",
            "{{ $value | humanize }} items of {{ $labels.queue }} were dead-lettered in the "
            "last 10 minutes: they will not be delivered without a person.",
            "Runbook: read them with OfflineQueue.dead_letters(); fix the cause (a rejected "
            "payload, a permanent error at the sink), then requeue or discard them.",
        ),
        _rule(
            "ResilienceRateLimitedShareHigh",
            f"sum by (operation) (rate({m('rate_limited_total')}[5m])) / {calls} "
            f"> {rate_limited_share:g}",
            "10m",
            "warning",
            "Rate limiting refuses more than "
            f"{rate_limited_share:.0%} of calls to {{{{ $labels.operation }}}}",
            "{{ $labels.operation }} is called faster than its rate limit allows: "
            "{{ $value | humanizePercentage }} of calls are refused.",
            "Runbook: find the caller that sends more than planned (a retry loop, a batch "
            "job); raise the limit only if the dependency can take it.",
        ),
    ]
    return {"groups": [{"name": "resilience", "rules": rules}]}


# --- the dashboard ----------------------------------------------------------------------------

_VARIABLE = {"operation": "operation", "queue": "queue", "client": "client"}
"""The first label of a family -> the dashboard variable that filters it."""


def _filter(family: Family) -> str:
    first = family.labels[0] if family.labels else ""
    var = _VARIABLE.get(first)
    return f'{{{first}=~"${var}"}}' if var else ""


def _targets(family: Family, namespace: str) -> list[dict[str, Any]]:
    name = _name(family.name, namespace)
    sel = _filter(family)
    by = ", ".join(family.labels)
    legend = " ".join(f"{{{{{label}}}}}" for label in family.labels) or family.name
    if family.kind == "histogram":
        bucket = f"{name}_bucket{sel}"
        return [
            {
                "refId": q,
                "expr": f"histogram_quantile({p}, sum by (le, {by}) "
                f"(rate({bucket}[$__rate_interval])))",
                "legendFormat": f"p{int(p * 100)} {legend}",
            }
            for q, p in (("A", 0.5), ("B", 0.99))
        ]
    if family.kind == "counter":
        expr = (
            f"sum by ({by}) (rate({name}{sel}[$__rate_interval]))"
            if by
            else (f"sum(rate({name}[$__rate_interval]))")
        )
    else:
        expr = f"max by ({by}) ({name}{sel})"
    return [{"refId": "A", "expr": expr, "legendFormat": legend}]


def dashboard(namespace: str = "resilience") -> dict[str, Any]:
    """A Grafana dashboard (JSON model): a panel per metric family, and variables for the
    Prometheus data source, the operation, the queue and the failover client.

    Example:
        >>> board = dashboard()
        >>> [v["name"] for v in board["templating"]["list"]]
        ['datasource', 'operation', 'queue', 'client']
    """
    _check(namespace)
    ds = {"type": "prometheus", "uid": "${datasource}"}

    def variable(var: str, family: str, label: str) -> dict[str, Any]:
        return {
            "name": var,
            "label": var,
            "type": "query",
            "datasource": ds,
            "query": {"query": f"label_values({_name(family, namespace)}, {label})"},
            "definition": f"label_values({_name(family, namespace)}, {label})",
            "refresh": 2,
            "multi": True,
            "includeAll": True,
            "current": {"text": "All", "value": "$__all"},
            "allValue": ".*",
        }

    panels = []
    for i, family in enumerate(FAMILIES):
        unit = {"counter": "ops", "histogram": "s"}.get(family.kind, "short")
        panels.append(
            {
                "id": i + 1,
                "type": "timeseries",
                "title": _name(family.name, namespace),
                "description": family.help,
                "datasource": ds,
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [{**t, "datasource": ds} for t in _targets(family, namespace)],
            }
        )
    return {
        "title": "Resilience",
        "uid": f"{namespace or 'resilience'}-overview",
        "tags": ["resilience"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                },
                variable("operation", "calls_total", "operation"),
                variable("queue", "queue_depth", "queue"),
                variable("client", "failover_active_tier", "client"),
            ]
        },
        "panels": panels,
    }


# --- the command ------------------------------------------------------------------------------


def _dump_yaml(data: dict[str, Any]) -> str:
    header = "# Prometheus alerting rules for resilience-primitives (resilience observability)\n"
    try:
        import yaml
    except ImportError:  # JSON is YAML too: the file stays valid without pyyaml
        return header + json.dumps(data, indent=2) + "\n"
    return header + str(yaml.safe_dump(data, sort_keys=False, width=100))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `resilience observability` options."""
    parser.add_argument("--alerts", metavar="FILE", help="write Prometheus alerting rules (YAML)")
    parser.add_argument("--dashboard", metavar="FILE", help="write a Grafana dashboard (JSON)")
    parser.add_argument(
        "--namespace",
        default="resilience",
        help="the collector's metric name prefix (default resilience; '' for none)",
    )
    parser.add_argument(
        "--breaker-open-minutes",
        type=int,
        default=5,
        help="alert when a breaker stays open this long (default 5)",
    )
    parser.add_argument(
        "--fallback-share",
        type=float,
        default=0.1,
        help="alert when fallbacks exceed this share of calls (default 0.1)",
    )
    parser.add_argument(
        "--rate-limited-share",
        type=float,
        default=0.1,
        help="alert when rate limiting refuses this share of calls (default 0.1)",
    )


def cli(args: argparse.Namespace) -> int:
    """Run `resilience observability`; returns the exit status."""
    import sys

    if not args.alerts and not args.dashboard:
        sys.stderr.write("resilience observability: give --alerts FILE and/or --dashboard FILE\n")
        return 2
    try:
        rules = alert_rules(
            args.namespace,
            breaker_open_minutes=args.breaker_open_minutes,
            fallback_share=args.fallback_share,
            rate_limited_share=args.rate_limited_share,
        )
        board = dashboard(args.namespace)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    outputs: list[tuple[str, str, str]] = []
    if args.alerts:
        n = len(rules["groups"][0]["rules"])
        outputs.append((args.alerts, _dump_yaml(rules), f"{n} alerting rules"))
    if args.dashboard:
        n = len(board["panels"])
        outputs.append(
            (args.dashboard, json.dumps(board, indent=2) + "\n", f"a dashboard of {n} panels")
        )
    for path, text, what in outputs:
        try:
            Path(path).write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        print(f"wrote {what} to {path}")
    return 0
