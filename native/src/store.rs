//! The in-memory store: interned strings, shared value encodings, compact holdings, and the
//! dedupe memory; renders summaries as JSON lines (`streams/summary.py`, `MemoryStore`).

use std::cmp::Ordering;

use indexmap::IndexSet;
use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};

use crate::decode::Kind;
use crate::json;
use crate::values::{tally_key, TallyKey};

pub type Sym = u32;

/// Each distinct string once; a string's number is its place in the set.
#[derive(Default)]
pub struct Strings {
    set: IndexSet<Box<str>, FxBuildHasher>,
}

impl Strings {
    pub fn get(&self, text: &str) -> Option<Sym> {
        self.set.get_index_of(text).map(|i| i as Sym)
    }

    pub fn intern(&mut self, text: &str) -> Sym {
        match self.set.get_index_of(text) {
            Some(i) => i as Sym,
            None => self.set.insert_full(text.into()).0 as Sym,
        }
    }

    pub fn text(&self, sym: Sym) -> &str {
        &self.set[sym as usize]
    }
}

/// Each distinct value encoding once.
#[derive(Default)]
pub struct Encodings {
    set: IndexSet<Box<[u8]>, FxBuildHasher>,
}

impl Encodings {
    pub fn get(&self, encoded: &[u8]) -> Option<Sym> {
        self.set.get_index_of(encoded).map(|i| i as Sym)
    }

    pub fn intern(&mut self, encoded: &[u8]) -> Sym {
        match self.set.get_index_of(encoded) {
            Some(i) => i as Sym,
            None => self.set.insert_full(encoded.into()).0 as Sym,
        }
    }

    pub fn bytes(&self, sym: Sym) -> &[u8] {
        &self.set[sym as usize]
    }
}

/// What one identity holds for one state: a scalar, or a Set's members in the order added.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Held {
    One(Sym),
    Many(Box<[Sym]>),
}

/// A holding as the store keeps it, in 4 bytes: a scalar's encoding, or (top bit set) the
/// place of a Set's members in `Sets`.
pub type Stored = u32;
const SET: u32 = 1 << 31;

/// The members of every Set holding, with the places of deleted ones reused.
#[derive(Default)]
pub struct Sets {
    boxes: Vec<Box<[Sym]>>,
    free: Vec<u32>,
}

impl Sets {
    pub fn members<'a>(&'a self, stored: &'a Stored) -> &'a [Sym] {
        if *stored & SET != 0 {
            &self.boxes[(*stored & !SET) as usize]
        } else {
            std::slice::from_ref(stored)
        }
    }

    pub fn owned(&self, stored: &Stored) -> Held {
        if *stored & SET != 0 {
            Held::Many(self.boxes[(*stored & !SET) as usize].clone())
        } else {
            Held::One(*stored)
        }
    }

    fn keep(&mut self, held: Held, previous: Option<Stored>) -> Stored {
        match held {
            Held::One(one) => {
                if let Some(previous) = previous {
                    self.release(previous);
                }
                one
            }
            Held::Many(members) => match previous {
                Some(previous) if previous & SET != 0 => {
                    self.boxes[(previous & !SET) as usize] = members;
                    previous
                }
                _ => {
                    let at = match self.free.pop() {
                        Some(at) => {
                            self.boxes[at as usize] = members;
                            at
                        }
                        None => {
                            self.boxes.push(members);
                            (self.boxes.len() - 1) as u32
                        }
                    };
                    at | SET
                }
            },
        }
    }

    fn release(&mut self, stored: Stored) {
        if stored & SET != 0 {
            let at = stored & !SET;
            self.boxes[at as usize] = Box::new([]);
            self.free.push(at);
        }
    }
}

#[derive(Default)]
pub struct Part {
    /// (message id, part id)
    pub key: (Sym, Sym),
    pub version: u64,
    /// name -> type, in the order the names were fixed; `holdings` has one map per name.
    pub names: Vec<(Sym, Kind)>,
    /// identity -> holding, per name.
    pub holdings: Vec<FxHashMap<Sym, Stored>>,
    /// Every value of the part is held (a cache of Redis read it whole): one not held is absent.
    pub whole: bool,
}

impl Part {
    pub fn slot(&self, name: Sym) -> Option<usize> {
        self.names.iter().position(|(n, _)| *n == name)
    }
}

