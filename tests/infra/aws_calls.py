"""Which AWS calls a function's code makes, read from its source (``ast``), to check them against botocore's models.

For a handler module, ``function_calls`` follows its imports inside the project (``lambdas``, ``prompt_templates``)
and finds every client call: a method call whose name is an operation (``create_model_invocation_job``) of a service
the code makes clients for (a string literal first argument of a call named ``*client``: ``_client("bedrock")``,
``clients.client("bedrock-runtime", region)``), on anything but a module, ``self`` or ``cls``. Also boto3's own client
methods (``upload_file``, ``generate_presigned_url``, ...), as the operations they send, and paginators.

For each call it reads, where the source says them literally:

- the request parameters as paths (``("inputDataConfig", "s3InputDataConfig", "s3Uri")``): keyword arguments, dict
  and list literals in them, and ``**name`` / values where ``name`` is a dict built in the same function (literal
  plus ``name["key"] = ...``) or returned by a project function (its parameters bound to the call's arguments),
  whatever branch built it (the analysis does not follow conditions);
- the response members read as paths: ``response["a"]``, ``response.get("a")``, ``"a" in response``, chained
  (``response["a"]["b"]``, ``.get("a", {}).get("b")``), through ``for x in response["a"]`` (``"[]"``: a list member or
  an event of an event stream), and ``response[name]`` for ``name`` from a module-level tuple of strings.

What it cannot read (``**`` of a dict made elsewhere, a response passed on to another function) is reported as such
(``params_known`` False) rather than guessed.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import botocore.session
from botocore import xform_name
from botocore.model import ServiceModel, Shape

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PROJECT_PACKAGES = ("lambdas", "prompt_templates")
LIST_MEMBER = "[]"
RESPONSE_METADATA = "ResponseMetadata"  # botocore adds it to every response (request id, HTTP status, retries)
# boto3's client methods that are not operations (boto3.s3.inject), as the S3 operations they may send.
TRANSFER_METHODS: dict[str, tuple[str, ...]] = {
    "upload_file": ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"),
    "upload_fileobj": ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"),
    "download_file": ("HeadObject", "GetObject"),
    "download_fileobj": ("HeadObject", "GetObject"),
    "copy": ("HeadObject", "CopyObject", "CreateMultipartUpload", "UploadPartCopy", "CompleteMultipartUpload"),
}


@dataclass(frozen=True)
class AwsCall:
    """One AWS call site: ``operation`` (botocore's name) of ``service``, at ``where`` (module:line)."""

    where: str
    service: str
    operation: str
    params: tuple[tuple[str, ...], ...] = ()
    params_known: bool = True
    reads: tuple[tuple[str, ...], ...] = ()


@dataclass
class _Module:
    name: str
    tree: ast.Module
    imported_modules: set[str] = field(default_factory=set)  # local names bound to modules (``from x import aws``)
    constants: dict[str, tuple[str, ...]] = field(default_factory=dict)  # module-level tuples of strings
    functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = field(default_factory=dict)
    imported_functions: dict[str, tuple[str, str]] = field(default_factory=dict)  # local name -> (module, name)


@cache
def service_model(service: str) -> ServiceModel:
    return botocore.session.get_session().get_service_model(service)


@cache
def _service_names() -> frozenset[str]:
    return frozenset(botocore.session.get_session().get_available_services())


@cache
def _operations(service: str) -> dict[str, str]:
    """method name -> operation name"""
    return {xform_name(name): name for name in service_model(service).operation_names}


def module_closure(entry: str) -> list[str]:
    """``entry`` and every project module it imports, directly or not."""
    seen: list[str] = []
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in seen or _path(name) is None:
            continue
        seen.append(name)
        todo.extend(_imports(_parse(name).tree, name))
    return sorted(seen)


def function_calls(entry: str) -> list[AwsCall]:
    """Every AWS call in the code of the function whose handler (or app) module is ``entry``."""
    modules = [_parse(name) for name in module_closure(entry)]
    services = sorted({s for m in modules for s in _client_services(m.tree)})
    defined = frozenset(
        n.name for m in modules for n in ast.walk(m.tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
    )
    return [call for module in modules for call in _calls(module, services, defined)]


def check(call: AwsCall, model: ServiceModel | None = None) -> list[str]:
    """What ``call`` uses that the service model (by default botocore's, installed here) lacks: the operation, a
    request parameter, a response member."""
    model = model or service_model(call.service)
    if call.operation not in model.operation_names:
        return [f"{call.where}: {call.service} has no operation {call.operation}"]
    operation = model.operation_model(call.operation)
    problems = [
        f"{call.where}: {call.operation} takes no parameter {'.'.join(path)}"
        for path in call.params
        if not _has_path(operation.input_shape, path)
    ]
    problems += [
        f"{call.where}: {call.operation} returns no member {'.'.join(path)}"
        for path in call.reads
        if path[0] != RESPONSE_METADATA and not _has_path(operation.output_shape, path)
    ]
    return problems


def _has_path(shape: Shape | None, path: tuple[str, ...]) -> bool:
    for part in path:
        if shape is None:
            return False
        if shape.type_name == "map" or getattr(shape, "is_document_type", False):
            return True  # any key: a map, or a document (any JSON, e.g. additionalModelRequestFields)
        if part == LIST_MEMBER:
            if shape.type_name == "list":
                shape = shape.member
            elif not shape.serialization.get("eventstream"):
                return False
            continue  # an event stream yields events shaped like the stream's structure
        if shape.type_name != "structure" or part not in shape.members:
            return False
        shape = shape.members[part]
    return True


# -- reading the source ------------------------------------------------------------------------------------------------
def _path(name: str) -> Path | None:
    if name.split(".")[0] not in PROJECT_PACKAGES:
        return None
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError, AttributeError):  # a name imported from a module, not a module
        return None
    return Path(spec.origin) if spec is not None and spec.origin else None


@cache
def _parse(name: str) -> _Module:
    path = _path(name)
    assert path is not None, name
    module = _Module(name=name, tree=ast.parse(path.read_text(), filename=str(path)))
    for node in module.tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            module.functions[node.name] = node
        elif isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Tuple | ast.List):
            values = [e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and len(values) == len(node.value.elts):
                    module.constants[target.id] = tuple(values)
    for item in ast.walk(module.tree):
        if isinstance(item, ast.Import):
            module.imported_modules |= {(a.asname or a.name).split(".")[0] for a in item.names}
        elif isinstance(item, ast.ImportFrom):
            base = _absolute(item, name)
            for alias in item.names:
                if _is_package(base) and _is_module(f"{base}.{alias.name}"):
                    module.imported_modules.add(alias.asname or alias.name)
                elif _path(base) is not None:
                    module.imported_functions[alias.asname or alias.name] = (base, alias.name)
    return module


def _is_package(name: str) -> bool:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError, AttributeError):
        return False
    return spec is not None and spec.submodule_search_locations is not None


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError, AttributeError):
        return False


