"""The serving tests' client of the app over the shared trained champion (`tests.conftest.served`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from serving.app import create_app
from tests.conftest import Served


@pytest.fixture
def client(served: Served) -> Iterator[TestClient]:
    with TestClient(create_app(served.config())) as test_client:
        yield test_client