/// The response ids taken for one message, oldest first.
struct Taken {
    ids: IndexSet<Box<str>, FxBuildHasher>,
    batch: u32,
    /// How many ids were held when the current batch first touched the message.
    start: usize,
}

pub struct Store {
    pub strings: Strings,
    pub encodings: Encodings,
    pub sets: Sets,
    pub index: FxHashMap<(Sym, Sym), u32>,
    pub parts: Vec<Part>,
    taken: FxHashMap<Sym, Taken>,
    /// (part, name, identity) known to hold nothing (a cache of Redis only).
    pub absent: FxHashSet<(u32, Sym, Sym)>,
    /// Messages deleted (SPEC section 3a).
    pub deleted: FxHashSet<Sym>,
    window: usize,
    batch: u32,
    touched: Vec<Sym>,
}

impl Store {
    pub fn new(window: usize) -> Store {
        Store {
            strings: Strings::default(),
            encodings: Encodings::default(),
            sets: Sets::default(),
            index: FxHashMap::default(),
            parts: Vec::new(),
            taken: FxHashMap::default(),
            absent: FxHashSet::default(),
            deleted: FxHashSet::default(),
            window,
            batch: 1,
            touched: Vec::new(),
        }
    }

    pub fn part_index(&self, mid: &str, pid: &str) -> Option<usize> {
        let key = (self.strings.get(mid)?, self.strings.get(pid)?);
        self.index.get(&key).map(|&i| i as usize)
    }

    pub fn new_part(&mut self, mid: Sym, pid: Sym) -> usize {
        let at = self.parts.len();
        self.parts.push(Part { key: (mid, pid), ..Part::default() });
        self.index.insert((mid, pid), at as u32);
        at
    }

    pub fn is_deleted(&self, mid: &str) -> bool {
        !self.deleted.is_empty() && self.strings.get(mid).is_some_and(|mid| self.deleted.contains(&mid))
    }

    /// Whether a response id was taken for a message (without taking it).
    pub fn is_taken(&self, mid: Sym, rid: &str) -> bool {
        self.taken.get(&mid).is_some_and(|taken| taken.ids.contains(rid))
    }

    /// Set what an identity holds for the state in that slot of the part.
    pub fn put(&mut self, part: usize, slot: usize, ident: Sym, held: Held) {
        let previous = self.parts[part].holdings[slot].get(&ident).copied();
        let stored = self.sets.keep(held, previous);
        self.parts[part].holdings[slot].insert(ident, stored);
    }

    pub fn delete(&mut self, part: usize, slot: usize, ident: Sym) {
        if let Some(stored) = self.parts[part].holdings[slot].remove(&ident) {
            self.sets.release(stored);
        }
    }

    /// Take a response id for a message; false when it was already taken (a duplicate).
    ///
    /// Within a batch every id stays remembered; `end_batch` then trims each message's ids
    /// exactly as `MemoryStore.apply` does id by id (at twice the window, keep the window).
    pub fn take(&mut self, mid: Sym, rid: &str) -> bool {
        let batch = self.batch;
        let taken = self.taken.entry(mid).or_insert_with(|| Taken {
            ids: IndexSet::default(),
            batch: 0,
            start: 0,
        });
        if taken.ids.contains(rid) {
            return false;
        }
        if taken.batch != batch {
            taken.batch = batch;
            taken.start = taken.ids.len();
            self.touched.push(mid);
        }
        taken.ids.insert(rid.into());
        true
    }

    pub fn end_batch(&mut self) {
        let window = self.window;
        for mid in self.touched.drain(..) {
            let Some(taken) = self.taken.get_mut(&mid) else { continue };
            let mut kept = taken.start;
            for _ in taken.start..taken.ids.len() {
                kept += 1;
                if kept >= 2 * window {
                    kept = window;
                }
            }
            let len = taken.ids.len();
            if kept < len {
                taken.ids = taken.ids.drain(len - kept..).collect();
            }
        }
        self.batch = self.batch.wrapping_add(1);
    }

    /// Trim each message the batch touched to its last `window` ids, as Redis does.
    pub fn end_batch_exact(&mut self) {
        let window = self.window;
        for mid in self.touched.drain(..) {
            let Some(taken) = self.taken.get_mut(&mid) else { continue };
            let len = taken.ids.len();
            if len > window {
                taken.ids = taken.ids.drain(len - window..).collect();
            }
        }
        self.batch = self.batch.wrapping_add(1);
    }

