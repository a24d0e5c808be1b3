//! The `watch` hot path (see DESIGN.md). Filled in by the watch work.
