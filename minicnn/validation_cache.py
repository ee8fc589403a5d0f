"""The validation pass run from the output of the frozen layers, computed once.

When the first layers of a model are frozen (a pretrained conv base) and the validation
images are only rescaled, the frozen layers turn each validation image into the same numbers
every epoch. ValidationCache computes them once, and each later validation pass runs only the
layers from the first trainable one on:

    leaves     the model's layers, nested Sequentials (a conv base) opened up, in order
    cut        the first leaf holding a trainable weight (at most the last leaf, which must
               run to give the logits the loss is computed from)
    prefix     leaves[:cut], run once per sample at inference, in file order; its outputs
               (n, *shape) are kept in memory, or in an .npy file (a memory map) when they
               take more than `max_memory` bytes
    suffix     leaves[cut:], run on every validation batch at inference

Every number is the uncached pass's, to float rounding (a sample's prefix output does not
depend on the other samples of its batch; the batches only group them differently for the
matrix products): the batches hold the same samples, in the same order, and the validation
iterator moves along its stream exactly as the uncached pass moves it (Iterator.advance), so
a resumed run and a run without the cache see the same batches afterwards.

The stored outputs belong to a state of the prefix: its layers (and so the cut) and a CRC-32
of all its weights, checked before every pass. Anything that changes
(set_weights, load_weights, a layer made trainable) makes the next pass compute them again.

The cache applies when the validation data are arrays, or a minicnn iterator whose generator
has no random transformation (ImageDataGenerator.is_random False, e.g. rescale only), and
when the model has frozen layers at its start; otherwise `fit` runs the usual pass, and
`reason` says why.
"""
from __future__ import annotations

import os
import tempfile
import zlib

import numpy as np

from minicnn.metrics import accumulate, means

__all__ = ["ValidationCache", "DEFAULT_MAX_MEMORY"]

DEFAULT_MAX_MEMORY = 128 * 2 ** 20       # bytes of prefix outputs kept in memory at most


class ValidationCache:
    """Prefix outputs of a fixed validation set, for Sequential.fit(validation_cache=...).

    Args:
        folder: where the outputs go when they exceed max_memory (the run folder); None:
            the system's temporary folder. The file, validation_cache.npy (a temporary name
            when folder is None), is deleted by close(), which fit calls when it ends.
        max_memory: the largest size in bytes kept in memory.

    Attributes: used (whether the last validation pass ran from the cache), reason (why
    not, when it did not), fills (how many times the prefix outputs were computed), cut
    (index of the first leaf run on every pass), from_layer (that leaf's name), path (the
    spill file or None).
    """

    def __init__(self, folder=None, max_memory=DEFAULT_MAX_MEMORY):
        if isinstance(max_memory, bool) or not isinstance(max_memory, (int, np.integer)) \
                or max_memory < 0:
            raise ValueError(f"ValidationCache: `max_memory` must be a number of bytes >= 0; "
                             f"received {max_memory!r}")
        if folder is not None and not os.path.isdir(folder):
            raise FileNotFoundError(f"ValidationCache: `folder` '{folder}' is not a folder")
        self.folder, self.max_memory = folder, int(max_memory)
        self.used, self.reason, self.fills, self.cut, self.path = False, None, 0, None, None
        self.from_layer = None
        self._state = None
        self._outputs = self._labels = self._present = None

    def __repr__(self):
        where = f"spilled to {self.path}" if self.path else "in memory"
        return (f"<ValidationCache cut={self.cut} fills={self.fills} used={self.used} "
                f"{where}{'' if self.reason is None else ', ' + self.reason}>")

    def evaluate(self, model, batches):
        """The validation logs {name: mean} of one pass from the cache, or None when the
        cache does not apply (self.reason then says why) and the usual pass must run."""
        self.used = False
        self.reason = batches.cache_obstacle()
        if self.reason is None:
            leaves = model.leaf_layers()
            cut = _cut(model, leaves)
            if cut == 0:
                self.reason = "the first layer is trainable: there is no frozen prefix"
        if self.reason is not None:
            return None
        state = _state(leaves, cut)
        if state != self._state:
            self._fill(batches, leaves, cut)
            self._state, self.cut, self.from_layer = state, cut, leaves[cut].name
        self.used = True
        return self._pass(model, batches, leaves[cut:])

    def close(self):
        """Drop the stored outputs and delete the spill file."""
        self._outputs = self._labels = self._present = self._state = None
        if self.path is not None:
            path, self.path = self.path, None
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    # -- filling and running ---------------------------------------------------------
    def _fill(self, batches, leaves, cut):
        self.close()
        n, size = batches.samples, batches.batch_size
        for start in range(0, n, size):
            x, y, kept = batches.load(np.arange(start, min(n, start + size)))
            if not len(kept):
                continue
            for leaf in leaves[:cut]:
                x = leaf.forward(x, training=False, keep_cache=False)
            if self._outputs is None:
                self._allocate(n, x, y)
            self._outputs[kept] = x
            self._labels[kept] = y
            self._present[kept] = True
        if self._outputs is None:
            raise OSError(f"validation data: none of the {n} samples could be read")
        if isinstance(self._outputs, np.memmap):
            self._outputs.flush()
        self.fills += 1

    def _allocate(self, n, x, y):
        shape, dtype = (n,) + x.shape[1:], x.dtype
        if n * x[0].nbytes <= self.max_memory:
            self._outputs = np.empty(shape, dtype)
        else:
            if self.folder is not None:
                self.path = os.path.join(self.folder, "validation_cache.npy")
            else:
                handle, self.path = tempfile.mkstemp(prefix="minicnn-validation-",
                                                     suffix=".npy")
                os.close(handle)
            self._outputs = np.lib.format.open_memmap(self.path, mode="w+", dtype=dtype,
                                                      shape=shape)
        self._labels = np.zeros((n,) + y.shape[1:], y.dtype)
        self._present = np.zeros(n, dtype=bool)

    def _pass(self, model, batches, suffix):
        sums: dict = {}
        for index_array in batches.index_batches():
            kept = index_array[self._present[index_array]]
            if not len(kept):
                raise OSError(f"validation data: every sample of a batch is unreadable "
                              f"(samples {index_array.tolist()}), and a batch cannot be empty")
            out, y = np.asarray(self._outputs[kept]), self._labels[kept]
            for leaf in suffix:
                out = leaf.forward(out, training=False, keep_cache=False)
            loss, _, _ = model._loss_and_grad(y, out)
            accumulate(sums, model._step_metrics(y, out, loss))
        return means(sums)


def _cut(model, leaves):
    """Index of the first leaf holding one of the model's trainable weights (a layer inside
    a frozen Sequential is frozen whatever its own flag); at most the last leaf's index."""
    trainable = {id(weight) for weight in model.trainable_weights}
    for i, leaf in enumerate(leaves):
        if any(id(weight) in trainable for weight in leaf.params):
            return i
    return len(leaves) - 1


def _state(leaves, cut):
    """What the prefix outputs depend on: the prefix's layers (and so the cut) and a CRC-32
    of every weight in it (a weight changed in place changes the CRC)."""
    crc = 0
    for leaf in leaves[:cut]:
        for weight in leaf.params:
            crc = zlib.crc32(np.ascontiguousarray(weight).view(np.uint8).ravel(), crc)
    return tuple(leaves[:cut]), crc
