"""The package's module graph has no cycles, counting imports inside functions too (which hide
cycles from Python but not from a reader)."""
import ast
import pathlib

PKG = pathlib.Path(__file__).resolve().parents[2] / "python" / "fastnplm"


def module_graph():
    """{module: set of fastnplm modules it imports anywhere in its source} (the package's
    __init__ excluded: it imports everything to re-export it)."""
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
        graph[name] = edges
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
    assert "fastnplm.kernel" in graph and "fastnplm.calibration" in graph
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
