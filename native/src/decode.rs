//! Response Messages (SPEC section 2): every check of `schemas/records.py`, in its order,
//! over the objects `orjson.loads` made. Strings are borrowed from those objects: a decoded
//! response lives no longer than the parsed record it was read from.

use std::slice;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::json;
use crate::values;
pub use crate::values::MAX_VALUE_BYTES;

pub const MAX_RECORD_BYTES: usize = 65_536;
pub const MAX_RESPONSE_ID: isize = 128;
pub const MAX_MESSAGE_ID: isize = 256;
pub const MAX_PART_ID: isize = 128;
pub const MAX_IDENTITY_ID: isize = 256;
pub const MAX_STATUS_TEXT: isize = 4096;
pub const MAX_CHANGES: isize = 100;
/// `schemas.limits.MAX_CHANGE_DEPTH`: a rejection echoes its change, which orjson must encode.
const MAX_CHANGE_DEPTH: usize = 64;
const MAX_NAME: usize = 128;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Set,
    Fww,
    Lww,
    Lwwn,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Set => "Set",
            Kind::Fww => "FWW",
            Kind::Lww => "LWW",
            Kind::Lwwn => "LWWN",
        }
    }

    /// The name after its article, as a sentence says it: "a Set", "an LWW".
    pub fn with_article(self) -> &'static str {
        match self {
            Kind::Set => "a Set",
            Kind::Fww => "an FWW",
            Kind::Lww => "an LWW",
            Kind::Lwwn => "an LWWN",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        match text {
            "Set" => Some(Kind::Set),
            "FWW" => Some(Kind::Fww),
            "LWW" => Some(Kind::Lww),
            "LWWN" => Some(Kind::Lwwn),
            _ => None,
        }
    }
}

/// A change as received: a borrowed reference into the parsed record, or its JSON text.
#[derive(Clone, Copy)]
pub enum Raw<'a> {
    Object(*mut ffi::PyObject),
    Text(&'a [u8]),
}

/// One change, checked for shape; `error` says why it is `invalid_change`.
pub struct Change<'a> {
    pub is_add: bool,
    pub kind: Kind,
    pub name: &'a str,
    /// The canonical encoding of the value; empty where the change carries none.
    pub value: Vec<u8>,
    /// The change as received.
    pub raw: Raw<'a>,
    pub error: Option<String>,
}

pub struct Response<'a> {
    pub rid: &'a str,
    pub mid: &'a str,
    pub pid: &'a str,
    pub ident: &'a str,
    pub status: Option<&'a str>,
    pub changes: Vec<Change<'a>>,
}

/// A whole-response rejection, decided before the rules.
pub struct Whole {
    pub reason: &'static str,
    pub detail: String,
    pub rid: Option<String>,
    pub mid: Option<String>,
    pub ident: Option<String>,
    pub raw: Option<String>,
}

/// A `delete_message` or `erase_identity` record (SPEC section 3a) that passed the whole-record
/// checks; an erasure has no message.
pub struct Removal<'a> {
    pub rid: &'a str,
    pub mid: Option<&'a str>,
    pub ident: &'a str,
    pub status: Option<&'a str>,
}

