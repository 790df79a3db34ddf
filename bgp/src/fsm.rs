//! The BGP session state machine (RFC 4271 §8), sans-IO.
//!
//! [`Session::handle`] takes an [`Input`] and the current time and returns
//! [`Output`] actions for a driver to carry out (connect, send, arm a timer,
//! close). It never touches a socket or reads a clock, so every transition is
//! unit-tested by feeding inputs (see `fsm/tests.rs`).
//!
//! Simplifications against the full RFC FSM, each deliberate:
//! - The FSM tracks one TCP connection. Connection collisions (§6.8) are
//!   resolved in the driver: it runs the OPEN exchange on the second
//!   connection, compares BGP identifiers, closes the loser with Cease/7 and,
//!   if the new connection wins, tells the FSM with
//!   [`Input::ConnectionReplaced`].
//! - No DelayOpen, no DampPeerOscillations options. Instead of
//!   AllowAutomaticStart being a knob, every stop that was not a ManualStop
//!   schedules an AutomaticStart (Event 3) with exponential backoff through
//!   [`Timer::IdleHold`], so a restarted peer is re-dialled by itself.
//!
//! Graceful Restart (RFC 4724) lives here too, both roles:
//! - restarting speaker: the OPEN carries the capability (R bit while
//!   [`SessionConfig::restarting`] until the first Established), and
//!   [`Negotiated::end_of_rib_families`] tells the driver which End-of-RIB
//!   markers to send after the initial table;
//! - receiving speaker ("helper"): when a peer that negotiated GR drops the
//!   TCP connection without a NOTIFICATION, the FSM asks the driver to keep
//!   its routes marked stale ([`Output::MarkStale`]) for the peer's Restart
//!   Time, and to drop them ([`Output::PurgeStale`]) on its End-of-RIB, on
//!   [`Timer::GracefulRestart`] or [`Timer::StaleRoutes`] expiry.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::wire::{
    self, Codec, DecodeError, GracefulRestartCap, GracefulRestartFamily, Message, Notification, Open, Update,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Timer {
    ConnectRetry,
    Hold,
    Keepalive,
    /// Delay before an automatic restart after an error (backoff).
    IdleHold,
    /// RFC 4724 §4.2 helper: the peer's Restart Time, from the moment its
    /// connection was lost until it is Established again. On expiry its
    /// stale routes go.
    GracefulRestart,
    /// RFC 4724 §4.2 helper: local bound on keeping stale routes once the
    /// peer is back, in case its End-of-RIB never comes.
    StaleRoutes,
}

/// Our side of Graceful Restart (RFC 4724) for one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GracefulRestart {
    /// Restart Time we advertise: how long the peer should keep our routes
    /// after our connection drops. At most 4095 s (a 12-bit field).
    pub restart_time: Duration,
    /// F bit for every family we advertise: our data plane keeps
    /// forwarding across a restart of this process. Without it a peer
    /// drops our stale routes as soon as we are back (§4.2).
    pub forwarding_preserved: bool,
    /// Helper side: how long we keep a restarted peer's stale routes once
    /// it is Established again, waiting for its End-of-RIB.
    pub stale_routes_time: Duration,
}

impl GracefulRestart {
    /// 120 s restart time (the FRR and BIRD default), forwarding preserved,
    /// stale routes kept up to 360 s (FRR's `stalepath-time`).
    pub fn new(restart_time: Duration) -> Self {
        GracefulRestart {
            restart_time,
            forwarding_preserved: true,
            stale_routes_time: Duration::from_secs(360),
        }
    }
}

impl Default for GracefulRestart {
    fn default() -> Self {
        Self::new(Duration::from_secs(120))
    }
}

/// Why we stop a session on our own initiative: the Cease subcode (RFC 4486).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum StopReason {
    /// Cease/2: operator or shutdown. No automatic restart.
    AdminShutdown,
    /// Cease/3: the peer was removed from the configuration.
    PeerDeconfigured,
    /// Cease/6: the peer's configuration changed; the session restarts
    /// with the new one (by the driver, with a new [`Session`]).
    ConfigurationChange,
    /// Cease/1 with AFI/SAFI and the limit as data (RFC 4486 §4).
    MaxPrefixes { afi: u16, safi: u8, limit: u32 },
}

