"""Avro binary encoders and decoders generated for one writer schema (the codec's fast path).

Invariant: whatever a generated encoder returns equals fastavro's ``schemaless_writer``
bytes for the same record, and whatever a generated decoder returns equals fastavro's
``schemaless_reader`` record for the same body (same values, types and key order). They
accept only what they were built for: plain ``str``/``int``/``bool``/``dict``/``list``
values, aware datetimes, ``UUID``s, minimal-range varints, union branches by index, block
counts of zero or more. Anything else raises, and the ``Codec`` then asks fastavro, so an
unusual value or a hostile body keeps fastavro's answer and its error. A schema using a
type not listed here compiles to ``None`` (fastavro alone).

Why: fastavro's generic writer and reader cost 25-35 µs per audit event here (union
branches validated per value, logical types looked up per field); a flat function per
schema costs a few (``benchmarks/codec.py`` measures both; docs/design/codec.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from itertools import count
from typing import Final

__all__ = ["Decoder", "Encoder", "compile_schema"]

#: ``encode(record) -> body``; raises on anything it was not built for.
Encoder = Callable[[Mapping[str, object]], bytes]
#: ``decode(data, pos) -> (record, end)``; raises on anything it was not built for.
Decoder = Callable[[bytes, int], tuple[dict[str, object], int]]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_DAYS_SHIFT: Final = date(1970, 1, 1).toordinal()
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_PRIMITIVE: Final = frozenset({"null", "boolean", "int", "long", "string"})


class Unsupported(Exception):
    """A schema (or a value, or a body) outside what this module generates code for."""


_HELPERS: Final[dict[str, object]] = {
    "_Bail": Unsupported,
    "_UUID": uuid.UUID,
    "_datetime": datetime,
    "_date": date,
    "_fromordinal": date.fromordinal,
    "_EPOCH": _EPOCH,
    "_TD": timedelta,
    "_DAYS": _DAYS_SHIFT,
    "_IMIN": _INT_MIN,
    "_IMAX": _INT_MAX,
    "_LMIN": _LONG_MIN,
    "_LMAX": _LONG_MAX,
}


def _mapping(node: object) -> Mapping[str, object]:
    if not isinstance(node, Mapping):
        raise Unsupported(f"schema {node!r}")
    return node


def _branches(node: object) -> list[object]:
    if not isinstance(node, list):
        raise Unsupported(f"union {node!r}")
    return node


def _symbols(node: object) -> tuple[str, ...]:
    symbols = _mapping(node).get("symbols")
    if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
        raise Unsupported("enum without symbols")
    return tuple(symbols)


class _Source:
    """Python source lines, indented, with fresh local names."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._names = count()

    def fresh(self, stem: str) -> str:
        return f"{stem}{next(self._names)}"

    def add(self, indent: int, *lines: str) -> None:
        self.lines.extend("    " * indent + line for line in lines)


