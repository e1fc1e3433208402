//! A batch's state changelog records (SPEC section 7a), as `streams/rounds/changelog.py`'s
//! `round_records` makes them of the batch's writes, made here from the journal in one pass:
//! the same records in the same order, keys byte for byte as orjson writes
//! `[p, kind, message, part, field]`. Each record goes to the outbox of the round partition
//! that carries it (as frames of `streams/rounds/outbox.py`) and to the changelog partition its
//! key names; the two differ only for a message living in a partition outside the round.

use indexmap::IndexMap;
use rustc_hash::{FxBuildHasher, FxHashMap};

use crate::engine::Journal;
use crate::json::write_str;
use crate::store::{Store, Sym};

/// A changelog record's key and value (None: a tombstone).
pub type Record = (Vec<u8>, Option<Vec<u8>>);

#[derive(Default)]
pub struct Log {
    /// Round partition -> its records as outbox frames, in order.
    pub frames: Vec<(i64, Vec<u8>)>,
    /// Changelog partition -> its records, in order.
    pub records: Vec<(i64, Vec<Record>)>,
}

struct Builder<'a> {
    log: Log,
    last: &'a [(i64, i64)],
    frames_at: FxHashMap<i64, usize>,
    records_at: FxHashMap<i64, usize>,
    key: Vec<u8>,
}

impl Builder<'_> {
    /// Where a record of a message in partition `p` waits: p's outbox, or, for a partition
    /// outside the round, the round's first.
    fn carrier(&self, p: i64) -> usize {
        self.frames_at.get(&p).copied().unwrap_or(0)
    }

    /// The key's head `[p,"kind","message","part",`.
    fn head(&mut self, p: i64, kind: &str, mid: &str, pid: &str) {
        self.key.clear();
        self.key.push(b'[');
        self.key.extend_from_slice(itoa::Buffer::new().format(p).as_bytes());
        for text in [kind, mid, pid] {
            self.key.push(b',');
            write_str(&mut self.key, text);
        }
        self.key.push(b',');
    }

    /// A record of partition `p` whose key is the head, then `field`.
    fn field(&mut self, p: i64, field: &str, value: &[u8]) {
        let at = self.key.len();
        write_str(&mut self.key, field);
        self.key.push(b']');
        self.push(p, value);
        self.key.truncate(at);
    }

    /// The key as it stands, with `value` (empty: a tombstone), for partition `p`.
    fn push(&mut self, p: i64, value: &[u8]) {
        let carrier = self.carrier(p);
        let frames = &mut self.log.frames[carrier].1;
        frames.push(b's');
        frames.extend_from_slice(&(self.key.len() as u32).to_be_bytes());
        frames.extend_from_slice(&(value.len() as u32).to_be_bytes());
        frames.extend_from_slice(&self.key);
        frames.extend_from_slice(value);
        let at = *self.records_at.entry(p).or_insert_with(|| {
            self.log.records.push((p, Vec::new()));
            self.log.records.len() - 1
        });
        let value = (!value.is_empty()).then(|| value.to_vec());
        self.log.records[at].1.push((self.key.clone(), value));
    }
}

/// The batch's changelog records; `find` says a message's partition (called once a message),
/// `last` is each round partition's last offset, in the round's order.
pub fn records<E>(
    store: &Store,
    journal: &Journal,
    mut find: impl FnMut(&str) -> Result<i64, E>,
    last: &[(i64, i64)],
) -> Result<Log, E> {
    let strings = &store.strings;
    let mut log = Log::default();
    if last.is_empty() {
        return Ok(log);
    }
    let mut frames_at = FxHashMap::default();
    for (at, &(p, _)) in last.iter().enumerate() {
        log.frames.push((p, Vec::new()));
        frames_at.insert(p, at);
    }
    let mut out = Builder { log, last, frames_at, records_at: FxHashMap::default(), key: Vec::new() };
    let mut found: FxHashMap<Sym, i64> = FxHashMap::default();
    let mut partition = |mid: Sym| -> Result<i64, E> {
        if let Some(&p) = found.get(&mid) {
            return Ok(p);
        }
        let p = find(strings.text(mid))?;
        found.insert(mid, p);
        Ok(p)
    };
    let mut value = Vec::new();
    // Metas: a new version, then the types fixed by the batch (the part ids are not logged).
    for (&p, &(version, names)) in &journal.before {
        let part = &store.parts[p as usize];
        let (mid, pid) = part.key;
        let at = partition(mid)?;
        out.head(at, "meta", strings.text(mid), strings.text(pid));
        if part.version != version {
            out.field(at, "v", itoa::Buffer::new().format(part.version).as_bytes());
        }
        let mut field = String::new();
        for &(name, kind) in &part.names[names..] {
            field.clear();
            field.push_str("t:");
            field.push_str(strings.text(name));
            out.field(at, &field, kind.name().as_bytes());
        }
    }
    let mut field = String::new();
    for (&(p, name, ident), held) in &journal.values {
        let (mid, pid) = store.parts[p as usize].key;
        let at = partition(mid)?;
        out.head(at, "vals", strings.text(mid), strings.text(pid));
        field.clear();
        field.push_str(strings.text(name));
        field.push('\0');
        field.push_str(strings.text(ident));
        value.clear();
        if held.is_some() {
            store.write_held(&mut value, held.as_ref());
        }
        out.field(at, &field, &value);
    }
    // A message's ids taken, in one record keyed by the last: [offset, id, ...], offset the
    // round's end.
    let mut taken: IndexMap<Sym, Vec<&str>, FxBuildHasher> = IndexMap::default();
    for (mid, rid, _) in &journal.taken {
        taken.entry(*mid).or_default().push(rid);
    }
    for (mid, ids) in taken {
        let at = partition(mid)?;
        let offset = out.last[out.carrier(at)].1;
        out.head(at, "ids", strings.text(mid), "");
        value.clear();
        value.push(b'[');
        value.extend_from_slice(itoa::Buffer::new().format(offset).as_bytes());
        for rid in &ids {
            value.push(b',');
            write_str(&mut value, rid);
        }
        value.push(b']');
        let last = ids.last().expect("a message's entry holds an id");
        out.field(at, last, &value);
    }
    // Each round partition's completion marker, last.
    for &(p, offset) in last {
        out.key.clear();
        out.key.push(b'[');
        out.key.extend_from_slice(itoa::Buffer::new().format(p).as_bytes());
        out.key.push(b']');
        out.push(p, itoa::Buffer::new().format(offset).as_bytes());
    }
    Ok(out.log)
}
