//! The controller: one place derives everything the node does from the
//! running configuration and one health view.
//!
//! * [`derive`]: pure functions (verdicts, announcements, routes, `lo`
//!   prefixes, L4 state, backend sets);
//! * [`machine`]: the sans-IO state machine that calls them on every input,
//!   owns drain timing and what each tier was last given, and emits ordered
//!   actions for the drivers.

pub mod derive;
pub mod machine;

pub use derive::*;
pub use machine::*;
