"""`trustchain-cli`: the operators' command line. Each area (ca, ct, dns, ...) lives in its own
module exposing `register(subparsers)`; commands return an exit code.

Exit codes: 0 success, 1 the operation ran and the answer is negative (a proof that does not verify,
a revoked certificate), 2 bad usage or bad input (the message names the argument or file and what is
wrong), 3 an I/O or environment failure.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from trustchain.errors import TrustChainError

AREAS = ("account", "ca", "cert", "ct", "dns", "node")

EXIT_OK, EXIT_NEGATIVE, EXIT_USAGE, EXIT_IO = 0, 1, 2, 3


class CLIError(TrustChainError):
    """An error to report to the user: `exit_code` and a message naming what is wrong."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trustchain-cli", description="TrustChain operator tools")
    sub = parser.add_subparsers(dest="area", required=True, metavar="AREA")
    for area in AREAS:
        try:
            module = importlib.import_module(f"reference_node.cli.{area}")
        except ModuleNotFoundError as exc:
            if exc.name != f"reference_node.cli.{area}":
                raise
            continue  # not built yet
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CLIError as exc:
        print(f"trustchain-cli: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"trustchain-cli: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_IO


if __name__ == "__main__":
    sys.exit(main())
