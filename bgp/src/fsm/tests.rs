//! One test per transition of the session FSM.

use super::*;
use crate::wire::{AsSegment, Capability, PathAttributes};

const US: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const PEER_ID: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

fn cfg(local: u32, peer: u32) -> SessionConfig {
    let mut c = SessionConfig::new(local, peer, US);
    c.hold_time = 9;
    c
}

fn now() -> Instant {
    // Any fixed instant: the FSM only stores it.
    Instant::now()
}

fn peer_open(asn: u32, hold: u16, id: Ipv4Addr) -> Message {
    Message::Open(Open::new(asn, hold, id, &[(1, 1), (2, 1)]))
}

fn sends(out: &[Output]) -> Vec<Message> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

fn sent_notification(out: &[Output]) -> Option<(u8, u8)> {
    sends(out).into_iter().find_map(|m| match m {
        Message::Notification(n) => Some((n.code, n.subcode)),
        _ => None,
    })
}

fn armed(out: &[Output], t: Timer) -> Option<Duration> {
    out.iter().rev().find_map(|o| match o {
        Output::Arm(x, d) if *x == t => Some(*d),
        _ => None,
    })
}

/// Drive a fresh session to the given state through the normal path.
fn at(state: State, c: SessionConfig) -> Session {
    let mut s = Session::new(c);
    let t = now();
    s.handle(t, Input::ManualStart);
    if state == State::Connect {
        return s;
    }
    s.handle(t, Input::TcpConnectionAcknowledged);
    if state == State::OpenSent {
        return s;
    }
    let peer = s.config().peer_as;
    s.handle(t, Input::Received(peer_open(peer, 90, PEER_ID)));
    if state == State::OpenConfirm {
        return s;
    }
    s.handle(t, Input::Received(Message::Keepalive));
    assert_eq!(s.state(), State::Established);
    s
}

#[test]
fn idle_manual_start_active_dials_and_goes_connect() {
    let mut s = Session::new(cfg(65001, 65002));
    let out = s.handle(now(), Input::ManualStart);
    assert!(out.contains(&Output::Connect));
    assert_eq!(armed(&out, Timer::ConnectRetry), Some(Duration::from_secs(1)));
    assert!(out.contains(&Output::State {
        from: State::Idle,
        to: State::Connect
    }));
    assert_eq!(s.state(), State::Connect);
}

#[test]
fn idle_manual_start_passive_goes_active_without_dialing() {
    let mut c = cfg(65001, 65002);
    c.passive = true;
    let mut s = Session::new(c);
    let out = s.handle(now(), Input::ManualStart);
    assert!(!out.contains(&Output::Connect));
    assert_eq!(s.state(), State::Active);
}

