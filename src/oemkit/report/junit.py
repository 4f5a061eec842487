"""JUnit XML for check lists (one testcase per check), so CI systems show results natively."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from oemkit.models.report import Check

# Characters XML 1.0 cannot carry (C0 controls but tab/newline/CR, surrogates, U+FFFE/F):
# ElementTree would write them and produce a file CI tools refuse to parse.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _text(value: object) -> str:
    """``value`` as XML-safe text: each character XML cannot hold as a visible escape."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                        else f"\\u{ord(m.group()):04x}", str(value))


def junit_xml(suite: str, checks: Sequence[Check], *, classname: str,
              properties: dict[str, str] | None = None) -> bytes:
    """A ``<testsuites>`` document: failures for ``fail``, ``skipped`` for nothing run."""
    failures = sum(1 for c in checks if c.status == "fail")
    suite, classname = _text(suite), _text(classname)
    root = ET.Element("testsuites", name=suite, tests=str(len(checks)),
                      failures=str(failures), errors="0")
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(checks)),
                       failures=str(failures), errors="0", skipped="0")
    if properties:
        props = ET.SubElement(ts, "properties")
        for key, value in sorted(properties.items()):
            ET.SubElement(props, "property", name=_text(key), value=_text(value))
    for check in checks:
        case = ET.SubElement(ts, "testcase", classname=classname, name=_text(check.name))
        if check.status == "fail":
            failure = ET.SubElement(case, "failure", message=_text(check.detail),
                                    type=_text(check.code or "failure"))
            failure.text = "\n".join(f"{k}: {_text(getattr(check, k))}" for k in
                                     ("code", "expected", "actual", "hint")
                                     if getattr(check, k))
        out = ET.SubElement(case, "system-out")
        out.text = f"[{check.status}] {_text(check.detail)}"
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"
