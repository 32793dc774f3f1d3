"""Fixtures that run the local twin (moto server + local endpoint + Lambda workers) for a test module."""

from __future__ import annotations

import pytest

from local.twin import Twin, TwinSettings, free_port


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> Twin:
    capture = tmp_path_factory.mktemp("capture")
    with Twin(TwinSettings(port=free_port(), stack_name="test-twin", capture_dir=capture)) as running:
        yield running
