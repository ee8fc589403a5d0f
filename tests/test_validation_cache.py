"""The validation cache: the same validation numbers as the uncached pass, from the stored
outputs of the frozen layers; the iterator moved exactly as without it; spilled to a file when
large; computed again when anything below the cut changes; not used where it cannot apply."""
import shutil
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minicnn as mc
from minicnn import layers as L
from minicnn.callbacks import Callback
from minicnn.datasets import sample_dir
from minicnn.preprocessing.image import ImageDataGenerator
from minicnn.validation_cache import ValidationCache, _cut

VAL_KEYS = ("val_loss", "val_acc")


def _model(image, channels, frozen, nested, dtype="float64", seed=0):
    """conv, pool, conv (same), flatten, dense, dense-sigmoid; the first `frozen` leaves
    frozen, as a frozen nested Sequential of the first three when `nested`."""
    mc.clear_session()
    first = [L.Conv2D(3, 3, activation="relu", input_shape=(image, image, channels),
                      dtype=dtype),
             L.MaxPooling2D(2, dtype=dtype),
             L.Conv2D(2, 3, padding="same", activation="relu", dtype=dtype)]
    rest = [L.Flatten(dtype=dtype), L.Dense(4, activation="relu", dtype=dtype),
            L.Dense(1, activation="sigmoid", dtype=dtype)]
    if nested:
        base = mc.Sequential(first, name="base", seed=seed + 1)
        base.trainable = False
        model = mc.Sequential([base] + rest, seed=seed)
    else:
        model = mc.Sequential(first + rest, seed=seed)
        for layer in model.layers[:frozen]:
            layer.trainable = False
    model.compile(mc.optimizers.RMSprop(learning_rate=1e-2), "binary_crossentropy", ["acc"])
    return model


def _arrays(n, image, channels, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, image, image, channels)).astype(dtype)
    return x, (rng.random(n) > 0.5).astype(dtype)


def _assert_same_validation(cached, uncached, rtol):
    for key in VAL_KEYS:
        np.testing.assert_allclose(cached.history[key], uncached.history[key], rtol=rtol,
                                   atol=0)
    for key in ("loss", "acc"):                      # training itself is untouched
        assert cached.history[key] == uncached.history[key]


@settings(max_examples=15, deadline=None)
@given(n_val=st.integers(1, 19), batch=st.integers(1, 8), image=st.integers(6, 9),
       channels=st.integers(1, 3), frozen=st.integers(1, 5), nested=st.booleans(),
       steps=st.one_of(st.none(), st.integers(1, 3)), seed=st.integers(0, 99))
def test_arrays_give_the_uncached_numbers(n_val, batch, image, channels, frozen, nested, steps,
                                          seed):
    x, y = _arrays(12, image, channels, "float64", seed)
    xv, yv = _arrays(n_val, image, channels, "float64", seed + 1)
    runs = []
    for cache in (None, ValidationCache(max_memory=10 ** 9)):
        model = _model(image, channels, frozen, nested, seed=seed)
        history = model.fit(x, y, batch_size=5, epochs=2, verbose=0, validation_data=(xv, yv),
                            validation_batch_size=batch, validation_steps=steps,
                            validation_cache=cache)
        runs.append(history)
    _assert_same_validation(runs[1], runs[0], rtol=1e-12)
    assert cache.used and cache.fills == 1 and cache.path is None
    # The first leaf from `frozen` on that holds a weight (the pooling and Flatten hold none).
    assert cache.cut == (4 if nested else {1: 2, 2: 2, 3: 4, 4: 4, 5: 5}[frozen])
    cache.close()


def _photos(tmp_path, per_class=12, broken=False):
    """validation/{cats,dogs}: real photos of the bundled sample (and an unreadable one)."""
    root = tmp_path / "validation"
    source = sample_dir() / "validation"
    for label in ("cats", "dogs"):
        (root / label).mkdir(parents=True)
        for photo in sorted((source / label).iterdir())[:per_class]:
            shutil.copy(photo, root / label / photo.name)
    if broken:
        (root / "dogs" / "dog.broken.jpg").write_text("not a JPEG")
    return root


