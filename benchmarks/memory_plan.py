"""Memory and FLOP plan of a recipe's train step, measured by the compiler.

Ahead-of-time compiles the JAX train step of a recipe at a per-device batch
on this host, without running it and without allocating weights, and writes
XLA's own numbers:

    python benchmarks/memory_plan.py --recipe recipes/tips_b14_webli.py \
        --per-device-batch 128 [--distribution model_parallel:4] [--remat] \
        [--set objective.num_prototypes=1024 ...] --json plan.json

What is compiled: the Keras JAX trainer's stateless `train_step(state,
data)` (forward, backward and optimizer update of `TIPSPretrainer`, as
`model.fit` runs it: jitted with the state donated), of the pretrainer the
training loop builds from the recipe (`loop.build_pretrainer`). The model is
built inside a `keras.StatelessScope` that leaves its variables
uninitialised, and the state and batch are `jax.ShapeDtypeStruct`s placed
with the distribution's layouts, so nothing of the model's size is
allocated. (Building the EMA teacher copies the student's values once,
which does materialise the image tower's initial weights transiently.)

Devices and batch: "per-device batch" is the global batch over the device
count. Without a distribution or with `data_parallel` the step compiles on
one device at the per-device batch: every data-parallel device runs that
same program on its slice (weights replicated), plus an all-reduce of the
gradients that XLA does in their buffers. `model_parallel:K` compiles on K
virtual CPU devices (`--xla_force_host_platform_device_count`), one model
replica, with a global batch of K x the per-device batch; the numbers are
those of one device's partitioned program. `--devices D` compiles the
recipe's distribution over D devices instead.

The plan reads no data: a recipe that names no data files or tokenizer
(the paper recipe) is given placeholders, and the token ids range over the
released tokenizer's 32,000 (`common.recipe_for_random_batches`;
`--vocabulary-size` to change). `--set` passes recipe overrides (for
instance an objective option, to compare its memory with the default's).

Reported (the JSON, per device):

* `peak_bytes` = arguments + outputs + temporaries - aliased bytes of
  `compiled.memory_analysis()`: everything the step holds at once on one
  device. Arguments are the state (weights, teacher, optimizer moments,
  metrics) and the batch; the outputs are the new state and the logs; the
  state is donated, so the outputs that reuse its buffers (the aliased
  bytes) are counted once. Temporaries are the activations and every other
  intermediate buffer of XLA's buffer assignment. Generated code is left
  out (it is not device memory on an accelerator).
* `flops_per_step`: `compiled.cost_analysis()["flops"]`, the FLOPs XLA
  counts in this device's program (forward, backward and optimizer).

This is XLA's *CPU* compilation. An accelerator's compiler fuses, schedules
and rematerialises differently (and has fused attention kernels), so the
bytes are an estimate of the accelerator's plan, not its measurement; run
this script on the accelerator's host with its JAX backend for that one's.

`--table OUTPUT` (re)writes the RESULTS.md section of the largest batch that
fits 80 GB and 141 GB for B/14, L/14 and g/14, each plan in a fresh process
(see `table`).
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

REPOSITORY_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
B14_RECIPE = os.path.join(REPOSITORY_ROOT, "recipes", "tips_b14_webli.py")
GB = 10**9


def device_count_for(distribution, devices=None):
    """The virtual devices a plan compiles on (see the module docstring)."""
    if devices is not None:
        return devices
    if distribution and distribution.startswith("model_parallel:"):
        size = distribution.split(":", 1)[1]
        if not size.isdigit() or int(size) < 1:
            raise ValueError(
                "--distribution model_parallel:K needs K, the devices of one "
                f"model replica, as a positive int; received {distribution!r}."
            )
        return int(size)
    return 1


def _abstract(variables, distribution):
    """`jax.ShapeDtypeStruct`s of `variables`, placed as the distribution
    would place them (the values are never read)."""
    import jax

    specs = []
    for variable in variables:
        sharding = None
        if distribution is not None:
            sharding = distribution.get_variable_layout(variable).backend_layout
        specs.append(
            jax.ShapeDtypeStruct(variable.shape, variable.dtype, sharding=sharding)
        )
    return specs


def plan(
    recipe_path,
    per_device_batch,
    distribution=None,
    remat=False,
    overrides=(),
    vocabulary_size=None,
    progress=print,
):
    """Compiles the recipe's train step and returns XLA's plan (a dict; see
    the module docstring). JAX must already see the devices the plan needs
    (`device_count_for`); `main` sets that up before JAX starts."""
    import jax
    import keras

    from benchmarks import common
    from benchmarks import train_step
    from keras_tips.training import loop

    if keras.backend.backend() != "jax":
        raise ValueError(
            "The memory plan compiles the JAX train step: set KERAS_BACKEND=jax."
        )
    if int(per_device_batch) < 1:
        raise ValueError(f"--per-device-batch must be >= 1; received {per_device_batch}.")
    spec = distribution or "none"
    devices = len(keras.distribution.list_devices())
    global_batch = int(per_device_batch) * devices
    recipe, vocabulary_size = common.recipe_for_random_batches(
        recipe_path,
        list(overrides)
        + [f"train.distribution={spec!r}", f"data.pipeline.batch_size={global_batch}"],
        vocabulary_size,
    )
    shape = train_step.batch_shape(recipe, vocabulary_size)
    dist = loop.make_distribution(spec)
    if dist is None and devices > 1:
        raise ValueError(
            f"{devices} devices but no distribution: pass --distribution "
            "data_parallel or model_parallel:K."
        )
    result = {
        "recipe": os.path.relpath(os.path.abspath(recipe_path), REPOSITORY_ROOT),
        "overrides": list(overrides),
        "per_device_batch": int(per_device_batch),
        "global_batch": global_batch,
        "devices": devices,
        "distribution": spec,
        "remat": bool(remat),
        "dtype": recipe.model.dtype,
        "vocabulary_size": vocabulary_size,
        "platform": jax.devices()[0].platform,
    }
    start = time.perf_counter()
    with dist.scope() if dist is not None else contextlib.nullcontext():
        progress(f"building {recipe.name} (abstract weights)")
        optimizer = loop.build_recipe_optimizer(recipe)
        with keras.StatelessScope(initialize_variables=False):
            pretrainer = train_step.build_pretrainer(recipe, shape, remat, optimizer)
            pretrainer.optimizer.build(pretrainer.trainable_variables)
        # Every variable exists once TIPSPretrainer is constructed (it builds
        # its towers and heads, and copies them for the teacher); `fit` would
        # mark it built by tracing a batch, which this plan compiles instead.
        pretrainer.built = True
        state = tuple(
            _abstract(variables, dist)
            for variables in (
                pretrainer.trainable_variables,
                pretrainer.non_trainable_variables,
                pretrainer.optimizer.variables,
                pretrainer.metrics_variables,
            )
        )
        result["parameters"] = {
            "trainable": sum(_size(v) for v in pretrainer.trainable_variables),
            "non_trainable": sum(
                _size(v) for v in pretrainer.non_trainable_variables
            ),
            "optimizer": sum(_size(v) for v in pretrainer.optimizer.variables),
        }
        batch = {}
        for key, value in train_step.random_batch(shape).items():
            sharding = None
            if dist is not None:
                sharding = dist.get_data_layout(value.shape).backend_layout
            batch[key] = jax.ShapeDtypeStruct(value.shape, value.dtype, sharding=sharding)
        out_shardings = None
        if dist is not None:
            out_shardings = (None, tuple(
                [s.sharding for s in specs] for specs in state
            ))
        step = jax.jit(
            pretrainer.train_step, donate_argnums=0, out_shardings=out_shardings
        )
        progress(
            f"compiling the train step: per-device batch {per_device_batch}, "
            f"{devices} device(s), {spec}, remat={bool(remat)}"
        )
        compiled = step.lower(state, (batch,)).compile()
    result["compile_seconds"] = time.perf_counter() - start
    memory = compiled.memory_analysis()
    fields = (
        "argument_size_in_bytes",
        "output_size_in_bytes",
        "alias_size_in_bytes",
        "temp_size_in_bytes",
        "generated_code_size_in_bytes",
    )
    result["memory_analysis"] = {f: int(getattr(memory, f)) for f in fields}
    m = result["memory_analysis"]
    result["peak_bytes"] = (
        m["argument_size_in_bytes"]
        + m["output_size_in_bytes"]
        + m["temp_size_in_bytes"]
        - m["alias_size_in_bytes"]
    )
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    result["flops_per_step"] = float(cost["flops"])
    analytic = train_step.train_step_flops(recipe, shape)["total"]
    result["analytic_model_flops_per_step"] = analytic * global_batch / devices
    return result


def _size(variable):
    count = 1
    for dim in variable.shape:
        count *= int(dim)
    return count


def run_plan(args, timeout=None):
    """Runs one plan in a fresh process (its own device count and memory);
    returns its JSON dict, or `{"error": ...}`."""
    import tempfile

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [REPOSITORY_ROOT] + [p for p in [env.get("PYTHONPATH")] if p]
    )
    with tempfile.TemporaryDirectory() as directory:
        output = os.path.join(directory, "plan.json")
        command = [sys.executable, os.path.abspath(__file__), *args, "--json", output]
        try:
            completed = subprocess.run(
                command, env=env, cwd=REPOSITORY_ROOT, timeout=timeout,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout} s"}
        if completed.returncode != 0 or not os.path.exists(output):
            tail = "\n".join(completed.stdout.strip().splitlines()[-12:])
            return {"error": f"exit code {completed.returncode}: {tail}"}
        with open(output) as f:
            return json.load(f)


# --- The RESULTS.md table -----------------------------------------------------

# (label, recipe overrides, distribution) of each row. L/14 and g/14 are the
# b14 recipe with the released towers of that size (`tips_presets._VIT`).
MODELS = (
    ("B/14", (), None),
    (
        "L/14",
        (
            "model.vision.hidden_dim=1024", "model.vision.num_layers=24",
            "model.vision.num_heads=16", "model.vision.intermediate_dim=4096",
            "model.text.hidden_dim=1024", "model.text.num_heads=16",
            "model.text.intermediate_dim=4096",
        ),
        None,
    ),
    (
        "g/14",
        (
            "model.vision.hidden_dim=1536", "model.vision.num_layers=40",
            "model.vision.num_heads=24", "model.vision.intermediate_dim=4096",
            "model.vision.ffn_type='swiglu'",
            "model.text.hidden_dim=1536", "model.text.num_heads=24",
            "model.text.intermediate_dim=6144",
        ),
        "model_parallel:4",
    ),
)
BUDGETS_GB = (80, 141)
FIT_BATCHES = (32, 128)
BATCH_STEP = 8
SECTION_BEGIN = "<!-- memory_plan table: begin -->"
SECTION_END = "<!-- memory_plan table: end -->"


def largest_fitting_batch(points, budget_bytes, step=BATCH_STEP):
    """The largest multiple of `step` whose peak, on the line through the
    compiled `points` [(batch, peak_bytes), ...] (least squares), fits
    `budget_bytes`; 0 if not even `step` does."""
    n = len(points)
    mean_b = sum(b for b, _ in points) / n
    mean_p = sum(p for _, p in points) / n
    slope = sum((b - mean_b) * (p - mean_p) for b, p in points) / sum(
        (b - mean_b) ** 2 for b, _ in points
    )
    intercept = mean_p - slope * mean_b
    if slope <= 0:
        raise ValueError(f"Peak memory does not grow with the batch: {points}")
    return max(0, int((budget_bytes - intercept) // slope) // step * step), (
        intercept,
        slope,
    )


def cache_name(model, remat, batch):
    """The file name of one plan in a `--cache` folder."""
    return f"{model.replace('/', '')}_remat-{'on' if remat else 'off'}_batch-{batch}.json"


def table_rows(models=MODELS, fit_batches=FIT_BATCHES, budgets_gb=BUDGETS_GB,
               recipe=B14_RECIPE, timeout=None, extra=(), jobs=1, cache=None,
               cached_only=False, progress=print):
    """Plans every (model, remat) at `fit_batches`, fits peak = a + b x batch,
    predicts the largest batch under each budget, and verifies it by
    compiling at the prediction and one step up (`BATCH_STEP`). Each plan
    is a process of its own; `jobs` of them run at once (first every fit
    point, then every verification). With a `cache` folder, plans found
    there (`cache_name`) are reused and new ones kept; `cached_only` plans
    nothing new (what is missing is reported as not compiled).

    Returns:
        A list of row dicts (the compiled plans included).
    """
    from concurrent.futures import ThreadPoolExecutor

    rows = []
    for label, overrides, distribution in models:
        for remat in (False, True):
            base = ["--recipe", recipe]
            for item in (*overrides, *extra):
                base += ["--set", item]
            if distribution:
                base += ["--distribution", distribution]
            if remat:
                base.append("--remat")
            rows.append({"model": label, "remat": remat,
                         "distribution": distribution or "data_parallel",
                         "arguments": base, "plans": {}, "budgets": {}})

    def compile_all(wanted):
        """Plans each (row, batch) of `wanted` not planned yet."""
        todo = [(row, batch) for row, batch in wanted if batch not in row["plans"]]
        todo = list({(id(row), batch): (row, batch) for row, batch in todo}.values())

        def one(item):
            row, batch = item
            path = cache and os.path.join(cache, cache_name(row["model"], row["remat"], batch))
            if path and os.path.exists(path):
                with open(path) as f:
                    return json.load(f)
            if cached_only:
                return {"error": "not compiled"}
            progress(f"{row['model']} remat={row['remat']}: per-device batch {batch}")
            started = time.perf_counter()
            result = run_plan(row["arguments"] + ["--per-device-batch", str(batch)], timeout)
            if path and "error" not in result:
                with open(path, "w") as f:
                    json.dump(result, f, indent=1)
            progress(f"{row['model']} remat={row['remat']}: per-device batch {batch} "
                     f"done in {time.perf_counter() - started:.0f} s"
                     + (f" ({result['error'].splitlines()[-1]})" if "error" in result else ""))
            return result

        with ThreadPoolExecutor(max(1, jobs)) as pool:
            for (row, batch), result in zip(todo, pool.map(one, todo)):
                row["plans"][batch] = result

    compile_all([(row, batch) for row in rows for batch in fit_batches])
    wanted = []
    for row in rows:
        errors = [row["plans"][b]["error"] for b in fit_batches if "error" in row["plans"][b]]
        if errors:
            row["error"] = errors[0]
            continue
        points = [(b, row["plans"][b]["peak_bytes"]) for b in fit_batches]
        for budget in budgets_gb:
            predicted, (intercept, slope) = largest_fitting_batch(points, budget * GB)
            row["budgets"][budget] = {
                "predicted": predicted, "intercept": intercept, "slope": slope,
            }
            if predicted > 0:
                wanted += [(row, predicted), (row, predicted + BATCH_STEP)]
    compile_all(wanted)
    for row in rows:
        for budget, entry in row["budgets"].items():
            predicted = entry["predicted"]
            if predicted == 0:
                continue
            for batch in (predicted, predicted + BATCH_STEP):
                result = row["plans"][batch]
                if "error" in result:
                    entry["error"] = result["error"]
                else:
                    entry[batch] = result["peak_bytes"]
            if "error" not in entry:
                entry["verified"] = (
                    entry[predicted] <= budget * GB
                    and entry[predicted + BATCH_STEP] > budget * GB
                )
    return rows


def table_markdown(rows, seconds, fit_batches=FIT_BATCHES, budgets_gb=BUDGETS_GB,
                   not_measured=()):
    """The RESULTS.md section of `table_rows`' rows; `not_measured` names
    the models left out, with the command that measures them."""
    lines = [
        SECTION_BEGIN,
        "## Memory plan (XLA's compiled train step)",
        "",
        "Written by `python benchmarks/memory_plan.py --table benchmarks/RESULTS.md` "
        f"at git revision `{_revision()}` ({seconds / 60:.0f} min; plans reused "
        "from a `--cache` count their own compile time, in the JSON). Peak bytes "
        "per device of the `tips_b14_webli` "
        "train step (mixed bfloat16, its objective and optimizer; L/14 and g/14: "
        "the same recipe with the released towers of that size), compiled ahead of "
        "time by XLA on the host CPU with abstract weights: arguments + outputs + "
        "temporaries - aliased (donated state) of `memory_analysis()`. Method: "
        f"compile at per-device batches {', '.join(map(str, fit_batches))}, fit "
        f"peak = a + b x batch, predict the largest multiple of {BATCH_STEP} under "
        f"each budget, compile at it and at {BATCH_STEP} more; 'verified' means "
        "the first fits and the second does not. These are the CPU compiler's "
        "plans: an accelerator's compiler fuses and schedules differently.",
        "",
    ]
    headers = ["model", "placement", "remat", "params (trainable)"]
    headers += [f"peak GB @ {b}" for b in fit_batches]
    headers += ["TFLOP/step/device @ {}".format(fit_batches[-1])]
    for budget in budgets_gb:
        headers += [f"largest batch ≤ {budget} GB", f"peak GB there / +{BATCH_STEP}"]
    table = []
    for row in rows:
        cells = [row["model"], row["distribution"], "on" if row["remat"] else "off"]
        plans = row["plans"]
        compiled = [plans[b] for b in fit_batches if "error" not in plans.get(b, {"error": ""})]
        if not compiled:
            reason = row.get("error", "not compiled").strip().splitlines()[-1][:120]
            table.append(cells + [f"not measured: {reason}"] + [""] * (len(headers) - 4))
            continue
        cells.append(f"{compiled[0]['parameters']['trainable'] / 1e6:.0f} M")
        for batch in fit_batches:
            plan_ = plans.get(batch, {"error": "not compiled"})
            cells.append(
                f"{plan_['peak_bytes'] / GB:.1f}" if "error" not in plan_
                else _short(plan_["error"])
            )
        last = plans.get(fit_batches[-1], {"error": "not compiled"})
        cells.append(
            f"{last['flops_per_step'] / 1e12:.1f}" if "error" not in last
            else _short(last["error"])
        )
        if "error" in row:  # No line to predict from.
            cells += [f"not measured (needs {len(fit_batches)} batches)", ""] * len(budgets_gb)
            table.append(cells)
            continue
        for budget in budgets_gb:
            entry = row["budgets"].get(budget, {})
            predicted = entry.get("predicted")
            if predicted == 0:
                cells += [f"none ({BATCH_STEP} does not fit)", "n/a"]
                continue
            if "error" in entry or predicted is None:
                cells += [f"{predicted} (predicted, not verified)", "n/a"]
                continue
            mark = " ✓" if entry.get("verified") else " (prediction off)"
            cells.append(f"{predicted}{mark}")
            there = entry.get(predicted)
            above = entry.get(predicted + BATCH_STEP)
            cells.append(
                " / ".join("n/a" if v is None else f"{v / GB:.1f}" for v in (there, above))
            )
        table.append(cells)
    from benchmarks import common

    lines.append(common.markdown_table(headers, table))
    at_128 = [
        f"{row['model']} remat {'on' if row['remat'] else 'off'}: "
        f"{row['plans'][128]['peak_bytes'] / GB:.1f} GB"
        for row in rows
        if "error" not in row["plans"].get(128, {"error": ""})
    ]
    if at_128:
        lines += ["", "At the paper recipe's per-device batch of 128 (80 GB is the "
                  f"budget it must fit): {'; '.join(at_128)}."]
    minutes = [
        plan_["compile_seconds"] / 60
        for row in rows for plan_ in row["plans"].values() if "compile_seconds" in plan_
    ]
    if minutes:
        lines += ["", f"Compile time of each plan here: {min(minutes):.0f} to "
                  f"{max(minutes):.0f} min."]
    if not_measured:
        lines += [
            "",
            f"Not measured yet: {', '.join(not_measured)}. "
            "`python benchmarks/memory_plan.py --table benchmarks/RESULTS.md "
            "--cache plans/` measures every model (`--jobs N` compiles N at once; "
            "`--models` chooses).",
        ]
    lines += ["", SECTION_END]
    return "\n".join(lines)


def _revision():
    from benchmarks import common

    return common.git_revision()


def _short(error):
    """A table cell for a plan that did not compile."""
    return error.strip().splitlines()[-1][:60] if error.strip() else "not compiled"


def write_section(path, markdown, begin=None, end=None):
    """`common.write_section`, by default at the memory plan's markers."""
    from benchmarks import common

    common.write_section(path, markdown, begin or SECTION_BEGIN, end or SECTION_END)


