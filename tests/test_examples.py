"""The examples run: each one's shortened form (`--quick`), with its output checked.

They run in this process, as `python examples/NAME.py ARGS` would run them
(`runpy` with `__name__ == "__main__"` and `sys.argv` set): a subprocess each
would import TensorFlow again, a third of their time.
"""

import contextlib
import io
import os
import re
import runpy
import sys
from unittest import mock

import keras
import numpy as np
import pytest
from PIL import Image

# What users run, with the steps they get: traced, not eager (tests/conftest.py).
pytestmark = pytest.mark.compiled_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


def run_example(name, *args):
    """Runs `examples/<name>` with `args` on this process's backend; returns what it printed."""
    path = os.path.join(EXAMPLES, name)
    out = io.StringIO()
    # The examples set environment variables for a fresh process; they are undone here.
    with mock.patch.dict(os.environ), mock.patch.object(sys, "argv", [path, *args]):
        with contextlib.redirect_stdout(out):
            runpy.run_path(path, run_name="__main__")
    keras.utils.clear_session(free_memory=False)
    return out.getvalue()


def assert_png(path):
    with Image.open(path) as image:
        image.verify()


def number(pattern, text):
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in:\n{text}"
    return float(match.group(1))


def test_no_example_imports_the_tests():
    for name in os.listdir(EXAMPLES):
        if name.endswith(".py"):
            with open(os.path.join(EXAMPLES, name)) as f:
                source = f.read()
            assert not re.search(r"^\s*(from|import)\s+tests\b", source, re.M), name
            assert "sys.path" not in source, name


def test_every_example_is_listed_in_the_readme():
    with open(os.path.join(EXAMPLES, "README.md")) as f:
        readme = f.read()
    for name in os.listdir(EXAMPLES):
        if name.endswith(".py"):
            assert f"examples/{name}" in readme, name


def test_minimal_vae_is_short_and_trains_on_this_backend(tmp_path):
    with open(os.path.join(EXAMPLES, "minimal_vae.py")) as f:
        assert len(f.read().splitlines()) < 60
    out = run_example("minimal_vae.py", "--quick", "--output", str(tmp_path))
    # One epoch on 2,000 images: far from trained, far from the untrained ~545 nats.
    assert 250 < number(r"test loss: ([\d.]+)", out) < 500
    assert_png(tmp_path / "samples.png")


@pytest.mark.requires_tensorflow
def test_pretrained_samples(tmp_path):
    out = run_example("pretrained_samples.py", "--quick", "--output", str(tmp_path))
    assert "samples (8, 28, 28, 1)" in out and "same seed, same samples: True" in out
    assert_png(tmp_path / "mlp_fashion_mnist_grey_samples.png")


@pytest.mark.requires_tensorflow
def test_latent_interpolation(tmp_path):
    out = run_example("latent_interpolation.py", "--quick", "--output", str(tmp_path))
    linear = [float(v) for v in re.search(r"linear +\|z\| along the path: (.*)", out).group(1).split()]
    spherical = [float(v) for v in re.search(r"spherical \|z\| along the path: (.*)", out).group(1).split()]
    assert len(linear) == len(spherical) == 5
    np.testing.assert_allclose([linear[0], linear[-1]], [spherical[0], spherical[-1]], atol=0.011)
    # Slerp interpolates the norm linearly; a straight line's midpoint is never longer.
    np.testing.assert_allclose(spherical[2], (spherical[0] + spherical[-1]) / 2, atol=0.011)
    assert linear[2] <= spherical[2] + 0.01
    assert_png(tmp_path / "interpolation.png")


@pytest.mark.requires_tensorflow
def test_query_serving_in_process(tmp_path):
    out = run_example("query_serving.py", "--quick", "--output", str(tmp_path))
    assert "same seed, same samples: True" in out
    assert number(r"reconstruction \+ KL\)\|: ([\d.e+-]+)", out) < 1e-3
    assert number(r"N\(0, I\) closed form: largest difference ([\d.e+-]+)", out) < 1e-3
    for signature in ("encode", "decode", "reconstruct", "sample_seeded", "elbo", "prior_log_prob"):
        assert re.search(rf"^  {signature} ", out, re.M), signature


@pytest.mark.requires_tensorflow
def test_query_serving_over_rest_and_grpc(tmp_path):
    # The example talks to a real server; here, to the test suite's stand-ins.
    import kerasvae
    from tests import serving_fakes
    from tests.helpers import tiny_vae

    export = kerasvae.export_saved_model(tiny_vae(latent_dim=2), str(tmp_path / "export"))
    repository = serving_fakes.ModelRepository({"fashion_vae": os.path.dirname(export)})
    with serving_fakes.FakeRESTServer(repository) as rest, serving_fakes.FakeGRPCServer(repository) as grpc:
        for flag, address in (("--rest", f"127.0.0.1:{rest.port}"), ("--grpc", grpc.target)):
            out = run_example("query_serving.py", flag, address, "--examples", "4")
            assert "same seed, same samples: True" in out, flag
            assert number(r"N\(0, I\) closed form: largest difference ([\d.e+-]+)", out) < 1e-3


@pytest.mark.requires_tensorflow
def test_anomaly_detection(tmp_path):
    out = run_example("anomaly_detection.py", "--quick", "--output", str(tmp_path))
    rank, pairwise = re.search(r"rank formula ([\d.]+), pairwise definition ([\d.]+)", out).groups()
    assert rank == pairwise
    auc = number(r"score = negative_elbo +([\d.]+)", out)
    assert 0.0 <= auc <= 1.0
    assert "<- held out" in out
    assert_png(tmp_path / "scores.png")


@pytest.mark.requires_tensorflow
def test_conditional_generation(tmp_path):
    out = run_example("conditional_generation.py", "--quick", "--label", "8",
                      "--num-samples", "6", "--output", str(tmp_path))
    assert "ConditionalVAE with num_classes=10" in out
    # The judge itself is a real classifier: well above chance (10%) on real images.
    assert number(r"judge: ([\d.]+)% right on real test images", out) > 50
    assert re.search(r"samples \(6, 28, 28, 1\), [\d.]+% judged 'Bag'", out)
    assert_png(tmp_path / "class_8.png")
    assert_png(tmp_path / "all_classes.png")


@pytest.mark.requires_tensorflow
def test_train_fashion_mnist_quick(tmp_path):
    out = run_example("train_fashion_mnist.py", "--quick", "--output", str(tmp_path))
    assert "same seed, same samples: True" in out
    for name in ("samples.png", "reconstructions.png", "latent.png", "served_samples.png"):
        assert_png(tmp_path / name)
