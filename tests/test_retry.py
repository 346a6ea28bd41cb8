"""What is retried: connection trouble and server errors are; a missing image or a bad request is not."""

from __future__ import annotations

from typing import Any

import docker.errors
import pytest
import requests

from ci_eval.sandbox.docker import _transient


class Response:
    def __init__(self, status: int) -> None:
        self.status_code = status
        self.reason = "scripted"


@pytest.mark.parametrize(("exc", "retried"), [
    (docker.errors.APIError("daemon busy", response=Response(500)), True),
    (docker.errors.APIError("daemon restarting", response=Response(503)), True),
    (requests.exceptions.ConnectionError("socket closed"), True),
    (requests.exceptions.ReadTimeout("slow"), True),
    (docker.errors.ImageNotFound("no such image", response=Response(404)), False),
    (docker.errors.APIError("conflict", response=Response(409)), False),
    (ValueError("a bug of ours"), False),
])
def test_transient_docker_failures(exc: Any, retried: bool) -> None:
    assert _transient(exc) is retried
