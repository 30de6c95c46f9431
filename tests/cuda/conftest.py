"""The ``cuda`` test group (``make test-gpu``): every path a GPU user takes, on a real device.

Skipped where no GPU exists. ``PYG_DOCRE_TEST_DEVICE=cpu pytest -m cuda`` runs the same tests on
the CPU, which checks the tests themselves on a machine without a GPU (CI does not do this:
the default suite already covers the CPU).
"""
import os

import pytest
import torch


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/cuda/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.cuda)


@pytest.fixture(scope="session")
def device() -> torch.device:
    name = os.environ.get("PYG_DOCRE_TEST_DEVICE", "cuda")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device (make test-gpu needs one)")
    return device
