"""JUnit XML for CI (Jenkins, GitLab): one test suite per command, one test case per check the
command made of its run (``lmaload.checks``) and per ``--threshold``. Written with junitparser, a
maintained library whose output both CI systems read, rather than XML by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from junitparser import Failure, JUnitXml, TestCase, TestSuite

from lmaload.checks import Check


def write(path: Path, command: str, checks: list[Check], thresholds: list[dict[str, Any]]) -> None:
    """The suite ``lmaload COMMAND`` of ``checks`` and threshold ``outcomes`` to ``path``."""
    suite = TestSuite(f"lmaload {command}")
    classname = f"lmaload.{command}"
    for check in checks:
        case = TestCase(check.name, classname=classname)
        if not check.ok:
            case.result = [Failure(check.message)]
        suite.add_testcase(case)
    for outcome in thresholds:
        case = TestCase(f"threshold {outcome['expression']}", classname=classname)
        if not outcome["ok"]:
            value = "not measured" if outcome["value"] is None else f"{outcome['value']:.6g}"
            case.result = [Failure(f"{outcome['figure']} is {value}")]
        suite.add_testcase(case)
    xml = JUnitXml()
    xml.add_testsuite(suite)
    path.parent.mkdir(parents=True, exist_ok=True)
    xml.write(str(path))
