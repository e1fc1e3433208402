//! The common record read straight from its bytes, with no Python object: a Response Message
//! whose every field and change is valid, in plain JSON (no escape in any string, integers
//! only, nesting of a few levels). Anything else returns None and takes the long way (orjson,
//! then `decode::decode`), which alone words rejections: so this path never decides a reason,
//! it only recognises records the long way would take whole, and reads them as it would.
//!
//! orjson keeps the last of repeated keys; so does this reader.

use crate::decode::{self, is_state_name, Change, Kind, Raw, Response, MAX_VALUE_BYTES};
use crate::json;

const MAX_RESPONSE_ID: usize = decode::MAX_RESPONSE_ID as usize;
const MAX_MESSAGE_ID: usize = decode::MAX_MESSAGE_ID as usize;
const MAX_PART_ID: usize = decode::MAX_PART_ID as usize;
const MAX_IDENTITY_ID: usize = decode::MAX_IDENTITY_ID as usize;
const MAX_STATUS_TEXT: usize = decode::MAX_STATUS_TEXT as usize;
const MAX_CHANGES: usize = decode::MAX_CHANGES as usize;
/// Deeper records take the long way, which checks the nesting limit of changes.
const MAX_DEPTH: usize = 8;

/// A JSON value as this reader keeps it: what a field needs, the rest only skipped.
#[derive(Clone, Copy)]
enum Value<'a> {
    Str(&'a str),
    Int(i64),
    Bool(bool),
    Null,
    /// An object or array, skipped.
    Other,
}

struct Reader<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        self.space();
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// A string with no escape and no control character; its bytes are valid UTF-8 because
    /// the whole record was checked first.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        loop {
            match self.peek()? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                _ => self.at += 1,
            }
        }
        let text = &self.text[start..self.at];
        self.at += 1;
        // Safety: the record is UTF-8 and a string ends at an ASCII quote.
        Some(unsafe { std::str::from_utf8_unchecked(text) })
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.text[self.at..].starts_with(word).then(|| self.at += word.len())
    }

    /// An integer in the 64-bit signed range, in JSON's form; None for any other number.
    fn integer(&mut self) -> Option<i64> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        let digits = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        let count = self.at - digits;
        if count == 0 || (count > 1 && self.text[digits] == b'0') {
            return None;
        }
        if let Some(b'.' | b'e' | b'E') = self.peek() {
            return None;
        }
        // Safety: ASCII digits and a sign.
        unsafe { std::str::from_utf8_unchecked(&self.text[start..self.at]) }.parse().ok()
    }

    fn value(&mut self, depth: usize) -> Option<Value<'a>> {
        self.space();
        Some(match self.peek()? {
            b'"' => Value::Str(self.string()?),
            b't' => {
                self.literal(b"true")?;
                Value::Bool(true)
            }
            b'f' => {
                self.literal(b"false")?;
                Value::Bool(false)
            }
            b'n' => {
                self.literal(b"null")?;
                Value::Null
            }
            b'{' | b'[' => {
                self.skip_container(depth + 1)?;
                Value::Other
            }
            _ => Value::Int(self.integer()?),
        })
    }

    fn skip_container(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        if self.peek()? == b'{' {
            self.object(|reader, _| reader.value(depth).map(drop))
        } else {
            self.array(|reader| reader.value(depth).map(drop))
        }
    }

    /// `{ "key": value, ... }`, each member handed to `member`, which reads its value.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        self.space();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            member(self, key)?;
            self.space();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn array(&mut self, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        self.space();
        if self.peek()? == b']' {
            self.at += 1;
            return Some(());
        }
        loop {
            item(self)?;
            self.space();
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }
}

/// A text field's value: present as a string of `1..=high` characters.
fn bounded(value: Option<Value<'_>>, high: usize) -> Option<&str> {
    match value? {
        Value::Str(text) if !text.is_empty() && text.chars().count() <= high => Some(text),
        _ => None,
    }
}

/// `decode::encode_value` for a valid value.
fn encoded(value: Value<'_>) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match value {
        Value::Str(text) if text.len() <= MAX_VALUE_BYTES => json::write_str(&mut out, text),
        Value::Int(n) => json::write_int(&mut out, n),
        Value::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        _ => return None,
    }
    Some(out)
}

