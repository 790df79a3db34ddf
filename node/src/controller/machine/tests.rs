//! The controller state machine driven without sockets or clocks: every
//! test feeds inputs with a chosen `now` and reads the actions.

use super::*;
use edge_bgp::GRACEFUL_SHUTDOWN;
use edge_topology::health::NodeReport;

const NODE: &str = "ams-e1";

fn dep() -> Arc<Deployment> {
    Arc::new(edge_topology::parse(edge_topology::TWO_POP).expect("two-pop"))
}

/// A view in which `ams-e1` sees its backends as given.
fn view(up: &[(&str, bool)]) -> Arc<HealthSnapshot> {
    let mut v = HealthSnapshot::default();
    v.merge(NodeReport {
        node: NODE.into(),
        site: "ams".into(),
        incarnation: 1,
        seq: 1,
        backends: up.iter().map(|(b, u)| (b.to_string(), *u)).collect(),
        ..Default::default()
    });
    v.alive.insert(NODE.into());
    Arc::new(v)
}

fn healthy() -> Arc<HealthSnapshot> {
    view(&[("ams-b1", true), ("ams-b2", true)])
}

/// A controller that has taken the configuration and a healthy view at `t0`.
fn started(t0: Instant) -> (Controller, Plan) {
    let mut c = Controller::new(NODE);
    c.set_l7_pools(["web".to_string()]);
    assert!(c.step(t0, Input::Config(dep())).actions.len() > 1);
    let p = c.step(t0, Input::Snapshot(healthy()));
    (c, p)
}

fn position(actions: &[Action], f: impl Fn(&Action) -> bool) -> usize {
    actions
        .iter()
        .position(f)
        .unwrap_or_else(|| panic!("no such action in {actions:#?}"))
}

fn announced(actions: &[Action]) -> Option<&BTreeSet<Route>> {
    actions.iter().find_map(|a| match a {
        Action::Announce(r) => Some(r),
        _ => None,
    })
}

fn has_prefix(routes: &BTreeSet<Route>, p: &str) -> bool {
    routes.iter().any(|r| r.prefix.to_string() == p)
}

#[test]
fn nothing_happens_before_a_configuration_arrives() {
    let mut c = Controller::new(NODE);
    let p = c.step(Instant::now(), Input::Snapshot(healthy()));
    assert!(p.actions.is_empty() && p.desired.is_none());
    assert_eq!(p.generation, 0);
}

#[test]
fn at_start_dataplanes_are_programmed_and_addresses_added_before_anything_is_announced() {
    let t0 = Instant::now();
    let mut c = Controller::new(NODE);
    c.set_l7_pools(["web".to_string()]);
    c.step(t0, Input::Snapshot(healthy()));
    let p = c.step(t0, Input::Config(dep()));
    let a = &p.actions;
    let l4 = position(a, |x| matches!(x, Action::ProgramL4(_)));
    let l7 = position(a, |x| matches!(x, Action::SetL7(_)));
    let add = position(a, |x| matches!(x, Action::AddLocal(_)));
    let ann = position(a, |x| matches!(x, Action::Announce(_)));
    assert!(l4 < ann && l7 < ann && add < ann, "{a:#?}");
    let routes = announced(a).expect("routes");
    for prefix in [
        "203.0.113.10/32",
        "2001:db8:ffff::10/128",
        "203.0.113.53/32",
        "198.51.100.10/32",
    ] {
        assert!(has_prefix(routes, prefix), "{prefix} missing from {routes:?}");
    }
    assert!(!has_prefix(routes, "198.51.100.20/32"), "nyc's VIP is not ams's");
    let d = p.desired.expect("desired");
    assert_eq!(d.l4.userspace.services.len(), 4, "tcp+udp on v4+v6 anycast");
    assert!(d.l7["web"].iter().all(|m| m.healthy), "{:?}", d.l7);
    assert_eq!(p.generation, 1);
}

#[test]
fn a_second_step_with_nothing_new_does_nothing() {
    let t0 = Instant::now();
    let (mut c, p) = started(t0);
    let again = c.step(t0 + Duration::from_secs(1), Input::Snapshot(healthy()));
    assert!(again.actions.is_empty(), "{:#?}", again.actions);
    assert_eq!(again.generation, p.generation);
    let tick = c.step(t0 + Duration::from_secs(2), Input::Tick);
    assert!(tick.actions.is_empty(), "{:#?}", tick.actions);
}

