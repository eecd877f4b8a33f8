"""The figures of the shipped models, re-measured rather than re-read.

For every `savedmodels/<name>/metrics.json` the Keras file is evaluated again
on a fixed slice of the Fashion-MNIST test set and each reported figure is
compared with the slice's estimate, within a standard error computed from the
same slice:

- reconstruction term, KL term and negative ELBO: per-image values on the
  first 1,000 test images (KL in closed form with NumPy, the reconstruction
  from one posterior draw), against the reported means over all test images
  (the spread between images makes this a check to about 10 nats for the
  first two, 0.4 for the KL); slow: on all the reported images, where the KL
  must agree to rounding and the reconstruction to the noise of one draw
  per image (a few tenths of a nat);
- importance-sampled NLL: the per-image gap between the negative ELBO and the
  NLL (log mean_k w_k - mean_k log w_k, NumPy weights) varies much less from
  image to image than either figure. Fast: on the first 500 images with K =
  10, the reported gap (K = 100) must not be smaller than the K = 10 gap, as
  the bound only tightens with K (one-sided). Slow (`pytest -m slow`): with
  the reported K on the first 1,000 images, two-sided. `bits_per_dim`
  follows from the NLL;
- active units: each unit's variance of the posterior mean on the slice, with
  its standard error, against the 0.01 threshold.

Models trained under the binarized protocol (`"protocol"` in their
`metrics.json`) are measured on the protocol's binarized test images.

The README tables are checked against the `metrics.json` files and the models.
Nothing here depends on the names of the models present.
"""

import json
import math
import os
import re

import keras
import numpy as np
import pytest
from keras import ops

import kerasvae
from kerasvae import data, pretrained, protocol

NAMES = pretrained.list_pretrained()
BINARIZED = [name for name in NAMES if "protocol" in pretrained.pretrained_metrics(name)]
GREY = [name for name in NAMES if name not in BINARIZED]
SLICE, NLL_SLICE = 1000, 500
Z = 4.5  # standard errors: a false alarm per figure below 1e-5
README = os.path.join(os.path.dirname(pretrained.savedmodels_dir()), "README.md")
LOG_2PI = math.log(2.0 * math.pi)


@pytest.fixture(scope="module")
def test_sets():
    (_, _), (x_test, y_test) = data.load_fashion_mnist()
    sets = {"grey": (x_test, y_test)}
    if BINARIZED:
        sets["binarized"] = protocol.binarized_splits()["test"]
    return sets


@pytest.fixture
def test_images(test_sets, name):
    """The test images `name` was evaluated on."""
    return test_sets["binarized" if name in BINARIZED else "grey"][0]


@pytest.fixture
def test_labels(test_sets, name):
    """Their classes (what a conditional model is given beside each image)."""
    return test_sets["binarized" if name in BINARIZED else "grey"][1]


def reported(name):
    return pretrained.pretrained_metrics(name)


def load(name):
    return pretrained.load_pretrained_keras(name)


def to64(t):
    return np.asarray(ops.convert_to_numpy(ops.cast(t, "float32")), np.float64)


def conditional(model):
    return getattr(model, "num_classes", None) is not None


def posterior(model, x, labels=None):
    mean, second = model.encode(x, labels) if conditional(model) else model.encode(x)
    return to64(mean), to64(second)


def posterior_draws(model, mean, second, eps):
    """z = mean + sd * eps (diagonal) or mean + L eps (full); eps (..., k)."""
    if model.covariance == "diagonal":
        return mean + np.exp(0.5 * second) * eps
    return mean + np.einsum("nij,...nj->...ni", second, eps)


