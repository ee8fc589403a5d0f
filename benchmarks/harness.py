"""Shared machinery of the benchmark scripts in this folder: bench_train_step.py,
bench_pipeline.py and bench_vgg16.py. Each script's docstring says what it measures; the
method they have in common is described here, once.

Workers. Each framework (or data loader) runs in its own worker process: the script started
again with `--worker KIND` (plus the script's own hidden arguments). A process per
framework, because TF_ENABLE_ONEDNN_OPTS must be set before TensorFlow is imported, and so
that no framework's thread pools share a process with another's. The parent starts all the
workers of a run at once, so they import in parallel, then waits for each one's hello (its
setup time, library versions, Python version and whatever the script adds). It drives them
with one JSON object per line over stdin/stdout:

    parent -> worker   {"cmd": "run", ...arguments}           one line per command
    worker -> parent   {"ok": true, ...reply}  or  {"ok": false, "error": "<traceback>"}

`{"cmd": "quit"}` ends a worker. A worker moves its file descriptor 1 onto stderr before it
builds anything, so whatever a library prints goes to the worker's log file (one per worker,
in a temporary folder named at the end of the run) and cannot corrupt the protocol. A
worker that fails to start is left out of the run with a note, except minicnn's: without
minicnn the run has nothing to measure, and it is the baseline of the model benchmarks'
ratios.

Warm-up. Every worker runs its `--warmup` untimed steps (or batches) before any timing:
tracing, Numba compilation or cache load, allocator and page-cache warm-up are done by then.

Rounds. The parent then runs `--rounds` rounds. In a round every framework in turn times
its measurement (`--steps` consecutive steps, or `--batches` batches), in an order that
rotates by one from round to round (round r starts with the r-th framework), and with a
pause of `--pause` seconds before each turn, so that the previous worker's spinning
BLAS/OpenMP threads have gone to sleep. Interleaving spreads slow changes of the machine's
load over all frameworks instead of loading them onto whichever ran last.

Summary. Each (framework, case) gets one throughput per round, images / second = images /
(the sum of the timed seconds). The tables show the median over the rounds with the min-max
range (a single number after one round), and a ratio of throughputs against a baseline;
each script says which baseline, and which way is better.

Machine facts. CPU model, logical and usable CPUs, SIMD flags, RAM, platform, the Python
and library versions the workers report, and each worker's thread settings (its
framework's own, and the environment variables that change threading: OMP_*, OPENBLAS_*,
NUMBA_* ...). The 1-minute load average is read at the start and at the end; above 0.5 at
the start the run warns and adds a note: the machine was not idle, the numbers are noisy.
The sgemm probe (bench_train_step.py and bench_vgg16.py) is np.matmul of two 2048x2048
float32 matrices, 2 * 2048^3 FLOPs, one untimed call then the median of 5: the rate of the
BLAS minicnn calls, taken before and after the rounds. A large change between the two
means the machine's load changed during the run.

Output. The tables go to stdout, then the machine facts and notes as plain lines.
`--markdown OUT.md` appends a section to OUT.md (or creates it): a heading with the date,
the command and how it measured, the tables in Markdown, the facts in a fenced block.
`--json OUT.json` writes the whole report, every raw timing included.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASELINE = "minicnn"                    # the one worker that must start
LOAD_WARNING = 0.5                      # 1-minute load average above which a run is noisy
DATA_SEED = 1234

FRAMEWORKS = {                          # name -> (worker kind, extra environment)
    "minicnn": ("minicnn", {}),
    # minicnn with every convolution by im2col (Winograd's algorithm off): what it gains
    "minicnn-im2col": ("minicnn", {"BENCH_MINICNN_WINOGRAD": "off"}),
    # minicnn imported after another library, as in a notebook (minicnn.runtime's settings
    # must survive it): NumPy first, PyTorch first (its own OpenMP runtime), Keras first
    # (TensorFlow's thread pools and oneDNN loaded in the same process)
    "minicnn-numpy-first": ("minicnn", {"BENCH_IMPORT_FIRST": "numpy"}),
    "minicnn-torch-first": ("minicnn", {"BENCH_IMPORT_FIRST": "torch"}),
    "minicnn-keras-first": ("minicnn", {"BENCH_IMPORT_FIRST": "keras"}),
    "keras-onednn-off": ("keras", {"TF_ENABLE_ONEDNN_OPTS": "0"}),
    "keras-onednn-on": ("keras", {"TF_ENABLE_ONEDNN_OPTS": "1"}),
    "torch": ("torch", {}),
}


def log(msg):
    """Progress and results go to stdout, at once (a run takes minutes)."""
    print(msg, flush=True)


# ----------------------------------------------------------------------------- worker side
def import_minicnn_from_repo():
    """Make `import minicnn` find this checkout, installed or not, and import it before
    anything loads NumPy (Numba does): minicnn.runtime's thread settings must be in the
    environment when OpenBLAS starts. With BENCH_MINICNN_WINOGRAD=off (the minicnn-im2col
    worker) turn Winograd's convolution off. With BENCH_IMPORT_FIRST=numpy|torch|keras import
    that library first, as a notebook would."""
    first = os.environ.get("BENCH_IMPORT_FIRST")
    if first:
        __import__(first)
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    from minicnn import layers
    if os.environ.get("BENCH_MINICNN_WINOGRAD") == "off":
        layers.set_winograd_min_channels(None)


def protocol_channel():
    """The real stdout, for JSON replies only; fd 1 then points to stderr, so whatever a
    library prints cannot corrupt the protocol."""
    fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(fd, "w", buffering=1)


def serve(build, commands, hello=None):
    """Run a worker: build the bench object (`build()`), send the hello, then answer one
    JSON command per stdin line with one JSON line, until "quit" or the end of stdin.

    `commands` maps a command name to a function called as `fn(bench, **arguments)`, which
    returns the reply as a dict. The hello holds setup_seconds, the bench's `versions`, the
    Python version and `hello(bench)` when given."""
    out = protocol_channel()

    def send(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    t0 = time.perf_counter()
    try:
        bench = build()
    except Exception:
        send({"ok": False, "error": traceback.format_exc()})
        return
    send({"ok": True, "setup_seconds": time.perf_counter() - t0, "versions": bench.versions,
          "python": platform.python_version(), **(hello(bench) if hello else {})})
    for line in sys.stdin:
        msg = json.loads(line)
        try:
            cmd = msg.pop("cmd")
            if cmd == "quit":
                send({"ok": True})
                return
            if cmd not in commands:
                raise ValueError(f"unknown command {cmd!r}")
            send({"ok": True, **commands[cmd](bench, **msg)})
        except Exception:
            send({"ok": False, "error": traceback.format_exc()})


def time_calls(fn, n):
    """Wall seconds of each of n consecutive calls of fn()."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def sgemm(n=2048, repeats=5):
    """np.matmul rate of two n x n float32 matrices, GFLOP/s: one untimed call (threads,
    pages), then `repeats` timed ones."""
    import numpy as np
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    np.matmul(a, b)                                     # warm-up: threads, pages
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b)
        rates.append(2 * n ** 3 / (time.perf_counter() - t0) / 1e9)
    return {"n": n, "gflops_runs": rates, "gflops_median": statistics.median(rates),
            "openblas_core": openblas_core()}


