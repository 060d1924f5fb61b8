"""The `vggcache` command of the Python package: the Rust command line, run in this process."""

from __future__ import annotations

import signal
import sys


def main() -> None:
    """Entry point of `[project.scripts] vggcache`: runs the CLI and exits with its code."""
    from vggcache._ort import point_ort_at_package

    point_ort_at_package()
    from vggcache import _core

    # Ctrl-C stops the command at once, as it stops the Rust binary (Python's own handler would
    # only note it until the native call returns).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    # Output into a closed pipe (`vggcache models list | head -1`) ends the command quietly, as it
    # ends other command-line tools; Python ignores SIGPIPE, and the library's writes would then
    # fail with EPIPE mid-command.
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.stdout.flush()
    sys.exit(_core.run_cli(["vggcache", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