def log_q(model, z, mean, second):
    """log q(z | x), NumPy, for z of shape (K, n, k)."""
    k = mean.shape[-1]
    if model.covariance == "diagonal":
        return log_normal(z, mean, second)
    diff = np.moveaxis(z - mean, 0, 1)[..., None]  # (n, K, k, 1)
    white = np.moveaxis(np.linalg.solve(second[:, None], diff)[..., 0], 1, 0)  # (K, n, k)
    log_det = 2.0 * np.sum(np.log(np.diagonal(second, axis1=-2, axis2=-1)), axis=-1)
    return -0.5 * (k * LOG_2PI + np.sum(white**2, axis=-1) + log_det)


def hierarchical(model):
    return isinstance(model, kerasvae.models.HierarchicalVAE)


def has_standard_prior(model):
    if hierarchical(model):
        return False  # p(z1 | z2) is learned whatever the prior on z2
    return not hasattr(model, "prior_components")


def has_closed_form_kl(model):
    """The model reports its KL term in closed form: a standard-normal prior
    and one draw per image (an IWAE reports the mean of its K one-draw
    estimates log q(z_k | x) - log p(z_k); a two-level model's KL1 is in
    closed form only at its drawn z2)."""
    return has_standard_prior(model) and not isinstance(model, kerasvae.models.IWAE)


def log_normal(z, mean, log_var):
    """log N(z; mean, diag(exp(log_var))), summed over the last axis."""
    return -0.5 * np.sum(LOG_2PI + log_var + (z - mean) ** 2 / np.exp(log_var), axis=-1)


def diagonal_kl(mean0, log_var0, mean1, log_var1):
    """KL(N(mean0, exp(log_var0)) || N(mean1, exp(log_var1))), summed over the last axis."""
    return 0.5 * np.sum(
        log_var1 - log_var0 + (np.exp(log_var0) + (mean0 - mean1) ** 2) / np.exp(log_var1) - 1.0, axis=-1
    )


def log_mean_exp(a, axis):
    """log mean exp(a) along `axis`, shifted by the maximum so that nothing overflows."""
    top = a.max(axis=axis, keepdims=True)
    return np.squeeze(top, axis) + np.log(np.mean(np.exp(a - top), axis=axis))


def vampprior_log_prob(model, z, rows=20_000):
    """log of the equal-weight mixture of q(z | u_c) at the model's pseudo-inputs.

    Each component's quadratic form is expanded into matrix products (exact
    algebra; float64 keeps its cancellation below 1e-9 nats here), in chunks of
    `rows` latents: the direct `(..., C, k)` broadcast would need 37 GiB at
    K = 5000 for 50 images and 500 components.
    """
    means, log_vars = (to64(t) for t in model.prior_components())  # (C, k) each
    precisions = np.exp(-log_vars)
    constant = -0.5 * (np.sum(LOG_2PI + log_vars + means**2 * precisions, axis=-1))  # (C,)
    flat = z.reshape(-1, z.shape[-1])
    out = np.empty(len(flat))
    for start in range(0, len(flat), rows):
        chunk = flat[start : start + rows]
        components = constant - 0.5 * (chunk**2 @ precisions.T) + chunk @ (means * precisions).T
        out[start : start + rows] = log_mean_exp(components, axis=-1)
    return out.reshape(z.shape[:-1])


def network(net, inputs):
    """A network's outputs at NumPy inputs, as float64 NumPy arrays."""
    inputs = keras.tree.map_structure(lambda a: ops.convert_to_tensor(np.asarray(a, "float32")), inputs)
    return [to64(t) for t in net(inputs, training=False)]


def z2_log_prior(model, z2):
    """log p(z2) of a two-level model: N(0, I) or its VampPrior."""
    if model.prior == "standard":
        return log_normal(z2, 0.0, 0.0)
    return vampprior_log_prob(model, z2)