def openblas_core():
    """The kernels ("core") NumPy's OpenBLAS runs in this process, or None."""
    try:
        from minicnn import runtime
    except ImportError:
        return None
    return runtime.openblas_core()


def random_batch(batch, input_shape, seed=DATA_SEED):
    """A fixed random batch: images in [0, 1) float32 and binary labels of shape (batch, 1)."""
    import numpy as np
    rng = np.random.default_rng(seed + batch)
    x = rng.random((batch,) + tuple(input_shape), dtype=np.float32)
    y = rng.integers(0, 2, size=(batch, 1)).astype(np.float32)
    return x, y


def torch_batch(torch, x, y):
    """A NumPy NHWC batch as PyTorch tensors: NHWC memory viewed as NCHW is exactly the
    channels_last layout."""
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    return xt, torch.from_numpy(y)


# ----------------------------------------------------------------------------- thread facts
def thread_env():
    """Thread-related environment variables that are set (they change the results)."""
    names = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME",
             "OPENBLAS_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT", "MKL_NUM_THREADS",
             "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "OPENBLAS_CORETYPE",
             "OPENBLAS_L2_SIZE")
    return {k: os.environ[k] for k in names if k in os.environ}


def max_rss_mib():
    """Peak resident set size of this process so far, MiB (ru_maxrss: KiB on Linux, bytes
    on macOS)."""
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 2 ** 10