#[test]
fn losing_every_backend_withdraws_first_and_removes_addresses_after() {
    let t0 = Instant::now();
    let (mut c, _) = started(t0);
    let p = c.step(t0, Input::Snapshot(view(&[("ams-b1", false), ("ams-b2", false)])));
    let a = &p.actions;
    let ann = position(a, |x| matches!(x, Action::Announce(_)));
    let set = position(a, |x| matches!(x, Action::SetLocal(_)));
    assert!(ann < set, "withdraw before the addresses go: {a:#?}");
    assert!(
        !a.iter().any(|x| matches!(x, Action::AddLocal(_))),
        "nothing to add: {a:#?}"
    );
    let routes = announced(a).expect("routes");
    assert!(!has_prefix(routes, "203.0.113.10/32"));
    assert!(!has_prefix(routes, "198.51.100.10/32"));
    assert!(
        has_prefix(routes, "203.0.113.53/32"),
        "the DNS VIP needs no backends"
    );
    let Action::SetLocal(local) = &a[set] else {
        unreachable!()
    };
    assert!(!local.iter().any(|p| p.to_string() == "203.0.113.10/32"));
    assert!(local.iter().any(|p| p.to_string() == "203.0.113.53/32"));
    let d = p.desired.expect("desired");
    assert!(!d.serves["anycast"]);
    assert!(d.l4.userspace.services.values().all(|s| s.backends.is_empty()));
    // The report tells the bus, and the DNS view follows the node's own
    // report only through the bus (nothing changed there yet).
    assert!(a.iter().any(|x| matches!(x, Action::Report(r) if !r["anycast"])));
}

#[test]
fn a_drain_announces_gshut_for_the_drain_time_then_withdraws_and_keeps_addresses() {
    let t0 = Instant::now();
    let (mut c, _) = started(t0);
    let drain = dep().bgp.drain;
    let mut drained = (*healthy()).clone();
    drained.intent.drained_nodes.insert(NODE.into());
    let p = c.step(t0, Input::Snapshot(Arc::new(drained)));
    let routes = announced(&p.actions).expect("GSHUT re-announcement");
    assert!(!routes.is_empty());
    assert!(routes.iter().all(|r| r.communities.contains(&GRACEFUL_SHUTDOWN)));
    assert_eq!(p.wake_at, Some(t0 + drain), "woken when the drain ends");

    let mid = c.step(t0 + drain / 2, Input::Tick);
    assert!(mid.actions.is_empty(), "{:#?}", mid.actions);
    assert_eq!(mid.wake_at, Some(t0 + drain));

    let end = c.step(t0 + drain, Input::Tick);
    let routes = announced(&end.actions).expect("withdraw");
    assert!(routes.is_empty(), "{routes:?}");
    assert!(
        !end.actions
            .iter()
            .any(|x| matches!(x, Action::SetLocal(_) | Action::AddLocal(_))),
        "a drained node keeps its addresses for flows still arriving: {:#?}",
        end.actions
    );
    assert_eq!(end.wake_at, None);
}

#[test]
fn an_undrain_during_the_drain_restores_the_normal_announcement_and_a_new_drain_restarts_the_clock() {
    let t0 = Instant::now();
    let (mut c, _) = started(t0);
    let drain = dep().bgp.drain;
    let mut drained = (*healthy()).clone();
    drained.intent.drained_nodes.insert(NODE.into());
    let drained = Arc::new(drained);
    c.step(t0, Input::Snapshot(drained.clone()));
    let undrain = c.step(t0 + drain / 2, Input::Snapshot(healthy()));
    let routes = announced(&undrain.actions).expect("normal again");
    assert!(routes.iter().all(|r| !r.communities.contains(&GRACEFUL_SHUTDOWN)));
    let t1 = t0 + drain;
    let again = c.step(t1, Input::Snapshot(drained));
    assert_eq!(again.wake_at, Some(t1 + drain), "a fresh drain clock");
    assert!(c.step(t1 + drain / 2, Input::Tick).actions.is_empty());
}

#[test]
fn a_reload_that_changes_only_a_vip_policy_reannounces_and_touches_nothing_else() {
    let t0 = Instant::now();
    let (mut c, _) = started(t0);
    let text = edge_topology::TWO_POP.replace("med = 50", "med = 70");
    let new = Arc::new(edge_topology::parse(&text).expect("parse"));
    let p = c.step(t0, Input::Config(new));
    assert_eq!(p.actions.len(), 1, "{:#?}", p.actions);
    let routes = announced(&p.actions).expect("re-announced");
    assert!(
        routes
            .iter()
            .filter(|r| r.prefix.to_string() == "203.0.113.10/32")
            .all(|r| r.med == Some(70))
    );
}

