#!/usr/bin/env python
"""Mutation testing of kerasvae's numerical core: does a planted bug fail a test?

Each mutant changes one expression of one module (a flipped operator, a changed
constant, a dropped term, min and max swapped, another axis, a swapped math
function, a negated comparison), in a temporary copy of the repository; only
the test files that cover that module run against it. A mutant is *killed*
when they fail (or time out), *survived* when they pass. The score is the
fraction killed; survivors are listed with their line, to be judged: a
survivor that changes a number the package computes is a missing test, one
that cannot change any result (an equivalent mutant) is not.

Mutants are generated from the AST (validation code that only raises errors,
strings and docstrings are left alone), deduplicated, and a fixed-seed sample
of at most `--max-mutants` is run, spread over the modules. The last measured
score and the verdict on every survivor: tests/MUTATION.md.

Usage:

```bash
.venv/bin/python scripts/mutation_test.py                 # sample of 60, report
.venv/bin/python scripts/mutation_test.py --list          # every candidate mutant
.venv/bin/python scripts/mutation_test.py --modules kerasvae/divergences.py --max-mutants 10
.venv/bin/python scripts/mutation_test.py --output run.json       # then, after adding tests:
.venv/bin/python scripts/mutation_test.py --rerun-survivors run.json
```
"""

import argparse
import ast
import copy
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Tests written for the survivors of earlier runs (tests/MUTATION.md).
SURVIVORS = "tests/test_mutation_survivors.py"

# module -> (pytest arguments, Keras backend). Fast, sharp test files first:
# pytest stops at the first failure (-x).
TARGETS = {
    "kerasvae/divergences.py": (
        ["tests/test_divergences_precision.py", "tests/test_divergences.py", SURVIVORS],
        "tensorflow",
    ),
    "kerasvae/likelihoods.py": (
        ["tests/test_likelihoods.py", "tests/test_discretized_logistic.py", "tests/test_estimators_exact.py",
         SURVIVORS],
        "tensorflow",
    ),
    "kerasvae/evaluation.py": (
        ["tests/test_estimators_exact.py", "tests/test_evaluation.py", SURVIVORS],
        "tensorflow",
    ),
    "kerasvae/layers/sampling.py": (
        ["tests/layers/test_sampling.py", "tests/test_estimators_exact.py", "tests/test_backend_equivalence.py",
         SURVIVORS],
        "tensorflow",
    ),
    "kerasvae/training/tensorflow.py": (
        ["tests/test_backend_equivalence.py", "tests/models/test_vae.py", SURVIVORS, "-k",
         "equivalence or reference or fresh_noise or weighted or mixed_precision or beta_weights"
         " or multi_worker"],
        "tensorflow",
    ),
    "kerasvae/export.py": (
        ["tests/test_export.py", "tests/test_properties_export.py", "tests/test_export_safety.py", SURVIVORS,
         # A mixture prior's export (sample_seeded's uniform stream).
         "tests/test_zoo.py::test_every_preset_trains_round_trips_and_exports[vampprior_mlp]"],
        "tensorflow",
    ),
    "kerasvae/training/jax.py": (
        ["tests/test_backend_equivalence.py", "tests/models/test_vae.py", "-k",
         "equivalence or reference or fresh_noise or weighted or mixed_precision or beta_weights"],
        "jax",
    ),
}

SWAPPED_OPERATORS = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.Pow: ast.Mult,
}
SWAPPED_COMPARISONS = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
}
SWAPPED_FUNCTIONS = {
    "maximum": "minimum", "minimum": "maximum", "max": "min", "min": "max",
    "exp": "expm1", "expm1": "exp", "log": "log1p", "log1p": "log",
    "sum": "mean", "mean": "sum", "square": "abs", "logsumexp": "max",
    "softplus": "relu", "sigmoid": "tanh",
}


def _mutated_constant(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float):
        table = {0.5: 1.0, 1.0: 0.5, 2.0: 1.0, 0.0: 1.0}
    else:
        table = {0: 1, 1: 2, 2: 1, -1: 0}
    return table.get(value, value * 2)


