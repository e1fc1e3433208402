//! State values (SPEC section 2, v1.1): any JSON value but `null`, checked against its limits
//! and kept as its canonical encoding (what `orjson.dumps(value, option=OPT_SORT_KEYS)` writes);
//! and the tally order of section 4 over those encodings.

use std::borrow::Cow;
use std::cmp::Ordering;

use pyo3::ffi;

use crate::json;

pub const MAX_VALUE_BYTES: usize = 1024;
/// Levels of arrays and objects, the value itself being level 1.
pub const MAX_VALUE_DEPTH: usize = 16;
/// Floats must be below this in magnitude: 2^63.
const FLOAT_LIMIT: f64 = 9_223_372_036_854_775_808.0;

type Obj = *mut ffi::PyObject;

/// Write the canonical encoding of a parsed value (as orjson made it) into `out`, or say why
/// it is not a valid value (`schemas.values.value_problem`, word for word).
///
/// Safety: `value` must be a live object.
pub unsafe fn encode(value: Obj, out: &mut Vec<u8>) -> Result<(), String> {
    if value == ffi::Py_None() {
        return Err("a value must not be null".into());
    }
    let is_str = ffi::PyUnicode_CheckExact(value) != 0;
    // More than a quarter of the limit in code points may be more than it in bytes.
    if is_str && ffi::PyUnicode_GetLength(value) as usize > MAX_VALUE_BYTES / 4 && utf8(value).len() > MAX_VALUE_BYTES {
        return Err(format!("a string value may hold at most {MAX_VALUE_BYTES} UTF-8 bytes"));
    }
    check(value, 1)?;
    let start = out.len();
    write(value, out);
    // A string's limit is on its text (above), an array's or object's on its encoding, which
    // bounds the strings inside it too.
    let container = ffi::PyList_CheckExact(value) != 0 || ffi::PyDict_CheckExact(value) != 0;
    if container && out.len() - start > MAX_VALUE_BYTES {
        out.truncate(start);
        return Err(format!("an array or object value may encode to at most {MAX_VALUE_BYTES} bytes"));
    }
    Ok(())
}

/// The first limit of numbers and nesting that a value breaks, in the order it was received;
/// `depth` is its level (the value itself is level 1).
unsafe fn check(value: Obj, depth: usize) -> Result<(), String> {
    if ffi::PyLong_CheckExact(value) != 0 {
        let mut overflow = 0;
        ffi::PyLong_AsLongLongAndOverflow(value, &mut overflow);
        if overflow != 0 {
            return Err("an integer in a value must be in the 64-bit signed range".into());
        }
    } else if ffi::PyFloat_CheckExact(value) != 0 {
        if ffi::PyFloat_AS_DOUBLE(value).abs() >= FLOAT_LIMIT {
            return Err("a number in a value must be below 2^63 in magnitude".into());
        }
    } else if ffi::PyList_CheckExact(value) != 0 || ffi::PyDict_CheckExact(value) != 0 {
        if depth > MAX_VALUE_DEPTH {
            return Err(format!("a value may nest at most {MAX_VALUE_DEPTH} levels of arrays and objects"));
        }
        if ffi::PyList_CheckExact(value) != 0 {
            for i in 0..ffi::PyList_GET_SIZE(value) {
                check(ffi::PyList_GET_ITEM(value, i), depth + 1)?;
            }
        } else {
            let (mut at, mut key, mut item) = (0, std::ptr::null_mut(), std::ptr::null_mut());
            while ffi::PyDict_Next(value, &mut at, &mut key, &mut item) != 0 {
                check(item, depth + 1)?;
            }
        }
    }
    // Strings, true, false and null (inside an array or object) break no limit here.
    Ok(())
}

/// The UTF-8 text of an exact `str` (orjson never makes one with a lone surrogate).
unsafe fn utf8<'a>(text: Obj) -> &'a str {
    let mut size: ffi::Py_ssize_t = 0;
    let data = ffi::PyUnicode_AsUTF8AndSize(text, &mut size);
    if data.is_null() {
        ffi::PyErr_Clear();
        return "";
    }
    std::str::from_utf8_unchecked(std::slice::from_raw_parts(data as *const u8, size as usize))
}

/// The canonical encoding of a checked value: compact, object keys sorted by code point.
unsafe fn write(value: Obj, out: &mut Vec<u8>) {
    if value == ffi::Py_None() {
        out.extend_from_slice(b"null");
    } else if value == ffi::Py_True() {
        out.extend_from_slice(b"true");
    } else if value == ffi::Py_False() {
        out.extend_from_slice(b"false");
    } else if ffi::PyUnicode_CheckExact(value) != 0 {
        json::write_str(out, utf8(value));
    } else if ffi::PyLong_CheckExact(value) != 0 {
        json::write_int(out, ffi::PyLong_AsLongLong(value));
    } else if ffi::PyFloat_CheckExact(value) != 0 {
        json::write_float(out, ffi::PyFloat_AS_DOUBLE(value));
    } else if ffi::PyList_CheckExact(value) != 0 {
        out.push(b'[');
        for i in 0..ffi::PyList_GET_SIZE(value) {
            if i > 0 {
                out.push(b',');
            }
            write(ffi::PyList_GET_ITEM(value, i), out);
        }
        out.push(b']');
    } else {
        // An object: UTF-8 byte order is code point order.
        let mut members: Vec<(&str, Obj)> = Vec::with_capacity(ffi::PyDict_Size(value) as usize);
        let (mut at, mut key, mut item) = (0, std::ptr::null_mut(), std::ptr::null_mut());
        while ffi::PyDict_Next(value, &mut at, &mut key, &mut item) != 0 {
            members.push((utf8(key), item));
        }
        members.sort_unstable_by(|a, b| a.0.cmp(b.0));
        out.push(b'{');
        for (n, (key, item)) in members.into_iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            json::write_str(out, key);
            out.push(b':');
            write(item, out);
        }
        out.push(b'}');
    }
}

