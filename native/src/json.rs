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

/// A finite float as orjson writes it, with the same formatter: the shortest digits that read
/// back to the same double, in plain notation from 1e-5 up to below 1e16 (`0.00001`, `100.0`),
/// else in scientific notation with a signed exponent (`1e-7`, `1.5e+16`); `-0.0` keeps its sign.
pub fn write_float(out: &mut Vec<u8>, value: f64) {
    out.extend_from_slice(zmij::Buffer::new().format_finite(value).as_bytes());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn written(text: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, text);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_are_escaped_as_orjson_escapes_them() {
        assert_eq!(written(""), r#""""#);
        assert_eq!(written("plain"), r#""plain""#);
        assert_eq!(written("say \"hi\""), r#""say \"hi\"""#);
        assert_eq!(written(r"back\slash"), r#""back\\slash""#);
        assert_eq!(written("\u{8}\t\n\u{c}\r"), r#""\b\t\n\f\r""#);
        assert_eq!(written("\u{0}\u{1}\u{1b}\u{1f}"), r#""\u0000\u0001\u001b\u001f""#);
        // DEL, U+2028 and non-ASCII text are written as they are, in UTF-8.
        assert_eq!(written("\u{7f}\u{2028}é😀"), "\"\u{7f}\u{2028}é😀\"");
        // An escape between plain runs keeps both runs.
        assert_eq!(written("a\nb\"c"), r#""a\nb\"c""#);
    }

    fn float(value: f64) -> String {
        let mut out = Vec::new();
        write_float(&mut out, value);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn floats_are_written_as_orjson_writes_them() {
        for (value, text) in [
            (1.0, "1.0"),
            (100.0, "100.0"),
            (0.5, "0.5"),
            (1e-7, "1e-7"),
            (1e16, "1e+16"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (1e-5, "0.00001"),
            (1.5e-6, "1.5e-6"),
            (1e15, "1000000000000000.0"),
            (-1.25e17, "-1.25e+17"),
            // Exactly halfway between two shortest forms: orjson's choice, one up, one down.
            (2f64.powi(-24), "5.960464477539063e-8"),
            (f64::from_bits(0xc2dd_a23a_399a_68c8), "-130330395044259.12"), // -130330395044259.125
        ] {
            assert_eq!(float(value), text, "{value:e}");
        }
    }

    #[test]
    fn floats_match_a_table_written_by_orjson() {
        let table = include_str!("../testdata/orjson_floats.txt");
        let mut checked = 0;
        for line in table.lines().filter(|line| !line.starts_with('#')) {
            let (bits, text) = line.split_once(' ').unwrap();
            let value = f64::from_bits(u64::from_str_radix(bits, 16).unwrap());
            assert_eq!(float(value), text, "{bits}");
            checked += 1;
        }
        assert!(checked >= 3000, "{checked}");
    }

    #[test]
    fn optional_strings_and_integers() {
        let mut out = Vec::new();
        write_opt_str(&mut out, None);
        out.push(b' ');
        write_opt_str(&mut out, Some("x"));
        out.push(b' ');
        write_int(&mut out, i64::MIN);
        out.push(b' ');
        write_int(&mut out, 0u64);
        out.push(b' ');
        write_int(&mut out, usize::MAX);
        assert_eq!(String::from_utf8(out).unwrap(), format!("null \"x\" -9223372036854775808 0 {}", usize::MAX));
    }

    #[test]
    fn unescape_reverses_write_str() {
        for text in ["", "plain", "a\"b\\c", "\u{0}\u{1f}\u{8}\t\n\u{c}\r", "é😀\u{2028}", "\\u0041"] {
            assert_eq!(unescape(written(text).as_bytes()), text, "{text:?}");
        }
    }

    #[test]
    fn unescape_reads_unicode_escapes() {
        assert_eq!(unescape(br#""\u0041\u00e9""#), "Aé");
        // A surrogate pair is one code point; a lone surrogate becomes U+FFFD.
        assert_eq!(unescape(br#""\ud83d\ude00!""#), "😀!");
        assert_eq!(unescape(br#""\ud83dx""#), "\u{fffd}x");
        assert_eq!(unescape(br#""\/""#), "/");
    }

    #[test]
    fn base64_is_standard_and_padded() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"hello"), "aGVsbG8=");
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }

    fn members(raw: &str) -> Option<Vec<&str>> {
        split_array(raw.as_bytes()).map(|m| m.into_iter().map(|b| std::str::from_utf8(b).unwrap()).collect())
    }

    #[test]
    fn split_array_reads_members_written_as_orjson_writes_them() {
        assert_eq!(members("[]"), Some(vec![]));
        assert_eq!(members(r#"["a",1,true,false,-5,0]"#), Some(vec![r#""a""#, "1", "true", "false", "-5", "0"]));
        assert_eq!(members(r#"["a\"b","c\\d","\n"]"#), Some(vec![r#""a\"b""#, r#""c\\d""#, r#""\n""#]));
        assert_eq!(members(r#"["a,b","]"]"#), Some(vec![r#""a,b""#, r#""]""#]));
        assert_eq!(members("[999999999999999999]"), Some(vec!["999999999999999999"]));
    }

    #[test]
    fn split_array_leaves_anything_else_to_the_long_way() {
        for raw in [
            "",
            "{}",
            "[",
            r#"["a""#,
            r#"["a]"#,
            "[ 1]",
            "[1, 2]",
            "[1,]",
            "[,1]",
            "[1,,2]",
            "[1.5]",
            "[1e2]",
            "[01]",
            "[-0]",
            "[-]",
            "[null]",
            "[true1]",
            "[tru]",
            r#"["\u0041"]"#,
            r#"["\/"]"#,
            "[\"a\u{1}\"]",
            // Past 18 digits an integer may leave the 64-bit range.
            "[1234567890123456789]",
            "[[1]]",
        ] {
            assert_eq!(members(raw), None, "{raw:?}");
        }
    }
}
