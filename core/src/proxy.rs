//! The `proxy` hot path (see DESIGN.md). Filled in by the proxy work.
