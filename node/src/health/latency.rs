//! Client latency for GSLB: every node measures its round-trip time to the
//! resolvers that query the DNS servers, the way F5 BIG-IP DNS probes LDNS
//! servers, and publishes one RTT per resolver on the health bus. The
//! resolvers to probe are those this node's DNS server saw plus those in any
//! node's report, so every site measures the same ones. Every DNS server
//! then prefers, for a resolver's prefix (/24, /48), the site that measured
//! the lowest RTT to it (`latency` in a GSLB policy). A resolver's RTT is
//! the minimum of its last five samples, published after two.
//!
//! A probe is a TCP connection attempt to the resolver's port 53: the time
//! until the handshake completes, or until the resolver's host refuses it
//! (an RST is a round trip too), is one sample. A resolver that drops the SYN
//! gives none. No packet is sent to anything but addresses that sent us DNS
//! queries.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::ReportUpdate;

/// How the prober behaves.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// Time between probe rounds.
    pub interval: Duration,
    /// A probe without an answer by then gives no sample.
    pub timeout: Duration,
    /// Most resolvers probed per round (this node's most recent first).
    pub max_targets: usize,
    /// A resolver not measured again for this long is dropped.
    pub expire: Duration,
    /// Port probed on the resolvers.
    pub port: u16,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            max_targets: 64,
            expire: Duration::from_secs(300),
            port: 53,
        }
    }
}

/// Samples kept per resolver; the published RTT is their minimum.
const WINDOW: usize = 5;
/// Samples a resolver needs before its RTT is published.
const MIN_SAMPLES: usize = 2;

/// Recent RTT samples per resolver (microseconds), with the last sample time.
#[derive(Debug, Default)]
struct Table {
    by_addr: BTreeMap<IpAddr, (VecDeque<u32>, Instant)>,
}

impl Table {
    fn sample(&mut self, addr: IpAddr, rtt: Duration, now: Instant) {
        let us = u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX).max(1);
        let e = self
            .by_addr
            .entry(addr)
            .or_insert_with(|| (VecDeque::with_capacity(WINDOW + 1), now));
        e.0.push_back(us);
        if e.0.len() > WINDOW {
            e.0.pop_front();
        }
        e.1 = now;
    }

    fn expire(&mut self, now: Instant, after: Duration) {
        self.by_addr.retain(|_, (_, at)| now.duration_since(*at) < after);
    }

    /// The windowed minimum, as TCP and BBR estimate a path's RTT: a
    /// sample inflated by a busy host or a queue never raises it, so
    /// scheduling noise cannot move answers.
    fn snapshot(&self) -> BTreeMap<IpAddr, u32> {
        self.by_addr
            .iter()
            .filter(|(_, (w, _))| w.len() >= MIN_SAMPLES)
            .filter_map(|(a, (w, _))| w.iter().min().map(|m| (*a, *m)))
            .collect()
    }
}

/// Whether `next` differs from what was published enough to publish again:
/// another set of resolvers, or a value that moved by more than 10 %.
fn worth_publishing(last: &BTreeMap<IpAddr, u32>, next: &BTreeMap<IpAddr, u32>) -> bool {
    if last.len() != next.len() || last.keys().ne(next.keys()) {
        return true;
    }
    last.values()
        .zip(next.values())
        .any(|(a, b)| (f64::from(*a) - f64::from(*b)).abs() > 0.1 * f64::from(*a))
}

/// One probe: the time until the TCP handshake is answered (accepted or
/// refused), or `None`.
async fn probe(addr: SocketAddr, timeout: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_stream)) => Some(t0.elapsed()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(t0.elapsed()),
        Ok(Err(e)) => {
            tracing::debug!(%addr, error = %e, "latency probe failed");
            None
        }
        Err(_) => None,
    }
}

