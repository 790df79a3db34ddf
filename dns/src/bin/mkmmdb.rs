//! Generates the lab GeoIP database from its CSV source.
//!
//! ```text
//! cargo run -p edge-dns --bin mkmmdb -- [labs/geoip/lab.csv [labs/geoip/lab.mmdb]]
//! ```
//!
//! The output is deterministic; `tests/geoip_lab.rs` fails when the committed
//! `.mmdb` differs from what this produces from the committed `.csv`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") || args.len() > 2 {
        eprintln!("usage: mkmmdb [CSV [OUT]]   (default labs/geoip/lab.csv labs/geoip/lab.mmdb)");
        return ExitCode::from(2);
    }
    let csv = args.first().map_or("labs/geoip/lab.csv", String::as_str);
    let out = args.get(1).map_or("labs/geoip/lab.mmdb", String::as_str);
    let text = match std::fs::read_to_string(csv) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("mkmmdb: {csv}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bytes = match edge_dns::mmdb::build_lab(&text) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("mkmmdb: {csv}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = std::fs::write(out, &bytes) {
        eprintln!("mkmmdb: {out}: {e}");
        return ExitCode::FAILURE;
    }
    println!("mkmmdb: wrote {out} ({} bytes) from {csv}", bytes.len());
    ExitCode::SUCCESS
}