def _absolute(node: ast.ImportFrom, module: str) -> str:
    if not node.level:
        return node.module or ""
    package = module if _is_package(module) else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _imports(tree: ast.Module, module: str) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def _client_services(tree: ast.Module) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _callee(node).endswith("client") and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and first.value in _service_names():
                yield str(first.value)


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _calls(module: _Module, services: list[str], defined: frozenset[str]) -> Iterator[AwsCall]:
    methods: dict[str, list[tuple[str, str]]] = {}
    for service in services:
        for method, operation in _operations(service).items():
            methods.setdefault(method, []).append((service, operation))
    for function in (n for n in ast.walk(module.tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)):
        for node in _own_nodes(function):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            receiver = node.func.value
            if isinstance(receiver, ast.Name) and (
                receiver.id in module.imported_modules or receiver.id in ("self", "cls")
            ):
                continue
            method, where = node.func.attr, f"{module.name}:{node.lineno}"
            if method in TRANSFER_METHODS and "s3" in services:
                yield from (AwsCall(where, "s3", op, params_known=False) for op in TRANSFER_METHODS[method])
            elif method == "generate_presigned_url" and node.args and isinstance(node.args[0], ast.Constant):
                yield _presigned(module, function, node, where, methods)
            elif (
                method == "paginate"
                and isinstance(node.func.value, ast.Call)
                and _callee(node.func.value) == ("get_paginator")
            ):
                (paginator,) = node.func.value.args
                if isinstance(paginator, ast.Constant):
                    pages = tuple(path[1:] for path in _reads(module, function, node) if path[:1] == (LIST_MEMBER,))
                    for service, operation in methods.get(str(paginator.value), []):
                        params, known = _params(module, function, node)
                        yield AwsCall(where, service, operation, params, known, tuple(p for p in pages if p))
            elif method in methods and not node.args:  # client operations take keyword arguments only
                if not node.keywords and method in defined:
                    continue  # a method of our own of the same name (``block.converse()``)
                params, known = _params(module, function, node)
                reads = _reads(module, function, node)
                for service, operation in methods[method]:
                    yield AwsCall(where, service, operation, params, known, reads)


