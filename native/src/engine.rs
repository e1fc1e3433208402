//! The rules of SPEC sections 3-5 (`streams/engine.py`), applied straight to the store.

use indexmap::IndexMap;
use pyo3::prelude::*;
use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};

use crate::decode::{Change, Kind, Removal, Response, Whole};
use crate::json;
use crate::store::{Held, Store, Stored, Sym};

const MAX_NAMES: usize = 64;
const MAX_MEMBERS: usize = 256;

/// Encodes a change as received (`orjson.dumps` with sorted keys), for its rejection.
pub type DumpChange<'a> = dyn FnMut(&Change) -> PyResult<Vec<u8>> + 'a;

pub struct Engine {
    pub store: Store,
    registry: FxHashMap<Sym, Kind>,
    /// The registry's `max_values` of each capped state name.
    caps: FxHashMap<Sym, usize>,
    /// (part, name) -> value -> how many identities hold it, for capped states only.
    counts: FxHashMap<(u32, Sym), FxHashMap<Sym, u32>>,
    /// The ids of the erasures taken (SPEC section 3a).
    erasures: FxHashSet<Box<str>>,
    pub events: bool,
    /// Records the batch's writes as a `StateDelta` (the workers' use); None in replay.
    pub journal: Option<Journal>,
    /// Whether the journal counts tally changes.
    pub tallies: bool,
}

/// A batch's writes, as the Python engine's `StateDelta` has them.
#[derive(Default)]
pub struct Journal {
    /// Parts the batch changed, with their version and number of names before it.
    pub before: IndexMap<u32, (u64, usize), FxBuildHasher>,
    /// (part, name, identity) -> the holding after the batch (None: deleted).
    pub values: IndexMap<(u32, Sym, Sym), Option<Held>, FxBuildHasher>,
    /// The values of `values` that had no holding before the batch (their identity's index
    /// gains an entry when they hold one after it).
    pub unheld: FxHashSet<(u32, Sym, Sym)>,
    /// (part, name, encoding) -> count change.
    pub tallies: IndexMap<(u32, Sym, Sym), i64, FxBuildHasher>,
    /// (message, response id, index in the batch) of each taken id, in order.
    pub taken: Vec<(Sym, Box<str>, usize)>,
}

impl Journal {
    fn changed(&mut self, store: &Store, part: usize) {
        let meta = &store.parts[part];
        self.before.entry(part as u32).or_insert((meta.version, meta.names.len()));
    }

    fn tally(&mut self, part: usize, name: Sym, encoding: Sym, change: i64) {
        *self.tallies.entry((part as u32, name, encoding)).or_insert(0) += change;
    }
}

/// What one accepted change does to the author's holding.
enum New {
    Same,
    Delete,
    Put(Held),
}

/// A name a response touched: its type, the holding before the response, and after.
struct Touch {
    name: Sym,
    kind: Kind,
    old: Option<Held>,
    now: Option<Held>,
}

pub struct Lines {
    pub events: Vec<Vec<u8>>,
    pub rejections: Vec<Vec<u8>>,
}

impl Engine {
    /// `caps`: the registry's `max_values` per capped state name.
    pub fn new(registry: &[(String, Kind)], caps: &[(String, usize)], window: usize, events: bool) -> Engine {
        let mut store = Store::new(window);
        let registry = registry.iter().map(|(name, kind)| (store.strings.intern(name), *kind)).collect();
        let caps = caps.iter().map(|(name, cap)| (store.strings.intern(name), *cap)).collect();
        let counts = FxHashMap::default();
        let erasures = FxHashSet::default();
        Engine { store, registry, caps, counts, erasures, events, journal: None, tallies: false }
    }

    /// Whether `name` is a capped state (the registry gives it `max_values`).
    pub fn capped(&self, name: &str) -> bool {
        !self.caps.is_empty() && self.store.strings.get(name).is_some_and(|n| self.caps.contains_key(&n))
    }

    /// Take in a capped state's tally in a part as the store holds it: each value's count of
    /// holders. The workers' cache holds them for one round only (`forget_counts`).
    pub fn load_count(&mut self, part: usize, name: &str, encoding: &[u8], count: u32) {
        let Some(name) = self.store.strings.get(name).filter(|n| self.caps.contains_key(n)) else { return };
        let encoding = self.store.encodings.intern(encoding);
        self.counts.entry((part as u32, name)).or_default().insert(encoding, count);
    }

    /// Drop every count held: the next round reads the tallies it needs again.
    pub fn forget_counts(&mut self) {
        self.counts.clear();
    }

    pub fn reject_whole(&self, whole: &Whole, out: &mut Lines) {
        out.rejections.push(rejection_line(
            whole.reason,
            &whole.detail,
            whole.rid.as_deref(),
            whole.mid.as_deref(),
            whole.ident.as_deref(),
            None,
            whole.raw.as_deref(),
        ));
    }