# --- Command line ---------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default=B14_RECIPE)
    parser.add_argument("--per-device-batch", type=int)
    parser.add_argument(
        "--distribution",
        help="none, data_parallel or model_parallel:K (default: one device).",
    )
    parser.add_argument("--devices", type=int, help="Virtual devices (default: see docstring).")
    parser.add_argument("--remat", action="store_true", help="Rematerialise every block.")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="Recipe override, as for `keras-tips pretrain` (repeatable).",
    )
    parser.add_argument(
        "--vocabulary-size", type=int,
        help="Default: see common.recipe_for_random_batches.",
    )
    parser.add_argument("--json", help="Write the plan here.")
    parser.add_argument(
        "--table", metavar="MARKDOWN",
        help="Write the B/14, L/14, g/14 table section into this file.",
    )
    parser.add_argument("--models", nargs="+", help="With --table: B/14 L/14 g/14.")
    parser.add_argument("--timeout", type=float, help="With --table: seconds a plan.")
    parser.add_argument("--jobs", type=int, default=1, help="With --table: plans at once.")
    parser.add_argument("--cache", help="With --table: a folder of plans to reuse and keep.")
    parser.add_argument(
        "--cached-only", action="store_true",
        help="With --table and --cache: compile nothing, report what is there.",
    )
    args = parser.parse_args(argv)
    if args.table:
        models = [m for m in MODELS if not args.models or m[0] in args.models]
        start = time.perf_counter()
        if args.cache:
            os.makedirs(args.cache, exist_ok=True)
        rows = table_rows(models, timeout=args.timeout, extra=args.set, jobs=args.jobs,
                          cache=args.cache, cached_only=args.cached_only,
                          progress=lambda m: print(m, file=sys.stderr, flush=True))
        not_measured = [m[0] for m in MODELS if m not in models]
        markdown = table_markdown(
            rows, time.perf_counter() - start, not_measured=not_measured
        )
        write_section(args.table, markdown)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1, default=str)
        print(markdown)
        return 0
    if args.per_device_batch is None:
        parser.error("--per-device-batch is required (or --table).")
    devices = device_count_for(args.distribution, args.devices)
    # Before JAX starts: the virtual devices and the backend.
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    if os.environ["JAX_PLATFORMS"] == "cpu":
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "")
            + f" --xla_force_host_platform_device_count={devices}"
        ).strip()
    result = plan(
        args.recipe, args.per_device_batch, args.distribution, args.remat,
        args.set, args.vocabulary_size,
        progress=lambda m: print(m, file=sys.stderr, flush=True),
    )
    text = json.dumps(result, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
