//! The local admin API: `/healthz`, `/status` (JSON: the plan the node
//! applied last), `/metrics` (Prometheus text format), the BGP and DNS
//! views, and the operator verbs (`/intent`, `/reload`).
//!
//! * `server`: the hyper server and the routing of requests;
//! * `state`: what the API reports and the handles it acts through;
//! * `metrics`: the API's own series (the tiers register theirs).
//!
//! The command-line client of this API lives in the binary.

mod metrics;
mod server;
mod state;

pub use server::serve;
pub use state::{NodeState, ReloadReply, ReloadRequest, Verb};
