"""minicnn.profile and `minicnn profile`: per-layer times inside real steps, the FLOPs counted
as the direct convolution's, and a profile that changes no number the model computes."""
import json

import numpy as np
import pytest

from minicnn import cli, layers, optimizers, profile
from minicnn.model import Sequential


def small_model(seed=0):
    model = Sequential([
        layers.Conv2D(4, 3, activation="relu", input_shape=(12, 12, 3)),
        layers.MaxPooling2D(2),
        layers.Conv2D(6, (2, 3), padding="same", activation="relu"),
        layers.Flatten(),
        layers.Dense(5, activation="relu"),
        layers.Dense(1, activation="sigmoid")], seed=seed)
    model.compile(optimizers.RMSprop(1e-3), "binary_crossentropy", ["acc"])
    return model


def test_flops_are_the_direct_convolution_s_and_the_dense_products():
    model = small_model()
    conv, _, conv2, _, dense, head = model.layers
    assert profile.forward_flops(conv, 7) == 2 * 7 * 10 * 10 * 3 * 3 * 3 * 4
    assert profile.forward_flops(conv2, 7) == 2 * 7 * 5 * 5 * 2 * 3 * 4 * 6
    assert profile.forward_flops(dense, 7) == 2 * 7 * (5 * 5 * 6) * 5
    assert profile.forward_flops(head, 7) == 2 * 7 * 5 * 1
    assert profile.forward_flops(model.layers[1], 7) == 0


def test_a_profile_has_every_layer_and_the_backward_s_flops():
    model = small_model()
    x, y = profile.random_batch(model, 3)
    result = profile.profile(model, x, y, steps=2, warmup=1, sgemm=100.0)
    assert [r.name for r in result.layers] == [layer.name for layer in model.layers]
    conv, pool, conv2, flat, dense, head = result.layers
    # The first layer needs no input gradient: dW only. The others: dW and dX.
    assert conv.backward_flops == conv.forward_flops > 0
    for row in (conv2, dense, head):
        assert row.backward_flops == 2 * row.forward_flops > 0
    assert pool.forward_flops == pool.backward_flops == 0
    assert all(r.forward_ms > 0 and r.backward_ms > 0 for r in (conv, pool, conv2, dense))
    timed = sum(r.forward_ms + r.backward_ms for r in result.layers) + result.optimizer_ms
    assert result.optimizer_ms > 0 and timed <= result.step_ms * 1.5
    text = profile.format_profile(result)
    assert "conv2d" in text.split("\n")[3] and "optimizer update" in text
    assert "% of sgemm" in text and json.dumps(result.to_dict())


def test_profiling_changes_no_number():
    profiled, plain = small_model(seed=3), small_model(seed=3)
    x, y = profile.random_batch(plain, 4, seed=1)
    profile.profile(profiled, x, y, steps=2, warmup=1, sgemm=1.0)
    for _ in range(3):
        plain.train_on_batch(x, y)
    for a, b in zip(profiled.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)
    # and leaves no wrapper behind
    assert all("forward" not in layer.__dict__ and "backward" not in layer.__dict__
               for layer in profiled.layers)
    assert "apply" not in profiled.optimizer.__dict__


def test_a_nested_frozen_base_counts_layer_by_layer():
    base = Sequential([layers.Conv2D(4, 3, activation="relu", input_shape=(10, 10, 3),
                                     name="b_conv1"),
                       layers.MaxPooling2D(2, name="b_pool"),
                       layers.Conv2D(4, 3, activation="relu", name="b_conv2")], name="base")
    model = Sequential([base, layers.Flatten(), layers.Dense(1, activation="sigmoid")], seed=0)
    base.trainable = False
    model.compile("rmsprop", "binary_crossentropy")
    x, y = profile.random_batch(model, 2)
    result = profile.profile(model, x, y, steps=1, warmup=1, sgemm=1.0)
    rows = {r.name: r for r in result.layers}
    assert list(rows)[:3] == ["b_conv1", "b_pool", "b_conv2"]
    assert rows["b_conv1"].forward_ms > 0 and rows["b_conv1"].backward_flops == 0
    assert rows["b_conv1"].backward_ms == 0           # frozen: forward only
    predict = profile.profile(model, x, mode="predict", steps=1, warmup=0, sgemm=1.0)
    assert all(r.backward_ms == 0 for r in predict.layers) and predict.optimizer_ms == 0


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "fit"}, "mode must be 'train' or 'predict'"),
    ({"steps": 0}, "steps >= 1"),
    ({"y": None}, "needs labels y"),
])
def test_bad_arguments_say_what_was_expected(kwargs, message):
    model = small_model()
    x, y = profile.random_batch(model, 2)
    args = {"y": y, **kwargs}
    with pytest.raises(ValueError, match=message):
        profile.profile(model, x, **args)


def test_an_unknown_model_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="cnn, cnn-dropout, vgg16"):
        profile.model_for("resnet")


def test_the_command_profiles_a_model_file(tmp_path, capsys):
    model = small_model()
    path = str(tmp_path / "small.h5")
    model.save(path)
    out_json = tmp_path / "profile.json"
    assert cli.main(["profile", path, "--batch-size", "2", "--steps", "1", "--warmup", "1",
                     "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "train, batch 2" in out and "predict, batch 2" in out and "conv2d" in out
    report = json.loads(out_json.read_text())
    assert [p["mode"] for p in report["profiles"]] == ["train", "predict"]
    assert len(report["profiles"][0]["layers"]) == 6


def test_the_command_profiles_the_lecture_cnn_by_name(capsys):
    assert cli.main(["profile", "cnn", "--mode", "predict", "--batch-size", "1",
                     "--steps", "1", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    assert "conv2d_3 (Conv2D)" in out and "(None, 148, 148, 32)" in out
