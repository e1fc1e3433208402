//! JSON output byte for byte as orjson writes it (compact, keys sorted by the caller).

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A string literal, escaped like orjson: `"` `\` and the C0 controls only, UTF-8 as is.
pub fn write_str(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x09 => out.extend_from_slice(b"\\t"),
            0x0a => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x0d => out.extend_from_slice(b"\\r"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 15) as usize],
            ]),
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

pub fn write_opt_str(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => write_str(out, text),
        None => out.extend_from_slice(b"null"),
    }
}

pub fn write_int<I: itoa::Integer>(out: &mut Vec<u8>, n: I) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// The text of a JSON string literal (as orjson or `write_str` wrote it).
pub fn unescape(literal: &[u8]) -> String {
    let inner = &literal[1..literal.len() - 1];
    if !inner.contains(&b'\\') {
        return String::from_utf8_lossy(inner).into_owned();
    }
    let mut units: Vec<u16> = Vec::new();
    let mut out = String::with_capacity(inner.len());
    let text = String::from_utf8_lossy(inner);
    let mut chars = text.chars();
    let flush = |units: &mut Vec<u16>, out: &mut String| {
        if !units.is_empty() {
            out.extend(char::decode_utf16(units.drain(..)).map(|c| c.unwrap_or('\u{fffd}')));
        }
    };
    while let Some(c) = chars.next() {
        if c != '\\' {
            flush(&mut units, &mut out);
            out.push(c);
            continue;
        }
        let plain = match chars.next() {
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                units.push(u16::from_str_radix(&hex, 16).unwrap_or(0xfffd));
                continue;
            }
            Some('b') => '\u{8}',
            Some('t') => '\t',
            Some('n') => '\n',
            Some('f') => '\u{c}',
            Some('r') => '\r',
            Some(other) => other,
            None => break,
        };
        flush(&mut units, &mut out);
        out.push(plain);
    }
    flush(&mut units, &mut out);
    out
}

/// Base64 (standard alphabet, padded), for the raw bytes of a malformed record.
pub fn base64(raw: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// The members of a JSON array as written (`["a",1,true]` → `"a"`, `1`, `true`), when each is
/// written as orjson writes it again: a string with only the short escapes, a canonical
/// integer, `true` or `false` (what a Set's members are, SPEC section 2). None for anything
/// else (whitespace, a float, a `\u` escape, ...): the caller parses that the long way.
pub fn split_array(raw: &[u8]) -> Option<Vec<&[u8]>> {
    let inner = raw.strip_prefix(b"[")?.strip_suffix(b"]")?;
    let mut members = Vec::new();
    let mut at = 0;
    while at < inner.len() {
        let end = at + member_len(&inner[at..])?;
        members.push(&inner[at..end]);
        match inner.get(end) {
            None => return Some(members),
            Some(b',') if end + 1 < inner.len() => at = end + 1,
            _ => return None,
        }
    }
    Some(members)
}

fn member_len(text: &[u8]) -> Option<usize> {
    match text.first()? {
        b'"' => {
            let mut i = 1;
            while i < text.len() {
                match text[i] {
                    b'"' => return Some(i + 1),
                    b'\\' => match text.get(i + 1)? {
                        b'"' | b'\\' | b'b' | b't' | b'n' | b'f' | b'r' => i += 2,
                        _ => return None,
                    },
                    c if c < 0x20 => return None,
                    _ => i += 1,
                }
            }
            None
        }
        b't' if text.starts_with(b"true") => Some(4),
        b'f' if text.starts_with(b"false") => Some(5),
        _ => {
            let sign = usize::from(text[0] == b'-');
            let digits = text[sign..].iter().take_while(|c| c.is_ascii_digit()).count();
            let canonical = match text.get(sign) {
                Some(b'0') => digits == 1 && sign == 0,
                Some(_) => digits > 0,
                None => false,
            };
            // Past 18 digits an integer may leave the 64-bit range; orjson judges those.
            (canonical && digits <= 18).then_some(sign + digits)
        }
    }
}
