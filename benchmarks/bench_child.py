"""One timed training run, in its own process: `python bench_child.py '<json spec>'`.

Called by compare_speed.py and training_levers.py (one framework per process:
a Keras backend is fixed at import and the pythae baseline lives in its own
virtual environment). Prints one JSON line last:

    {"samples_per_s": ..., "epoch_s": [...], "warmup_s": ..., "peak_rss_mib": ...,
     "train_loss": ..., "test_loss": ... (when asked)}

Spec keys: runner ("kerasvae", "keras_io", "pythae_trainer", "pythae_loop"),
arch ("mlp" or "conv"), epochs (timed epochs, after a warm-up fit on a few
batches that holds tracing and compilation), train_size (first n training images), seed,
eval (bool: negative ELBO on the 10k test images), and for kerasvae the
levers: compile_kwargs (dict passed to compile), input ("numpy" or "tfdata"),
threads ([intra, inter] for tf.config.threading; [n, _] is
torch.set_num_threads(n) for pythae), policy (a dtype policy name),
defaults (bool: apply kerasvae.training.defaults as the lead would wire it).

Peak memory is this process's peak resident set size (getrusage), so it
includes the framework's own footprint and the data.
"""

import importlib.util
import json
import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BATCH_SIZE = 128
WARMUP_SIZE = 2 * BATCH_SIZE + 96  # 60,000 = 468 * 128 + 96
EVAL_SAMPLES = 4  # posterior draws per test image for the test negative ELBO


