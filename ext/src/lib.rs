//! hyperkube-ext: the PyO3 bindings that build `hyperkube._native`.
//!
//! The only crate that uses PyO3. Each submodule binds one core module and crosses the
//! boundary in bulk (lists, numpy arrays, byte buffers), never per item.

use pyo3::prelude::*;

mod proxy;
mod sched;
mod selector;
mod watch;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    selector::register(m)?;
    sched::register(m)?;
    watch::register(m)?;
    proxy::register(m)?;
    Ok(())
}
