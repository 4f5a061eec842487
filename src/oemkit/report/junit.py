"""JUnit XML for check lists (one testcase per check), so CI systems show results natively."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

from oemkit.models.report import Check


def junit_xml(suite: str, checks: Sequence[Check], *, classname: str,
              properties: dict[str, str] | None = None) -> bytes:
    """A ``<testsuites>`` document: failures for ``fail``, ``skipped`` for nothing run."""
    failures = sum(1 for c in checks if c.status == "fail")
    root = ET.Element("testsuites", name=suite, tests=str(len(checks)),
                      failures=str(failures), errors="0")
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(checks)),
                       failures=str(failures), errors="0", skipped="0")
    if properties:
        props = ET.SubElement(ts, "properties")
        for key, value in sorted(properties.items()):
            ET.SubElement(props, "property", name=key, value=value)
    for check in checks:
        case = ET.SubElement(ts, "testcase", classname=classname, name=check.name)
        if check.status == "fail":
            failure = ET.SubElement(case, "failure", message=check.detail,
                                    type=check.code or "failure")
            failure.text = "\n".join(f"{k}: {getattr(check, k)}" for k in
                                     ("code", "expected", "actual", "hint")
                                     if getattr(check, k))
        out = ET.SubElement(case, "system-out")
        out.text = f"[{check.status}] {check.detail}"
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"