class _Compiler:
    """One function per named record; the rest inlined into them."""

    def __init__(self, named: Mapping[str, object]) -> None:
        self._named = named
        self._records: dict[str, Mapping[str, object]] = {}
        self.constants: dict[str, object] = {}

    def _resolve(self, schema: object) -> object:
        if isinstance(schema, str) and schema not in _PRIMITIVE:
            if schema not in self._named:
                raise Unsupported(f"unknown named type {schema}")
            return self._named[schema]
        return schema

    def _const(self, value: object) -> str:
        name = f"_K{len(self.constants)}"
        self.constants[name] = value
        return name

    def record_fn(self, schema: Mapping[str, object], kind: str) -> str:
        """The generated function of a record type: by number, so no name from a schema
        ever becomes source code (field names go in as ``repr`` literals)."""
        name = str(schema.get("name"))
        self._records.setdefault(name, schema)
        return f"_{kind}{list(self._records).index(name)}"

    def kind(self, schema: object) -> tuple[str, object]:
        schema = self._resolve(schema)
        if isinstance(schema, str):
            return schema, schema
        if isinstance(schema, list):
            return "union", schema
        if not isinstance(schema, Mapping):
            raise Unsupported(f"schema {schema!r}")
        logical, base = schema.get("logicalType"), schema.get("type")
        if logical is not None:
            known = {("uuid", "string"), ("timestamp-micros", "long"), ("date", "int")}
            if (logical, base) not in known:
                raise Unsupported(f"logical type {logical} on {base}")
            return str(logical), schema
        if base in ("record", "enum", "array", "map") or base in _PRIMITIVE:
            return str(base), schema
        raise Unsupported(f"type {base}")

    # ----------------------------------------------------------------- encoders

    def enc(self, src: _Source, ind: int, schema: object, value: str) -> None:
        kind, node = self.kind(schema)
        if kind == "null":
            src.add(ind, f"if {value} is not None: raise _Bail")
        elif kind == "boolean":
            src.add(ind, f"if {value} is True: ap(1)", f"elif {value} is False: ap(0)")
            src.add(ind, "else: raise _Bail")
        elif kind in ("int", "long", "date", "timestamp-micros"):
            self._enc_number(src, ind, kind, value)
        elif kind in ("string", "uuid"):
            if kind == "uuid":
                src.add(ind, f"if type({value}) is _UUID: {value} = str({value})")
            b, n = src.fresh("b"), src.fresh("n")
            src.add(ind, f"if type({value}) is not str: raise _Bail", f"{b} = {value}.encode()")
            src.add(ind, f"{n} = len({b})")
            self._enc_long(src, ind, n)
            src.add(ind, f"o += {b}")
        elif kind == "enum":
            index, x = self._const({s: i for i, s in enumerate(_symbols(node))}), src.fresh("x")
            src.add(ind, f"{x} = {index}[{value}]")
            self._enc_long(src, ind, x)
        elif kind == "record":
            src.add(ind, f"if type({value}) is not dict: raise _Bail")
            src.add(ind, f"{self.record_fn(_mapping(node), 'e')}({value}, o)")
        elif kind in ("array", "map"):
            self._enc_block(src, ind, kind, node, value)
        else:
            self._enc_union(src, ind, node, value)

    def _enc_number(self, src: _Source, ind: int, kind: str, value: str) -> None:
        if kind == "timestamp-micros":
            t = src.fresh("t")
            src.add(
                ind,
                f"if type({value}) is _datetime:",
                f"    if {value}.tzinfo is None: raise _Bail",
                f"    {t} = {value} - _EPOCH",
                f"    {value} = ({t}.days * 86400 + {t}.seconds) * 1000000 + {t}.microseconds",
            )
        elif kind == "date":
            src.add(ind, f"if type({value}) is _date: {value} = {value}.toordinal() - _DAYS")
        src.add(ind, f"if type({value}) is not int: raise _Bail")
        if kind in ("int", "date"):
            src.add(ind, f"if not _IMIN <= {value} <= _IMAX: raise _Bail")
        else:
            src.add(ind, f"if not _LMIN <= {value} <= _LMAX: raise _Bail")
        self._enc_long(src, ind, value)

    @staticmethod
    def _enc_long(src: _Source, ind: int, value: str) -> None:
        """A value known to be an int (a length, an index, a checked number)."""
        z = src.fresh("z")
        src.add(
            ind,
            f"if -64 <= {value} < 64: ap(({value} << 1) ^ ({value} >> 63))",
            "else:",
            f"    {z} = ({value} << 1) ^ ({value} >> 63)",
            f"    while {z} > 127: ap(({z} & 127) | 128); {z} >>= 7",
            f"    ap({z})",
        )

    def _enc_block(self, src: _Source, ind: int, kind: str, node: object, value: str) -> None:
        node = _mapping(node)
        item, key, n = src.fresh("i"), src.fresh("k"), src.fresh("n")
        if kind == "array":
            src.add(ind, f"if type({value}) is not list: raise _Bail")
        else:
            src.add(ind, f"if type({value}) is not dict: raise _Bail")
        src.add(ind, f"if {value}:", f"    {n} = len({value})")
        self._enc_long(src, ind + 1, n)
        if kind == "array":
            src.add(ind + 1, f"for {item} in {value}:")
            self.enc(src, ind + 2, node["items"], item)
        else:
            src.add(ind + 1, f"for {key}, {item} in {value}.items():")
            self.enc(src, ind + 2, "string", key)
            self.enc(src, ind + 2, node["values"], item)
        src.add(ind, "ap(0)")

    def _enc_union(self, src: _Source, ind: int, node: object, value: str) -> None:
        node, null_at = self._nullable(node)
        src.add(ind, f"if {value} is None: ap({null_at << 1})", "else:")
        src.add(ind + 1, f"ap({(1 - null_at) << 1})")
        self.enc(src, ind + 1, node[1 - null_at], value)

    def _nullable(self, node: object) -> tuple[list[object], int]:
        """A union of null and one other type, and where its null branch is."""
        branches = _branches(node)
        kinds = [self.kind(branch)[0] for branch in branches]
        if len(branches) != 2 or kinds.count("null") != 1:
            raise Unsupported("only unions of null and one other type")
        return branches, kinds.index("null")

    # ----------------------------------------------------------------- decoders

    def dec(self, src: _Source, ind: int, schema: object, target: str) -> None:
        kind, node = self.kind(schema)
        if kind == "null":
            src.add(ind, f"{target} = None")
        elif kind == "boolean":
            b = src.fresh("b")
            src.add(ind, f"{b} = d[p]", "p += 1")
            src.add(ind, f"if {b} > 1: raise _Bail", f"{target} = {b} == 1")
        elif kind in ("int", "long", "date", "timestamp-micros"):
            self._dec_long(src, ind, target)
            if kind in ("int", "date"):
                src.add(ind, f"if not _IMIN <= {target} <= _IMAX: raise _Bail")
            if kind == "date":
                src.add(ind, f"{target} = _fromordinal({target} + _DAYS)")
            elif kind == "timestamp-micros":
                src.add(ind, f"{target} = _EPOCH + _TD(microseconds={target})")
        elif kind in ("string", "uuid"):
            n, e = src.fresh("n"), src.fresh("e")
            self._dec_long(src, ind, n)
            src.add(ind, f"{e} = p + {n}", f"if {n} < 0 or {e} > L: raise _Bail")
            conv = "_UUID(str(d[p:{e}], 'utf-8'))" if kind == "uuid" else "str(d[p:{e}], 'utf-8')"
            src.add(ind, f"{target} = {conv.format(e=e)}", f"p = {e}")
        elif kind == "enum":
            names = _symbols(node)
            symbols, i = self._const(names), src.fresh("x")
            self._dec_long(src, ind, i)
            src.add(ind, f"if not 0 <= {i} < {len(names)}: raise _Bail")
            src.add(ind, f"{target} = {symbols}[{i}]")
        elif kind == "record":
            src.add(ind, f"{target}, p = {self.record_fn(_mapping(node), 'd')}(d, p, L)")
        elif kind in ("array", "map"):
            self._dec_block(src, ind, kind, node, target)
        else:
            self._dec_union(src, ind, node, target)

    @staticmethod
    def _dec_long(src: _Source, ind: int, target: str) -> None:
        """A varint, inline: one byte at once, more in a loop of at most 10 bytes whose
        value must fit 64 bits (else ``_Bail``: fastavro decides)."""
        x, b, s = target, src.fresh("b"), src.fresh("s")
        src.add(
            ind,
            f"{x} = d[p]",
            f"if {x} < 128: {x} = ({x} >> 1) ^ -({x} & 1); p += 1",
            "else:",
            f"    {x} &= 127; {s} = 7; p += 1",
            "    while True:",
            f"        {b} = d[p]; p += 1",
            f"        {x} |= ({b} & 127) << {s}",
            f"        if {b} < 128: break",
            f"        {s} += 7",
            f"        if {s} > 63: raise _Bail",
            f"    if {x} >= 18446744073709551616: raise _Bail",
            f"    {x} = ({x} >> 1) ^ -({x} & 1)",
        )

    def _dec_block(self, src: _Source, ind: int, kind: str, node: object, target: str) -> None:
        node = _mapping(node)
        c, item, key = src.fresh("c"), src.fresh("i"), src.fresh("k")
        src.add(ind, f"{target} = {'[]' if kind == 'array' else '{}'}", "while True:")
        self._dec_long(src, ind + 1, c)
        src.add(ind + 1, f"if {c} == 0: break", f"if {c} < 0: raise _Bail")
        src.add(ind + 1, f"for _ in range({c}):")
        if kind == "array":
            self.dec(src, ind + 2, node["items"], item)
            src.add(ind + 2, f"{target}.append({item})")
        else:
            self.dec(src, ind + 2, "string", key)
            self.dec(src, ind + 2, node["values"], item)
            src.add(ind + 2, f"{target}[{key}] = {item}")

    def _dec_union(self, src: _Source, ind: int, node: object, target: str) -> None:
        node, null_at = self._nullable(node)
        i = src.fresh("u")
        src.add(ind, f"{i} = d[p]", "p += 1")  # a branch index is 0 or 1: one byte, 0 or 2
        src.add(ind, f"if {i} == {null_at << 1}: {target} = None")
        src.add(ind, f"elif {i} == {(1 - null_at) << 1}:")
        self.dec(src, ind + 1, node[1 - null_at], target)
        src.add(ind, "else: raise _Bail")

    # ----------------------------------------------------------------- records

    def record_functions(self) -> _Source:
        """Every record function reached so far (the list grows while it is written)."""
        src, done = _Source(), set()
        while pending := [n for n in self._records if n not in done]:
            for name in pending:
                done.add(name)
                self._record(src, self._records[name])
        return src

    def _record(self, src: _Source, schema: Mapping[str, object]) -> None:
        fields = schema.get("fields")
        if not isinstance(fields, list) or not all(
            isinstance(f, Mapping) and isinstance(f.get("name"), str) and "type" in f
            for f in fields
        ):
            raise Unsupported("record without a list of named, typed fields")
        src.add(0, f"def {self.record_fn(schema, 'e')}(r, o):", "    ap = o.append")
        for field in fields:
            v = src.fresh("v")
            src.add(1, f"{v} = r[{field['name']!r}]")
            self.enc(src, 1, field["type"], v)
        src.add(0, "", f"def {self.record_fn(schema, 'd')}(d, p, L):")
        names = []
        for field in fields:
            v = src.fresh("v")
            names.append(f"{field['name']!r}: {v}")
            self.dec(src, 1, field["type"], v)
        src.add(1, f"return {{{', '.join(names)}}}, p", "")


def compile_schema(parsed: Mapping[str, object]) -> tuple[Encoder, Decoder] | None:
    """The encoder and decoder of a fastavro-parsed record schema, or ``None`` when it
    uses a type this module does not generate (fastavro then does all the work)."""
    named = parsed.get("__named_schemas", {})
    if parsed.get("type") != "record" or not isinstance(named, Mapping):
        return None
    compiler = _Compiler(named)
    try:
        encode_top = compiler.record_fn(parsed, "e")
        decode_top = compiler.record_fn(parsed, "d")
        src = compiler.record_functions()
    except Unsupported:
        return None
    src.add(0, "def encode(r):", "    o = bytearray()", f"    {encode_top}(r, o)")
    src.add(0, "    return bytes(o)", "")
    src.add(0, "def decode(d, p):", f"    return {decode_top}(d, p, len(d))")
    namespace: dict[str, object] = {**_HELPERS, **compiler.constants}
    code = compile("\n".join(src.lines), "<avro generated>", "exec")
    exec(code, namespace)  # noqa: S102 - source made above from the parsed schema
    encode, decode = namespace["encode"], namespace["decode"]
    return encode, decode  # type: ignore[return-value]
