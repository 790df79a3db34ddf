//! The committed lab GeoIP database is exactly what `mkmmdb` generates from
//! the committed CSV, and it places the lab's client subnets where the lab
//! topology expects them.

mod common;

use common::repo_path;
use edge_dns::GeoDb;

#[test]
fn committed_mmdb_is_generated_from_csv() {
    let csv = std::fs::read_to_string(repo_path("labs/geoip/lab.csv")).unwrap();
    let committed = std::fs::read(repo_path("labs/geoip/lab.mmdb")).unwrap();
    let generated = edge_dns::mmdb::build_lab(&csv).unwrap();
    assert!(
        committed == generated,
        "labs/geoip/lab.mmdb is stale: run `cargo run -p edge-dns --bin mkmmdb` and commit it"
    );
}

#[test]
fn lab_database_places_lab_clients() {
    let db = GeoDb::open(repo_path("labs/geoip/lab.mmdb")).unwrap();
    assert_eq!(db.database_type(), edge_dns::mmdb::LAB_DATABASE_TYPE);
    for (ip, country, prefix) in [
        ("198.18.1.2", "NL", 24),
        ("2001:db8:1::2", "NL", 64),
        ("198.18.2.2", "US", 24),
        ("2001:db8:2::2", "US", 64),
        ("203.0.113.9", "DE", 24),
        ("198.51.100.9", "JP", 24),
        ("2001:db8:a:5::1", "BR", 48),
    ] {
        let l = db.lookup(ip.parse().unwrap());
        let hit = l.hit.unwrap_or_else(|| panic!("{ip} not found"));
        assert_eq!(hit.country.as_deref(), Some(country), "{ip}");
        assert!(hit.coords.is_some(), "{ip}");
        assert_eq!(l.prefix_len, prefix, "{ip}");
    }
    assert!(db.lookup("198.18.3.1".parse().unwrap()).hit.is_none());
    assert!(db.lookup("2001:db8:3::1".parse().unwrap()).hit.is_none());
}
