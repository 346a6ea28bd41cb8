"""JUnit XML: one testcase per instance, failure = model failure, error = infrastructure."""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree

from junit_xml import TestCase, TestSuite

from ci_eval.report.build import NOT_ATTEMPTED
from ci_eval.results import INFRA_FAILURES, MODEL_FAILURES

_SHOWN_TESTS = 20


def to_junit(report: dict[str, Any]) -> str:
    cases = []
    for iid, entry in report["instances"].items():
        case = TestCase(name=iid, classname=entry["repo"], elapsed_sec=entry["time"])
        status = entry["status"]
        if status in MODEL_FAILURES:
            tests = entry["failing_tests"]
            shown = ", ".join(tests[:_SHOWN_TESTS]) + (" …" if len(tests) > _SHOWN_TESTS else "")
            case.add_failure_info(message=f"{status}" + (f": failing tests {shown}" if tests else ""),
                                  output="\n".join(tests), failure_type=status)
        elif status in INFRA_FAILURES:
            error = entry["error"] or {"kind": status, "message": status}
            case.add_error_info(message=f"{status}: {error['message']}", error_type=error["kind"])
        elif status == NOT_ATTEMPTED:
            case.add_skipped_info(message="not attempted")
        cases.append(case)
    identity = report["identity"]
    suite = TestSuite(f"ci-eval {identity.get('model', '')} on {identity.get('dataset', '')}", cases,
                      properties={k: str(v) for k, v in identity.items()})
    # junit-xml adds `disabled`, which the Jenkins/Surefire schema does not allow: build the
    # root ourselves from its suite element and leave that attribute out.
    element = suite.build_xml_doc(encoding="utf-8")
    element.attrib.pop("disabled", None)
    root = ElementTree.Element("testsuites", {k: element.attrib[k] for k in ("tests", "failures", "errors", "time")})
    root.append(element)
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