def numba_threads(numba):
    try:
        layer = numba.threading_layer()
    except ValueError:                      # no parallel kernel has run yet
        layer = "not initialised"
    from minicnn import runtime
    from minicnn.layers import conv_algorithms
    settings = conv_algorithms.current_settings()
    return {"numba_threads": numba.config.NUMBA_NUM_THREADS, "numba_threading_layer": layer,
            "winograd_min_channels": settings.winograd_min_channels,
            "winograd_tile": settings.winograd_tile, "runtime": runtime.settings()}


def onednn_enabled():
    """Whether this process's TensorFlow runs oneDNN kernels (None if it cannot tell)."""
    try:
        from tensorflow.python.util import _pywrap_util_port
        return bool(_pywrap_util_port.IsMklEnabled())
    except Exception:                       # private API: report only if available
        return None


def keras_threads(tf, model, onednn):
    cfg = tf.config.threading
    return {"onednn_enabled": onednn,
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
            "intra_op_threads": cfg.get_intra_op_parallelism_threads() or "default (0)",
            "inter_op_threads": cfg.get_inter_op_parallelism_threads() or "default (0)",
            "jit_compile": getattr(model, "jit_compile", None), **thread_env()}


def torch_threads(torch):
    return {"intra_op_threads": torch.get_num_threads(),
            "inter_op_threads": torch.get_num_interop_threads(),
            "mkldnn": torch.backends.mkldnn.is_available(), **thread_env()}


# ----------------------------------------------------------------------------- parent side
class WorkerError(RuntimeError):
    pass


class Worker:
    """A worker process (`python SCRIPT ARGS...`), driven over stdin/stdout, its stderr in
    the file log_path."""

    def __init__(self, name, script, args, extra_env, log_path):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "w")
        env = {**os.environ, **extra_env, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(script), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
            env=env, text=True, bufsize=1)
        self.hello = None

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise WorkerError(f"worker {self.name} exited (code {self.proc.poll()}); end of its "
                              f"stderr:\n{self.log_tail()}")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise WorkerError(f"worker {self.name} failed:\n{reply.get('error')}")
        return reply

    def wait_ready(self):
        self.hello = self._read()
        return self.hello

    def call(self, cmd, **kw):
        """Send a command, return the reply (without its "ok")."""
        self.proc.stdin.write(json.dumps({"cmd": cmd, **kw}) + "\n")
        self.proc.stdin.flush()
        return {k: v for k, v in self._read().items() if k != "ok"}

    def log_tail(self, lines=15):
        self._log.flush()
        with open(self.log_path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])

    def log_contains(self, text):
        self._log.flush()
        with open(self.log_path, errors="replace") as f:
            return text in f.read()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.call("quit")
            except (WorkerError, OSError, ValueError):
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


def start_workers(names, spawn, on_ready, log, notes, context=""):
    """Start a worker per name (`spawn(name)` returns a Worker), all at once so that they
    import in parallel; then wait for each one's hello, in order, and pass it to
    `on_ready(name, hello)`. A worker that fails to start is closed and left out, with a
    note (`context` is added to it, e.g. " in phase train"); the baseline's failure is
    raised. Returns {name: Worker} of the workers that started; the caller closes them."""
    workers = {}
    try:
        for name in names:
            workers[name] = spawn(name)
        for name in list(workers):
            try:
                hello = workers[name].wait_ready()
            except WorkerError as exc:
                if name == BASELINE:
                    raise
                notes.append(f"{name} skipped{context}: its worker failed to start")
                log(f"{name}: skipped, worker failed to start:\n{exc}")
                workers.pop(name).close()
                continue
            on_ready(name, hello)
    except BaseException:
        close_all(workers)
        raise
    return workers


