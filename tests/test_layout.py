"""The layout the workbook promises: rnn_core.py is the assignment alone (numpy only, never the
package), the package has no import cycles, reads no other module's private names, edits no
sys.path and imports nothing from tests/; every parameter is declared once, in
workbook/params.py, and what is made from it (the cells, docs/parameters.md's table, the Makefile's
variables, make help) and what uses it (the notebooks' code) agree with it."""
import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from workbook import params, runs

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = sorted((ROOT / "workbook").glob("*.py"))
STDLIB = sys.stdlib_module_names


def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def imported(module: ast.Module) -> set:
    """Every module an import statement names, anywhere in the code (functions' lazy ones too)."""
    names = set()
    for node in ast.walk(module):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


def notebook_code(notebook: str, parameters: bool = False) -> str:
    cells = json.loads((ROOT / "notebooks" / f"{notebook}.ipynb").read_text(encoding="utf-8"))["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code"
                     and parameters == ("parameters" in c["metadata"].get("tags", [])))


def test_rnn_core_is_the_assignment_alone():
    lines = (ROOT / "rnn_core.py").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 650, len(lines)
    names = imported(tree(ROOT / "rnn_core.py"))
    assert {n.split(".")[0] for n in names} <= STDLIB | {"numpy"}, names
    assert not any(n.startswith("workbook") for n in names)


def test_the_package_has_no_import_cycles_and_nothing_from_tests():
    graph = {p.stem: {n.split(".")[1] for n in imported(tree(p)) if n.startswith("workbook.")} for p in PACKAGE}
    tests = {p.stem for p in (ROOT / "tests").glob("*.py")}
    for p in PACKAGE:
        assert not {n.split(".")[0] for n in imported(tree(p))} & tests, p.name
    done, path = set(), []

    def visit(m):                       # depth first: a module met again on the path closes a cycle
        assert m not in path, " -> ".join(path[path.index(m):] + [m])
        if m in done:
            return
        path.append(m)
        for n in sorted(graph.get(m, ())):
            visit(n)
        path.pop()
        done.add(m)
    for m in graph:
        visit(m)
    assert graph["planner"] >= {"study", "runs"} and "planner" not in graph["study"]   # the cycle that was


def private_uses(module: ast.Module) -> list:
    """x._name where x is a module this code imported (its own _names and dunders are fine)."""
    modules = set()
    for node in ast.walk(module):
        if isinstance(node, ast.Import):
            modules |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("workbook", "rnn_core"):
            modules |= {a.asname or a.name for a in node.names}
    return [f"{node.value.id}.{node.attr}" for node in ast.walk(module)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
            and node.attr.startswith("_") and not node.attr.startswith("__")]


@pytest.mark.parametrize("where", ["workbook", "notebooks", "tests"])
def test_no_module_reads_another_modules_private_names_or_edits_sys_path(where):
    sources = {p.name: p.read_text(encoding="utf-8") for p in sorted((ROOT / where).glob("*.py"))} \
        if where != "notebooks" else {p.name: notebook_code(p.stem) for p in sorted((ROOT / where).glob("*.ipynb"))}
    assert sources
    for name, code in sources.items():
        module = ast.parse(code)
        assert not private_uses(module), (name, private_uses(module))
        if where != "tests" or name == "conftest.py":
            assert "sys.path" not in code, name


def test_the_makefile_passes_every_variable_the_planner_declares():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    block = re.search(r"^VARIABLES := (.*?)\n(?=\S)", makefile, re.S | re.M)[1]
    assert block.replace("\\", " ").split() == [v.name for v in runs.VARIABLES]
    spec = {p.make: p.name for p in params.PARAMETERS if p.make}
    assert {v.name: v.param for v in runs.VARIABLES if v.param} == spec


def test_make_help_lists_every_variable_with_its_parameter_and_default():
    out = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    for v in runs.VARIABLES:
        line = next(line for line in out.splitlines() if line.split()[:1] == [v.name])
        if v.param:
            assert f"{v.param}: {params.BY_NAME[v.param].help}" in line
        assert v.default in line


def test_each_parameter_is_used_by_the_notebooks_the_spec_names():
    """A parameter's used_by is the notebooks whose code reads it: the names in their code cells,
    or notebook.start's reading for all of them (START)."""
    start = (ROOT / "workbook" / "notebook.py").read_text(encoding="utf-8") + \
        (ROOT / "workbook" / "params.py").read_text(encoding="utf-8")
    for nb in (*params.RUN_NOTEBOOKS, params.COMPARE):
        names = {n.id for n in ast.walk(ast.parse(notebook_code(nb))) if isinstance(n, ast.Name)}
        for p in params.of_notebook(nb):
            assert (p.name in names) == (nb in p.used_by), (nb, p.name)
    for p in params.PARAMETERS:
        if params.START in p.used_by:
            assert f'"{p.name}"' in start, p.name
        assert p.used_by, p.name


def test_every_cell_declares_exactly_the_spec_with_its_defaults():
    for nb in (*params.RUN_NOTEBOOKS, params.COMPARE):
        cell = {t.targets[0].id: ast.literal_eval(t.value) for t in ast.parse(notebook_code(nb, parameters=True)).body}
        assert cell == {p.name: p.value for p in params.of_notebook(nb)}, nb
    assert params.defaults() == {p.name: p.value for p in params.of_notebook(params.TRAIN)}


def test_every_default_passes_its_own_check():
    for p in params.PARAMETERS:
        assert p.kind(p.name, p.value) == p.value, p.name


def test_the_recorded_settings_are_those_the_model_file_keeps():
    recorded = params.recorded(params.defaults())
    assert set(recorded) >= {"m", "eta", "seq_length", "optimizer", "n_updates", "seed", "preset"}
    assert not set(recorded) & {"run_dir", "resume", "data_path", "speed", "check_m"}
