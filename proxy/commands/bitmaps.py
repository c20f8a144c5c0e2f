"""Bitmap commands: SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP, BITFIELD, BITFIELD_RO.

Bit 0 is the most significant bit of the first byte, as in Redis. Reads (GETBIT,
BITCOUNT, BITPOS, BITFIELD_RO and a BITFIELD made only of GETs) are quorum reads
computed here, on the whole value as a Python integer (``int.from_bytes``, then shifts
and masks), so no loop runs per byte.

SETBIT is a read-modify-write at the key's coordinating replica (``OPS.setbit`` in
replicas/redquorum.lua), like SETRANGE. BITFIELD's 64-bit arithmetic does not fit Lua's
doubles: the proxy computes the new value and writes it with the compare-and-set that
INCRBYFLOAT uses. BITOP reads its sources at quorum and writes the destination with a
plain SET (a DEL for an empty result): not atomic across keys.

Argument checks follow redis-server 7.0, including when it looks the key up: BITCOUNT
answers 0 for a missing key before it parses its range, BITPOS checks its bit first.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from typing import TYPE_CHECKING, Any

from ..protocol.resp import ReplyError
from ..replication import wire
from .strings import MAX_STRING, compare_and_set
from .table import (
    DEFERRED,
    NOT_INT,
    SYNTAX,
    Batch,
    command,
    parse_int,
    write,
)

if TYPE_CHECKING:  # pragma: no cover
    from .app import App
    from .session import Session

BAD_OFFSET = ReplyError("ERR bit offset is not an integer or out of range")
BAD_BIT = ReplyError("ERR bit is not an integer or out of range")
BAD_TYPE = ReplyError("ERR Invalid bitfield type. Use something like i16 u8. Note that u64 "
                      "is not supported but i64 is.")
U64 = (1 << 64) - 1


def parse_bit_offset(arg: bytes, bits: int = 0) -> int | ReplyError:
    """Redis's getBitOffsetFromArgument: ``#n`` (BITFIELD) means n times the width; the
    offset must address a byte below the 512 MB string limit."""
    by_width = bits > 0 and arg[:1] == b"#"
    number = parse_int(arg[1:] if by_width else arg)
    if number is None:
        return BAD_OFFSET
    if by_width:
        number = to_int64(number * bits)  # C's wrapping multiplication
    if number < 0 or number >> 3 >= MAX_STRING:
        return BAD_OFFSET
    return number


def to_int64(number: int) -> int:
    number &= U64
    return number - (1 << 64) if number >> 63 else number


# ---------------------------------------------------------------------------
# bit access on bytes


def field(value: bytes | bytearray, first: int, last: int) -> int:
    """Bits ``first``..``last`` of ``value`` (zero past its end) as an unsigned integer,
    bit ``first`` the most significant."""
    start, stop = first >> 3, (last >> 3) + 1
    chunk = value[start:stop]
    width = (stop - start) * 8
    number = int.from_bytes(chunk, "big") << (8 * (stop - start - len(chunk)))
    return (number >> (width - 1 - (last - start * 8))) & ((1 << (last - first + 1)) - 1)


def store_field(buf: bytearray, first: int, bits: int, number: int) -> None:
    """Write the low ``bits`` bits of ``number`` at bit ``first`` of ``buf`` (long enough)."""
    start, stop = first >> 3, ((first + bits - 1) >> 3) + 1
    width = (stop - start) * 8
    shift = width - (first - start * 8) - bits
    mask = ((1 << bits) - 1) << shift
    chunk = int.from_bytes(buf[start:stop], "big")
    chunk = (chunk & ~mask) | ((number << shift) & mask)
    buf[start:stop] = chunk.to_bytes(stop - start, "big")


def normalise_range(start: int, end: int, total: int) -> tuple[int, int]:
    """Redis's negative indexes and clamping for BITCOUNT/BITPOS ranges."""
    if start < 0:
        start += total
    if end < 0:
        end += total
    start = max(start, 0)
    end = max(end, 0)
    return start, min(end, total - 1)


