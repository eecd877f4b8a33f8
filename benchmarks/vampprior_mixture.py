"""The VampPrior's mixture log-density: the expanded form beside the direct broadcast.

`kerasvae.models.vampprior_vae.mixture_log_prob` evaluates the C components'
quadratic forms with two matrix products, then recomputes the few leading
components directly. The baseline is the direct form, one
`(latents, C, latent_dim)` broadcast. Both run compiled on the active backend
on the same latents, alternated, `--repeats` times; the medians and their
ratio are printed with each form's largest error against float64 NumPy.

The components are a trained model's (`--model`, a VampPrior `.keras`) or,
by default, 500 random ones in 40 dimensions with log-variances in
[`--min-log-var`, 0]. The latents are draws from the components, so that the
mixture sits where the evaluation puts it: at posterior draws near the data.

    KERAS_BACKEND=tensorflow .venv/bin/python benchmarks/vampprior_mixture.py [--model PATH]
"""

import argparse
import math
import statistics
import time

import keras
import numpy as np
from keras import ops
from scipy.special import logsumexp

from kerasvae import divergences
from kerasvae.models.vampprior_vae import mixture_log_prob
from kerasvae.training import compiled


def direct_log_prob(z, means, log_vars):
    per_component = divergences.diagonal_normal_log_prob(ops.expand_dims(z, -2), means, log_vars)
    return ops.logsumexp(per_component, axis=-1) - math.log(means.shape[0])


def float64_log_prob(z, means, log_vars):
    z, means, log_vars = (np.asarray(a, "float64") for a in (z, means, log_vars))
    per_component = -0.5 * np.sum(
        np.log(2 * np.pi) + log_vars + (z[:, None] - means) ** 2 * np.exp(-log_vars), axis=-1
    )
    return logsumexp(per_component, axis=-1) - math.log(len(means))


def components(args, rng):
    if args.model:
        model = keras.saving.load_model(args.model)
        return [ops.convert_to_numpy(t) for t in model.prior_components()]
    means = rng.normal(0.0, 1.5, size=(args.components, args.latent_dim))
    log_vars = rng.uniform(args.min_log_var, 0.0, size=(args.components, args.latent_dim))
    return means.astype("float32"), log_vars.astype("float32")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--components", type=int, default=500)
    parser.add_argument("--latent-dim", type=int, default=40)
    parser.add_argument("--min-log-var", type=float, default=-3.0)
    parser.add_argument("--latents", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    means, log_vars = components(args, rng)
    pick = rng.integers(0, len(means), args.latents)
    noise = rng.normal(size=(args.latents, means.shape[1]))
    z = (means[pick] + np.exp(0.5 * log_vars[pick]) * noise).astype("float32")
    reference = float64_log_prob(z, means, log_vars)
    forms = {
        "direct (baseline)": compiled(lambda z: direct_log_prob(z, means, log_vars)),
        "expanded (kerasvae)": compiled(lambda z: mixture_log_prob(z, means, log_vars)),
    }
    seconds = {name: [] for name in forms}
    errors = {}
    for name, form in forms.items():  # trace and compile outside the timing
        errors[name] = float(np.abs(ops.convert_to_numpy(form(z)) - reference).max())
    for repeat in range(args.repeats):
        order = list(forms) if repeat % 2 == 0 else list(forms)[::-1]
        for name in order:
            start = time.perf_counter()
            ops.convert_to_numpy(forms[name](z))
            seconds[name].append(time.perf_counter() - start)
    print(
        f"backend {keras.backend.backend()}; {len(means)} components, {means.shape[1]}-d, "
        f"log-variances in [{log_vars.min():.2f}, {log_vars.max():.2f}]; {args.latents} latents; "
        f"{args.repeats} repeats alternated"
    )
    print("| form | s per 10k latents (median) | min - max | speed-up | max abs error vs float64 |")
    print("|---|---|---|---|---|")
    base = statistics.median(seconds["direct (baseline)"])
    for name, times in seconds.items():
        scale = 10_000 / args.latents
        median = statistics.median(times)
        print(
            f"| {name} | {median * scale:.3f} | {min(times) * scale:.3f} - {max(times) * scale:.3f} "
            f"| {base / median:.1f}x | {errors[name]:.1e} |"
        )


if __name__ == "__main__":
    main()