pub enum Decoded<'a> {
    Response(Response<'a>),
    Removal(Removal<'a>),
    Rejected(Whole),
}

/// The dictionary keys, interned once.
pub struct Keys {
    id: Py<PyString>,
    message_id: Py<PyString>,
    part_id: Py<PyString>,
    identity_id: Py<PyString>,
    changes: Py<PyString>,
    status_text: Py<PyString>,
    sent_at: Py<PyString>,
    operation: Py<PyString>,
    kind: Py<PyString>,
    name: Py<PyString>,
    value: Py<PyString>,
    record_kind: Py<PyString>,
}

impl Keys {
    pub fn new(py: Python<'_>) -> Keys {
        let key = |text: &str| PyString::intern(py, text).unbind();
        Keys {
            id: key("id"),
            message_id: key("message_id"),
            part_id: key("part_id"),
            identity_id: key("identity_id"),
            changes: key("changes"),
            status_text: key("status_text"),
            sent_at: key("sent_at"),
            operation: key("operation"),
            kind: key("type"),
            name: key("name"),
            value: key("value"),
            record_kind: key("kind"),
        }
    }
}

type Obj = *mut ffi::PyObject;

/// `dict.get(key)` as a borrowed reference (null when absent).
unsafe fn get(dict: Obj, key: &Py<PyString>) -> Obj {
    let found = ffi::PyDict_GetItemWithError(dict, key.as_ptr());
    if found.is_null() {
        ffi::PyErr_Clear();
    }
    found
}

unsafe fn is_none(obj: Obj) -> bool {
    obj.is_null() || obj == ffi::Py_None()
}

/// The text of an exact `str`, borrowed for as long as the object lives.
unsafe fn text<'a>(obj: Obj) -> Option<&'a str> {
    if obj.is_null() || ffi::PyUnicode_CheckExact(obj) == 0 {
        return None;
    }
    let mut size: ffi::Py_ssize_t = 0;
    let data = ffi::PyUnicode_AsUTF8AndSize(obj, &mut size);
    if data.is_null() {
        ffi::PyErr_Clear(); // a lone surrogate: orjson never makes one
        return None;
    }
    Some(std::str::from_utf8_unchecked(slice::from_raw_parts(data as *const u8, size as usize)))
}

/// Code points of a `str` (Python's `len`).
unsafe fn code_points(obj: Obj) -> isize {
    ffi::PyUnicode_GetLength(obj)
}

unsafe fn is_int(obj: Obj) -> bool {
    ffi::PyLong_CheckExact(obj) != 0
}

/// An exact int in the 64-bit signed range.
unsafe fn small_int(obj: Obj) -> Option<i64> {
    let mut overflow = 0;
    let n = ffi::PyLong_AsLongLongAndOverflow(obj, &mut overflow);
    if overflow != 0 {
        return None;
    }
    if n == -1 && !ffi::PyErr_Occurred().is_null() {
        ffi::PyErr_Clear();
        return None;
    }
    Some(n)
}

/// `schemas.values.json_kind`.
pub unsafe fn json_kind(obj: Obj) -> String {
    if is_none(obj) {
        return "null".into();
    }
    if ffi::PyBool_Check(obj) != 0 {
        return "a boolean".into();
    }
    if ffi::PyLong_Check(obj) != 0 {
        return "an integer".into();
    }
    if ffi::PyFloat_Check(obj) != 0 {
        return "a number".into();
    }
    if ffi::PyUnicode_Check(obj) != 0 {
        return "a string".into();
    }
    if ffi::PyList_Check(obj) != 0 {
        return "an array".into();
    }
    if ffi::PyDict_Check(obj) != 0 {
        return "an object".into();
    }
    let kind = Bound::<PyAny>::from_borrowed_ptr(Python::assume_attached(), obj).get_type();
    kind.name().map(|name| name.to_string()).unwrap_or_else(|_| "object".into())
}

/// The id fields of a decoded record, copied when they are strings (`rejections.of_record`).
unsafe fn whole(keys: &Keys, record: Obj, reason: &'static str, detail: String) -> Whole {
    let copy = |key: &Py<PyString>| text(get(record, key)).map(str::to_owned);
    Whole {
        reason,
        detail,
        rid: copy(&keys.id),
        mid: copy(&keys.message_id),
        ident: copy(&keys.identity_id),
        raw: None,
    }
}

pub fn malformed(raw: &[u8], detail: String) -> Whole {
    Whole { reason: "malformed", detail, rid: None, mid: None, ident: None, raw: Some(json::base64(raw)) }
}

pub fn too_large(size: usize) -> Whole {
    Whole {
        reason: "too_large",
        detail: format!("the record is {size} bytes, over the limit of {MAX_RECORD_BYTES}"),
        rid: None,
        mid: None,
        ident: None,
        raw: None,
    }
}

/// Decode a parsed record (`decode_response` after `orjson.loads`).
///
/// Safety: `record` must be alive, and not changed, for as long as the result is used.
/// The caller has checked that `record` is a dict (`not_an_object`).
pub unsafe fn decode<'a>(keys: &Keys, record: Obj, authentic: bool) -> Decoded<'a> {
    let kind = get(record, &keys.record_kind);
    if !kind.is_null() && text(kind) != Some("response") {
        return decode_removal(keys, record, kind, authentic);
    }
    let rid = get(record, &keys.id);
    let mid = get(record, &keys.message_id);
    let ident = get(record, &keys.identity_id);
    let changes = get(record, &keys.changes);
    let part = get(record, &keys.part_id);
    let status = get(record, &keys.status_text);
    let sent_at = get(record, &keys.sent_at);
    let bounded = |obj: Obj, high: isize| {
        ffi::PyUnicode_CheckExact(obj) != 0 && {
            let n = code_points(obj);
            0 < n && n <= high
        }
    };
    let fine = !rid.is_null()
        && !mid.is_null()
        && !ident.is_null()
        && !changes.is_null()
        && bounded(rid, MAX_RESPONSE_ID)
        && bounded(mid, MAX_MESSAGE_ID)
        && bounded(ident, MAX_IDENTITY_ID)
        && ffi::PyList_CheckExact(changes) != 0
        && {
            let n = ffi::PyList_GET_SIZE(changes);
            0 < n && n <= MAX_CHANGES
        }
        && (is_none(part) || bounded(part, MAX_PART_ID))
        && (is_none(status)
            || (ffi::PyUnicode_CheckExact(status) != 0 && code_points(status) <= MAX_STATUS_TEXT))
        && (is_none(sent_at) || (is_int(sent_at) && small_int(sent_at).is_some()));
    if !fine {
        return Decoded::Rejected(whole(keys, record, "invalid", invalid_detail(keys, record)));
    }
    let count = ffi::PyList_GET_SIZE(changes);
    for i in 0..count {
        if deeper_than(ffi::PyList_GET_ITEM(changes, i), 1, MAX_CHANGE_DEPTH) {
            let detail = format!("change {i} is nested deeper than {MAX_CHANGE_DEPTH} levels");
            return Decoded::Rejected(whole(keys, record, "invalid", detail));
        }
    }
    if !authentic {
        let detail = "the record's signature is missing or wrong".to_string();
        return Decoded::Rejected(whole(keys, record, "unauthenticated", detail));
    }
    let mut decoded = Vec::with_capacity(count as usize);
    for i in 0..count {
        decoded.push(decode_change(keys, ffi::PyList_GET_ITEM(changes, i)));
    }
    Decoded::Response(Response {
        rid: text(rid).unwrap_or(""),
        mid: text(mid).unwrap_or(""),
        pid: if is_none(part) { "root" } else { text(part).unwrap_or("") },
        ident: text(ident).unwrap_or(""),
        status: if is_none(status) { None } else { text(status) },
        changes: decoded,
    })
}

/// A record whose `kind` is not "response" (`schemas.records._decode_other`): a deletion, an
/// erasure, or invalid.
unsafe fn decode_removal<'a>(keys: &Keys, record: Obj, kind: Obj, authentic: bool) -> Decoded<'a> {
    let is_delete = match text(kind) {
        Some("delete_message") => true,
        Some("erase_identity") => false,
        other => {
            let shown = match other {
                Some(other) => {
                    let mut out = Vec::new();
                    json::write_str(&mut out, other);
                    String::from_utf8_lossy(&out).into_owned()
                }
                None => json_kind(kind),
            };
            let detail = format!(
                "\"kind\" is {shown}; it must be one of response, delete_message, erase_identity (or absent)"
            );
            return Decoded::Rejected(whole(keys, record, "invalid", detail));
        }
    };
    let mut fields = vec![(&keys.id, 1, MAX_RESPONSE_ID, false)];
    if is_delete {
        fields.push((&keys.message_id, 1, MAX_MESSAGE_ID, false));
    }
    fields.push((&keys.identity_id, 1, MAX_IDENTITY_ID, false));
    fields.push((&keys.status_text, 0, MAX_STATUS_TEXT, true));
    for (key, low, high, optional) in fields {
        let problem = text_problem(record, key, low, high, optional);
        if !problem.is_empty() {
            return Decoded::Rejected(whole(keys, record, "invalid", problem));
        }
    }
    let sent_at = get(record, &keys.sent_at);
    if !(is_none(sent_at) || (is_int(sent_at) && small_int(sent_at).is_some())) {
        return Decoded::Rejected(whole(keys, record, "invalid", sent_at_problem(sent_at)));
    }
    if !authentic {
        let detail = "the record's signature is missing or wrong".to_string();
        return Decoded::Rejected(whole(keys, record, "unauthenticated", detail));
    }
    let status = get(record, &keys.status_text);
    Decoded::Removal(Removal {
        rid: text(get(record, &keys.id)).unwrap_or(""),
        mid: if is_delete { text(get(record, &keys.message_id)) } else { None },
        ident: text(get(record, &keys.identity_id)).unwrap_or(""),
        status: if is_none(status) { None } else { text(status) },
    })
}

/// Whether a list or dict at nesting level `depth` holds anything deeper than `limit` levels
/// (`schemas.records._too_deep_change`). Recursion stops past `limit`.
unsafe fn deeper_than(obj: Obj, depth: usize, limit: usize) -> bool {
    if ffi::PyList_CheckExact(obj) != 0 {
        if depth > limit {
            return true;
        }
        let n = ffi::PyList_GET_SIZE(obj);
        (0..n).any(|i| deeper_than(ffi::PyList_GET_ITEM(obj, i), depth + 1, limit))
    } else if ffi::PyDict_CheckExact(obj) != 0 {
        if depth > limit {
            return true;
        }
        let mut at: ffi::Py_ssize_t = 0;
        let mut key: Obj = std::ptr::null_mut();
        let mut value: Obj = std::ptr::null_mut();
        while ffi::PyDict_Next(obj, &mut at, &mut key, &mut value) != 0 {
            if deeper_than(value, depth + 1, limit) {
                return true;
            }
        }
        false
    } else {
        false
    }
}

/// Why a parsed value is not a record (not a JSON object), or None when it is one.
pub unsafe fn not_an_object(record: Obj) -> Option<String> {
    if ffi::PyDict_CheckExact(record) != 0 {
        None
    } else {
        Some(format!("the record is {}, not a JSON object", json_kind(record)))
    }
}

fn invalid_change(raw: Obj, error: String) -> Change<'static> {
    Change { is_add: false, kind: Kind::Set, name: "", value: Vec::new(), raw: Raw::Object(raw), error: Some(error) }
}

