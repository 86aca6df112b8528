"""The layout: every import of edgebnn's own modules points down the flow, none runs in a circle, and an import
inside a function is only there to keep TensorFlow, Larq or matplotlib from loading before they are needed, saying
so with a ``# lazy:`` comment. Read from the source (``ast``), so an import hidden in a function counts too."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "edgebnn"

# The flow, bottom first: a module may import its own stage and the stages before it, never one after it.
FLOW = [
    ("floor", ["edgebnn.errors", "edgebnn.version", "edgebnn.inputs", "edgebnn.outputs", "edgebnn.progress",
               "edgebnn.quiet", "edgebnn.machine", "edgebnn.runlock", "edgebnn.safe_pickle", "edgebnn.torch_checkpoint",
               "edgebnn.recipe", "edgebnn.targets", "edgebnn.models", "edgebnn.converters"]),
    ("tflite", ["edgebnn.tflite"]),
    ("devices", ["edgebnn.devices"]),
    ("data", ["edgebnn.data", "edgebnn.preprocess"]),
    ("archs", ["edgebnn.archs"]),
    ("train", ["edgebnn.runs", "edgebnn.training", "edgebnn.finetune", "edgebnn.evaluate", "edgebnn.importing"]),
    ("convert", ["edgebnn.conversion"]),
    ("store", ["edgebnn.store"]),
    ("estimate", ["edgebnn.estimate"]),
    ("profile", ["edgebnn.profiling"]),
    ("report", ["edgebnn.reporting"]),
    ("front door", ["edgebnn.api", "edgebnn.records"]),
    ("entry points", ["edgebnn.cli", "edgebnn.runner", "edgebnn"]),
]
# Libraries whose import costs a second or more (TensorFlow and what loads it, matplotlib, scikit-learn, SciPy's
# optimiser, h5py) or that are optional extras: kept out of `edgebnn --help` and of every light command.
HEAVY = {"tensorflow", "tf_keras", "keras", "larq", "larq_compute_engine", "larq_zoo", "matplotlib", "sklearn",
         "scipy", "h5py", "tensorflow_datasets"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _stage(module: str) -> int:
    best, rank = -1, None
    for i, (_, prefixes) in enumerate(FLOW):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    assert rank is not None, f"{module} has no place in the flow: add it to FLOW"
    return rank


def _imports(module: str) -> list[tuple[str, ast.stmt, bool]]:
    """(imported module, the statement, whether it is at the module's top) for every import in ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    top = {id(node) for node in tree.body}
    for node in tree.body:  # `if TYPE_CHECKING:` and `try:` blocks at the top are the top too
        if isinstance(node, (ast.If, ast.Try)):
            top |= {id(n) for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        out += [(name, node, id(node) in top) for name in names]
    return out


def _heavy_at_import() -> set[str]:
    """edgebnn's modules whose import loads a heavy library (directly or through their top-level imports)."""
    graph = {m: {n for n, _, at_top in _imports(m) if at_top} for m in MODULES}
    heavy = {m for m, names in graph.items() if any(n.split(".")[0] in HEAVY for n in names)}
    grew = True
    while grew:
        grew = False
        for m, names in graph.items():
            if m not in heavy and names & heavy:
                heavy.add(m)
                grew = True
    return heavy


def test_every_import_points_down_the_flow():
    upward = []
    for module in MODULES:
        for name, node, _ in _imports(module):
            if name.split(".")[0] == "edgebnn" and name in MODULES and _stage(name) > _stage(module):
                upward.append(f"{MODULES[module].relative_to(ROOT)}:{node.lineno} {module} "
                              f"({FLOW[_stage(module)][0]}) imports {name} ({FLOW[_stage(name)][0]})")
    assert not upward, "imports running back up the flow:\n" + "\n".join(upward)


def test_no_module_imports_itself_through_others():
    graph = {m: {n for n, _, _ in _imports(m) if n in MODULES and n != m} for m in MODULES}
    for m in MODULES:  # a package's __init__ gathers its modules: an arrow into a package is not a circle
        graph[m] = {n for n in graph[m] if not (MODULES[n].name == "__init__.py" and m.startswith(n + "."))}
    circles, done, stack = [], set(), []

    def visit(m):
        if m in stack:
            circles.append(" -> ".join(stack[stack.index(m):] + [m]))
            return
        if m in done:
            return
        stack.append(m)
        for n in sorted(graph[m]):
            visit(n)
        stack.pop()
        done.add(m)

    for m in sorted(MODULES):
        visit(m)
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_imports_inside_functions_are_only_the_heavy_ones_and_say_why():
    heavy, wrong = _heavy_at_import(), []
    for module, path in MODULES.items():
        if module == "edgebnn":  # the front door loads its stages on first use: any edgebnn import runs this file
            continue
        lines = path.read_text().splitlines()
        for name, node, at_top in _imports(module):
            if at_top:
                continue
            is_heavy = name.split(".")[0] in HEAVY or name in heavy
            said = any("# lazy:" in lines[i] for i in range(node.lineno - 2, node.end_lineno))  # or the line above
            if not (is_heavy and said):
                why = "not heavy: import it at the top" if not is_heavy else "say why with a '# lazy:' comment"
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}: {why}")
    assert not wrong, "imports inside functions:\n" + "\n".join(sorted(set(wrong)))


def test_the_product_ships_no_test_fixture():
    shipped = [m for m in MODULES if "testing" in m.rpartition(".")[2]]
    assert not shipped, f"test fixtures in the package: {shipped}"


@pytest.mark.parametrize("command", ["import edgebnn", "import edgebnn.cli", "import edgebnn.tflite",
                                     "import edgebnn.devices.local", "import edgebnn.store"])
def test_light_entry_points_load_no_heavy_library(command):
    import subprocess

    code = f"{command}; import sys; print(sorted(m for m in {sorted(HEAVY)!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
