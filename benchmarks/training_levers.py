"""Which settings make kerasvae's `compile()`/`fit()` faster, measured beside a baseline in the same run.

Each lever is a variant of the kerasvae run of compare_speed.py (same data, batch 128, Adam),
run in its own process, alternated with the other variants and the baseline over the repeats
(pythae's plain torch loop for the mlp case, the keras-io example for the conv case). Printed:
median samples/s, the ratio to the baseline and to kerasvae's default run on the same backend,
peak RSS, and the final training loss (a lever must not change results).

    .venv/bin/python benchmarks/training_levers.py --case mlp --backend tensorflow
    .venv/bin/python benchmarks/training_levers.py --case mlp --backend jax --levers default spe32 tfdata
    .venv/bin/python benchmarks/training_levers.py --list
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from compare_speed import PYTHAE_PYTHON, check_pythae, median_of, one_thread, run_alternated  # noqa: E402

# name: (spec overrides, environment overrides, what it is)
LEVERS = {
    "default": ({}, {}, "compile() and fit(x, batch_size=128) as a user writes them"),
    "spe8": ({"compile_kwargs": {"steps_per_execution": 8}}, {}, "steps_per_execution=8"),
    "spe32": ({"compile_kwargs": {"steps_per_execution": 32}}, {}, "steps_per_execution=32"),
    "spe128": ({"compile_kwargs": {"steps_per_execution": 128}}, {}, "steps_per_execution=128"),
    "jit": ({"compile_kwargs": {"jit_compile": True}}, {}, "jit_compile=True (XLA; TF's 'auto' is off on CPU)"),
    "jit_spe32": ({"compile_kwargs": {"jit_compile": True, "steps_per_execution": 32}}, {}, "jit_compile=True, steps_per_execution=32"),
    "nojit": ({"compile_kwargs": {"jit_compile": False}}, {}, "jit_compile=False"),
    "tfdata": ({"input": "tfdata"}, {}, "fit(kerasvae.data.make_dataset(x)) (shuffle, batch, prefetch) instead of NumPy"),
    "tfdata_jit_spe32": (
        {"input": "tfdata", "compile_kwargs": {"jit_compile": True, "steps_per_execution": 32}}, {},
        "tf.data input, jit_compile=True, steps_per_execution=32",
    ),
    "threads_2_1": ({"threads": [2, 1]}, {}, "tf.config.threading intra=2, inter=1"),
    "threads_1_1": ({"threads": [1, 1]}, {}, "tf.config.threading intra=1, inter=1"),
    "onednn_off": ({}, {"TF_ENABLE_ONEDNN_OPTS": "0"}, "TF_ENABLE_ONEDNN_OPTS=0"),
    "xla_1thread": ({}, {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"},
                    "XLA CPU single-threaded (XLA_FLAGS)"),
    "bf16": ({"policy": "mixed_bfloat16"}, {}, "keras.config.set_dtype_policy('mixed_bfloat16')"),
    "bf16_jit": ({"policy": "mixed_bfloat16", "compile_kwargs": {"jit_compile": True}}, {}, "mixed_bfloat16 with XLA"),
    "defaults": ({"defaults": True}, {}, "kerasvae.training.defaults.compile_defaults(model) applied"),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", choices=["mlp", "conv"], default="mlp")
    parser.add_argument("--backend", choices=["tensorflow", "jax"], default="tensorflow")
    parser.add_argument("--levers", nargs="+", default=None, help="names from --list (default: a backend's set)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-size", type=int, default=60_000)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--one-thread", action="store_true", help="limit every run to one compute thread")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    if args.list:
        for name, (_, _, what) in LEVERS.items():
            print(f"{name:18s} {what}")
        return
    if args.levers is None:
        args.levers = (
            ["default", "spe32", "jit", "jit_spe32", "tfdata", "tfdata_jit_spe32", "threads_2_1", "onednn_off"]
            if args.backend == "tensorflow"
            else ["default", "spe32", "tfdata", "xla_1thread", "nojit"]
        )
    unknown = [name for name in args.levers if name not in LEVERS]
    if unknown:
        parser.error(f"unknown lever(s) {unknown}; see --list")

    base = {"arch": args.case, "epochs": args.epochs, "train_size": args.train_size, "seed": 0,
            "eval": args.case == "conv"}
    rows = []
    if not args.no_baseline:
        if args.case == "mlp":
            check_pythae()
            rows.append(("baseline: pythae (torch loop)", dict(base, runner="pythae_loop"), None, PYTHAE_PYTHON, None))
        else:
            rows.append(("baseline: keras-io example (TF)", dict(base, runner="keras_io"), "tensorflow", None, None))
    for name in args.levers:
        overrides, env, _ = LEVERS[name]
        rows.append((name, dict(base, runner="kerasvae", **overrides), args.backend, None, env))
    if args.one_thread:
        rows = one_thread(rows)
    print(f"{args.case} on {args.backend}: {len(rows)} runs x {args.repeats} repeats, {args.train_size} images", flush=True)
    results = run_alternated(rows, args.repeats, log=lambda s: print(s, flush=True))

    medians = {label: median_of(rs, "samples_per_s") for label, rs in results.items()}
    cpu = {label: median_of(rs, "samples_per_cpu_s") for label, rs in results.items()}
    labels = [row[0] for row in rows]
    baseline = None if args.no_baseline else labels[0]
    default = next((label for label in labels if label.split(" [")[0] == "default"), None)

    def ratio(values, label, ref):
        return "-" if ref is None else f"{values[label] / values[ref]:.2f}x"

    print()
    print(f"| lever ({args.backend}) | samples/s | vs baseline | vs default | samples/CPU-s | vs baseline (CPU) "
          "| peak RSS MiB | train loss | test loss | load |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, rs in results.items():
        test = median_of(rs, "test_loss")
        train = median_of(rs, "train_loss")
        print(
            f"| {label} | {medians[label]:.0f} | {ratio(medians, label, baseline)} | "
            f"{ratio(medians, label, default)} | {cpu[label]:.0f} | {ratio(cpu, label, baseline)} | "
            f"{median_of(rs, 'peak_rss_mib'):.0f} | {'-' if train is None else f'{train:.2f}'} | "
            f"{'-' if test is None else f'{test:.2f}'} | {median_of(rs, 'load'):.1f} |"
        )


if __name__ == "__main__":
    main()
