//! DNS counters, as prometheus-client metrics the node registers in its own
//! [`Registry`] (never a global one).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// All counters of the DNS server. Clones share the same counters.
#[derive(Debug, Clone, Default)]
pub struct DnsMetrics {
    /// Responses by `qtype` and `rcode` (every query that got a response).
    pub queries: Family<Labels, Counter>,
    /// GSLB answers by chosen `site`.
    pub gslb_answers: Family<Labels, Counter>,
    /// Queries that carried an ECS option.
    pub ecs_queries: Counter,
    /// Rate-limited responses by `action` (`drop`, `slip`).
    pub rrl: Family<Labels, Counter>,
    /// GSLB answers given while failing open.
    pub fail_open: Counter,
    /// UDP responses sent with TC=1 because they did not fit.
    pub truncated: Counter,
}

impl DnsMetrics {
    /// Registers every counter under the `dns` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("dns");
        r.register(
            "queries",
            "DNS responses by query type and rcode",
            self.queries.clone(),
        );
        r.register(
            "gslb_answers",
            "GSLB answers by chosen site",
            self.gslb_answers.clone(),
        );
        r.register(
            "ecs_queries",
            "Queries carrying EDNS Client Subnet",
            self.ecs_queries.clone(),
        );
        r.register("rrl", "Responses limited by RRL, by action", self.rrl.clone());
        r.register(
            "fail_open",
            "GSLB answers given while every site was down",
            self.fail_open.clone(),
        );
        r.register(
            "truncated",
            "UDP responses truncated (TC=1) to fit",
            self.truncated.clone(),
        );
    }

    pub fn query(&self, qtype: &str, rcode: &str) -> u64 {
        self.queries
            .get_or_create(&labels(&[("qtype", qtype), ("rcode", rcode)]))
            .get()
    }

    pub fn site_answers(&self, site: &str) -> u64 {
        self.gslb_answers.get_or_create(&labels(&[("site", site)])).get()
    }

    pub fn rrl_count(&self, action: &str) -> u64 {
        self.rrl.get_or_create(&labels(&[("action", action)])).get()
    }

    #[cfg(test)]
    pub(crate) fn inc_query(&self, qtype: &str, rcode: &str) {
        self.queries
            .get_or_create(&labels(&[("qtype", qtype), ("rcode", rcode)]))
            .inc();
    }

    #[cfg(test)]
    pub(crate) fn inc_site(&self, site: &str) {
        self.gslb_answers.get_or_create(&labels(&[("site", site)])).inc();
    }

    pub(crate) fn inc_rrl(&self, action: &str) {
        self.rrl.get_or_create(&labels(&[("action", action)])).inc();
    }
}

pub(crate) fn labels(kv: &[(&str, &str)]) -> Labels {
    kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_counters_render() {
        let m = DnsMetrics::default();
        let mut reg = Registry::default();
        m.register(&mut reg);
        m.inc_query("A", "NOERROR");
        m.inc_site("ams");
        m.inc_rrl("drop");
        m.ecs_queries.inc();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        assert!(
            out.contains(r#"dns_queries_total{qtype="A",rcode="NOERROR"} 1"#),
            "{out}"
        );
        assert!(out.contains(r#"dns_gslb_answers_total{site="ams"} 1"#), "{out}");
        assert!(out.contains("dns_ecs_queries_total 1"), "{out}");
        assert_eq!(m.query("A", "NOERROR"), 1);
    }
}
