//! hyperkube-core: the compiled hot paths of hyperkube, as plain Rust with no Python.
//!
//! Each module is one hot path (see DESIGN.md): `selector` (label/field selectors),
//! `validation` (names and label values, with upstream's messages), `sched` (scheduler
//! filter and score), `watch` (watch fan-out), `proxy` (iptables/nftables rule generation). The PyO3 bindings live in
//! the `hyperkube-ext` crate; nothing here knows about Python.

pub mod proxy;
pub mod sched;
pub mod selector;
pub mod validation;
pub mod watch;
