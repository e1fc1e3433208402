//! `streams._native`: the msgstate engine compiled. Records are parsed by orjson (called
//! from here, so malformed input is judged exactly as on the Python path), then checked,
//! applied to an in-memory store and rendered as JSON lines without Python objects.

mod alloc;
mod changelog;
mod decode;
mod engine;
mod fast;
mod json;
mod redis_reads;
mod redis_writes;
mod store;
mod values;

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use decode::{Decoded, Keys, Kind, Raw, Whole, MAX_RECORD_BYTES};
use engine::{Journal, Lines};
use redis_reads::ReadPlan;
use store::Store;

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

/// The engine and its store, for replay; `streams/native_engine.py` is the typed way in.
#[pyclass(module = "msgstate.streams._native", name = "Engine")]
struct NativeCore {
    core: engine::Engine,
    keys: Keys,
    orjson: Orjson,
}

/// orjson's functions, called from here.
struct Orjson {
    loads: Py<PyAny>,
    dumps: Py<PyAny>,
    decode_error: Py<PyAny>,
    sort_keys: Py<PyAny>,
}

impl Orjson {
    fn new(orjson: &Bound<'_, PyModule>) -> PyResult<Orjson> {
        Ok(Orjson {
            loads: orjson.getattr("loads")?.unbind(),
            dumps: orjson.getattr("dumps")?.unbind(),
            decode_error: orjson.getattr("JSONDecodeError")?.unbind(),
            sort_keys: orjson.getattr("OPT_SORT_KEYS")?.unbind(),
        })
    }

    /// The record parsed, or why the whole record is refused before its fields are read
    /// (too_large, malformed: SPEC section 3, in that order).
    fn parse<'py>(&self, py: Python<'py>, value: &Bound<'py, PyAny>) -> PyResult<Result<Bound<'py, PyAny>, Whole>> {
        let raw = value
            .cast::<PyBytes>()
            .map_err(|_| PyTypeError::new_err("record values must be bytes"))?
            .as_bytes();
        if raw.len() > MAX_RECORD_BYTES {
            return Ok(Err(decode::too_large(raw.len())));
        }
        let record = match self.loads.bind(py).call1((value,)) {
            Ok(record) => record,
            Err(err) if err.is_instance(py, self.decode_error.bind(py)) => {
                let detail = format!("the record is not UTF-8 JSON: {}", err.value(py).str()?);
                return Ok(Err(decode::malformed(raw, detail)));
            }
            Err(err) => return Err(err),
        };
        // Safety: a borrowed look at a live object.
        if let Some(detail) = unsafe { decode::not_an_object(record.as_ptr()) } {
            return Ok(Err(decode::malformed(raw, detail)));
        }
        Ok(Ok(record))
    }

    /// `orjson.dumps(change, option=OPT_SORT_KEYS)`: a refused change as received.
    fn dump(&self, py: Python<'_>, change: &decode::Change) -> PyResult<Vec<u8>> {
        let raw = match change.raw {
            // Safety: the change's record is alive while its batch is applied.
            Raw::Object(object) => unsafe { Bound::from_borrowed_ptr(py, object) },
            Raw::Text(text) => self.loads.bind(py).call1((PyBytes::new(py, text),))?,
        };
        let encoded = self.dumps.bind(py).call1((raw, py.None(), self.sort_keys.bind(py)))?;
        Ok(encoded.cast::<PyBytes>()?.as_bytes().to_vec())
    }
}

