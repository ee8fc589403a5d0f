"""The one table through which file formats find classes, and models find file formats.

Each layer and model class joins the table where it is defined, under the name Keras writes
in a model file's config ("Conv2D", "Sequential", ...):

    @register()
    class Dense(KernelLayer): ...

    @register("Functional", model_name="vgg16")    # Keras's functional VGG16, by its name
    class VGG16Model(Functional): ...

and a reader asks `lookup("Dense")` (None when no class has that name). The contract test
runs over every registered layer, so a new layer gets its checks by joining here.

The file formats join the other table, so that Sequential.save and load_weights reach the
code that writes files without importing it (the models sit below the formats):

    register_format("model", FileFormat("Keras HDF5 model file", save_model, load_model))
    file_format("model").save(model, path)

The package itself (minicnn/__init__.py) imports every module that registers something, so
the tables are complete once `minicnn` is imported.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

_CLASSES: dict[tuple[str, str | None], type] = {}
_FORMATS: dict[str, "FileFormat"] = {}


def register(name: str | None = None, *, model_name: str | None = None):
    """A class decorator: the class joins the table as `name` (default: its own name). With
    model_name it is the class for configs of that class name whose model has that name."""
    def add(cls):
        key = (name or cls.__name__, model_name)
        existing = _CLASSES.get(key)
        if existing is not None and _qualname(existing) != _qualname(cls):
            raise ValueError(f"register: {_describe(key)} already names {_qualname(existing)}; "
                             f"received {_qualname(cls)}")
        _CLASSES[key] = cls
        return cls
    return add


def lookup(name: str, model_name: str | None = None) -> type | None:
    """The class registered as `name` (for a model called model_name, if one is), or None."""
    return _CLASSES.get((name, model_name)) or _CLASSES.get((name, None))


def registered(base: type = object) -> dict[str, type]:
    """Every registered class that is a subclass of `base`, by its registered name (the
    classes registered for one model name only left out)."""
    return {name: cls for (name, model_name), cls in sorted(_CLASSES.items(),
                                                            key=lambda item: item[0][0])
            if model_name is None and issubclass(cls, base)}


class FileFormat(NamedTuple):
    """A file format: `save(model, path, **options)` and `load(...)` as its module defines."""
    name: str
    save: Callable
    load: Callable


def register_format(kind: str, file_format: FileFormat) -> None:
    """The format that writes and reads files of this kind ('model', 'weights')."""
    _FORMATS[kind] = file_format


def file_format(kind: str) -> FileFormat:
    try:
        return _FORMATS[kind]
    except KeyError:
        raise LookupError(f"no {kind} file format is registered (known: "
                          f"{', '.join(sorted(_FORMATS)) or 'none'}); `import minicnn` "
                          f"registers them") from None


def _qualname(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _describe(key) -> str:
    name, model_name = key
    return repr(name) + (f" (model {model_name!r})" if model_name else "")
