"""minicnn.registry: the classes a model file names, and the file formats models use."""
import pytest

import minicnn as mc
from minicnn import registry
from minicnn.applications.vgg16 import VGG16Model
from minicnn.layers import Layer


@pytest.fixture
def table(monkeypatch):
    """The registry's tables as they are, restored after the test."""
    monkeypatch.setattr(registry, "_CLASSES", dict(registry._CLASSES))
    monkeypatch.setattr(registry, "_FORMATS", dict(registry._FORMATS))


def test_every_layer_and_model_class_is_registered_under_its_keras_name():
    layers = registry.registered(Layer)
    assert {"Conv2D", "Dense", "MaxPooling2D", "Flatten", "Dropout", "Activation",
            "Sequential", "Functional"} <= set(layers)
    assert all(registry.lookup(name) is cls for name, cls in layers.items())
    assert registry.lookup("Conv2D") is mc.layers.Conv2D
    assert registry.lookup("NoSuchLayer") is None


def test_a_class_for_one_model_name_is_found_only_under_that_name():
    assert registry.lookup("Functional", "vgg16") is VGG16Model
    assert registry.lookup("Functional", "my_base") is mc.model.Functional
    assert registry.lookup("Functional") is mc.model.Functional
    assert VGG16Model not in registry.registered().values()


def test_a_name_taken_by_another_class_is_refused(table):
    @registry.register("Widget")
    class Widget(Layer):
        pass

    registry.register("Widget")(Widget)           # the same class again: allowed
    with pytest.raises(ValueError, match="'Widget' already names .*Widget; received .*Other"):
        @registry.register("Widget")
        class Other(Layer):
            pass
    assert registry.lookup("Widget") is Widget


def test_models_reach_the_file_formats_through_the_registry(table, tmp_path):
    calls = []

    def save(model, path, **options):
        calls.append((model, path, options))

    registry.register_format("model", registry.FileFormat("test format", save, None))
    model = mc.Sequential([mc.layers.Dense(2, input_shape=(3,))])
    model.save(tmp_path / "m.h5", include_optimizer=False)
    assert calls == [(model, tmp_path / "m.h5", {"include_optimizer": False})]

    registry._FORMATS.clear()
    with pytest.raises(LookupError, match="no weights file format is registered"):
        model.save_weights(tmp_path / "w.h5")
