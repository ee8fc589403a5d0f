"""The package's layout: imports run one way, and there are no import circles.

Every `import` and `from ... import` of every module (those inside functions too) is read
from the source, and each module is placed on a level:

    kernels  <-  support  <-  layers  <-  models  <-  io, preprocessing, applications
             <-  flows  <-  cli (and the package itself, which gathers everything)

A module may import modules of its own level or below, never above; and among all modules
the imports form no circle. CONTRIBUTING.md shows the same picture.
"""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "minicnn"

# Module name prefix -> level. The longest matching prefix wins.
LEVELS = {
    "minicnn.kernels": 0, "minicnn.runtime": 0,
    # Small helpers that layers and everything above use; none knows a layer or a model.
    "minicnn.shapes": 1, "minicnn.activations": 1, "minicnn.initializers": 1,
    "minicnn.losses": 1, "minicnn.metrics": 1, "minicnn.optimizers": 1,
    "minicnn.callbacks": 1, "minicnn.progress": 1, "minicnn.registry": 1,
    "minicnn.plotting": 1, "minicnn.datasets": 1, "minicnn.gradcheck": 1,
    "minicnn.version": 1, "minicnn.atomic": 1,
    "minicnn.layers": 2,
    "minicnn.model": 3, "minicnn.validation_cache": 3,
    "minicnn.io": 4, "minicnn.preprocessing": 4, "minicnn.applications": 4,
    "minicnn.flows": 5, "minicnn.whole_lecture": 5, "minicnn.profile": 5,
    "minicnn.visualize": 5,
    "minicnn.cli": 6, "minicnn.__main__": 6, "minicnn": 6,
}
NAMES = ["kernels", "support", "layers", "models", "io, preprocessing, applications",
         "flows", "cli"]


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def level(module: str) -> int:
    prefixes = [p for p in LEVELS if module == p or module.startswith(p + ".")]
    if not prefixes:
        raise AssertionError(f"{module} has no level in LEVELS; add it where it belongs")
    return LEVELS[max(prefixes, key=len)]


def modules() -> dict:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: pathlib.Path, known) -> set:
    """The minicnn modules a file imports (a `from package import name` that names a
    submodule counts as importing that submodule)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "minicnn"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == "minicnn":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
    return found


def graph() -> dict:
    known = modules()
    return {name: imports_of(path, known) - {name} for name, path in known.items()}


def test_every_module_has_a_level():
    for name in modules():
        level(name)


def test_no_module_imports_one_above_it():
    upward = sorted(f"{a} ({NAMES[level(a)]}) imports {b} ({NAMES[level(b)]})"
                    for a, targets in graph().items() for b in targets if level(b) > level(a))
    assert not upward, "imports that run up:\n" + "\n".join(upward)


def find_circle(edges: dict):
    """One circle of the graph as a list of modules, or None (depth-first search)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                circle = visit(target)
                if circle:
                    return circle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state:
            circle = visit(node)
            if circle:
                return circle
    return None


def test_no_import_circles():
    edges = graph()
    # The package imports its subpackages' __init__ and they import the package's modules:
    # a package's own __init__ is not a circle with the modules inside it.
    edges = {a: {b for b in targets if not a.startswith(b + ".")} for a, targets in edges.items()}
    circle = find_circle(edges)
    assert circle is None, "import circle: " + " -> ".join(circle)


def test_the_checks_catch_what_they_look_for():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert level("minicnn.layers.conv") == 2 and level("minicnn.atomic") == 1
    assert level("minicnn.io.model_file") == 4
    with pytest.raises(AssertionError, match="no level"):
        level("somewhere.else")
