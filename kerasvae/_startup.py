"""What the command line does before Keras or TensorFlow is imported.

`python -m kerasvae ...` and the `kerasvae` script import the package (and so
Keras, and with it TensorFlow) before `kerasvae.cli.main` runs, and both
choices below must be made before that import:

- `--backend jax|tensorflow` sets `KERAS_BACKEND`; Keras reads it once, on
  import.
- Unless `--verbose` is given, TensorFlow's start-up chatter is kept off the
  terminal. Most of it ("Could not find cuda drivers", "cpu_feature_guard")
  is written by C++ code before absl logging is initialized, so
  `TF_CPP_MIN_LOG_LEVEL` does not reach it: TensorFlow is imported with the
  process's stderr (file descriptor 2) pointed at a temporary file, which is
  dropped when the import succeeds and replayed when it fails. Later C++
  logging is filtered by `TF_CPP_MIN_LOG_LEVEL=3`, Python-side logging by
  absl's and TensorFlow's loggers set to ERROR.

`kerasvae/__init__.py` calls `prepare_command_line()` first thing; it does
nothing unless this process is the command line, so `import kerasvae` in a
program or a notebook changes no setting.
"""

import importlib.util
import os
import sys
import tempfile

PROGRAM = "kerasvae"
BACKENDS = ("tensorflow", "jax")

# The backend that trains each zoo preset fastest on the 2-core CPU machine,
# measured with benchmarks/backend_step_time.py (benchmarks/RESULTS.md and the
# README's Benchmarks section). `kerasvae train` uses it unless `--backend` or
# KERAS_BACKEND says otherwise. Dense networks train faster on JAX or as fast
# (two runs on 2026-11-29 with stall-free input: JAX 1.2-1.4x for the gated
# VAE, VampPrior and HVAE, a tie within the noise for beta, conditional and
# IWAE); every preset with convolutions stays on TensorFlow (XLA's CPU
# convolutions were 4-7x slower on `conv_fashion_mnist`), as do presets not
# measured.
chosen_backend = None  # set by `prepare` when it picked the backend itself
TRAIN_PRESET = "mlp_fashion_mnist"  # `kerasvae train`'s default preset
FASTEST_TRAINING_BACKEND = {
    "mlp_fashion_mnist": "jax",  # 1.99x TF
    "mlp_full_cov_fashion_mnist": "jax",  # 1.59x
    "vae_gated_mlp": "jax",  # 1.44-1.48x
    "beta_vae_mlp": "jax",  # 1.29-1.37x
    "cvae_mlp": "jax",  # 1.22-1.32x
    "iwae_mlp": "jax",  # 2.16-2.27x
    "vampprior_mlp": "jax",  # 1.29-2.17x (TF was 1.14x faster before its mixture became two matmuls)
    "hvae_mlp": "jax",  # 1.27-1.37x
}


def is_command_line():
    """Whether this process runs `kerasvae ...` or `python -m kerasvae ...`."""
    if os.path.basename(sys.argv[0] if sys.argv else "") == PROGRAM:
        return True  # the console script
    original = list(getattr(sys, "orig_argv", []))
    i = 1
    while i < len(original):
        arg = original[i]
        if arg == "-m":
            return i + 1 < len(original) and original[i + 1] == PROGRAM
        if arg.startswith("-m"):
            return arg[2:] == PROGRAM
        if arg.startswith("-c") or not arg.startswith("-"):
            return False  # `python -c`, a script, or another program
        i += 2 if arg in ("-W", "-X") else 1  # the options of python that take a value
    return False


def _before_separator(argv):
    """The arguments before a `--` (what follows it is not an option)."""
    return argv[: argv.index("--")] if "--" in argv else list(argv)


def _option_value(argv, option):
    """The last value given to `option` (`--name value` or `--name=value`), or None."""
    value = None
    for i, arg in enumerate(argv):
        if arg == option and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(option + "="):
            value = arg.split("=", 1)[1]
    return value


def read_options(argv):
    """`(backend, verbose)` from the command line arguments, before argparse sees them."""
    argv = _before_separator(argv)
    return _option_value(argv, "--backend"), "--verbose" in argv


def import_tensorflow_quietly():
    """Imports TensorFlow with file descriptor 2 sent to a temporary file.

    The captured text is written back to stderr if the import fails.
    """
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            sys.stderr.write(capture.read().decode("utf-8", "replace"))
            sys.stderr.flush()
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    quiet_python_logging()


def quiet_python_logging():
    import logging

    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def _verb_and_preset(argv):
    """The verb (first argument that is not an option or `--backend`'s value) and `--preset`'s value."""
    argv = _before_separator(argv)
    verb = next(
        (arg for i, arg in enumerate(argv) if not arg.startswith("-") and (i == 0 or argv[i - 1] != "--backend")),
        None,
    )
    return verb, _option_value(argv, "--preset") or TRAIN_PRESET


def default_backend(argv, environ=None):
    """The backend `kerasvae` picks when neither `--backend` nor KERAS_BACKEND is given:
    for `train`, the preset's fastest (`FASTEST_TRAINING_BACKEND`), else None
    (Keras's own default, TensorFlow)."""
    environ = os.environ if environ is None else environ
    backend, _ = read_options(argv)
    if backend is not None or environ.get("KERAS_BACKEND"):
        return None
    verb, preset = _verb_and_preset(argv)
    if verb != "train":
        return None
    backend = FASTEST_TRAINING_BACKEND.get(preset, "tensorflow")
    if backend == "jax" and importlib.util.find_spec("jax") is None:
        return "tensorflow"  # JAX is an extra (`pip install kerasvae[jax]`)
    return backend


def prepare(argv, verbose=None):
    """Applies `--backend` (or a preset's fastest backend for `train`) and, unless
    `--verbose`, silences TensorFlow's start-up."""
    global chosen_backend
    backend, flag = read_options(argv)
    if backend is None:
        backend = chosen_backend = default_backend(argv)
    verbose = flag if verbose is None else verbose
    if backend in BACKENDS and "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = backend
    if verbose:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    try:
        import_tensorflow_quietly()
    except ImportError:
        pass  # TensorFlow missing: the verbs that need it say so


def prepare_command_line():
    if is_command_line():
        prepare(sys.argv[1:])
