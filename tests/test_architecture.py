"""The package's import graph: library subpackages form a DAG and never import the application layer.

Built from the source with ``ast`` (module-level and function-level imports alike), so a cycle cannot hide
behind an import inside a function. Nodes are lumisurf's subpackages and top-level modules; a second graph has the
modules of each package as nodes (``train.trainer`` -> ``train.voxel_trainer``), so that a cycle inside a package is
found too.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "lumisurf"
APP_LAYER = {"jobs", "bench", "cli", "cli_parser", "__main__"}  # may import anything; nothing below imports them


def _node(module: str) -> str:
    """``lumisurf.fields.sdf_hash`` -> ``fields``; ``lumisurf.config`` -> ``config``."""
    return module.split(".")[1]


def import_graph(root: Path = PKG) -> dict[tuple[str, str], list[str]]:
    """``{(importer, imported): ["file:line", ...]}`` between distinct nodes."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in root.rglob("*.py"):
        rel = path.relative_to(root.parent).with_suffix("")
        src = _node(".".join(rel.parts))
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
                names += [f"{node.module}.{a.name}" for a in node.names] if node.module == "lumisurf" else []
            else:
                continue
            for name in names:
                if name.startswith("lumisurf.") and _node(name) != src:
                    edges[(src, _node(name))].append(f"{path.relative_to(root.parent)}:{node.lineno}")
    return edges


def _modules(root: Path = PKG) -> dict[str, Path]:
    """``{"lumisurf.train.trainer": path}`` for every module (a package's ``__init__`` is not a node)."""
    out = {}
    for path in root.rglob("*.py"):
        if path.name != "__init__.py":
            out[".".join(path.relative_to(root.parent).with_suffix("").parts)] = path
    return out


def module_graph(root: Path = PKG) -> dict[tuple[str, str], list[str]]:
    """``{(importer, imported): ["file:line", ...]}`` between distinct modules of the same package."""
    mods = _modules(root)
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for src, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                same_pkg = name.rpartition(".")[0] == src.rpartition(".")[0]
                if name in mods and name != src and same_pkg:
                    edges[(src, name)].append(f"{path.relative_to(root.parent)}:{node.lineno}")
    return edges


def find_cycle(edges) -> list[str] | None:
    """One cycle of the graph as a node list (first == last), or None (depth-first search)."""
    succ = defaultdict(set)
    for a, b in edges:
        succ[a].add(b)
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(v, stack):
        state[v] = 1
        for w in sorted(succ[v]):
            if state.get(w) == 1:
                return stack[stack.index(w) :] + [w]
            if w not in state:
                found = visit(w, stack + [w])
                if found:
                    return found
        state[v] = 2
        return None

    for v in sorted(succ):
        if v not in state:
            found = visit(v, [v])
            if found:
                return found
    return None


def test_graph_sees_known_edges():
    edges = import_graph()
    assert ("models", "fields") in edges  # the surface model builds its SDF field
    assert ("cli", "jobs") in edges
    assert len({a for a, _ in edges}) >= 15


def test_no_cycles_between_subpackages():
    edges = import_graph()
    cycle = find_cycle(edges)
    where = [f"{a} -> {b}: {edges[(a, b)][:3]}" for a, b in zip(cycle, cycle[1:])] if cycle else []
    assert cycle is None, "import cycle " + " -> ".join(cycle) + "\n" + "\n".join(where)


def test_no_cycles_between_modules_of_a_package():
    edges = module_graph()
    assert ("lumisurf.train.trainer", "lumisurf.train.loop") in edges  # the graph sees in-package imports
    cycle = find_cycle(edges)
    where = [f"{a} -> {b}: {edges[(a, b)][:3]}" for a, b in zip(cycle, cycle[1:])] if cycle else []
    assert cycle is None, "import cycle " + " -> ".join(cycle) + "\n" + "\n".join(where)


def test_library_never_imports_the_application_layer():
    bad = {k: v for k, v in import_graph().items() if k[0] not in APP_LAYER and k[1] in APP_LAYER}
    assert not bad, f"library modules import the application layer: {bad}"


