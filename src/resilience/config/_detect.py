"""Which environment are we running in: decided from an environment mapping alone.

The order is: `RESILIENCE_ENV`; then the variables applications commonly set (`APP_ENV`,
`ENVIRONMENT`, `DEPLOY_ENV`, `DEPLOYMENT_ENVIRONMENT`, `ENV`, `PYTHON_ENV`, `FLASK_ENV`,
`DJANGO_ENV`); then rules: under pytest (`PYTEST_CURRENT_TEST`) or CI (`CI=true`) -> testing;
in Kubernetes (`KUBERNETES_SERVICE_HOST`) -> production; else development.
"""

from __future__ import annotations

from collections.abc import Mapping

from .._errors import ConfigError

__all__ = [
    "ALIASES",
    "COMMON_VARIABLES",
    "ENVIRONMENTS",
    "detect_environment",
    "normalize_environment",
]

ENVIRONMENTS: tuple[str, ...] = ("development", "testing", "staging", "production")

ALIASES: dict[str, str] = {
    "development": "development",
    "dev": "development",
    "develop": "development",
    "local": "development",
    "testing": "testing",
    "test": "testing",
    "tests": "testing",
    "ci": "testing",
    "staging": "staging",
    "stage": "staging",
    "stg": "staging",
    "preprod": "staging",
    "pre-prod": "staging",
    "uat": "staging",
    "qa": "staging",
    "production": "production",
    "prod": "production",
    "prd": "production",
    "live": "production",
}

# Read in this order after RESILIENCE_ENV; the first one set (non-empty) decides.
COMMON_VARIABLES: tuple[str, ...] = (
    "APP_ENV",
    "ENVIRONMENT",
    "DEPLOY_ENV",
    "DEPLOYMENT_ENVIRONMENT",
    "ENV",
    "PYTHON_ENV",
    "FLASK_ENV",
    "DJANGO_ENV",
)

_TRUE = frozenset({"1", "true", "yes", "on"})


def normalize_environment(value: str, *, location: str = "environment") -> str:
    """Map a value (or one of its aliases, any case) to one of `ENVIRONMENTS`.

    Raises:
        ConfigError: the value is not an environment or an alias; the message lists them.

    Example:
        >>> normalize_environment("PROD")
        'production'
    """
    if isinstance(value, str):
        found = ALIASES.get(value.strip().lower())
        if found is not None:
            return found
    accepted = ", ".join(ENVIRONMENTS)
    aliases = ", ".join(sorted(k for k in ALIASES if k not in ENVIRONMENTS))
    raise ConfigError(
        [(location, f"unknown environment {value!r}; accepted: {accepted} (aliases: {aliases})")]
    )


def detect_environment(environ: Mapping[str, str]) -> tuple[str, str]:
    """Decide the environment from `environ` alone: `(environment, source)`.

    `source` names the variable or the rule that decided: `"RESILIENCE_ENV"`, `"APP_ENV"`, ...,
    `"PYTEST_CURRENT_TEST"`, `"CI"`, `"KUBERNETES_SERVICE_HOST"`, or `"default"`.
    Empty values count as unset. `ENV` holding a path (the POSIX shell's start-up file) is
    ignored.

    Args:
        environ: the variables to read (pass `os.environ` for the process's own).

    Returns:
        One of "development", "testing", "staging", "production", and the deciding source.

    Raises:
        ConfigError: an explicit variable holds a value that is no environment or alias.

    Example:
        >>> detect_environment({"APP_ENV": "prod"})
        ('production', 'APP_ENV')
        >>> detect_environment({"CI": "true", "KUBERNETES_SERVICE_HOST": "10.0.0.1"})
        ('testing', 'CI')
        >>> detect_environment({})
        ('development', 'default')
    """
    for name in ("RESILIENCE_ENV", *COMMON_VARIABLES):
        value = environ.get(name)
        if not value or not value.strip():
            continue
        if name == "ENV" and ("/" in value or "\\" in value):
            continue  # sh reads ENV as the path of a start-up file: not an environment name
        return normalize_environment(value, location=name), name
    if environ.get("PYTEST_CURRENT_TEST"):
        return "testing", "PYTEST_CURRENT_TEST"
    if environ.get("CI", "").strip().lower() in _TRUE:
        return "testing", "CI"
    if environ.get("KUBERNETES_SERVICE_HOST"):
        return "production", "KUBERNETES_SERVICE_HOST"
    return "development", "default"
