"""Long double arithmetic, exactly as redis-server on x86-64 does it (INCRBYFLOAT).

Redis adds floats as x87 80-bit ``long double`` values and prints them with ``%.17Lf``;
a proxy that used Python floats would answer other digits than Redis does.
"""

from __future__ import annotations

import re
from fractions import Fraction


class LongDouble:
    """An x87 80-bit ``long double`` (64-bit significand), held exactly as a Fraction.

    ``parse`` is Redis's ``string2ld`` (``strtold`` plus Redis's checks), ``add`` the
    rounded sum, ``format_human`` Redis's ``ld2string(..., LD_STR_HUMAN)``: ``%.17Lf``
    with trailing zeros removed. Infinity is ``None`` (Redis refuses it everywhere here).
    """

    MANTISSA = 64
    EMIN = -16382  # smallest normal exponent
    EMAX = 16383
    MAX_CHARS = 5 * 1024  # MAX_LONG_DOUBLE_CHARS
    ZERO: LongDouble

    __slots__ = ("value",)

    def __init__(self, value: Fraction) -> None:
        self.value = value

    @classmethod
    def round(cls, exact: Fraction) -> LongDouble | None:
        """Round to nearest, ties to even; None on overflow."""
        if exact == 0:
            return cls(Fraction(0))
        a = abs(exact)
        num, den = a.numerator, a.denominator
        e = num.bit_length() - den.bit_length()
        if (num << -e if e < 0 else num) < (den << e if e > 0 else den):
            e -= 1  # now 2**e <= a < 2**(e+1)
        q = max(e, cls.EMIN) - (cls.MANTISSA - 1)  # the quantum's exponent
        if q >= 0:
            m, r = divmod(num, den << q)
            half = den << q
        else:
            m, r = divmod(num << -q, den)
            half = den
        if 2 * r > half or (2 * r == half and m & 1):
            m += 1
        if m.bit_length() + q > cls.EMAX + 1:
            return None
        result = Fraction(m << q) if q >= 0 else Fraction(m, 1 << -q)
        return cls(result if exact > 0 else -result)

    @classmethod
    def parse(cls, text: bytes) -> LongDouble | None:
        """Redis's string2ld: None when Redis answers "value is not a valid float".

        Infinity parses (Redis then refuses the sum), so it comes back as INF."""
        if not text or len(text) >= cls.MAX_CHARS or text[:1].isspace():
            return None
        try:
            s = text.decode("ascii")
        except UnicodeDecodeError:
            return None
        sign = 1
        body = s
        if body[:1] in "+-" and body:
            sign = -1 if body[0] == "-" else 1
            body = body[1:]
        low = body.lower()
        if low in ("inf", "infinity"):
            return INF
        if low.startswith("nan"):
            return None
        exact = _exact(low)
        if not isinstance(exact, Fraction):
            return None  # not a number, or ERANGE (overflow, or underflow to zero)
        if exact == 0:
            return cls(Fraction(0))
        rounded = cls.round(exact)
        if rounded is None or rounded.value == 0:
            return None
        return cls(sign * rounded.value)

    def add(self, other: LongDouble) -> LongDouble | None:
        if self is INF or other is INF:
            return None
        return LongDouble.round(self.value + other.value)

    def format_human(self) -> bytes:
        v = self.value
        scaled = v * 10**17
        q, r = divmod(scaled.numerator, scaled.denominator)  # floor, also for negatives
        twice = 2 * r
        if twice > scaled.denominator or (twice == scaled.denominator and q & 1):
            q += 1
        negative = q < 0 or (q == 0 and v < 0)
        digits = str(abs(q)).rjust(18, "0")
        text = digits[:-17] + "." + digits[-17:]
        text = text.rstrip("0").rstrip(".")
        if negative and text != "0":
            text = "-" + text
        return text.encode()


LongDouble.ZERO = LongDouble(Fraction(0))
INF = LongDouble(Fraction(0))  # a sentinel: any sum with it is refused


_DECIMAL = re.compile(r"(\d*)(?:\.(\d*))?(?:e([+-]?\d+))?", re.ASCII)
_HEX = re.compile(r"0x([0-9a-f]*)(?:\.([0-9a-f]*))?(?:p([+-]?\d+))?", re.ASCII)


def _exact(body: str) -> Fraction | str | None:
    """What strtold reads in all of ``body`` (lower case, no sign): a Fraction, 0,
    "overflow", "underflow", or None when it would stop before the end."""
    hexadecimal = body.startswith("0x")
    match = (_HEX if hexadecimal else _DECIMAL).fullmatch(body)
    if match is None:
        return None
    whole, frac, exponent = match.group(1), match.group(2) or "", match.group(3)
    if not whole and not frac:
        return None
    exp = int(exponent) if exponent else 0
    if hexadecimal:
        number = int(whole + frac, 16)
        exp -= 4 * len(frac)
        if number == 0:
            return Fraction(0)
        magnitude = (number.bit_length() + exp) * 0.30103  # decimal digits, roughly
        scale = (1 << exp) if exp >= 0 else Fraction(1, 1 << -exp)
    else:
        number = int(whole + frac)
        exp -= len(frac)
        if number == 0:
            return Fraction(0)
        magnitude = len(str(number)) + exp
        scale = 10**exp if exp >= 0 else Fraction(1, 10**-exp)
    if magnitude > 4935:
        return "overflow"
    if magnitude < -4953:
        return "underflow"
    return Fraction(number * scale)