fn verdicts(authentic: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Vec<bool>>> {
    authentic.map(|a| a.extract()).transpose()
}

fn verdict(verdicts: &Option<Vec<bool>>, index: usize) -> PyResult<bool> {
    match verdicts {
        Some(verdicts) => verdicts
            .get(index)
            .copied()
            .ok_or_else(|| PyValueError::new_err("authentic has fewer verdicts than values")),
        None => Ok(true),
    }
}

fn checked_window(window: i64) -> PyResult<usize> {
    if window < 1 {
        return Err(PyValueError::new_err("the dedupe window must hold at least one id"));
    }
    Ok(window as usize)
}

fn checked_registry(registry: &Bound<'_, PyDict>) -> PyResult<Vec<(String, Kind)>> {
    let mut types = Vec::new();
    for (name, kind) in registry.iter() {
        let kind: String = kind.extract()?;
        let kind = Kind::parse(&kind).ok_or_else(|| PyValueError::new_err(format!("bad state type {kind}")))?;
        types.push((name.extract::<String>()?, kind));
    }
    Ok(types)
}

fn checked_caps(caps: &Bound<'_, PyDict>) -> PyResult<Vec<(String, usize)>> {
    let mut checked = Vec::new();
    for (name, cap) in caps.iter() {
        let cap: usize = cap.extract()?;
        if cap == 0 {
            return Err(PyValueError::new_err("max_values must be at least 1"));
        }
        checked.push((name.extract::<String>()?, cap));
    }
    Ok(checked)
}

#[pymethods]
impl NativeCore {
    /// `registry`: name -> type, already checked; `caps`: name -> `max_values`, for the capped
    /// states; `orjson`: the orjson module.
    #[new]
    fn new(
        py: Python<'_>,
        registry: &Bound<'_, PyDict>,
        caps: &Bound<'_, PyDict>,
        window: i64,
        events: bool,
        orjson: &Bound<'_, PyModule>,
    ) -> PyResult<NativeCore> {
        let window = checked_window(window)?;
        Ok(NativeCore {
            core: engine::Engine::new(&checked_registry(registry)?, &checked_caps(caps)?, window, events),
            keys: Keys::new(py),
            orjson: Orjson::new(orjson)?,
        })
    }

    /// Apply a batch of record values; (event lines, rejection lines), in the order they arise.
    #[pyo3(signature = (values, authentic=None))]
    fn feed<'py>(
        &mut self,
        py: Python<'py>,
        values: &Bound<'py, PyAny>,
        authentic: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
        let verdicts = verdicts(authentic)?;
        let orjson = &self.orjson;
        let mut out = Lines { events: Vec::new(), rejections: Vec::new() };
        let mut dump = |change: &decode::Change| orjson.dump(py, change);
        for (index, value) in values.try_iter()?.enumerate() {
            let authentic = verdict(&verdicts, index)?;
            let value = value?;
            if let Some(response) = fast_read(&value, authentic) {
                self.core.apply(&response, index, &mut dump, &mut out)?;
                continue;
            }
            let record = match orjson.parse(py, &value)? {
                Ok(record) => record,
                Err(whole) => {
                    self.core.reject_whole(&whole, &mut out);
                    continue;
                }
            };
            // Safety: `record` outlives everything decoded from it (this iteration).
            match unsafe { decode::decode(&self.keys, record.as_ptr(), authentic) } {
                Decoded::Rejected(whole) => self.core.reject_whole(&whole, &mut out),
                Decoded::Response(response) => self.core.apply(&response, index, &mut dump, &mut out)?,
                Decoded::Removal(removal) => self.core.remove(&removal, &mut out),
            }
        }
        self.core.store.end_batch();
        let events = PyList::new(py, out.events.iter().map(|line| PyBytes::new(py, line)))?;
        let rejections = PyList::new(py, out.rejections.iter().map(|line| PyBytes::new(py, line)))?;
        Ok((events, rejections))
    }

    /// Every summary of a part with a fixed name, as JSON lines sorted by (message, part).
    #[pyo3(signature = (clip=None))]
    fn summary_lines<'py>(&self, py: Python<'py>, clip: Option<usize>) -> PyResult<Bound<'py, PyList>> {
        summary_lines(py, &self.core.store, clip)
    }

    /// One part's summary as a JSON line (version 0 and no states when nobody wrote it).
    #[pyo3(signature = (message_id, part_id, clip=None))]
    fn summary_line<'py>(
        &self,
        py: Python<'py>,
        message_id: &str,
        part_id: &str,
        clip: Option<usize>,
    ) -> Bound<'py, PyBytes> {
        summary_line(py, &self.core.store, message_id, part_id, clip)
    }

    fn live_values(&self) -> usize {
        self.core.store.live_values()
    }

    fn forget_response_ids(&mut self) {
        self.core.store.forget_response_ids();
    }

    /// (state bytes, dedupe memory bytes), counted from this engine's tables.
    fn memory_bytes(&self) -> (usize, usize) {
        (self.core.store.state_bytes(), self.core.store.dedupe_bytes())
    }
}

