"""`minicnn lecture all`: the five flows in order, as a teacher can leave them running.

    lecture: flow 4/5 features-augment, epoch 12/30 - 142/290 epochs - 3h05m so far - about 3h40m left

That line follows every epoch of every flow. The time left is the current flow's measured
seconds per epoch for its remaining epochs, and for the flows still to come their
`Flow.seconds_per_image` (measured on 2 cores), scaled by how fast this machine ran the
flows already trained in this run. Each flow resumes by itself (flows.run_flow), so
`--resume` continues the lecture wherever it stopped, skipping the finished flows.

At the end OUT/lecture.json holds the table of the five flows against the book, printed too,
and OUT/lecture.png the five validation curves with the book's figures (needs matplotlib).
"""
from __future__ import annotations

import json
import os
import sys
import time

from minicnn import flows
from minicnn.callbacks import Callback

SUMMARY = "lecture.json"
FIGURE = "lecture.png"


def train_images_per_epoch(run: flows.Run) -> int:
    """Training images one epoch of the run takes: its steps times its batch, or one pass
    (the image files under train/, as the directory iterator counts them)."""
    from minicnn.preprocessing.iterators import WHITE_LIST_FORMATS

    if run.hyper.steps_per_epoch is not None:
        return run.hyper.steps_per_epoch * run.hyper.batch_size
    train = os.path.join(run.data, "train")
    return sum(name.lower().endswith(WHITE_LIST_FORMATS)
               for _, _, files in os.walk(train) for name in files)


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


class LecturePlan:
    """The flows of one `lecture all` run, what is done, and the estimate of what is left."""

    def __init__(self, runs: list[flows.Run], clock=time.perf_counter):
        self.runs = runs
        self.clock = clock
        self.start = clock()
        self.epochs_done = [0] * len(runs)
        self.guess = [run.flow.seconds_per_image * train_images_per_epoch(run) for run in runs]
        self.measured: dict[int, float] = {}     # flow index -> seconds per epoch, this run
        self.speed = 1.0                         # measured / guessed, the last flow trained

    @property
    def total_epochs(self) -> int:
        return sum(run.hyper.epochs for run in self.runs)

    def estimate(self, index: int) -> float:
        """Seconds per epoch of flow `index`: measured if it ran here, else estimated."""
        if index in self.measured:
            return self.measured[index]
        return self.guess[index] * self.speed

    def seconds_left(self) -> float:
        return sum((run.hyper.epochs - done) * self.estimate(i)
                   for i, (run, done) in enumerate(zip(self.runs, self.epochs_done)))

    def epoch_ended(self, index: int, epochs_done: int, seconds_per_epoch: float) -> None:
        self.epochs_done[index] = epochs_done
        self.measured[index] = seconds_per_epoch

    def flow_ended(self, index: int) -> None:
        """The flow is finished; its pace tells how fast this machine is against the guess."""
        self.epochs_done[index] = self.runs[index].hyper.epochs
        if index in self.measured and self.guess[index] > 0:
            self.speed = self.measured[index] / self.guess[index]

    def line(self, index: int) -> str:
        run = self.runs[index]
        done = sum(self.epochs_done)
        return (f"lecture: flow {index + 1}/{len(self.runs)} {run.flow.name}, epoch "
                f"{self.epochs_done[index]}/{run.hyper.epochs} - {done}/{self.total_epochs} "
                f"epochs - {format_duration(self.clock() - self.start)} so far - about "
                f"{format_duration(self.seconds_left())} left")


class LectureProgress(Callback):
    """Prints the plan's overall line after every epoch of flow `index`."""

    def __init__(self, plan: LecturePlan, index: int):
        super().__init__()
        self.plan, self.index = plan, index
        self.begin = None
        self.first_epoch = None

    def on_train_begin(self, logs=None):
        self.begin = self.plan.clock()

    def on_epoch_end(self, epoch, logs=None):
        if self.first_epoch is None:
            self.first_epoch = epoch
        ran = epoch - self.first_epoch + 1
        self.plan.epoch_ended(self.index, epoch + 1, (self.plan.clock() - self.begin) / ran)
        _say(self.plan.line(self.index))