    /// Apply one decoded response (SPEC section 3, rule numbers as in `streams/engine.py`).
    pub fn apply(&mut self, r: &Response, index: usize, dump: &mut DumpChange, out: &mut Lines) -> PyResult<()> {
        let store = &mut self.store;
        let mid = store.strings.intern(r.mid);
        if !store.deleted.is_empty() && store.deleted.contains(&mid) {
            let (reason, detail) = refusal_of_deleted(store, mid, r.rid);
            out.rejections.push(rejection_line(reason, &detail, Some(r.rid), Some(r.mid), Some(r.ident), None, None));
            return Ok(());
        }
        let taken = store.take(mid, r.rid);
        if let (true, Some(journal)) = (taken, &mut self.journal) {
            journal.taken.push((mid, r.rid.into(), index));
        }
        if !taken {
            let detail = format!("response {} was already taken for this message", r.rid);
            let line = rejection_line("duplicate", &detail, Some(r.rid), Some(r.mid), Some(r.ident), None, None);
            out.rejections.push(line);
            return Ok(());
        }
        let mut part = store.part_index(r.mid, r.pid);
        let mut touched: Vec<Touch> = Vec::with_capacity(r.changes.len());
        // The author's number, once it is known (interned when it first holds something).
        let mut ident = store.strings.get(r.ident);
        for (position, change) in r.changes.iter().enumerate() {
            let refuse = |out: &mut Lines, dump: &mut DumpChange, reason: &str, detail: &str| -> PyResult<()> {
                let line = rejection_line(
                    reason,
                    detail,
                    Some(r.rid),
                    Some(r.mid),
                    Some(r.ident),
                    Some((position, &dump(change)?)),
                    None,
                );
                out.rejections.push(line);
                Ok(())
            };
            if let Some(error) = &change.error {
                refuse(out, dump, "invalid_change", error)?; // 1
                continue;
            }
            let kind = change.kind;
            let name = store.strings.get(change.name);
            let slot = match (part, name) {
                (Some(p), Some(n)) => store.parts[p].slot(n),
                _ => None,
            };
            let fixed = slot.map(|s| store.parts[part.unwrap()].names[s].1);
            let registered = name.and_then(|n| self.registry.get(&n)).copied();
            if let Some(fixed) = fixed.filter(|&f| f != kind) {
                // 2
                let detail = format!("{} is {} state in this part, not {}", change.name, fixed.with_article(), kind.name());
                refuse(out, dump, "type_mismatch", &detail)?;
                continue;
            }
            if let Some(registered) = registered.filter(|&k| k != kind) {
                let detail =
                    format!("{} is registered as {} state, not {}", change.name, registered.with_article(), kind.name());
                refuse(out, dump, "type_mismatch", &detail)?;
                continue;
            }
            if !change.is_add && (kind == Kind::Lww || kind == Kind::Fww) {
                // 3
                refuse(out, dump, "remove_not_allowed", &format!("{} value cannot be removed", kind.with_article()))?;
                continue;
            }
            let held: Option<&Stored> = match slot {
                None => {
                    // Nobody holds a name that is not fixed yet: only the limit can refuse it.
                    if part.is_some_and(|p| store.parts[p].names.len() >= MAX_NAMES) {
                        // 5
                        refuse(out, dump, "limit_exceeded", "this part already has 64 state names")?;
                        continue;
                    }
                    None
                }
                Some(s) => ident.and_then(|i| store.parts[part.unwrap()].holdings[s].get(&i)),
            };
            let value = if change.value.is_empty() { None } else { store.encodings.get(&change.value) };
            let encodings = &mut store.encodings;
            let mut intern_value = || value.unwrap_or_else(|| encodings.intern(&change.value));
            let new = match kind {
                Kind::Set => match held {
                    None if change.is_add => New::Put(Held::Many(Box::new([intern_value()]))),
                    None => New::Same,
                    Some(held) => {
                        let members = store.sets.members(held);
                        let holds = value.is_some_and(|v| members.contains(&v));
                        if change.is_add {
                            if holds {
                                New::Same
                            } else if members.len() >= MAX_MEMBERS {
                                // 5
                                let detail =
                                    format!("{} already has {MAX_MEMBERS} members for this identity", change.name);
                                refuse(out, dump, "limit_exceeded", &detail)?;
                                continue;
                            } else {
                                let mut grown = Vec::with_capacity(members.len() + 1);
                                grown.extend_from_slice(members);
                                grown.push(intern_value());
                                New::Put(Held::Many(grown.into_boxed_slice()))
                            }
                        } else if holds {
                            let kept: Vec<Sym> = members.iter().copied().filter(|&m| Some(m) != value).collect();
                            if kept.is_empty() {
                                New::Delete
                            } else {
                                New::Put(Held::Many(kept.into_boxed_slice()))
                            }
                        } else {
                            New::Same
                        }
                    }
                },
                _ if change.is_add => {
                    if let (Kind::Fww, Some(held)) = (kind, held) {
                        // 4
                        let shown = String::from_utf8_lossy(store.encodings.bytes(*held));
                        let detail = format!("{} already holds {shown} for this identity", change.name);
                        refuse(out, dump, "fww_conflict", &detail)?;
                        continue;
                    }
                    let put = intern_value();
                    if held == Some(&put) {
                        New::Same
                    } else {
                        New::Put(Held::One(put))
                    }
                }
                // An LWWN remove: unset when no value is given or the value is held.
                _ => match held {
                    Some(&one) if change.value.is_empty() || value == Some(one) => New::Delete,
                    _ => New::Same,
                },
            };
            // 5: an add of a value nobody in the part holds, to a capped state already full.
            let cap = name.and_then(|n| self.caps.get(&n).map(|&cap| (n, cap)));
            if let (true, Some((n, cap)), false) = (change.is_add, cap, matches!(new, New::Same)) {
                let counts = part.and_then(|p| self.counts.get(&(p as u32, n)));
                let held_by_someone = value.is_some_and(|v| counts.is_some_and(|c| c.contains_key(&v)));
                if !held_by_someone && counts.map_or(0, |c| c.len()) >= cap {
                    let detail = format!("{} already holds max_values={cap} distinct values in this part", change.name);
                    refuse(out, dump, "limit_exceeded", &detail)?;
                    continue;
                }
            }
            let old = held.map(|held| store.sets.owned(held));

            // Accepted, even when it has no effect: the name is fixed from now on.
            let name = match name {
                Some(name) => name,
                None => store.strings.intern(change.name),
            };
            let p = match part {
                Some(p) => p,
                None => {
                    let pid = store.strings.intern(r.pid);
                    let p = store.new_part(mid, pid);
                    part = Some(p);
                    p
                }
            };
            let slot = match slot {
                Some(s) => s,
                None => {
                    if let Some(journal) = &mut self.journal {
                        journal.changed(store, p);
                    }
                    let the_part = &mut store.parts[p];
                    the_part.names.push((name, kind));
                    the_part.holdings.push(FxHashMap::default());
                    the_part.names.len() - 1
                }
            };
            let now = match &new {
                New::Same => old.clone(),
                New::Delete => None,
                New::Put(held) => Some(held.clone()),
            };
            if let (Some(journal), false) = (&mut self.journal, matches!(new, New::Same)) {
                let i = *ident.get_or_insert_with(|| store.strings.intern(r.ident));
                // The first change of the batch to a value sees its holding from before the batch.
                if old.is_none() && !journal.values.contains_key(&(p as u32, name, i)) {
                    journal.unheld.insert((p as u32, name, i));
                }
                journal.values.insert((p as u32, name, i), now.clone());
                if self.tallies {
                    if kind == Kind::Set {
                        // A Set change adds or removes exactly its own member.
                        let member = match &now {
                            // An add appends its member last; a remove takes a held one.
                            Some(Held::Many(members)) if change.is_add => members[members.len() - 1],
                            _ => value.expect("a removed member is held"),
                        };
                        journal.tally(p, name, member, if change.is_add { 1 } else { -1 });
                    } else {
                        if let Some(Held::One(was)) = &old {
                            journal.tally(p, name, *was, -1);
                        }
                        if let Some(Held::One(is)) = &now {
                            journal.tally(p, name, *is, 1);
                        }
                    }
                }
            }
            if cap.is_some() && !matches!(new, New::Same) {
                let counts = self.counts.entry((p as u32, name)).or_default();
                recount(counts, old.as_ref(), false);
                recount(counts, now.as_ref(), true);
            }
            match touched.iter_mut().find(|t| t.name == name) {
                Some(touch) => touch.now = now,
                None => touched.push(Touch { name, kind, old, now }),
            }
            match new {
                New::Same => {}
                New::Delete => {
                    if let Some(i) = ident {
                        store.delete(p, slot, i);
                        if self.journal.is_some() {
                            store.absent.insert((p as u32, name, i));
                        }
                    }
                }
                New::Put(held) => {
                    let i = *ident.get_or_insert_with(|| store.strings.intern(r.ident));
                    store.put(p, slot, i, held);
                    if self.journal.is_some() {
                        store.absent.remove(&(p as u32, name, i));
                    }
                }
            }
        }

        // One event per state whose value for the author changed over the whole response.
        let Some(p) = part else { return Ok(()) };
        let mut bumped = false;
        for touch in &touched {
            if touch.now == touch.old {
                continue;
            }
            if !bumped {
                if let Some(journal) = &mut self.journal {
                    journal.changed(store, p);
                }
                store.parts[p].version += 1;
                bumped = true;
                if !self.events {
                    break;
                }
            }
            let name = store.strings.text(touch.name);
            out.events.push(event_line(
                store,
                &Event {
                    event_id: &format!("{}/{}/{}", r.mid, r.rid, name),
                    cause: "response",
                    mid: r.mid,
                    pid: r.pid,
                    rid: r.rid,
                    ident: r.ident,
                    status: r.status,
                    name,
                    kind: touch.kind,
                    old: touch.old.as_ref(),
                    new: touch.now.as_ref(),
                    version: store.parts[p].version,
                },
            ));
        }
        Ok(())
    }
}

