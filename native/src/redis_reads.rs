//! A round's read as the read script takes it (streams/lua/read_state.lua), and its reply taken
//! into the store, without a Python object per key, field and value (`PythonDecider.decide` and
//! `load` do the same in Python). Keys are named by the store's layout (streams/storage/layout.py):
//! the read gives the parts and messages whose keys it reads.

use indexmap::{IndexMap, IndexSet};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use rustc_hash::{FxBuildHasher, FxHashSet};

use crate::decode::Kind;
use crate::engine::Engine;
use crate::json::split_array;
use crate::store::{Held, Store};

type Part = (String, String);

/// Parses a Set holding the long way: each member's encoding.
pub type LongWay<'a> = &'a dyn Fn(&[u8]) -> PyResult<Vec<Vec<u8>>>;

/// What a round reads that the cache does not hold, in the script's order: the parts' metas,
/// the values asked of each part (name, identity), the messages' dedupe memories; and the parts
/// whose tallies it reads whole, as hashes read after those (for the capped states it adds to,
/// read each round: the cache holds no tally).
#[derive(Default)]
pub struct ReadPlan {
    parts: IndexSet<Part, FxBuildHasher>,
    values: IndexMap<Part, IndexSet<(String, String), FxBuildHasher>, FxBuildHasher>,
    messages: IndexSet<String, FxBuildHasher>,
    tallies: IndexSet<Part, FxBuildHasher>,
}

impl ReadPlan {
    pub fn new(
        parts: Vec<Part>,
        values: Vec<(String, String, String, String)>,
        ids: Vec<(String, String)>,
        tallies: Vec<Part>,
    ) -> ReadPlan {
        let mut plan = ReadPlan { parts: parts.into_iter().collect(), ..ReadPlan::default() };
        for (mid, pid, name, ident) in values {
            plan.values.entry((mid, pid)).or_default().insert((name, ident));
        }
        plan.messages = ids.into_iter().map(|(mid, _)| mid).collect();
        plan.tallies = tallies.into_iter().collect();
        plan
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty() && self.values.is_empty() && self.messages.is_empty() && self.tallies.is_empty()
    }