#[test]
fn a_reload_that_removes_a_backend_reprograms_dataplanes_and_pools_without_touching_routes() {
    let t0 = Instant::now();
    let (mut c, _) = started(t0);
    let text = edge_topology::TWO_POP.replace(
        "  { name = \"ams-b2\", site = \"ams\", address = \"198.19.1.12\", port = 8080 },\n",
        "",
    );
    assert_ne!(text, edge_topology::TWO_POP);
    let new = Arc::new(edge_topology::parse(&text).expect("parse"));
    let p = c.step(t0, Input::Config(new));
    let kinds: Vec<Tier> = p.actions.iter().filter_map(Action::tier).collect();
    assert_eq!(kinds, [Tier::L4, Tier::L7], "{:#?}", p.actions);
    let Action::SetL7(sets) = &p.actions[1] else {
        panic!("{:#?}", p.actions)
    };
    let names: Vec<&str> = sets["web"].iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["ams-b1"]);
    let Action::ProgramL4(l4) = &p.actions[0] else {
        panic!("{:#?}", p.actions)
    };
    assert!(l4.userspace.services.values().all(|s| s.backends.len() == 1));
}

#[test]
fn the_loss_of_another_site_changes_only_the_dns_view() {
    let t0 = Instant::now();
    let (mut c, _) = started(t0);
    let mut v = (*healthy()).clone();
    v.merge(NodeReport {
        node: "nyc-e1".into(),
        site: "nyc".into(),
        incarnation: 1,
        seq: 1,
        vips: [("nyc-web".to_string(), true)].into(),
        ..Default::default()
    });
    v.alive.insert("nyc-e1".into());
    let with_nyc = c.step(t0, Input::Snapshot(Arc::new(v.clone())));
    assert!(
        with_nyc.actions.iter().all(|a| matches!(a, Action::SetDns(_))),
        "{:#?}",
        with_nyc.actions
    );
    v.alive.remove("nyc-e1");
    let lost = c.step(t0, Input::Snapshot(Arc::new(v)));
    assert_eq!(lost.actions.len(), 1, "{:#?}", lost.actions);
    let Action::SetDns(dns) = &lost.actions[0] else {
        panic!("{:#?}", lost.actions)
    };
    assert!(!dns.site("nyc").up, "nyc has no live node");
    assert!(dns.site("ams").up);
}

#[test]
fn an_ejected_backend_leaves_the_l7_rotation_only() {
    let t0 = Instant::now();
    let (mut c, _) = started(t0);
    let p = c.step(
        t0,
        Input::Ejected([("web".to_string(), "ams-b1".to_string())].into()),
    );
    assert_eq!(p.actions.len(), 1, "{:#?}", p.actions);
    let Action::SetL7(sets) = &p.actions[0] else {
        panic!("{:#?}", p.actions)
    };
    let b1 = sets["web"].iter().find(|m| m.name == "ams-b1").expect("b1");
    assert!(!b1.healthy);
    assert!(sets["web"].iter().any(|m| m.name == "ams-b2" && m.healthy));
}

#[test]
fn a_tier_that_failed_gets_its_state_again_on_the_next_step() {
    let t0 = Instant::now();
    let (mut c, _) = started(t0);
    c.failed(Tier::L4);
    let p = c.step(t0, Input::Tick);
    assert_eq!(p.actions.len(), 1, "{:#?}", p.actions);
    assert!(matches!(p.actions[0], Action::ProgramL4(_)));
    assert!(c.step(t0, Input::Tick).actions.is_empty(), "once applied, quiet");

    c.failed(Tier::Local);
    let p = c.step(t0, Input::Tick);
    assert!(
        matches!(p.actions.as_slice(), [Action::AddLocal(_), Action::SetLocal(_)]),
        "an unknown lo is reconciled exactly: {:#?}",
        p.actions
    );
}

#[test]
fn shutdown_withdraws_waits_removes_addresses_then_tears_down_and_is_final() {
    let t0 = Instant::now();
    let (mut c, _) = started(t0);
    let p = c.step(t0, Input::Shutdown);
    assert_eq!(
        p.actions,
        vec![
            Action::Announce(BTreeSet::new()),
            Action::Wait(WITHDRAW_GRACE),
            Action::SetLocal(BTreeSet::new()),
            Action::RemoveL4,
        ]
    );
    assert!(c.stopped());
    assert!(c.step(t0, Input::Shutdown).actions.is_empty(), "only once");
    assert!(
        c.step(t0, Input::Snapshot(healthy())).actions.is_empty(),
        "nothing is announced again after shutdown"
    );
}

