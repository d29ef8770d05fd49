"""Mutation check: do the tests fail when the code they guard breaks?

    .venv/bin/python scripts/mutation_check.py [--jobs N] [--json out.json] [PATH ...]

Default PATHs: `mask2former_ttt/ttt/` and `server/worker/`. Each mutant is one small change made on the AST
(a flipped comparison, `and` <-> `or`, a dropped `not`, True <-> False, a constant moved by one, + <-> -, a
deleted call statement). Log messages, error messages, docstrings and annotations are never mutated (a whole log
statement may be deleted: tests that read the log catch that).

How it stays fast on 2 cores:
1. one run of the guarding tests under coverage with per-test contexts maps every line to the tests that run it;
   (a line that only runs at import, such as a default or a registry entry, is guarded by every test that uses
   its module);
2. the parent process imports the heavy third-party packages (torch, transformers, fastapi, ...) once, then
   forks one child per mutant; the child installs an import hook that serves the mutated source of the one
   module, and runs only the tests that cover the mutated line, stopping at the first failure (`-x`).
Files on disk are never changed, so this runs safely beside other work. A mutant survives when every covering
test passes (or no test covers its line); a child past the time limit counts as killed (the mutant hangs).
Prints the survivors with file:line and the change, and the survival rate per folder.
"""

from __future__ import annotations

import argparse
import ast
import importlib.abc
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PATHS = ["mask2former_ttt/ttt", "server/worker"]
GUARD_TESTS = {
    "mask2former_ttt/ttt": ["tests/ttt", "--ignore-glob=tests/ttt/test_data_*"],
    "server/worker": ["tests/server", "tests/e2e/test_service_streams.py", "tests/e2e/test_service_jobs.py"],
}
PREWARM = ["torch", "transformers.models.swin", "transformers.models.mask2former", "fastapi", "fastapi.testclient",
           "uvicorn", "av", "PIL.Image", "pydantic", "pydantic_settings", "numpy", "scipy", "torchmetrics",
           "pycocotools.mask", "httpx", "websockets", "prometheus_client", "pytest"]
CMP_SWAP = {ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt, ast.Eq: ast.NotEq,
            ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn, ast.NotIn: ast.In}
BIN_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult}
LOG_NAMES = {"log", "logger", "logging", "warnings"}
MAX_TESTS_PER_MUTANT = 40  # the fastest covering tests; a mutant no fast test notices is reported as surviving


@dataclass
class Mutant:
    path: str
    module: str
    index: int  # the index-th mutation point of the file
    line: int
    change: str
    tests: list[str] = field(default_factory=list)
    outcome: str = "pending"  # killed | survived | timeout | uncovered
    seconds: float = 0.0
    limit_s: float = 60.0  # past this the child is killed: the mutant hangs (or made the tests far slower)


# ---- finding and applying mutation points ----------------------------------------------------------------------
def _skipped_nodes(tree: ast.AST) -> set[int]:
    """ids of nodes never mutated: docstrings, annotations, log/warning calls, raise statements, __all__."""
    skip: set[int] = set()

    def mark(node: ast.AST | None) -> None:
        if node is not None:
            skip.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                mark(body[0])
            if not isinstance(node, (ast.ClassDef, ast.Module)):
                mark(node.returns)
                for a in node.args.args + node.args.kwonlyargs + node.args.posonlyargs:
                    mark(a.annotation)
            if not isinstance(node, ast.Module):
                for d in node.decorator_list:
                    mark(d)
        elif isinstance(node, ast.AnnAssign):
            mark(node.annotation)
        elif isinstance(node, ast.Raise):
            mark(node)
        elif isinstance(node, ast.Call):
            f = node.func
            base = f.value if isinstance(f, ast.Attribute) else None
            if isinstance(base, ast.Name) and base.id in LOG_NAMES:
                mark(node)
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            mark(node)
        elif isinstance(node, (ast.Import, ast.ImportFrom, ast.JoinedStr)):
            mark(node)
    return skip


def statement_lines(tree: ast.AST) -> dict[int, int]:
    """id(node) -> line of the innermost statement holding it (the line coverage records)."""
    lines: dict[int, int] = {}
    for stmt in ast.walk(tree):  # breadth first: inner statements come later and win
        if isinstance(stmt, ast.stmt):
            for n in ast.walk(stmt):
                lines[id(n)] = stmt.lineno
    return lines


