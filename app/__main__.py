"""`python -m app ...` runs the vigil CLI (used for child processes)."""

from app.cli import main

main()