def parse_unit(arg: bytes) -> bool | ReplyError:
    """BIT or BYTE: True for bits."""
    unit = arg.lower()
    if unit == b"bit":
        return True
    if unit == b"byte":
        return False
    return SYNTAX


# ---------------------------------------------------------------------------
# SETBIT, GETBIT


@command("SETBIT", 4, "write denyoom", (1, 1, 1), "bitmap",
         "Sets or clears the bit at offset of the string value. Creates the key if it doesn't exist.")
def cmd_setbit(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    offset = parse_bit_offset(args[2])
    if isinstance(offset, ReplyError):
        return offset
    on = parse_int(args[3])
    if on is None or on & ~1:
        return BAD_BIT
    return write(app, s, batch, args[1], wire.set_bit(offset, bool(on)),
                 lambda blob, was: was)


def read_value(app: App, s: Session, batch: Batch, key: bytes, compute: Any) -> object:
    """A quorum read of the value a plain GET answers, then ``compute(value or None)``."""
    done = batch.defer()

    def finish(result: Any) -> None:
        done(result if isinstance(result, ReplyError) else compute(result))

    app.coordinator.read(key, s.r, finish, plain=True)
    return DEFERRED


@command("GETBIT", 3, "readonly fast", (1, 1, 1), "bitmap", "Returns a bit value by offset.")
def cmd_getbit(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    offset = parse_bit_offset(args[2])
    if isinstance(offset, ReplyError):
        return offset
    return read_value(app, s, batch, args[1],
                      lambda value: field(value or b"", offset, offset))


# ---------------------------------------------------------------------------
# BITCOUNT, BITPOS


@command("BITCOUNT", -2, "readonly", (1, 1, 1), "bitmap", "Counts the number of set bits (population counting) in a string.")
def cmd_bitcount(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    return read_value(app, s, batch, args[1], lambda value: bitcount(value, args))


def bitcount(value: bytes | None, args: list[bytes]) -> int | ReplyError:
    if value is None:
        return 0  # Redis 7.0 answers before it parses the range
    if len(args) == 2:
        return int.from_bytes(value, "big").bit_count()
    if len(args) not in (4, 5):
        return SYNTAX
    start, end = parse_int(args[2]), parse_int(args[3])
    if start is None or end is None:
        return NOT_INT
    bits = parse_unit(args[4]) if len(args) == 5 else False
    if isinstance(bits, ReplyError):
        return bits
    if start < 0 and end < 0 and start > end:
        return 0
    start, end = normalise_range(start, end, len(value) * (8 if bits else 1))
    if start > end:
        return 0
    if not bits:
        return int.from_bytes(value[start:end + 1], "big").bit_count()
    return field(value, start, end).bit_count()


@command("BITPOS", -3, "readonly", (1, 1, 1), "bitmap", "Finds the first set (1) or clear (0) bit in a string.")
def cmd_bitpos(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    bit = parse_int(args[2])
    if bit is None:
        return NOT_INT
    if bit not in (0, 1):
        return ReplyError("ERR The bit argument must be 1 or 0.")
    return read_value(app, s, batch, args[1], lambda value: bitpos(value, bit, args))


def bitpos(value: bytes | None, bit: int, args: list[bytes]) -> int | ReplyError:
    if value is None:
        return -1 if bit else 0  # an endless run of zeros
    end_given = False
    bits = False
    if len(args) == 3:
        start, end = 0, len(value) - 1
    elif len(args) <= 6:
        start = parse_int(args[3])
        if start is None:
            return NOT_INT
        if len(args) == 6:
            unit = parse_unit(args[5])
            if isinstance(unit, ReplyError):
                return unit
            bits = unit
        if len(args) >= 5:
            end = parse_int(args[4])
            if end is None:
                return NOT_INT
            end_given = True
        else:
            end = len(value) * 8 + 7 if bits else len(value) - 1
        start, end = normalise_range(start, end, len(value) * (8 if bits else 1))
    else:
        return SYNTAX
    if start > end:
        return -1
    first, last = (start, end) if bits else (start * 8, end * 8 + 7)
    width = last - first + 1
    found = field(value, first, last)
    if bit == 0:
        found ^= (1 << width) - 1
    if found:
        return first + width - found.bit_length()
    if bit == 1 or end_given:
        return -1
    return ((last >> 3) + 1) * 8  # the zero padding right after the value


# ---------------------------------------------------------------------------
# BITOP


@command("BITOP", -4, "write denyoom", (2, -1, 1), "bitmap", "Performs bitwise operations on multiple strings, and stores the result.")
def cmd_bitop(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    op = args[1].lower()
    if op not in (b"and", b"or", b"xor", b"not"):
        return SYNTAX
    if op == b"not" and len(args) != 4:
        return ReplyError("ERR BITOP NOT must be called with a single source key.")
    dest = args[2]
    done = batch.defer()

    def combine(values: Any) -> None:
        if isinstance(values, ReplyError):
            done(values)
            return
        result = bitop(op, [v or b"" for v in values])
        if not result:
            app.coordinator.write(dest, s.w, b"*", wire.delete(), lambda r: done(
                r if isinstance(r, ReplyError) else 0))
            return
        app.coordinator.write(dest, s.w, b"*", wire.set_value(result),
                              lambda r: done(r if isinstance(r, ReplyError) else len(result)))

    app.coordinator.read_many(args[3:], s.r, combine, plain=True)
    return DEFERRED


def bitop(op: bytes, values: list[bytes]) -> bytes:
    size = max(len(v) for v in values)
    if not size:
        return b""
    numbers = [int.from_bytes(v.ljust(size, b"\0"), "big") for v in values]
    if op == b"not":
        result = numbers[0] ^ ((1 << (8 * size)) - 1)
    elif op == b"and":
        result = reduce(lambda x, y: x & y, numbers)
    elif op == b"or":
        result = reduce(lambda x, y: x | y, numbers)
    else:
        result = reduce(lambda x, y: x ^ y, numbers)
    return result.to_bytes(size, "big")


# ---------------------------------------------------------------------------
# BITFIELD, BITFIELD_RO

WRAP, SAT, FAIL = range(3)
OVERFLOWS = {b"wrap": WRAP, b"sat": SAT, b"fail": FAIL}


@dataclass(frozen=True, slots=True)
class FieldOp:
    kind: bytes  # get, set, incrby
    signed: bool
    bits: int
    offset: int
    number: int  # SET's value or INCRBY's increment
    overflow: int


def parse_bitfield(args: list[bytes]) -> list[FieldOp] | ReplyError:
    """Redis's bitfieldGeneric argument loop, errors in its order."""
    ops: list[FieldOp] = []
    overflow = WRAP
    i = 2
    while i < len(args):
        more = len(args) - i - 1
        sub = args[i].lower()
        if sub == b"overflow" and more >= 1:
            overflow = OVERFLOWS.get(args[i + 1].lower(), -1)
            if overflow < 0:
                return ReplyError("ERR Invalid OVERFLOW type specified")
            i += 2
            continue
        if not ((sub == b"get" and more >= 2) or (sub in (b"set", b"incrby") and more >= 3)):
            return SYNTAX
        kind = parse_field_type(args[i + 1])
        if isinstance(kind, ReplyError):
            return kind
        signed, bits = kind
        offset = parse_bit_offset(args[i + 2], bits)
        if isinstance(offset, ReplyError):
            return offset
        number = 0
        if sub != b"get":
            parsed = parse_int(args[i + 3])
            if parsed is None:
                return NOT_INT
            number = parsed
        ops.append(FieldOp(sub, signed, bits, offset, number, overflow))
        i += 3 if sub == b"get" else 4
    return ops


def parse_field_type(arg: bytes) -> tuple[bool, int] | ReplyError:
    sign = arg[:1]
    if sign not in (b"i", b"u"):
        return BAD_TYPE
    bits = parse_int(arg[1:].split(b"\0", 1)[0])  # C reads the text up to a NUL
    if bits is None or bits < 1 or bits > (64 if sign == b"i" else 63):
        return BAD_TYPE
    return sign == b"i", bits


@command("BITFIELD", -2, "write denyoom", (1, 1, 1), "bitmap", "Performs arbitrary bitfield integer operations on strings.")
def cmd_bitfield(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    ops = parse_bitfield(args)
    if isinstance(ops, ReplyError):
        return ops
    if all(op.kind == b"get" for op in ops):
        return read_value(app, s, batch, args[1], lambda value: [get(value or b"", op) for op in ops])
    compare_and_set(app, s, args[1], lambda current: apply_fields(current, ops),
                    batch.defer(), "BITFIELD")
    return DEFERRED


@command("BITFIELD_RO", -2, "readonly fast", (1, 1, 1), "bitmap", "Performs arbitrary read-only bitfield integer operations on strings.")
def cmd_bitfield_ro(app: App, s: Session, args: list[bytes], batch: Batch) -> Any:
    ops = parse_bitfield(args)
    if isinstance(ops, ReplyError):
        return ops
    if any(op.kind != b"get" for op in ops):
        return ReplyError("ERR BITFIELD_RO only supports the GET subcommand")
    return read_value(app, s, batch, args[1], lambda value: [get(value or b"", op) for op in ops])


def get(value: bytes | bytearray, op: FieldOp) -> int:
    number = field(value, op.offset, op.offset + op.bits - 1)
    return signed_of(number, op.bits) if op.signed else number


def signed_of(number: int, bits: int) -> int:
    return number - (1 << bits) if number >> (bits - 1) else number


def apply_fields(current: bytes | None, ops: list[FieldOp]) -> tuple[bytes | None, list[Any]]:
    """Run BITFIELD's operations on ``current``: (the new value, or None if unchanged;
    the replies). Like Redis, the value first grows to hold the farthest written bit,
    even when an OVERFLOW FAIL then writes nothing."""
    buf = bytearray(current or b"")
    farthest = max(op.offset + op.bits - 1 for op in ops if op.kind != b"get")
    if len(buf) <= farthest >> 3:
        buf.extend(bytes((farthest >> 3) + 1 - len(buf)))
    replies: list[Any] = []
    for op in ops:
        if op.kind == b"get":
            replies.append(get(buf, op))
            continue
        old = get(buf, op)
        new, overflowed = (incremented if op.kind == b"incrby" else assigned)(old, op)
        if overflowed and op.overflow == FAIL:
            replies.append(None)
            continue
        store_field(buf, op.offset, op.bits, new)
        replies.append(new if op.kind == b"incrby" else old)
    value = bytes(buf)
    return (None if value == current else value), replies


def limits(op: FieldOp) -> tuple[int, int]:
    if op.signed:
        return -(1 << (op.bits - 1)), (1 << (op.bits - 1)) - 1
    return 0, (1 << op.bits) - 1


def incremented(old: int, op: FieldOp) -> tuple[int, bool]:
    low, high = limits(op)
    total = old + op.number
    if low <= total <= high:
        return total, False
    if op.overflow == SAT:
        return (high if total > high else low), True
    wrapped = total & ((1 << op.bits) - 1)
    return (signed_of(wrapped, op.bits) if op.signed else wrapped), True


def assigned(old: int, op: FieldOp) -> tuple[int, bool]:
    if op.signed:
        return incremented(0, op)
    # unsigned: Redis compares the int64 as a uint64, so a negative value overflows upward
    number = op.number & U64
    high = (1 << op.bits) - 1
    if number <= high:
        return number, False
    return (high if op.overflow == SAT else number & high), True