def _points(tree: ast.AST) -> list[tuple[ast.AST, str]]:
    """Every mutation point in source order: (node, description)."""
    skip = _skipped_nodes(tree)
    out: list[tuple[ast.AST, str]] = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Compare) and type(node.ops[0]) in CMP_SWAP:
            out.append((node, f"{type(node.ops[0]).__name__} -> {CMP_SWAP[type(node.ops[0])].__name__}"))
        elif isinstance(node, ast.BoolOp):
            out.append((node, "and -> or" if isinstance(node.op, ast.And) else "or -> and"))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            out.append((node, "drop not"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
            out.append((node, f"{node.value} -> {not node.value}"))
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float):
            out.append((node, f"{node.value!r} -> {_moved(node.value)!r}"))
        elif isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in BIN_SWAP:
            out.append((node, f"{type(node.op).__name__} -> {BIN_SWAP[type(node.op)].__name__}"))
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            out.append((node, "delete call statement"))
    out.sort(key=lambda p: (p[0].lineno, p[0].col_offset))
    return out


def _moved(value: int | float) -> int | float:
    return value + 1 if isinstance(value, int) else (value * 2 if value else 1.0)


def mutated_source(source: str, index: int) -> str:
    """The module's source with its index-th mutation point changed."""
    tree = ast.parse(source)
    node, _ = _points(tree)[index]
    if isinstance(node, ast.Compare):
        node.ops[0] = CMP_SWAP[type(node.ops[0])]()
    elif isinstance(node, ast.BoolOp):
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif isinstance(node, ast.UnaryOp):
        _replace(tree, node, node.operand)
    elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
        node.value = not node.value
    elif isinstance(node, ast.Constant):
        node.value = _moved(node.value)
    elif isinstance(node, (ast.BinOp, ast.AugAssign)):
        node.op = BIN_SWAP[type(node.op)]()
    elif isinstance(node, ast.Expr):
        _replace(tree, node, ast.Pass())
    return ast.unparse(ast.fix_missing_locations(tree))


def _replace(tree: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for parent in ast.walk(tree):
        for name, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, name, new)
                return
            if isinstance(value, list) and any(v is old for v in value):
                value[[i for i, v in enumerate(value) if v is old][0]] = new
                return


def find_mutants(paths: list[str]) -> list[Mutant]:
    mutants: list[Mutant] = []
    for folder in paths:
        target = ROOT / folder
        for file in sorted(target.rglob("*.py") if target.is_dir() else [target]):
            rel = file.relative_to(ROOT).as_posix()
            module = rel[:-3].replace("/", ".").removesuffix(".__init__")
            tree = ast.parse(file.read_text())
            lines = statement_lines(tree)
            for i, (node, change) in enumerate(_points(tree)):
                mutants.append(Mutant(rel, module, i, lines.get(id(node), node.lineno), change))
    return mutants


# ---- which tests run which line ----------------------------------------------------------------------------------
def coverage_map(paths: list[str], workdir: Path) -> tuple[dict[str, dict[int, set[str]]], dict[str, float]]:
    """({file: {line: {pytest node ids}}}, {node id: seconds}) from one coverage run of the guarding tests with
    per-test contexts (node ids name test functions: all their parametrizations)."""
    rc = workdir / "coveragerc"
    include = [f"{ROOT / p}/*" if (ROOT / p).is_dir() else str(ROOT / p) for p in paths]
    rc.write_text("[run]\ndynamic_context = test_function\ninclude =\n    " + "\n    ".join(include) + "\n")
    data_file = workdir / ".coverage"
    tests = sorted({t for p in paths for folder, ts in GUARD_TESTS.items() if p.startswith(folder) for t in ts})
    cmd = [sys.executable, "-m", "coverage", "run", f"--rcfile={rc}", f"--data-file={data_file}", "-m", "pytest",
           "-q", "-p", "no:cacheprovider", "-p", "no:randomly", f"--junitxml={workdir / 'junit.xml'}", *tests]
    subprocess.run(cmd, cwd=ROOT, check=False, stdout=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    import coverage

    data = coverage.CoverageData(basename=str(data_file))
    data.read()
    out: dict[str, dict[int, set[str]]] = {}
    for measured in data.measured_files():
        rel = Path(measured).resolve().relative_to(ROOT).as_posix()
        by_line = data.contexts_by_lineno(measured)
        out[rel] = {line: {_node_id(c) for c in ctxs if c} for line, ctxs in by_line.items()}
    return out, _durations(workdir / "junit.xml")


def _durations(junit: Path) -> dict[str, float]:
    """Seconds per test function (summed over its parametrizations) from pytest's JUnit XML."""
    import xml.etree.ElementTree as ET

    seconds: dict[str, float] = {}
    for case in ET.parse(junit).iter("testcase"):
        module, name = case.get("classname", ""), case.get("name", "").split("[")[0]
        node = f"{module.replace('.', '/')}.py::{name}"
        seconds[node] = seconds.get(node, 0.0) + float(case.get("time", 0.0))
    return seconds


def folder_tests(lines: dict[str, dict[int, set[str]]], path: str) -> set[str]:
    """Every test that ran a line of any module in `path`'s folder."""
    folder = path.rsplit("/", 1)[0] + "/"
    return {t for f, by_line in lines.items() if f.startswith(folder) for ts in by_line.values() for t in ts}


def _node_id(context: str) -> str:
    """'tests.ttt.test_adapter.test_reset' -> 'tests/ttt/test_adapter.py::test_reset' (all its parametrizations)."""
    parts = context.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ROOT / ("/".join(parts[:i]) + ".py")
        if candidate.is_file():
            return f"{'/'.join(parts[:i])}.py::{'::'.join(parts[i:])}"
    return context


# ---- running one mutant in a forked child ---------------------------------------------------------------------------
class _MutantFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, module: str, path: Path, source: str) -> None:
        self.module, self.path, self.source = module, path, source

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001
        if fullname != self.module:
            return None
        return importlib.util.spec_from_file_location(fullname, self.path, loader=self,
                                                      submodule_search_locations=None)

    def create_module(self, spec):  # noqa: ANN001
        return None

    def exec_module(self, module) -> None:  # noqa: ANN001
        exec(compile(self.source, str(self.path), "exec"), module.__dict__)


def _child(m: Mutant) -> None:
    import pytest

    path = ROOT / m.path
    sys.meta_path.insert(0, _MutantFinder(m.module, path, mutated_source(path.read_text(), m.index)))
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    code = pytest.main(["-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *m.tests])
    os._exit(int(code))


def run_mutants(mutants: list[Mutant], jobs: int) -> None:
    todo = [m for m in mutants if m.tests]
    for m in mutants:
        if not m.tests:
            m.outcome = "uncovered"
    running: dict[int, tuple[Mutant, float]] = {}
    done = 0
    while todo or running:
        while todo and len(running) < jobs:
            m = todo.pop(0)
            pid = os.fork()
            if pid == 0:
                try:
                    _child(m)
                finally:
                    os._exit(3)
            running[pid] = (m, time.monotonic())
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            now = time.monotonic()
            for p, (m, t0) in list(running.items()):
                if now - t0 > m.limit_s:
                    os.kill(p, signal.SIGKILL)
                    os.waitpid(p, 0)
                    m.outcome, m.seconds = "timeout", now - t0
                    del running[p]
                    done += 1
                    print(f"[{done}/{len(mutants)}] timeout  {m.path}:{m.line} {m.change} ({m.seconds:.1f} s)", flush=True)
            time.sleep(0.05)
            continue
        m, t0 = running.pop(pid)
        m.seconds = time.monotonic() - t0
        m.outcome = "survived" if os.waitstatus_to_exitcode(status) == 0 else "killed"
        done += 1
        print(f"[{done}/{len(mutants)}] {m.outcome:8s} {m.path}:{m.line} {m.change} ({m.seconds:.1f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="*", default=DEFAULT_PATHS)
    parser.add_argument("--jobs", type=int, default=(os.cpu_count() or 1) + 1,
                        help="children at once (one more than the cores: tests of threads spend time waiting)")
    parser.add_argument("--limit-s", type=float, default=60.0,
                        help="cap of the per-mutant limit (10 s + 2x its tests' own time under coverage)")
    parser.add_argument("--json", type=Path, help="write every mutant and its outcome here")
    args = parser.parse_args()
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    os.environ["OMP_NUM_THREADS"] = "1"
    t0 = time.monotonic()
    mutants = find_mutants(args.paths)
    with tempfile.TemporaryDirectory() as tmp:
        lines, seconds = coverage_map(args.paths, Path(tmp))
    print(f"{len(mutants)} mutants; coverage map in {time.monotonic() - t0:.0f} s", flush=True)
    for m in mutants:  # fastest tests first: most mutants die in the first one (-x)
        by_line = lines.get(m.path, {})
        tests = by_line.get(m.line, set())
        if not tests and m.line in by_line:
            # run at import only (defaults, class bodies, registries): the tests that use the module guard it,
            # or, for a module whose code runs outside its own lines (dataclasses), those of its folder
            tests = set().union(*by_line.values()) or folder_tests(lines, m.path)
        m.tests = sorted(tests, key=lambda t: (seconds.get(t, 60.0), t))[:MAX_TESTS_PER_MUTANT]
        m.limit_s = min(args.limit_s, 10.0 + 2.0 * sum(seconds.get(t, 10.0) for t in m.tests))
    for name in PREWARM:
        __import__(name)
    import torch

    torch.set_num_threads(1)
    run_mutants(mutants, args.jobs)
    print(f"\nsurvivors (in {time.monotonic() - t0:.0f} s):")
    for m in mutants:
        if m.outcome in ("survived", "uncovered"):
            print(f"  {m.path}:{m.line}  {m.change}  [{m.outcome}]")
    for folder in args.paths:
        mine = [m for m in mutants if m.path.startswith(folder)]
        alive = sum(m.outcome in ("survived", "uncovered") for m in mine)
        print(f"{folder}: {len(mine)} mutants, {alive} survived ({100 * alive / max(1, len(mine)):.1f} %)")
    if args.json:
        args.json.write_text(json.dumps([asdict(m) for m in mutants], indent=1))


if __name__ == "__main__":
    main()