def _presigned(
    module: _Module,
    function: ast.FunctionDef | ast.AsyncFunctionDef,
    node: ast.Call,
    where: str,
    methods: dict[str, list[tuple[str, str]]],
) -> AwsCall:
    client_method = str(node.args[0].value)  # type: ignore[attr-defined]
    ((service, operation),) = methods[client_method]
    params: list[tuple[str, ...]] = []
    known = True
    for keyword in node.keywords:
        if keyword.arg == "Params":
            found, known = _value_paths(_Scope(module, function), keyword.value)
            params.extend(found)
    return AwsCall(where, service, operation, tuple(params), known)


def _own_nodes(function: ast.AST) -> Iterator[ast.AST]:
    """The nodes of ``function`` without those of functions nested in it (they are visited on their own)."""
    for child in ast.iter_child_nodes(function):
        if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield child
            yield from _own_nodes(child)


# -- request parameters --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Scope:
    """Where an expression is read: a function of a module, and what its parameters were called with (``bindings``:
    parameter name -> the argument expression and the caller's scope), when reached through a call."""

    module: _Module
    function: ast.FunctionDef | ast.AsyncFunctionDef
    bindings: dict[str, tuple[ast.expr, _Scope]] = field(default_factory=dict)
    depth: int = 0


def _params(
    module: _Module, function: ast.FunctionDef | ast.AsyncFunctionDef, call: ast.Call
) -> tuple[tuple[tuple[str, ...], ...], bool]:
    scope = _Scope(module, function)
    paths: list[tuple[str, ...]] = []
    known = True
    for keyword in call.keywords:
        if keyword.arg is None:  # **request
            found, ok = _value_paths(scope, keyword.value)
            paths.extend(found)
            known &= ok
        else:
            paths.append((keyword.arg,))
            found, ok = _value_paths(scope, keyword.value, nested_only=True)
            paths.extend((keyword.arg, *path) for path in found)
            known &= ok
    return tuple(dict.fromkeys(paths)), known


def _value_paths(scope: _Scope, value: ast.expr, *, nested_only: bool = False) -> tuple[list[tuple[str, ...]], bool]:
    """The key paths a dict-valued expression has; ``(paths, known)``. ``nested_only``: a value that may be a scalar
    (a keyword's value): no dict found is not unknown."""
    paths: list[tuple[str, ...]] = []
    known = True
    if isinstance(value, ast.Dict):
        for key, item in zip(value.keys, value.values, strict=True):
            if key is None:  # {**other}
                found, ok = _value_paths(scope, item)
                paths.extend(found)
                known &= ok
            elif isinstance(key, ast.Constant) and isinstance(key.value, str):
                paths.append((key.value,))
                found, ok = _value_paths(scope, item, nested_only=True)
                paths.extend((key.value, *path) for path in found)
                known &= ok
            else:
                known = False
        return paths, known
    if isinstance(value, ast.List | ast.ListComp):
        for element in value.elts if isinstance(value, ast.List) else [value.elt]:
            found, ok = _value_paths(scope, element, nested_only=True)
            paths.extend((LIST_MEMBER, *path) for path in found)
            known &= ok
        return paths, known
    if isinstance(value, ast.IfExp):
        for branch in (value.body, value.orelse):
            found, ok = _value_paths(scope, branch, nested_only=nested_only)
            paths.extend(found)
            known &= ok
        return paths, known
    if isinstance(value, ast.Name):
        return _variable_paths(scope, value.id, nested_only)
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
        if value.func.id == "dict" and len(value.args) == 1 and not value.keywords:
            return _value_paths(scope, value.args[0], nested_only=nested_only)
        callee = _function(scope.module, value.func.id)
        if callee is not None and scope.depth < 6:
            return _returned_paths(scope, value, *callee, nested_only=nested_only)
    return [], nested_only


