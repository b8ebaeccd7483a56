"""The supervisor's Console: a stdout whose reader is gone moves output to stderr, never raises."""

from __future__ import annotations

import io
import os

from app.devstack.supervisor import Console


def test_stdout_reader_gone__lines_go_to_the_fallback_and_nothing_raises() -> None:
    read_fd, write_fd = os.pipe()
    out = os.fdopen(write_fd, "w")
    fallback = io.StringIO()
    console = Console(out, fallback)
    console.line("one")
    assert os.read(read_fd, 100) == b"one\n"
    os.close(read_fd)  # as `tee` dies under Ctrl-C

    console.line("two")
    console.line("three")

    assert fallback.getvalue() == "two\nthree\n"
    out.write("the interpreter's flush at exit\n")
    out.flush()  # the broken descriptor now points at /dev/null: no BrokenPipeError at exit
    out.close()


def test_both_outputs_broken__lines_are_dropped_silently() -> None:
    out, fallback = io.StringIO(), io.StringIO()
    out.close()
    fallback.close()
    Console(out, fallback).line("lost, quietly")
