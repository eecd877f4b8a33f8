"""Training speed of kerasvae beside pythae and the keras-io VAE example, in the same run.

Two cases, each on the 60k Fashion-MNIST training images (kerasvae.data), batch 128, Adam:

- mlp:  a 784-512-16 VAE (Bernoulli likelihood / binary cross-entropy). Baselines: pythae's VAE
        (PyTorch CPU, in benchmarks/.venv-pythae, made by setup_pythae.sh), run both by pythae's
        own trainer and by a plain PyTorch loop over its model (the fastest pythae run is the
        baseline of the ratio; --pythae-one-thread adds a 1-thread torch run). Ours: kerasvae.VAE with the same networks on Keras/TensorFlow
        and Keras/JAX, with default `compile()` and `fit(x, batch_size=128)`.
- conv: the keras-io example's architecture (benchmarks/keras_io_vae.py). Baseline: the
        example's own model (TensorFlow). Ours: kerasvae.VAE with the same networks on TF and
        JAX. Also the test negative ELBO after the same number of epochs (same estimator for
        every model: bench_child.negative_elbo).

Every run is a fresh process (bench_child.py); the runs of a repeat are alternated and their order
rotates between repeats, so that load from other processes falls on all of them alike. Printed:
median samples/s over the repeats (each run's figure is the median of its timed epochs, after a
warm-up fit on three batches that holds tracing and compilation), the ratio to the baseline, the
peak resident memory of the run's process, and the 1-minute load average seen during the runs.

    .venv/bin/python benchmarks/compare_speed.py    # mlp on 60k images, conv on 12.8k, 3 repeats
    .venv/bin/python benchmarks/compare_speed.py --case mlp --repeats 1 --train-size 20000   # quick
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PYTHAE_PYTHON = os.path.join(HERE, ".venv-pythae", "bin", "python")
CHILD = os.path.join(HERE, "bench_child.py")


def run_child(spec, backend=None, python=None, env_extra=None, timeout=1800):
    """Runs one bench_child.py spec in a fresh process; returns its JSON result plus load averages."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if backend:
        env["KERAS_BACKEND"] = backend
    env.update(env_extra or {})
    load_before = os.getloadavg()[0]
    proc = subprocess.run(
        [python or sys.executable, CHILD, json.dumps(spec)],
        env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"run {spec} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["load"] = round((load_before + os.getloadavg()[0]) / 2, 2)
    return result


ONE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}


def one_thread(rows):
    """The same runs limited to one compute thread each (torch, TF intra/inter-op, XLA).

    On a machine shared with other work, single-threaded runs lose no time to
    thread pools waiting for a descheduled worker, and their samples per
    CPU-second hardly depend on the load: the steadier figure for comparing
    levers and frameworks, but not the 2-core default a user gets.
    """
    out = []
    for label, spec, backend, python, env in rows:
        env = dict(env or {})
        for key, value in ONE_THREAD_ENV.items():
            env[key] = f"{env[key]} {value}" if key == "XLA_FLAGS" and key in env else env.get(key, value)
        out.append((f"{label} [1 thread]", dict(spec, threads=[1, 1]), backend, python, env))
    return out


def check_pythae():
    if not os.path.exists(PYTHAE_PYTHON):
        sys.exit(
            f"The pythae environment is missing ({PYTHAE_PYTHON}). Make it once with\n"
            "    bash benchmarks/setup_pythae.sh\nor leave pythae out with --no-pythae."
        )


def contenders(case, args):
    """(label, spec, backend, python, env) of each run of a case; the first ones are baselines."""
    common = {"train_size": args.train_size, "seed": 0}
    kerasvae = {"runner": "kerasvae"}
    if args.compile:
        kerasvae["compile_kwargs"] = json.loads(args.compile)
    ours = [("kerasvae, TensorFlow", dict(kerasvae), "tensorflow")]
    if args.with_defaults:  # JAX has no defaults to apply (training/defaults.py)
        ours.append(("kerasvae + training.defaults, TensorFlow", dict(kerasvae, defaults=True), "tensorflow"))
    ours.append(("kerasvae, JAX", dict(kerasvae), "jax"))
    if case == "mlp":
        mlp = dict(common, arch="mlp", epochs=args.epochs)
        rows = []
        if not args.no_pythae:
            check_pythae()
            rows += [
                ("pythae (plain torch loop)", dict(mlp, runner="pythae_loop"), None, PYTHAE_PYTHON, None),
                ("pythae (its BaseTrainer)", dict(mlp, runner="pythae_trainer"), None, PYTHAE_PYTHON, None),
            ]
            if args.pythae_one_thread:
                rows.append(("pythae (plain torch loop, 1 thread)", dict(mlp, runner="pythae_loop", threads=[1, 1]),
                             None, PYTHAE_PYTHON, None))
        return rows + [(label, dict(mlp, **spec), backend, None, None) for label, spec, backend in ours]
    conv = dict(common, arch="conv", epochs=args.conv_epochs, eval=True, train_size=args.conv_train_size)
    return [("keras-io example, TensorFlow", dict(conv, runner="keras_io"), "tensorflow", None, None)] + [
        (label, dict(conv, **spec), backend, None, None) for label, spec, backend in ours
    ]


