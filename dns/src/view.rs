//! The live input of GSLB steering: site health, drain, load, weight and
//! measured RTTs. The node's controller derives a [`DnsView`] from the health
//! bus and publishes it; the server reads it lock-free per query.

use std::collections::BTreeMap;
use std::net::IpAddr;

use edge_topology::Deployment;
use edge_topology::health::HealthSnapshot;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

/// Weight a site gets when the view does not say otherwise.
pub const DEFAULT_WEIGHT: u32 = 100;

/// Prefix length RTT measurements (and weighted hashing) are keyed on for
/// IPv4 clients: one /24 is the usual unit of a resolver's client population.
pub const RTT_PREFIX_V4: u8 = 24;
/// Same for IPv6: a /48 is one end site.
pub const RTT_PREFIX_V6: u8 = 48;

/// State of one site as GSLB sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteState {
    /// The site is reachable and serving at all.
    pub up: bool,
    /// An operator drained the site: it keeps serving existing traffic but
    /// gets no new DNS answers.
    pub drained: bool,
    /// Utilisation in `0.0..=1.0` (1.0 = at capacity); compared with
    /// [`crate::SteerOptions::shed_load_above`].
    pub load: f64,
    /// Relative share of answers among otherwise equal sites.
    pub weight: u32,
    /// Per-VIP service health at this site; a VIP missing here follows `up`.
    #[serde(default)]
    pub vip_up: BTreeMap<String, bool>,
}

impl Default for SiteState {
    fn default() -> Self {
        Self {
            up: true,
            drained: false,
            load: 0.0,
            weight: DEFAULT_WEIGHT,
            vip_up: BTreeMap::new(),
        }
    }
}

impl SiteState {
    /// Whether `vip` is served at this site.
    pub fn serves(&self, vip: &str) -> bool {
        self.up && self.vip_up.get(vip).copied().unwrap_or(true)
    }
}

/// Everything steering needs to know that changes at run time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DnsView {
    /// By site name. A site missing here is assumed up, undrained, idle, with
    /// the default weight: before the first health round nothing is known, and
    /// answering with every site beats answering with none.
    pub sites: BTreeMap<String, SiteState>,
    /// Measured RTT in microseconds from a client prefix (a /24 or /48, see
    /// [`client_prefix`]) to each site that measured it.
    pub rtt: BTreeMap<IpNet, BTreeMap<String, u32>>,
}

/// What a site the view does not mention looks like (see [`DnsView::sites`]).
static UNKNOWN_SITE: SiteState = SiteState {
    up: true,
    drained: false,
    load: 0.0,
    weight: DEFAULT_WEIGHT,
    vip_up: BTreeMap::new(),
};

impl DnsView {
    /// The state of `site`, or the optimistic default.
    pub fn site(&self, site: &str) -> &SiteState {
        self.sites.get(site).unwrap_or(&UNKNOWN_SITE)
    }

    /// Records an RTT sample for the prefix that contains `client`.
    pub fn set_rtt(&mut self, client: IpAddr, site: &str, micros: u32) {
        self.rtt
            .entry(client_prefix(client))
            .or_default()
            .insert(site.to_string(), micros);
    }

    /// RTTs measured for the prefix containing `client`.
    pub fn rtts_for(&self, client: IpAddr) -> Option<&BTreeMap<String, u32>> {
        self.rtt.get(&client_prefix(client)).filter(|m| !m.is_empty())
    }

    /// Derives the view from the merged health snapshot: a site is up when a
    /// live node of it reports; a VIP is up at a site when a live node of the
    /// site serves it; drains come from operator intent. A site's load is
    /// the open connections of its live nodes over their configured
    /// `capacity` (0 when no node has one); a prefix's RTT to a site is the
    /// lowest any live node of the site measured.
    pub fn from_snapshot(deployment: &Deployment, snap: &HealthSnapshot) -> Self {
        let mut view = DnsView::default();
        let live = |r: &&edge_topology::health::NodeReport| snap.alive.contains(&r.node);
        for r in snap.reports.values().filter(live) {
            for (resolver, us) in &r.client_rtt_us {
                let best = view
                    .rtt
                    .entry(client_prefix(*resolver))
                    .or_default()
                    .entry(r.site.clone())
                    .or_insert(*us);
                *best = (*best).min(*us);
            }
        }
        for (site, s) in &deployment.sites {
            let (mut open, mut capacity) = (0u64, 0u64);
            for n in &s.nodes {
                if let (Some(c), Some(r)) = (n.capacity, snap.reports.get(&n.name))
                    && snap.alive.contains(&n.name)
                {
                    open += r.active_connections;
                    capacity += c;
                }
            }
            let load = if capacity == 0 {
                0.0
            } else {
                open as f64 / capacity as f64
            };
            let up = snap
                .reports
                .values()
                .any(|r| &r.site == site && snap.alive.contains(&r.node));
            let vip_up = deployment
                .vips_of_site(site)
                .map(|v| (v.name.clone(), snap.site_serves(site, &v.name)))
                .collect();
            view.sites.insert(
                site.clone(),
                SiteState {
                    up,
                    drained: snap.intent.drained_sites.contains(site),
                    vip_up,
                    load,
                    ..SiteState::default()
                },
            );
        }
        view
    }
}