def _calls_only_raise(node):
    """`if <check>: raise ...` blocks: validation, not math."""
    return isinstance(node, ast.If) and all(isinstance(s, ast.Raise) for s in node.body)


def _skipped_nodes(tree):
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Raise, ast.Assert, ast.JoinedStr)) or _calls_only_raise(node):
            skipped.update(id(n) for n in ast.walk(node))
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Module)) and ast.get_docstring(node):
            skipped.update(id(n) for n in ast.walk(node.body[0]))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("isinstance", "hasattr", "getattr"):
            skipped.update(id(n) for n in ast.walk(node))
    return skipped


def _mutations(node):
    """(description, new node) pairs for one AST node."""
    out = []
    if isinstance(node, ast.BinOp):
        swapped = SWAPPED_OPERATORS.get(type(node.op))
        if swapped:
            new = copy.deepcopy(node)
            new.op = swapped()
            out.append((f"{type(node.op).__name__} -> {swapped.__name__}", new))
        if isinstance(node.op, (ast.Add, ast.Sub)):
            out.append(("drop the right term", copy.deepcopy(node.left)))
            if isinstance(node.op, ast.Add):
                out.append(("drop the left term", copy.deepcopy(node.right)))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        out.append(("drop a unary minus", copy.deepcopy(node.operand)))
    elif isinstance(node, ast.Constant):
        value = _mutated_constant(node.value)
        if value is not None:
            out.append((f"constant {node.value!r} -> {value!r}", ast.Constant(value)))
    elif isinstance(node, ast.Compare) and len(node.ops) == 1:
        swapped = SWAPPED_COMPARISONS.get(type(node.ops[0]))
        if swapped:
            new = copy.deepcopy(node)
            new.ops = [swapped()]
            out.append((f"{type(node.ops[0]).__name__} -> {swapped.__name__}", new))
        if isinstance(node.ops[0], (ast.Lt, ast.Gt, ast.LtE, ast.GtE)):
            flipped = {ast.Lt: ast.Gt, ast.Gt: ast.Lt, ast.LtE: ast.GtE, ast.GtE: ast.LtE}[type(node.ops[0])]
            new = copy.deepcopy(node)
            new.ops = [flipped()]
            out.append((f"{type(node.ops[0]).__name__} -> {flipped.__name__}", new))
    elif isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name in SWAPPED_FUNCTIONS:
            new = copy.deepcopy(node)
            if isinstance(func, ast.Attribute):
                new.func.attr = SWAPPED_FUNCTIONS[name]
            else:
                new.func.id = SWAPPED_FUNCTIONS[name]
            out.append((f"{name}() -> {SWAPPED_FUNCTIONS[name]}()", new))
        for i, keyword in enumerate(node.keywords):
            if keyword.arg == "axis":
                new = copy.deepcopy(node)
                current = ast.unparse(keyword.value)
                replacement = "0" if current != "0" else "-1"
                new.keywords[i].value = ast.parse(replacement, mode="eval").body
                out.append((f"axis={current} -> axis={replacement}", new))
            if keyword.arg in ("training", "deterministic", "lower") and isinstance(keyword.value, ast.Constant):
                new = copy.deepcopy(node)
                new.keywords[i].value = ast.Constant(not keyword.value.value)
                out.append((f"{keyword.arg}={keyword.value.value} -> {not keyword.value.value}", new))
    return out


def candidate_mutants(path):
    """Every mutant of one file: dicts with line, description and new source."""
    with open(os.path.join(REPO, path)) as f:
        source = f.read()
    tree = ast.parse(source)
    skipped = _skipped_nodes(tree)
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line.encode("utf-8")))
    data = source.encode("utf-8")
    mutants, seen = [], set()
    for node in ast.walk(tree):
        if id(node) in skipped or not hasattr(node, "end_lineno"):
            continue
        start = offsets[node.lineno - 1] + node.col_offset
        end = offsets[node.end_lineno - 1] + node.end_col_offset
        for description, new in _mutations(node):
            text = ast.unparse(ast.fix_missing_locations(new))
            mutated = (data[:start] + f"({text})".encode("utf-8") + data[end:]).decode("utf-8")
            try:
                compile(mutated, path, "exec")
            except SyntaxError:
                continue
            if mutated == source or mutated in seen:
                continue
            seen.add(mutated)
            original = data[start:end].decode("utf-8")
            mutants.append({
                "module": path, "line": node.lineno, "column": node.col_offset, "description": description,
                "original": original if len(original) < 90 else original[:87] + "...",
                "mutated_expression": text if len(text) < 90 else text[:87] + "...",
                "source": mutated,
            })
    return mutants


