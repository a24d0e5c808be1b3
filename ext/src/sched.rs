//! Bindings for `hyperkube_core::sched` (filled in by the sched work).

use pyo3::prelude::*;

pub fn register(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