    /// Whether the dedupe memory of this message is held.
    /// How many ids the message's dedupe memory holds now (this batch's too).
    pub fn taken_len(&self, mid: Sym) -> usize {
        self.taken.get(&mid).map_or(0, |taken| taken.ids.len())
    }

    pub fn knows_message(&self, mid: &str) -> bool {
        self.strings.get(mid).is_some_and(|mid| self.taken.contains_key(&mid))
    }

    /// Replace a message's dedupe memory (ids oldest first), as loaded from Redis.
    pub fn load_taken(&mut self, mid: &str, ids: Vec<String>) {
        let mid = self.strings.intern(mid);
        let ids = ids.into_iter().map(String::into_boxed_str).collect();
        self.taken.insert(mid, Taken { ids, batch: 0, start: 0 });
    }

    /// Whether what this identity holds for this state is known (held, or known absent).
    pub fn knows_value(&self, part: usize, name: &str, ident: &str) -> bool {
        let the_part = &self.parts[part];
        if the_part.whole {
            return true;
        }
        let (Some(name), Some(ident)) = (self.strings.get(name), self.strings.get(ident)) else {
            return false;
        };
        the_part.slot(name).is_some_and(|slot| the_part.holdings[slot].contains_key(&ident))
            || self.absent.contains(&(part as u32, name, ident))
    }

    /// Held entries, known-absent values and remembered ids: how big a cache has grown.
    pub fn entries(&self) -> usize {
        let held: usize = self.parts.iter().flat_map(|p| p.holdings.iter()).map(|h| h.len()).sum();
        let ids: usize = self.taken.values().map(|t| t.ids.len()).sum();
        self.parts.len() + held + self.absent.len() + ids
    }

    /// Bytes the state holds (not the dedupe memory), counted from the tables' capacities.
    pub fn state_bytes(&self) -> usize {
        let strings: usize = self.strings.set.iter().map(|text| text.len()).sum();
        let encodings: usize = self.encodings.set.iter().map(|enc| enc.len()).sum();
        let members: usize = self.sets.boxes.iter().map(|b| b.len() * 4).sum();
        let parts: usize = self
            .parts
            .iter()
            .map(|part| {
                part.names.capacity() * size_of::<(Sym, Kind)>()
                    + part.holdings.capacity() * size_of::<FxHashMap<Sym, Stored>>()
                    + part.holdings.iter().map(|h| table_bytes(h.capacity(), 8)).sum::<usize>()
            })
            .sum();
        index_set_bytes(self.strings.set.capacity(), size_of::<Box<str>>())
            + strings
            + index_set_bytes(self.encodings.set.capacity(), size_of::<Box<[u8]>>())
            + encodings
            + self.sets.boxes.capacity() * size_of::<Box<[Sym]>>()
            + members
            + self.sets.free.capacity() * 4
            + table_bytes(self.index.capacity(), 12)
            + self.parts.capacity() * size_of::<Part>()
            + parts
            + table_bytes(self.absent.capacity(), 12)
            + table_bytes(self.deleted.capacity(), 4)
    }

    /// Bytes the dedupe memory holds, counted alike.
    pub fn dedupe_bytes(&self) -> usize {
        let ids: usize = self
            .taken
            .values()
            .map(|taken| {
                index_set_bytes(taken.ids.capacity(), size_of::<Box<str>>())
                    + taken.ids.iter().map(|id| id.len()).sum::<usize>()
            })
            .sum();
        table_bytes(self.taken.capacity(), size_of::<(Sym, Taken)>()) + ids
    }

    pub fn forget_response_ids(&mut self) {
        self.taken = FxHashMap::default();
    }

    pub fn live_values(&self) -> usize {
        self.parts
            .iter()
            .flat_map(|part| part.holdings.iter())
            .flat_map(|held_by| held_by.values())
            .map(|held| self.sets.members(held).len())
            .sum()
    }

    pub fn write_held(&self, out: &mut Vec<u8>, held: Option<&Held>) {
        match held {
            None => out.extend_from_slice(b"null"),
            Some(Held::One(one)) => out.extend_from_slice(self.encodings.bytes(*one)),
            Some(Held::Many(many)) => self.write_members(out, many),
        }
    }

