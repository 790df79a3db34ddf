//! The admin API's own Prometheus series (node, VIP, backend, BGP, bus).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use edge_bgp::{SessionInfo, State as BgpState};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct NodeLabels {
    pub(super) node: String,
    pub(super) site: String,
    pub(super) version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct VipLabels {
    pub(super) vip: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PeerLabels {
    peer: String,
}

/// Per-peer BGP series, refreshed from the speaker at every scrape.
#[derive(Default)]
pub(super) struct BgpMetrics {
    established: Family<PeerLabels, Gauge>,
    state: Family<PeerLabels, Gauge>,
    uptime: Family<PeerLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    prefixes_sent: Family<PeerLabels, Gauge>,
    prefixes_received: Family<PeerLabels, Gauge>,
    updates_in: Family<PeerLabels, Gauge>,
    updates_out: Family<PeerLabels, Gauge>,
    flaps: Family<PeerLabels, Gauge>,
}

impl BgpMetrics {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "bgp_session_established",
            "1 while the BGP session is Established",
            self.established.clone(),
        );
        r.register(
            "bgp_session_state",
            "RFC 4271 state: 1 Idle, 2 Connect, 3 Active, 4 OpenSent, 5 OpenConfirm, 6 Established",
            self.state.clone(),
        );
        r.register(
            "bgp_session_uptime_seconds",
            "Seconds the session has been Established",
            self.uptime.clone(),
        );
        r.register(
            "bgp_prefixes_sent",
            "Prefixes in the peer's Adj-RIB-Out",
            self.prefixes_sent.clone(),
        );
        r.register(
            "bgp_prefixes_received",
            "Prefixes in the peer's Adj-RIB-In",
            self.prefixes_received.clone(),
        );
        r.register(
            "bgp_updates_received",
            "UPDATE messages received since start",
            self.updates_in.clone(),
        );
        r.register(
            "bgp_updates_sent",
            "UPDATE messages sent since start",
            self.updates_out.clone(),
        );
        r.register(
            "bgp_session_flaps",
            "Times the session left Established since start",
            self.flaps.clone(),
        );
    }

    pub(super) fn refresh(&self, sessions: &[SessionInfo]) {
        for s in sessions {
            let l = PeerLabels {
                peer: s.peer.to_string(),
            };
            let state = match s.state {
                BgpState::Idle => 1,
                BgpState::Connect => 2,
                BgpState::Active => 3,
                BgpState::OpenSent => 4,
                BgpState::OpenConfirm => 5,
                BgpState::Established => 6,
            };
            self.state.get_or_create(&l).set(state);
            self.established
                .get_or_create(&l)
                .set(i64::from(s.state == BgpState::Established));
            self.uptime
                .get_or_create(&l)
                .set(s.uptime.map(|u| u.as_secs_f64()).unwrap_or(0.0));
            self.prefixes_sent.get_or_create(&l).set(s.prefixes_sent as i64);
            self.prefixes_received
                .get_or_create(&l)
                .set(s.prefixes_received as i64);
            self.updates_in.get_or_create(&l).set(s.updates_in as i64);
            self.updates_out.get_or_create(&l).set(s.updates_out as i64);
            self.flaps.get_or_create(&l).set(s.flaps as i64);
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct BackendLabels {
    pub(super) backend: String,
}