def _fit_on_photos(folder, cache, steps, epochs=3, callbacks=None, random=False):
    rng = np.random.default_rng(0)
    x = rng.random((10, 20, 20, 3)).astype("float32")
    y = (rng.random(10) > 0.5).astype("float32")
    datagen = ImageDataGenerator(rescale=1 / 255, horizontal_flip=random)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        validation = datagen.flow_from_directory(folder, target_size=(20, 20), batch_size=5,
                                                 class_mode="binary", shuffle=True, seed=3)
        model = _model(20, 3, frozen=3, nested=True, dtype="float32")
        history = model.fit(x, y, batch_size=5, epochs=epochs, verbose=0,
                            validation_data=validation, validation_steps=steps,
                            validation_cache=cache, callbacks=callbacks)
    messages = [str(w.message) for w in caught if "unreadable" in str(w.message)]
    validation.close()
    return history, validation, messages


@pytest.mark.parametrize("broken", [False, True])
@pytest.mark.parametrize("steps", [3, 7])
def test_photos_give_the_uncached_numbers_and_the_iterator_moves_the_same(tmp_path, capsys,
                                                                          broken, steps):
    folder = _photos(tmp_path, broken=broken)
    cache = ValidationCache()
    plain, plain_it, plain_warned = _fit_on_photos(folder, None, steps)
    cached, cached_it, cached_warned = _fit_on_photos(folder, cache, steps)
    _assert_same_validation(cached, plain, rtol=1e-5)
    assert cache.used and cache.fills == 1
    assert (cached_it.batch_index, cached_it.total_batches_seen) == \
        (plain_it.batch_index, plain_it.total_batches_seen) == ((3 * steps) % 5, 3 * steps)
    np.testing.assert_array_equal(cached_it.index_array, plain_it.index_array)
    assert cached_warned == plain_warned and len(plain_warned) == int(broken)
    cache.close()


