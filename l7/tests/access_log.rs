//! The structured access log. A test binary of its own: tracing's
//! per-callsite interest cache is global, and other tests running in
//! parallel without a subscriber can make a scoped subscriber miss events.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use edge_l7::*;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// current_thread: every task (proxy, backend) runs on this thread, so the
// thread-local subscriber sees the proxy's log events.
#[tokio::test(flavor = "current_thread")]
async fn access_log_line_per_request() {
    let cap = Capture::default();
    let writer = cap.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let b = backend("b").await;
    let routes = vec![
        RouteRule::new(
            "deny",
            vec![Match::PathPrefix("/private".into())],
            Action::Deny { status: 403 },
        ),
        to_pool("p"),
    ];
    let run = start(config(vec![listener("web", routes)], vec![pool("p", &[&b])])).await;
    let c = client();
    assert_eq!(
        get(&c, &run.url("web", "/hello?x=1"), &[("x-request-id", "rid-1")])
            .await
            .status,
        200
    );
    assert_eq!(
        get(&c, &run.url("web", "/private"), &[("x-request-id", "rid-2")])
            .await
            .status,
        403
    );
    tokio::time::sleep(Duration::from_millis(20)).await;

    let text = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "edge_l7::access")
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    let ok = &lines[0]["fields"];
    assert_eq!(ok["request_id"], "rid-1");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["route"], "p");
    assert_eq!(ok["pool"], "p");
    assert_eq!(ok["backend"], "b");
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["path"], "/hello");
    assert_eq!(ok["listener"], "web");
    assert!(ok["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    let denied = &lines[1]["fields"];
    assert_eq!(denied["status"], 403);
    assert_eq!(denied["route"], "deny");
    assert_eq!(denied["error"], "denied");
}
