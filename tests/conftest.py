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


@pytest.fixture(autouse=True)
def _one_step_per_call(request, monkeypatch):
    """Tests train a few batches: kerasvae's TF default of 32 steps per call
    would only add compile time (1-3 s per compiled model, measured), so the
    suite compiles one step per call. Tests marked `compile_defaults` (and
    every subprocess) get the real default."""
    if request.node.get_closest_marker("compile_defaults") is None:
        from kerasvae.training import defaults

        monkeypatch.setattr(defaults, "TF_STEPS_PER_EXECUTION", 1)


@pytest.fixture(autouse=True)
def _eager_steps_on_tensorflow(request, monkeypatch):
    """On TensorFlow a test's few steps of a tiny model cost far less run
    eagerly than traced: tracing a two-level model's train, test and predict
    functions takes seconds (a free-bits test: 27.6 s traced, 7.3 s eager).
    So a kerasvae model compiled in a test without `run_eagerly` runs
    eagerly. The traced steps are tested where marked `compiled_step` (every
    zoo preset, every family's fit/evaluate/predict test, the tests that
    train for many steps on real data or under mixed precision, the examples,
    the CLI and the protocol) or `compile_defaults`, and in every subprocess
    (CLI verbs, distributed, backend-equivalence and crash runs). On JAX
    eager is slower than jit (32.7 s against 22.5 s), so JAX keeps Keras's
    default."""
    marked = request.node.get_closest_marker("compiled_step") or request.node.get_closest_marker(
        "compile_defaults"
    )
    if marked is None and keras.backend.backend() == "tensorflow":
        from kerasvae.training import defaults

        filled = defaults.with_compile_defaults

        def eager(model, kwargs):
            kwargs = filled(model, kwargs)
            kwargs.setdefault("run_eagerly", True)
            return kwargs

        monkeypatch.setattr(defaults, "with_compile_defaults", eager)


@pytest.fixture
def float64():
    """Keeps float64 inputs in float64 on every backend (JAX would make them float32)."""
    from tests.helpers import float64_context

    with float64_context():
        yield
