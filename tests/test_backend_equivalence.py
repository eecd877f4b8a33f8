"""Keras on JAX trains exactly as Keras on TensorFlow does.

Three `train_on_batch` steps of a tiny VAE (SGD, beta = 0.5) from the same
weights with the same noise (`tests/backend_steps.py` makes the noise
identical by construction, read through each step's seed state), on the
active backend in this process and on the other one in a subprocess. Both are
compared with each other and with a float64 NumPy reference of the same steps
(the loss written out by hand, its gradient by central differences):

- the loss, its two terms and the gradient (from the SGD update, w - lr g) of
  every step, and the weights after every step;
- the seed state advances by one draw per step, and step t uses noise t (a
  step that reuses the first noise is off the reference at step 2);
- the third step has a `sample_weight`: the loss is the weighted mean.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests import backend_steps

# Each run covers both backends (this process and a subprocess): once per suite.
pytestmark = [pytest.mark.requires_tensorflow, pytest.mark.compiled_step]  # the steps users train with

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS, BATCH = 3, 5
SAMPLE_WEIGHT = np.array([1.0, 0.0, 2.0, 0.5, 3.0])
# float32 steps against float64: a few float32 ulps of terms of size ~10 (the
# loss) and of weights of size ~1 divided by the learning rate (gradients).
LOSS_ATOL, GRAD_ATOL, WEIGHT_ATOL = 2e-5, 5e-5, 2e-5


# === The NumPy reference ===
def softplus(a):
    return np.logaddexp(0.0, a)


def reference_losses(params, x, eps, sample_weight=None):
    """(loss, reconstruction_loss, kl_loss) of one batch, float64."""
    p = params
    h = np.tanh(x @ p["enc_hidden/kernel"] + p["enc_hidden/bias"])
    mean = h @ p["enc_mean/kernel"] + p["enc_mean/bias"]
    log_var = h @ p["enc_log_var/kernel"] + p["enc_log_var/bias"]
    z = mean + np.exp(0.5 * log_var) * eps
    g = np.tanh(z @ p["dec_hidden/kernel"] + p["dec_hidden/bias"])
    logits = g @ p["dec_logits/kernel"] + p["dec_logits/bias"]
    reconstruction = -np.sum(x * logits - softplus(logits), axis=1)
    kl = 0.5 * np.sum(mean**2 + np.exp(log_var) - 1.0 - log_var, axis=1)
    w = np.ones(len(x)) if sample_weight is None else sample_weight
    rec, kl = np.sum(w * reconstruction) / np.sum(w), np.sum(w * kl) / np.sum(w)
    return rec + backend_steps.BETA * kl, rec, kl


def reference_gradient(params, x, eps, sample_weight=None, h=1e-6):
    grads = {}
    for name, value in params.items():
        grad = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            plus, minus = dict(params), dict(params)
            plus[name], minus[name] = value.copy(), value.copy()
            plus[name][index] += h
            minus[name][index] -= h
            grad[index] = (
                reference_losses(plus, x, eps, sample_weight)[0] - reference_losses(minus, x, eps, sample_weight)[0]
            ) / (2 * h)
        grads[name] = grad
    return grads


def reference_run(inputs, noise_index=None):
    """The reference steps; `noise_index(t)` picks the noise row (default: t)."""
    params = {k: v.astype(np.float64) for k, v in inputs["weights"].items()}
    records = []
    for t in range(STEPS):
        eps = inputs["noise"][t if noise_index is None else noise_index(t)].astype(np.float64)
        x = inputs["x"][t].astype(np.float64)
        weight = None if np.isnan(inputs["sample_weight"][t]).any() else inputs["sample_weight"][t]
        losses = reference_losses(params, x, eps, weight)
        grads = reference_gradient(params, x, eps, weight)
        params = {k: params[k] - backend_steps.LEARNING_RATE * grads[k] for k in params}
        records.append({"losses": losses, "grads": grads, "params": params})
    return records


# === Running the steps on both backends ===
def make_inputs():
    rng = np.random.default_rng(0)
    model = backend_steps.build_vae()  # only for the weight names and shapes
    weights = {v.path: rng.normal(0.0, 0.6, tuple(v.shape)).astype("float32") for v in model.trainable_weights}
    keras.utils.clear_session()
    sample_weight = np.full((STEPS, BATCH), np.nan)
    sample_weight[-1] = SAMPLE_WEIGHT
    return {
        "weights": weights,
        "noise": rng.standard_normal((STEPS, BATCH, backend_steps.LATENT_DIM)).astype("float32"),
        "x": rng.random((STEPS, BATCH, backend_steps.DATA_DIM)).astype("float32"),
        "sample_weight": sample_weight,
    }


def run_other_backend(inputs, tmp_path):
    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"
    in_path, out_path = str(tmp_path / "inputs.npz"), str(tmp_path / f"{other}.npz")
    backend_steps.save_inputs(in_path, inputs)
    env = dict(os.environ, KERAS_BACKEND=other, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
    subprocess.run(
        [sys.executable, os.path.join(REPO, "tests", "backend_steps.py"), in_path, out_path],
        env=env, check=True, timeout=300,
    )
    with np.load(out_path) as f:
        result = dict(f)
    assert str(result["backend"]) == other
    return other, result


def gradient_of_step(result, inputs, names, t):
    before = (
        [inputs["weights"][n] for n in names] if t == 0 else [result[f"weight_{t - 1}_{i}"] for i in range(len(names))]
    )
    after = [result[f"weight_{t}_{i}"] for i in range(len(names))]
    return [(b.astype(np.float64) - a) / backend_steps.LEARNING_RATE for b, a in zip(before, after)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    inputs = make_inputs()
    here = backend_steps.run(inputs)
    other, there = run_other_backend(inputs, tmp_path_factory.mktemp("backend_steps"))
    return inputs, {keras.backend.backend(): here, other: there}


def test_both_backends_match_the_reference_step_by_step(runs):
    inputs, results = runs
    reference = reference_run(inputs)
    for backend, result in results.items():
        names = [str(n) for n in result["names"]]
        assert names == backend_steps.weight_names(backend_steps.build_vae())
        for t, expected in enumerate(reference):
            measured = [float(result[f"{key}_{t}"]) for key in ("loss", "reconstruction_loss", "kl_loss")]
            np.testing.assert_allclose(measured, expected["losses"], atol=LOSS_ATOL, err_msg=f"{backend} step {t}")
            for name, grad in zip(names, gradient_of_step(result, inputs, names, t)):
                np.testing.assert_allclose(
                    grad, expected["grads"][name], atol=GRAD_ATOL, err_msg=f"{backend} step {t} d/d{name}"
                )
                index = names.index(name)
                np.testing.assert_allclose(
                    result[f"weight_{t}_{index}"], expected["params"][name], atol=WEIGHT_ATOL,
                    err_msg=f"{backend} weights after step {t}: {name}",
                )


def test_backends_agree_with_each_other(runs):
    _, results = runs
    tf_result, jax_result = results["tensorflow"], results["jax"]
    names = [str(n) for n in tf_result["names"]]
    assert names == [str(n) for n in jax_result["names"]]
    for t in range(STEPS):
        for key in ("loss", "reconstruction_loss", "kl_loss"):
            np.testing.assert_allclose(tf_result[f"{key}_{t}"], jax_result[f"{key}_{t}"], rtol=1e-5, atol=1e-5)
        for i in range(len(names)):
            np.testing.assert_allclose(
                tf_result[f"weight_{t}_{i}"], jax_result[f"weight_{t}_{i}"], atol=1e-5, err_msg=f"step {t} {names[i]}"
            )


def test_each_step_draws_fresh_noise(runs):
    inputs, results = runs
    for backend, result in results.items():
        states = [result[f"seed_state_{t}"] for t in range(STEPS)]
        # One draw per step: the counter advances by one, the seed stays.
        assert [int(s[1]) for s in states] == [1, 2, 3], (backend, states)
        assert all(int(s[0]) == backend_steps.SEED for s in states), backend
    # The reference with the first noise reused is far off from step 2 on:
    # the comparison above could tell (its tolerance is ~100x smaller).
    reused = reference_run(inputs, noise_index=lambda t: 0)
    fresh = reference_run(inputs)
    assert abs(reused[1]["losses"][0] - fresh[1]["losses"][0]) > 100 * LOSS_ATOL


def test_sample_weight_gives_the_weighted_mean(runs):
    inputs, results = runs
    reference = reference_run(inputs)
    params = reference[STEPS - 2]["params"]  # the weights before the last step
    x, eps = inputs["x"][-1].astype(np.float64), inputs["noise"][-1].astype(np.float64)
    weighted = reference_losses(params, x, eps, SAMPLE_WEIGHT)
    unweighted = reference_losses(params, x, eps)
    assert abs(weighted[0] - unweighted[0]) > 100 * LOSS_ATOL  # the check can tell them apart
    for backend, result in results.items():
        measured = [float(result[f"{key}_{STEPS - 1}"]) for key in ("loss", "reconstruction_loss", "kl_loss")]
        np.testing.assert_allclose(measured, weighted, atol=LOSS_ATOL, err_msg=backend)