def test_find_cycle_on_hand_made_graphs():
    assert find_cycle({("a", "b"): [], ("b", "c"): []}) is None
    assert find_cycle({("a", "b"): [], ("b", "c"): [], ("c", "a"): []}) == ["a", "b", "c", "a"]
    assert find_cycle({("x", "y"): [], ("y", "x"): [], ("a", "x"): []}) == ["x", "y", "x"]


MODEL_PACKAGES = {"models", "voxels", "fields", "shading"}  # a model may ask itself what it is


def model_probes(root: Path = PKG) -> list[str]:
    """``file:line`` of every ``cfg.model.kind ==/!=`` branch and ``hasattr``/``getattr`` on a model outside the
    model packages: the places that must ask the model protocol (``models/protocol.py``) instead."""
    hits = []
    for path in root.rglob("*.py"):
        if path.relative_to(root).parts[0] in MODEL_PACKAGES:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            kind = (
                isinstance(node, ast.Compare)
                and ast.unparse(node.left).endswith("model.kind")
                and isinstance(node.ops[0], (ast.Eq, ast.NotEq))
            )
            probe = (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("hasattr", "getattr")
                and bool(node.args)
                and ast.unparse(node.args[0]).split(".")[-1] == "model"
            )
            if kind or probe:
                hits.append(f"{path.relative_to(root.parent)}:{node.lineno} {ast.unparse(node)[:60]}")
    return sorted(hits)


def test_model_probes_are_found(tmp_path):
    pkg = tmp_path / "lumisurf"
    (pkg / "jobs").mkdir(parents=True)
    (pkg / "models").mkdir()
    probe = (
        "if cfg.model.kind == 'voxels' or hasattr(loaded.model, 'tree') or getattr(model, 'nero', None):\n    pass\n"
    )
    (pkg / "jobs" / "x.py").write_text(probe)
    (pkg / "models" / "y.py").write_text(probe)  # a model package may ask itself
    assert len(model_probes(pkg)) == 3 and all(h.startswith("lumisurf/jobs/x.py:1") for h in model_probes(pkg))


def test_no_model_probes_outside_the_model_packages():
    hits = model_probes()
    assert not hits, "ask the model protocol instead of the model's kind or attributes:\n" + "\n".join(hits)


def test_every_model_kind_implements_the_whole_protocol():
    import inspect

    from lumisurf.kinds import MODEL_KINDS
    from lumisurf.models.protocol import SceneModel, missing_protocol
    from lumisurf.train.loop import TrainingLoop

    assert set(MODEL_KINDS.names()) >= {"field", "voxels"}
    for name in MODEL_KINDS:
        cls = MODEL_KINDS.get(name).cls
        assert issubclass(cls, SceneModel) and cls.kind == name
        assert not missing_protocol(cls) and not inspect.isabstract(cls), (name, missing_protocol(cls))
        trainer = MODEL_KINDS.get(name).trainer  # trained by the one loop
        assert issubclass(trainer, TrainingLoop) and not inspect.isabstract(trainer), name
        assert cls.config_sections, f"{name}: which config sections does it read?"


def test_a_kind_missing_a_protocol_member_is_caught():
    from lumisurf.models.protocol import SceneModel, missing_protocol

    class Half(SceneModel):
        kind = "half"

        def render_camera(self, cameras, cam, bg_color, state=None, chunk=1024, downscale=1):
            return {}

    assert missing_protocol(Half) == ["param_groups", "surface_function", "vertex_shading"]


def test_one_training_loop():
    """Every class with a ``train_step`` (Stage I fields and voxels, Stage II) is a client of the one loop, and
    only ``train/loop.py`` writes checkpoints or builds a divergence guard's rollback."""
    import importlib

    from lumisurf.train.loop import TrainingLoop

    steppers, writers = [], []
    for module, path in _modules().items():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(f, ast.FunctionDef) and f.name == "train_step" for f in node.body
            ):
                steppers.append(getattr(importlib.import_module(module), node.name))
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "save_checkpoint":
                writers.append(module)
    assert len(steppers) >= 3, steppers  # field, voxels, Stage II
    assert all(issubclass(c, TrainingLoop) for c in steppers), [c for c in steppers if not issubclass(c, TrainingLoop)]
    assert set(writers) == {"lumisurf.train.loop"}, writers