def _function(module: _Module, name: str) -> tuple[_Module, ast.FunctionDef | ast.AsyncFunctionDef] | None:
    """The project function ``name`` means in ``module``: its own, or one it imports from another project module."""
    if name in module.functions:
        return module, module.functions[name]
    if name in module.imported_functions:
        source, original = module.imported_functions[name]
        other = _parse(source)
        if original in other.functions:
            return other, other.functions[original]
    return None


def _returned_paths(
    caller: _Scope,
    call: ast.Call,
    module: _Module,
    function: ast.FunctionDef | ast.AsyncFunctionDef,
    *,
    nested_only: bool,
) -> tuple[list[tuple[str, ...]], bool]:
    """The key paths of what ``function`` returns when called by ``call`` (its parameters bound to the arguments)."""
    parameters = [a.arg for a in (*function.args.posonlyargs, *function.args.args, *function.args.kwonlyargs)]
    bindings = {name: (arg, caller) for name, arg in zip(parameters, call.args, strict=False)}
    bindings |= {k.arg: (k.value, caller) for k in call.keywords if k.arg is not None}
    scope = _Scope(module, function, bindings, caller.depth + 1)
    paths: list[tuple[str, ...]] = []
    known = True
    for node in _own_nodes(function):
        if isinstance(node, ast.Return) and node.value is not None:
            found, ok = _value_paths(scope, node.value, nested_only=nested_only)
            paths.extend(found)
            known &= ok
    return paths, known


_VISITING: set[tuple[int, str]] = set()  # (scope, variable) being resolved: ``x = dict(x)`` must not loop


def _variable_paths(scope: _Scope, name: str, nested_only: bool) -> tuple[list[tuple[str, ...]], bool]:
    key = (id(scope), name)
    if key in _VISITING:
        return [], True  # the variable's other assignments say what it holds
    _VISITING.add(key)
    try:
        return _assigned_paths(scope, name, nested_only)
    finally:
        _VISITING.discard(key)


def _assigned_paths(scope: _Scope, name: str, nested_only: bool) -> tuple[list[tuple[str, ...]], bool]:
    paths: list[tuple[str, ...]] = []
    known, assigned = True, False
    for node in _own_nodes(scope.function):
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and target.id == name:
                    found, ok = _value_paths(scope, node.value, nested_only=nested_only)
                    paths.extend(found)
                    known &= ok
                    assigned = True
                elif (
                    isinstance(target, ast.Subscript)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == name
                    and isinstance(target.slice, ast.Constant)
                ):
                    paths.append((str(target.slice.value),))
                    found, ok = _value_paths(scope, node.value, nested_only=True)
                    paths.extend((str(target.slice.value), *path) for path in found)
                    known &= ok
    if not assigned and name in scope.bindings:  # a parameter: what the caller passed
        argument, caller = scope.bindings[name]
        found, ok = _value_paths(caller, argument, nested_only=nested_only)
        return paths + found, known and ok
    if not assigned:
        return paths, nested_only  # a parameter of the function, or made elsewhere
    return paths, known


# -- response members ----------------------------------------------------------------------------------------------
def _reads(
    module: _Module, function: ast.FunctionDef | ast.AsyncFunctionDef, call: ast.Call
) -> tuple[tuple[str, ...], ...]:
    """The response members read from ``call``'s result: on the call expression itself, or on the variable it is
    assigned to in ``function`` (and loop variables iterating over its members)."""
    parents = _parents(function)
    top: ast.AST = call
    while isinstance(parents.get(top), ast.Await):
        top = parents[top]
    paths = list(_member_paths(module, parents, top, ()))
    assigned = parents.get(top)
    if isinstance(assigned, ast.Assign) and len(assigned.targets) == 1 and isinstance(assigned.targets[0], ast.Name):
        paths += _name_reads(module, function, parents, assigned.targets[0].id, after=assigned)
    return tuple(dict.fromkeys(paths))