def load_data(train_size):
    """Fashion-MNIST through kerasvae.data, loaded by file so that no framework is imported."""
    spec = importlib.util.spec_from_file_location("_kerasvae_data", os.path.join(ROOT, "kerasvae", "data.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (x_train, _), (x_test, _) = module.load_fashion_mnist()
    return x_train[:train_size], x_test, module


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def negative_elbo(encode, decode_probabilities, x, seed=0):
    """Test negative ELBO in NumPy float64, the same formula for every framework.

    `encode(x) -> (z_mean, z_log_var)` and `decode_probabilities(z) -> p` with
    p shaped like x. BCE summed over pixels (p clipped to [1e-7, 1 - 1e-7]) plus
    the Gaussian KL, averaged over EVAL_SAMPLES posterior draws and the images.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    mean, log_var = (np.asarray(a, dtype=np.float64) for a in encode(x))
    kl = -0.5 * np.sum(1 + log_var - mean**2 - np.exp(log_var), axis=1)
    flat_x = x.reshape(len(x), -1).astype(np.float64)
    reconstruction = np.zeros(len(x))
    for _ in range(EVAL_SAMPLES):
        z = mean + np.exp(0.5 * log_var) * rng.standard_normal(mean.shape)
        p = np.clip(np.asarray(decode_probabilities(z.astype(np.float32)), np.float64), 1e-7, 1 - 1e-7)
        p = p.reshape(len(x), -1)
        reconstruction += -np.sum(flat_x * np.log(p) + (1 - flat_x) * np.log1p(-p), axis=1)
    return float(np.mean(reconstruction / EVAL_SAMPLES + kl))


def summarize(epoch_times, cpu_times, warmup_s, n, extra):
    """Wall-clock samples/s (median epoch) and samples per CPU-second of this process.

    Per CPU-second is the steadier figure on a loaded machine for a run
    limited to one thread; with several threads it also counts spin-waiting.
    """
    import statistics

    result = {
        "samples_per_s": n / statistics.median(epoch_times),
        "samples_per_cpu_s": round(n / statistics.median(cpu_times), 1),
        "epoch_s": [round(t, 3) for t in epoch_times],
        "warmup_s": round(warmup_s, 3),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }
    result.update(extra)
    return result


# === Keras runners (kerasvae and the keras-io example) ===
def build_keras_model(spec):
    import keras

    sys.path.insert(0, HERE)
    sys.path.insert(0, ROOT)
    if spec.get("policy"):
        keras.config.set_dtype_policy(spec["policy"])
    keras.utils.set_random_seed(spec.get("seed", 0))
    if spec["runner"] == "keras_io":
        from keras_io_vae import build_keras_io_vae

        if spec["arch"] != "conv":
            raise ValueError(f"keras_io runs the conv architecture only. Received: arch={spec['arch']!r}")
        return build_keras_io_vae(seed=spec.get("seed", 0))
    if spec["arch"] == "conv":
        from keras_io_vae import build_kerasvae_same_networks

        model = build_kerasvae_same_networks(seed=spec.get("seed", 0))
    else:
        import kerasvae

        encoder = kerasvae.networks.build_mlp_encoder((28, 28, 1), 16, hidden_units=(512,))
        decoder = kerasvae.networks.build_mlp_decoder(16, (28, 28, 1), hidden_units=(512,))
        model = kerasvae.VAE(encoder, decoder, likelihood="bernoulli", seed=spec.get("seed", 0))
    compile_kwargs = dict(spec.get("compile_kwargs") or {})
    if spec.get("defaults"):
        from kerasvae.training import defaults

        compile_kwargs = {**defaults.compile_defaults(model), **compile_kwargs}
    model.compile(optimizer=keras.optimizers.Adam(), **compile_kwargs)
    return model


def fit(model, x, epochs, spec, data, callbacks):
    if spec.get("input") == "tfdata":
        train = data.make_dataset(x, batch_size=BATCH_SIZE, shuffle=True, seed=spec.get("seed", 0))
        return model.fit(train, epochs=epochs, verbose=0, callbacks=callbacks)
    return model.fit(x, epochs=epochs, batch_size=BATCH_SIZE, verbose=0, callbacks=callbacks)


def run_keras(spec):
    if spec.get("threads"):
        import tensorflow as tf

        intra, inter = spec["threads"]
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    import keras
    import numpy as np

    x_train, x_test, data = load_data(spec["train_size"])
    model = build_keras_model(spec)
    times, cpu_times = [], []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start, self.cpu = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)
            cpu_times.append(time.process_time() - self.cpu)

    # Warm-up on a few batches (one full and one partial batch shape, as a
    # 60k epoch has), so that tracing and compilation stay out of the timing.
    warm = x_train[:WARMUP_SIZE]
    start = time.perf_counter()
    fit(model, warm, 1, spec, data, [])
    warmup_s = time.perf_counter() - start
    history = fit(model, x_train, spec["epochs"], spec, data, [EpochTimer()])
    extra = {"train_loss": round(float(history.history["loss"][-1]), 3)}
    if spec.get("eval"):
        if spec["runner"] == "keras_io":
            encode = lambda x: model.encoder.predict(x, batch_size=500, verbose=0)[:2]  # noqa: E731
            probabilities = lambda z: model.decoder.predict(z, batch_size=500, verbose=0)  # noqa: E731
        else:
            encode = lambda x: model.encoder.predict(x, batch_size=500, verbose=0)[:2]  # noqa: E731
            probabilities = lambda z: keras.ops.convert_to_numpy(  # noqa: E731
                keras.ops.sigmoid(model.decoder.predict(z, batch_size=500, verbose=0))
            )
        extra["test_loss"] = round(negative_elbo(encode, probabilities, np.asarray(x_test)), 3)
    extra["backend"] = keras.backend.backend()
    return summarize(times, cpu_times, warmup_s, len(x_train), extra)


# === pythae runners (its own venv: torch + pythae, no keras) ===
def build_pythae_model():
    import torch
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 512), torch.nn.ReLU())
            self.mean = torch.nn.Linear(512, 16)
            self.log_var = torch.nn.Linear(512, 16)

        def forward(self, x):
            h = self.body(x)
            return ModelOutput(embedding=self.mean(h), log_covariance=self.log_var(h))

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(
                torch.nn.Linear(16, 512), torch.nn.ReLU(), torch.nn.Linear(512, 784), torch.nn.Sigmoid()
            )

        def forward(self, z):
            return ModelOutput(reconstruction=self.body(z).reshape(-1, 1, 28, 28))

    config = VAEConfig(input_dim=(1, 28, 28), latent_dim=16, reconstruction_loss="bce")
    return VAE(model_config=config, encoder=Encoder(), decoder=Decoder())


def run_pythae(spec):
    import tempfile

    import numpy as np
    import torch

    if spec["arch"] != "mlp":
        raise ValueError(f"The pythae baseline runs the mlp architecture only. Received: arch={spec['arch']!r}")
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"][0])
    torch.manual_seed(spec.get("seed", 0))
    x_train, x_test, _ = load_data(spec["train_size"])
    x = torch.from_numpy(np.ascontiguousarray(np.transpose(x_train, (0, 3, 1, 2))))
    model = build_pythae_model()
    times, cpu_times, losses = [], [], []
    if spec["runner"] == "pythae_trainer":
        # pythae's own trainer, as its users run it (a DataLoader over a BaseDataset).
        from pythae.data.datasets import BaseDataset
        from pythae.trainers import BaseTrainer, BaseTrainerConfig
        from pythae.trainers.training_callbacks import TrainingCallback

        class EpochTimer(TrainingCallback):
            def on_epoch_begin(self, training_config, **kwargs):
                self.start, self.cpu = time.perf_counter(), time.process_time()

            def on_epoch_end(self, training_config, **kwargs):
                times.append(time.perf_counter() - self.start)
                cpu_times.append(time.process_time() - self.cpu)

        def train(xs, epochs):
            with tempfile.TemporaryDirectory() as out:
                config = BaseTrainerConfig(
                    output_dir=out, num_epochs=epochs, per_device_train_batch_size=BATCH_SIZE,
                    learning_rate=1e-3, optimizer_cls="Adam", keep_best_on_train=True, no_cuda=True,
                )
                dataset = BaseDataset(xs, torch.zeros(len(xs)))
                BaseTrainer(model=model, train_dataset=dataset, training_config=config,
                            callbacks=[EpochTimer()]).train()
    else:
        # pythae's model and loss in a plain PyTorch loop over batches sliced
        # from one tensor: no DataLoader, so the stronger pythae figure.
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        def train(xs, epochs):
            model.train()
            for _ in range(epochs):
                start, cpu = time.perf_counter(), time.process_time()
                order = torch.randperm(len(xs))
                total = 0.0
                for i in range(0, len(xs), BATCH_SIZE):
                    out = model({"data": xs[order[i : i + BATCH_SIZE]]})
                    optimizer.zero_grad(set_to_none=True)
                    out.loss.backward()
                    optimizer.step()
                    total += float(out.loss.detach())
                times.append(time.perf_counter() - start)
                cpu_times.append(time.process_time() - cpu)
                losses.append(total / ((len(xs) + BATCH_SIZE - 1) // BATCH_SIZE))

    start = time.perf_counter()
    train(x[:WARMUP_SIZE], 1)
    warmup_s = time.perf_counter() - start
    times.clear()
    cpu_times.clear()
    losses.clear()
    train(x, spec["epochs"])
    extra = {"backend": f"torch {torch.__version__}, {torch.get_num_threads()} threads"}
    if losses:
        extra["train_loss"] = round(losses[-1], 3)
    if spec.get("eval"):
        model.eval()
        with torch.no_grad():
            def encode(xs):
                out = model.encoder(torch.from_numpy(np.transpose(xs, (0, 3, 1, 2)).copy()))
                return out.embedding.numpy(), out.log_covariance.numpy()

            def probabilities(z):
                return model.decoder(torch.from_numpy(z))["reconstruction"].numpy()

            extra["test_loss"] = round(negative_elbo(encode, probabilities, x_test), 3)
    return summarize(times, cpu_times, warmup_s, len(x_train), extra)


def main():
    spec = json.loads(sys.argv[1])
    spec.setdefault("train_size", 60_000)
    spec.setdefault("epochs", 1)
    runner = spec["runner"]
    if runner in ("pythae_trainer", "pythae_loop"):
        result = run_pythae(spec)
    elif runner in ("kerasvae", "keras_io"):
        result = run_keras(spec)
    else:
        raise ValueError(f"Unknown runner {runner!r}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