def _say(text: str) -> None:
    from tqdm.auto import tqdm
    tqdm.write(text, file=sys.stdout)
    sys.stdout.flush()


def run_lecture(runs: list[flows.Run], out, resume: bool = False,
                validation_cache: bool = True) -> list[dict]:
    """Run the flows in order (resuming each with resume=True), printing the overall line;
    then write and print the summary (summary_rows) and the figure. Returns the metrics.
    flows.Interrupted passes through: the finished epochs are in the checkpoints."""
    plan = LecturePlan(runs)
    if resume:                           # the epochs the checkpoints already hold
        for index, run in enumerate(runs):
            if os.path.isfile(run.checkpoint):
                done = flows.read_state(run.checkpoint)["epochs_done"]
                plan.epochs_done[index] = min(done, run.hyper.epochs)
    results = []
    for index, run in enumerate(runs):
        _say(plan.line(index))
        metrics = flows.run_flow(run, resume=resume, validation_cache=validation_cache,
                                 callbacks=[LectureProgress(plan, index)])
        plan.flow_ended(index)
        results.append(metrics)
        print()
    rows = summary_rows(runs, results)
    write_summary(out, rows)
    print(format_table(rows))
    print(f"summary: {os.path.join(out, SUMMARY)}")
    histories = {run.flow.name: _val_acc(run) for run in runs}
    try:
        from minicnn.plotting import plot_validation_curves
        path = plot_validation_curves(histories, {run.flow.name: run.flow.book_val_acc
                                                  for run in runs},
                                      os.path.join(out, FIGURE))
        print(f"plot: {path}")
    except ImportError as error:
        print(f"no plot: {error}")
    return results


def _val_acc(run: flows.Run) -> list[float]:
    path = os.path.join(run.out, "history.json")
    with open(path) as f:
        return [float(v) for v in json.load(f)["history"].get("val_acc", [])]


def summary_rows(runs: list[flows.Run], results: list[dict]) -> list[dict]:
    """One row per flow: its accuracies beside the book's, and its time."""
    rows = []
    for run, m in zip(runs, results):
        best = m["best_val_acc"]
        rows.append({
            "flow": run.flow.name, "epochs": m["epochs_run"], "final_val_acc": m["final_val_acc"],
            "best_val_acc": best, "best_epoch": m["best_epoch"], "test_acc": m["test_acc"],
            "book_val_acc": run.flow.book_val_acc,
            "final_minus_book": None if m["final_val_acc"] is None
            else round(m["final_val_acc"] - run.flow.book_val_acc, 4),
            "seconds": m["seconds"], "sample": run.sample})
    return rows


def write_summary(out, rows: list[dict]) -> None:
    flows.write_json(os.path.join(out, SUMMARY), {"flows": rows, "versions": flows.versions()})


def format_table(rows: list[dict]) -> str:
    def number(value, digits=3):
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [f"{'flow':<18} {'epochs':>6} {'final val_acc':>13} {'best val_acc':>12} "
             f"{'test_acc':>8} {'book':>5} {'final - book':>12} {'time':>8}"]
    for r in rows:
        gap = "-" if r["final_minus_book"] is None else f"{r['final_minus_book'] * 100:+.1f} pp"
        lines.append(f"{r['flow']:<18} {r['epochs']:>6} {number(r['final_val_acc']):>13} "
                     f"{number(r['best_val_acc']):>12} {number(r['test_acc']):>8} "
                     f"{'~' + number(r['book_val_acc'], 2):>5} {gap:>12} "
                     f"{format_duration(r['seconds']):>8}")
    if any(r["sample"] for r in rows):
        lines.append("(the bundled sample with short schedules: the book's figures are for the "
                     "lecture's data and schedules, --data DIR)")
    return "\n".join(lines)
