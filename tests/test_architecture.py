"""The shape of the code: the layer contracts hold and catch a forbidden import, no import
cycles, no imports hidden inside functions, and modules and functions of a readable size."""

import ast
import os
import pathlib
import shutil
import subprocess
import sys

import grimp

from webapp.backup.sources import DUMP_KINDS, SOURCE_KINDS, source_class

ROOT = pathlib.Path(__file__).resolve().parent.parent
WEBAPP = ROOT / "webapp"
LINT_IMPORTS = pathlib.Path(sys.executable).with_name("lint-imports")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def python_files(under=WEBAPP):
    return sorted(path for path in under.rglob("*.py") if "__pycache__" not in path.parts)


def lint_imports(root):
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(root)))


def test_the_layer_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_forbidden_import_breaks_a_contract(tmp_path):
    """The engine reaching up into the services, in a copy of the code, fails the check."""
    shutil.copytree(WEBAPP, tmp_path / "webapp", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path)
    progress = tmp_path / "webapp" / "backup" / "progress.py"
    progress.write_text(progress.read_text() + "\nfrom ..services import backups  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "webapp.backup.progress -> webapp.services.backups" in result.stdout


def test_no_import_cycles_among_our_modules():
    graph = grimp.build_graph("webapp")
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back and module < imported:
                cycles.append(" -> ".join((module, *back)))
    assert cycles == []


# The one exception: the app factories import what they build, so a process that imports only the
# engine or the worker's core does not carry the rest.
FACTORIES = {"webapp/__init__.py in create_app", "webapp/__init__.py in create_core_app"}


def test_no_import_inside_a_function():
    hidden = []
    for path in python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                hidden += [f"{path.relative_to(ROOT)} in {node.name}" for inner in ast.walk(node)
                           if isinstance(inner, (ast.Import, ast.ImportFrom))]
    assert set(hidden) == FACTORIES


def loaded_modules(imports, candidates):
    """Which of `candidates` a fresh interpreter holds after `imports`."""
    probe = f"import sys, {imports}; print(sorted(m for m in {candidates!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def test_the_engine_loads_no_flask_sqlalchemy_or_rq():
    assert loaded_modules("webapp.backup", ("flask", "sqlalchemy", "rq", "webapp.models")) == "[]"


def test_the_worker_side_leaves_the_web_side_and_s3_out():
    """What the worker imports before it forks a work horse for a backup: no views, Alembic or
    boto3, which would add tens of MB to every work horse."""
    heavy = ("webapp.views", "webapp.web", "flask_migrate", "alembic", "boto3", "prometheus_client")
    assert loaded_modules("worker, webapp.jobs.backup", heavy) == "[]"


def test_server_database_drivers_load_only_when_a_server_source_is_used():
    """psycopg and PyMySQL weigh about 35 MB; the web side and the work horses of folder and
    SQLite jobs never need them (with SQLite metadata)."""
    drivers = ("psycopg", "pymysql")
    everything = ("worker, webapp.web, webapp.jobs.backup, webapp.jobs.restore, "
                  "webapp.jobs.verify, webapp.jobs.reconcile, webapp.services.dump_restores")
    assert loaded_modules(everything, drivers) == "[]"
    assert loaded_modules("webapp.backup; webapp.backup.make_source('postgres', 'app', url='postgresql://h/db')",
                          drivers) == "['psycopg']"


def test_the_source_kinds_are_named_as_their_classes_say():
    for kind in SOURCE_KINDS:
        assert source_class(kind).kind == kind
    dump_kinds = {source_class(kind).dump_kind: kind for kind in SOURCE_KINDS if source_class(kind).dump_kind}
    assert DUMP_KINDS == dump_kinds


def test_modules_and_functions_stay_readable():
    """Modules under 400 lines (the dump-tool sources aside, each a whole tool's dialogue),
    functions under 60."""
    too_long = []
    for path in python_files():
        source = path.read_text()
        if source.count("\n") > MAX_MODULE_LINES and "sources" not in path.relative_to(WEBAPP).parts:
            too_long.append(f"{path.relative_to(ROOT)}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(ROOT)}: {node.name}() has {length} lines")
    assert too_long == []


def test_services_read_no_request_globals():
    """The acting user and address come in as an argument (an Actor), so the pages, the API, the
    command line and the jobs call the services alike."""
    request_globals = {"request", "g", "session", "current_user", "has_request_context"}
    readers = []
    for folder in ("services", "jobs"):
        for path in python_files(WEBAPP / folder):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module in ("flask", "flask_login"):
                    readers += [f"{path.relative_to(ROOT)} imports {alias.name}" for alias in node.names
                                if alias.name in request_globals]
    assert readers == []
