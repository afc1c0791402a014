"""The house's rules, checked on the source: the package's import graph has no circle and no arrow back up, the
library imports nothing from the lab (benchmarks/, tests/; the recipes only through the CLI's dispatch), and the
public API is annotated (``py.typed`` promises it)."""

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOORS = {  # a module imports only from lower floors, or from its own subpackage
    'rules': 0,
    'blocks': 0,
    'constants': 0,
    'families': 0,
    'extras': 0,
    'layer_objective': 0,
    'weights': 1,
    'compiler': 1,
    'lpom': 2,
    'models': 2,
    'search': 3,
    'recon': 3,
    '': 4,  # optnets itself: the public names
    'cli': 5,
    '__main__': 6,
}


SOURCES = {str(p.relative_to(ROOT).with_suffix('')).removesuffix('/__init__') for p in (ROOT / 'optnets').rglob('*.py')}


def modules(folder: str = 'optnets') -> dict[str, Path]:
    named = {}
    for path in sorted((ROOT / folder).rglob('*.py')):
        parts = list(path.relative_to(ROOT).with_suffix('').parts)
        named['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = path
    return named


def imports(name: str, path: Path, module_level: bool = True) -> set[str]:
    """The modules ``name`` imports: at module level (what runs on import; ``TYPE_CHECKING`` blocks left out), or
    anywhere in it."""
    package = name if path.name == '__init__.py' else name.rsplit('.', 1)[0]
    tree = ast.parse(path.read_text())
    body = tree.body if module_level else [tree]
    found = set()
    for top in body:
        if isinstance(top, ast.If) and 'TYPE_CHECKING' in ast.unparse(top.test):
            continue
        for node in ast.walk(top) if not module_level or isinstance(top, (ast.If, ast.Try)) else [top]:
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = package.split('.')[: len(package.split('.')) - node.level + 1] if node.level else []
                target = '.'.join(base + ([node.module] if node.module else []))
                submodules = {f'{target}.{alias.name}' for alias in node.names}
                found |= (
                    submodules if all(m.replace('.', '/') in SOURCES for m in submodules) else submodules | {target}
                )
    return found


def graph() -> dict[str, set[str]]:
    named = modules()
    return {name: {m for m in imports(name, path) if m in named and m != name} for name, path in named.items()}


def floor(module: str) -> int:
    return FLOORS[module.split('.')[1] if '.' in module else '']


def test_the_packages_import_graph_has_no_circle():
    try:
        TopologicalSorter(graph()).prepare()
    except CycleError as error:
        pytest.fail(f'an import circle: {" -> ".join(error.args[1])}')


def test_no_module_imports_from_a_floor_above_its_own():
    up = [
        f'{name} -> {target}'
        for name, targets in graph().items()
        for target in targets
        if floor(target) > floor(name) or floor(target) == floor(name) and name.split('.')[:2] != target.split('.')[:2]
    ]
    assert not up, up


def test_the_library_imports_nothing_from_the_lab():
    """benchmarks/ and tests/ never; the recipes (installed as optnets.recipes) only in the CLI, inside the
    functions that dispatch to them."""
    lab = ('benchmarks', 'tests', 'recipes', 'optnets.recipes')
    found = [
        f'{name} imports {module}'
        for name, path in modules().items()
        for module in imports(name, path, module_level=name == 'optnets.cli')
        if module.startswith(lab)
    ]
    assert not found, found


def unannotated(folder: str) -> list[str]:
    """Public functions and methods with an argument or a return left unannotated (``**kwargs`` forwarded to
    timm's builder stay bare, as in timm's own)."""
    missing = []
    for path in modules(folder).values():
        if any(part.startswith('_') and part != '__init__.py' for part in path.relative_to(ROOT).parts):
            continue

        def visit(node: ast.AST, public: bool = True, in_class: bool = False, path: Path = path) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.ClassDef):
                    visit(child, public and not child.name.startswith('_'), True, path)
                elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    if not public or child.name.startswith('_') and child.name != '__init__':
                        continue
                    args = child.args.posonlyargs + child.args.args + child.args.kwonlyargs
                    if in_class and args and args[0].arg in ('self', 'cls'):
                        args = args[1:]
                    bare = [a.arg for a in args if a.annotation is None]
                    bare += (
                        ['*' + child.args.vararg.arg] if child.args.vararg and not child.args.vararg.annotation else []
                    )
                    if child.returns is None and child.name != '__init__':
                        bare.append('return')
                    if bare:
                        missing.append(f'{path.relative_to(ROOT)}:{child.lineno} {child.name}: {", ".join(bare)}')

        visit(ast.parse(path.read_text()))
    return missing


@pytest.mark.parametrize('folder', ['optnets', 'recipes'])
def test_the_public_api_is_annotated(folder):
    assert (ROOT / 'optnets' / 'py.typed').is_file()
    assert not unannotated(folder)