#[test]
fn idle_ignores_messages_and_refuses_connections() {
    let mut s = Session::new(cfg(65001, 65002));
    assert!(s.handle(now(), Input::Received(Message::Keepalive)).is_empty());
    assert!(s.handle(now(), Input::Expired(Timer::Hold)).is_empty());
    assert_eq!(
        s.handle(now(), Input::TcpConnectionConfirmed),
        vec![Output::Close]
    );
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn connect_tcp_acknowledged_sends_open_and_goes_opensent() {
    let mut s = at(State::Connect, cfg(65001, 65002));
    let out = s.handle(now(), Input::TcpConnectionAcknowledged);
    assert!(out.contains(&Output::Disarm(Timer::ConnectRetry)));
    let Some(Message::Open(o)) = sends(&out).into_iter().next() else {
        panic!("no OPEN in {out:?}")
    };
    assert_eq!((o.asn(), o.hold_time, o.router_id), (65001, 9, US));
    assert_eq!(armed(&out, Timer::Hold), Some(Duration::from_secs(240)));
    assert_eq!(s.state(), State::OpenSent);
}

#[test]
fn active_tcp_confirmed_sends_open() {
    let mut c = cfg(65001, 65002);
    c.passive = true;
    let mut s = Session::new(c);
    s.handle(now(), Input::ManualStart);
    let out = s.handle(now(), Input::TcpConnectionConfirmed);
    assert!(matches!(sends(&out).first(), Some(Message::Open(_))));
    assert_eq!(s.state(), State::OpenSent);
}

#[test]
fn connect_failure_goes_active_and_backs_off_exponentially_with_cap() {
    let mut c = cfg(65001, 65002);
    c.connect_retry_max = Duration::from_secs(5);
    let mut s = Session::new(c);
    s.handle(now(), Input::ManualStart);
    let out = s.handle(now(), Input::TcpConnectionFails);
    assert_eq!(s.state(), State::Active);
    assert_eq!(armed(&out, Timer::ConnectRetry), Some(Duration::from_secs(2)));
    // Retry timer: dial again, in Connect, with a longer wait.
    let out = s.handle(now(), Input::Expired(Timer::ConnectRetry));
    assert!(out.contains(&Output::Connect));
    assert_eq!(s.state(), State::Connect);
    assert_eq!(armed(&out, Timer::ConnectRetry), Some(Duration::from_secs(4)));
    let out = s.handle(now(), Input::TcpConnectionFails);
    assert_eq!(armed(&out, Timer::ConnectRetry), Some(Duration::from_secs(5)));
}

#[test]
fn connect_retry_expiry_in_connect_redials() {
    let mut s = at(State::Connect, cfg(65001, 65002));
    let out = s.handle(now(), Input::Expired(Timer::ConnectRetry));
    assert_eq!(out.iter().filter(|o| **o == Output::Connect).count(), 1);
    assert!(out.contains(&Output::Close), "old attempt must be cancelled");
    assert_eq!(s.state(), State::Connect);
}

#[test]
fn passive_connect_retry_expiry_keeps_waiting() {
    let mut c = cfg(65001, 65002);
    c.passive = true;
    let mut s = Session::new(c);
    s.handle(now(), Input::ManualStart);
    let out = s.handle(now(), Input::Expired(Timer::ConnectRetry));
    assert!(!out.contains(&Output::Connect));
    assert_eq!(s.state(), State::Active);
}

#[test]
fn connect_manual_stop_goes_idle_without_notification() {
    let mut s = at(State::Connect, cfg(65001, 65002));
    let out = s.handle(now(), Input::ManualStop(StopReason::AdminShutdown));
    assert!(sends(&out).is_empty());
    assert!(out.contains(&Output::Disarm(Timer::IdleHold)));
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn opensent_valid_open_negotiates_hold_and_goes_openconfirm() {
    let mut s = at(State::OpenSent, cfg(65001, 65002));
    let out = s.handle(now(), Input::Received(peer_open(65002, 90, PEER_ID)));
    assert_eq!(sends(&out), vec![Message::Keepalive]);
    // min(9, 90) = 9, keepalive 3.
    assert_eq!(armed(&out, Timer::Hold), Some(Duration::from_secs(9)));
    assert_eq!(armed(&out, Timer::Keepalive), Some(Duration::from_secs(3)));
    assert_eq!(s.state(), State::OpenConfirm);
    let n = s.negotiated().unwrap();
    assert!(n.four_octet_as && n.route_refresh && !n.ibgp);
    assert_eq!(n.families.len(), 2);
}

#[test]
fn opensent_hold_zero_disables_keepalive_and_hold() {
    let mut s = at(State::OpenSent, cfg(65001, 65002));
    let out = s.handle(now(), Input::Received(peer_open(65002, 0, PEER_ID)));
    assert!(out.contains(&Output::Disarm(Timer::Hold)));
    assert!(out.contains(&Output::Disarm(Timer::Keepalive)));
    assert_eq!(s.negotiated().unwrap().hold_time, 0);
}

#[test]
fn opensent_unacceptable_hold_time() {
    for hold in [1, 2] {
        let mut s = at(State::OpenSent, cfg(65001, 65002));
        let out = s.handle(now(), Input::Received(peer_open(65002, hold, PEER_ID)));
        assert_eq!(sent_notification(&out), Some((2, 6)));
        assert_eq!(s.state(), State::Idle);
    }
}

#[test]
fn opensent_bad_peer_as() {
    let mut s = at(State::OpenSent, cfg(65001, 65002));
    let out = s.handle(now(), Input::Received(peer_open(65003, 90, PEER_ID)));
    assert_eq!(sent_notification(&out), Some((2, 2)));
    assert!(out.contains(&Output::Close));
    assert!(armed(&out, Timer::IdleHold).is_some(), "auto restart");
}

#[test]
fn opensent_bad_bgp_identifier() {
    let mut s = at(State::OpenSent, cfg(65001, 65002));
    let out = s.handle(
        now(),
        Input::Received(peer_open(65002, 90, Ipv4Addr::UNSPECIFIED)),
    );
    assert_eq!(sent_notification(&out), Some((2, 3)));
    // iBGP with our own identifier is a collision of ids: error.
    let mut s = at(State::OpenSent, cfg(65001, 65001));
    let out = s.handle(now(), Input::Received(peer_open(65001, 90, US)));
    assert_eq!(sent_notification(&out), Some((2, 3)));
    // eBGP with the same identifier is allowed (RFC 6286).
    let mut s = at(State::OpenSent, cfg(65001, 65002));
    s.handle(now(), Input::Received(peer_open(65002, 90, US)));
    assert_eq!(s.state(), State::OpenConfirm);
}

#[test]
fn opensent_no_common_family_is_unsupported_capability() {
    let mut c = cfg(65001, 65002);
    c.families = vec![(1, 1)];
    let mut s = at(State::OpenSent, c);
    let open = Message::Open(Open::new(65002, 90, PEER_ID, &[(2, 1)]));
    let out = s.handle(now(), Input::Received(open));
    let n = sends(&out)
        .into_iter()
        .find_map(|m| match m {
            Message::Notification(n) => Some(n),
            _ => None,
        })
        .unwrap();
    assert_eq!((n.code, n.subcode), (2, 7));
    assert_eq!(n.data, vec![1, 4, 0, 1, 0, 1]);
}

#[test]
fn four_octet_asn_uses_as_trans_and_accepts_4_octet_peer() {
    let mut s = at(State::Connect, cfg(4_200_000_001, 4_200_000_002));
    let out = s.handle(now(), Input::TcpConnectionAcknowledged);
    let Some(Message::Open(o)) = sends(&out).into_iter().next() else {
        panic!()
    };
    assert_eq!(o.my_as, wire::AS_TRANS);
    assert!(o.capabilities.contains(&Capability::FourOctetAs(4_200_000_001)));
    s.handle(now(), Input::Received(peer_open(4_200_000_002, 90, PEER_ID)));
    assert_eq!(s.state(), State::OpenConfirm);
}

#[test]
fn opensent_unexpected_message_is_fsm_error() {
    let mut s = at(State::OpenSent, cfg(65001, 65002));
    let out = s.handle(now(), Input::Received(Message::Keepalive));
    assert_eq!(sent_notification(&out), Some((5, 1)));
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn opensent_tcp_failure_goes_active() {
    let mut s = at(State::OpenSent, cfg(65001, 65002));
    let out = s.handle(now(), Input::TcpConnectionFails);
    assert!(out.contains(&Output::Close));
    assert!(armed(&out, Timer::ConnectRetry).is_some());
    assert_eq!(s.state(), State::Active);
}

#[test]
fn opensent_hold_expiry_sends_hold_timer_expired() {
    let mut s = at(State::OpenSent, cfg(65001, 65002));
    let out = s.handle(now(), Input::Expired(Timer::Hold));
    assert_eq!(sent_notification(&out), Some((4, 0)));
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn openconfirm_keepalive_establishes_and_reports_up() {
    let mut s = at(State::OpenConfirm, cfg(65001, 65002));
    let t = now();
    let out = s.handle(t, Input::Received(Message::Keepalive));
    assert_eq!(s.state(), State::Established);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Up(n) if n.peer_as == 65002))
    );
    assert_eq!(armed(&out, Timer::Hold), Some(Duration::from_secs(9)));
    assert_eq!(s.established_at(), Some(t));
}

#[test]
fn openconfirm_keepalive_timer_sends_keepalive() {
    let mut s = at(State::OpenConfirm, cfg(65001, 65002));
    let out = s.handle(now(), Input::Expired(Timer::Keepalive));
    assert_eq!(sends(&out), vec![Message::Keepalive]);
    assert_eq!(armed(&out, Timer::Keepalive), Some(Duration::from_secs(3)));
}

#[test]
fn openconfirm_unexpected_message_and_failures() {
    let mut s = at(State::OpenConfirm, cfg(65001, 65002));
    let out = s.handle(now(), Input::Received(Message::Update(Update::default())));
    assert_eq!(sent_notification(&out), Some((5, 2)));
    let mut s = at(State::OpenConfirm, cfg(65001, 65002));
    let out = s.handle(now(), Input::Expired(Timer::Hold));
    assert_eq!(sent_notification(&out), Some((4, 0)));
    let mut s = at(State::OpenConfirm, cfg(65001, 65002));
    s.handle(now(), Input::TcpConnectionFails);
    assert_eq!(s.state(), State::Idle);
    let mut s = at(State::OpenConfirm, cfg(65001, 65002));
    let out = s.handle(now(), Input::ManualStop(StopReason::AdminShutdown));
    assert_eq!(sent_notification(&out), Some((6, 2)));
}

fn update_from(first_as: u32) -> Update {
    Update {
        attributes: Some(PathAttributes {
            as_path: vec![AsSegment::Sequence(vec![first_as])],
            next_hop: Some(PEER_ID),
            ..PathAttributes::default()
        }),
        announced: vec!["203.0.113.0/24".parse().unwrap()],
        ..Update::default()
    }
}

#[test]
fn established_update_is_delivered_and_restarts_hold() {
    let mut s = at(State::Established, cfg(65001, 65002));
    let out = s.handle(now(), Input::Received(Message::Update(update_from(65002))));
    assert_eq!(armed(&out, Timer::Hold), Some(Duration::from_secs(9)));
    let Some(Output::Received(u)) = out.last() else {
        panic!("{out:?}")
    };
    assert_eq!(u.announced.len(), 1);
    assert!(u.treat_as_withdraw.is_none());
}

#[test]
fn established_ebgp_update_with_foreign_first_as_is_withdrawn() {
    let mut s = at(State::Established, cfg(65001, 65002));
    let out = s.handle(now(), Input::Received(Message::Update(update_from(65099))));
    let Some(Output::Received(u)) = out.last() else {
        panic!()
    };
    assert!(u.announced.is_empty());
    assert_eq!(u.withdrawn.len(), 1);
    assert_eq!(s.state(), State::Established, "no session reset");
}

#[test]
fn first_as_check_can_be_disabled_for_route_servers() {
    let mut c = cfg(65001, 65002);
    c.enforce_first_as = false;
    let mut s = at(State::Established, c);
    let out = s.handle(now(), Input::Received(Message::Update(update_from(65099))));
    let Some(Output::Received(u)) = out.last() else {
        panic!()
    };
    assert_eq!(u.announced.len(), 1);
}

#[test]
fn established_update_looping_through_our_as_is_ignored() {
    let mut s = at(State::Established, cfg(65001, 65002));
    let mut u = update_from(65002);
    if let Some(a) = u.attributes.as_mut() {
        a.as_path = vec![AsSegment::Sequence(vec![65002, 65001])];
    }
    let out = s.handle(now(), Input::Received(Message::Update(u)));
    let Some(Output::Received(u)) = out.last() else {
        panic!()
    };
    assert!(u.announced.is_empty());
    assert!(u.treat_as_withdraw.as_deref().unwrap().contains("65001"));
}

#[test]
fn established_keepalive_restarts_hold_and_timer_sends_keepalive() {
    let mut s = at(State::Established, cfg(65001, 65002));
    let out = s.handle(now(), Input::Received(Message::Keepalive));
    assert_eq!(out, vec![Output::Arm(Timer::Hold, Duration::from_secs(9))]);
    let out = s.handle(now(), Input::Expired(Timer::Keepalive));
    assert_eq!(sends(&out), vec![Message::Keepalive]);
}

#[test]
fn established_hold_expiry_goes_down_and_schedules_restart() {
    let mut s = at(State::Established, cfg(65001, 65002));
    let out = s.handle(now(), Input::Expired(Timer::Hold));
    assert_eq!(sent_notification(&out), Some((4, 0)));
    assert!(out.contains(&Output::Down(DownReason::HoldTimerExpired)));
    assert_eq!(armed(&out, Timer::IdleHold), Some(Duration::from_secs(1)));
    assert_eq!(s.state(), State::Idle);
    assert_eq!(s.flaps(), 1);
    assert!(s.negotiated().is_none());
    // Event 3 AutomaticStart via the IdleHold timer.
    let out = s.handle(now(), Input::Expired(Timer::IdleHold));
    assert!(out.contains(&Output::Connect));
    assert_eq!(s.state(), State::Connect);
}

#[test]
fn established_notification_received_goes_down_without_reply() {
    let mut s = at(State::Established, cfg(65001, 65002));
    let n = Notification::cease(2);
    let out = s.handle(now(), Input::Received(Message::Notification(n.clone())));
    assert!(sends(&out).is_empty());
    assert!(out.contains(&Output::Down(DownReason::NotificationReceived(n))));
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn established_tcp_failure_goes_down() {
    let mut s = at(State::Established, cfg(65001, 65002));
    let out = s.handle(now(), Input::TcpConnectionFails);
    assert!(out.contains(&Output::Down(DownReason::ConnectionLost)));
    assert!(armed(&out, Timer::IdleHold).is_some());
}

#[test]
fn established_manual_stop_sends_cease_and_does_not_restart() {
    let mut s = at(State::Established, cfg(65001, 65002));
    let out = s.handle(now(), Input::ManualStop(StopReason::AdminShutdown));
    assert_eq!(sent_notification(&out), Some((6, 2)));
    assert!(out.contains(&Output::Disarm(Timer::IdleHold)));
    assert!(armed(&out, Timer::IdleHold).is_none());
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn max_prefix_stop_sends_cease_1_with_data_and_restarts() {
    let mut s = at(State::Established, cfg(65001, 65002));
    let out = s.handle(
        now(),
        Input::ManualStop(StopReason::MaxPrefixes {
            afi: 1,
            safi: 1,
            limit: 100,
        }),
    );
    let n = sends(&out)
        .into_iter()
        .find_map(|m| match m {
            Message::Notification(n) => Some(n),
            _ => None,
        })
        .unwrap();
    assert_eq!((n.code, n.subcode), (6, 1));
    assert_eq!(n.data, vec![0, 1, 1, 0, 0, 0, 100]);
    assert!(armed(&out, Timer::IdleHold).is_some());
}

#[test]
fn established_open_is_fsm_error() {
    let mut s = at(State::Established, cfg(65001, 65002));
    let out = s.handle(now(), Input::Received(peer_open(65002, 90, PEER_ID)));
    assert_eq!(sent_notification(&out), Some((5, 3)));
}

#[test]
fn established_route_refresh_is_reported() {
    let mut s = at(State::Established, cfg(65001, 65002));
    let out = s.handle(now(), Input::Received(Message::RouteRefresh { afi: 2, safi: 1 }));
    assert_eq!(out.last(), Some(&Output::RouteRefresh { afi: 2, safi: 1 }));
}

#[test]
fn malformed_input_sends_the_mapped_notification() {
    let mut s = at(State::Established, cfg(65001, 65002));
    let e = DecodeError::Header(wire::HeaderError::BadMessageType(9));
    let out = s.handle(now(), Input::Malformed(e));
    let n = sends(&out)
        .into_iter()
        .find_map(|m| match m {
            Message::Notification(n) => Some(n),
            _ => None,
        })
        .unwrap();
    assert_eq!((n.code, n.subcode, n.data), (1, 3, vec![9]));
    assert_eq!(s.state(), State::Idle);
    // A malformed NOTIFICATION is not answered.
    let mut s = at(State::Established, cfg(65001, 65002));
    let out = s.handle(now(), Input::Malformed(DecodeError::Notification));
    assert!(sends(&out).is_empty());
}

#[test]
fn ibgp_session_is_flagged_and_skips_first_as_check() {
    let mut s = at(State::Established, cfg(65001, 65001));
    assert!(s.negotiated().unwrap().ibgp);
    let out = s.handle(now(), Input::Received(Message::Update(update_from(65099))));
    let Some(Output::Received(u)) = out.last() else {
        panic!()
    };
    assert_eq!(u.announced.len(), 1);
}

#[test]
fn connection_replaced_restarts_open_exchange_without_resending_open() {
    let mut s = at(State::OpenConfirm, cfg(65001, 65002));
    let out = s.handle(now(), Input::ConnectionReplaced);
    assert!(sends(&out).is_empty(), "driver already sent our OPEN");
    assert_eq!(armed(&out, Timer::Hold), Some(Duration::from_secs(240)));
    assert!(out.contains(&Output::Disarm(Timer::Keepalive)));
    assert_eq!(s.state(), State::OpenSent);
    assert!(s.negotiated().is_none());
    // The new connection's OPEN then proceeds normally.
    s.handle(now(), Input::Received(peer_open(65002, 90, PEER_ID)));
    assert_eq!(s.state(), State::OpenConfirm);
    // From Active (our connection already closed by the peer) as well.
    let mut s = Session::new(cfg(65001, 65002));
    s.handle(now(), Input::ManualStart);
    s.handle(now(), Input::TcpConnectionFails);
    s.handle(now(), Input::ConnectionReplaced);
    assert_eq!(s.state(), State::OpenSent);
    // Ignored when Established or Idle.
    let mut s = at(State::Established, cfg(65001, 65002));
    assert!(s.handle(now(), Input::ConnectionReplaced).is_empty());
    assert_eq!(s.state(), State::Established);
    let mut s = Session::new(cfg(65001, 65002));
    assert!(s.handle(now(), Input::ConnectionReplaced).is_empty());
}

#[test]
fn second_connection_while_up_is_ignored() {
    let mut s = at(State::OpenSent, cfg(65001, 65002));
    assert!(s.handle(now(), Input::TcpConnectionConfirmed).is_empty());
    assert_eq!(s.state(), State::OpenSent);
}

#[test]
fn backoff_resets_after_established() {
    let mut s = Session::new(cfg(65001, 65002));
    s.handle(now(), Input::ManualStart);
    s.handle(now(), Input::TcpConnectionFails);
    s.handle(now(), Input::Expired(Timer::ConnectRetry));
    assert!(s.backoff() > Duration::from_secs(1));
    s.handle(now(), Input::TcpConnectionAcknowledged);
    s.handle(now(), Input::Received(peer_open(65002, 90, PEER_ID)));
    s.handle(now(), Input::Received(Message::Keepalive));
    assert_eq!(s.backoff(), Duration::from_secs(1));
}

#[test]
fn config_validation() {
    let mut c = cfg(65001, 65002);
    assert!(c.validate().is_ok());
    c.hold_time = 2;
    assert_eq!(c.validate(), Err(ConfigError::HoldTime(2)));
    c.hold_time = 0;
    assert!(c.validate().is_ok());
    c.router_id = Ipv4Addr::UNSPECIFIED;
    assert!(c.validate().is_err());
}

/// xorshift64*, fixed seed: a reproducible "random" input sequence.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn random_input(rng: &mut Rng) -> Input {
    let peer = peer_open(65002, 9, PEER_ID);
    match rng.next() % 15 {
        14 => Input::ConnectionReplaced,
        0 => Input::ManualStart,
        1 => Input::ManualStop(StopReason::AdminShutdown),
        2 => Input::TcpConnectionAcknowledged,
        3 => Input::TcpConnectionConfirmed,
        4 => Input::TcpConnectionFails,
        5 | 6 => Input::Received(peer),
        7 | 8 => Input::Received(Message::Keepalive),
        9 => Input::Received(Message::Update(update_from(65002))),
        10 => Input::Received(Message::Notification(Notification::cease(2))),
        11 => Input::Malformed(DecodeError::Header(wire::HeaderError::BadMessageLength(5))),
        12 => Input::Expired(Timer::Hold),
        _ => Input::Expired(
            [Timer::ConnectRetry, Timer::Keepalive, Timer::IdleHold][(rng.next() % 3) as usize],
        ),
    }
}

/// sozu-style: random input sequences, invariants checked after each step.
#[test]
fn random_input_sequences_keep_invariants() {
    let mut rng = Rng(0x00C0_FFEE_1234_5678);
    let mut ups = 0;
    for _ in 0..200 {
        let mut s = Session::new(cfg(65001, 65002));
        let mut flaps = 0;
        for _ in 0..200 {
            let before = s.state();
            let out = s.handle(now(), random_input(&mut rng));
            let after = s.state();
            // Established <=> negotiated parameters and a start time.
            assert_eq!(after == State::Established, s.established_at().is_some());
            if after >= State::OpenConfirm {
                assert!(s.negotiated().is_some(), "{after:?} without negotiation");
            }
            if after == State::Idle {
                assert!(s.negotiated().is_none());
            }
            // A state change is reported exactly when it happens.
            let changes: Vec<_> = out
                .iter()
                .filter_map(|o| match o {
                    Output::State { from, to } => Some((*from, *to)),
                    _ => None,
                })
                .collect();
            if before == after {
                assert!(changes.is_empty(), "{changes:?}");
            } else {
                assert_eq!(changes.first().map(|c| c.0), Some(before));
                assert_eq!(changes.last().map(|c| c.1), Some(after));
            }
            // Up only on entering Established, Down only on leaving it.
            let up = out.iter().any(|o| matches!(o, Output::Up(_)));
            let down = out.iter().any(|o| matches!(o, Output::Down(_)));
            assert_eq!(up, before != State::Established && after == State::Established);
            assert_eq!(down, before == State::Established && after != State::Established);
            if down {
                flaps += 1;
            }
            ups += usize::from(up);
            assert_eq!(s.flaps(), flaps);
            // We never answer a NOTIFICATION with one.
            if matches!(out.first(), Some(Output::Send(Message::Notification(_)))) && before == State::Idle {
                panic!("NOTIFICATION sent from Idle");
            }
            // The backoff never exceeds its cap.
            assert!(s.backoff() <= s.config().connect_retry_max);
        }
    }
    // The walk must actually reach Established often enough to matter.
    assert!(ups > 10, "only {ups} sessions came up");
}

// --- Graceful Restart (RFC 4724) ---------------------------------------

use crate::wire::{GracefulRestartCap, GracefulRestartFamily};

fn gr_cfg(restarting: bool) -> SessionConfig {
    let mut c = cfg(65001, 65002);
    c.graceful_restart = Some(GracefulRestart::new(Duration::from_secs(90)));
    c.restarting = restarting;
    c
}

fn peer_gr(restarting: bool, time: u16, forwarding: bool) -> GracefulRestartCap {
    GracefulRestartCap {
        restarting,
        restart_time: time,
        families: vec![GracefulRestartFamily {
            afi: 1,
            safi: 1,
            forwarding_preserved: forwarding,
        }],
    }
}

fn peer_open_gr(gr: Option<GracefulRestartCap>) -> Message {
    let o = Open::new(65002, 90, PEER_ID, &[(1, 1), (2, 1)]);
    Message::Open(match gr {
        Some(g) => o.with_graceful_restart(g),
        None => o,
    })
}

/// From Idle (or after a drop) to Established with the given peer OPEN;
/// returns our OPEN and the outputs of the final KEEPALIVE.
fn bring_up(s: &mut Session, peer: Message) -> (Open, Vec<Output>) {
    let t = now();
    if s.state() == State::Idle {
        s.handle(t, Input::Expired(Timer::IdleHold));
        if s.state() == State::Idle {
            s.handle(t, Input::ManualStart);
        }
    }
    let out = s.handle(t, Input::TcpConnectionAcknowledged);
    let Some(Message::Open(ours)) = sends(&out).into_iter().next() else {
        panic!("no OPEN in {out:?}")
    };
    s.handle(t, Input::Received(peer));
    let out = s.handle(t, Input::Received(Message::Keepalive));
    assert_eq!(s.state(), State::Established, "{out:?}");
    (ours, out)
}

fn stale_outputs(out: &[Output]) -> Vec<Output> {
    out.iter()
        .filter(|o| {
            matches!(
                o,
                Output::MarkStale(_) | Output::PurgeStale(_) | Output::ClearReceived
            )
        })
        .cloned()
        .collect()
}

fn fam(f: &[(u16, u8)]) -> BTreeSet<(u16, u8)> {
    f.iter().copied().collect()
}

#[test]
fn open_carries_graceful_restart_with_r_bit_only_until_established() {
    let mut c = gr_cfg(true);
    c.graceful_restart = Some(GracefulRestart {
        forwarding_preserved: false,
        ..GracefulRestart::new(Duration::from_secs(90))
    });
    let mut s = Session::new(c);
    let (ours, _) = bring_up(&mut s, peer_open_gr(Some(peer_gr(false, 120, true))));
    let g = ours.graceful_restart().expect("GR capability in our OPEN");
    assert!(g.restarting, "R bit after a restart of this process");
    assert_eq!(g.restart_time, 90);
    assert_eq!(g.listed_families(), fam(&[(1, 1), (2, 1)]));
    assert!(g.preserved_families().is_empty(), "F bits follow the config");
    // The next connection is not a restart of this process any more.
    s.handle(now(), Input::TcpConnectionFails);
    let (ours, _) = bring_up(&mut s, peer_open_gr(Some(peer_gr(false, 120, true))));
    assert!(!ours.graceful_restart().unwrap().restarting);
}

#[test]
fn no_graceful_restart_configured_means_no_capability_and_no_stale_routes() {
    let mut s = Session::new(cfg(65001, 65002));
    let (ours, out) = bring_up(&mut s, peer_open_gr(Some(peer_gr(true, 120, true))));
    assert!(ours.graceful_restart().is_none());
    let Some(Output::Up(neg)) = out.iter().find(|o| matches!(o, Output::Up(_))) else {
        panic!("no Up in {out:?}")
    };
    assert!(neg.graceful_restart.is_none(), "one side only is not GR");
    assert_eq!(
        neg.end_of_rib_families(),
        neg.families,
        "End-of-RIB is sent on every session (RFC 4724 §2 recommends it)"
    );
    // Without GR a lost connection forgets the peer's routes.
    let out = s.handle(now(), Input::TcpConnectionFails);
    assert_eq!(stale_outputs(&out), vec![Output::ClearReceived]);
    assert_eq!(armed(&out, Timer::GracefulRestart), None);
}

#[test]
fn graceful_restart_is_negotiated_only_when_both_sides_advertise_it() {
    let mut s = Session::new(gr_cfg(false));
    let (ours, out) = bring_up(&mut s, peer_open_gr(None));
    assert!(ours.graceful_restart().is_some(), "we still advertise it");
    let Some(Output::Up(neg)) = out.iter().find(|o| matches!(o, Output::Up(_))) else {
        panic!("no Up")
    };
    assert!(neg.graceful_restart.is_none());
    assert_eq!(neg.end_of_rib_families(), neg.families);

    let mut s = Session::new(gr_cfg(false));
    let (_, out) = bring_up(&mut s, peer_open_gr(Some(peer_gr(false, 120, true))));
    let Some(Output::Up(neg)) = out.iter().find(|o| matches!(o, Output::Up(_))) else {
        panic!("no Up")
    };
    assert_eq!(neg.graceful_restart, Some(peer_gr(false, 120, true)));
    // Every negotiated family, not only those the peer can preserve.
    assert_eq!(neg.end_of_rib_families(), fam(&[(1, 1), (2, 1)]));
}

#[test]
fn helper_keeps_routes_stale_on_connection_loss_and_purges_on_restart_timer() {
    let mut s = Session::new(gr_cfg(false));
    bring_up(&mut s, peer_open_gr(Some(peer_gr(false, 120, true))));
    let out = s.handle(now(), Input::TcpConnectionFails);
    assert!(out.contains(&Output::Down(DownReason::ConnectionLost)));
    // Only the families the peer listed in its capability are kept.
    assert_eq!(stale_outputs(&out), vec![Output::MarkStale(fam(&[(1, 1)]))]);
    assert_eq!(
        armed(&out, Timer::GracefulRestart),
        Some(Duration::from_secs(120))
    );
    assert_eq!(s.stale_families(), &fam(&[(1, 1)]));
    assert_eq!(s.restarting_peer(), Some(&peer_gr(false, 120, true)));
    // The session restarts as usual meanwhile.
    assert!(armed(&out, Timer::IdleHold).is_some());
    // The peer does not come back in time: its routes go, in any state.
    s.handle(now(), Input::Expired(Timer::IdleHold));
    assert_eq!(s.state(), State::Connect);
    let out = s.handle(now(), Input::Expired(Timer::GracefulRestart));
    assert_eq!(stale_outputs(&out), vec![Output::PurgeStale(fam(&[(1, 1)]))]);
    assert!(out.contains(&Output::Disarm(Timer::StaleRoutes)));
    assert!(s.stale_families().is_empty() && s.restarting_peer().is_none());
    assert_eq!(s.state(), State::Connect, "the timer does not touch the session");
}

#[test]
fn helper_purges_stale_routes_on_end_of_rib_after_the_peer_is_back() {
    let mut s = Session::new(gr_cfg(false));
    bring_up(&mut s, peer_open_gr(Some(peer_gr(false, 120, true))));
    s.handle(now(), Input::TcpConnectionFails);
    // Back with R and F: stop the restart timer, wait for End-of-RIB.
    let (_, out) = bring_up(&mut s, peer_open_gr(Some(peer_gr(true, 120, true))));
    assert!(out.contains(&Output::Disarm(Timer::GracefulRestart)));
    assert_eq!(armed(&out, Timer::StaleRoutes), Some(Duration::from_secs(360)));
    assert!(stale_outputs(&out).is_empty(), "nothing purged yet: {out:?}");
    // A normal UPDATE leaves the stale set alone.
    let u = Update {
        withdrawn: vec!["198.51.100.0/24".parse().unwrap()],
        ..Update::default()
    };
    let out = s.handle(now(), Input::Received(Message::Update(u)));
    assert!(stale_outputs(&out).is_empty());
    // End-of-RIB for IPv6: not a stale family, nothing to do.
    let eor = |f| Update {
        end_of_rib: Some(f),
        ..Update::default()
    };
    let out = s.handle(now(), Input::Received(Message::Update(eor((2, 1)))));
    assert!(stale_outputs(&out).is_empty());
    // End-of-RIB for IPv4: what is still stale goes, the timer stops.
    let out = s.handle(now(), Input::Received(Message::Update(eor((1, 1)))));
    let pos = |f: fn(&Output) -> bool| out.iter().position(f);
    assert!(
        pos(|o| matches!(o, Output::Received(_))) < pos(|o| matches!(o, Output::PurgeStale(_))),
        "the marker is passed on, then the purge: {out:?}"
    );
    assert_eq!(stale_outputs(&out), vec![Output::PurgeStale(fam(&[(1, 1)]))]);
    assert!(out.contains(&Output::Disarm(Timer::StaleRoutes)));
    assert!(s.stale_families().is_empty());
}

#[test]
fn helper_stale_timer_bounds_the_wait_for_end_of_rib() {
    let mut s = Session::new(gr_cfg(false));
    bring_up(&mut s, peer_open_gr(Some(peer_gr(false, 120, true))));
    s.handle(now(), Input::TcpConnectionFails);
    bring_up(&mut s, peer_open_gr(Some(peer_gr(true, 120, true))));
    let out = s.handle(now(), Input::Expired(Timer::StaleRoutes));
    assert_eq!(stale_outputs(&out), vec![Output::PurgeStale(fam(&[(1, 1)]))]);
    assert_eq!(s.state(), State::Established);
}

#[test]
fn helper_drops_stale_routes_at_once_when_forwarding_was_not_preserved() {
    // RFC 4724 §4.2: F bit clear (or the family missing, or no capability
    // at all) in the new OPEN: the stale routes go immediately.
    for back in [
        Some(peer_gr(true, 120, false)),
        Some(GracefulRestartCap {
            families: vec![],
            ..peer_gr(true, 120, true)
        }),
        None,
    ] {
        let mut s = Session::new(gr_cfg(false));
        bring_up(&mut s, peer_open_gr(Some(peer_gr(false, 120, true))));
        s.handle(now(), Input::TcpConnectionFails);
        let (_, out) = bring_up(&mut s, peer_open_gr(back.clone()));
        assert_eq!(
            stale_outputs(&out),
            vec![Output::PurgeStale(fam(&[(1, 1)]))],
            "{back:?}"
        );
        assert_eq!(armed(&out, Timer::StaleRoutes), None);
        assert!(s.stale_families().is_empty());
    }
}

#[test]
fn helper_does_not_apply_to_notification_hold_timer_or_our_own_stop() {
    let down: [(Input, &str); 3] = [
        (
            Input::Received(Message::Notification(Notification::cease(2))),
            "NOTIFICATION",
        ),
        (Input::Expired(Timer::Hold), "hold timer"),
        (Input::ManualStop(StopReason::AdminShutdown), "manual stop"),
    ];
    for (input, what) in down {
        let mut s = Session::new(gr_cfg(false));
        bring_up(&mut s, peer_open_gr(Some(peer_gr(false, 120, true))));
        let out = s.handle(now(), input);
        assert_eq!(stale_outputs(&out), vec![Output::ClearReceived], "{what}");
        assert_eq!(armed(&out, Timer::GracefulRestart), None, "{what}");
    }
    // A restart time of 0 means nothing to keep.
    let mut s = Session::new(gr_cfg(false));
    bring_up(&mut s, peer_open_gr(Some(peer_gr(false, 0, true))));
    let out = s.handle(now(), Input::TcpConnectionFails);
    assert_eq!(stale_outputs(&out), vec![Output::ClearReceived]);
}

#[test]
fn helper_consecutive_restart_marks_again_and_stop_purges() {
    let mut s = Session::new(gr_cfg(false));
    bring_up(&mut s, peer_open_gr(Some(peer_gr(false, 120, true))));
    s.handle(now(), Input::TcpConnectionFails);
    bring_up(&mut s, peer_open_gr(Some(peer_gr(true, 30, true))));
    // Down again before its End-of-RIB: mark again (the RIB drops what was
    // already stale) with the restart time of the latest capability.
    let out = s.handle(now(), Input::TcpConnectionFails);
    assert_eq!(stale_outputs(&out), vec![Output::MarkStale(fam(&[(1, 1)]))]);
    assert_eq!(armed(&out, Timer::GracefulRestart), Some(Duration::from_secs(30)));
    // De-configuring the peer meanwhile purges (nothing would later).
    let out = s.handle(now(), Input::ManualStop(StopReason::PeerDeconfigured));
    assert_eq!(stale_outputs(&out), vec![Output::PurgeStale(fam(&[(1, 1)]))]);
    assert!(out.contains(&Output::Disarm(Timer::GracefulRestart)));
}

#[test]
fn config_change_and_deconfigured_send_their_cease_subcodes() {
    for (reason, sub) in [
        (StopReason::PeerDeconfigured, 3),
        (StopReason::ConfigurationChange, 6),
    ] {
        let mut s = at(State::Established, cfg(65001, 65002));
        let out = s.handle(now(), Input::ManualStop(reason));
        assert_eq!(sent_notification(&out), Some((6, sub)));
        assert!(
            out.contains(&Output::Disarm(Timer::IdleHold)),
            "no automatic restart"
        );
        assert_eq!(s.state(), State::Idle);
    }
}

#[test]
fn restart_time_over_12_bits_is_a_config_error() {
    let mut c = gr_cfg(false);
    c.graceful_restart = Some(GracefulRestart::new(Duration::from_secs(4096)));
    assert_eq!(
        c.validate(),
        Err(ConfigError::RestartTime(Duration::from_secs(4096)))
    );
    c.graceful_restart = Some(GracefulRestart::new(Duration::from_secs(4095)));
    assert_eq!(c.validate(), Ok(()));
}
