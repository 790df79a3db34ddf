//! The command-line side of the admin API (`edge status`, `edge drain`, …).
//!
//! A plain blocking HTTP/1.1 exchange over `std::net`: the CLI talks to our
//! own admin API on loopback, one request per process, so a runtime and an
//! HTTP client stack would add start-up time and nothing else.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use edge_topology::health::IntentOp;

fn request(admin: SocketAddr, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
    request_with_timeout(admin, method, path, body, Duration::from_secs(5))
}

fn request_with_timeout(
    admin: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&admin, Duration::from_secs(2))
        .with_context(|| format!("connecting to the admin API at {admin} (is `edge run` up?)"))?;
    s.set_read_timeout(Some(timeout))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {admin}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").context("malformed HTTP response")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("malformed HTTP status line")?;
    Ok((code, body.to_string()))
}

pub fn status(admin: SocketAddr, json: bool) -> Result<ExitCode> {
    let (code, body) = request(admin, "GET", "/status", "")?;
    if code != 200 {
        bail!("admin API answered {code}: {body}");
    }
    if json {
        println!("{body}");
        return Ok(ExitCode::SUCCESS);
    }
    let v: serde_json::Value = serde_json::from_str(&body).context("status is not JSON")?;
    println!(
        "node {} (site {}, AS{}, id {}) up {:.0}s, edge {} (pid {}), plan {}",
        v["node"].as_str().unwrap_or("?"),
        v["site"].as_str().unwrap_or("?"),
        v["asn"],
        v["router_id"].as_str().unwrap_or("?"),
        v["uptime_seconds"].as_f64().unwrap_or(0.0),
        v["version"].as_str().unwrap_or("?"),
        v["pid"],
        v["plan"]["generation"]
    );
    if let Some(failed) = v["plan"]["failed_tiers"].as_array().filter(|f| !f.is_empty()) {
        println!("  tiers whose last change failed (retried): {failed:?}");
    }
    for vip in v["vips"].as_array().into_iter().flatten() {
        let verdict = &vip["verdict"];
        println!(
            "  vip {:<10} {:<9} {:<18} {}",
            vip["name"].as_str().unwrap_or("?"),
            verdict["decision"].as_str().unwrap_or("pending"),
            vip["announcement"].as_str().unwrap_or("-"),
            verdict["reason"].as_str().unwrap_or("")
        );
    }
    if let Some(b) = v["backends"].as_object() {
        for (name, up) in b {
            println!(
                "  backend {name:<10} {}",
                if up.as_bool() == Some(true) { "up" } else { "DOWN" }
            );
        }
    }
    let members: Vec<&str> = v["bus_members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_str())
        .collect();
    println!("  bus members: {}", members.join(", "));
    println!("  intent: {}", v["intent"]);
    Ok(ExitCode::SUCCESS)
}

pub fn bgp_sessions(admin: SocketAddr, json: bool) -> Result<ExitCode> {
    let (code, body) = request(admin, "GET", "/bgp/sessions", "")?;
    if code != 200 {
        bail!("admin API answered {code}: {body}");
    }
    if json {
        println!("{body}");
        return Ok(ExitCode::SUCCESS);
    }
    let v: serde_json::Value = serde_json::from_str(&body).context("sessions are not JSON")?;
    println!(
        "{:<28} {:>10} {:<12} {:>9} {:>6} {:>6} {:>7} {:>7} {:>5}",
        "peer", "AS", "state", "up (s)", "sent", "rcvd", "upd in", "upd out", "flaps"
    );
    for s in v.as_array().into_iter().flatten() {
        println!(
            "{:<28} {:>10} {:<12} {:>9} {:>6} {:>6} {:>7} {:>7} {:>5}",
            s["peer"].as_str().unwrap_or("?"),
            s["remote_as"].to_string(),
            s["state"].as_str().unwrap_or("?"),
            s["uptime"]["secs"]
                .as_u64()
                .map(|u| u.to_string())
                .unwrap_or_else(|| "-".into()),
            s["prefixes_sent"].to_string(),
            s["prefixes_received"].to_string(),
            s["updates_in"].to_string(),
            s["updates_out"].to_string(),
            s["flaps"].to_string()
        );
        if let Some(e) = s["last_error"].as_str() {
            println!("    last error: {e}");
        }
        // The peer's graceful-restart capability, and its routes we keep as
        // stale while it restarts.
        let gr = &s["graceful_restart"];
        if gr.is_object() {
            println!(
                "    graceful restart: restart time {} s{}, {} stale prefixes",
                gr["restart_time"],
                if gr["restarting"] == true {
                    ", restarting"
                } else {
                    ""
                },
                s["prefixes_stale"]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn bgp_routes(admin: SocketAddr, peer: Option<&str>, received: bool, json: bool) -> Result<ExitCode> {
    let mut path = format!(
        "/bgp/routes?kind={}",
        if received { "received" } else { "advertised" }
    );
    if let Some(p) = peer {
        path.push_str(&format!("&peer={p}"));
    }
    let (code, body) = request(admin, "GET", &path, "")?;
    if code != 200 {
        bail!("admin API answered {code}: {}", body.trim_end());
    }
    if json {
        println!("{body}");
        return Ok(ExitCode::SUCCESS);
    }
    let v: serde_json::Value = serde_json::from_str(&body).context("routes are not JSON")?;
    for (peer, routes) in v.as_object().into_iter().flatten() {
        println!(
            "peer {peer} ({}):",
            if received { "received" } else { "advertised" }
        );
        for r in routes.as_array().into_iter().flatten() {
            println!(
                "  {:<24} next-hop {:<24} {}{}",
                r["prefix"].as_str().unwrap_or("?"),
                r["next_hop"].as_str().unwrap_or("-"),
                if r["stale"] == true { "(stale) " } else { "" },
                r["attributes"]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn dns_explain(admin: SocketAddr, query: &str) -> Result<ExitCode> {
    let (code, body) = request(admin, "GET", &format!("/dns/explain?{query}"), "")?;
    if code != 200 {
        bail!("{}", body.trim_end());
    }
    print!("{body}");
    Ok(ExitCode::SUCCESS)
}

pub fn reload(admin: SocketAddr, dry_run: bool) -> Result<ExitCode> {
    let path = if dry_run { "/reload?dry_run" } else { "/reload" };
    let (code, resp) = request(admin, "POST", path, "")?;
    if code == 200 {
        print!("{resp}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "edge: reload refused, the running configuration is unchanged:\n{}",
            resp.trim_end()
        );
        Ok(ExitCode::FAILURE)
    }
}

pub fn upgrade(admin: SocketAddr, binary: Option<&std::path::Path>) -> Result<ExitCode> {
    let mut path = "/upgrade".to_string();
    if let Some(b) = binary {
        let b = std::fs::canonicalize(b).with_context(|| format!("{}", b.display()))?;
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("binary", &b.display().to_string())
            .finish();
        path = format!("/upgrade?{q}");
    }
    // The handover waits for the new process to build every tier.
    let (code, resp) = request_with_timeout(admin, "POST", &path, "", Duration::from_secs(90))?;
    if code == 200 {
        print!("{resp}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("edge: upgrade failed:\n{}", resp.trim_end());
        Ok(ExitCode::FAILURE)
    }
}

pub fn intent(admin: SocketAddr, op: &IntentOp) -> Result<ExitCode> {
    let body = serde_json::to_string(op)?;
    let (code, resp) = request(admin, "POST", "/intent", &body)?;
    if code == 200 {
        println!("ok");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("edge: {}", resp.trim_end());
        Ok(ExitCode::FAILURE)
    }
}