impl StopReason {
    fn notification(&self) -> Notification {
        match self {
            StopReason::AdminShutdown => Notification::cease(2),
            StopReason::PeerDeconfigured => Notification::cease(3),
            StopReason::ConfigurationChange => Notification::cease(6),
            StopReason::MaxPrefixes { afi, safi, limit } => {
                let mut data = afi.to_be_bytes().to_vec();
                data.push(*safi);
                data.extend_from_slice(&limit.to_be_bytes());
                Notification {
                    code: 6,
                    subcode: 1,
                    data,
                }
            }
        }
    }
    fn restarts(&self) -> bool {
        matches!(self, StopReason::MaxPrefixes { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Input {
    /// Event 1 ManualStart (active or passive per the config, Event 1/4).
    ManualStart,
    /// Event 2 ManualStop, with the Cease subcode to send.
    ManualStop(StopReason),
    /// Event 16 Tcp_CR_Acked: our outgoing connection is up.
    TcpConnectionAcknowledged,
    /// Event 17 TcpConnectionConfirmed: an incoming connection was accepted.
    TcpConnectionConfirmed,
    /// Event 18 TcpConnectionFails (connect refused, reset, EOF).
    TcpConnectionFails,
    /// Events 19, 25, 26, 27, 28 (and route refresh): a decoded message.
    Received(Message),
    /// Events 21, 22, 28 error variants: the bytes did not decode.
    Malformed(DecodeError),
    /// Events 9, 10, 11 and the IdleHold (automatic start, Event 3).
    Expired(Timer),
    /// Connection collision (§6.8) resolved by the driver in favour of a
    /// new connection on which it has already sent [`Session::open_message`]:
    /// continue in OpenSent on that connection, waiting for its OPEN.
    ConnectionReplaced,
}

/// What was negotiated in the OPEN exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Negotiated {
    pub peer_as: u32,
    pub peer_router_id: Ipv4Addr,
    /// 0 means no keepalives and no hold timer (RFC 4271 §4.2).
    pub hold_time: u16,
    pub keepalive: u16,
    pub four_octet_as: bool,
    pub route_refresh: bool,
    pub families: BTreeSet<(u16, u8)>,
    pub ibgp: bool,
    /// RFC 4724: the peer's Graceful Restart capability, present only when
    /// both sides advertised one (GR is negotiated).
    pub graceful_restart: Option<GracefulRestartCap>,
}

impl Negotiated {
    pub fn codec(&self) -> Codec {
        Codec {
            four_octet_as: self.four_octet_as,
            ibgp: self.ibgp,
        }
    }
    /// Families to send an End-of-RIB for after the initial table: every
    /// negotiated family. RFC 4724 §2 defines the marker for graceful
    /// restart but recommends sending it on every session, because it tells
    /// any peer that the initial table is complete; peers without GR ignore
    /// it.
    pub fn end_of_rib_families(&self) -> BTreeSet<(u16, u8)> {
        self.families.clone()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum DownReason {
    ManualStop(StopReason),
    HoldTimerExpired,
    NotificationReceived(Notification),
    /// We sent this NOTIFICATION because of an error on the peer's side.
    NotificationSent(Notification),
    ConnectionLost,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Output {
    /// Open a TCP connection to the peer (cancel any previous attempt).
    Connect,
    Send(Message),
    Arm(Timer, Duration),
    Disarm(Timer),
    /// Drop the TCP connection.
    Close,
    State {
        from: State,
        to: State,
    },
    Up(Negotiated),
    /// The session left Established.
    Down(DownReason),
    /// An UPDATE received in Established, already RFC 7606-sanitised.
    Received(Update),
    /// The peer asked us to resend our Adj-RIB-Out for a family (RFC 2918).
    RouteRefresh {
        afi: u16,
        safi: u8,
    },
    /// Forget everything received from the peer (the session went down
    /// without Graceful Restart).
    ClearReceived,
    /// RFC 4724 §4.2: the peer is restarting. Keep its routes of these
    /// families, marked stale; drop those of every other family.
    MarkStale(BTreeSet<(u16, u8)>),
    /// Drop the routes of these families that are still marked stale.
    PurgeStale(BTreeSet<(u16, u8)>),
}

/// Static per-peer configuration the FSM needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionConfig {
    pub local_as: u32,
    pub peer_as: u32,
    pub router_id: Ipv4Addr,
    /// Proposed hold time: 0 (no keepalives) or >= 3 seconds.
    pub hold_time: u16,
    /// First connect-retry / idle-hold delay; doubled per consecutive
    /// failure up to `connect_retry_max`.
    pub connect_retry: Duration,
    pub connect_retry_max: Duration,
    /// Never dial; wait for the peer to connect.
    pub passive: bool,
    pub families: Vec<(u16, u8)>,
    /// eBGP: treat routes whose AS_PATH does not start with the peer's AS as
    /// withdrawn (RFC 4271 §6.3). Turn off towards route servers, which do
    /// not prepend themselves.
    pub enforce_first_as: bool,
    /// Advertise Graceful Restart (RFC 4724); `None`: no capability, no
    /// End-of-RIB, no stale routes (the peer's routes go with the session).
    pub graceful_restart: Option<GracefulRestart>,
    /// This process restarts a previous one that had this session: set the
    /// R bit in our OPENs until the session is first Established.
    pub restarting: bool,
}

impl SessionConfig {
    pub fn new(local_as: u32, peer_as: u32, router_id: Ipv4Addr) -> Self {
        SessionConfig {
            local_as,
            peer_as,
            router_id,
            hold_time: 90,
            connect_retry: Duration::from_secs(1),
            connect_retry_max: Duration::from_secs(30),
            passive: false,
            families: vec![
                (wire::AFI_IPV4, wire::SAFI_UNICAST),
                (wire::AFI_IPV6, wire::SAFI_UNICAST),
            ],
            enforce_first_as: true,
            graceful_restart: None,
            restarting: false,
        }
    }
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.hold_time != 0 && self.hold_time < 3 {
            return Err(ConfigError::HoldTime(self.hold_time));
        }
        if self.local_as == 0 || self.peer_as == 0 {
            return Err(ConfigError::Asn);
        }
        if self.router_id.is_unspecified() || self.router_id.is_multicast() {
            return Err(ConfigError::RouterId(self.router_id));
        }
        if self.families.is_empty() {
            return Err(ConfigError::NoFamilies);
        }
        if self.connect_retry.is_zero() || self.connect_retry_max < self.connect_retry {
            return Err(ConfigError::ConnectRetry);
        }
        if let Some(gr) = &self.graceful_restart
            && gr.restart_time > Duration::from_secs(u64::from(wire::MAX_RESTART_TIME))
        {
            return Err(ConfigError::RestartTime(gr.restart_time));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("hold time {0} must be 0 or at least 3 seconds")]
    HoldTime(u16),
    #[error("AS numbers must be non-zero")]
    Asn,
    #[error("router id {0} is not a usable BGP identifier")]
    RouterId(Ipv4Addr),
    #[error("no address family configured")]
    NoFamilies,
    #[error("connect retry must be > 0 and <= its maximum")]
    ConnectRetry,
    #[error("graceful restart time {0:?} exceeds 4095 seconds")]
    RestartTime(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClearHow {
    All,
    Stale,
}

/// Large hold time used while waiting for the OPEN (RFC 4271 §8.2.2
/// suggests 4 minutes).
const OPEN_HOLD: Duration = Duration::from_secs(240);

#[derive(Debug, Clone)]
pub struct Session {
    config: SessionConfig,
    state: State,
    negotiated: Option<Negotiated>,
    /// Consecutive failures since the last Established, drives backoff.
    failures: u32,
    established_at: Option<Instant>,
    flaps: u64,
    /// R bit still to be sent: cleared once Established (RFC 4724 §3: it
    /// only tells the peer not to wait for our End-of-RIB after a restart).
    restarting: bool,
    /// Helper: the peer's capability from the session that went down, kept
    /// while its routes are stale.
    restarting_peer: Option<GracefulRestartCap>,
    /// Helper: families whose routes from the peer are held stale.
    stale: BTreeSet<(u16, u8)>,
}

impl Session {
    pub fn new(config: SessionConfig) -> Self {
        Session {
            restarting: config.restarting,
            config,
            state: State::Idle,
            negotiated: None,
            failures: 0,
            established_at: None,
            flaps: 0,
            restarting_peer: None,
            stale: BTreeSet::new(),
        }
    }
    /// Families whose received routes are currently held stale (RFC 4724
    /// helper), empty when none.
    pub fn stale_families(&self) -> &BTreeSet<(u16, u8)> {
        &self.stale
    }
    /// The Graceful Restart capability of a peer we are helping through a
    /// restart (its routes are stale), if any.
    pub fn restarting_peer(&self) -> Option<&GracefulRestartCap> {
        self.restarting_peer.as_ref()
    }
    pub fn state(&self) -> State {
        self.state
    }
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }
    /// Codec for decoding what the peer sends on the current connection.
    pub fn codec(&self) -> Codec {
        self.negotiated
            .as_ref()
            .map(Negotiated::codec)
            .unwrap_or_default()
    }
    pub fn established_at(&self) -> Option<Instant> {
        self.established_at
    }
    /// Times the session went down from Established.
    pub fn flaps(&self) -> u64 {
        self.flaps
    }
    fn ibgp(&self) -> bool {
        self.config.local_as == self.config.peer_as
    }

    /// Current backoff: connect_retry * 2^failures, capped.
    pub fn backoff(&self) -> Duration {
        let factor = 1u32 << self.failures.min(16);
        self.config
            .connect_retry
            .saturating_mul(factor)
            .min(self.config.connect_retry_max)
    }

    /// Our OPEN, for a connection the driver sets up itself (collisions).
    pub fn open_message(&self) -> Message {
        self.our_open()
    }

    fn our_open(&self) -> Message {
        let open = Open::new(
            self.config.local_as,
            self.config.hold_time,
            self.config.router_id,
            &self.config.families,
        );
        let open = match &self.config.graceful_restart {
            Some(gr) => open.with_graceful_restart(GracefulRestartCap {
                restarting: self.restarting,
                restart_time: u16::try_from(gr.restart_time.as_secs())
                    .unwrap_or(wire::MAX_RESTART_TIME)
                    .min(wire::MAX_RESTART_TIME),
                families: self
                    .config
                    .families
                    .iter()
                    .map(|&(afi, safi)| GracefulRestartFamily {
                        afi,
                        safi,
                        forwarding_preserved: gr.forwarding_preserved,
                    })
                    .collect(),
            }),
            None => open,
        };
        Message::Open(open)
    }

    fn goto(&mut self, to: State, out: &mut Vec<Output>) {
        if self.state != to {
            out.push(Output::State { from: self.state, to });
            self.state = to;
        }
    }

    /// Leave whatever we are doing and go to Idle: drop the connection,
    /// stop every timer, report Down if we were Established and schedule
    /// the automatic restart unless the operator asked for the stop.
    fn enter_idle(&mut self, reason: DownReason, restart: bool, out: &mut Vec<Output>) {
        out.push(Output::Close);
        for t in [Timer::ConnectRetry, Timer::Hold, Timer::Keepalive] {
            out.push(Output::Disarm(t));
        }
        if self.state == State::Established {
            self.flaps += 1;
            self.established_at = None;
            let helper = self.helper_families(&reason);
            out.push(Output::Down(reason));
            match helper {
                // RFC 4724 §4.2: retain the routes of the families the peer
                // listed, mark them stale, and wait its Restart Time.
                Some((gr, families)) => {
                    out.push(Output::MarkStale(families.clone()));
                    out.push(Output::Disarm(Timer::StaleRoutes));
                    out.push(Output::Arm(
                        Timer::GracefulRestart,
                        Duration::from_secs(u64::from(gr.restart_time)),
                    ));
                    self.stale = families;
                    self.restarting_peer = Some(gr);
                }
                None => self.clear_stale(ClearHow::All, out),
            }
        }
        self.negotiated = None;
        self.goto(State::Idle, out);
        if restart {
            out.push(Output::Arm(Timer::IdleHold, self.backoff()));
            self.failures = self.failures.saturating_add(1);
        } else {
            out.push(Output::Disarm(Timer::IdleHold));
        }
    }

    /// RFC 4724 §4.2: does this loss of an Established session make us the
    /// receiving speaker of a graceful restart, and for which families?
    /// Only a TCP failure counts (a NOTIFICATION, sent or received, or a
    /// hold timer expiry ends the session for good), only when both sides
    /// advertised the capability, only for families the peer listed.
    fn helper_families(&self, reason: &DownReason) -> Option<(GracefulRestartCap, BTreeSet<(u16, u8)>)> {
        if *reason != DownReason::ConnectionLost || self.config.graceful_restart.is_none() {
            return None;
        }
        let neg = self.negotiated.as_ref()?;
        let gr = neg.graceful_restart.clone()?;
        let families: BTreeSet<(u16, u8)> = gr
            .listed_families()
            .intersection(&neg.families)
            .copied()
            .collect();
        if families.is_empty() || gr.restart_time == 0 {
            return None;
        }
        Some((gr, families))
    }

    /// Leave the helper role: drop every received route (`All`, the session
    /// ended without GR) or only what is still stale (`Stale`).
    fn clear_stale(&mut self, how: ClearHow, out: &mut Vec<Output>) {
        let had = !self.stale.is_empty() || self.restarting_peer.is_some();
        match how {
            ClearHow::All => out.push(Output::ClearReceived),
            ClearHow::Stale if !self.stale.is_empty() => {
                out.push(Output::PurgeStale(std::mem::take(&mut self.stale)))
            }
            ClearHow::Stale => {}
        }
        self.stale.clear();
        self.restarting_peer = None;
        if had {
            out.push(Output::Disarm(Timer::GracefulRestart));
            out.push(Output::Disarm(Timer::StaleRoutes));
        }
    }

    /// RFC 4724 §4.2, the restarting peer is Established again: stop the
    /// restart timer, drop at once the stale routes of families it no longer
    /// preserves (F bit clear, family not listed, or no capability at all)
    /// and give the rest until its End-of-RIB, bounded by the stale timer.
    fn peer_restarted(&mut self, out: &mut Vec<Output>) {
        if self.stale.is_empty() {
            return;
        }
        out.push(Output::Disarm(Timer::GracefulRestart));
        self.restarting_peer = None;
        let preserved = self
            .negotiated
            .as_ref()
            .and_then(|n| n.graceful_restart.as_ref())
            .map(GracefulRestartCap::preserved_families)
            .unwrap_or_default();
        let gone: BTreeSet<(u16, u8)> = self.stale.difference(&preserved).copied().collect();
        if !gone.is_empty() {
            self.stale.retain(|f| !gone.contains(f));
            out.push(Output::PurgeStale(gone));
        }
        match &self.config.graceful_restart {
            Some(gr) if !self.stale.is_empty() => {
                out.push(Output::Arm(Timer::StaleRoutes, gr.stale_routes_time))
            }
            _ => self.clear_stale(ClearHow::Stale, out),
        }
    }

    /// RFC 4724 §4.2: End-of-RIB from the peer: what is still stale for
    /// that family was not re-announced, so it is gone.
    fn end_of_rib(&mut self, family: (u16, u8), out: &mut Vec<Output>) {
        if self.stale.remove(&family) {
            out.push(Output::PurgeStale([family].into_iter().collect()));
            if self.stale.is_empty() {
                out.push(Output::Disarm(Timer::StaleRoutes));
            }
        }
    }

    /// Send a NOTIFICATION for an error we detected, then go Idle.
    fn fail(&mut self, n: Notification, out: &mut Vec<Output>) {
        out.push(Output::Send(Message::Notification(n.clone())));
        self.enter_idle(DownReason::NotificationSent(n), true, out);
    }

    fn start(&mut self, out: &mut Vec<Output>) {
        out.push(Output::Disarm(Timer::IdleHold));
        out.push(Output::Arm(Timer::ConnectRetry, self.backoff()));
        if self.config.passive {
            // Event 4/5 flavour: listen only.
            self.goto(State::Active, out);
        } else {
            out.push(Output::Connect);
            self.goto(State::Connect, out);
        }
    }

    fn connected(&mut self, out: &mut Vec<Output>) {
        out.push(Output::Disarm(Timer::ConnectRetry));
        out.push(Output::Send(self.our_open()));
        out.push(Output::Arm(Timer::Hold, OPEN_HOLD));
        self.goto(State::OpenSent, out);
    }

    /// RFC 4271 §6.2 checks of the peer's OPEN against our configuration.
    fn check_open(&self, open: &Open) -> Result<Negotiated, Notification> {
        let peer_as = open.asn();
        if peer_as != self.config.peer_as {
            return Err(Notification::new(2, 2));
        }
        let id = open.router_id;
        // RFC 6286 §2.2: the identifier must be a non-zero value, and may
        // equal ours only across AS boundaries.
        if id.is_unspecified() || (self.ibgp() && id == self.config.router_id) {
            return Err(Notification::new(2, 3));
        }
        if open.hold_time == 1 || open.hold_time == 2 {
            return Err(Notification::new(2, 6));
        }
        let ours: BTreeSet<(u16, u8)> = self.config.families.iter().copied().collect();
        let families: BTreeSet<(u16, u8)> = ours.intersection(&open.families()).copied().collect();
        if families.is_empty() {
            // RFC 5492 §3: Unsupported Capability, listing what we need.
            let mut data = Vec::new();
            for (afi, safi) in &ours {
                let [a, b] = afi.to_be_bytes();
                data.extend_from_slice(&[1, 4, a, b, 0, *safi]);
            }
            return Err(Notification {
                code: 2,
                subcode: 7,
                data,
            });
        }
        let hold_time = self.config.hold_time.min(open.hold_time);
        // RFC 4724 §3: GR is in force only when both sides advertise it.
        let graceful_restart = self.config.graceful_restart.and(open.graceful_restart().cloned());
        Ok(Negotiated {
            peer_as,
            peer_router_id: id,
            hold_time,
            keepalive: hold_time / 3,
            four_octet_as: open.four_octet_as(),
            route_refresh: open.route_refresh(),
            families,
            ibgp: self.ibgp(),
            graceful_restart,
        })
    }

    fn arm_hold(&self, out: &mut Vec<Output>) {
        match &self.negotiated {
            Some(n) if n.hold_time > 0 => out.push(Output::Arm(
                Timer::Hold,
                Duration::from_secs(u64::from(n.hold_time)),
            )),
            _ => out.push(Output::Disarm(Timer::Hold)),
        }
    }

    fn arm_keepalive(&self, out: &mut Vec<Output>) {
        match &self.negotiated {
            Some(n) if n.keepalive > 0 => out.push(Output::Arm(
                Timer::Keepalive,
                Duration::from_secs(u64::from(n.keepalive)),
            )),
            _ => out.push(Output::Disarm(Timer::Keepalive)),
        }
    }

    /// Feed one event; returns the actions to perform, in order.
    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        use Input as I;
        use State as S;
        // The graceful restart timers run whatever the session state: the
        // peer may be anywhere between gone and back (RFC 4724 §4.2).
        match input {
            I::Expired(Timer::GracefulRestart) => {
                // Restart Time over and the peer is not back: its stale
                // routes go.
                self.clear_stale(ClearHow::Stale, &mut out);
                return out;
            }
            I::Expired(Timer::StaleRoutes) => {
                // Back, but no End-of-RIB in time: stop waiting for it.
                self.clear_stale(ClearHow::Stale, &mut out);
                return out;
            }
            // Stopping the session for good ends the helper role: the driver
            // replaces or drops the peer, nothing would purge them later.
            I::ManualStop(_) if !self.stale.is_empty() => self.clear_stale(ClearHow::Stale, &mut out),
            _ => {}
        }
        match (self.state, input) {
            // --- Idle ---------------------------------------------------
            // Event 1 ManualStart / Event 3 AutomaticStart (IdleHold expiry)
            (S::Idle, I::ManualStart) => {
                self.failures = 0;
                self.start(&mut out);
            }
            (S::Idle, I::Expired(Timer::IdleHold)) => self.start(&mut out),
            // Event 2 ManualStop in Idle: cancel a pending automatic start.
            (S::Idle, I::ManualStop(_)) => out.push(Output::Disarm(Timer::IdleHold)),
            // Idle refuses connections (the driver should not offer them).
            (S::Idle, I::TcpConnectionConfirmed | I::TcpConnectionAcknowledged) => out.push(Output::Close),
            // Every other event is ignored in Idle (§8.2.2).
            (S::Idle, _) => {}

            // --- ManualStart when already started: ignored (§8.2.2) ------
            (_, I::ManualStart) => {}
            // A stale IdleHold expiry outside Idle is meaningless.
            (_, I::Expired(Timer::IdleHold)) => {}

            // Collision resolved for a new connection that already carries
            // our OPEN: forget what the old one negotiated.
            (S::Connect | S::Active | S::OpenSent | S::OpenConfirm, I::ConnectionReplaced) => {
                self.negotiated = None;
                out.push(Output::Disarm(Timer::ConnectRetry));
                out.push(Output::Disarm(Timer::Keepalive));
                out.push(Output::Arm(Timer::Hold, OPEN_HOLD));
                self.goto(S::OpenSent, &mut out);
            }
            (S::Established, I::ConnectionReplaced) => {}

            // --- Event 2 ManualStop -------------------------------------
            (S::Connect | S::Active, I::ManualStop(r)) => {
                let restart = r.restarts();
                self.enter_idle(DownReason::ManualStop(r), restart, &mut out);
            }
            (_, I::ManualStop(r)) => {
                out.push(Output::Send(Message::Notification(r.notification())));
                let restart = r.restarts();
                self.enter_idle(DownReason::ManualStop(r), restart, &mut out);
            }

            // --- Connect / Active ---------------------------------------
            // Event 9 ConnectRetryTimer_Expires
            (S::Connect | S::Active, I::Expired(Timer::ConnectRetry)) => {
                self.failures = self.failures.saturating_add(1);
                out.push(Output::Arm(Timer::ConnectRetry, self.backoff()));
                if self.config.passive {
                    // Passive peers keep waiting in Active.
                } else {
                    out.push(Output::Close);
                    out.push(Output::Connect);
                    self.goto(S::Connect, &mut out);
                }
            }
            // Event 16 Tcp_CR_Acked / Event 17 TcpConnectionConfirmed
            (S::Connect | S::Active, I::TcpConnectionAcknowledged | I::TcpConnectionConfirmed) => {
                self.connected(&mut out)
            }
            // Event 18 TcpConnectionFails: wait for the retry timer in Active.
            (S::Connect | S::Active, I::TcpConnectionFails) => {
                self.failures = self.failures.saturating_add(1);
                out.push(Output::Arm(Timer::ConnectRetry, self.backoff()));
                self.goto(S::Active, &mut out);
            }
            // No connection exists, so no message can arrive: FSM error.
            (S::Connect | S::Active, I::Received(_) | I::Malformed(_)) => {
                self.enter_idle(DownReason::ConnectionLost, true, &mut out)
            }
            (S::Connect | S::Active, I::Expired(_)) => {}

            // --- Timers in OpenSent / OpenConfirm / Established ----------
            // Event 10 HoldTimer_Expires
            (S::OpenSent | S::OpenConfirm | S::Established, I::Expired(Timer::Hold)) => {
                let n = Notification::new(4, 0);
                out.push(Output::Send(Message::Notification(n)));
                self.enter_idle(DownReason::HoldTimerExpired, true, &mut out);
            }
            // Event 11 KeepaliveTimer_Expires
            (S::OpenConfirm | S::Established, I::Expired(Timer::Keepalive)) => {
                out.push(Output::Send(Message::Keepalive));
                self.arm_keepalive(&mut out);
            }
            (S::OpenSent | S::OpenConfirm | S::Established, I::Expired(_)) => {}

            // Event 18 TcpConnectionFails after the connection was up.
            (S::OpenSent, I::TcpConnectionFails) => {
                // §8.2.2 OpenSent: back to Active and retry.
                out.push(Output::Close);
                out.push(Output::Disarm(Timer::Hold));
                self.failures = self.failures.saturating_add(1);
                out.push(Output::Arm(Timer::ConnectRetry, self.backoff()));
                self.goto(S::Active, &mut out);
            }
            (S::OpenConfirm | S::Established, I::TcpConnectionFails) => {
                self.enter_idle(DownReason::ConnectionLost, true, &mut out)
            }
            // A second connection while one is up: refuse it (collisions are
            // settled by the driver, see the module docs).
            (_, I::TcpConnectionAcknowledged | I::TcpConnectionConfirmed) => {}

            // Events 21/22/28 error variants: answer with the NOTIFICATION
            // the decode error maps to.
            (_, I::Malformed(e)) => match e.notification() {
                Some(n) => self.fail(n, &mut out),
                // A malformed NOTIFICATION: just close (§6.4).
                None => self.enter_idle(DownReason::ConnectionLost, true, &mut out),
            },
            // Event 24/25 NotifMsg: the peer closes; never answer.
            (_, I::Received(Message::Notification(n))) => {
                self.enter_idle(DownReason::NotificationReceived(n), true, &mut out)
            }

            // --- OpenSent -------------------------------------------------
            // Event 19 BGPOpen
            (S::OpenSent, I::Received(Message::Open(open))) => match self.check_open(&open) {
                Ok(neg) => {
                    self.negotiated = Some(neg);
                    out.push(Output::Send(Message::Keepalive));
                    self.arm_keepalive(&mut out);
                    self.arm_hold(&mut out);
                    self.goto(S::OpenConfirm, &mut out);
                }
                Err(n) => self.fail(n, &mut out),
            },
            // Anything else before the OPEN: FSM error, "unexpected message
            // in OpenSent" (RFC 6608 subcode 1).
            (S::OpenSent, I::Received(_)) => self.fail(Notification::new(5, 1), &mut out),

            // --- OpenConfirm ----------------------------------------------
            // Event 26 KeepAliveMsg
            (S::OpenConfirm, I::Received(Message::Keepalive)) => {
                self.arm_hold(&mut out);
                self.failures = 0;
                self.established_at = Some(now);
                // RFC 4724 §3: the R bit is for the OPEN after a restart;
                // a later reconnect is not a restart of this process.
                self.restarting = false;
                self.goto(S::Established, &mut out);
                if let Some(n) = &self.negotiated {
                    out.push(Output::Up(n.clone()));
                }
                self.peer_restarted(&mut out);
            }
            // RFC 6608 subcode 2: unexpected message in OpenConfirm.
            (S::OpenConfirm, I::Received(_)) => self.fail(Notification::new(5, 2), &mut out),

            // --- Established ----------------------------------------------
            // Event 26 KeepAliveMsg: restart the hold timer.
            (S::Established, I::Received(Message::Keepalive)) => self.arm_hold(&mut out),
            // Event 27 UpdateMsg
            (S::Established, I::Received(Message::Update(mut u))) => {
                self.arm_hold(&mut out);
                if !self.ibgp() && self.config.enforce_first_as {
                    wire::check_first_as(&mut u, self.config.peer_as);
                }
                wire::check_as_loop(&mut u, self.config.local_as);
                let eor = u.end_of_rib;
                out.push(Output::Received(u));
                if let Some(family) = eor {
                    self.end_of_rib(family, &mut out);
                }
            }
            (S::Established, I::Received(Message::RouteRefresh { afi, safi })) => {
                self.arm_hold(&mut out);
                out.push(Output::RouteRefresh { afi, safi });
            }
            // Event 19 in Established: RFC 6608 subcode 3.
            (S::Established, I::Received(Message::Open(_))) => self.fail(Notification::new(5, 3), &mut out),
        }
        out
    }
}

#[cfg(test)]
mod tests;
