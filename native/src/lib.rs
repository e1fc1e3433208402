//! `streams._native`: the msgstate engine compiled. Records are parsed by orjson (called
//! from here, so malformed input is judged exactly as on the Python path), then checked,
//! applied to an in-memory store and rendered as JSON lines without Python objects.

mod alloc;
mod decode;
mod engine;
mod json;
mod store;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use decode::{Decoded, Keys, Kind, MAX_RECORD_BYTES};
use engine::Lines;

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

/// The engine and its store; `streams/native_engine.py` is the typed way in.
#[pyclass(module = "streams._native", name = "Engine")]
struct NativeCore {
    core: engine::Engine,
    keys: Keys,
    loads: Py<PyAny>,
    dumps: Py<PyAny>,
    decode_error: Py<PyAny>,
    sort_keys: Py<PyAny>,
}

#[pymethods]
impl NativeCore {
    /// `registry`: name -> type, already checked; `orjson`: the orjson module.
    #[new]
    fn new(
        py: Python<'_>,
        registry: &Bound<'_, PyDict>,
        window: usize,
        events: bool,
        orjson: &Bound<'_, PyModule>,
    ) -> PyResult<NativeCore> {
        if window < 1 {
            return Err(PyValueError::new_err("the dedupe window must hold at least one id"));
        }
        let mut types = Vec::new();
        for (name, kind) in registry.iter() {
            let kind: String = kind.extract()?;
            let kind = Kind::parse(&kind).ok_or_else(|| PyValueError::new_err(format!("bad state type {kind}")))?;
            types.push((name.extract::<String>()?, kind));
        }
        Ok(NativeCore {
            core: engine::Engine::new(&types, window, events),
            keys: Keys::new(py),
            loads: orjson.getattr("loads")?.unbind(),
            dumps: orjson.getattr("dumps")?.unbind(),
            decode_error: orjson.getattr("JSONDecodeError")?.unbind(),
            sort_keys: orjson.getattr("OPT_SORT_KEYS")?.unbind(),
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
        let verdicts: Option<Vec<bool>> = authentic.map(|a| a.extract()).transpose()?;
        let loads = self.loads.bind(py);
        let dumps = self.dumps.bind(py);
        let decode_error = self.decode_error.bind(py);
        let sort_keys = self.sort_keys.bind(py);
        let mut out = Lines { events: Vec::new(), rejections: Vec::new() };
        let mut dump = |change: &decode::Change| -> PyResult<Vec<u8>> {
            // Safety: the change's record is alive while the batch loop holds it.
            let raw = unsafe { Bound::from_borrowed_ptr(py, change.raw) };
            let encoded = dumps.call1((raw, py.None(), sort_keys))?;
            Ok(encoded.cast::<PyBytes>()?.as_bytes().to_vec())
        };
        for (index, value) in values.try_iter()?.enumerate() {
            let value = value?;
            let raw = value
                .cast::<PyBytes>()
                .map_err(|_| PyTypeError::new_err("record values must be bytes"))?
                .as_bytes();
            let authentic = match &verdicts {
                Some(verdicts) => *verdicts
                    .get(index)
                    .ok_or_else(|| PyValueError::new_err("authentic has fewer verdicts than values"))?,
                None => true,
            };
            if raw.len() > MAX_RECORD_BYTES {
                self.core.reject_whole(&decode::too_large(raw.len()), &mut out);
                continue;
            }
            let record = match loads.call1((&value,)) {
                Ok(record) => record,
                Err(err) if err.is_instance(py, decode_error) => {
                    let detail = format!("the record is not UTF-8 JSON: {}", err.value(py).str()?);
                    self.core.reject_whole(&decode::malformed(raw, detail), &mut out);
                    continue;
                }
                Err(err) => return Err(err),
            };
            // Safety: `record` outlives everything decoded from it (this iteration).
            unsafe {
                if let Some(detail) = decode::not_an_object(record.as_ptr()) {
                    self.core.reject_whole(&decode::malformed(raw, detail), &mut out);
                    continue;
                }
                match decode::decode(&self.keys, record.as_ptr(), authentic) {
                    Decoded::Rejected(whole) => self.core.reject_whole(&whole, &mut out),
                    Decoded::Response(response) => self.core.apply(&response, &mut dump, &mut out)?,
                }
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
        let lines = self.core.store.summary_lines(clip);
        PyList::new(py, lines.iter().map(|line| PyBytes::new(py, line)))
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
        let store = &self.core.store;
        let part = store.part_index(message_id, part_id).map(|i| &store.parts[i]);
        let mut out = Vec::new();
        store.render(&mut out, message_id, part_id, part, clip);
        PyBytes::new(py, &out)
    }

    fn live_values(&self) -> usize {
        self.core.store.live_values()
    }

    fn forget_response_ids(&mut self) {
        self.core.store.forget_response_ids();
    }
}

/// Bytes held by Rust allocations of this module (every engine together).
#[pyfunction]
fn heap_bytes() -> isize {
    alloc::held_bytes()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeCore>()?;
    m.add_function(wrap_pyfunction!(heap_bytes, m)?)?;
    Ok(())
}
