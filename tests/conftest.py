import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend: {keras.backend.backend()}"


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    # Without the full garbage collection (0.4 s per test on TF, 0.85 s on JAX,
    # most of the suite's set-up time); Python collects on its own schedule.
    keras.utils.clear_session(free_memory=False)
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture
def float64():
    """Keeps float64 inputs in float64 on every backend (JAX would make them float32)."""
    from tests.helpers import float64_context

    with float64_context():
        yield