    /// The read: (the parts whose metas it reads, the parts whose value hashes it reads, the
    /// messages whose dedupe memories it reads, the script's ARGV up to its fields, the parts
    /// whose tallies it reads whole); `whole_fields`: the most fields a values hash may have to
    /// be read whole.
    #[allow(clippy::type_complexity)]
    pub fn request<'py>(
        &self,
        py: Python<'py>,
        whole_fields: usize,
    ) -> PyResult<(Vec<Part>, Vec<Part>, Vec<String>, Bound<'py, PyList>, Vec<Part>)> {
        let args = PyList::empty(py);
        for n in [self.parts.len(), self.values.len(), self.messages.len(), whole_fields] {
            args.append(n)?;
        }
        for asked in self.values.values() {
            args.append(asked.len())?;
        }
        let mut field = Vec::new();
        for asked in self.values.values() {
            for (name, ident) in asked {
                field.clear();
                field.extend_from_slice(name.as_bytes());
                field.push(0);
                field.extend_from_slice(ident.as_bytes());
                args.append(PyBytes::new(py, &field))?;
            }
        }
        let parts = self.parts.iter().cloned().collect();
        let value_parts = self.values.keys().cloned().collect();
        let messages = self.messages.iter().cloned().collect();
        let tallies = self.tallies.iter().cloned().collect();
        Ok((parts, value_parts, messages, args, tallies))
    }

    /// Take the script's reply `[metas, values, ids, whole]` into the store (as
    /// `PythonDecider.load` takes it). `long_way` parses a
    /// Set holding `split_array` refuses, as `decode_held` does.
    pub fn take(
        &self,
        store: &mut Store,
        reply: &Bound<'_, PyAny>,
        long_way: LongWay<'_>,
    ) -> PyResult<()> {
        let reply = as_list(reply)?;
        if reply.len() != 4 {
            return Err(bad("a read reply has four lists"));
        }
        let (metas, values, ids, whole) =
            (as_list(&reply.get_item(0)?)?, as_list(&reply.get_item(1)?)?, as_list(&reply.get_item(2)?)?, as_list(&reply.get_item(3)?)?);
        if metas.len() != self.parts.len() || values.len() != self.values.len() || whole.len() != self.values.len() || ids.len() != self.messages.len() {
            return Err(bad("a read reply does not answer what was asked"));
        }
        for ((mid, pid), raw) in self.parts.iter().zip(metas.iter()) {
            take_meta(store, mid, pid, &as_list(&raw)?)?;
        }
        for (((mid, pid), asked), (raw, is_whole)) in self.values.iter().zip(values.iter().zip(whole.iter())) {
            let raw = as_list(&raw)?;
            let p = part_of(store, mid, pid);
            if is_whole.extract::<i64>()? == 1 {
                let mut got = FxHashSet::default();
                for pair in 0..raw.len() / 2 {
                    let field = bytes(&raw.get_item(2 * pair)?)?;
                    let at = field.iter().position(|&b| b == 0).ok_or_else(|| bad("a value field without its NUL"))?;
                    let (name, ident) = (text(&field[..at])?, text(&field[at + 1..])?);
                    let held = held_of(store, p, name, &bytes(&raw.get_item(2 * pair + 1)?)?, long_way)?;
                    got.insert((name.to_owned(), ident.to_owned()));
                    load_value(store, p, name, ident, Some(held))?;
                }
                // Every value asked for has its answer, as in a read field by field.
                for (name, ident) in asked {
                    if !got.contains(&(name.clone(), ident.clone())) {
                        load_value(store, p, name, ident, None)?;
                    }
                }
                store.parts[p].whole = true;
            } else {
                if raw.len() != asked.len() {
                    return Err(bad("a read reply does not answer every value asked"));
                }
                for ((name, ident), value) in asked.iter().zip(raw.iter()) {
                    let held = if value.is_none() { None } else { Some(held_of(store, p, name, &bytes(&value)?, long_way)?) };
                    load_value(store, p, name, ident, held)?;
                }
            }
        }
        for (mid, raw) in self.messages.iter().zip(ids.iter()) {
            let raw = as_list(&raw)?;
            let mut taken = Vec::with_capacity(raw.len());
            for id in raw.iter() {
                taken.push(text(&bytes(&id)?)?.to_owned());
            }
            store.load_taken(mid, taken);
        }
        Ok(())
    }

    /// Take the tally hashes asked for (HGETALL's flat lists, "name\0encoding" -> count) into
    /// the engine's counts of its capped states, after `take` (which loaded their parts).
    pub fn take_tallies(&self, core: &mut Engine, tallies: &Bound<'_, PyAny>) -> PyResult<()> {
        let tallies = as_list(tallies)?;
        if tallies.len() != self.tallies.len() {
            return Err(bad("a read reply does not answer every tally asked"));
        }
        for ((mid, pid), raw) in self.tallies.iter().zip(tallies.iter()) {
            let raw = as_list(&raw)?;
            let p = part_of(&mut core.store, mid, pid);
            for pair in 0..raw.len() / 2 {
                let field = bytes(&raw.get_item(2 * pair)?)?;
                let at = field.iter().position(|&b| b == 0).ok_or_else(|| bad("a tally field without its NUL"))?;
                // The persist script drops a count at 0 or below: each one read is above 0.
                let count = text(&bytes(&raw.get_item(2 * pair + 1)?)?)?
                    .parse::<u32>()
                    .map_err(|_| bad("a tally count is not a count"))?;
                core.load_count(p, text(&field[..at])?, &field[at + 1..], count);
            }
        }
        Ok(())
    }
}

