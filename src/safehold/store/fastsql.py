"""The PUT path's statements, run on the DB-API cursor directly.

SQLAlchemy Core spends ~35 µs of CPU per ``Connection.execute`` (execution context,
result metadata, parameter processing) where the driver itself needs ~3 µs, and a PUT
runs about ten statements: py-spy of a server under the PUT benchmark put three
quarters of the write transaction's samples in that machinery. The statements stay
SQLAlchemy constructs, compiled once per dialect and set of parameters, so the SQL is
exactly what SQLAlchemy would send; only the execution is direct. They run inside the
caller's transaction (the same DB-API connection), and driver errors are translated
into SQLAlchemy's exceptions, so ``Store._write`` handles them as before (a failed
fsync still stops the process).

On SQLite the statements go to APSW without a DB-API cursor (sqlite_dbapi.Connection.run).

Only for columns whose types need no bind or result processing: text, numbers, bytes
and booleans (both drivers take a Python bool).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from safehold.store import sqlite_dbapi


class Statement:
    """One SQLAlchemy statement with its compiled SQL per dialect and parameter set."""

    def __init__(self, stmt: Any) -> None:
        self.stmt = stmt
        self._compiled: dict[tuple[str, tuple[str, ...]], tuple[str, tuple[str, ...] | None]] = {}
        self._bound: dict[tuple[str, tuple[str, ...]], tuple[str, _Args | None]] = {}

    def sql(self, dialect: sa.engine.Dialect, keys: tuple[str, ...]) -> tuple[str, tuple[str, ...] | None]:
        """(SQL text, parameter names in order for a positional paramstyle, else None).
        ``keys`` in the caller's order, not sorted: a call site passes its parameters in
        the same order every time, and sorting them cost half of this lookup."""
        found = self._compiled.get((dialect.name, keys))
        if found is None:
            compiled = self.stmt.compile(dialect=dialect, column_keys=list(keys))
            order = tuple(compiled.positiontup or ()) if compiled.positional else None
            found = self._compiled[(dialect.name, keys)] = (compiled.string, order)
        return found

    def bound(self, dialect: sa.engine.Dialect, params: Mapping[str, Any]
              ) -> tuple[str, Sequence[Any] | Mapping[str, Any]]:
        """The SQL text and the arguments of ``params`` as the driver takes them: in
        order for a positional paramstyle, taken by one C call (operator.itemgetter),
        not a comprehension, which cost half a µs per statement of a PUT."""
        keys = tuple(params)
        found = self._bound.get((dialect.name, keys))
        if found is None:
            sql, order = self.sql(dialect, keys)
            found = self._bound[(dialect.name, keys)] = (sql, None if order is None else _args(order))
        sql, args = found
        return sql, params if args is None else args(params)


_Args = Callable[[Mapping[str, Any]], Sequence[Any]]


def _args(order: tuple[str, ...]) -> _Args:
    """A function of a parameter dict to its values in ``order``, as a tuple."""
    if len(order) >= 2:
        return operator.itemgetter(*order)
    return lambda params: tuple(params[k] for k in order)  # itemgetter of one is no tuple


def _run(conn: Connection, st: Statement, params: Mapping[str, Any]) -> Any:
    sql, order = st.sql(conn.dialect, tuple(params))
    args: Sequence[Any] | Mapping[str, Any] = params if order is None else [params[k] for k in order]
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    cur = dbapi.cursor()
    try:
        cur.execute(sql, args)
    except conn.dialect.loaded_dbapi.Error as exc:
        cur.close()
        raise sa.exc.DBAPIError.instance(sql, args, exc, conn.dialect.loaded_dbapi.Error) from exc
    return cur


def _direct(conn: Connection, st: Statement, params: Mapping[str, Any]
            ) -> tuple[sqlite_dbapi.Connection, str, Sequence[Any] | Mapping[str, Any]] | None:
    """On SQLite: the APSW wrapper, SQL and arguments to run ``st`` without a cursor."""
    dbapi = conn.connection.dbapi_connection
    if not isinstance(dbapi, sqlite_dbapi.Connection):
        return None
    sql, args = st.bound(conn.dialect, params)
    return dbapi, sql, args


def _failed(st: Statement, params: Mapping[str, Any], exc: Exception, conn: Connection) -> Exception:
    return sa.exc.DBAPIError.instance(st.stmt, params, exc, conn.dialect.loaded_dbapi.Error)


def rows(conn: Connection, st: Statement, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """All rows of a query (or of an INSERT … RETURNING)."""
    direct = _direct(conn, st, params)
    if direct is not None:
        try:
            return direct[0].run(direct[1], direct[2])
        except sqlite_dbapi.Error as exc:
            raise _failed(st, params, exc, conn) from exc
    cur = _run(conn, st, params)
    try:
        return [tuple(r) for r in cur.fetchall()]
    except conn.dialect.loaded_dbapi.Error as exc:
        raise sa.exc.DBAPIError.instance(st.stmt, params, exc, conn.dialect.loaded_dbapi.Error) from exc
    finally:
        cur.close()


def execute(conn: Connection, st: Statement, params: Mapping[str, Any]) -> int:
    """Run a statement that returns no rows; the number of rows it changed."""
    direct = _direct(conn, st, params)
    if direct is not None:
        try:
            return direct[0].run_count(direct[1], direct[2])
        except sqlite_dbapi.Error as exc:
            raise _failed(st, params, exc, conn) from exc
    cur = _run(conn, st, params)
    try:
        return int(cur.rowcount)
    finally:
        cur.close()


def execute_many(conn: Connection, st: Statement, params: Sequence[Mapping[str, Any]]) -> None:
    """Run a statement without rows once per parameter set (each with the same keys)."""
    if not params:
        return
    direct = _direct(conn, st, params[0])
    if direct is not None:
        order = st.sql(conn.dialect, tuple(params[0]))[1]
        args = params if order is None else [[p[k] for k in order] for p in params]
        try:
            direct[0].run_many(direct[1], args)
        except sqlite_dbapi.Error as exc:
            raise _failed(st, params[0], exc, conn) from exc
        return
    sql, order = st.sql(conn.dialect, tuple(params[0]))
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    cur = dbapi.cursor()
    try:
        cur.executemany(sql, params if order is None else [[p[k] for k in order] for p in params])
    except conn.dialect.loaded_dbapi.Error as exc:
        raise sa.exc.DBAPIError.instance(sql, params, exc, conn.dialect.loaded_dbapi.Error) from exc
    finally:
        cur.close()


def raw(conn: Connection, sql: str) -> None:
    """A statement without parameters or rows (SAVEPOINT and friends)."""
    execute(conn, _RAW.setdefault(sql, Statement(sa.text(sql))), {})


_RAW: dict[str, Statement] = {}

T = TypeVar("T")
IN_MAX = 512  # values in one IN list; longer lists are read in parts
_IN_NAMES = tuple(f"k_in{j}" for j in range(IN_MAX))


class InList(Generic[T]):
    """A statement with one IN list of bind parameters, ``make(params)``, kept compiled
    for power-of-two list lengths and padded with the list's last value (a repeated
    value in IN changes nothing): a handful of statements on the driver instead of an
    expanding IN compiled on every call. ``wrap`` makes what a call site runs
    (a Statement, or something built on one)."""

    def __init__(self, make: Callable[[list[Any]], Any], wrap: Callable[[Any], T]) -> None:
        self._make = make
        self._wrap = wrap
        self._sizes: dict[int, T] = {}

    def parts(self, values: Sequence[Any]) -> Iterator[tuple[T, dict[str, Any]]]:
        """(statement, parameters) for each IN_MAX values of ``values``, in order."""
        for i in range(0, len(values), IN_MAX):
            part = list(values[i:i + IN_MAX])
            size = 1 << max(0, len(part) - 1).bit_length()
            st = self._sizes.get(size)
            if st is None:
                st = self._sizes[size] = self._wrap(
                    self._make([sa.bindparam(n) for n in _IN_NAMES[:size]]))
            yield st, dict(zip(_IN_NAMES[:size], part + [part[-1]] * (size - len(part)), strict=True))
