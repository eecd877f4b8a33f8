"""Distributed training gives the same updates as one device, for every family.

Each strategy runs in fresh processes (tests/distributed_runs.py): logical
devices, TF_CONFIG and XLA flags must be set before TensorFlow or JAX start,
and must not leak into this test process.

The guarded effect: a loss scaled twice (or not at all) for the number of
replicas halves (or doubles) every update; a step counter advanced once per
replica doubles the KL weight of the schedule. So the distributed weights must
match the single-device ones to a small fraction of the update itself, and
the update must be large enough for that to mean something.
"""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests import distributed_runs, families

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = distributed_runs.EPOCHS * distributed_runs.NUM_EXAMPLES // distributed_runs.GLOBAL_BATCH
# Summing the replicas' gradients in another order moves float32 results by
# ~1e-7 relative; a mis-scaled update is off by 50-100% of itself.
RELATIVE_TOLERANCE = 1e-3


def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("TF_CONFIG", None)
    return env


def _start(mode, out, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "tests.distributed_runs", mode, str(out), *map(str, extra)],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process, timeout=900):
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        raise AssertionError(f"distributed run timed out:\n{output[-4000:]}")
    assert process.returncode == 0, f"distributed run failed:\n{output[-4000:]}"


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _check_same_updates(results, num_replicas, names=None):
    assert sorted(results) == sorted(names or families.available_families())
    for name, result in results.items():
        assert result["num_replicas"] == num_replicas, name
        single, distributed = result["single"], result["distributed"]
        start = [np.asarray(w) for w in result["initial_weights"]]
        one = [np.asarray(w) for w in single["weights"]]
        many = [np.asarray(w) for w in distributed["weights"]]
        update = max(float(np.max(np.abs(b - a))) for a, b in zip(start, one))
        gap = max(float(np.max(np.abs(b - a))) for a, b in zip(one, many))
        assert update > 1e-2, f"{name}: the single-device run barely moved ({update})"
        assert gap <= RELATIVE_TOLERANCE * update, (
            f"{name}: distributed weights differ from one device by {gap}, "
            f"for updates of {update}"
        )
        for key, values in single["history"].items():
            np.testing.assert_allclose(
                distributed["history"][key], values, rtol=1e-4, atol=1e-6, err_msg=f"{name}: {key}"
            )
        assert single["kl_step"] == distributed["kl_step"] == STEPS, name


@pytest.mark.requires_tensorflow
def test_mirrored_strategy_matches_one_device(tmp_path):
    out = tmp_path / "mirrored.json"
    _finish(_start("mirrored", out))
    results = json.loads(out.read_text())
    _check_same_updates(results, num_replicas=2)
    # With the real noise the sampler's stream advances once per global step
    # (its state is mirrored), as on one device.
    noisy, single = results["VAE"]["real_noise"], results["VAE"]["real_noise_single"]
    assert noisy["seed_state"] == single["seed_state"]
    assert noisy["seed_state"][1] == STEPS
    assert noisy["kl_step"] == STEPS
    assert all(np.isfinite(v).all() for v in noisy["history"].values())
    # The KL weight is logged once, not summed over the replicas.
    np.testing.assert_allclose(noisy["history"]["beta"], single["history"]["beta"])


@pytest.mark.requires_tensorflow
def test_multi_worker_strategy_matches_one_device(tmp_path):
    """Two worker processes on loopback ports (`TF_CONFIG`), one replica each:
    each worker's distributed run makes the single-device updates."""
    ports = _free_ports(2)
    outs = [tmp_path / f"worker{i}.json" for i in range(2)]
    workers = [_start("multi_worker", outs[i], i, *ports) for i in range(2)]
    try:
        for worker in workers:
            _finish(worker)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    for out in outs:
        results = json.loads(out.read_text())
        _check_same_updates(results, num_replicas=2, names=distributed_runs.MULTI_WORKER_FAMILIES)
        noisy, single = results["VAE"]["real_noise"], results["VAE"]["real_noise_single"]
        assert noisy["seed_state"] == single["seed_state"] and noisy["kl_step"] == STEPS
        np.testing.assert_allclose(noisy["history"]["beta"], single["history"]["beta"])


@pytest.mark.requires_tensorflow  # not TF-only: the JAX run is a subprocess; this runs it once per suite
def test_jax_data_parallel_matches_one_device(tmp_path):
    out = tmp_path / "jax.json"
    _finish(_start("jax_data_parallel", out))
    results = json.loads(out.read_text())
    _check_same_updates(results, num_replicas=2, names=distributed_runs.JAX_FAMILIES)
    for result in results.values():
        # The model is laid out on the two-device mesh (weights replicated).
        assert "'batch': 2" in result["kernel_sharding"]