def log_prior(model, z):
    """log p(z), NumPy, for z of shape (..., k): N(0, I), the VampPrior's
    equal-weight mixture of q(z | u_c) at the model's pseudo-inputs, or a
    two-level model's log p(z2) + log p(z1 | z2) at z = concat([z1, z2])."""
    if hierarchical(model):
        z1, z2 = z[..., : model.z1_dim], z[..., model.z1_dim :]
        p1_mean, p1_log_var = network(model.z1_prior, z2.reshape(-1, z2.shape[-1]))
        log_p1 = log_normal(z1, p1_mean.reshape(z1.shape), p1_log_var.reshape(z1.shape))
        return z2_log_prior(model, z2) + log_p1
    if has_standard_prior(model):
        return log_normal(z, 0.0, 0.0)
    return vampprior_log_prob(model, z)


def hierarchical_draws(model, x, num_samples, rng):
    """K joint draws z2 ~ q(z2 | x), z1 ~ q(z1 | x, z2) of a two-level model,
    with both levels' posterior and prior parameters and log p(x | z1, z2);
    every array (K, n, ...)."""
    n, k = len(x), num_samples
    q2_mean, q2_log_var = network(model.encoder, x)
    z2 = q2_mean + np.exp(0.5 * q2_log_var) * rng.standard_normal((k, n, model.z2_dim))
    flat_z2 = z2.reshape(k * n, -1)
    tiled = np.broadcast_to(x, (k,) + x.shape).reshape((k * n,) + x.shape[1:])
    q1_mean, q1_log_var = network(model.z1_encoder, [tiled, flat_z2])
    z1 = q1_mean + np.exp(0.5 * q1_log_var) * rng.standard_normal(q1_mean.shape)
    p1_mean, p1_log_var = network(model.z1_prior, flat_z2)
    log_px = log_likelihood(model, tiled, np.concatenate([z1, flat_z2], axis=-1))
    draws = {"z1": z1, "q1_mean": q1_mean, "q1_log_var": q1_log_var, "p1_mean": p1_mean,
             "p1_log_var": p1_log_var, "log_px": log_px}
    draws = {key: value.reshape((k, n) + value.shape[1:]) for key, value in draws.items()}
    return {**draws, "z2": z2, "q2_mean": q2_mean, "q2_log_var": q2_log_var}


def hierarchical_kl(model, d):
    """The KL term as a two-level model reports it, per draw: KL1 in closed form
    at the drawn z2, plus KL2 in closed form (standard prior) or as the one-draw
    estimate log q(z2 | x) - log p(z2) (VampPrior)."""
    kl1 = diagonal_kl(d["q1_mean"], d["q1_log_var"], d["p1_mean"], d["p1_log_var"])
    if model.prior == "standard":
        return kl1 + diagonal_kl(d["q2_mean"], d["q2_log_var"], 0.0, 0.0)
    return kl1 + log_normal(d["z2"], d["q2_mean"], d["q2_log_var"]) - z2_log_prior(model, d["z2"])


def hierarchical_log_weights(model, d):
    """log p(x, z1, z2) - log q(z1, z2 | x) per draw."""
    return (
        d["log_px"]
        + log_normal(d["z1"], d["p1_mean"], d["p1_log_var"])
        + z2_log_prior(model, d["z2"])
        - log_normal(d["z1"], d["q1_mean"], d["q1_log_var"])
        - log_normal(d["z2"], d["q2_mean"], d["q2_log_var"])
    )


def kl_term(model, mean, second, z):
    """The KL term of each image as the model reports it: in closed form for a
    standard-normal prior, else the one-draw estimate log q(z | x) - log p(z)."""
    if has_closed_form_kl(model):
        return kl_to_standard_normal(model, mean, second)
    return log_q(model, z[None], mean, second)[0] - log_prior(model, z)


def kl_to_standard_normal(model, mean, second):
    if model.covariance == "diagonal":
        return 0.5 * np.sum(mean**2 + np.expm1(second) - second, axis=-1)
    k = mean.shape[-1]
    log_det = 2.0 * np.sum(np.log(np.diagonal(second, axis1=-2, axis2=-1)), axis=-1)
    return 0.5 * (np.sum(second**2, axis=(-2, -1)) + np.sum(mean**2, axis=-1) - k - log_det)


