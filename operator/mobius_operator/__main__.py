"""``mobius-operator``: run the kopf operator (the equivalent of ``kopf run -m mobius_operator --standalone``).

    mobius-operator --all-namespaces
    mobius-operator --namespace shop --namespace search --liveness http://127.0.0.1:8080/healthz

Standalone (no kopf peering objects, so no peering RBAC): run one replica. Logs are JSON lines by default.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import kopf

from mobius_operator.handlers import register
from mobius_operator.settings import InjectorSettings, OperatorSettings

LOG_FORMATS = {"json": kopf.LogFormat.JSON, "full": kopf.LogFormat.FULL, "plain": kopf.LogFormat.PLAIN}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mobius-operator", description=__doc__.split("\n\n")[0])
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument(
        "-n", "--namespace", action="append", dest="namespaces", metavar="NS", help="watch NS (repeatable)"
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    parser.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        metavar="URL",
        help="kopf's liveness endpoint (default %(default)s; 'none' to disable)",
    )
    parser.add_argument("--log-format", choices=sorted(LOG_FORMATS), default="json")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        options = OperatorSettings()
        injector = InjectorSettings()
    except (
        ValueError
    ) as exc:  # a bad MOBIUS_OPERATOR_* or _INJECTOR_* value: say which, do not start half-configured
        print(f"mobius-operator: invalid settings: {exc}", file=sys.stderr)
        return 2
    kopf.configure(verbose=args.verbose, log_format=LOG_FORMATS[args.log_format])
    kopf.run(
        registry=register(options=options, injector=injector),
        standalone=True,
        clusterwide=bool(args.all_namespaces),
        namespaces=args.namespaces or (),
        liveness_endpoint=None if args.liveness == "none" else args.liveness,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
