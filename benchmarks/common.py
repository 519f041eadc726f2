"""Helpers shared by the benchmarks: the recipe they measure, per-backend
worker processes, interleaved timing, synchronisation, memory readings,
machine information and Markdown tables.

Keras fixes its backend when it is first imported, so every measurement on a
backend runs in a fresh Python process started with `KERAS_BACKEND` set
(`run_worker`); the worker writes its results as JSON to a file the parent
reads. Within one process, the models being compared are timed *interleaved*
(`interleaved_rates`): each round times every model once, back to back, in
a rotating order, so that load from other processes on a shared machine hits
all of them alike; ratios are taken per round and their median reported.
"""

import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

REPOSITORY_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = ("jax", "tensorflow", "torch")
TINY_SHAPES_RECIPE = os.path.join(REPOSITORY_ROOT, "recipes", "tiny_shapes.py")


def ensure_repository_on_path():
    """Makes `keras_tips` and `benchmarks` importable from a script run as
    `python benchmarks/<name>.py`."""
    if REPOSITORY_ROOT not in sys.path:
        sys.path.insert(0, REPOSITORY_ROOT)


def tiny_shapes_recipe(overrides=()):
    """The `tiny_shapes` recipe, with `overrides` (`"key=value"` strings):
    the model, objective, optimizer and input pipeline that the train-step
    and pipeline benchmarks measure, so they never drift from the recipe."""
    from keras_tips.training.recipe import load_recipe

    return load_recipe(TINY_SHAPES_RECIPE, list(overrides))


def image_tower_settings(recipe):
    """A recipe's `model.vision` keyword arguments for a bare
    `TIPSVisionEncoder` trained outside the pretrainer (no stochastic depth:
    the diagnoses train it as a plain supervised network)."""
    return {k: v for k, v in recipe.model.vision.items() if k != "drop_path_rate"}


# The released tokenizer's vocabulary size.
RELEASED_VOCABULARY_SIZE = 32000
_UNREAD = "'(not read: benchmark on random batches)'"


def recipe_for_random_batches(path, overrides=(), vocabulary_size=None):
    """A recipe whose train step is measured on random batches of its
    shapes, and the vocabulary size of those batches' token ids.

    Such a measurement never reads the recipe's data, so a recipe that
    names no data files or tokenizer (the paper recipe leaves both to the
    run) gets placeholders for them, and its vocabulary is
    `vocabulary_size` or, by default, the released tokenizer's (32,000).
    A recipe with a tokenizer, or the shapes vocabulary, gives its own.

    Returns:
        `(recipe, vocabulary_size)`.
    """
    import importlib.util

    from keras_tips.training.loop import build_tokenizer
    from keras_tips.training.recipe import apply_overrides
    from keras_tips.training.recipe import load_recipe

    spec = importlib.util.spec_from_file_location("benchmarked_recipe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = apply_overrides(module.recipe(), list(overrides)).data
    placeholders = []
    if data.source != "shapes":
        if not data.path:
            placeholders.append(f"data.path={_UNREAD}")
        if not data.tokenizer:
            placeholders.append(f"data.tokenizer={_UNREAD}")
    recipe = load_recipe(path, list(overrides) + placeholders)
    if vocabulary_size is None:
        if data.source != "shapes" and not data.tokenizer:
            vocabulary_size = RELEASED_VOCABULARY_SIZE
        else:
            vocabulary_size = build_tokenizer(recipe).vocabulary_size()
    return recipe, vocabulary_size


# --- Worker processes -------------------------------------------------------


def run_worker(script, backend, arguments, timeout=None, environment=None):
    """Runs `python script --worker-output FILE *arguments` with
    `KERAS_BACKEND=backend` and returns the JSON the worker wrote.

    The worker's stderr is passed through (progress lines); if it fails, the
    returned dict has an `"error"` entry with the tail of its output instead
    of raising, so one failing backend does not lose the others' results.
    """
    env = dict(os.environ)
    env.update(
        {
            "KERAS_BACKEND": backend,
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONPATH": os.pathsep.join(
                [REPOSITORY_ROOT] + [p for p in [env.get("PYTHONPATH")] if p]
            ),
        }
    )
    env.update(environment or {})
    with tempfile.TemporaryDirectory() as directory:
        output = os.path.join(directory, "result.json")
        command = [sys.executable, script, "--worker-output", output]
        command += [str(a) for a in arguments]
        try:
            completed = subprocess.run(
                command,
                env=env,
                cwd=REPOSITORY_ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout} s"}
        if completed.returncode != 0 or not os.path.exists(output):
            tail = "\n".join(completed.stdout.strip().splitlines()[-15:])
            return {"error": f"exit code {completed.returncode}: {tail}"}
        with open(output) as f:
            return json.load(f)