fn summary_lines<'py>(py: Python<'py>, store: &Store, clip: Option<usize>) -> PyResult<Bound<'py, PyList>> {
    let lines = store.summary_lines(clip);
    PyList::new(py, lines.iter().map(|line| PyBytes::new(py, line)))
}

fn summary_line<'py>(py: Python<'py>, store: &Store, mid: &str, pid: &str, clip: Option<usize>) -> Bound<'py, PyBytes> {
    let part = store.part_index(mid, pid).map(|i| &store.parts[i]);
    let mut out = Vec::new();
    store.render(&mut out, mid, pid, part, clip);
    PyBytes::new(py, &out)
}

/// A record of a decided batch, kept between `decide` and `apply`.
enum Pending {
    Refused(Whole),
    Parsed(Py<PyAny>, bool),
    /// A record `fast::decode` reads (authentic, valid, plain JSON): read again when applied.
    Plain(Py<PyBytes>),
}

/// `fast::decode` of an authentic record value that is bytes within the size limit.
fn fast_read<'a>(value: &'a Bound<'_, PyAny>, authentic: bool) -> Option<decode::Response<'a>> {
    let bytes = value.cast::<PyBytes>().ok()?.as_bytes();
    if !authentic || bytes.len() > MAX_RECORD_BYTES {
        return None;
    }
    fast::decode(bytes)
}

/// The engine over a cache of the state in Redis, for the workers: decide a batch, say what
/// it needs, take that in, apply (writes recorded as a delta), commit once Redis holds them.
#[pyclass(module = "msgstate.streams._native", name = "Cache")]
struct NativeCache {
    core: engine::Engine,
    keys: Keys,
    orjson: Orjson,
    batch: Vec<Pending>,
    /// Applied and not yet committed: the store holds writes Redis may not have.
    applied: bool,
    /// The writes of the applied batch, until it is committed or cleared.
    last: Option<Journal>,
    registry: Vec<(String, Kind)>,
    caps: Vec<(String, usize)>,
    window: usize,
    /// What the decided batch reads, once `decide` asked for it.
    plan: Option<ReadPlan>,
}

/// (parts, values, dedupe memories, parts whose capped tallies the batch adds to)
type Needs = (Vec<(String, String)>, Vec<(String, String, String, String)>, Vec<(String, String)>, Vec<(String, String)>);
/// The read's parts, value parts, messages and the read script's ARGV (`streams.storage.protocol.Read`),
/// and the parts whose tally hashes it reads whole.
type ReadRequest<'py> =
    (Vec<(String, String)>, Vec<(String, String)>, Vec<String>, Bound<'py, PyList>, Vec<(String, String)>);
/// (events as (key, value), rejections as (index of the record, line))
type Outcome<'py> = (Vec<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)>, Vec<(usize, Bound<'py, PyBytes>)>);

#[pymethods]
impl NativeCache {
    /// `registry`: name -> type, already checked; `caps`: name -> `max_values`, for the capped
    /// states; `orjson`: the orjson module.
    #[new]
    fn new(
        py: Python<'_>,
        registry: &Bound<'_, PyDict>,
        caps: &Bound<'_, PyDict>,
        window: i64,
        orjson: &Bound<'_, PyModule>,
    ) -> PyResult<NativeCache> {
        let window = checked_window(window)?;
        let registry = checked_registry(registry)?;
        let caps = checked_caps(caps)?;
        Ok(NativeCache {
            core: cache_engine(&registry, &caps, window),
            keys: Keys::new(py),
            orjson: Orjson::new(orjson)?,
            batch: Vec::new(),
            applied: false,
            last: None,
            registry,
            caps,
            window,
            plan: None,
        })
    }

