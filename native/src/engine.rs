//! The rules of SPEC sections 3-5 (`streams/engine.py`), applied straight to the store.

use indexmap::IndexMap;
use pyo3::prelude::*;
use rustc_hash::{FxBuildHasher, FxHashMap};

use crate::decode::{Change, Kind, Response, Whole};
use crate::json;
use crate::store::{Held, Store, Stored, Sym};

const MAX_NAMES: usize = 64;
const MAX_MEMBERS: usize = 256;

/// Encodes a change as received (`orjson.dumps` with sorted keys), for its rejection.
pub type DumpChange<'a> = dyn FnMut(&Change) -> PyResult<Vec<u8>> + 'a;

pub struct Engine {
    pub store: Store,
    registry: FxHashMap<Sym, Kind>,
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
    pub fn new(registry: &[(String, Kind)], window: usize, events: bool) -> Engine {
        let mut store = Store::new(window);
        let registry = registry.iter().map(|(name, kind)| (store.strings.intern(name), *kind)).collect();
        Engine { store, registry, events, journal: None, tallies: false }
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
                let detail = format!("{} is a {} state in this part, not {}", change.name, fixed.name(), kind.name());
                refuse(out, dump, "type_mismatch", &detail)?;
                continue;
            }
            if let Some(registered) = registered.filter(|&k| k != kind) {
                let detail =
                    format!("{} is registered as a {} state, not {}", change.name, registered.name(), kind.name());
                refuse(out, dump, "type_mismatch", &detail)?;
                continue;
            }
            if !change.is_add && (kind == Kind::Lww || kind == Kind::Fww) {
                // 3
                refuse(out, dump, "remove_not_allowed", &format!("a {} value cannot be removed", kind.name()))?;
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
            let version = store.parts[p].version;
            out.events.push(event_line(store, r, touch, version));
        }
        Ok(())
    }
}

/// A summary-change event (SPEC section 5) as a JSON line, keys sorted.
fn event_line(store: &Store, r: &Response, touch: &Touch, version: u64) -> Vec<u8> {
    let name = store.strings.text(touch.name);
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"event_id\":");
    json::write_str(&mut out, &format!("{}/{}/{}", r.mid, r.rid, name));
    out.extend_from_slice(b",\"identity_id\":");
    json::write_str(&mut out, r.ident);
    out.extend_from_slice(b",\"message_id\":");
    json::write_str(&mut out, r.mid);
    out.extend_from_slice(b",\"name\":");
    json::write_str(&mut out, name);
    out.extend_from_slice(b",\"new\":");
    store.write_held(&mut out, touch.now.as_ref());
    out.extend_from_slice(b",\"old\":");
    store.write_held(&mut out, touch.old.as_ref());
    out.extend_from_slice(b",\"part_id\":");
    json::write_str(&mut out, r.pid);
    out.extend_from_slice(b",\"response_id\":");
    json::write_str(&mut out, r.rid);
    out.extend_from_slice(b",\"status_text\":");
    json::write_opt_str(&mut out, r.status);
    out.extend_from_slice(b",\"type\":");
    json::write_str(&mut out, touch.kind.name());
    out.extend_from_slice(b",\"version\":");
    json::write_int(&mut out, version);
    out.extend_from_slice(b"}\n");
    out
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
