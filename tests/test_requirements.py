"""The requirements files state every third-party package the code imports, pinned with `==`: the
application's in requirements.txt, the tests' in requirements.txt or requirements-test.txt. A
package that is only there as a dependency of another one may disappear with its next release."""

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP_FILES = [*ROOT.glob("webapp/**/*.py"), *ROOT.glob("migrations/**/*.py"), ROOT / "worker.py", ROOT / "wsgi.py"]
TEST_FILES = [*ROOT.glob("tests/**/*.py"), *ROOT.glob("bench/*.py")]

# Pinned in requirements.txt, but never imported by the code.
RUNTIME_ONLY = {
    "gunicorn",  # the web server the supervisor starts as a command
}

PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==\S+$")


def normalise(name):
    """PEP 503: lowercase, every run of -, _ and . becomes one -."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_lines(path):
    """The requirement lines of a requirements file, without comments and options (-r ...)."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("-")]


def pinned(path):
    """The normalised names of the packages pinned with == in a requirements file."""
    return {normalise(match.group(1)) for line in requirement_lines(path) if (match := PIN.match(line))}


def imported_modules(files):
    """{top-level module name: files importing it}, for every absolute import, also in functions."""
    found = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def own_modules():
    """The project's package, and the modules of the tests, the bench and the root scripts: they
    import each other by name (pytest.ini, conftest files and the scripts put their folders on sys.path)."""
    return {"webapp"} | {path.stem for path in TEST_FILES + [ROOT / "worker.py", ROOT / "wsgi.py"]}


def third_party_distributions(files):
    """{normalised distribution name: files importing it} for the third-party imports of `files`."""
    providers = importlib.metadata.packages_distributions()
    skip = set(sys.stdlib_module_names) | own_modules()
    found = {}
    for module, importers in imported_modules(files).items():
        if module in skip:
            continue
        # Not installed: named after the module, so that it shows up as missing all the same.
        for distribution in providers.get(module, [module]):
            found.setdefault(normalise(distribution), set()).update(importers)
    return found


def missing(needed, pins):
    return sorted(f"{name} (imported in {', '.join(sorted(files))})"
                  for name, files in needed.items() if name not in pins)


def test_every_requirement_is_pinned_exactly():
    loose = [f"{path.name}: {line}" for path in (ROOT / "requirements.txt", ROOT / "requirements-test.txt")
             for line in requirement_lines(path) if not PIN.match(line)]
    assert loose == [], "requirements not pinned with ==:\n" + "\n".join(loose)


def test_the_test_requirements_include_the_application_ones():
    first = (ROOT / "requirements-test.txt").read_text().splitlines()[0].strip()
    assert first == "-r requirements.txt"


def test_every_package_the_application_imports_is_pinned_in_requirements_txt():
    gaps = missing(third_party_distributions(APP_FILES), pinned(ROOT / "requirements.txt"))
    assert gaps == [], "missing from requirements.txt:\n" + "\n".join(gaps)


def test_every_package_the_tests_import_is_pinned():
    """The tests' and the benchmarks' imports; bench/web.py's load generator is pinned in
    bench/requirements.txt, installed only to run it."""
    pins = pinned(ROOT / "requirements.txt") | pinned(ROOT / "requirements-test.txt") | pinned(
        ROOT / "bench" / "requirements.txt")
    gaps = missing(third_party_distributions(TEST_FILES), pins)
    assert gaps == [], "missing from requirements-test.txt (or requirements.txt):\n" + "\n".join(gaps)


def test_every_application_requirement_is_used():
    used = set(third_party_distributions(APP_FILES)) | {normalise(name) for name in RUNTIME_ONLY}
    unused = sorted(pinned(ROOT / "requirements.txt") - used)
    assert unused == [], f"pinned in requirements.txt, but neither imported nor known as runtime-only: {unused}"