def test_large_outputs_spill_to_a_file_in_the_folder_deleted_by_close(tmp_path):
    spill = tmp_path / "validation_cache.npy"
    seen = []

    class Watch(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(spill.is_file())

    x, y = _arrays(8, 8, 2, "float64", 0)
    xv, yv = _arrays(11, 8, 2, "float64", 1)
    runs = []
    for cache in (None, ValidationCache(folder=tmp_path, max_memory=0)):
        model = _model(8, 2, frozen=3, nested=False)
        runs.append(model.fit(x, y, batch_size=4, epochs=2, verbose=0, validation_batch_size=3,
                              validation_data=(xv, yv), validation_cache=cache,
                              callbacks=[Watch()]))
    _assert_same_validation(runs[1], runs[0], rtol=1e-12)
    assert seen == [False, False, True, True] and cache.path == str(spill)
    stored = np.load(spill)
    assert stored.shape == (11, 18)                 # Flatten's output: 3 * 3 * 2
    cache.close()
    assert not spill.exists() and cache.path is None


def test_validation_cache_true_makes_one_for_the_fit_and_closes_it():
    x, y = _arrays(8, 8, 2, "float64", 0)
    xv, yv = _arrays(6, 8, 2, "float64", 1)
    plain = _model(8, 2, frozen=1, nested=False).fit(
        x, y, batch_size=4, epochs=2, verbose=0, validation_data=(xv, yv))
    cached = _model(8, 2, frozen=1, nested=False).fit(
        x, y, batch_size=4, epochs=2, verbose=0, validation_data=(xv, yv),
        validation_cache=True)
    _assert_same_validation(cached, plain, rtol=1e-12)


class _HalveKernel(Callback):
    """Changes a frozen weight in place after the first epoch."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            self.model.layers[0].layers[0].kernel *= 0.5


def test_a_changed_frozen_weight_recomputes_the_outputs(tmp_path, capsys):
    folder = _photos(tmp_path)
    cache = ValidationCache()
    plain, _, _ = _fit_on_photos(folder, None, 4, callbacks=[_HalveKernel()])
    cached, _, _ = _fit_on_photos(folder, cache, 4, callbacks=[_HalveKernel()])
    _assert_same_validation(cached, plain, rtol=1e-5)
    assert cache.fills == 2
    assert plain.history["val_loss"][1] != plain.history["val_loss"][0]


def test_unfreezing_moves_the_cut_and_recomputes():
    x, y = _arrays(8, 8, 2, "float64", 0)
    xv, yv = _arrays(9, 8, 2, "float64", 1)
    histories = []
    for cache in (None, ValidationCache()):
        model = _model(8, 2, frozen=3, nested=True)
        first = model.fit(x, y, batch_size=4, epochs=1, verbose=0, validation_data=(xv, yv),
                          validation_cache=cache)
        base = model.layers[0]
        base.trainable = True                        # as the lecture's fine-tuning does
        base.layers[0].trainable = False
        model.compile(mc.optimizers.RMSprop(learning_rate=1e-2), "binary_crossentropy",
                      ["acc"])
        second = model.fit(x, y, batch_size=4, epochs=2, verbose=0, validation_data=(xv, yv),
                           validation_cache=cache)
        histories.append((first, second))
    for cached, plain in zip(histories[1], histories[0]):
        _assert_same_validation(cached, plain, rtol=1e-12)
    assert cache.cut == 2 and cache.fills == 2


def test_where_it_cannot_apply_the_usual_pass_runs_and_reason_says_why(tmp_path, capsys):
    folder = _photos(tmp_path, per_class=4)
    cache = ValidationCache()
    plain, _, _ = _fit_on_photos(folder, None, 2, epochs=2, random=True)
    cached, _, _ = _fit_on_photos(folder, cache, 2, epochs=2, random=True)
    _assert_same_validation(cached, plain, rtol=0)
    assert not cache.used and "random transformations" in cache.reason

    x, y = _arrays(8, 8, 2, "float64", 0)
    model = _model(8, 2, frozen=0, nested=False)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, validation_data=(x, y),
              validation_cache=cache)
    assert not cache.used and "no frozen prefix" in cache.reason

    def batches():
        while True:
            yield x[:4], y[:4]

    model.layers[0].trainable = False
    model.compile("rmsprop", "binary_crossentropy", ["acc"])
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, validation_data=batches(),
              validation_steps=2, validation_cache=cache)
    assert not cache.used and "not a minicnn iterator" in cache.reason
    assert cache.fills == 0


@pytest.mark.parametrize("bad", ["yes", 1, ValidationCache])
def test_validation_cache_must_be_none_true_or_a_cache(bad):
    x, y = _arrays(4, 8, 2, "float64", 0)
    with pytest.raises(TypeError, match="validation_cache must be None, True or a "
                                        "minicnn.ValidationCache"):
        _model(8, 2, 1, False).fit(x, y, epochs=1, verbose=0, validation_data=(x, y),
                                   validation_cache=bad)


@pytest.mark.parametrize("max_memory", [-1, 1.5, True])
def test_bad_cache_arguments_are_refused(tmp_path, max_memory):
    with pytest.raises(ValueError, match="max_memory"):
        ValidationCache(max_memory=max_memory)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        ValidationCache(folder=tmp_path / "missing")


def test_the_cut_is_the_first_leaf_with_a_trainable_weight_and_at_most_the_last():
    model = _model(8, 2, frozen=3, nested=True)
    model.build((None, 8, 8, 2))
    leaves = model.leaf_layers()
    assert [type(leaf).__name__ for leaf in leaves] == [
        "Conv2D", "MaxPooling2D", "Conv2D", "Flatten", "Dense", "Dense"]
    assert _cut(model, leaves) == 4
    model.layers[0].layers[2].trainable = True       # still frozen: its Sequential is
    assert _cut(model, leaves) == 4
    model.trainable = False
    assert _cut(model, leaves) == 5


def test_frozen_layers_on_the_training_path_keep_nothing_for_backward():
    model = _model(8, 2, frozen=3, nested=True)
    x, _ = _arrays(4, 8, 2, "float64", 0)
    model.input_grad_needed = False
    model.forward(x, training=True)
    leaves = model.leaf_layers()
    # Below the first trainable Dense, nothing is kept (Flatten need not give dL/dx either).
    assert all(leaf._cache is None for leaf in leaves[:4])
    assert all(leaf._cache is not None for leaf in leaves[4:])