/// Probes the resolvers `targets` returns every `interval` and sends the
/// smoothed RTT table to the reporter when it changes. Ends on `stop`.
pub async fn run(
    config: ProbeConfig,
    targets: Arc<dyn Fn() -> Vec<IpAddr> + Send + Sync>,
    report_tx: mpsc::Sender<ReportUpdate>,
    mut stop: watch::Receiver<bool>,
) {
    let mut table = Table::default();
    let mut published = BTreeMap::new();
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let mut chosen: Vec<IpAddr> = Vec::new();
        for ip in targets() {
            if chosen.len() >= config.max_targets {
                break;
            }
            if !chosen.contains(&ip) {
                chosen.push(ip);
            }
        }
        // A resolver seen for the first time is probed until it has the
        // samples it needs to be published (at most MIN_SAMPLES rounds
        // back to back), so a new client prefix gets RTTs within a round.
        let mut pending = chosen;
        for _ in 0..MIN_SAMPLES {
            let probes = pending.iter().map(|&ip| {
                let addr = SocketAddr::new(ip, config.port);
                async move { (ip, probe(addr, config.timeout).await) }
            });
            let now = Instant::now();
            for (ip, rtt) in futures_util::future::join_all(probes).await {
                if let Some(rtt) = rtt {
                    table.sample(ip, rtt, now);
                }
            }
            pending.retain(|ip| table.by_addr.get(ip).is_some_and(|(w, _)| w.len() < MIN_SAMPLES));
            if pending.is_empty() {
                break;
            }
        }
        let now = Instant::now();
        table.expire(now, config.expire);
        let next = table.snapshot();
        if worth_publishing(&published, &next) {
            tracing::debug!(resolvers = next.len(), "client RTTs published");
            if report_tx
                .send(ReportUpdate::ClientRtt(next.clone()))
                .await
                .is_err()
            {
                return;
            }
            published = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_smooths_expires_and_publishes_only_real_changes() {
        let p: IpAddr = "198.18.1.2".parse().unwrap();
        let mut t = Table::default();
        let t0 = Instant::now();
        t.sample(p, Duration::from_micros(9000), t0);
        assert!(t.snapshot().is_empty(), "one sample is not published");
        t.sample(p, Duration::from_micros(1300), t0);
        assert_eq!(
            t.snapshot()[&p],
            1300,
            "the minimum: the 9 ms outlier does not count"
        );
        for _ in 0..5 {
            t.sample(p, Duration::from_micros(2000), t0);
        }
        assert_eq!(t.snapshot()[&p], 2000, "the window forgets old samples");
        let a = t.snapshot();
        let mut b = a.clone();
        *b.get_mut(&p).unwrap() = 2100;
        assert!(!worth_publishing(&a, &b), "within 10 %");
        *b.get_mut(&p).unwrap() = 2500;
        assert!(worth_publishing(&a, &b));
        assert!(worth_publishing(&BTreeMap::new(), &a), "a new resolver");
        t.expire(t0 + Duration::from_secs(301), Duration::from_secs(300));
        assert!(t.snapshot().is_empty());
    }

    #[tokio::test]
    async fn a_probe_times_an_accepted_or_refused_handshake() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = l.local_addr().unwrap();
        let rtt = probe(open, Duration::from_secs(1)).await.expect("accepted");
        assert!(rtt < Duration::from_secs(1));
        drop(l);
        // Nothing listens there now: the kernel answers with an RST.
        let rtt = probe(open, Duration::from_secs(1))
            .await
            .expect("refused is a sample");
        assert!(rtt < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn the_prober_publishes_rtts_of_the_resolvers_it_is_given() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = ProbeConfig {
            interval: Duration::from_millis(20),
            port: l.local_addr().unwrap().port(),
            ..ProbeConfig::default()
        };
        let (tx, mut rx) = mpsc::channel(8);
        let (stop_tx, stop_rx) = watch::channel(false);
        let targets: Arc<dyn Fn() -> Vec<IpAddr> + Send + Sync> =
            Arc::new(|| vec!["127.0.0.1".parse().unwrap(), "127.0.0.9".parse().unwrap()]);
        let task = tokio::spawn(run(config, targets, tx, stop_rx));
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a report in time")
            .expect("channel open");
        let ReportUpdate::ClientRtt(m) = got else {
            panic!("not an RTT update")
        };
        // A listener answers at one, an RST at the other: two samples.
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m.contains_key(&"127.0.0.1".parse::<IpAddr>().unwrap()));
        stop_tx.send(true).unwrap();
        task.await.unwrap();
    }
}
