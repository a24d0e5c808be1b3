//! The `sched` hot path (see DESIGN.md). Filled in by the sched work.