    /// Take a batch of record values (and their signature verdicts); what it reads that the
    /// cache does not hold, as the store's read (streams/lua/read_state.lua), or None when it
    /// reads nothing; `load` takes the reply. `whole_fields`: the most fields a values hash may
    /// have to be read whole. The tallies of the capped states the batch adds to are read for
    /// each batch, and held for it only.
    #[pyo3(signature = (values, authentic, whole_fields))]
    fn decide<'py>(
        &mut self,
        py: Python<'py>,
        values: &Bound<'py, PyAny>,
        authentic: Option<&Bound<'py, PyAny>>,
        whole_fields: usize,
    ) -> PyResult<Option<ReadRequest<'py>>> {
        self.plan = None;
        let (parts, values, ids, tallies) = self.needs(py, values, authentic)?;
        let plan = ReadPlan::new(parts, values, ids, tallies);
        if plan.is_empty() {
            return Ok(None);
        }
        let request = plan.request(py, whole_fields)?;
        self.plan = Some(plan);
        Ok(Some(request))
    }

    /// Take in the read script's reply to what `decide` asked: its four lists, and the tally
    /// hashes asked for (HGETALL's flat lists, in the order asked).
    fn load(&mut self, py: Python<'_>, reply: &Bound<'_, PyAny>, tallies: &Bound<'_, PyAny>) -> PyResult<()> {
        let plan = self.plan.take().ok_or_else(|| PyRuntimeError::new_err("no read was asked for"))?;
        let orjson = &self.orjson;
        // `decode_held`: each member of the parsed array written again by orjson.
        let long_way = |raw: &[u8]| -> PyResult<Vec<Vec<u8>>> {
            let members = orjson.loads.bind(py).call1((PyBytes::new(py, raw),))?;
            let mut out = Vec::new();
            for member in members.try_iter()? {
                let encoded = orjson.dumps.bind(py).call1((member?,))?;
                out.push(encoded.cast::<PyBytes>()?.as_bytes().to_vec());
            }
            Ok(out)
        };
        plan.take(&mut self.core.store, reply, &long_way)?;
        plan.take_tallies(&mut self.core, tallies)
    }

    /// Apply the decided batch to the cache; returns (events as (key: the message id, value),
    /// rejections as (index of the record in the batch, line)), in the order they arise; the
    /// writes are asked of `writes`. `commit` or `clear` must follow.
    fn apply<'py>(&mut self, py: Python<'py>) -> PyResult<Outcome<'py>> {
        if self.applied {
            return Err(PyRuntimeError::new_err("commit() or clear() the applied batch first"));
        }
        self.applied = true;
        self.core.journal = Some(Journal::default());
        let orjson = &self.orjson;
        let mut out = Lines { events: Vec::new(), rejections: Vec::new() };
        let mut event_keys: Vec<Vec<u8>> = Vec::new();
        let mut rejected_at: Vec<usize> = Vec::new();
        let mut dump = |change: &decode::Change| orjson.dump(py, change);
        for (index, pending) in self.batch.iter().enumerate() {
            match pending {
                Pending::Refused(whole) => self.core.reject_whole(whole, &mut out),
                Pending::Plain(bytes) => {
                    let r = fast::decode(bytes.as_bytes(py))
                        .ok_or_else(|| PyRuntimeError::new_err("a plain record no longer reads"))?;
                    self.core.apply(&r, index, &mut dump, &mut out)?;
                    event_keys.resize(out.events.len(), r.mid.as_bytes().to_vec());
                }
                Pending::Parsed(record, authentic) => {
                    // Safety: the batch holds `record` while it is applied.
                    match unsafe { decode::decode(&self.keys, record.as_ptr(), *authentic) } {
                        Decoded::Rejected(whole) => self.core.reject_whole(&whole, &mut out),
                        Decoded::Removal(_) => return Err(no_removals()),
                        Decoded::Response(r) => {
                            self.core.apply(&r, index, &mut dump, &mut out)?;
                            event_keys.resize(out.events.len(), r.mid.as_bytes().to_vec());
                        }
                    }
                }
            }
            rejected_at.resize(out.rejections.len(), index);
        }
        self.batch.clear();
        self.last = Some(self.core.journal.take().unwrap_or_default());
        // An event line ends with its newline: the record's value is the line without it.
        let events = out
            .events
            .iter()
            .zip(&event_keys)
            .map(|(line, key)| (PyBytes::new(py, key), PyBytes::new(py, &line[..line.len() - 1])))
            .collect();
        let rejections = out.rejections.iter().zip(&rejected_at).map(|(line, &at)| (at, PyBytes::new(py, line))).collect();
        Ok((events, rejections))
    }

    /// The applied batch's writes as the persist script takes them (streams/lua/apply_round.lua):
    /// the state keys as (kind, message id, part id) references, which the store's key layout
    /// names, and the JSON array of groups of four, key indexes counted from 1.
    #[allow(clippy::type_complexity)]
    fn writes<'py>(&self, py: Python<'py>) -> PyResult<(Vec<(&'static str, String, String)>, Bound<'py, PyBytes>)> {
        let journal = self.last.as_ref().ok_or_else(|| PyRuntimeError::new_err("no applied batch"))?;
        let (keys, ops) = redis_writes::writes(&self.core.store, journal, self.window);
        Ok((keys, PyBytes::new(py, &ops)))
    }

    /// The applied batch's state changelog records (streams/rounds/changelog.py): (round
    /// partition -> the records as outbox frames, changelog partition -> [(key, value; None for
    /// a tombstone)]). `find` says a message's partition; `last`: (round partition, its last
    /// offset), in the round's order.
    fn changelog<'py>(
        &self,
        py: Python<'py>,
        find: &Bound<'py, PyAny>,
        last: Vec<(i64, i64)>,
    ) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyDict>)> {
        let journal = self.last.as_ref().ok_or_else(|| PyRuntimeError::new_err("no applied batch"))?;
        let log = changelog::records(&self.core.store, journal, |mid| find.call1((mid,))?.extract::<i64>(), &last)?;
        let frames = PyDict::new(py);
        for (p, bytes) in &log.frames {
            frames.set_item(p, PyBytes::new(py, bytes))?;
        }
        let records = PyDict::new(py);
        for (p, logged) in &log.records {
            let pairs = logged.iter().map(|(key, value)| {
                (PyBytes::new(py, key), value.as_ref().map(|value| PyBytes::new(py, value)))
            });
            records.set_item(p, PyList::new(py, pairs)?)?;
        }
        Ok((frames, records))
    }

    /// Redis holds the applied batch: the cache keeps it (its dedupe memories trimmed as
    /// Redis trims them).
    fn commit(&mut self) -> PyResult<()> {
        if !self.applied {
            return Err(PyRuntimeError::new_err("no applied batch to commit"));
        }
        self.core.store.end_batch_exact();
        self.applied = false;
        self.last = None;
        Ok(())
    }

    /// Drop everything held (the next batch loads from Redis again), the decided batch too.
    fn clear(&mut self) {
        self.core = cache_engine(&self.registry, &self.caps, self.window);
        self.batch.clear();
        self.applied = false;
        self.last = None;
        self.plan = None;
    }

    /// Held entries, known-absent values and remembered ids (to bound the cache).
    fn entries(&self) -> usize {
        self.core.store.entries()
    }

    #[pyo3(signature = (message_id, part_id, clip=None))]
    fn summary_line<'py>(
        &self,
        py: Python<'py>,
        message_id: &str,
        part_id: &str,
        clip: Option<usize>,
    ) -> Bound<'py, PyBytes> {
        summary_line(py, &self.core.store, message_id, part_id, clip)
    }
}

