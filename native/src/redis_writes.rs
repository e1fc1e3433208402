//! A batch's writes as the persist script takes them (streams/lua/apply_round.lua): the state
//! keys, and one JSON array of groups of four (op, key index, field, value), the same writes
//! `PythonDecider` makes of a `StateDelta`. Keys go out as references (kind, message, part) that
//! the store's layout names (streams/storage/layout.py).

use rustc_hash::{FxHashMap, FxHashSet};

use crate::engine::Journal;
use crate::json::write_str;
use crate::store::{Store, Strings};

/// A state key as the store's layout names it (streams/storage/layout.py): (kind, message id,
/// part id; "" for the dedupe memory, which is per message).
pub type KeyRef = (&'static str, String, String);

#[derive(Default)]
struct KeyIndex {
    keys: Vec<KeyRef>,
    /// (part, kind) of a part's key, or (message, "ids"), -> its index, from 1
    parts: FxHashMap<(u32, &'static str), usize>,
    messages: FxHashMap<u32, usize>,
    /// A message's hash (part ids), by message
    marks: FxHashMap<u32, usize>,
    /// An identity's index in a message, by (message, identity)
    index: FxHashMap<(u32, u32), usize>,
}

impl KeyIndex {
    fn add(&mut self, key: KeyRef) -> usize {
        self.keys.push(key);
        self.keys.len()
    }

    fn message(&mut self, strings: &Strings, mid: u32) -> usize {
        if let Some(&found) = self.marks.get(&mid) {
            return found;
        }
        let found = self.add(("msg", strings.text(mid).to_owned(), String::new()));
        self.marks.insert(mid, found);
        found
    }

    fn index(&mut self, strings: &Strings, mid: u32, ident: u32) -> usize {
        if let Some(&found) = self.index.get(&(mid, ident)) {
            return found;
        }
        let found = self.add(("idx", strings.text(mid).to_owned(), strings.text(ident).to_owned()));
        self.index.insert((mid, ident), found);
        found
    }
}

/// A state's field in an identity's index (`layout.index_field`): the part id's length in
/// characters says where the message id starts.
fn index_field(out: &mut String, name: &str, pid: &str, mid: &str) {
    out.clear();
    out.push_str(name);
    out.push('\0');
    out.push_str(itoa::Buffer::new().format(pid.chars().count()));
    out.push(':');
    out.push_str(pid);
    out.push_str(mid);
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

pub fn writes(store: &Store, journal: &Journal, window: usize) -> (Vec<KeyRef>, Vec<u8>) {
    let strings = &store.strings;
    let mut keys = KeyIndex::default();
    // A part's keys, and a message's, are referred to once per batch.
    let part_key = |keys: &mut KeyIndex, p: u32, kind: &'static str| -> usize {
        if let Some(&found) = keys.parts.get(&(p, kind)) {
            return found;
        }
        let (mid, pid) = store.parts[p as usize].key;
        let found = keys.add((kind, strings.text(mid).to_owned(), strings.text(pid).to_owned()));
        keys.parts.insert((p, kind), found);
        found
    };
    let mut out = Vec::with_capacity(64 * (journal.values.len() + journal.tallies.len() + journal.taken.len() + 1));
    out.push(b'[');
    for (&p, &(version, names)) in &journal.before {
        let part = &store.parts[p as usize];
        let k = part_key(&mut keys, p, "meta");
        if part.version != version {
            group(&mut out, "H", k, "v", itoa::Buffer::new().format(part.version));
        }
        if names == 0 && !part.names.is_empty() {
            // The part's first state: the message lists it (`layout.part_field`).
            let m = keys.message(strings, part.key.0);
            group(&mut out, "H", m, &format!("p:{}", strings.text(part.key.1)), "1");
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
        // The identity's index follows its holdings: an entry per state it holds a value of.
        let (mid, pid) = store.parts[p as usize].key;
        match held {
            None => {
                group(&mut out, "D", k, &field, "");
                let i = keys.index(strings, mid, ident);
                index_field(&mut field, strings.text(name), strings.text(pid), strings.text(mid));
                group(&mut out, "D", i, &field, "");
            }
            Some(held) => {
                value.clear();
                store.write_held(&mut value, Some(held));
                group(&mut out, "H", k, &field, text(&value));
                if journal.unheld.contains(&(p, name, ident)) {
                    let i = keys.index(strings, mid, ident);
                    index_field(&mut field, strings.text(name), strings.text(pid), strings.text(mid));
                    group(&mut out, "H", i, &field, "1");
                }
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
        let k = match keys.messages.get(mid) {
            Some(&found) => found,
            None => {
                let found = keys.add(("ids", strings.text(*mid).to_owned(), String::new()));
                keys.messages.insert(*mid, found);
                found
            }
        };
        group(&mut out, "L", k, rid, "");
        if seen.insert(k) && store.taken_len(*mid) > window {
            trimmed.push(k);
        }
    }
    let window = itoa::Buffer::new().format(window).to_owned();
    for k in trimmed {
        group(&mut out, "T", k, "", &window);
    }
    out.push(b']');
    (keys.keys, out)
}
