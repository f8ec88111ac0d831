"""The layer rule of the README: `lint-imports` checks the direction of every import; this test
checks what it cannot see, an import written inside a function body to hide a cycle."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("projects", "credits", "billing", "teams", "common", "stripe_sim")


def _function_level_imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    app = path.relative_to(ROOT).parts[0]

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                yield from visit(child, child.name)
                continue
            if function and function != "ready":
                names = []
                if isinstance(child, ast.Import):
                    names = [alias.name for alias in child.names]
                elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                    names = [child.module]
                for name in names:
                    top = name.split(".")[0]
                    if top in APPS and top != app:
                        yield f"{path.relative_to(ROOT)}:{child.lineno} imports {name} in {function}()"
            yield from visit(child, function)

    yield from visit(tree, None)


def test_it_imports_no_sibling_app_inside_a_function():
    found = [
        line
        for app in APPS
        for path in sorted((ROOT / app).rglob("*.py"))
        if "migrations" not in path.parts
        for line in _function_level_imports(path)
    ]
    assert found == []


def test_no_package_exports_a_name_that_shadows_one_of_its_modules():
    # A package's public names load lazily from its modules; a module of the same name as a
    # public name would hide it once imported (`entitlements.consume` the function, not a module).
    import importlib
    import pkgutil

    for package in (
        "billing.catalog",
        "billing.entitlements",
        "billing.metering",
        "billing.seats",
        "billing.subscriptions",
        "credits.services",
    ):
        module = importlib.import_module(package)
        modules = {info.name for info in pkgutil.iter_modules(module.__path__)}
        assert not modules & set(module._EXPORTS), package
        for name, where in module._EXPORTS.items():
            assert hasattr(importlib.import_module(f"{package}.{where}"), name), (package, name)


def test_no_module_of_the_apps_is_over_500_lines():
    # Past that, a module holds more than one concern: cut it along its sections.
    long = {
        str(path.relative_to(ROOT)): n
        for app in ("projects", "credits", "billing", "teams", "common")
        for path in (ROOT / app).rglob("*.py")
        if "migrations" not in path.parts and (n := len(path.read_text().splitlines())) > 500
    }
    assert long == {}
