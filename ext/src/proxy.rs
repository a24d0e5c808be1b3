//! Bindings for `hyperkube_core::proxy` (filled in by the proxy work).

use pyo3::prelude::*;

pub fn register(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
