//! Unit tests (`cargo test`) embed the interpreter, so their binary links libpython: point its
//! rpath at the interpreter's library directory, so the tests run without LD_LIBRARY_PATH.
//! The extension module itself (built with PYO3_BUILD_EXTENSION_MODULE set, as
//! setuptools-rust does) links no libpython and gets no rpath.

fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
}