def write_worker_output(path, result):
    with open(path, "w") as f:
        json.dump(result, f, indent=1)


def log(message):
    """A progress line on stderr (the parent shows workers' output only
    when they fail)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- Timing -----------------------------------------------------------------


def synchronize(outputs):
    """Waits until `outputs` are computed (JAX dispatches asynchronously;
    TensorFlow and PyTorch CPU calls return finished tensors)."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        jax.block_until_ready(outputs)
    return outputs


def interleaved_rates(functions, items_per_call, rounds, calls_per_round):
    """Items per second of several functions, timed round-robin.

    Args:
        functions: dict name -> zero-argument callable (already warmed up)
            that returns its outputs (synchronised with `synchronize`).
        items_per_call: int. Items (images) one call processes.
        rounds: int. Rounds; each times every function once.
        calls_per_round: int. Back-to-back calls per timing.

    Returns:
        dict name -> list of per-round rates (items/s), in round order.
    """
    names = list(functions)
    rates = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            function = functions[name]
            start = time.perf_counter()
            for _ in range(calls_per_round):
                synchronize(function())
            elapsed = time.perf_counter() - start
            rates[name].append(items_per_call * calls_per_round / elapsed)
    return rates


def median(values):
    return float(statistics.median(values))


def median_ratio(numerators, denominators):
    """Median over rounds of the per-round ratio (same-round pairs)."""
    return median([a / b for a, b in zip(numerators, denominators)])


# --- Memory -----------------------------------------------------------------


def peak_rss_bytes():
    """The process's peak resident set size so far (bytes; Linux/macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def current_rss_bytes():
    """The process's resident set size now (bytes)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss


class RssSampler:
    """Samples the resident set size in a background thread; `peak` is the
    highest reading between `__enter__` and `__exit__`.

    Example:
    ```python
    with RssSampler() as sampler:
        step()
    transient = sampler.peak - sampler.start
    ```
    """

    def __init__(self, interval=0.002):
        import threading

        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.start = None
        self.peak = 0

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, current_rss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self):
        self.start = current_rss_bytes()
        self.peak = self.start
        self._thread.start()
        return self

    def __exit__(self, *args):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss_bytes())


# --- Machine and library information ---------------------------------------


def machine_info():
    """CPU model, logical cores, RAM, OS and Python version."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        ram = None
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "ram_gib": None if ram is None else ram / 2**30,
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average": load,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def library_versions():
    """Versions of the libraries the benchmarks use (without importing a
    Keras backend)."""
    from importlib import metadata

    versions = {}
    for name in ("keras", "keras-hub", "jax", "jaxlib", "tensorflow", "torch",
                 "numpy", "grain"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_revision():
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPOSITORY_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# --- Markdown ---------------------------------------------------------------


def report_markdown(markdown, output=None):
    """Prints a report and, given a path, also writes it there."""
    print(markdown)
    if output:
        with open(output, "w", encoding="utf-8") as f:
            f.write(markdown + "\n")
        log(f"wrote {output}")


def write_section(path, markdown, begin, end):
    """Replaces the section between the markers `begin` and `end` in `path`,
    markers included, by `markdown`, which carries them; appends it when
    they are absent."""
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        text = head + markdown + tail
    else:
        text = text.rstrip("\n") + "\n\n" + markdown + "\n"
    from keras_tips.atomic_files import write_atomically

    write_atomically(path, text)


def report_section(markdown, output, begin, end):
    """Prints a report section and, given a path, also puts it in its
    place there (`write_section`)."""
    print(markdown)
    if output:
        write_section(output, markdown, begin, end)
        log(f"wrote {output}")


def titled_section(begin, end, title, description, table):
    """A report section between its markers: a level-3 title, the paragraph
    that says how the numbers were taken, and the table."""
    return "\n".join([begin, "", f"### {title}", "", description, "", table, "", end])


def markdown_table(headers, rows, align=None):
    """A Markdown table; `align` is a string of 'l'/'r' per column
    (default: first column left, the others right)."""
    if align is None:
        align = "l" + "r" * (len(headers) - 1)
    lines = [
        "| " + " | ".join(headers) + " |",
        "| " + " | ".join("---" if a == "l" else "---:" for a in align) + " |",
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return "\n".join(lines)


def fmt(value, digits=1, suffix=""):
    """A number for a table cell; None or NaN becomes "n/a"."""
    if value is None or value != value:
        return "n/a"
    return f"{value:.{digits}f}{suffix}"


def fmt_rate(value):
    """A rate with three significant figures for small values."""
    if value is None or value != value:
        return "n/a"
    return fmt(value, 1 if value >= 10 else 2)
