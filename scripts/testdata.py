"""Where scripts find what lives outside the checkout: real image sets and the peers script.

The one place the Python and shell scripts learn it (tests/it/common.rs and benches/common/mod.rs
read the same variables with the same defaults):

  VGGCACHE_TEST_DATA  a folder holding the labelled sets (catsdogs/, catsdogs-gray/, ...);
                      default ../shared/data beside the checkout, when it exists
  VGGCACHE_PEERS      the peers script (peers.py); default ../shared/bench/peers.py

As a module: `testdata.data_root()`, `testdata.data("catsdogs")`, `testdata.peers()`. From a shell
script (exits 1 with the message on stderr when the folder or file is absent):

    SRC=$(python3 scripts/testdata.py catsdogs)     # <data>/catsdogs
    PEERS=$(python3 scripts/testdata.py --peers)
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def data_root() -> Path:
    """$VGGCACHE_TEST_DATA, else ../shared/data beside the checkout (which may not exist)."""
    env = os.environ.get("VGGCACHE_TEST_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def data(rel: str) -> Path:
    """<data root>/<rel>; SystemExit with what to set when it is not a folder."""
    p = data_root() / rel
    if not p.is_dir():
        raise SystemExit(f"{p} absent: set VGGCACHE_TEST_DATA to a folder holding {rel}/")
    return p


def peers() -> Path:
    """$VGGCACHE_PEERS, else ../shared/bench/peers.py; SystemExit when it is not a file."""
    env = os.environ.get("VGGCACHE_PEERS")
    p = Path(env) if env else ROOT.parent / "shared" / "bench" / "peers.py"
    if not p.is_file():
        raise SystemExit(f"{p} absent: set VGGCACHE_PEERS to the peers script (peers.py)")
    return p


def main(argv: list[str]) -> int:
    if argv == ["--peers"]:
        print(peers())
    elif len(argv) == 1 and not argv[0].startswith("-"):
        print(data(argv[0]))
    elif not argv:
        print(data_root())
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