def close_all(workers):
    for w in workers.values():
        w.close()


def skip_missing_torch(names, notes, log):
    """Drop "torch" from names, with a note, when PyTorch is not installed."""
    import importlib.util
    if importlib.util.find_spec("torch") is None:
        for name in [n for n in names if n in ("torch", "minicnn-torch-first")]:
            names.remove(name)
            notes.append(f"PyTorch is not installed: {name} skipped (pip install torch)")
            log(f"torch is not importable: {name} skipped")


def check_onednn(name, worker, threads, notes):
    """For a Keras worker: note it when TensorFlow's oneDNN state (as reported, and as its
    startup log message says) is not the one FRAMEWORKS asked for."""
    if not name.startswith("keras"):
        return
    want_on = FRAMEWORKS[name][1]["TF_ENABLE_ONEDNN_OPTS"] == "1"
    said_on = worker.log_contains("oneDNN custom operations are on")
    if threads.get("onednn_enabled") not in (None, want_on) or said_on != want_on:
        notes.append(f"{name}: oneDNN state is not the one asked for "
                     f"(TensorFlow reports {threads['onednn_enabled']}"
                     f", log message {'present' if said_on else 'absent'})")


def turns(names, round_index, pause):
    """The names in the order of round `round_index` (rotated by it), sleeping `pause`
    seconds before yielding each: the interleaving of the rounds."""
    k = round_index % len(names)
    for name in names[k:] + names[:k]:
        time.sleep(pause)
        yield name


# ----------------------------------------------------------------------------- machine facts
def load_average():
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def machine_info():
    model, flags, mem, ids = "unknown", set(), None, {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model == "unknown":
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
                elif key in ("cpu family", "model") and key not in ids:
                    ids[key] = value.strip()
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) / 2 ** 20            # KiB -> GiB
    except (OSError, ValueError, IndexError):
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    if len(ids) == 2:
        model += f" (family {ids['cpu family']} model {ids['model']})"
    return {"cpu_model": model, "logical_cpus": os.cpu_count(), "usable_cpus": usable,
            "memory_gib": mem,
            "simd": " ".join(s for s in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")
                             if s in flags),
            "platform": platform.platform(), "python": platform.python_version()}


def machine_at_start(notes, log):
    """machine_info() plus the load average now; warns (log and note) above LOAD_WARNING."""
    machine = machine_info()
    load = machine["load_average_start"] = load_average()
    if load is not None and load > LOAD_WARNING:
        notes.append(f"the 1-minute load average was {load:.2f} at "
                     f"the start: other work was running, the numbers are not reliable")
        log(f"WARNING: load average {load:.2f}: the machine is not "
            f"idle, results will be noisy")
    return machine


# ----------------------------------------------------------------------------- summaries
def median_row(per_round):
    """The median images/s over the rounds, with min, max and the per-round values."""
    return {"images_per_second": statistics.median(per_round), "min": min(per_round),
            "max": max(per_round), "per_round": per_round}


def add_ratios(rows, baseline_of, field="ratio"):
    """row[field] = row's images/s / its baseline row's images/s (None without one);
    `baseline_of(key)` is the key of the baseline row of the row at `key`."""
    for key, row in rows.items():
        base = rows.get(baseline_of(key))
        row[field] = row["images_per_second"] / base["images_per_second"] if base else None


def median_range(row, digits=1):
    """'median (min-max)', or just the median after a single round."""
    text = f"{row['images_per_second']:.{digits}f}"
    if len(row["per_round"]) > 1:
        text += f" ({row['min']:.{digits}f}-{row['max']:.{digits}f})"
    return text


