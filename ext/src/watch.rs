//! Bindings for `hyperkube_core::watch` (filled in by the watch work).

use pyo3::prelude::*;

pub fn register(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