/// Where an encoding sorts among tally entries of equal count (SPEC section 4): `false`,
/// `true`, numbers by value (an integer before an equal float), strings by code point, then
/// arrays, then objects, each by its canonical bytes.
#[derive(PartialEq, PartialOrd)]
pub enum TallyKey<'a> {
    False,
    True,
    Number(Number),
    Text(Cow<'a, str>),
    Array(&'a [u8]),
    Object(&'a [u8]),
}

#[derive(PartialEq, Clone, Copy, Debug)]
pub enum Number {
    Int(i64),
    Float(f64),
}

impl PartialOrd for Number {
    fn partial_cmp(&self, other: &Number) -> Option<Ordering> {
        Some(match (*self, *other) {
            (Number::Int(a), Number::Int(b)) => a.cmp(&b),
            (Number::Float(a), Number::Float(b)) => a.total_cmp(&b),
            (Number::Int(a), Number::Float(b)) => int_against_float(a, b),
            (Number::Float(a), Number::Int(b)) => int_against_float(b, a).reverse(),
        })
    }
}

/// An integer against a float, exactly (no rounding to a double); equal values put the
/// integer first.
fn int_against_float(int: i64, float: f64) -> Ordering {
    // A float below 2^63 in magnitude has a floor that fits an i128 exactly.
    let floor = float.floor();
    match i128::from(int).cmp(&(floor as i128)) {
        // The float is above its floor, or equal to the integer, which then goes first.
        Ordering::Equal => Ordering::Less,
        unequal => unequal,
    }
}

pub fn tally_key(encoded: &[u8]) -> TallyKey<'_> {
    match encoded[0] {
        b'"' => {
            if encoded.contains(&b'\\') {
                TallyKey::Text(Cow::Owned(json::unescape(encoded)))
            } else {
                TallyKey::Text(String::from_utf8_lossy(&encoded[1..encoded.len() - 1]))
            }
        }
        b'f' => TallyKey::False,
        b't' => TallyKey::True,
        b'[' => TallyKey::Array(encoded),
        b'{' => TallyKey::Object(encoded),
        _ => {
            // Safety of the reading aside, an encoding of a number is ASCII.
            let text = std::str::from_utf8(encoded).unwrap_or("0");
            match text.parse::<i64>() {
                Ok(int) => TallyKey::Number(Number::Int(int)),
                Err(_) => TallyKey::Number(Number::Float(text.parse().unwrap_or(0.0))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As the store orders tally entries of equal count.
    fn sorted(encodings: &[&str]) -> Vec<String> {
        let mut out: Vec<&str> = encodings.to_vec();
        out.sort_by(|a, b| {
            let (a, b) = (a.as_bytes(), b.as_bytes());
            tally_key(a).partial_cmp(&tally_key(b)).unwrap_or(Ordering::Equal).then_with(|| a.cmp(b))
        });
        out.into_iter().map(str::to_owned).collect()
    }

    #[test]
    fn the_tally_order_of_kinds() {
        let order = [
            "false", "true", "-1.5", "-1", "0", "-0.0", "0.0", "0.5", "1", "1.0", "2", "\"\"", "\"1\"", "\"a\"",
            "\"é\"", "[\"a\"]", "[1]", "[]", "{\"a\":1}", "{\"b\":0}", "{}",
        ];
        let mut shuffled = order.to_vec();
        shuffled.reverse();
        shuffled.rotate_left(7);
        assert_eq!(sorted(&shuffled), order);
    }

    #[test]
    fn integers_and_floats_compare_exactly() {
        // 2^53 + 1 is no double: as one it would round to 2^53 and tie.
        assert_eq!(sorted(&["9007199254740993", "9007199254740992.0"]), ["9007199254740992.0", "9007199254740993"]);
        assert_eq!(sorted(&["9007199254740992.0", "9007199254740992"]), ["9007199254740992", "9007199254740992.0"]);
        assert_eq!(sorted(&["-9223372036854775808", "-9.223372036854775e+18"]), [
            "-9223372036854775808",
            "-9.223372036854775e+18"
        ]);
        assert_eq!(sorted(&["9223372036854775807", "9.223372036854775e+18"]), [
            "9.223372036854775e+18",
            "9223372036854775807"
        ]);
        assert_eq!(sorted(&["-2", "-2.5", "-3"]), ["-3", "-2.5", "-2"]);
    }
}
