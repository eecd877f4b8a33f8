"""Training steps of a tiny VAE with chosen weights and chosen noise.

Used by `tests/test_backend_equivalence.py`, in process for the active Keras
backend and as a script (`python tests/backend_steps.py IN.npz OUT.npz`) for
the other one, since a process has one Keras backend.

The noise is made identical on every backend by construction:
`keras.random.normal` is replaced by a function that still calls
`seed_generator.next()`, exactly as a real draw does, and returns the row of a
given table selected by the generator's counter. The noise of step t is
therefore table[t] only if the step really advanced the sampler's seed
state; a step that drops the updated state reuses table[0].
"""

import sys

import keras
import numpy as np
from keras import ops

DATA_DIM, HIDDEN, LATENT_DIM = 6, 4, 2
SEED = 11
LEARNING_RATE = 0.5
BETA = 0.5


def build_vae():
    import kerasvae

    x = keras.Input((DATA_DIM,), name="x")
    h = keras.layers.Dense(HIDDEN, activation="tanh", name="enc_hidden")(x)
    mean = keras.layers.Dense(LATENT_DIM, name="enc_mean")(h)
    log_var = keras.layers.Dense(LATENT_DIM, name="enc_log_var")(h)
    encoder = keras.Model(x, [mean, log_var], name="encoder")
    z = keras.Input((LATENT_DIM,), name="z")
    g = keras.layers.Dense(HIDDEN, activation="tanh", name="dec_hidden")(z)
    logits = keras.layers.Dense(DATA_DIM, name="dec_logits")(g)
    decoder = keras.Model(z, logits, name="decoder")
    return kerasvae.VAE(encoder, decoder, likelihood="bernoulli", beta=BETA, seed=SEED)


def weight_names(model):
    return [v.path for v in model.trainable_weights]


def install_noise_table(table):
    """Makes `keras.random.normal(shape, seed=generator)` return table[counter].

    Returns the original function, to put back.
    """
    table = np.asarray(table, "float32")

    def table_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
        state = seed.next()  # advances the generator as a real draw would
        index = ops.mod(ops.cast(state[1], "int32"), table.shape[0])
        draw = ops.take(ops.convert_to_tensor(table), index, axis=0)
        return ops.cast(draw * stddev + mean, dtype or "float32")

    original = keras.random.normal
    keras.random.normal = table_normal
    return original


def run(inputs):
    """Returns the losses, weights and seed states after each step, as arrays.

    `inputs`: `weights` (dict path -> array), `noise` (steps, batch, latent),
    `x` (steps, batch, data), `sample_weight` (steps, batch; NaN for none).
    """
    original = install_noise_table(inputs["noise"])
    try:
        return _run(inputs)
    finally:
        keras.random.normal = original


def _run(inputs):
    model = build_vae()
    for variable in model.trainable_weights:
        variable.assign(inputs["weights"][variable.path])
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE))
    out = {"names": np.array(weight_names(model))}
    steps = len(inputs["x"])
    for t in range(steps):
        weight = inputs["sample_weight"][t]
        logs = model.train_on_batch(
            inputs["x"][t], sample_weight=None if np.isnan(weight).any() else weight, return_dict=True
        )
        for key in ("loss", "reconstruction_loss", "kl_loss"):
            out[f"{key}_{t}"] = np.asarray(logs[key], "float64")
        out[f"seed_state_{t}"] = ops.convert_to_numpy(model.sampling.seed_generator.state)
        for i, variable in enumerate(model.trainable_weights):
            out[f"weight_{t}_{i}"] = ops.convert_to_numpy(variable)
    return out


def load_inputs(path):
    with np.load(path) as f:
        arrays = dict(f)
    weights = {k[len("w:"):]: v for k, v in arrays.items() if k.startswith("w:")}
    return {
        "weights": weights,
        "noise": arrays["noise"],
        "x": arrays["x"],
        "sample_weight": arrays["sample_weight"],
    }


def save_inputs(path, inputs):
    arrays = {f"w:{k}": v for k, v in inputs["weights"].items()}
    arrays.update(noise=inputs["noise"], x=inputs["x"], sample_weight=inputs["sample_weight"])
    np.savez(path, **arrays)


if __name__ == "__main__":
    result = run(load_inputs(sys.argv[1]))
    result["backend"] = np.array(keras.backend.backend())
    np.savez(sys.argv[2], **result)
