"""Progress bars for long CLI work (tqdm, quiet when not on a terminal)."""

import sys
import time

import keras


def progress(iterable, description, total=None):
    """Wraps `iterable` in a tqdm bar on a terminal; returns it unchanged
    otherwise, so logs of batch jobs stay readable."""
    if not sys.stderr.isatty():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=description, total=total)


class TrainingProgress(keras.callbacks.Callback):
    """Shows how far a `fit` run is, step by step, with a few of its logs.

    On a terminal, a tqdm bar over all optimizer steps (resumed runs start
    where they left off); otherwise one line per tenth of the run, so the
    log of a batch job stays readable. Written as a Keras callback rather
    than as `fit(verbose=...)`, whose bar restarts at every checkpoint
    interval ("epoch").

    Args:
        total_steps: int. Steps of the whole run.
        description: str. Label of the bar.
        shown: names of the logs to show beside the bar.
        stream: file to write to (default `sys.stderr`).

    Example:
    ```python
    pretrain(recipe, "runs/demo", verbose=0,
             callbacks=[TrainingProgress(recipe.train.total_steps)])
    ```
    """

    def __init__(self, total_steps, description="Training", shown=("loss", "distill", "mask"),
                 stream=None):
        super().__init__()
        self.total_steps = int(total_steps)
        self.description = description
        self.shown = tuple(shown)
        self.stream = stream or sys.stderr
        self.step = None
        self.bar = None
        self.next_line = None
        self.started = None

    def _summary(self, logs):
        return {k: f"{float(logs[k]):.3g}" for k in self.shown if k in (logs or {})}

    def on_epoch_begin(self, epoch, logs=None):
        if self.step is not None:
            return
        self.step = int(epoch) * int(self.params.get("steps") or 0)
        self.started = time.time()
        if self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=self.total_steps, initial=self.step, desc=self.description,
                unit="step", file=self.stream,
            )
        else:
            self.next_line = self.step + max(self.total_steps // 10, 1)

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.bar is not None:
            self.bar.update(1)
            if self.step % 10 == 0 or self.step == self.total_steps:
                self.bar.set_postfix(self._summary(logs), refresh=False)
        elif self.step >= self.next_line or self.step == self.total_steps:
            self.next_line += max(self.total_steps // 10, 1)
            values = ", ".join(f"{k} {v}" for k, v in self._summary(logs).items())
            seconds = time.time() - self.started
            print(
                f"{self.description}: step {self.step}/{self.total_steps} "
                f"({100 * self.step // self.total_steps}%), {seconds:.0f} s"
                + (f", {values}" if values else ""),
                file=self.stream, flush=True,
            )

    def on_train_end(self, logs=None):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