def table(head, body, left, markdown=False):
    """A table of strings: the first `left` columns left-aligned, the rest right-aligned;
    space-padded text, or Markdown."""
    if markdown:
        lines = ["| " + " | ".join(head) + " |",
                 "|" + "|".join(["---"] * left + ["---:"] * (len(head) - left)) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    fmt = lambda r: "  ".join(x.ljust(w) if i < left else x.rjust(w)   # noqa: E731
                              for i, (x, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(head), "  ".join("-" * w for w in widths)] + [fmt(r) for r in body])


# ----------------------------------------------------------------------------- report
def cpu_line(m, memory=False):
    mem = f", {m['memory_gib']:.0f} GiB RAM" if memory and m.get("memory_gib") else ""
    return (f"CPU: {m['cpu_model']}, {m['logical_cpus']} logical CPUs "
            f"({m['usable_cpus']} usable){mem}, SIMD: {m['simd'] or '-'}; {m['platform']}; "
            f"load average {m.get('load_average_start')} at start, "
            f"{m.get('load_average_end')} at end")


def versions_line(versions, keys=("python", "numpy", "numba", "keras", "tensorflow", "torch")):
    return "Versions: " + ", ".join(f"{k} {versions[k]}" for k in keys if k in versions)


def sgemm_lines(sgemm_rates):
    """The sgemm rates before/after, as a line (none if the probe did not run)."""
    if not sgemm_rates:
        return []
    parts = [f"{k} {sgemm_rates[k]['gflops_median']:.1f} GFLOP/s" for k in ("before", "after")
             if k in sgemm_rates]
    core = next((r.get("openblas_core") for r in sgemm_rates.values() if r.get("openblas_core")),
                None)
    kernels = f"; OpenBLAS's {core} kernels" if core else ""
    forced = os.environ.get("OPENBLAS_CORETYPE")
    kernels += f" (OPENBLAS_CORETYPE={forced})" if forced else ""
    return ["sgemm (np.matmul 2048x2048 float32, median of 5): " + ", ".join(parts) + kernels]


def note_lines(notes):
    return [f"Note: {note}" for note in notes]


def report_header(script, argv):
    """The date and the command line of this run, for the report."""
    return {"date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "command": f"python benchmarks/{os.path.basename(script)} " + shlex.join(
                sys.argv[1:] if argv is None else argv)}


def append_markdown(path, heading, blocks, details):
    """Append to path (or create it) a section: heading, the blocks (paragraphs and tables)
    separated by blank lines, then the detail lines in a fenced block."""
    section = [heading, ""]
    for block in blocks:
        section += [block, ""]
    section += ["```"] + details + ["```", ""]
    mode = "a" if os.path.exists(path) else "w"
    with open(path, mode) as f:
        if mode == "a":
            f.write("\n")
        f.write("\n".join(section))


def write_outputs(args, report, write_markdown, log):
    """--markdown OUT.md: write_markdown(OUT.md) appends the script's section; --json
    OUT.json: the whole report."""
    if args.markdown:
        write_markdown(args.markdown)
        log(f"Markdown section written to {args.markdown}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        log(f"JSON written to {args.json}")


# ----------------------------------------------------------------------------- options
def argument_parser(doc):
    """An ArgumentParser described by the first paragraph of the script's docstring."""
    return argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_frameworks_option(p, import_order=True):
    """--frameworks; without import_order the default leaves out the import-order variants."""
    default = [n for n in FRAMEWORKS if import_order or not n.endswith("-first")]
    p.add_argument("--frameworks", nargs="+", choices=list(FRAMEWORKS), default=default,
                   help="subset to run (minicnn is always included: it is the baseline; "
                        f"default: {' '.join(default)})")


def add_output_options(p, tables="the table"):
    """--markdown, --json, and the hidden --worker of the worker processes."""
    p.add_argument("--markdown", metavar="OUT.md",
                   help=f"append (or write) a Markdown section with {tables} and machine block")
    p.add_argument("--json", metavar="OUT.json", help="write every measurement as JSON")
    p.add_argument("--worker", help=argparse.SUPPRESS)


def check_counts(p, args, names, warmup_why):
    """Each option in names must be at least 1, and --warmup too (warmup_why says why)."""
    for name in names:
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 1:
        p.error(f"--warmup must be at least 1 ({warmup_why})")