#[test]
fn shutdown_of_a_node_that_announced_nothing_does_not_wait() {
    let t0 = Instant::now();
    let mut c = Controller::new(NODE);
    let p = c.step(t0, Input::Shutdown);
    assert_eq!(
        p.actions,
        vec![Action::SetLocal(BTreeSet::new()), Action::RemoveL4]
    );
}

#[test]
fn pools_added_to_the_l7_tier_get_their_members_at_once() {
    let t0 = Instant::now();
    let (mut c, _) = started(t0);
    let p = c.step(
        t0,
        Input::L7Pools(["web".to_string(), "other".to_string()].into()),
    );
    assert_eq!(p.actions.len(), 1, "{:#?}", p.actions);
    let Action::SetL7(sets) = &p.actions[0] else {
        panic!("{:#?}", p.actions)
    };
    assert_eq!(sets.len(), 2);
    assert!(
        sets["other"].is_empty(),
        "a pool the topology does not have has no members"
    );
    assert_eq!(sets["web"].len(), 2);
}

#[test]
fn a_taken_over_node_announces_its_predecessors_routes_until_its_checks_conclude() {
    let t0 = Instant::now();
    let mut c = Controller::new(NODE);
    let (_, full) = started(t0);
    let old_routes = announced(&full.actions).expect("routes").clone();
    let old_local: BTreeSet<IpNet> = ["203.0.113.10/32".parse().expect("net")].into();
    c.step(
        t0,
        Input::Inherited {
            routes: old_routes.clone(),
            local: old_local.clone(),
        },
    );
    // No check result yet: on its own the node would announce only the DNS
    // VIP, and remove the anycast address its connections use.
    let p = c.step(t0, Input::Config(dep()));
    assert_eq!(announced(&p.actions), Some(&old_routes), "{:#?}", p.actions);
    assert!(
        p.desired.as_ref().expect("desired").local.is_superset(&old_local),
        "the predecessor's addresses stay"
    );
    assert_eq!(p.wake_at, Some(t0 + INHERIT_LIMIT));
    let p = c.step(t0, Input::Snapshot(view(&[])));
    assert!(announced(&p.actions).is_none(), "{:#?}", p.actions);
    // One result is not all of them.
    let p = c.step(t0, Input::Snapshot(view(&[("ams-b1", true)])));
    assert!(announced(&p.actions).is_none(), "{:#?}", p.actions);
    // Every checked backend has a result: the node's own verdicts rule.
    let p = c.step(t0, Input::Snapshot(view(&[("ams-b1", true), ("ams-b2", false)])));
    let routes = p.desired.expect("desired").routes.clone();
    assert_eq!(routes, old_routes, "the same routes, now by its own verdicts");
    let p = c.step(t0, Input::Snapshot(view(&[("ams-b1", false), ("ams-b2", false)])));
    assert!(!has_prefix(
        announced(&p.actions).expect("withdraw"),
        "203.0.113.10/32"
    ));
}

#[test]
fn inherited_routes_give_way_after_the_limit_even_without_check_results() {
    let t0 = Instant::now();
    let mut c = Controller::new(NODE);
    let (_, full) = started(t0);
    let old_routes = announced(&full.actions).expect("routes").clone();
    c.step(
        t0,
        Input::Inherited {
            routes: old_routes.clone(),
            local: BTreeSet::new(),
        },
    );
    c.step(t0, Input::Config(dep()));
    c.step(t0, Input::Snapshot(view(&[])));
    let p = c.step(t0 + INHERIT_LIMIT, Input::Tick);
    let routes = announced(&p.actions).expect("own routes");
    assert!(!has_prefix(routes, "203.0.113.10/32"), "{routes:?}");
    assert!(has_prefix(routes, "203.0.113.53/32"));
}

#[test]
fn a_handover_stops_the_controller_without_touching_anything() {
    let t0 = Instant::now();
    let (mut c, _) = started(t0);
    let p = c.step(t0, Input::Handover);
    assert!(p.actions.is_empty(), "{:#?}", p.actions);
    assert!(c.stopped());
    assert!(
        c.step(t0, Input::Shutdown).actions.is_empty(),
        "and no shutdown after it"
    );
    assert!(c.step(t0, Input::Snapshot(view(&[]))).actions.is_empty());
}
