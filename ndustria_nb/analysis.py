"""Static analysis of a cell: the names it reads before binding them, and the names it binds.

Reads are collected in evaluation order at module scope (``x = x + 1`` reads ``x``),
comprehensions get their own scope, and the free global names of function and lambda
bodies count as reads unless the cell binds them somewhere (they are looked up when
the function is called, usually after the cell bound them).
"""

from __future__ import annotations

import ast
import symtable
from dataclasses import dataclass, field


@dataclass
class CellNames:
    """What a cell reads from the namespace and what it binds at top level."""

    reads: list[str] = field(default_factory=list)
    binds: list[str] = field(default_factory=list)


class _Scope(ast.NodeVisitor):
    """Walks statements in evaluation order, tracking bound names."""

    def __init__(self, bound: set[str], reads: dict[str, None], binds: dict[str, None] | None) -> None:
        self.bound = bound
        self.reads = reads
        self.binds = binds  # top-level binds (None inside comprehension/class scopes)

    def _bind(self, name: str) -> None:
        self.bound.add(name)
        if self.binds is not None:
            self.binds[name] = None

    def _read(self, name: str) -> None:
        if name not in self.bound:
            self.reads[name] = None

    def visit_Name(self, node: ast.Name) -> None:  # noqa: N802
        if isinstance(node.ctx, ast.Load):
            self._read(node.id)
        else:
            self._bind(node.id)

    def visit_Assign(self, node: ast.Assign) -> None:  # noqa: N802
        self.visit(node.value)
        for target in node.targets:
            self.visit(target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:  # noqa: N802
        if node.value is not None:
            self.visit(node.value)
            self.visit(node.target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:  # noqa: N802
        self.visit(node.value)
        if isinstance(node.target, ast.Name):
            self._read(node.target.id)
            self._bind(node.target.id)
        else:
            self.visit(node.target)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:  # noqa: N802
        self.visit(node.value)
        self._bind(node.target.id)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:  # noqa: N802
        self.visit(node.iter)
        self.visit(node.target)
        for stmt in (*node.body, *node.orelse):
            self.visit(stmt)

    visit_AsyncFor = visit_For  # noqa: N815

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:  # noqa: N802
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self.visit(item.optional_vars)
        for stmt in node.body:
            self.visit(stmt)

    visit_AsyncWith = visit_With  # noqa: N815

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:  # noqa: N802
        for alias in node.names:
            if alias.name != "*":
                self._bind(alias.asname or alias.name.partition(".")[0])

    visit_ImportFrom = visit_Import  # noqa: N815

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:  # noqa: N802
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self.bound.add(node.name)  # deleted at the end of the handler: not an output
        for stmt in node.body:
            self.visit(stmt)

    def _signature(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        args = node.args
        for default in (*args.defaults, *(d for d in args.kw_defaults if d is not None)):
            self.visit(default)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:  # noqa: N802
        for deco in node.decorator_list:
            self.visit(deco)
        self._signature(node)
        self._bind(node.name)  # the body's free names are handled through symtable

    visit_AsyncFunctionDef = visit_FunctionDef  # noqa: N815

    def visit_Lambda(self, node: ast.Lambda) -> None:  # noqa: N802
        self._signature(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:  # noqa: N802
        for expr in (*node.decorator_list, *node.bases, *(k.value for k in node.keywords)):
            self.visit(expr)
        inner = _Scope(set(self.bound), self.reads, None)
        for stmt in node.body:
            inner.visit(stmt)
        self._bind(node.name)

    def _comprehension(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp,
                       results: list[ast.expr]) -> None:
        gens = node.generators
        self.visit(gens[0].iter)  # evaluated in the enclosing scope
        inner = _Scope(set(self.bound), self.reads, None)
        for i, gen in enumerate(gens):
            if i:
                inner.visit(gen.iter)
            inner.visit(gen.target)
            for cond in gen.ifs:
                inner.visit(cond)
        for expr in results:
            inner.visit(expr)

    def visit_ListComp(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp) -> None:  # noqa: N802
        self._comprehension(node, [node.elt])

    visit_SetComp = visit_GeneratorExp = visit_ListComp  # noqa: N815

    def visit_DictComp(self, node: ast.DictComp) -> None:  # noqa: N802
        self._comprehension(node, [node.key, node.value])


def _late_reads(table: symtable.SymbolTable) -> set[str]:
    """Global names referenced inside function, lambda and class bodies (recursively)."""
    out: set[str] = set()
    for child in table.get_children():
        for sym in child.get_symbols():
            if sym.is_referenced() and sym.is_global():
                out.add(sym.get_name())
        out |= _late_reads(child)
    return out


def analyze(source: str) -> CellNames:
    """Reads and top-level binds of ``source`` (plain Python: IPython syntax already transformed)."""
    tree = ast.parse(source)
    reads: dict[str, None] = {}
    binds: dict[str, None] = {}
    scope = _Scope(set(), reads, binds)
    for stmt in tree.body:
        scope.visit(stmt)
    for name in sorted(_late_reads(symtable.symtable(source, "<cell>", "exec"))):
        if name not in binds:
            reads[name] = None
    return CellNames(list(reads), list(binds))


def normalized(source: str) -> str:
    """The cell's code with comments and formatting removed (``ast.dump``)."""
    return ast.dump(ast.parse(source), annotate_fields=False)