def log_likelihood(model, x, z, labels=None):
    """log p(x | z) per row, through the model's decoder and likelihood (a
    conditional decoder also gets the one-hot class of each row; a two-level
    one takes z = concat([z1, z2]) as [z1, z2])."""
    z = ops.convert_to_tensor(z.astype("float32"))
    if hierarchical(model):
        output = model.decoder(list(model.split_latent(z)), training=False)
    elif conditional(model):
        one_hot = np.eye(model.num_classes, dtype="float32")[np.asarray(labels, dtype=int)]
        output = model.decoder([z, ops.convert_to_tensor(one_hot)], training=False)
    else:
        output = model.decoder(z, training=False)
    output = keras.tree.map_structure(lambda t: ops.cast(t, "float32"), output)
    return to64(model.likelihood.log_prob(ops.convert_to_tensor(x), output))


def per_image_figures(model, x, labels, rng, batch_size=250):
    """Reconstruction, KL and posterior means of each image (one draw each)."""
    reconstruction, kl, means = [], [], []
    for start in range(0, len(x), batch_size):
        batch, batch_labels = x[start : start + batch_size], labels[start : start + batch_size]
        mean, second = posterior(model, batch, batch_labels)
        means.append(mean)
        if hierarchical(model):
            draws = hierarchical_draws(model, batch, 1, rng)
            reconstruction.append(-draws["log_px"][0])
            kl.append(hierarchical_kl(model, draws)[0])
            continue
        z = posterior_draws(model, mean, second, rng.standard_normal(mean.shape))
        reconstruction.append(-log_likelihood(model, batch, z, batch_labels))
        kl.append(kl_term(model, mean, second, z))
    return np.concatenate(reconstruction), np.concatenate(kl), np.concatenate(means)


def log_weights(model, x, labels, num_samples, rng):
    """log p(x, z_k) - log q(z_k | x) for K draws z_k ~ q(z | x): shape (K, n)."""
    if hierarchical(model):
        return hierarchical_log_weights(model, hierarchical_draws(model, x, num_samples, rng))
    mean, second = posterior(model, x, labels)
    eps = rng.standard_normal((num_samples,) + mean.shape)
    z = posterior_draws(model, mean, second, eps)  # (K, n, k)
    tiled = np.broadcast_to(x, (num_samples,) + x.shape).reshape((-1,) + x.shape[1:])
    tiled_labels = np.tile(labels, num_samples)  # row k * n + i is image i's class
    log_px_z = log_likelihood(model, tiled, z.reshape(-1, mean.shape[-1]), tiled_labels)
    log_px_z = log_px_z.reshape(num_samples, len(x))
    return log_px_z + log_prior(model, z) - log_q(model, z, mean, second)


def assert_within(name, figure, measured_values, reported_value, population, reported_noise_variance=None):
    """The slice mean is within Z standard errors of the reported mean.

    The slice is part of the reported population: the finite-population
    correction sqrt(1 - n / N) applies. The reported mean carries its own
    noise (one posterior draw per image), of variance `reported_noise_variance`
    per image (by default that of the measured values, an upper bound).
    """
    n = len(measured_values)
    variance = measured_values.var(ddof=1)
    noise = variance if reported_noise_variance is None else reported_noise_variance
    stderr = math.sqrt(variance / n * max(0.0, 1.0 - n / population) + noise / population)
    difference = measured_values.mean() - reported_value
    assert abs(difference) < Z * stderr, (
        f"{name}: {figure} measured {measured_values.mean():.3f} +- {stderr:.3f} on {n} test "
        f"images, reported {reported_value:.3f} (off by {difference / stderr:.1f} standard errors)"
    )