/// `schemas.records.is_state_name`.
pub fn is_state_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// `schemas.records.decode_change`.
unsafe fn decode_change<'a>(keys: &Keys, raw: Obj) -> Change<'a> {
    if ffi::PyDict_CheckExact(raw) == 0 {
        return invalid_change(raw, format!("the change is {}, not a JSON object", json_kind(raw)));
    }
    let op = text(get(raw, &keys.operation));
    let is_add = match op {
        Some("add") => true,
        Some("remove") => false,
        _ => return invalid_change(raw, "the change's \"operation\" must be \"add\" or \"remove\"".into()),
    };
    let kind = match text(get(raw, &keys.kind)).and_then(Kind::parse) {
        Some(kind) => kind,
        None => {
            return invalid_change(raw, "the change's \"type\" must be one of Set, FWW, LWW, LWWN".into())
        }
    };
    let name = match text(get(raw, &keys.name)) {
        Some(name) if is_state_name(name) => name,
        _ => {
            return invalid_change(
                raw,
                format!("the change's \"name\" must be 1-{MAX_NAME} characters of A-Z a-z 0-9 _ . : -"),
            )
        }
    };
    let mut encoded = Vec::new();
    let value = get(raw, &keys.value);
    if is_add || kind == Kind::Set {
        if value.is_null() {
            let op = if is_add { "add" } else { "remove" };
            return invalid_change(raw, format!("{} {op} needs a value", kind.with_article()));
        }
        if let Err(problem) = values::encode(value, &mut encoded) {
            return invalid_change(raw, format!("bad value: {problem}"));
        }
    } else if kind == Kind::Lwwn && !is_none(value) {
        if let Err(problem) = values::encode(value, &mut encoded) {
            return invalid_change(raw, format!("bad value: {problem}"));
        }
    }
    Change { is_add, kind, name, value: encoded, raw: Raw::Object(raw), error: None }
}

