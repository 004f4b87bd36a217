"""The package's layout rules, read from the source: imports flow one way (no cycle, counting imports
inside functions; no layer importing one above it), no file outside fastalex/kernels/ over 400 lines,
no function over 80, and the light entry points stay light."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fastalex"
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80

# Layers, top to bottom: a module may import its own layer or any below it, never one above.
LAYERS = [
    ("cli", ("fastalex.__main__", "fastalex.info", "fastalex.train.cli", "fastalex.bench.cli",
             "fastalex.bench.kernels_cli")),
    ("application", ("fastalex.train", "fastalex.bench")),
    ("data", ("fastalex.data", "fastalex.transforms")),
    ("facade", ("fastalex",)),
    ("models", ("fastalex.models",)),
    ("nn", ("fastalex.nn",)),
    ("functional", ("fastalex.functional",)),
    ("ops", ("fastalex.ops", "fastalex._backends")),
    ("kernels", ("fastalex.kernels", "fastalex._extension")),
    ("checks", ("fastalex._checks",)),
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The fastalex module `name` refers to (a module, or the package holding an attribute), or None."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """module -> the fastalex modules it imports, anywhere in its body (functions included)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                # `from pkg import sub` imports the submodule when there is one, else the package
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in targets:
                if t == "fastalex" or t.startswith("fastalex."):
                    resolved = _resolve(t, modules)
                    if resolved and resolved != name:
                        edges.add(resolved)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def layer_of(module: str) -> int:
    best, rank = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    assert rank is not None, f"{module} is in no layer of tests/test_layout.py: add it"
    return rank


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_imports_flow_down_the_layers():
    upward = [f"{src} ({LAYERS[layer_of(src)][0]}) imports {dst} ({LAYERS[layer_of(dst)][0]})"
              for src, dsts in import_graph().items() for dst in dsts if layer_of(dst) < layer_of(src)]
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def _too_long() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent)
        if rel.parts[1] == "kernels":
            continue  # Triton kernel files keep a kernel with its launcher
        text = path.read_text()
        if len(text.splitlines()) > MAX_FILE_LINES:
            found.append(f"{rel}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{rel}:{node.lineno} {node.name}(): {length} lines")
    return found


def test_files_and_functions_stay_short():
    too_long = _too_long()
    assert not too_long, (f"over {MAX_FILE_LINES} lines a file (outside kernels/) or {MAX_FUNCTION_LINES} a "
                          "function:\n" + "\n".join(too_long))


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, timeout=120, cwd=PACKAGE.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    return set(out.stdout.split())


@pytest.mark.parametrize("code", ["import fastalex.transforms", "import fastalex.data",
                                  "from fastalex.__main__ import main\ntry: main(['--help'])\nexcept SystemExit: pass"],
                         ids=["transforms", "data", "cli-help"])
def test_light_entry_points_load_no_kernels(code):
    loaded = _loaded_after(code)
    heavy = sorted(m for m in loaded if m.startswith(("fastalex.ops", "fastalex.kernels", "triton")))
    assert not heavy, f"{code!r} loaded {heavy}"


def test_bench_command_knows_every_operator():
    from fastalex.bench import cli, ops

    assert cli.OPS == ops.OPS
