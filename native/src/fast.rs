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
