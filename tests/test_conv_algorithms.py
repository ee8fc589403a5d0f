"""How a Conv2D computes: its algorithm is one object, chosen when the layer is built, shown
by the summary, overridable per layer, and settings change only the layers built under them.

The numbers each algorithm computes are checked in test_layers.py (the contract over every
algorithm), test_winograd.py and test_winograd4.py.
"""
import numpy as np
import pytest

import minicnn as mc
from minicnn import layers
from minicnn.layers import conv_algorithms
from minicnn.layers.conv_algorithms import ALGORITHMS, Im2Col, conv_settings, current_settings


def conv(c_in=32, k=3, strides=1, activation="relu", filters=256, **kwargs):
    # 256 filters: a kernel over im2col_bands.BANDS_MAX_KERNEL_VALUES, which at inference
    # would take im2col's bands whatever the settings
    layer = layers.Conv2D(filters, k, strides=strides, activation=activation, **kwargs)
    layer.build((None, 12, 12, c_in))
    return layer


def test_auto_takes_winograd_for_3x3_stride_1_kernels_over_enough_channels():
    assert conv().plan.describe() == "winograd4"
    assert conv(c_in=31).plan.describe() == "im2col"         # too thin for BLAS to gain
    assert conv(k=5).plan.describe() == "im2col"
    assert conv(strides=2).plan.describe() == "im2col"
    assert conv(activation="softmax").plan.describe() == "im2col"


def test_auto_takes_im2col_at_inference_for_a_kernel_the_bands_take():
    assert conv(filters=227).plan.describe() == "winograd4 (training), im2col (inference)"
    assert conv(filters=228).plan.describe() == "winograd4"       # 3 x 3 x 32 x 228 > 64 K
    assert conv(filters=8, activation="softmax").plan.describe() == "im2col"
    assert conv(filters=8, algorithm="winograd4").plan.describe() == "winograd4"


def test_auto_takes_im2col_at_inference_for_outputs_of_at_most_9x9_pixels():
    def built(h, w, **kwargs):
        layer = layers.Conv2D(256, 3, activation="relu", **kwargs)
        layer.build((None, h + 2, w + 2, 32))
        return layer
    assert conv_algorithms.SMALL_OUTPUT_PIXELS == 81
    assert built(9, 9).plan.describe() == "winograd4 (training), im2col (inference)"
    assert built(27, 3).plan.describe() == "winograd4 (training), im2col (inference)"
    assert built(10, 9).plan.describe() == "winograd4"          # 90 pixels: Winograd
    assert built(9, 9, algorithm="winograd4").plan.describe() == "winograd4"   # asked for
    same = built(9, 9, algorithm="winograd4")
    same.algorithm = "auto"                                     # re-planned with its output
    assert same.plan.inference is ALGORITHMS["im2col"]


def test_the_settings_apply_to_the_layers_built_under_them_only():
    before = conv()
    with conv_settings(winograd_tile=2, workspace_limit=2 ** 20) as settings:
        assert settings is current_settings() and settings.winograd_tile == 2
        inside = conv()
        with conv_settings(winograd_min_channels=None):
            off = conv()
    after = conv()
    assert [layer.plan.describe() for layer in (before, inside, off, after)] == \
        ["winograd4", "winograd2", "im2col", "winograd4"]
    assert inside.plan.workspace_limit == 2 ** 20
    assert before.plan.workspace_limit == after.plan.workspace_limit == 256 * 2 ** 20


def test_the_set_functions_change_the_layers_built_afterwards_and_return_the_previous():
    built = conv()
    previous = layers.set_winograd_tile(2)
    try:
        assert previous == 4
        assert conv().plan.describe() == "winograd2"
        assert built.plan.describe() == "winograd4"            # built before: unchanged
    finally:
        assert layers.set_winograd_tile(previous) == 2
    assert conv().plan.describe() == "winograd4"


def test_an_algorithm_asked_for_is_kept_whatever_the_settings():
    with conv_settings(winograd_min_channels=None):
        forced = conv(c_in=3, algorithm="winograd4")
    assert forced.plan.describe() == "winograd4"
    forced.algorithm = "im2col"                                # overridden per layer
    assert forced.plan.describe() == "im2col" and forced.algorithm == "im2col"
    assert forced.get_config()["algorithm"] == "im2col"
    again = layers.Conv2D.from_config(forced.get_config())
    again.build((None, 12, 12, 3))
    assert again.plan.describe() == "im2col"


def test_bad_algorithms_and_settings_are_refused_with_the_layer_named():
    with pytest.raises(ValueError, match=r"Conv2D 'c': `algorithm` must be 'auto' or one of "
                                         r"'im2col', 'winograd4', 'winograd2'; received 'fft'"):
        layers.Conv2D(4, 3, name="c", algorithm="fft")
    layer = layers.Conv2D(4, 5, name="five", algorithm="winograd4")
    with pytest.raises(ValueError, match=r"Conv2D 'five': algorithm='winograd4' does not "
                                         r"apply: .*3x3 kernels at stride 1.*\(5, 5\)"):
        layer.build((None, 9, 9, 2))
    with pytest.raises(TypeError, match="unknown setting.*'tile'"):
        with conv_settings(tile=2):
            pass
    with pytest.raises(ValueError, match="workspace_limit.*received -1"):
        with conv_settings(workspace_limit=-1):
            pass
    assert current_settings() == conv_algorithms.ConvSettings()


def test_the_summary_shows_each_convolutions_algorithm():
    base = mc.Sequential([layers.Conv2D(32, 3, activation="relu", input_shape=(14, 14, 3)),
                          layers.Conv2D(256, 3, activation="relu")], name="base")
    model = mc.Sequential([base, layers.Flatten(), layers.Dense(1, activation="sigmoid")])
    lines = []
    model.summary(print_fn=lines.append, show_algorithms=True)
    text = lines[0]
    assert "Algorithm" in text.splitlines()[2]
    assert "im2col x1, winograd4 x1" in text
    lines.clear()
    base.summary(print_fn=lines.append, show_algorithms=True)
    rows = [line for line in lines[0].splitlines() if "(Conv2D)" in line]
    assert rows[0].endswith("im2col") and rows[1].endswith("winograd4")
    lines.clear()
    model.summary(print_fn=lines.append)
    assert "Algorithm" not in lines[0]                         # Keras's table by default


def test_a_new_algorithm_is_one_class_and_one_registration(monkeypatch):
    calls = []

    class Counted(Im2Col):
        name = "counted"

        def _forward_whole(self, *args):
            calls.append("forward")
            return super()._forward_whole(*args)

        def _backward_whole(self, *args):
            calls.append("backward")
            return super()._backward_whole(*args)

    monkeypatch.setitem(ALGORITHMS, "counted", Counted())
    layer = layers.Conv2D(3, 3, activation="relu", algorithm="counted", dtype="float64")
    reference = layers.Conv2D(3, 3, activation="relu", algorithm="im2col", dtype="float64")
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 2))
    for each in (layer, reference):
        each.build((None, 6, 6, 2), rng=np.random.default_rng(1))
    dy = np.ones((2, 4, 4, 3))
    np.testing.assert_array_equal(layer.forward(x, training=True),
                                  reference.forward(x, training=True))
    np.testing.assert_array_equal(layer.backward(dy), reference.backward(dy))
    assert calls == ["forward", "backward"]
    with pytest.raises(ValueError, match="other than 'auto'"):
        conv_algorithms.register_algorithm(type("Nameless", (Im2Col,), {"name": ""})())