def _name_reads(
    module: _Module,
    function: ast.FunctionDef | ast.AsyncFunctionDef,
    parents: dict[ast.AST, ast.AST],
    name: str,
    *,
    after: ast.AST | None = None,
    depth: int = 0,
) -> list[tuple[str, ...]]:
    """Members read from the variable ``name`` of ``function``: from ``after`` (its assignment) up to the next
    assignment of the name, in source order; also inside a function of the same module it is passed to."""

    def position(node: ast.AST) -> tuple[int, int]:
        return (getattr(node, "lineno", 0), getattr(node, "col_offset", 0))

    start = position(after) if after is not None else (0, 0)
    stores = sorted(
        position(n)
        for n in _own_nodes(function)
        if isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Store) and position(n) > start
    )
    end = stores[0] if stores else (10**9, 0)
    paths: list[tuple[str, ...]] = []
    for node in _own_nodes(function):
        if isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, ast.Load):
            if not start < position(node) < end:
                continue
            paths += _member_paths(module, parents, node, ())
            call = parents.get(node)
            if (
                depth < 3
                and isinstance(call, ast.Call)
                and isinstance(call.func, ast.Name)
                and call.func.id in module.functions
                and node in call.args
            ):
                callee = module.functions[call.func.id]
                index = call.args.index(node)
                if index < len(callee.args.args):
                    parameter = callee.args.args[index].arg
                    paths += _name_reads(module, callee, _parents(callee), parameter, depth=depth + 1)
    return paths


def _member_paths(
    module: _Module, parents: dict[ast.AST, ast.AST], node: ast.AST, prefix: tuple[str, ...]
) -> Iterator[tuple[str, ...]]:
    parent = parents.get(node)
    keys: tuple[str, ...] = ()
    if isinstance(parent, ast.Subscript) and parent.value is node:
        keys = _keys(module, parents, parent.slice)
        nxt: ast.AST = parent
    elif (
        isinstance(parent, ast.Attribute)
        and parent.attr == "get"
        and isinstance(parents.get(parent), ast.Call)
        and parents[parent].args  # type: ignore[attr-defined]
    ):
        keys = _keys(module, parents, parents[parent].args[0])  # type: ignore[attr-defined]
        nxt = parents[parent]
    elif isinstance(parent, ast.Compare) and parent.comparators == [node] and isinstance(parent.ops[0], ast.In):
        yield from ((*prefix, key) for key in _keys(module, parents, parent.left))
        return
    elif isinstance(parent, ast.For | ast.AsyncFor | ast.comprehension) and parent.iter is node:
        target = parent.target
        if isinstance(target, ast.Name):
            scope = parents.get(parent) if isinstance(parent, ast.comprehension) else parent
            while scope is not None and not isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef | ast.ListComp):
                scope = parents.get(scope)
            if scope is not None:
                for inner in ast.walk(scope):
                    if isinstance(inner, ast.Name) and inner.id == target.id and isinstance(inner.ctx, ast.Load):
                        yield from _member_paths(module, parents, inner, (*prefix, LIST_MEMBER))
        return
    else:
        return
    for key in keys:
        yield (*prefix, key)
        yield from _member_paths(module, parents, nxt, (*prefix, key))


def _keys(module: _Module, parents: dict[ast.AST, ast.AST], node: ast.AST) -> tuple[str, ...]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return (node.value,)
    if isinstance(node, ast.Name):  # response[name] for name in CONSTANT
        scope: ast.AST | None = node
        while scope is not None:
            generators = getattr(scope, "generators", None) or (
                [scope] if isinstance(scope, ast.For | ast.AsyncFor) else []
            )
            for generator in generators:
                target, source = generator.target, generator.iter
                if isinstance(target, ast.Name) and target.id == node.id and isinstance(source, ast.Name):
                    return module.constants.get(source.id, ())
            scope = parents.get(scope)
    return ()


def _parents(function: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: parent for parent in ast.walk(function) for child in ast.iter_child_nodes(parent)}
