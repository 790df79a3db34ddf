//! Prints the explain trace for a GSLB query against the two-pop lab, the
//! way `edge dns explain` will:
//!
//! ```text
//! cargo run -p edge-dns --example explain -- www.edge.example. A 198.18.1.0/24
//! ```

use std::path::Path;
use std::process::ExitCode;

use edge_dns::{Authority, DnsView, GeoDb, RecordType, SteerOptions};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(name), Some(qtype)) = (args.first(), args.get(1)) else {
        eprintln!("usage: explain NAME TYPE [ECS-SUBNET] [RESOLVER-IP]");
        return ExitCode::from(2);
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let run = || -> Result<String, Box<dyn std::error::Error>> {
        let dep = edge_topology::load(root.join("labs/two-pop/deployment.toml"))?;
        let geo = GeoDb::for_deployment(&dep, &root)?.map(std::sync::Arc::new);
        let authority = Authority::new(&dep, geo, SteerOptions::default())?;
        let qtype: RecordType = qtype.to_ascii_uppercase().parse()?;
        let ecs = args.get(2).map(|s| s.parse()).transpose()?;
        let src = args.get(3).map_or(Ok("127.0.0.1".parse()?), |s| s.parse())?;
        Ok(authority
            .explain(name, qtype, src, ecs, &DnsView::default())?
            .to_string())
    };
    match run() {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("explain: {e}");
            ExitCode::FAILURE
        }
    }
}