/// The prefix a client address is aggregated to (/24 or /48).
pub fn client_prefix(ip: IpAddr) -> IpNet {
    match ip {
        IpAddr::V4(a) => {
            IpNet::V4(Ipv4Net::new(a, RTT_PREFIX_V4).map_or_else(|_| Ipv4Net::from(a), |n| n.trunc()))
        }
        IpAddr::V6(a) => {
            IpNet::V6(Ipv6Net::new(a, RTT_PREFIX_V6).map_or_else(|_| Ipv6Net::from(a), |n| n.trunc()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_prefix_truncates_to_24_and_48() {
        assert_eq!(
            client_prefix("198.18.1.77".parse().unwrap()).to_string(),
            "198.18.1.0/24"
        );
        assert_eq!(
            client_prefix("2001:db8:1:2::9".parse().unwrap()).to_string(),
            "2001:db8:1::/48"
        );
    }

    #[test]
    fn from_snapshot_derives_site_load_and_client_rtts_from_live_reports() {
        use edge_topology::health::NodeReport;
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../labs/two-pop/deployment.toml");
        let text = std::fs::read_to_string(path)
            .unwrap()
            .replace("name = \"ams-e1\"", "name = \"ams-e1\"\ncapacity = 100")
            .replace("name = \"ams-e2\"", "name = \"ams-e2\"\ncapacity = 300");
        let dep = edge_topology::parse(&text).unwrap();
        let resolver: IpAddr = "198.18.1.2".parse().unwrap();
        let report = |node: &str, site: &str, open: u64, rtt: u32| NodeReport {
            node: node.into(),
            site: site.into(),
            active_connections: open,
            client_rtt_us: [(resolver, rtt)].into_iter().collect(),
            ..NodeReport::default()
        };
        let mut snap = HealthSnapshot::default();
        snap.merge(report("ams-e1", "ams", 90, 900));
        snap.merge(report("ams-e2", "ams", 270, 700));
        snap.merge(report("nyc-e1", "nyc", 5_000, 40_000));
        snap.alive
            .extend(["ams-e1", "ams-e2", "nyc-e1"].map(String::from));
        let v = DnsView::from_snapshot(&dep, &snap);
        assert!((v.site("ams").load - 0.9).abs() < 1e-9, "{}", v.site("ams").load);
        assert_eq!(
            v.site("nyc").load,
            0.0,
            "no capacity configured at nyc: never shed"
        );
        let rtts = v.rtts_for("198.18.1.77".parse().unwrap()).expect("rtts");
        assert_eq!(rtts.get("ams"), Some(&700), "the best node of the site");
        assert_eq!(rtts.get("nyc"), Some(&40_000));
        // A dead node's load and measurements leave the view.
        snap.alive.remove("ams-e2");
        let v = DnsView::from_snapshot(&dep, &snap);
        assert!((v.site("ams").load - 0.9).abs() < 1e-9);
        assert_eq!(
            v.rtts_for("198.18.1.77".parse().unwrap())
                .and_then(|r| r.get("ams")),
            Some(&900)
        );
    }

    #[test]
    fn from_snapshot_follows_live_reports_and_drain_intent() {
        use edge_topology::health::NodeReport;
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../labs/two-pop/deployment.toml");
        let dep = edge_topology::load(path).unwrap();
        let mut snap = HealthSnapshot::default();
        let report = |node: &str, site: &str, serves: bool| NodeReport {
            node: node.into(),
            site: site.into(),
            vips: [(format!("{site}-web"), serves)].into_iter().collect(),
            ..NodeReport::default()
        };
        snap.merge(report("ams-e1", "ams", true));
        snap.merge(report("nyc-e1", "nyc", false));
        snap.alive.extend(["ams-e1".to_string(), "nyc-e1".to_string()]);
        snap.intent.drained_sites.insert("nyc".into());
        let v = DnsView::from_snapshot(&dep, &snap);
        assert!(v.site("ams").serves("ams-web"));
        assert!(!v.site("ams").drained);
        assert!(v.site("nyc").up && !v.site("nyc").serves("nyc-web"));
        assert!(v.site("nyc").drained);
        // A node the failure detector lost takes its site down with it.
        snap.alive.remove("ams-e1");
        let v = DnsView::from_snapshot(&dep, &snap);
        assert!(!v.site("ams").up);
    }

    #[test]
    fn view_round_trips_through_json() {
        // The admin API and `edge dns explain --view` exchange views as JSON;
        // RTT keys are prefixes, which JSON maps must carry as strings.
        let mut v = DnsView::default();
        v.sites.insert(
            "ams".into(),
            SiteState {
                drained: true,
                load: 0.5,
                ..SiteState::default()
            },
        );
        v.set_rtt("2001:db8:1::9".parse().unwrap(), "nyc", 80_000);
        v.set_rtt("198.18.1.9".parse().unwrap(), "ams", 1_500);
        let text = serde_json::to_string(&v).unwrap();
        assert!(text.contains("\"198.18.1.0/24\""), "{text}");
        assert_eq!(serde_json::from_str::<DnsView>(&text).unwrap(), v);
        // Fields left out take their defaults.
        let v: DnsView = serde_json::from_str(
            r#"{"sites":{"nyc":{"up":false,"drained":false,"load":0,"weight":1}},"rtt":{}}"#,
        )
        .unwrap();
        assert!(!v.site("nyc").up && v.site("nyc").vip_up.is_empty());
    }

    #[test]
    fn unknown_site_is_optimistic_and_vip_follows_site() {
        let mut view = DnsView::default();
        assert!(view.site("ams").serves("ams-web"));
        view.sites.insert(
            "ams".into(),
            SiteState {
                up: false,
                ..SiteState::default()
            },
        );
        assert!(!view.site("ams").serves("ams-web"));
        let mut s = SiteState::default();
        s.vip_up.insert("ams-web".into(), false);
        assert!(!s.serves("ams-web"));
        assert!(s.serves("other"));
    }
}
