"""JUnit XML: one testcase per instance, failure = model failure, error = infrastructure."""

from __future__ import annotations

import re
from xml.etree import ElementTree

from junit_xml import TestCase, TestSuite

from ci_eval.contracts.report import InstanceResult, Report
from ci_eval.contracts.status import MODEL_FAILURES, NO_VERDICT, Status

_SHOWN_TESTS = 20
# Terminal colour codes first (a server's error text carries them), then every character XML 1.0
# cannot hold at all: whatever a record says, the file stays valid XML.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def clean(text: object) -> str:
    return _NOT_XML.sub("\ufffd", _ANSI.sub("", str(text)))


_WHY = {Status.EMPTY_PATCH: "no patch", Status.PATCH_FAILED: "the patch does not apply",
        Status.TIMEOUT: "the tests ran past --eval-timeout under this patch", Status.UNRESOLVED: "the tests say no"}


def _body(entry: InstanceResult) -> str:
    """What a reader of the failure wants first: how the attempt ended, then the log's tail."""
    lines = []
    if entry.exit_reason:
        lines.append(f"agent: {entry.exit_reason} after {entry.steps} step(s), {entry.tokens} tokens")
    if entry.failing_tests:
        lines += ["failing tests:", *entry.failing_tests]
    if entry.log_tail:
        lines += ["", "end of the log:", entry.log_tail]
    return clean("\n".join(lines))


def to_junit(report: Report) -> str:
    cases = []
    for iid, entry in report.instances.items():
        case = TestCase(name=clean(iid), classname=clean(entry.repo), elapsed_sec=entry.time,
                        stdout=clean("suspicious patch: " + "; ".join(entry.suspicious)) if entry.suspicious else None)
        status = entry.status
        if status in MODEL_FAILURES:
            # The type attribute says the status: the message does not repeat it.
            tests = [clean(t) for t in entry.failing_tests]
            shown = ", ".join(tests[:_SHOWN_TESTS]) + (" …" if len(tests) > _SHOWN_TESTS else "")
            message = f"failing tests: {shown}" if tests else _WHY.get(status, status)
            case.add_failure_info(message=clean(message), output=_body(entry), failure_type=status)
        elif status == Status.NOT_ATTEMPTED:
            case.add_skipped_info(message="not attempted")
        elif status == Status.TOO_SLOW:  # no verdict: the runner's speed, not the model, ended it
            message = f"too slow: {entry.error.message}" if entry.error else "too slow"
            case.add_error_info(message=clean(message), output=_body(entry), error_type=status)
        elif status in NO_VERDICT:
            message, kind = (entry.error.message, entry.error.kind) if entry.error else (status, status)
            case.add_error_info(message=clean(message), output=_body(entry), error_type=clean(f"{status}/{kind}"))
        cases.append(case)
    identity = report.identity
    suite = TestSuite(clean(f"ci-eval {identity.get('model', '')} on {identity.get('dataset', '')}"), cases,
                      properties={clean(k): clean(v) for k, v in identity.items()})
    # junit-xml adds `disabled`, which the Jenkins/Surefire schema does not allow: build the
    # root ourselves from its suite element and leave that attribute out.
    element = suite.build_xml_doc(encoding="utf-8")
    element.attrib.pop("disabled", None)
    root = ElementTree.Element("testsuites", {k: element.attrib[k] for k in ("tests", "failures", "errors", "time")})
    root.append(element)
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