fn change<'a>(reader: &mut Reader<'a>) -> Option<Change<'a>> {
    reader.space();
    let start = reader.at;
    let (mut op, mut kind, mut name, mut value) = (None, None, None, None);
    reader.object(|reader, key| {
        let read = reader.value(2)?;
        match key {
            "operation" => op = Some(read),
            "type" => kind = Some(read),
            "name" => name = Some(read),
            "value" => value = Some(read),
            _ => {}
        }
        Some(())
    })?;
    let raw = Raw::Text(&reader.text[start..reader.at]);
    let is_add = match op? {
        Value::Str("add") => true,
        Value::Str("remove") => false,
        _ => return None,
    };
    let kind = match kind? {
        Value::Str(text) => Kind::parse(text)?,
        _ => return None,
    };
    let name = match name? {
        Value::Str(text) if is_state_name(text) => text,
        _ => return None,
    };
    let value = if is_add || kind == Kind::Set {
        encoded(value?)?
    } else if kind == Kind::Lwwn {
        match value {
            None | Some(Value::Null) => Vec::new(),
            Some(value) => encoded(value)?,
        }
    } else {
        Vec::new() // an FWW or LWW remove: refused whatever its value
    };
    Some(Change { is_add, kind, name, value, raw, error: None })
}

/// The record as `decode::decode` would read it, when it is a valid response in plain JSON.
pub fn decode(record: &[u8]) -> Option<Response<'_>> {
    std::str::from_utf8(record).ok()?;
    let mut reader = Reader { text: record, at: 0 };
    let (mut rid, mut mid, mut pid, mut ident, mut status, mut sent_at) = (None, None, None, None, None, None);
    let mut changes: Option<Vec<Change<'_>>> = None;
    reader.object(|reader, key| {
        match key {
            "changes" => {
                reader.space();
                let mut list = Vec::new();
                reader.array(|reader| {
                    list.push(change(reader)?);
                    (list.len() <= MAX_CHANGES).then_some(())
                })?;
                changes = Some(list);
            }
            _ => {
                // A record of another kind (SPEC section 3a) takes the long way.
                if key == "kind" {
                    return None;
                }
                let read = reader.value(1)?;
                match key {
                    "id" => rid = Some(read),
                    "message_id" => mid = Some(read),
                    "part_id" => pid = Some(read),
                    "identity_id" => ident = Some(read),
                    "status_text" => status = Some(read),
                    "sent_at" => sent_at = Some(read),
                    _ => {}
                }
            }
        }
        Some(())
    })?;
    reader.space();
    if reader.at != record.len() {
        return None;
    }
    let changes = changes.filter(|list| !list.is_empty())?;
    let pid = match pid {
        None | Some(Value::Null) => "root",
        some => bounded(some, MAX_PART_ID)?,
    };
    let status = match status {
        None | Some(Value::Null) => None,
        Some(Value::Str(text)) if text.chars().count() <= MAX_STATUS_TEXT => Some(text),
        _ => return None,
    };
    if !matches!(sent_at, None | Some(Value::Null | Value::Int(_))) {
        return None;
    }
    Some(Response {
        rid: bounded(rid, MAX_RESPONSE_ID)?,
        mid: bounded(mid, MAX_MESSAGE_ID)?,
        pid,
        ident: bounded(ident, MAX_IDENTITY_ID)?,
        status,
        changes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHANGE: &str = r#"{"operation":"add","type":"Set","name":"colors","value":"red"}"#;

    fn record(changes: &str) -> String {
        format!(r#"{{"id":"r1","message_id":"m1","identity_id":"u1","changes":[{changes}]}}"#)
    }

    fn read(text: &str) -> Option<Response<'_>> {
        decode(text.as_bytes())
    }

    fn raw<'a>(change: &Change<'a>) -> &'a str {
        match change.raw {
            Raw::Text(text) => std::str::from_utf8(text).unwrap(),
            Raw::Object(_) => panic!("the plain reader keeps a change's text"),
        }
    }

    /// The only change of a record read from a single change.
    fn only(change: &str) -> Option<(bool, Kind, String, String)> {
        let text = record(change);
        let response = read(&text)?;
        assert_eq!(response.changes.len(), 1);
        let c = &response.changes[0];
        assert!(c.error.is_none());
        assert_eq!(raw(c), change);
        Some((c.is_add, c.kind, c.name.to_owned(), String::from_utf8(c.value.clone()).unwrap()))
    }

    #[test]
    fn a_plain_record_is_read_whole() {
        let text = concat!(
            r#"{"id":"r-01","message_id":"layer:///messages/940de862","part_id":"p1","#,
            r#""identity_id":"layer:///identities/Frodo","status_text":"Frodo chose","sent_at":1732277000123,"#,
            r#""changes":[{"operation":"remove","type":"Set","name":"favorite_colors","value":"blue"},"#,
            r#"{"operation":"add","type":"LWW","name":"latest","value":-42},"#,
            r#"{"value":true,"name":"f","type":"FWW","operation":"add"}]}"#
        );
        let r = read(text).expect("a plain record");
        assert_eq!(r.rid, "r-01");
        assert_eq!(r.mid, "layer:///messages/940de862");
        assert_eq!(r.pid, "p1");
        assert_eq!(r.ident, "layer:///identities/Frodo");
        assert_eq!(r.status, Some("Frodo chose"));
        let seen: Vec<_> = r.changes.iter().map(|c| (c.is_add, c.kind, c.name, c.value.as_slice(), raw(c))).collect();
        assert_eq!(
            seen,
            [
                (
                    false,
                    Kind::Set,
                    "favorite_colors",
                    &b"\"blue\""[..],
                    r#"{"operation":"remove","type":"Set","name":"favorite_colors","value":"blue"}"#
                ),
                (true, Kind::Lww, "latest", b"-42", r#"{"operation":"add","type":"LWW","name":"latest","value":-42}"#),
                (true, Kind::Fww, "f", b"true", r#"{"value":true,"name":"f","type":"FWW","operation":"add"}"#),
            ]
        );
        assert!(r.changes.iter().all(|c| c.error.is_none()));
    }

    #[test]
    fn optional_fields_default_as_the_long_way_has_them() {
        let text = record(CHANGE);
        let r = read(&text).unwrap();
        assert_eq!((r.pid, r.status), ("root", None));
        let text = r#"{"id":"r1","message_id":"m1","identity_id":"u1","part_id":null,"status_text":null,"sent_at":null,"changes":[{"operation":"add","type":"Set","name":"colors","value":"red"}]}"#;
        let r = read(text).unwrap();
        assert_eq!((r.pid, r.status), ("root", None));
    }

    #[test]
    fn whitespace_unknown_fields_and_repeated_keys() {
        let text = " {\n\t\"id\" : \"old\" , \"id\":\"r1\", \"extra\": {\"a\": [1, {\"b\": null}], \"c\": false},\r\n \"message_id\":\"m1\",\"identity_id\":\"u1\", \"changes\" : [ {\"operation\" : \"add\", \"type\":\"LWW\",\"name\":\"n\",\"value\":\"x\", \"note\":[]} ] } \n";
        let r = read(text).expect("plain JSON with whitespace");
        assert_eq!(r.rid, "r1", "the last of repeated keys counts, as in orjson");
        assert_eq!(r.changes[0].value, b"\"x\"");
        // The last value of a repeated key is checked: a bad one refuses the record.
        assert!(read(r#"{"id":"r1","id":"","message_id":"m1","identity_id":"u1","changes":[{"operation":"add","type":"Set","name":"colors","value":"red"}]}"#).is_none());
        // A repeated change key: the last one counts.
        let (is_add, ..) = only(r#"{"operation":"remove","type":"LWWN","name":"n","operation":"add","value":1}"#).unwrap();
        assert!(is_add);
    }

    #[test]
    fn values_are_encoded_canonically() {
        assert_eq!(only(CHANGE).unwrap().3, r#""red""#);
        assert_eq!(only(r#"{"operation":"add","type":"LWW","name":"n","value":0}"#).unwrap().3, "0");
        assert_eq!(only(r#"{"operation":"add","type":"LWW","name":"n","value":-0}"#).unwrap().3, "0");
        assert_eq!(
            only(r#"{"operation":"add","type":"LWW","name":"n","value":-9223372036854775808}"#).unwrap().3,
            "-9223372036854775808"
        );
        assert_eq!(only(r#"{"operation":"add","type":"LWW","name":"n","value":false}"#).unwrap().3, "false");
        let longest = format!(r#"{{"operation":"add","type":"LWW","name":"n","value":"{}"}}"#, "é".repeat(512));
        assert_eq!(only(&longest).unwrap().3.len(), 1024 + 2);
    }

    #[test]
    fn removes_take_a_value_only_where_the_spec_needs_one() {
        // An LWWN remove: no value, or null, means none.
        for change in [
            r#"{"operation":"remove","type":"LWWN","name":"n"}"#,
            r#"{"operation":"remove","type":"LWWN","name":"n","value":null}"#,
        ] {
            assert_eq!(only(change).unwrap(), (false, Kind::Lwwn, "n".into(), String::new()));
        }
        let given = only(r#"{"operation":"remove","type":"LWWN","name":"n","value":"x"}"#).unwrap();
        assert_eq!(given.3, r#""x""#);
        // FWW and LWW removes are read whatever their value: the rules refuse them.
        for change in [
            r#"{"operation":"remove","type":"FWW","name":"n"}"#,
            r#"{"operation":"remove","type":"LWW","name":"n","value":{"any":["thing"]}}"#,
        ] {
            let (is_add, _, _, value) = only(change).unwrap();
            assert!(!is_add && value.is_empty());
        }
        // A Set remove needs a value.
        assert!(only(r#"{"operation":"remove","type":"Set","name":"n"}"#).is_none());
    }

    #[test]
    fn field_lengths_are_counted_in_code_points() {
        let longest = |key: &str, n: usize| {
            format!(
                r#"{{"id":"r1","message_id":"m1","identity_id":"u1","{key}":"{}","changes":[{CHANGE}]}}"#,
                "é".repeat(n)
            )
        };
        for (key, high) in [("id", 128), ("message_id", 256), ("identity_id", 256), ("part_id", 128)] {
            assert!(read(&longest(key, high)).is_some(), "{key} of {high}");
            assert!(read(&longest(key, high + 1)).is_none(), "{key} of {}", high + 1);
            assert!(read(&longest(key, 0)).is_none(), "empty {key}");
        }
        assert!(read(&longest("status_text", 4096)).is_some());
        assert!(read(&longest("status_text", 0)).is_some());
        assert!(read(&longest("status_text", 4097)).is_none());
    }

    #[test]
    fn changes_are_1_to_100() {
        let many = |n: usize| record(&vec![CHANGE; n].join(","));
        assert_eq!(read(&many(100)).unwrap().changes.len(), 100);
        assert!(read(&many(101)).is_none());
        assert!(read(&many(0)).is_none());
        assert!(read(r#"{"id":"r1","message_id":"m1","identity_id":"u1"}"#).is_none());
        assert!(read(r#"{"id":"r1","message_id":"m1","identity_id":"u1","changes":{}}"#).is_none());
    }

    #[test]
    fn anything_unusual_takes_the_long_way() {
        let plain = record(CHANGE);
        assert!(read(&plain).is_some());
        let refused = [
            // Not a plain object, or not JSON at all.
            String::new(),
            "[]".into(),
            "null".into(),
            plain.replacen('{', "[", 1),
            format!("{plain} x"),
            format!("{plain}{{}}"),
            plain[..plain.len() - 1].to_string(),
            plain.replace(":", " "),
            plain.replace(",\"message_id\"", ",,\"message_id\""),
            plain.replace("]}", "],}"),
            // Escapes and control characters in any string, keys too.
            plain.replace("\"r1\"", r#""r\u0031""#),
            plain.replace("\"m1\"", r#""m\"1""#),
            plain.replace("\"red\"", r#""r\/ed""#),
            plain.replace("\"red\"", "\"r\ted\""),
            plain.replace("\"identity_id\"", r#""identity\u005fid""#),
            // Required fields missing or of the wrong type.
            plain.replace("\"id\"", "\"ID\""),
            plain.replace("\"message_id\"", "\"message\""),
            plain.replace("\"identity_id\"", "\"identity\""),
            plain.replace("\"r1\"", "1"),
            plain.replace("\"m1\"", "null"),
            plain.replace("\"u1\"", "[\"u1\"]"),
            plain.replacen("{\"id\"", "{\"part_id\":7,\"id\"", 1),
            plain.replacen("{\"id\"", "{\"status_text\":false,\"id\"", 1),
            // sent_at: an integer in the 64-bit signed range, or null.
            plain.replacen("{\"id\"", "{\"sent_at\":true,\"id\"", 1),
            plain.replacen("{\"id\"", "{\"sent_at\":\"1\",\"id\"", 1),
            plain.replacen("{\"id\"", "{\"sent_at\":1.0,\"id\"", 1),
            plain.replacen("{\"id\"", "{\"sent_at\":1e3,\"id\"", 1),
            plain.replacen("{\"id\"", "{\"sent_at\":9223372036854775808,\"id\"", 1),
            // Numbers JSON does not allow, or that are not integers.
            plain.replacen("{\"id\"", "{\"x\":01,\"id\"", 1),
            plain.replacen("{\"id\"", "{\"x\":+1,\"id\"", 1),
            plain.replacen("{\"id\"", "{\"x\":-,\"id\"", 1),
            plain.replacen("{\"id\"", "{\"x\":tru,\"id\"", 1),
            plain.replacen("{\"id\"", "{\"x\":nul,\"id\"", 1),
            // Unknown fields nested deeper than the reader follows.
            plain.replacen("{\"id\"", "{\"x\":[[[[[[[[1]]]]]]]],\"id\"", 1),
        ];
        for text in &refused {
            assert!(read(text).is_none(), "{text}");
        }
        // Seven levels under the record are still followed.
        assert!(read(&plain.replacen("{\"id\"", "{\"x\":[[[[[[[1]]]]]]],\"id\"", 1)).is_some());
        // Bytes that are not UTF-8.
        let mut bytes = plain.clone().into_bytes();
        bytes[7] = 0xff; // inside the id string
        assert!(decode(&bytes).is_none());
    }

    #[test]
    fn a_change_that_is_not_valid_takes_the_long_way() {
        for change in [
            "\"add\"",
            "[]",
            "null",
            r#"{"type":"Set","name":"colors","value":"red"}"#,
            r#"{"operation":"put","type":"Set","name":"colors","value":"red"}"#,
            r#"{"operation":"ADD","type":"Set","name":"colors","value":"red"}"#,
            r#"{"operation":"add","name":"colors","value":"red"}"#,
            r#"{"operation":"add","type":"set","name":"colors","value":"red"}"#,
            r#"{"operation":"add","type":"Map","name":"colors","value":"red"}"#,
            r#"{"operation":"add","type":"Set","value":"red"}"#,
            r#"{"operation":"add","type":"Set","name":"","value":"red"}"#,
            r#"{"operation":"add","type":"Set","name":"favorite colors","value":"red"}"#,
            r#"{"operation":"add","type":"Set","name":7,"value":"red"}"#,
            // An add needs a valid value: a string of at most 1024 bytes, an integer, a boolean.
            r#"{"operation":"add","type":"LWW","name":"n"}"#,
            r#"{"operation":"add","type":"LWW","name":"n","value":null}"#,
            r#"{"operation":"add","type":"LWW","name":"n","value":1.5}"#,
            r#"{"operation":"add","type":"LWW","name":"n","value":1e2}"#,
            r#"{"operation":"add","type":"LWW","name":"n","value":[1]}"#,
            r#"{"operation":"add","type":"LWW","name":"n","value":{"a":1}}"#,
            r#"{"operation":"add","type":"LWW","name":"n","value":9223372036854775808}"#,
            r#"{"operation":"remove","type":"Set","name":"n","value":null}"#,
            r#"{"operation":"remove","type":"LWWN","name":"n","value":[]}"#,
        ] {
            assert!(only(change).is_none(), "{change}");
        }
        let too_long = format!(r#"{{"operation":"add","type":"LWW","name":"n","value":"{}"}}"#, "x".repeat(1025));
        assert!(only(&too_long).is_none());
        let name_too_long = format!(r#"{{"operation":"add","type":"LWW","name":"{}","value":1}}"#, "n".repeat(129));
        assert!(only(&name_too_long).is_none());
        // One bad change among good ones: the whole record takes the long way.
        assert!(read(&record(&format!("{CHANGE},{{\"operation\":\"add\"}}"))).is_none());
    }
}
