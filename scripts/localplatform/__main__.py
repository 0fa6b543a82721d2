"""``python -m localplatform up|down|status|dev`` (PYTHONPATH=scripts)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from .base import PlatformError
from .orchestrate import COMPONENTS, load_info, platform_down, platform_up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="localplatform", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start the platform (or some components)")
    up.add_argument("--only", nargs="*", choices=COMPONENTS)
    sub.add_parser("down", help="stop everything the platform started, a running `dev` first")
    sub.add_parser("status", help="print platform.json")
    dev = sub.add_parser("dev", help="start the platform and the hub for a person to use")
    dev.add_argument("--port", type=int, default=None, help="the hub's port (default 8000, or $DATALAKE_DEV_PORT)")
    dev.add_argument(
        "--netns",
        choices=("auto", "no"),
        default="no",
        help="auto (`make dev`): re-run in a network namespace of its own when root, where Dask clusters run",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        if args.cmd == "up":
            info = platform_up(only=tuple(args.only) if args.only else None)
            print(json.dumps(info.get("_timings", {}), indent=2))
        elif args.cmd == "down":
            platform_down()
        elif args.cmd == "status":
            print(json.dumps(load_info(), indent=2))
        elif args.cmd == "dev":
            from .dev import DEV_PORT, enter_netns_if_possible, run_dev

            port = args.port or int(os.environ.get("DATALAKE_DEV_PORT", DEV_PORT))
            if args.netns == "auto":
                enter_netns_if_possible(port)
            return run_dev(port=port)
    except PlatformError as err:
        print(f"localplatform: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