impl NativeCache {
    /// Decode a batch; what it reads that the cache does not hold (may repeat a key).
    fn needs(&mut self, py: Python<'_>, values: &Bound<'_, PyAny>, authentic: Option<&Bound<'_, PyAny>>) -> PyResult<Needs> {
        if self.applied {
            return Err(PyRuntimeError::new_err("commit() or clear() the applied batch first"));
        }
        let verdicts = verdicts(authentic)?;
        self.batch.clear();
        self.core.forget_counts(); // the last batch's tallies
        let core = &self.core;
        let store = &core.store;
        let mut parts = Vec::new();
        let mut needed_values = Vec::new();
        let mut ids = Vec::new();
        let mut tallies = Vec::new();
        for (index, value) in values.try_iter()?.enumerate() {
            let authentic = verdict(&verdicts, index)?;
            let value = value?;
            let plain = fast_read(&value, authentic);
            let record = match plain {
                Some(_) => None,
                None => match self.orjson.parse(py, &value)? {
                    Ok(record) => Some(record),
                    Err(whole) => {
                        self.batch.push(Pending::Refused(whole));
                        continue;
                    }
                },
            };
            let decoded = plain.or_else(|| {
                // Safety: `record` outlives the decoded response (this iteration).
                match unsafe { decode::decode(&self.keys, record.as_ref()?.as_ptr(), authentic) } {
                    Decoded::Response(r) => Some(r),
                    Decoded::Removal(_) => None,
                    Decoded::Rejected(_) => None,
                }
            });
            if let Some(r) = decoded {
                let part = store.part_index(r.mid, r.pid);
                if part.is_none() {
                    parts.push((r.mid.to_owned(), r.pid.to_owned()));
                }
                if !store.knows_message(r.mid) {
                    ids.push((r.mid.to_owned(), r.rid.to_owned()));
                }
                for change in r.changes.iter().filter(|c| c.error.is_none()) {
                    if !part.is_some_and(|p| store.knows_value(p, change.name, r.ident)) {
                        needed_values.push((r.mid.to_owned(), r.pid.to_owned(), change.name.to_owned(), r.ident.to_owned()));
                    }
                    if change.is_add && core.capped(change.name) {
                        tallies.push((r.mid.to_owned(), r.pid.to_owned()));
                    }
                }
            }
            self.batch.push(match record {
                Some(record) => Pending::Parsed(record.unbind(), authentic),
                None => Pending::Plain(value.cast_into::<PyBytes>()?.unbind()),
            });
        }
        Ok((parts, needed_values, ids, tallies))
    }
}

/// The workers' cache reads no message whole nor any identity's holdings.
fn no_removals() -> PyErr {
    PyRuntimeError::new_err(
        "the compiled workers do not apply delete_message and erase_identity records yet; use MSGSTATE_ENGINE=python",
    )
}

/// An engine whose store keeps tallies (the cache's writes carry them), with events.
fn cache_engine(registry: &[(String, Kind)], caps: &[(String, usize)], window: usize) -> engine::Engine {
    let mut core = engine::Engine::new(registry, caps, window, true);
    core.tallies = true;
    core
}

/// Whether a record value takes the plain path (`fast::decode`): read straight from its bytes.
#[pyfunction]
fn is_plain(record: &[u8]) -> bool {
    record.len() <= MAX_RECORD_BYTES && fast::decode(record).is_some()
}

/// Bytes held by Rust allocations of this module (every engine together).
#[pyfunction]
fn heap_bytes() -> isize {
    alloc::held_bytes()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeCore>()?;
    m.add_class::<NativeCache>()?;
    m.add_function(wrap_pyfunction!(heap_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(is_plain, m)?)?;
    Ok(())
}