@pytest.mark.parametrize("name", NAMES)
def test_elbo_figures_are_reproduced(name, test_images, test_labels):
    figures = reported(name)["test"]
    model = load(name)
    population = figures["examples"]
    x, y = test_images[: min(SLICE, population)], test_labels[: min(SLICE, population)]
    reconstruction, kl, _ = per_image_figures(model, x, y, np.random.default_rng(0))
    assert_within(name, "reconstruction_loss", reconstruction, figures["reconstruction_loss"], population)
    assert_within(name, "kl_loss", kl, figures["kl_loss"], population)
    assert_within(name, "negative_elbo", reconstruction + kl, figures["negative_elbo"], population)
    if isinstance(model, kerasvae.models.IWAE):
        # Its loss is the K-sample bound -log mean_k w_k, K = model.num_samples.
        loss = -log_mean_weights(model, x, y, model.num_samples, np.random.default_rng(5))
        # Image by image the bound moves with the ELBO: their gap varies far
        # less between images than either, so it tells the bound from the
        # ELBO where the loss alone (spread over tens of nats) cannot.
        assert_within(
            name, "negative_elbo - loss", reconstruction + kl - loss,
            figures["negative_elbo"] - figures["loss"], population,
        )
    else:
        loss = reconstruction + model.beta * kl
    assert_within(name, "loss", loss, figures["loss"], population)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_elbo_figures_are_reproduced_on_all_test_images(name, test_images, test_labels):
    """On the reported images themselves only the posterior draws differ: a
    closed-form KL must agree to rounding; the reconstruction (and a one-draw
    KL) to the noise of one draw per image, measured from two independent
    draws."""
    figures = reported(name)["test"]
    model = load(name)
    x, y = test_images[: figures["examples"]], test_labels[: figures["examples"]]
    first, kl, _ = per_image_figures(model, x, y, np.random.default_rng(3))
    second, kl_again, _ = per_image_figures(model, x, y, np.random.default_rng(4))

    def noise(a, b):
        # Var(one-draw mean - reported one-draw mean) = 2 noise / N = Var(a - b) / N.
        return math.sqrt((a - b).var(ddof=1) / len(x))

    if has_closed_form_kl(model):
        np.testing.assert_allclose(kl.mean(), figures["kl_loss"], rtol=1e-4)
        kl_stderr = 1e-3 * figures["kl_loss"]
    else:
        kl_stderr = Z * noise(kl, kl_again)
        assert abs(kl.mean() - figures["kl_loss"]) < kl_stderr, (kl.mean(), kl_stderr)
    stderr = noise(first, second)
    assert abs(first.mean() - figures["reconstruction_loss"]) < Z * stderr, (first.mean(), stderr)
    elbo_stderr = noise(first + kl, second + kl_again)
    assert abs(first.mean() + kl.mean() - figures["negative_elbo"]) < Z * elbo_stderr + (
        kl_stderr if has_closed_form_kl(model) else 0.0
    )


def log_mean_weights(model, x, labels, num_samples, rng, batch_size=50):
    """log mean_k w_k of each image: minus its K-sample bound."""
    out = []
    for start in range(0, len(x), batch_size):
        batch = slice(start, start + batch_size)
        out.append(log_mean_exp(log_weights(model, x[batch], labels[batch], num_samples, rng), axis=0))
    return np.concatenate(out)


def gaps(model, x, labels, num_samples, seed, batch_size=50):
    """Per image: (-ELBO - NLL_K) = log mean_k w_k - mean_k log w_k, and the
    spread of one-draw log w (the noise of a one-draw ELBO)."""
    rng = np.random.default_rng(seed)
    gap, spread = [], []
    for start in range(0, len(x), batch_size):
        batch = slice(start, start + batch_size)
        log_w = log_weights(model, x[batch], labels[batch], num_samples, rng)
        gap.append(log_mean_exp(log_w, axis=0) - log_w.mean(axis=0))
        spread.append(log_w.var(axis=0, ddof=1))
    return np.concatenate(gap), np.concatenate(spread)