impl Engine {
    /// Apply a deletion or an erasure (SPEC section 3a), replay's way: an erasure looks for
    /// the identity in every part held.
    pub fn remove(&mut self, d: &Removal, out: &mut Lines) {
        let store = &mut self.store;
        let mut found: Vec<(usize, usize, Sym)> = Vec::new(); // (part, slot, holder)
        let cause = match d.mid {
            Some(mid_text) => {
                let mid = store.strings.intern(mid_text);
                if store.is_taken(mid, d.rid) || store.deleted.contains(&mid) {
                    let (reason, detail) = refusal_of_deleted(store, mid, d.rid);
                    let line = rejection_line(reason, &detail, Some(d.rid), Some(mid_text), Some(d.ident), None, None);
                    out.rejections.push(line);
                    return;
                }
                store.take(mid, d.rid);
                store.deleted.insert(mid);
                // Deletions are rare: the message's parts are found by a look at every part.
                for (p, part) in store.parts.iter().enumerate().filter(|(_, part)| part.key.0 == mid) {
                    for (slot, held_by) in part.holdings.iter().enumerate() {
                        found.extend(held_by.keys().map(|&holder| (p, slot, holder)));
                    }
                }
                "delete_message"
            }
            None => {
                if !self.erasures.insert(d.rid.into()) {
                    return; // the same erasure again: skipped silently
                }
                let Some(ident) = store.strings.get(d.ident) else { return };
                for (p, part) in store.parts.iter().enumerate() {
                    for (slot, held_by) in part.holdings.iter().enumerate() {
                        if held_by.contains_key(&ident) {
                            found.push((p, slot, ident));
                        }
                    }
                }
                "erase_identity"
            }
        };
        // In (message, part, name, identity) order, by code point.
        let text = |sym: Sym| store.strings.text(sym);
        found.sort_unstable_by(|&(p, slot, holder), &(q, other, other_holder)| {
            let (a, b) = (&store.parts[p], &store.parts[q]);
            (text(a.key.0), text(a.key.1), text(a.names[slot].0), text(holder))
                .cmp(&(text(b.key.0), text(b.key.1), text(b.names[other].0), text(other_holder)))
        });
        let mut last_part = None;
        for (p, slot, holder) in found {
            let (name, kind) = store.parts[p].names[slot];
            let old = store.sets.owned(&store.parts[p].holdings[slot][&holder]);
            if last_part != Some(p) {
                store.parts[p].version += 1;
                last_part = Some(p);
            }
            if let Some(counts) = self.counts.get_mut(&(p as u32, name)) {
                recount(counts, Some(&old), false);
            }
            store.delete(p, slot, holder);
            if !self.events {
                continue;
            }
            let (mid, pid) = (store.strings.text(store.parts[p].key.0), store.strings.text(store.parts[p].key.1));
            let (name, ident) = (store.strings.text(name), store.strings.text(holder));
            out.events.push(event_line(
                store,
                &Event {
                    event_id: &format!("{mid}/{}/{pid}/{name}/{ident}", d.rid),
                    cause,
                    mid,
                    pid,
                    rid: d.rid,
                    ident,
                    status: d.status,
                    name,
                    kind,
                    old: Some(&old),
                    new: None,
                    version: store.parts[p].version,
                },
            ));
        }
    }
}

/// Count a holding's values in or out of a capped state's counts (a count of 0 is no entry).
fn recount(counts: &mut FxHashMap<Sym, u32>, held: Option<&Held>, add: bool) {
    let members = match held {
        None => return,
        Some(Held::One(one)) => std::slice::from_ref(one),
        Some(Held::Many(many)) => &many[..],
    };
    for member in members {
        if add {
            *counts.entry(*member).or_insert(0) += 1;
        } else if let Some(count) = counts.get_mut(member) {
            *count -= 1;
            if *count == 0 {
                counts.remove(member);
            }
        }
    }
}

/// What a summary-change event says (SPEC section 5).
struct Event<'a> {
    event_id: &'a str,
    cause: &'a str,
    mid: &'a str,
    pid: &'a str,
    rid: &'a str,
    ident: &'a str,
    status: Option<&'a str>,
    name: &'a str,
    kind: Kind,
    old: Option<&'a Held>,
    new: Option<&'a Held>,
    version: u64,
}

/// A summary-change event as a JSON line, keys sorted.
fn event_line(store: &Store, e: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"cause\":");
    json::write_str(&mut out, e.cause);
    out.extend_from_slice(b",\"event_id\":");
    json::write_str(&mut out, e.event_id);
    out.extend_from_slice(b",\"identity_id\":");
    json::write_str(&mut out, e.ident);
    out.extend_from_slice(b",\"message_id\":");
    json::write_str(&mut out, e.mid);
    out.extend_from_slice(b",\"name\":");
    json::write_str(&mut out, e.name);
    out.extend_from_slice(b",\"new\":");
    store.write_held(&mut out, e.new);
    out.extend_from_slice(b",\"old\":");
    store.write_held(&mut out, e.old);
    out.extend_from_slice(b",\"part_id\":");
    json::write_str(&mut out, e.pid);
    out.extend_from_slice(b",\"response_id\":");
    json::write_str(&mut out, e.rid);
    out.extend_from_slice(b",\"status_text\":");
    json::write_opt_str(&mut out, e.status);
    out.extend_from_slice(b",\"type\":");
    json::write_str(&mut out, e.kind.name());
    out.extend_from_slice(b",\"version\":");
    json::write_int(&mut out, e.version);
    out.extend_from_slice(b"}\n");
    out
}