def sample(mutants_by_module, total, seed):
    """A fixed-seed sample, spread over the modules in proportion, at least 3 each."""
    rng = random.Random(seed)
    count = sum(len(m) for m in mutants_by_module.values())
    chosen = []
    for module, mutants in mutants_by_module.items():
        share = max(3, round(total * len(mutants) / max(count, 1)))
        chosen.extend(rng.sample(mutants, min(share, len(mutants))))
    rng.shuffle(chosen)
    return chosen[:total] if len(chosen) > total else chosen


def make_workspace():
    workspace = tempfile.mkdtemp(prefix="kerasvae-mutants-")
    for name in ("kerasvae", "tests"):
        shutil.copytree(
            os.path.join(REPO, name), os.path.join(workspace, name),
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
    for name in ("pytest.ini", "setup.py", "README.md"):
        shutil.copy(os.path.join(REPO, name), workspace)
    # Tests that read savedmodels/ are not run here; the folder is not copied.
    return workspace


def run_tests(workspace, module, timeout, cwd=None):
    args, backend = TARGETS[module]
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", PYTHONDONTWRITEBYTECODE="1")
    env["PYTHONPATH"] = workspace
    # -P: the working directory is not put on sys.path; the copy comes first.
    args = [a if a.startswith("-") or not a.startswith("tests/") else os.path.join(workspace, a) for a in args]
    command = [
        sys.executable, "-P", "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
        "-c", os.path.join(workspace, "pytest.ini"), "--rootdir", workspace, *args,
    ]
    start = time.time()
    try:
        result = subprocess.run(
            command, cwd=cwd or workspace, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return "timeout", time.time() - start, ""
    output = result.stdout + result.stderr
    lines = output.strip().splitlines()
    # The failing test (pytest -x stops at the first) says which test killed it.
    failed = [line for line in lines if line.startswith(("FAILED ", "ERROR "))]
    tail = (failed[:1] + lines[-1:]) if result.returncode else []
    if result.returncode and _environment_broken(output):
        return "env-error", time.time() - start, " ".join(tail)
    return ("killed" if result.returncode else "survived"), time.time() - start, " ".join(tail)


def _environment_broken(output):
    """A failure to import a third-party package says nothing about the mutant."""
    for line in output.splitlines():
        if "ModuleNotFoundError: No module named" in line and "kerasvae" not in line:
            return True
    return False


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modules", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--max-mutants", type=int, default=60)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per test run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--list", action="store_true", help="list the candidates and exit")
    parser.add_argument("--output", help="write the results as JSON here")
    parser.add_argument("--cwd", help="run the tests from this folder (default: the temporary copy)")
    parser.add_argument("--rerun-survivors", metavar="JSON", help="run only the survivors of an earlier --output")
    parser.add_argument(
        "--resume", action="store_true",
        help="keep the results already in --output (written after every mutant) and run the rest",
    )
    args = parser.parse_args(argv)

    by_module = {module: candidate_mutants(module) for module in args.modules}
    if args.list:
        for module, mutants in by_module.items():
            print(f"{module}: {len(mutants)} candidates")
            for m in mutants:
                print(f"  line {m['line']:4d}  {m['description']:28s} {m['original']}  ->  {m['mutated_expression']}")
        return 0
    if args.rerun_survivors:
        with open(args.rerun_survivors) as f:
            earlier = [r for r in json.load(f)["results"] if r["status"] == "survived"]
        # Two mutants of one line can read alike ("constant 1 -> 2" twice): the
        # column tells them apart (results written before it was recorded match all).
        key4 = lambda m: (m["module"], m["line"], m["description"], m["mutated_expression"])  # noqa: E731
        legacy = {key4(r) for r in earlier if "column" not in r}
        columns = {key4(r) + (r["column"],) for r in earlier if "column" in r}
        chosen = [
            m for mutants in by_module.values() for m in mutants
            if key4(m) in legacy or key4(m) + (m["column"],) in columns
        ]
        args.modules = sorted({m["module"] for m in chosen}, key=list(TARGETS).index)
    else:
        chosen = sample(by_module, args.max_mutants, args.seed)
    print(f"{sum(len(m) for m in by_module.values())} candidate mutants; running {len(chosen)} (seed {args.seed})")

    key = lambda m: (m["module"], m["line"], m["description"], m["mutated_expression"])  # noqa: E731
    column_key = lambda m: key(m) + (m["column"],)  # noqa: E731
    results = []
    if args.resume and args.output and os.path.isfile(args.output):
        with open(args.output) as f:
            results = [r for r in json.load(f)["results"] if r["status"] != "env-error"]
        done = {column_key(r) for r in results if "column" in r}
        legacy = {key(r) for r in results if "column" not in r}  # written before the column was
        print(f"resuming: {len(results)} mutants already measured")
        remaining = [m for m in chosen if column_key(m) not in done and key(m) not in legacy]
    else:
        remaining = chosen

    def save():
        if args.output:
            with open(args.output, "w") as f:
                json.dump({"seed": args.seed, "results": results}, f, indent=2)

    workspace = make_workspace()
    try:
        # The copy, not an installed kerasvae, must be the one the tests import.
        found = subprocess.run(
            [sys.executable, "-c", "import kerasvae; print(kerasvae.__file__)"],
            cwd=args.cwd or workspace, env=dict(os.environ, PYTHONPATH=workspace), capture_output=True, text=True,
        ).stdout.strip()
        if not found.startswith(workspace):
            print(f"the tests would import {found!r}, not the mutated copy in {workspace}")
            return 2
        for module in args.modules:  # the unmutated code must pass, or nothing is measured
            status, seconds, tail = run_tests(workspace, module, args.timeout, args.cwd)
            if status != "survived":
                print(f"baseline tests of {module} do not pass ({status}): {tail}")
                return 2
            print(f"baseline {module}: tests pass in {seconds:.0f} s")
        for i, mutant in enumerate(remaining, len(chosen) - len(remaining) + 1):
            target = os.path.join(workspace, mutant["module"])
            with open(target) as f:
                original = f.read()
            with open(target, "w") as f:
                f.write(mutant["source"])
            try:
                status, seconds, tail = run_tests(workspace, mutant["module"], args.timeout, args.cwd)
            finally:
                with open(target, "w") as f:
                    f.write(original)
            record = {k: v for k, v in mutant.items() if k != "source"}
            record.update(status=status, seconds=round(seconds, 1), failure=tail)
            results.append(record)
            save()
            print(
                f"[{i:2d}/{len(chosen)}] {status:8s} {seconds:5.0f} s  {mutant['module']}:{mutant['line']}  "
                f"{mutant['description']}: {mutant['original']} -> {mutant['mutated_expression']}",
                flush=True,
            )
    finally:
        shutil.rmtree(workspace, ignore_errors=True)

    broken = [r for r in results if r["status"] == "env-error"]
    if broken:
        print(f"\n{len(broken)} mutant(s) not measured: the environment could not import a package")
    results_scored = [r for r in results if r["status"] != "env-error"]
    killed = sum(r["status"] in ("killed", "timeout") for r in results_scored)
    print(
        f"\nMutation score: {killed}/{len(results_scored)} killed "
        f"({100.0 * killed / max(len(results_scored), 1):.0f}%)"
    )
    for module in args.modules:
        mine = [r for r in results_scored if r["module"] == module]
        if mine:
            k = sum(r["status"] in ("killed", "timeout") for r in mine)
            print(f"  {module:34s} {k}/{len(mine)}")
    survivors = [r for r in results if r["status"] == "survived"]
    if survivors:
        print("Survivors:")
        for r in survivors:
            print(f"  {r['module']}:{r['line']}  {r['description']}: {r['original']} -> {r['mutated_expression']}")
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