def check_nll_protocol(name, figures):
    # The gaps pair the two figures image by image: they must come from the
    # same images (the README's protocol: all test images).
    assert figures["nll_examples"] == figures["examples"], (
        f"{name}: NLL on {figures['nll_examples']} images, ELBO on {figures['examples']}"
    )
    reported_gap = figures["negative_elbo"] - figures["nll_importance_sampled"]
    assert reported_gap > 0, f"{name}: the reported NLL is not below the reported negative ELBO"
    dims = int(np.prod(load(name).data_shape))
    np.testing.assert_allclose(
        figures["bits_per_dim"], figures["nll_importance_sampled"] / (math.log(2.0) * dims), rtol=1e-6
    )
    return reported_gap


@pytest.mark.parametrize("name", NAMES)
def test_importance_sampled_nll_is_below_a_smaller_k_estimate(name, test_images, test_labels):
    """One-sided, fast: E[NLL_K] decreases with K, so the reported NLL (K = 100)
    must not exceed the reported -ELBO minus the gap measured with K = 10."""
    figures = reported(name)["test"]
    reported_gap = check_nll_protocol(name, figures)
    small_k = 10
    assert small_k < figures["nll_num_samples"]
    model = load(name)
    gap, _ = gaps(model, test_images[:NLL_SLICE], test_labels[:NLL_SLICE], small_k, seed=1)
    stderr = gap.std(ddof=1) / math.sqrt(len(gap))
    # The gap has a long right tail (a few images have gaps of 10-20 nats):
    # a slice mean is then more often below the population mean than above,
    # which only makes this one-sided check more lenient, never a false alarm.
    assert gap.mean() - Z * stderr < reported_gap, (
        f"{name}: -ELBO - NLL is {reported_gap:.3f} nats as reported (K={figures['nll_num_samples']}) "
        f"but {gap.mean():.3f} +- {stderr:.3f} with K={small_k} on {len(gap)} test images"
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_importance_sampled_nll_is_reproduced_at_the_reported_k(name, test_images, test_labels):
    """Two-sided, at the protocol's K, on enough images for the long-tailed gap
    (slow for the conv model: 100,000 decoder passes)."""
    figures = reported(name)["test"]
    reported_gap = check_nll_protocol(name, figures)
    model = load(name)
    gap, spread = gaps(model, test_images[:SLICE], test_labels[:SLICE], figures["nll_num_samples"], seed=2)
    # The reported -ELBO used one draw per image: its noise is the spread of log w.
    assert_within(
        name, "negative_elbo - nll_importance_sampled", gap, reported_gap, figures["examples"], spread.mean()
    )


@pytest.mark.parametrize("name", NAMES)
def test_active_units_are_reproduced(name, test_images, test_labels):
    figures = reported(name)["test"]
    model = load(name)
    assert figures["latent_dim"] == model.latent_dim
    x, y = test_images[: min(SLICE, figures["examples"])], test_labels[: min(SLICE, figures["examples"])]
    means = np.concatenate([posterior(model, x[i : i + 500], y[i : i + 500])[0] for i in range(0, len(x), 500)])
    centred = means - means.mean(axis=0)
    variance = np.mean(centred**2, axis=0)
    # Standard error of a sample variance: sqrt((m4 - var^2) / n).
    stderr = np.sqrt(np.maximum(np.mean(centred**4, axis=0) - variance**2, 0.0) / len(x))
    threshold = 0.01
    surely_active = int(np.sum(variance - Z * stderr > threshold))
    possibly_active = int(np.sum(variance + Z * stderr > threshold))
    assert surely_active <= figures["active_units"] <= possibly_active, (
        name, figures["active_units"], variance, stderr
    )


# === The README table ===
def readme_table(first_columns="| model | posterior |"):
    """Rows of a README table of pretrained models: {model name: {column: cell}}."""
    with open(README) as f:
        lines = [line.strip() for line in f]
    start = next(i for i, line in enumerate(lines) if line.startswith(first_columns))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = dict(zip(header, cells))
    return header, rows


def test_readme_table_lists_every_shipped_model_with_its_figures():
    header, rows = readme_table()
    assert sorted(rows) == GREY
    nll_column = next(c for c in header if c.startswith("NLL"))
    for name in GREY:
        record = reported(name)
        figures, config, row = record["test"], record["run_config"], rows[name]
        model = load(name)
        assert nll_column == f"NLL (K={figures['nll_num_samples']})", nll_column
        # Figures to the printed precision (rounding: half a unit in the last place).
        for column, key, digits in (
            ("-ELBO", "negative_elbo", 1), ("reconstruction", "reconstruction_loss", 1),
            ("KL", "kl_loss", 1), (nll_column, "nll_importance_sampled", 1), ("bits/dim", "bits_per_dim", 3),
        ):
            assert abs(float(row[column]) - figures[key]) <= 0.5 * 10**-digits + 1e-9, (name, column)
        assert row["active units"] == f"{figures['active_units']} of {figures['latent_dim']}", name
        assert int(row["epochs"]) == config["epochs"], name
        covariance, latent = re.fullmatch(r"(\w+), (\d+)-d", row["posterior"]).groups()
        assert (covariance, int(latent)) == (model.covariance, model.latent_dim), name
        params = model.count_params()
        assert abs(float(row["params"].rstrip("M")) * 1e6 - params) <= 0.005e6, (name, params)


@pytest.mark.skipif(not BINARIZED, reason="no model trained under the binarized protocol is shipped")
def test_readme_binarized_table_lists_every_protocol_model_beside_the_published_row():
    header, rows = readme_table("| model | family |")
    assert sorted(rows) == BINARIZED
    for name in BINARIZED:
        record = reported(name)
        figures, config, row = record["test"], record["run_config"], rows[name]
        assert record["protocol"]["binarized"] is True
        assert record["protocol"]["test_binarization_seed"] == protocol.TEST_SEED
        assert figures["nll_num_samples"] == protocol.NLL_SAMPLES == 5000
        assert figures["nll_examples"] == figures["examples"] == 10000
        for column, key in (("-ELBO", "negative_elbo"), ("KL", "kl_loss")):
            assert abs(float(row[column]) - figures[key]) <= 0.05 + 1e-9, (name, column)
        nll, stderr = (float(v) for v in row["NLL (K=5000)"].split("+-"))
        assert abs(nll - figures["nll_importance_sampled"]) <= 0.005 + 1e-9, name
        assert abs(stderr - figures["nll_standard_error"]) <= 0.005 + 1e-9, name
        published = protocol.PUBLISHED.get(protocol.PUBLISHED_ROW.get(config["preset"]))
        assert row["published"] == (f"{published:.2f}" if published else "-"), name
        assert int(row["epochs"]) == config["epochs_run"], name
        assert row["family"] == type(load(name)).__name__, name


def test_readme_states_the_protocol_of_the_metrics():
    with open(README) as f:
        text = f.read()
    for name in GREY:
        figures = reported(name)["test"]
        assert f"K = {figures['nll_num_samples']} samples on all {figures['nll_examples']:,}" in text, name
        assert f"evaluated on the {figures['examples']:,} test images" in text, name


# === The NumPy reference itself ===
TWO_LEVEL = {"standard": {}, "vampprior": {"prior": "vampprior", "num_components": 3}}


@pytest.mark.parametrize(
    "family, kwargs",
    [("VAE", {}), ("VampPriorVAE", {})] + [("HierarchicalVAE", k) for k in TWO_LEVEL.values()],
    ids=["VAE", "VampPriorVAE"] + [f"HierarchicalVAE-{prior}" for prior in TWO_LEVEL],
)
def test_numpy_prior_agrees_with_the_model(family, kwargs):
    """The references above recompute the prior; a wrong one would pass or fail
    every model for the wrong reason. Against the model on random latents."""
    from tests import families

    model = families.build(family, **kwargs)
    z = np.random.default_rng(0).standard_normal((3, 5, model.latent_dim))
    z32 = ops.convert_to_tensor(z.astype("float32"))
    np.testing.assert_allclose(log_prior(model, z), to64(model.prior_log_prob(z32)), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("family", ["VAE", "VampPriorVAE"])
def test_numpy_kl_agrees_with_the_model(family):
    from tests import families

    model = families.build(family)
    z = np.random.default_rng(0).standard_normal((5, model.latent_dim))
    x = np.random.default_rng(1).random((5,) + tuple(model.data_shape), dtype=np.float32)
    mean, second = posterior(model, x)
    draw = posterior_draws(model, mean, second, z)
    posterior_tensors = model.encode(x)
    expected = to64(model.kl_divergence(posterior_tensors, ops.convert_to_tensor(draw.astype("float32"))))
    np.testing.assert_allclose(kl_term(model, mean, second, draw), expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("prior", list(TWO_LEVEL))
def test_numpy_two_level_terms_agree_with_the_model_in_distribution(prior):
    """A two-level model draws its own noise, so its terms cannot be compared
    draw by draw: over K draws on a few images, each image's mean
    reconstruction, KL and log-weight from the NumPy references must match the
    model's `elbo_terms` and `log_importance_weights` within Z standard errors
    (a missing or mis-signed term moves a mean by nats; the errors are
    hundredths)."""
    from tests import families

    model = families.build("HierarchicalVAE", **TWO_LEVEL[prior])
    n, k = 4, 4000
    x = (np.random.default_rng(0).random((n,) + tuple(model.data_shape)) < 0.5).astype("float32")
    draws = hierarchical_draws(model, x, k, np.random.default_rng(1))
    tiled = np.broadcast_to(x, (k,) + x.shape).reshape((k * n,) + x.shape[1:])
    terms = model.elbo_terms(ops.convert_to_tensor(tiled), seed=2)
    pairs = {
        "reconstruction": (-draws["log_px"], to64(terms["reconstruction_loss"]).reshape(k, n)),
        "kl": (hierarchical_kl(model, draws), to64(terms["kl_loss"]).reshape(k, n)),
        "log_weight": (
            hierarchical_log_weights(model, draws),
            to64(model.log_importance_weights(ops.convert_to_tensor(x), num_samples=k, seed=3)),
        ),
    }
    for figure, (ours, theirs) in pairs.items():
        stderr = np.sqrt((ours.var(axis=0, ddof=1) + theirs.var(axis=0, ddof=1)) / k)
        difference = ours.mean(axis=0) - theirs.mean(axis=0)
        assert np.all(np.abs(difference) < Z * stderr), (figure, difference, stderr)


@pytest.mark.parametrize("family", ["VAE", "ConditionalVAE"])
def test_numpy_likelihood_agrees_with_the_model(family):
    """The decoder call above (with a NumPy one-hot for a conditional model)
    against the model's own `reconstruct`: at the posterior mean, the
    Bernoulli log-likelihood of the probabilities it returns. Shuffled classes
    change a conditional model's figure, so a misaligned one-hot fails here."""
    from tests import families

    model = families.build(family)
    rng = np.random.default_rng(2)
    x = (rng.random((6,) + tuple(model.data_shape)) < 0.5).astype("float32")
    labels = np.arange(6) % families.NUM_CLASSES if conditional(model) else None
    mean, _ = posterior(model, x, labels)
    probabilities = to64(model.reconstruct(x, labels) if conditional(model) else model.reconstruct(x))
    expected = np.sum(x * np.log(probabilities) + (1 - x) * np.log1p(-probabilities), axis=(1, 2, 3))
    np.testing.assert_allclose(log_likelihood(model, x, mean, labels), expected, rtol=1e-4, atol=1e-3)
    if conditional(model):
        shuffled = np.roll(labels, 1)
        assert not np.allclose(log_likelihood(model, x, mean, shuffled), expected, rtol=1e-4, atol=1e-3)