def run_alternated(rows, repeats, log=print):
    """Runs every row once per repeat, rotating the order; returns {label: [results]}."""
    results = {label: [] for label, *_ in rows}
    for r in range(repeats):
        shift = r % len(rows)
        for label, spec, backend, python, env in rows[shift:] + rows[:shift]:
            start = time.perf_counter()
            res = run_child(spec, backend=backend, python=python, env_extra=env)
            results[label].append(res)
            log(
                f"  repeat {r + 1}/{repeats} {label:44s} {res['samples_per_s']:7.0f} samples/s "
                f"{res['samples_per_cpu_s']:7.0f} per CPU-s (load {res['load']:.1f}, {time.perf_counter() - start:.0f} s)",
            )
    return results


def median_of(results, key):
    values = [r[key] for r in results if r.get(key) is not None]
    return statistics.median(values) if values else None


def table(results, baseline_labels, title):
    """Markdown table: median samples/s, range, ratio to the best baseline, peak RSS, losses."""
    medians = {label: median_of(rs, "samples_per_s") for label, rs in results.items()}
    base_label = max(baseline_labels, key=lambda label: medians[label])
    base = medians[base_label]
    cpu = {label: median_of(rs, "samples_per_cpu_s") for label, rs in results.items()}
    base_cpu = max(cpu[label] for label in baseline_labels)
    lines = [
        f"{title} (ratio to: {base_label})",
        "",
        "| run | samples/s (median) | min - max | ratio | samples/CPU-s | ratio (CPU) | peak RSS MiB | warm-up s | train loss | test loss | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, rs in results.items():
        speeds = [r["samples_per_s"] for r in rs]
        test = median_of(rs, "test_loss")
        train = median_of(rs, "train_loss")
        lines.append(
            f"| {label} | {medians[label]:.0f} | {min(speeds):.0f} - {max(speeds):.0f} | "
            f"{medians[label] / base:.2f}x | {cpu[label]:.0f} | {cpu[label] / base_cpu:.2f}x | "
            f"{median_of(rs, 'peak_rss_mib'):.0f} | "
            f"{median_of(rs, 'warmup_s'):.1f} | {'-' if train is None else f'{train:.2f}'} | "
            f"{'-' if test is None else f'{test:.2f}'} | {median_of(rs, 'load'):.1f} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", nargs="+", choices=["mlp", "conv"], default=["mlp", "conv"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per run, mlp case")
    parser.add_argument("--conv-epochs", type=int, default=1, help="timed (and trained) epochs, conv case")
    parser.add_argument("--train-size", type=int, default=60_000, help="first n training images, mlp case")
    parser.add_argument("--conv-train-size", type=int, default=12_800, help="first n training images, conv case")
    parser.add_argument("--no-pythae", action="store_true", help="leave the pythae runs out")
    parser.add_argument(
        "--pythae-one-thread", action="store_true",
        help="add a pythae run with torch.set_num_threads(1) (OpenMP's 2 threads suffer most on a loaded machine)",
    )
    parser.add_argument("--compile", default=None, help="JSON dict of extra kerasvae compile() kwargs")
    parser.add_argument(
        "--with-defaults", action="store_true",
        help="add a kerasvae TF run with kerasvae.training.defaults applied (what VAE.compile does once it is wired in)",
    )
    parser.add_argument("--one-thread", action="store_true", help="limit every run to one compute thread (see one_thread)")
    parser.add_argument("--json", default=None, help="also write the raw results to this file")
    args = parser.parse_args()
    if args.repeats < 1 or min(args.train_size, args.conv_train_size) < 1000:
        parser.error(
            "need --repeats >= 1 and train sizes >= 1000. Received: "
            f"{args.repeats}, {args.train_size}, {args.conv_train_size}"
        )

    raw = {}
    for case in args.case:
        rows = contenders(case, args)
        if args.one_thread:
            rows = one_thread(rows)
        print(f"case {case}: {len(rows)} runs x {args.repeats} repeats", flush=True)
        results = run_alternated(rows, args.repeats, log=lambda s: print(s, flush=True))
        baselines = [label for label, *_ in rows if not label.startswith("kerasvae")]
        if not baselines:  # --no-pythae: ratios to kerasvae on TF
            baselines = [rows[0][0]]
        print()
        epochs, size = (args.epochs, args.train_size) if case == "mlp" else (args.conv_epochs, args.conv_train_size)
        print(table(results, baselines, f"{case}: batch 128, {size} images, {epochs} timed epoch(s)"))
        print()
        raw[case] = results
    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1)


if __name__ == "__main__":
    main()
