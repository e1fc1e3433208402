//! A batch's writes as the persist script takes them (streams/lua/apply_round.lua): the state
//! keys, and one JSON array of groups of four (op, key index, field, value), the same writes
//! `RedisStateStore._writes` makes of a `StateDelta`. Key names follow streams/redis_keys.py.

use rustc_hash::{FxHashMap, FxHashSet};

use crate::engine::Journal;
use crate::json::write_str;
use crate::store::Store;

/// Where the writes go: the key prefix, how many keys come before the state keys in the
/// script's KEYS, and the dedupe window.
pub struct Layout<'a> {
    pub prefix: &'a str,
    pub base: usize,
    pub window: usize,
}

struct KeyIndex {
    keys: Vec<String>,
    index: FxHashMap<String, usize>,
    base: usize,
}

impl KeyIndex {
    fn at(&mut self, key: String) -> usize {
        if let Some(&found) = self.index.get(&key) {
            return found;
        }
        self.keys.push(key.clone());
        let found = self.base + self.keys.len();
        self.index.insert(key, found);
        found
    }
}

/// `<prefix>:{<message id, braces and % escaped>}`: a message's keys share its hash tag.
pub fn message_key(prefix: &str, mid: &str) -> String {
    let mut key = String::with_capacity(prefix.len() + mid.len() + 3);
    key.push_str(prefix);
    key.push_str(":{");
    for c in mid.chars() {
        match c {
            '%' => key.push_str("%25"),
            '{' => key.push_str("%7B"),
            '}' => key.push_str("%7D"),
            c => key.push(c),
        }
    }
    key.push('}');
    key
}

fn group(out: &mut Vec<u8>, op: &str, key: usize, field: &str, value: &str) {
    if out.len() > 1 {
        out.push(b',');
    }
    write_str(out, op);
    out.push(b',');
    out.extend_from_slice(itoa::Buffer::new().format(key).as_bytes());
    out.push(b',');
    write_str(out, field);
    out.push(b',');
    write_str(out, value);
}

fn text(bytes: &[u8]) -> &str {
    // Encodings are JSON written from UTF-8 text.
    std::str::from_utf8(bytes).unwrap_or_default()
}

pub fn writes(store: &Store, journal: &Journal, layout: &Layout<'_>) -> (Vec<String>, Vec<u8>) {
    let strings = &store.strings;
    let mut keys = KeyIndex { keys: Vec::new(), index: FxHashMap::default(), base: layout.base };
    // (part, kind of key) -> its index in KEYS: a part's keys are named once per batch.
    let mut named: FxHashMap<(u32, &str), usize> = FxHashMap::default();
    let mut part_key = |keys: &mut KeyIndex, p: u32, kind: &'static str| -> usize {
        *named.entry((p, kind)).or_insert_with(|| {
            let (mid, pid) = store.parts[p as usize].key;
            let message = message_key(layout.prefix, strings.text(mid));
            keys.at(format!("{message}:{kind}:{}", strings.text(pid)))
        })
    };
    let mut out = Vec::with_capacity(64 * (journal.values.len() + journal.tallies.len() + journal.taken.len() + 1));
    out.push(b'[');
    for (&p, &(version, names)) in &journal.before {
        let part = &store.parts[p as usize];
        let k = part_key(&mut keys, p, "meta");
        if part.version != version {
            group(&mut out, "H", k, "v", itoa::Buffer::new().format(part.version));
        }
        for &(name, kind) in &part.names[names..] {
            let field = format!("t:{}", strings.text(name));
            group(&mut out, "H", k, &field, kind.name());
        }
    }
    let mut field = String::new();
    let mut value = Vec::new();
    for (&(p, name, ident), held) in &journal.values {
        let k = part_key(&mut keys, p, "vals");
        field.clear();
        field.push_str(strings.text(name));
        field.push('\0');
        field.push_str(strings.text(ident));
        match held {
            None => group(&mut out, "D", k, &field, ""),
            Some(held) => {
                value.clear();
                store.write_held(&mut value, Some(held));
                group(&mut out, "H", k, &field, text(&value));
            }
        }
    }
    for (&(p, name, encoding), &n) in &journal.tallies {
        if n == 0 {
            continue;
        }
        let k = part_key(&mut keys, p, "tally");
        field.clear();
        field.push_str(strings.text(name));
        field.push('\0');
        field.push_str(text(store.encodings.bytes(encoding)));
        group(&mut out, "I", k, &field, itoa::Buffer::new().format(n));
    }
    // A message's dedupe memory is trimmed once, after its ids, and only when it outgrew the
    // window: the cache holds every id Redis keeps for the message, so it knows.
    let mut trimmed: Vec<usize> = Vec::new();
    let mut seen = FxHashSet::default();
    for (mid, rid, _) in &journal.taken {
        let k = keys.at(format!("{}:ids", message_key(layout.prefix, strings.text(*mid))));
        group(&mut out, "L", k, rid, "");
        if seen.insert(k) && store.taken_len(*mid) > layout.window {
            trimmed.push(k);
        }
    }
    let window = itoa::Buffer::new().format(layout.window).to_owned();
    for k in trimmed {
        group(&mut out, "T", k, "", &window);
    }
    out.push(b']');
    (keys.keys, out)
}
