"""Writes the table of native/testdata/orjson_floats.txt (standard output): doubles and how
orjson writes them, which the crate's float formatting must match (src/json.rs tests).

    python native/testdata/make_orjson_floats.py > native/testdata/orjson_floats.txt
"""
import random, struct, sys
import orjson

rng = random.Random(21)
values = [0.0, -0.0, 1.0, -1.0, 0.5, 100.0, 1e-7, 1e16, 1e-5, 1e-6, 9.999999999999999e15,
          1e15, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 2.0**63, -(2.0**63),
          2.0**63 - 1024, 2.0**53, 2.0**53 + 2, 2.0**-24, 0.1, 0.2, 0.3, 1 / 3, 2 / 3, 123456789.125]
for exponent in range(-30, 30):
    for mantissa in (1.0, 1.5, 9.99, 1.2345678901234567, 7.0):
        values.append(mantissa * 10.0**exponent)
while len(values) < 3000:
    kind = rng.randrange(3)
    if kind == 0:  # any bit pattern that is a finite double
        (value,) = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))
        if value != value or value in (float("inf"), float("-inf")):
            continue
    elif kind == 1:  # a short decimal, as people type them
        value = float(f"{rng.randrange(-10**6, 10**6)}e{rng.randrange(-12, 22)}")
    else:  # a magnitude below 2^63, the range values may take
        value = rng.uniform(-1, 1) * 2.0 ** rng.randrange(-70, 63)
    values.append(value)
out = sys.stdout
out.write("# Doubles (bits in hex) and orjson.dumps of each, from make_orjson_floats.py.\n")
out.write(f"# Written by orjson {orjson.__version__}.\n")
for value in values:
    out.write(f"{struct.pack('>d', value).hex()} {orjson.dumps(value).decode()}\n")
