"""JUnit XML for `vigil rules test --junit FILE`: one test suite per events file, one test case per
expected action (and one for "no unexpected actions"), so CI systems show which known incident a
rule change broke. The format is the common Ant/Jenkins JUnit schema CI tools read."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["JUnitCase", "JUnitSuite", "junit_xml"]


@dataclass(frozen=True)
class JUnitCase:
    """One check: passed when `failures` is empty."""

    name: str
    failures: tuple[str, ...] = ()


@dataclass
class JUnitSuite:
    """The checks of one events file."""

    name: str
    cases: list[JUnitCase] = field(default_factory=list)
    #: printed as the suite's system-out (e.g. the actions the rules produced)
    output: str = ""

    @property
    def failed(self) -> int:
        return sum(1 for case in self.cases if case.failures)


def junit_xml(suites: Sequence[JUnitSuite], *, name: str = "vigil rules test") -> bytes:
    """The JUnit XML document (UTF-8, with declaration) of the suites."""
    root = ET.Element("testsuites", name=name, tests=str(sum(len(s.cases) for s in suites)),
                      failures=str(sum(s.failed for s in suites)), errors="0")
    for suite in suites:
        element = ET.SubElement(root, "testsuite", name=suite.name, tests=str(len(suite.cases)),
                                failures=str(suite.failed), errors="0", skipped="0")
        for case in suite.cases:
            case_element = ET.SubElement(element, "testcase", classname=suite.name, name=case.name)
            if case.failures:
                failure = ET.SubElement(case_element, "failure", message=case.failures[0], type="ActionMismatch")
                failure.text = "\n".join(case.failures)
        if suite.output:
            ET.SubElement(element, "system-out").text = suite.output
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
