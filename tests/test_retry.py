"""What is retried: connection trouble and server errors are; a missing image or a bad request is not."""

from __future__ import annotations

from typing import Any

import docker.errors
import pytest
import requests

from ci_eval.sandbox.docker import _transient


def response(status: int) -> requests.Response:
    made = requests.Response()
    made.status_code = status
    return made


@pytest.mark.parametrize(("exc", "retried"), [
    (docker.errors.APIError("daemon busy", response=response(500)), True),
    (docker.errors.APIError("daemon restarting", response=response(503)), True),
    (requests.exceptions.ConnectionError("socket closed"), True),
    (requests.exceptions.ReadTimeout("slow"), True),
    (docker.errors.ImageNotFound("no such image", response=response(404)), False),
    (docker.errors.APIError("conflict", response=response(409)), False),
    (ValueError("a bug of ours"), False),
])
def test_transient_docker_failures(exc: Any, retried: bool) -> None:
    assert _transient(exc) is retried