/// Why a record for a deleted message is refused: a duplicate id first, as for any record.
fn refusal_of_deleted(store: &Store, mid: Sym, rid: &str) -> (&'static str, String) {
    if store.is_taken(mid, rid) {
        ("duplicate", format!("response {rid} was already taken for this message"))
    } else {
        ("message_deleted", "the message was deleted".into())
    }
}

/// A rejection (SPEC section 6) as a JSON line, keys sorted; `change` is already encoded.
pub fn rejection_line(
    reason: &str,
    detail: &str,
    rid: Option<&str>,
    mid: Option<&str>,
    ident: Option<&str>,
    change: Option<(usize, &[u8])>,
    raw: Option<&str>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"change\":");
    match change {
        Some((index, encoded)) => {
            out.extend_from_slice(encoded);
            out.extend_from_slice(b",\"change_index\":");
            json::write_int(&mut out, index);
        }
        None => out.extend_from_slice(b"null,\"change_index\":null"),
    }
    out.extend_from_slice(b",\"detail\":");
    json::write_str(&mut out, detail);
    out.extend_from_slice(b",\"identity_id\":");
    json::write_opt_str(&mut out, ident);
    out.extend_from_slice(b",\"message_id\":");
    json::write_opt_str(&mut out, mid);
    out.extend_from_slice(b",\"raw\":");
    json::write_opt_str(&mut out, raw);
    out.extend_from_slice(b",\"reason\":");
    json::write_str(&mut out, reason);
    out.extend_from_slice(b",\"response_id\":");
    json::write_opt_str(&mut out, rid);
    out.extend_from_slice(b"}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Raw;
    use crate::fast;

    /// A refused change as received: the plain reader keeps its text.
    fn dump(change: &Change) -> PyResult<Vec<u8>> {
        match change.raw {
            Raw::Text(text) => Ok(text.to_vec()),
            Raw::Object(_) => unreachable!("these tests build no Python object"),
        }
    }

    fn lines(out: Vec<Vec<u8>>) -> Vec<String> {
        out.into_iter().map(|line| String::from_utf8(line).unwrap()).collect()
    }

    struct Run {
        engine: Engine,
        index: usize,
    }

    impl Run {
        fn new(registry: &[(&str, Kind)]) -> Run {
            let registry: Vec<(String, Kind)> = registry.iter().map(|&(n, k)| (n.to_owned(), k)).collect();
            Run { engine: Engine::new(&registry, &[], 10_000, true), index: 0 }
        }

        /// With the registry's `max_values` for these names.
        fn capped(registry: &[(&str, Kind)], caps: &[(&str, usize)]) -> Run {
            let registry: Vec<(String, Kind)> = registry.iter().map(|&(n, k)| (n.to_owned(), k)).collect();
            let caps: Vec<(String, usize)> = caps.iter().map(|&(n, c)| (n.to_owned(), c)).collect();
            Run { engine: Engine::new(&registry, &caps, 10_000, true), index: 0 }
        }

        /// Apply a decoded response: (event lines, rejection lines).
        fn apply(&mut self, response: &Response) -> (Vec<String>, Vec<String>) {
            let mut out = Lines { events: Vec::new(), rejections: Vec::new() };
            self.engine.apply(response, self.index, &mut dump, &mut out).unwrap();
            self.index += 1;
            (lines(out.events), lines(out.rejections))
        }

        /// Apply a record that the plain reader reads.
        fn send(&mut self, record: &str) -> (Vec<String>, Vec<String>) {
            let response = fast::decode(record.as_bytes()).expect("a plain, valid record");
            self.apply(&response)
        }

        fn summary(&self, pid: &str) -> String {
            let store = &self.engine.store;
            let part = store.part_index("m", pid).map(|p| &store.parts[p]);
            let mut out = Vec::new();
            store.render(&mut out, "m", pid, part, None);
            String::from_utf8(out).unwrap()
        }

        fn version(&self, pid: &str) -> u64 {
            let store = &self.engine.store;
            store.part_index("m", pid).map_or(0, |p| store.parts[p].version)
        }
    }

    /// A response to message `m`, part root.
    fn response(rid: &str, ident: &str, changes: &[String]) -> String {
        in_part(rid, "m", "root", ident, changes)
    }

    fn in_part(rid: &str, mid: &str, pid: &str, ident: &str, changes: &[String]) -> String {
        format!(
            r#"{{"id":"{rid}","message_id":"{mid}","part_id":"{pid}","identity_id":"{ident}","changes":[{}]}}"#,
            changes.join(",")
        )
    }

    /// `value` is JSON.
    fn add(kind: &str, name: &str, value: &str) -> String {
        format!(r#"{{"operation":"add","type":"{kind}","name":"{name}","value":{value}}}"#)
    }

    fn remove(kind: &str, name: &str, value: Option<&str>) -> String {
        match value {
            Some(value) => format!(r#"{{"operation":"remove","type":"{kind}","name":"{name}","value":{value}}}"#),
            None => format!(r#"{{"operation":"remove","type":"{kind}","name":"{name}"}}"#),
        }
    }

    /// A summary-change event of message `m`, part root, with no status text.
    fn event(rid: &str, ident: &str, name: &str, kind: &str, old: &str, new: &str, version: u64) -> String {
        format!(
            concat!(
                r#"{{"cause":"response","event_id":"m/{rid}/{name}","identity_id":"{ident}","message_id":"m","name":"{name}","#,
                r#""new":{new},"old":{old},"part_id":"root","response_id":"{rid}","status_text":null,"#,
                r#""type":"{kind}","version":{version}}}"#,
                "\n"
            ),
            rid = rid,
            ident = ident,
            name = name,
            kind = kind,
            old = old,
            new = new,
            version = version
        )
    }

    fn field<'a>(line: &'a str, key: &str) -> &'a str {
        let start = line.find(&format!("\"{key}\":")).unwrap_or_else(|| panic!("{key} in {line}")) + key.len() + 3;
        let rest = &line[start..];
        let end = rest.find(",\"").unwrap_or(rest.len() - 2);
        &rest[..end]
    }

    /// (reason, change_index) of each rejection.
    fn reasons(rejections: &[String]) -> Vec<(String, String)> {
        rejections
            .iter()
            .map(|line| (field(line, "reason").trim_matches('"').to_owned(), field(line, "change_index").to_owned()))
            .collect()
    }

    fn refused(reason: &str, index: usize) -> Vec<(String, String)> {
        vec![(reason.to_owned(), index.to_string())]
    }

    #[test]
    fn set_adds_append_members_and_removes_delete_them() {
        let mut run = Run::new(&[]);
        let (events, rejections) = run.send(&response(
            "r1",
            "u1",
            &[add("Set", "colors", r#""red""#), add("Set", "colors", r#""green""#), add("Set", "colors", r#""red""#)],
        ));
        assert!(rejections.is_empty());
        assert_eq!(events, [event("r1", "u1", "colors", "Set", "null", r#"["red","green"]"#, 1)]);
        // Removing a member not held: accepted, no effect.
        assert_eq!(run.send(&response("r2", "u1", &[remove("Set", "colors", Some(r#""blue""#))])), (vec![], vec![]));
        assert_eq!(run.version("root"), 1);
        // Members compare in order: removed then added again is a change.
        let (events, _) = run.send(&response(
            "r3",
            "u1",
            &[remove("Set", "colors", Some(r#""red""#)), add("Set", "colors", r#""red""#)],
        ));
        assert_eq!(events, [event("r3", "u1", "colors", "Set", r#"["red","green"]"#, r#"["green","red"]"#, 2)]);
        let (events, _) = run.send(&response("r4", "u2", &[add("Set", "colors", r#""red""#)]));
        assert_eq!(events, [event("r4", "u2", "colors", "Set", "null", r#"["red"]"#, 3)]);
        assert_eq!(
            run.summary("root"),
            concat!(
                r#"{"message_id":"m","part_id":"root","states":{"colors":{"#,
                r#""tally":[{"count":2,"value":"red"},{"count":1,"value":"green"}],"type":"Set","#,
                r#""values":{"u1":["green","red"],"u2":["red"]}}},"version":3}"#,
                "\n"
            )
        );
        // An identity with no members holds nothing: null, and absent from the summary.
        let (events, _) = run.send(&response(
            "r5",
            "u1",
            &[remove("Set", "colors", Some(r#""green""#)), remove("Set", "colors", Some(r#""red""#))],
        ));
        assert_eq!(events, [event("r5", "u1", "colors", "Set", r#"["green","red"]"#, "null", 4)]);
        assert!(run.summary("root").contains(r#""values":{"u2":["red"]}"#));
    }

    #[test]
    fn fww_keeps_the_first_value_of_each_identity() {
        let mut run = Run::new(&[]);
        let (events, _) = run.send(&response("r1", "u1", &[add("FWW", "poll", r#""a""#)]));
        assert_eq!(events, [event("r1", "u1", "poll", "FWW", "null", r#""a""#, 1)]);
        for (rid, value) in [("r2", r#""a""#), ("r3", r#""b""#)] {
            let (events, rejections) = run.send(&response(rid, "u1", &[add("FWW", "poll", value)]));
            assert!(events.is_empty());
            assert_eq!(reasons(&rejections), refused("fww_conflict", 0), "even for the same value");
            assert_eq!(field(&rejections[0], "detail"), r#""poll already holds \"a\" for this identity""#);
        }
        let (events, rejections) = run.send(&response("r4", "u2", &[add("FWW", "poll", r#""b""#)]));
        assert!(rejections.is_empty());
        assert_eq!(events, [event("r4", "u2", "poll", "FWW", "null", r#""b""#, 2)]);
        // Within one response the first add holds already for the second.
        let (events, rejections) =
            run.send(&response("r5", "u3", &[add("FWW", "poll", "1"), add("FWW", "poll", "2")]));
        assert_eq!(events, [event("r5", "u3", "poll", "FWW", "null", "1", 3)]);
        assert_eq!(reasons(&rejections), refused("fww_conflict", 1));
        assert!(run.summary("root").contains(r#""values":{"u1":"a","u2":"b","u3":1}"#));
    }

    #[test]
    fn lww_replaces_and_cannot_be_removed() {
        let mut run = Run::new(&[]);
        run.send(&response("r1", "u1", &[add("LWW", "latest", r#""red""#)]));
        let (events, _) = run.send(&response("r2", "u1", &[add("LWW", "latest", r#""blue""#)]));
        assert_eq!(events, [event("r2", "u1", "latest", "LWW", r#""red""#, r#""blue""#, 2)]);
        // The same value again changes nothing: no event, no version step.
        assert_eq!(run.send(&response("r3", "u1", &[add("LWW", "latest", r#""blue""#)])), (vec![], vec![]));
        assert_eq!(run.version("root"), 2);
        for (rid, change) in [("r4", remove("LWW", "latest", None)), ("r5", remove("LWW", "latest", Some(r#""blue""#)))] {
            let (events, rejections) = run.send(&response(rid, "u1", &[change]));
            assert!(events.is_empty());
            assert_eq!(reasons(&rejections), refused("remove_not_allowed", 0));
        }
        // 1, "1" and true are three values.
        let (events, _) = run.send(&response(
            "r6",
            "u1",
            &[add("LWW", "latest", "1"), add("LWW", "latest", r#""1""#), add("LWW", "latest", "true")],
        ));
        assert_eq!(events, [event("r6", "u1", "latest", "LWW", r#""blue""#, "true", 3)]);
    }

    #[test]
    fn lwwn_remove_unsets_an_equal_value_or_any_when_given_none() {
        let mut run = Run::new(&[]);
        run.send(&response("r1", "u1", &[add("LWWN", "n", r#""x""#)]));
        // A different value: no effect.
        assert_eq!(run.send(&response("r2", "u1", &[remove("LWWN", "n", Some(r#""y""#))])), (vec![], vec![]));
        let (events, _) = run.send(&response("r3", "u1", &[remove("LWWN", "n", Some(r#""x""#))]));
        assert_eq!(events, [event("r3", "u1", "n", "LWWN", r#""x""#, "null", 2)]);
        run.send(&response("r4", "u1", &[add("LWWN", "n", "5")]));
        let (events, _) = run.send(&response("r5", "u1", &[remove("LWWN", "n", None)]));
        assert_eq!(events, [event("r5", "u1", "n", "LWWN", "5", "null", 4)]);
        run.send(&response("r6", "u1", &[add("LWWN", "n", "false")]));
        let (events, _) = run.send(&response("r7", "u1", &[remove("LWWN", "n", Some("null"))]));
        assert_eq!(events, [event("r7", "u1", "n", "LWWN", "false", "null", 6)]);
        // Nothing held: accepted, no effect.
        assert_eq!(run.send(&response("r8", "u1", &[remove("LWWN", "n", None)])), (vec![], vec![]));
        assert!(run.summary("root").contains(r#""n":{"tally":[],"type":"LWWN","values":{}}"#));
    }

    #[test]
    fn the_first_accepted_change_fixes_a_names_type_in_its_part() {
        let mut run = Run::new(&[]);
        // A rejected change fixes nothing: `k` is still free for LWW.
        let (_, rejections) =
            run.send(&response("r1", "u1", &[remove("FWW", "k", None), add("LWW", "k", r#""x""#)]));
        assert_eq!(reasons(&rejections), refused("remove_not_allowed", 0));
        // A change with no effect is accepted, and fixes the name.
        assert_eq!(run.send(&response("r2", "u1", &[remove("Set", "s", Some("1"))])), (vec![], vec![]));
        for (rid, change, detail) in [
            ("r3", add("Set", "k", "1"), "k is an LWW state in this part, not Set"),
            ("r4", add("LWW", "s", "1"), "s is a Set state in this part, not LWW"),
            // A type mismatch comes before remove_not_allowed.
            ("r5", remove("FWW", "s", None), "s is a Set state in this part, not FWW"),
        ] {
            let (events, rejections) = run.send(&response(rid, "u2", &[change]));
            assert!(events.is_empty());
            assert_eq!(reasons(&rejections), refused("type_mismatch", 0));
            assert_eq!(field(&rejections[0], "detail"), format!("\"{detail}\""));
        }
        assert_eq!(
            run.summary("root"),
            concat!(
                r#"{"message_id":"m","part_id":"root","states":{"#,
                r#""k":{"tally":[{"count":1,"value":"x"}],"type":"LWW","values":{"u1":"x"}},"#,
                r#""s":{"tally":[],"type":"Set","values":{}}},"version":1}"#,
                "\n"
            )
        );
        // Each part fixes its own types.
        let (_, rejections) = run.send(&in_part("r6", "m", "p2", "u1", &[add("Set", "k", "1")]));
        assert!(rejections.is_empty());
        assert!(run.summary("p2").contains(r#""k":{"tally":[{"count":1,"value":1}],"type":"Set""#));
    }

    #[test]
    fn a_registry_fixes_types_from_the_first_change() {
        let mut run = Run::new(&[("reactions", Kind::Set)]);
        let (events, rejections) = run.send(&response("r1", "u1", &[add("LWW", "reactions", r#""+1""#)]));
        assert!(events.is_empty());
        assert_eq!(reasons(&rejections), refused("type_mismatch", 0));
        assert_eq!(field(&rejections[0], "detail"), r#""reactions is registered as a Set state, not LWW""#);
        assert!(run.engine.store.summary_lines(None).is_empty(), "a rejected change fixes no name");
        let (events, rejections) = run.send(&response("r2", "u1", &[add("Set", "reactions", r#""+1""#)]));
        assert!(rejections.is_empty());
        assert_eq!(events, [event("r2", "u1", "reactions", "Set", "null", r#"["+1"]"#, 1)]);
    }

    #[test]
    fn invalid_changes_are_refused_first_and_the_others_still_apply() {
        let mut run = Run::new(&[("n", Kind::Set)]);
        let bad = |error: &str| Change {
            is_add: false,
            kind: Kind::Fww,
            name: "n",
            value: Vec::new(),
            raw: Raw::Text(br#"{"operation":"remove","type":"FWW","name":"n"}"#),
            error: Some(error.to_owned()),
        };
        let good = fast::decode(br#"{"id":"x","message_id":"x","identity_id":"x","changes":[{"operation":"add","type":"LWW","name":"l","value":1}]}"#).unwrap();
        let good = good.changes.into_iter().next().unwrap();
        let response = Response {
            rid: "r1",
            mid: "m",
            pid: "root",
            ident: "u1",
            status: Some("hi"),
            changes: vec![bad("the change is bad"), good, bad("still bad")],
        };
        let (events, rejections) = run.apply(&response);
        assert_eq!(
            rejections[0],
            concat!(
                r#"{"change":{"operation":"remove","type":"FWW","name":"n"},"change_index":0,"#,
                r#""detail":"the change is bad","identity_id":"u1","message_id":"m","raw":null,"#,
                r#""reason":"invalid_change","response_id":"r1"}"#,
                "\n"
            )
        );
        assert_eq!(reasons(&rejections[1..]), refused("invalid_change", 2));
        assert_eq!(
            events,
            [concat!(
                r#"{"cause":"response","event_id":"m/r1/l","identity_id":"u1","message_id":"m","name":"l","new":1,"old":null,"#,
                r#""part_id":"root","response_id":"r1","status_text":"hi","type":"LWW","version":1}"#,
                "\n"
            )]
        );
    }

    #[test]
    fn checks_follow_the_specs_order() {
        let mut run = Run::new(&[]);
        run.send(&response("r1", "u1", &[add("FWW", "f", "1"), add("Set", "s", "1")]));
        let (_, rejections) = run.send(&response(
            "r2",
            "u1",
            &[
                // Held FWW: remove_not_allowed, not fww_conflict.
                remove("FWW", "f", Some("1")),
                // A Set name as FWW, removed: type_mismatch, not remove_not_allowed.
                remove("FWW", "s", None),
                // FWW held: fww_conflict.
                add("FWW", "f", "2"),
            ],
        ));
        let seen: Vec<String> = reasons(&rejections).into_iter().map(|(reason, _)| reason).collect();
        assert_eq!(seen, ["remove_not_allowed", "type_mismatch", "fww_conflict"]);
    }

    #[test]
    fn a_part_holds_at_most_64_names() {
        let mut run = Run::new(&[("late", Kind::Set)]);
        let names: Vec<String> = (0..64).map(|i| add("LWW", &format!("n{i}"), "1")).collect();
        let (events, rejections) = run.send(&response("r1", "u1", &names));
        assert!(rejections.is_empty());
        assert_eq!(events.len(), 64);
        assert!(events.iter().all(|line| line.ends_with("\"version\":1}\n")), "one version step per response");
        let (events, rejections) = run.send(&response(
            "r2",
            "u1",
            &[
                add("LWW", "n64", "1"),
                // Even a change with no effect would fix a 65th name.
                remove("LWWN", "n65", None),
                // A known name still takes changes.
                add("LWW", "n0", "2"),
                // A registry type mismatch is told before the limit.
                add("LWW", "late", "1"),
            ],
        ));
        assert_eq!(events, [event("r2", "u1", "n0", "LWW", "1", "2", 2)]);
        let seen: Vec<(String, String)> = reasons(&rejections);
        assert_eq!(
            seen,
            [
                ("limit_exceeded".to_owned(), "0".to_owned()),
                ("limit_exceeded".to_owned(), "1".to_owned()),
                ("type_mismatch".to_owned(), "3".to_owned())
            ]
        );
        assert_eq!(field(&rejections[0], "detail"), r#""this part already has 64 state names""#);
        // The limit is per part.
        let (_, rejections) = run.send(&in_part("r3", "m", "p2", "u1", &[add("LWW", "n64", "1")]));
        assert!(rejections.is_empty());
    }

    #[test]
    fn an_identity_holds_at_most_256_members_of_a_set() {
        let mut run = Run::new(&[]);
        for (rid, range) in [("r1", 0..100), ("r2", 100..200), ("r3", 200..256)] {
            let adds: Vec<String> = range.map(|i| add("Set", "s", &i.to_string())).collect();
            let (_, rejections) = run.send(&response(rid, "u1", &adds));
            assert!(rejections.is_empty());
        }
        let (events, rejections) =
            run.send(&response("r4", "u1", &[add("Set", "s", "256"), add("Set", "s", "0"), add("Set", "s", "255")]));
        assert!(events.is_empty(), "re-adding a member is a no-op, never over the limit");
        assert_eq!(reasons(&rejections), refused("limit_exceeded", 0));
        assert_eq!(field(&rejections[0], "detail"), r#""s already has 256 members for this identity""#);
        // Another identity has its own members; a removal makes room.
        assert!(run.send(&response("r5", "u2", &[add("Set", "s", "256")])).1.is_empty());
        let (events, rejections) =
            run.send(&response("r6", "u1", &[remove("Set", "s", Some("0")), add("Set", "s", "256")]));
        assert!(rejections.is_empty());
        assert_eq!(events.len(), 1);
        assert!(field(&events[0], "new").ends_with(",254,255,256]"));
    }

    #[test]
    fn max_values_caps_the_distinct_values_of_a_state_in_a_part() {
        let mut run = Run::capped(&[("reactions", Kind::Set), ("pick", Kind::Lww)], &[("reactions", 2), ("pick", 1)]);
        let (_, rejections) = run.send(&response("r1", "u1", &[add("Set", "reactions", "1"), add("Set", "reactions", "2")]));
        assert!(rejections.is_empty());
        // A third distinct value is over the cap, for anyone; a held one is not.
        let (events, rejections) =
            run.send(&response("r2", "u2", &[add("Set", "reactions", "3"), add("Set", "reactions", "2")]));
        assert_eq!(reasons(&rejections), refused("limit_exceeded", 0));
        assert_eq!(field(&rejections[0], "detail"), r#""reactions already holds max_values=2 distinct values in this part""#);
        assert_eq!(events, [event("r2", "u2", "reactions", "Set", "null", "[2]", 2)]);
        // Re-adding a held member changes nothing and is never over the cap.
        assert_eq!(run.send(&response("r3", "u1", &[add("Set", "reactions", "1")])), (vec![], vec![]));
        // Once nobody holds 1, there is room for 3.
        let (_, rejections) =
            run.send(&response("r4", "u1", &[remove("Set", "reactions", Some("1")), add("Set", "reactions", "3")]));
        assert!(rejections.is_empty());
        assert!(run.summary("root").contains(r#""tally":[{"count":2,"value":2},{"count":1,"value":3}]"#));
        // A scalar state: replacing one's own value with a new one is over a full cap too.
        run.send(&response("r5", "u1", &[add("LWW", "pick", r#""a""#)]));
        let (_, rejections) = run.send(&response("r6", "u1", &[add("LWW", "pick", r#""b""#)]));
        assert_eq!(reasons(&rejections), refused("limit_exceeded", 0));
        assert!(run.send(&response("r7", "u2", &[add("LWW", "pick", r#""a""#)])).1.is_empty());
        // The cap is per part.
        assert!(run.send(&in_part("r8", "m", "p2", "u1", &[add("LWW", "pick", r#""b""#)])).1.is_empty());
    }

    #[test]
    fn the_workers_cache_checks_a_cap_against_the_tally_loaded_for_the_batch() {
        let mut run = Run::capped(&[("reactions", Kind::Set), ("free", Kind::Set)], &[("reactions", 2)]);
        assert!(run.engine.capped("reactions") && !run.engine.capped("free") && !run.engine.capped("never"));
        run.send(&response("r1", "u1", &[add("Set", "reactions", "1")]));
        // A new batch: the store's tally says someone else holds 2 as well (an uncapped
        // state's count is not kept).
        run.engine.forget_counts();
        run.engine.load_count(0, "reactions", b"1", 1);
        run.engine.load_count(0, "reactions", b"2", 1);
        run.engine.load_count(0, "free", b"9", 1);
        let (_, rejections) = run.send(&response("r2", "u2", &[add("Set", "reactions", "3"), add("Set", "reactions", "2")]));
        assert_eq!(reasons(&rejections), refused("limit_exceeded", 0));
        assert_eq!(run.engine.counts.len(), 1);
    }

    #[test]
    fn a_deletion_and_an_erasure_remove_holdings_with_an_event_each() {
        let mut run = Run::new(&[]);
        run.send(&response("r1", "u2", &[add("LWW", "l", "1"), add("Set", "s", "2")]));
        run.send(&response("r2", "u1", &[add("Set", "s", "2")]));
        run.send(&in_part("r3", "m2", "root", "u1", &[add("LWW", "l", "3")]));
        let mut out = Lines { events: Vec::new(), rejections: Vec::new() };
        let erasure = Removal { rid: "e1", mid: None, ident: "u1", status: None };
        run.engine.remove(&erasure, &mut out);
        run.engine.remove(&erasure, &mut out); // taken once: the second is skipped
        let seen: Vec<(String, String, String)> = lines(std::mem::take(&mut out.events))
            .iter()
            .map(|e| (field(e, "event_id").to_owned(), field(e, "cause").to_owned(), field(e, "version").to_owned()))
            .collect();
        let erased = |id: &str, version: &str| (format!("\"{id}\""), "\"erase_identity\"".to_owned(), version.to_owned());
        assert_eq!(seen, [erased("m/e1/root/s/u1", "3"), erased("m2/e1/root/l/u1", "2")]);
        let deletion = Removal { rid: "d1", mid: Some("m"), ident: "mod", status: Some("gone") };
        run.engine.remove(&deletion, &mut out);
        let events = lines(std::mem::take(&mut out.events));
        // In (part, name, identity) order, one version step for the part.
        assert_eq!(events.iter().map(|e| field(e, "name")).collect::<Vec<_>>(), [r#""l""#, r#""s""#]);
        assert!(events.iter().all(|e| field(e, "version") == "4" && field(e, "status_text") == r#""gone""#));
        assert_eq!(run.summary("root"), "{\"deleted\":true,\"message_id\":\"m\",\"part_id\":\"root\",\"states\":{},\"version\":4}\n");
        // Later records for the message are refused; a taken id is a duplicate first.
        run.engine.remove(&deletion, &mut out);
        let (_, rejections) = run.send(&response("r9", "u1", &[add("LWW", "l", "1")]));
        assert_eq!(field(&lines(out.rejections)[0], "reason"), r#""duplicate""#);
        assert_eq!(field(&rejections[0], "reason"), r#""message_deleted""#);
    }

    #[test]
    fn a_response_id_is_taken_once_per_message_whatever_its_part() {
        let mut run = Run::new(&[]);
        run.send(&response("r1", "u1", &[add("LWW", "n", "1")]));
        let (events, rejections) = run.send(&in_part("r1", "m", "p2", "u2", &[add("LWW", "n", "2")]));
        assert!(events.is_empty());
        assert_eq!(
            rejections,
            [concat!(
                r#"{"change":null,"change_index":null,"detail":"response r1 was already taken for this message","#,
                r#""identity_id":"u2","message_id":"m","raw":null,"reason":"duplicate","response_id":"r1"}"#,
                "\n"
            )]
        );
        assert!(run.engine.store.part_index("m", "p2").is_none(), "a duplicate changes nothing");
        // Another message has its own ids.
        let (events, _) = run.send(&in_part("r1", "m2", "root", "u1", &[add("LWW", "n", "1")]));
        assert_eq!(events.len(), 1);
        // A response whose changes were all rejected was taken all the same.
        let (_, rejections) = run.send(&response("r2", "u1", &[remove("LWW", "n", None)]));
        assert_eq!(reasons(&rejections), refused("remove_not_allowed", 0));
        let (_, rejections) = run.send(&response("r2", "u1", &[add("LWW", "n", "3")]));
        assert_eq!(reasons(&rejections), vec![("duplicate".to_owned(), "null".to_owned())]);
        assert!(run.summary("root").contains(r#""values":{"u1":1}"#));
    }

    #[test]
    fn one_event_per_state_in_the_order_of_first_accepted_changes() {
        let mut run = Run::new(&[]);
        let (events, _) = run.send(&response(
            "r1",
            "u1",
            &[
                remove("LWW", "z", None), // rejected: does not place z first
                add("LWW", "b", "1"),
                add("LWW", "a", "1"),
                add("LWW", "z", "1"),
                add("LWW", "b", "2"),
            ],
        ));
        assert_eq!(
            events,
            [
                event("r1", "u1", "b", "LWW", "null", "2", 1),
                event("r1", "u1", "a", "LWW", "null", "1", 1),
                event("r1", "u1", "z", "LWW", "null", "1", 1),
            ]
        );
        // Changed and changed back within a response: no event, no version step.
        let (events, rejections) =
            run.send(&response("r2", "u1", &[add("LWW", "a", "5"), add("LWW", "a", "1"), add("LWWN", "w", "1"), remove("LWWN", "w", None)]));
        assert!(events.is_empty() && rejections.is_empty());
        assert_eq!(run.version("root"), 1);
        // Only the author's state is written.
        let (events, _) = run.send(&response("r3", "u2", &[add("LWW", "a", "9")]));
        assert_eq!(events, [event("r3", "u2", "a", "LWW", "null", "9", 2)]);
        assert!(run.summary("root").contains(r#""a":{"tally":[{"count":1,"value":1},{"count":1,"value":9}],"type":"LWW","values":{"u1":1,"u2":9}}"#));
    }

    #[test]
    fn without_events_versions_still_count() {
        let mut run = Run::new(&[]);
        run.engine.events = false;
        let (events, _) = run.send(&response("r1", "u1", &[add("LWW", "a", "1"), add("LWW", "b", "1")]));
        assert!(events.is_empty());
        run.send(&response("r2", "u1", &[add("LWW", "a", "1")]));
        assert_eq!(run.version("root"), 1);
        run.send(&response("r3", "u1", &[add("LWW", "a", "2")]));
        assert_eq!(run.version("root"), 2);
    }

    #[test]
    fn a_whole_rejection_carries_what_the_record_gave() {
        let run = Run::new(&[]);
        let mut out = Lines { events: Vec::new(), rejections: Vec::new() };
        run.engine.reject_whole(&crate::decode::malformed(b"{\xff", "not UTF-8".into()), &mut out);
        run.engine.reject_whole(&crate::decode::too_large(70_000), &mut out);
        assert_eq!(
            lines(out.rejections),
            [
                concat!(
                    r#"{"change":null,"change_index":null,"detail":"not UTF-8","identity_id":null,"#,
                    r#""message_id":null,"raw":"e/8=","reason":"malformed","response_id":null}"#,
                    "\n"
                ),
                concat!(
                    r#"{"change":null,"change_index":null,"detail":"the record is 70000 bytes, over the limit of 65536","#,
                    r#""identity_id":null,"message_id":null,"raw":null,"reason":"too_large","response_id":null}"#,
                    "\n"
                ),
            ]
        );
    }

    #[test]
    fn the_journal_records_a_batchs_writes() {
        let mut run = Run::new(&[]);
        run.engine.journal = Some(Journal::default());
        run.engine.tallies = true;
        run.send(&response("r0", "u1", &[add("LWW", "l", r#""x""#)]));
        // A new batch: its own journal, its records counted from 0.
        run.engine.store.end_batch();
        run.engine.journal = Some(Journal::default());
        run.index = 0;
        run.send(&response(
            "r1",
            "u1",
            &[add("Set", "s", r#""a""#), add("Set", "s", r#""b""#), add("LWW", "l", r#""y""#), add("LWWN", "w", "1")],
        ));
        run.send(&response("r2", "u1", &[remove("Set", "s", Some(r#""a""#)), remove("LWWN", "w", None)]));
        run.send(&response("r1", "u2", &[add("LWW", "l", r#""z""#)])); // a duplicate
        let store = &run.engine.store;
        let journal = run.engine.journal.as_ref().unwrap();
        let sym = |text: &str| store.strings.get(text).unwrap();
        let enc = |text: &str| store.encodings.get(text.as_bytes()).unwrap();
        // The part as it was before the batch: version 1, one name.
        assert_eq!(journal.before.iter().map(|(&p, &b)| (p, b)).collect::<Vec<_>>(), [(0, (1, 1))]);
        let values: Vec<_> = journal.values.iter().map(|(&(p, n, i), held)| ((p, n, i), held.clone())).collect();
        assert_eq!(
            values,
            [
                ((0, sym("s"), sym("u1")), Some(Held::Many(Box::new([enc(r#""b""#)])))),
                ((0, sym("l"), sym("u1")), Some(Held::One(enc(r#""y""#)))),
                ((0, sym("w"), sym("u1")), None),
            ]
        );
        // l was held before the batch; s and w were not.
        let unheld: FxHashSet<_> = [(0, sym("s"), sym("u1")), (0, sym("w"), sym("u1"))].into_iter().collect();
        assert_eq!(journal.unheld, unheld);
        let tallies: Vec<_> = journal.tallies.iter().map(|(&(p, n, e), &c)| ((p, n, e), c)).collect();
        assert_eq!(
            tallies,
            [
                ((0, sym("s"), enc(r#""a""#)), 0),
                ((0, sym("s"), enc(r#""b""#)), 1),
                ((0, sym("l"), enc(r#""x""#)), -1),
                ((0, sym("l"), enc(r#""y""#)), 1),
                ((0, sym("w"), enc("1")), 0),
            ]
        );
        let taken: Vec<_> = journal.taken.iter().map(|(m, rid, at)| (*m, &**rid, *at)).collect();
        assert_eq!(taken, [(sym("m"), "r1", 0), (sym("m"), "r2", 1)]);
        // What is now known to be held by nobody.
        assert!(store.absent.contains(&(0, sym("w"), sym("u1"))));
    }
}