fn bad(what: &str) -> PyErr {
    PyValueError::new_err(what.to_owned())
}

fn as_list<'py>(value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
    Ok(value.cast::<PyList>().map_err(|_| bad("a read reply holds lists"))?.clone())
}

fn bytes(value: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    Ok(value.cast::<PyBytes>().map_err(|_| bad("a read reply holds bytes"))?.as_bytes().to_vec())
}

fn text(raw: &[u8]) -> PyResult<&str> {
    std::str::from_utf8(raw).map_err(|_| bad("a key's field is not UTF-8"))
}

/// A part's meta from its hash (HGETALL's flat list): "v" the version, "t:<name>" each type.
fn take_meta(store: &mut Store, mid: &str, pid: &str, raw: &Bound<'_, PyList>) -> PyResult<()> {
    let mut version = 0;
    let mut types = Vec::new();
    for pair in 0..raw.len() / 2 {
        let field = bytes(&raw.get_item(2 * pair)?)?;
        let value = bytes(&raw.get_item(2 * pair + 1)?)?;
        if field == b"v" {
            version = text(&value)?.parse().map_err(|_| bad("a part's version is not a number"))?;
        } else if let Some(name) = field.strip_prefix(b"t:") {
            types.push((text(name)?.to_owned(), text(&value)?.to_owned()));
        }
    }
    load_meta(store, mid, pid, version, types)
}

/// Load a part the cache does not hold: its version and its names' types, in the order fixed.
pub fn load_meta(store: &mut Store, mid: &str, pid: &str, version: u64, types: Vec<(String, String)>) -> PyResult<()> {
    let p = part_of(store, mid, pid);
    let mut names = Vec::with_capacity(types.len());
    for (name, kind) in types {
        let kind = Kind::parse(&kind).ok_or_else(|| PyValueError::new_err(format!("bad state type {kind}")))?;
        names.push((store.strings.intern(&name), kind));
    }
    let part = &mut store.parts[p];
    part.version = version;
    part.holdings.resize_with(names.len(), Default::default);
    part.names = names;
    Ok(())
}

/// Load what an identity holds for a state of a part (None: nothing).
pub fn load_value(store: &mut Store, p: usize, name: &str, ident: &str, held: Option<Held>) -> PyResult<()> {
    let name = store.strings.intern(name);
    let ident = store.strings.intern(ident);
    let Some(held) = held else {
        store.absent.insert((p as u32, name, ident));
        return Ok(());
    };
    let slot = store.parts[p]
        .slot(name)
        .ok_or_else(|| PyValueError::new_err("a value of a state name its part has not fixed"))?;
    store.put(p, slot, ident, held);
    store.absent.remove(&(p as u32, name, ident));
    Ok(())
}

/// A holding as stored (streams/storage/layout.py): a scalar's encoding, or a Set's JSON array.
/// Only the state's type tells them apart: a scalar may be an array too (SPEC v1.1).
fn held_of(store: &mut Store, p: usize, name: &str, raw: &[u8], long_way: LongWay<'_>) -> PyResult<Held> {
    let part = &store.parts[p];
    let kind = store.strings.get(name).and_then(|n| part.slot(n)).map(|slot| part.names[slot].1);
    if kind != Some(Kind::Set) {
        return Ok(Held::One(store.encodings.intern(raw)));
    }
    let members = match split_array(raw) {
        Some(members) => members.iter().map(|m| store.encodings.intern(m)).collect(),
        None => long_way(raw)?.iter().map(|m| store.encodings.intern(m)).collect(),
    };
    Ok(Held::Many(members))
}

pub fn part_of(store: &mut Store, mid: &str, pid: &str) -> usize {
    match store.part_index(mid, pid) {
        Some(p) => p,
        None => {
            let (mid, pid) = (store.strings.intern(mid), store.strings.intern(pid));
            store.new_part(mid, pid)
        }
    }
}
