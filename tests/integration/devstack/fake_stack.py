"""`vigil dev run`'s foreground loop around stand-in components, for tests of the supervisor process.

    python -m tests.integration.devstack.fake_stack STOP_TIMEOUT_S NAME=PYTHON_CODE...

Each component runs `python -c PYTHON_CODE`. The "stack" is a file: `start` writes "up" to the
path in $FAKE_STACK_FILE, `stop` writes "down", so a test can see that the stop ran.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from app.devstack.supervisor import Component, Console, run_foreground

__all__ = ["main"]


def main(argv: list[str]) -> None:
    """Run the named stand-ins under the supervisor until SIGINT/SIGTERM."""
    stop_timeout_s, specs = float(argv[0]), argv[1:]
    stack_file = Path(os.environ["FAKE_STACK_FILE"])
    components = [Component(name, [sys.executable, "-c", code]) for name, code in (s.split("=", 1) for s in specs)]
    console = Console()

    def start() -> list[Component]:
        stack_file.write_text("up")
        return components

    def stop() -> None:
        stack_file.write_text("down")

    run_foreground(start, stop, console=console, stop_timeout_s=stop_timeout_s)


if __name__ == "__main__":
    main(sys.argv[1:])