/// `_text_problem`: empty when the field is fine.
unsafe fn text_problem(record: Obj, key: &Py<PyString>, low: isize, high: isize, optional: bool) -> String {
    let value = get(record, key);
    if is_none(value) && optional {
        return String::new();
    }
    let is_str = !value.is_null() && ffi::PyUnicode_CheckExact(value) != 0;
    if is_str {
        let n = code_points(value);
        if low <= n && n <= high {
            return String::new();
        }
    }
    let mut what = if low != 0 {
        format!("a string of {low}-{high} characters")
    } else {
        format!("a string of at most {high} characters")
    };
    if optional {
        what.push_str(" or null");
    }
    let name = Bound::<PyAny>::from_borrowed_ptr(Python::assume_attached(), key.as_ptr()).to_string();
    if value.is_null() {
        return format!("\"{name}\" is missing; it must be {what}");
    }
    if is_str {
        return format!("\"{name}\" has {} characters; it must be {what}", code_points(value));
    }
    format!("\"{name}\" is {}; it must be {what}", json_kind(value))
}

/// `_invalid_detail`: why a record that failed the fast check is invalid.
unsafe fn invalid_detail(keys: &Keys, record: Obj) -> String {
    for (key, low, high, optional) in [
        (&keys.id, 1, MAX_RESPONSE_ID, false),
        (&keys.message_id, 1, MAX_MESSAGE_ID, false),
        (&keys.part_id, 1, MAX_PART_ID, true),
        (&keys.identity_id, 1, MAX_IDENTITY_ID, false),
    ] {
        let problem = text_problem(record, key, low, high, optional);
        if !problem.is_empty() {
            return problem;
        }
    }
    let changes = get(record, &keys.changes);
    if changes.is_null() {
        return format!("\"changes\" is missing; it must be an array of 1-{MAX_CHANGES} changes");
    }
    if ffi::PyList_CheckExact(changes) == 0 {
        return format!(
            "\"changes\" is {}; it must be an array of 1-{MAX_CHANGES} changes",
            json_kind(changes)
        );
    }
    let n = ffi::PyList_GET_SIZE(changes);
    if !(0 < n && n <= MAX_CHANGES) {
        return format!("\"changes\" has {n} items; it must have 1-{MAX_CHANGES}");
    }
    let problem = text_problem(record, &keys.status_text, 0, MAX_STATUS_TEXT, true);
    if !problem.is_empty() {
        return problem;
    }
    let sent_at = get(record, &keys.sent_at);
    let sent_at_fine = is_none(sent_at) || (is_int(sent_at) && small_int(sent_at).is_some());
    if !sent_at_fine {
        return sent_at_problem(sent_at);
    }
    "the record breaks the Response Message rules".into()
}