    fn write_members(&self, out: &mut Vec<u8>, members: &[Sym]) {
        out.push(b'[');
        for (i, member) in members.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(self.encodings.bytes(*member));
        }
        out.push(b']');
    }

    /// Every summary of a part with at least one fixed name, by (message_id, part_id).
    pub fn summary_lines(&self, clip: Option<usize>) -> Vec<Vec<u8>> {
        let mut keys: Vec<(&str, &str, usize)> = self
            .index
            .iter()
            .filter(|(_, &i)| !self.parts[i as usize].names.is_empty())
            .map(|(&(mid, pid), &i)| (self.strings.text(mid), self.strings.text(pid), i as usize))
            .collect();
        keys.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        keys.iter()
            .map(|&(mid, pid, i)| {
                let mut out = Vec::with_capacity(256);
                self.render(&mut out, mid, pid, Some(&self.parts[i]), clip);
                out
            })
            .collect()
    }

    /// One summary as a JSON line (keys sorted), like `dumps_line(render_summary(...))`.
    pub fn render(&self, out: &mut Vec<u8>, mid: &str, pid: &str, part: Option<&Part>, clip: Option<usize>) {
        if self.is_deleted(mid) {
            out.extend_from_slice(b"{\"deleted\":true,\"message_id\":");
            json::write_str(out, mid);
            out.extend_from_slice(b",\"part_id\":");
            json::write_str(out, pid);
            out.extend_from_slice(b",\"states\":{},\"version\":");
            json::write_int(out, part.map_or(0, |part| part.version));
            out.extend_from_slice(b"}\n");
            return;
        }
        out.extend_from_slice(b"{\"message_id\":");
        json::write_str(out, mid);
        out.extend_from_slice(b",\"part_id\":");
        json::write_str(out, pid);
        out.extend_from_slice(b",\"states\":{");
        if let Some(part) = part {
            let mut names: Vec<(&str, usize)> =
                part.names.iter().enumerate().map(|(slot, (name, _))| (self.strings.text(*name), slot)).collect();
            names.sort_unstable();
            for (n, (name, slot)) in names.into_iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                json::write_str(out, name);
                out.push(b':');
                self.render_state(out, part.names[slot].1, &part.holdings[slot], clip);
            }
        }
        out.extend_from_slice(b"},\"version\":");
        json::write_int(out, part.map_or(0, |part| part.version));
        out.extend_from_slice(b"}\n");
    }

    fn render_state(&self, out: &mut Vec<u8>, kind: Kind, held_by: &FxHashMap<Sym, Stored>, clip: Option<usize>) {
        let total = held_by.len();
        let mut shown: Vec<(&str, &Stored)> =
            held_by.iter().map(|(ident, held)| (self.strings.text(*ident), held)).collect();
        shown.sort_unstable_by(|a, b| a.0.cmp(b.0));
        out.push(b'{');
        if let Some(clip) = clip.filter(|&clip| total > clip) {
            shown.truncate(clip);
            out.extend_from_slice(b"\"clipped\":true,\"identities\":");
            json::write_int(out, total);
            out.push(b',');
        }
        out.extend_from_slice(b"\"tally\":[");
        for (n, (encoded, count)) in self.tally(held_by).into_iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"count\":");
            json::write_int(out, count);
            out.extend_from_slice(b",\"value\":");
            out.extend_from_slice(self.encodings.bytes(encoded));
            out.push(b'}');
        }
        out.extend_from_slice(b"],\"type\":");
        json::write_str(out, kind.name());
        out.extend_from_slice(b",\"values\":{");
        for (n, (ident, held)) in shown.into_iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            json::write_str(out, ident);
            out.push(b':');
            if *held & SET != 0 {
                self.write_members(out, self.sets.members(held));
            } else {
                out.extend_from_slice(self.encodings.bytes(*held));
            }
        }
        out.extend_from_slice(b"}}");
    }

    /// (encoding, count): count descending, then the order of `values::TallyKey`.
    fn tally(&self, held_by: &FxHashMap<Sym, Stored>) -> Vec<(Sym, usize)> {
        let mut counts: FxHashMap<Sym, usize> = FxHashMap::default();
        for held in held_by.values() {
            for member in self.sets.members(held) {
                *counts.entry(*member).or_insert(0) += 1;
            }
        }
        let mut entries: Vec<(usize, TallyKey, &[u8], Sym)> = counts
            .into_iter()
            .map(|(sym, n)| {
                let encoded = self.encodings.bytes(sym);
                (n, tally_key(encoded), encoded, sym)
            })
            .collect();
        entries.sort_unstable_by(|a, b| {
            b.0.cmp(&a.0)
                .then_with(|| a.1.partial_cmp(&b.1).unwrap_or(Ordering::Equal))
                .then_with(|| a.2.cmp(b.2))
        });
        entries.into_iter().map(|(n, _, _, sym)| (sym, n)).collect()
    }
}

