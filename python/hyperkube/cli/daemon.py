"""What every long-running ``hyperkube`` daemon command does the same way: logging, uvloop,
the event loop, leader-election flag checks, and errors turned into a one-line message and an
exit code (2 for bad configuration, 1 for an OS error such as a port in use)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable


def leader_election_error(name: str, args: argparse.Namespace) -> int:
    """2 (after saying why) unless lease duration > renew deadline > retry period, else 0."""
    if args.leader_elect_lease_duration > args.leader_elect_renew_deadline > args.leader_elect_retry_period:
        return 0
    print(
        f"hyperkube {name}: need --leader-elect-lease-duration > --leader-elect-renew-deadline "
        "> --leader-elect-retry-period",
        file=sys.stderr,
    )
    return 2


def run_daemon(name: str, main: Callable[[], Awaitable[int]], *, configure_logging: bool = True) -> int:
    """Run `main()` on uvloop (when installed) until it returns its exit code."""
    if configure_logging:
        logging.basicConfig(
            level=os.environ.get("HYPERKUBE_LOG", "WARNING"),
            format="%(asctime)s %(name)s %(levelname)s %(message)s",
        )
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    try:
        return asyncio.run(main())  # type: ignore[arg-type]
    except ValueError as e:
        print(f"hyperkube {name}: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"hyperkube {name}: {e.strerror or e}", file=sys.stderr)
        return 1
