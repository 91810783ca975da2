"""The package's module graph has no cycles, counting imports inside functions too (which hide
cycles from Python but not from a reader)."""
import ast
import pathlib

PKG = pathlib.Path(__file__).resolve().parents[2] / "python" / "fastnplm"


def module_graph():
    """{module: set of fastnplm modules it imports anywhere in its source} (the package's
    __init__ excluded: it imports everything to re-export it; a subpackage's __init__ counts)."""
    names = {}
    for f in PKG.rglob("*.py"):
        parts = f.relative_to(PKG.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    graph = {}
    for name, f in names.items():
        if name == "fastnplm":
            continue
        package = name if f.name == "__init__.py" else name.rsplit(".", 1)[0]
        edges = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                for cand in [target] + [f"{target}.{a.name}" for a in node.names]:
                    if cand in names and cand not in ("fastnplm", name):
                        edges.add(cand)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                edges |= {m for m in mods if m in names and m not in ("fastnplm", name)}
        # a module's own packages run before it (Python imports parents first): not a dependency
        graph[name] = {e for e in edges if not name.startswith(e + ".")}
    return graph


def find_cycle(graph):
    state, stack = {}, []

    def visit(v):
        state[v] = "open"
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if state.get(w) == "open":
                return stack[stack.index(w):] + [w]
            if w not in state:
                found = visit(w)
                if found:
                    return found
        state[v] = "done"
        stack.pop()
        return None

    for v in sorted(graph):
        if v not in state:
            found = visit(v)
            if found:
                return found
    return None


def test_module_graph_has_no_cycles():
    graph = module_graph()
    assert "fastnplm.models.kernel" in graph and "fastnplm.calibration" in graph
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


# The rooms, bottom to top: a module may import its own room and the rooms below it. embed (the
# learned embeddings, PyTorch optional) is on top: its Pipeline calibrates, monitors and reports.
ROOMS = ["core", "models", "calibration", "io", "monitor", "baselines", "ui", "embed"]


def room(module):
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in ROOMS:
        return parts[1]
    if module == "fastnplm._bench":  # the bench scripts' helpers run whole calibrations
        return "ui"
    return "core"  # _core, _checks, _info, _optional, _cite, preprocessing, _bench


def test_rooms_import_only_downwards():
    graph = module_graph()
    assert {room(m) for m in graph} == set(ROOMS)
    upward = [f"{a} -> {b}" for a, deps in graph.items() for b in deps
              if ROOMS.index(room(b)) > ROOMS.index(room(a))]
    assert not upward, upward


def test_no_module_reaches_into_another_objects_private_members():
    """``obj._name`` only on self/cls, or on a private module (``_core.f``, ``_checks.f``)."""
    found = []
    for f in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                v = node.value
                if isinstance(v, ast.Name) and (v.id in ("self", "cls") or v.id.startswith("_")):
                    continue
                found.append(f"{f.relative_to(PKG)}:{node.lineno} {ast.unparse(node)}")
    assert not found, found