unsafe fn sent_at_problem(sent_at: Obj) -> String {
    let what = if is_int(sent_at) { "out of range".to_string() } else { json_kind(sent_at) };
    format!("\"sent_at\" is {what}; it must be an integer in the 64-bit signed range or null")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_named_as_on_the_wire() {
        for (text, kind) in [("Set", Kind::Set), ("FWW", Kind::Fww), ("LWW", Kind::Lww), ("LWWN", Kind::Lwwn)] {
            assert_eq!(Kind::parse(text), Some(kind));
            assert_eq!(kind.name(), text);
        }
        for text in ["", "set", "SET", "fww", "Lww", "lwwn", "LWW ", " Set", "LWWN\n", "Map"] {
            assert_eq!(Kind::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn state_names_are_1_to_128_of_the_allowed_characters() {
        let longest = "n".repeat(128);
        for name in ["a", "Z", "0", "_", ".", ":", "-", "favorite_colors", "poll:v2.choice-1", longest.as_str()] {
            assert!(is_state_name(name), "{name:?}");
        }
        let too_long = "n".repeat(129);
        for name in ["", too_long.as_str(), "a b", "a\n", "a\tb", "é", "a/b", "a\"", "a\\b", "ä", "a\u{0}", "a,b"] {
            assert!(!is_state_name(name), "{name:?}");
        }
    }

    #[test]
    fn limits_are_the_specs() {
        assert_eq!(MAX_RECORD_BYTES, 65_536);
        assert_eq!(MAX_RESPONSE_ID, 128);
        assert_eq!(MAX_MESSAGE_ID, 256);
        assert_eq!(MAX_PART_ID, 128);
        assert_eq!(MAX_IDENTITY_ID, 256);
        assert_eq!(MAX_STATUS_TEXT, 4096);
        assert_eq!(MAX_CHANGES, 100);
        assert_eq!(MAX_VALUE_BYTES, 1024);
    }

    #[test]
    fn a_malformed_record_carries_its_bytes_and_no_ids() {
        let whole = malformed(b"{\xff", "the record is not UTF-8 JSON".into());
        assert_eq!(whole.reason, "malformed");
        assert_eq!(whole.detail, "the record is not UTF-8 JSON");
        assert_eq!(whole.raw.as_deref(), Some("e/8="));
        assert!(whole.rid.is_none() && whole.mid.is_none() && whole.ident.is_none());
    }

    #[test]
    fn a_too_large_record_carries_nothing_but_its_size() {
        let whole = too_large(70_000);
        assert_eq!(whole.reason, "too_large");
        assert_eq!(whole.detail, "the record is 70000 bytes, over the limit of 65536");
        assert!(whole.raw.is_none());
        assert!(whole.rid.is_none() && whole.mid.is_none() && whole.ident.is_none());
    }
}