/// Bytes of a hash table (hashbrown) that can hold `capacity` entries of `entry` bytes.
fn table_bytes(capacity: usize, entry: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = if capacity < 4 {
        4
    } else if capacity < 8 {
        8
    } else {
        (capacity * 8 / 7).next_power_of_two()
    };
    buckets * entry + buckets + 16
}

/// Bytes of an IndexSet: its entries (each with its hash) and its table of indices.
fn index_set_bytes(capacity: usize, entry: usize) -> usize {
    capacity * (entry + 8) + table_bytes(capacity, 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_encodings_are_interned_once() {
        let mut strings = Strings::default();
        assert_eq!(strings.get("a"), None);
        let a = strings.intern("a");
        let b = strings.intern("b");
        assert_ne!(a, b);
        assert_eq!(strings.intern("a"), a);
        assert_eq!(strings.get("a"), Some(a));
        assert_eq!((strings.text(a), strings.text(b)), ("a", "b"));

        let mut encodings = Encodings::default();
        assert_eq!(encodings.get(b"1"), None);
        let one = encodings.intern(b"1");
        let text = encodings.intern(b"\"1\"");
        assert_ne!(one, text, "1 and \"1\" are two values");
        assert_eq!(encodings.intern(b"1"), one);
        assert_eq!(encodings.bytes(text), b"\"1\"");
    }

    /// A store with one part (m, root) whose names are given; returns it and the part.
    fn store_with(names: &[(&str, Kind)]) -> (Store, usize) {
        let mut store = Store::new(10);
        let (mid, pid) = (store.strings.intern("m"), store.strings.intern("root"));
        let p = store.new_part(mid, pid);
        for &(name, kind) in names {
            let name = store.strings.intern(name);
            store.parts[p].names.push((name, kind));
            store.parts[p].holdings.push(FxHashMap::default());
        }
        (store, p)
    }

    fn held(store: &mut Store, values: &[&str], many: bool) -> Held {
        let syms: Vec<Sym> = values.iter().map(|v| store.encodings.intern(v.as_bytes())).collect();
        if many {
            Held::Many(syms.into_boxed_slice())
        } else {
            Held::One(syms[0])
        }
    }

    fn hold(store: &mut Store, p: usize, slot: usize, ident: &str, values: &[&str]) {
        let many = store.parts[p].names[slot].1 == Kind::Set;
        let held = held(store, values, many);
        let ident = store.strings.intern(ident);
        store.put(p, slot, ident, held);
    }

    fn summary(store: &Store, clip: Option<usize>) -> String {
        let lines = store.summary_lines(clip);
        String::from_utf8(lines.concat()).unwrap()
    }

    #[test]
    fn holdings_are_kept_replaced_and_deleted() {
        let (mut store, p) = store_with(&[("colors", Kind::Set), ("latest", Kind::Lww)]);
        hold(&mut store, p, 0, "u1", &["\"red\"", "\"green\""]);
        hold(&mut store, p, 1, "u1", &["1"]);
        let u1 = store.strings.get("u1").unwrap();
        let stored = store.parts[p].holdings[0][&u1];
        let members: Vec<&[u8]> = store.sets.members(&stored).iter().map(|&m| store.encodings.bytes(m)).collect();
        assert_eq!(members, [&b"\"red\""[..], b"\"green\""]);
        assert_eq!(store.live_values(), 3);
        // A Set replaced keeps its place; deleted, its place is used again.
        hold(&mut store, p, 0, "u1", &["\"blue\""]);
        assert_eq!(store.parts[p].holdings[0][&u1], stored);
        store.delete(p, 0, u1);
        assert!(!store.parts[p].holdings[0].contains_key(&u1));
        hold(&mut store, p, 0, "u2", &["\"x\""]);
        let u2 = store.strings.get("u2").unwrap();
        assert_eq!(store.parts[p].holdings[0][&u2], stored);
        assert_eq!(store.live_values(), 2);
        // Deleting what is not held changes nothing.
        store.delete(p, 0, u1);
        assert_eq!(store.live_values(), 2);
        let expected = concat!(
            r#"{"message_id":"m","part_id":"root","states":{"#,
            r#""colors":{"tally":[{"count":1,"value":"x"}],"type":"Set","values":{"u2":["x"]}},"#,
            r#""latest":{"tally":[{"count":1,"value":1}],"type":"LWW","values":{"u1":1}}"#,
            "},\"version\":0}\n"
        );
        assert_eq!(summary(&store, None), expected);
    }

    #[test]
    fn tally_order_is_count_then_false_true_integers_strings() {
        let (mut store, p) = store_with(&[("s", Kind::Set)]);
        let all = ["\"b\"", "\"a\"", "10", "-10", "2", "true", "false"];
        hold(&mut store, p, 0, "u1", &all);
        // Two holders of "z" and 3: counts first.
        hold(&mut store, p, 0, "u2", &["\"z\"", "3"]);
        hold(&mut store, p, 0, "u3", &["3", "\"z\""]);
        let line = summary(&store, None);
        let tally = &line[line.find("\"tally\":").unwrap()..line.find(",\"type\"").unwrap()];
        let expected = concat!(
            r#""tally":[{"count":2,"value":3},{"count":2,"value":"z"},"#,
            r#"{"count":1,"value":false},{"count":1,"value":true},"#,
            r#"{"count":1,"value":-10},{"count":1,"value":2},{"count":1,"value":10},"#,
            r#"{"count":1,"value":"a"},{"count":1,"value":"b"}]"#
        );
        assert_eq!(tally, expected);
    }

    #[test]
    fn tally_strings_order_by_code_point_not_by_their_escapes_or_utf16() {
        let (mut store, p) = store_with(&[("s", Kind::Set)]);
        // "\n" (U+000A) before " " (U+0020), though its escape `\n` sorts after a space;
        // "｡" (U+FF61) before "😀" (U+1F600), though UTF-16 has the surrogate first.
        hold(&mut store, p, 0, "u1", &["\"😀\"", "\" \"", "\"｡\"", "\"\\n\""]);
        let line = summary(&store, None);
        let tally = &line[line.find("\"tally\":").unwrap()..line.find(",\"type\"").unwrap()];
        let expected = concat!(
            r#""tally":[{"count":1,"value":"\n"},{"count":1,"value":" "},"#,
            r#"{"count":1,"value":"｡"},{"count":1,"value":"😀"}]"#
        );
        assert_eq!(tally, expected);
    }

    #[test]
    fn summaries_are_sorted_by_message_and_part_and_skip_parts_without_names() {
        let mut store = Store::new(10);
        let part = |store: &mut Store, mid: &str, pid: &str, named: bool| {
            let (m, p) = (store.strings.intern(mid), store.strings.intern(pid));
            let at = store.new_part(m, p);
            if named {
                let name = store.strings.intern("n");
                store.parts[at].names.push((name, Kind::Lwwn));
                store.parts[at].holdings.push(FxHashMap::default());
                store.parts[at].version = 3;
            }
        };
        for (mid, pid, named) in
            [("m2", "root", true), ("m1", "root", true), ("m1", "p2", true), ("m0", "root", false), ("m1", "p10", true)]
        {
            part(&mut store, mid, pid, named);
        }
        let keys: Vec<String> = store
            .summary_lines(None)
            .iter()
            .map(|line| {
                let line = std::str::from_utf8(line).unwrap();
                assert!(line.ends_with("\"states\":{\"n\":{\"tally\":[],\"type\":\"LWWN\",\"values\":{}}},\"version\":3}\n"));
                line[..line.find(",\"states\"").unwrap()].to_owned()
            })
            .collect();
        assert_eq!(
            keys,
            [
                r#"{"message_id":"m1","part_id":"p10""#,
                r#"{"message_id":"m1","part_id":"p2""#,
                r#"{"message_id":"m1","part_id":"root""#,
                r#"{"message_id":"m2","part_id":"root""#,
            ]
        );
        // A part nobody wrote reads as version 0 with no states.
        let mut out = Vec::new();
        store.render(&mut out, "m9", "root", None, None);
        assert_eq!(out, b"{\"message_id\":\"m9\",\"part_id\":\"root\",\"states\":{},\"version\":0}\n");
    }

    #[test]
    fn a_clipped_summary_counts_every_identity_and_keeps_the_whole_tally() {
        let (mut store, p) = store_with(&[("n", Kind::Lww)]);
        for (ident, value) in [("u3", "\"b\""), ("u1", "\"a\""), ("u2", "\"a\"")] {
            hold(&mut store, p, 0, ident, &[value]);
        }
        let expected = concat!(
            r#"{"message_id":"m","part_id":"root","states":{"n":{"clipped":true,"identities":3,"#,
            r#""tally":[{"count":2,"value":"a"},{"count":1,"value":"b"}],"type":"LWW","#,
            r#""values":{"u1":"a","u2":"a"}}},"version":0}"#,
            "\n"
        );
        assert_eq!(summary(&store, Some(2)), expected);
        // Not over the clip: as unclipped.
        assert_eq!(summary(&store, Some(3)), summary(&store, None));
        assert!(!summary(&store, Some(3)).contains("clipped"));
    }

    #[test]
    fn a_response_id_is_taken_once_per_message() {
        let mut store = Store::new(10);
        let (m1, m2) = (store.strings.intern("m1"), store.strings.intern("m2"));
        assert!(!store.knows_message("m1"));
        assert!(store.take(m1, "r1"));
        assert!(!store.take(m1, "r1"), "the same id again, in the same batch");
        assert!(store.take(m2, "r1"), "the same id for another message");
        store.end_batch();
        assert!(!store.take(m1, "r1"), "the same id again, in a later batch");
        assert!(store.knows_message("m1"));
        assert_eq!(store.taken_len(m1), 1);
    }

    #[test]
    fn the_dedupe_memory_keeps_at_least_the_last_window_ids_and_stays_bounded() {
        let window = 3;
        for per_batch in [1, 2, 5, 7] {
            let mut store = Store::new(window);
            let m = store.strings.intern("m");
            let mut sent: usize = 0;
            for _ in 0..20 {
                for _ in 0..per_batch {
                    sent += 1;
                    assert!(store.take(m, &format!("r{sent}")));
                }
                store.end_batch();
                assert!(store.taken_len(m) < 2 * window, "bounded ({per_batch} per batch)");
                for recent in sent.saturating_sub(window) + 1..=sent {
                    assert!(!store.take(m, &format!("r{recent}")), "r{recent} remembered ({per_batch} per batch)");
                }
            }
            // The oldest ids were let go.
            assert!(store.take(m, "r1"));
        }
    }

    #[test]
    fn exact_trimming_keeps_the_last_window_ids() {
        let mut store = Store::new(2);
        let m = store.strings.intern("m");
        for id in ["a", "b", "c", "d"] {
            assert!(store.take(m, id));
        }
        store.end_batch_exact();
        assert_eq!(store.taken_len(m), 2);
        assert!(!store.take(m, "c") && !store.take(m, "d"));
        assert!(store.take(m, "a"));
    }

    #[test]
    fn loaded_ids_replace_the_memory() {
        let mut store = Store::new(10);
        store.load_taken("m", vec!["r1".into(), "r2".into()]);
        assert!(store.knows_message("m"));
        let m = store.strings.get("m").unwrap();
        assert!(!store.take(m, "r2"));
        assert!(store.take(m, "r3"));
        store.forget_response_ids();
        assert!(!store.knows_message("m"));
        assert!(store.take(m, "r2"));
    }

    #[test]
    fn known_values_are_the_held_the_known_absent_and_all_of_a_whole_part() {
        let (mut store, p) = store_with(&[("n", Kind::Lww)]);
        hold(&mut store, p, 0, "u1", &["1"]);
        assert!(store.knows_value(p, "n", "u1"));
        assert!(!store.knows_value(p, "n", "u2"));
        assert!(!store.knows_value(p, "other", "u1"));
        let (name, u2) = (store.strings.get("n").unwrap(), store.strings.intern("u2"));
        store.absent.insert((p as u32, name, u2));
        assert!(store.knows_value(p, "n", "u2"));
        store.parts[p].whole = true;
        assert!(store.knows_value(p, "other", "nobody"));
    }
}
