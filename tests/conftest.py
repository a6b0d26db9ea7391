import os

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors],
)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=400)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_collection_modifyitems(config, items):
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    no_gpu = pytest.mark.skip(reason="needs a CUDA device")
    one_gpu = pytest.mark.skip(reason=f"needs two or more CUDA devices ({gpus} visible)")
    for item in items:
        if "multigpu" in item.keywords and gpus < 2:
            item.add_marker(one_gpu)
        elif "gpu" in item.keywords and gpus < 1:
            item.add_marker(no_gpu)


@pytest.fixture
def rng():
    """A fresh, unseeded generator: every run draws new data."""
    generator = torch.Generator()
    generator.seed()
    return generator
