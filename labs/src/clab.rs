//! containerlab export of the namespace lab.
//!
//! People who run containerlab elsewhere want the lab that `edge lab up`
//! builds, as a `.clab.yml`. Rather than describing the topology a second
//! time, this module renders the very [`LabSpec`] that [`plan::plan`] and
//! [`plan::add_programs`] produce, and the router configs come from the same
//! [`config`] functions, so the two labs cannot drift apart:
//!
//! * every lab namespace becomes one container of kind `linux` (the kind
//!   containerlab documents for FRR and for plain hosts; it has no BIRD or
//!   GoBGP kind). FRR routers run the upstream FRR image; everything else
//!   (BIRD, GoBGP, edge nodes, backends, clients, LAN switches) runs the
//!   image built by `labs/docker/Dockerfile`;
//! * every veth of the spec becomes a `links` entry with the same interface
//!   names, and every bridge port one more (the switch side keeps its
//!   `br0-p<i>` name), so the wiring is one to one;
//! * each LAN bridge lives in a switch container that creates it with
//!   `ip link add br0 type bridge`, so nothing has to be set up on the host
//!   (containerlab's `bridge` kind needs a host bridge made beforehand);
//! * addresses, routes and the bridge are configured by `exec`, sysctls by
//!   `sysctls`, exactly as `Lab::up` configures the namespaces.
//!
//! Two containerlab facts shape the output:
//! * links are attached *after* a container's command has started, and
//!   `exec` runs after that. A program that binds to a lab address would
//!   start too early, so every program started from our image waits for a
//!   flag file that the node's last `exec` command creates. (FRR keeps its
//!   own entrypoint: it copes with addresses appearing later, as a real
//!   router does.)
//! * containerlab substitutes environment variables (`$X`) in the whole
//!   topology file before parsing it, so the output contains no `$`;
//!   rendering fails rather than emit one.
//!
//! The output is deterministic (same deployment, same bytes), so the files
//! for the default lab are committed under `labs/two-pop/clab/` and a test
//! keeps them current.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use edge_topology::Deployment;
use ipnet::IpNet;

use crate::config;
use crate::error::{LabError, Result};
use crate::plan;
use crate::spec::{LabSpec, ProcessSpec, RouterKind, RouterSpec};

/// The FRR image for FRR routers: the version the namespace lab runs
/// (Debian bookworm's FRR 8.4.4), so both labs exercise the same bgpd.
pub const FRR_IMAGE: &str = "quay.io/frrouting/frr:8.4.4";

/// The image built by `labs/docker/Dockerfile` (see its header for the
/// `docker build` line).
pub const EDGE_IMAGE: &str = "edge:latest";

/// Where the deployment file sits inside the containers. Relative paths in
/// it (the GeoIP database) resolve against this file's directory, as
/// `edge run` does.
pub const CONFIG_IN_CONTAINER: &str = "/etc/edge/deployment.toml";

/// Created by a node's last `exec` command, once its addresses and routes
/// are in place; the node's programs wait for it (see the module comment).
pub const READY_FLAG: &str = "/run/edge-lab.ready";

/// The `edge` binary inside our image (on `PATH`).
const EDGE_BIN: &str = "edge";

/// Links keep the kernel's default MTU, as the namespace lab's veths do
/// (containerlab would otherwise use 9500).
const LINK_MTU: u16 = 1500;

/// Management subnets to choose from, first unused one wins. Containerlab's
/// default (172.20.20.0/24) is outside the lab address space, so the lab
/// brings its own from 198.18.0.0/15 and 2001:db8::/32.
const MGMT_V4: [&str; 12] = [
    "198.18.250.0/24",
    "198.18.251.0/24",
    "198.18.252.0/24",
    "198.18.253.0/24",
    "198.18.254.0/24",
    "198.18.255.0/24",
    "198.19.250.0/24",
    "198.19.251.0/24",
    "198.19.252.0/24",
    "198.19.253.0/24",
    "198.19.254.0/24",
    "198.19.255.0/24",
];
const MGMT_V6: [&str; 6] = [
    "2001:db8:250::/64",
    "2001:db8:251::/64",
    "2001:db8:252::/64",
    "2001:db8:253::/64",
    "2001:db8:254::/64",
    "2001:db8:255::/64",
];

/// Where a deployment came from: the TOML text (copied verbatim for the edge
/// containers, whose `edge run` reads it) and the directory its relative
/// paths are relative to (to find the GeoIP database).
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub text: &'a str,
    pub base_dir: &'a Path,
}

/// One output file, `path` relative to the output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    pub path: PathBuf,
    pub contents: Vec<u8>,
}

/// The name of the topology file for `dep`: `<lab>.clab.yml`, with the same
/// lab name as the namespace lab (`two-pop` → `twopop`).
pub fn clab_file_name(dep: &Deployment) -> String {
    format!("{}.clab.yml", plan::lab_name(dep))
}

/// Where `edge lab clab FILE` writes without `--out`: `clab/` next to the
/// topology file, which for `labs/two-pop/deployment.toml` is the committed
/// `labs/two-pop/clab/`.
pub fn default_out_dir(file: &Path) -> PathBuf {
    file.parent().unwrap_or(Path::new("")).join("clab")
}

/// `edge lab clab FILE --out DIR`: loads the topology `file` and writes the
/// containerlab lab for it into `out_dir` (created if needed). Returns the
/// files written, in a stable order, the `.clab.yml` first.
pub fn generate_file(file: &Path, out_dir: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(file).map_err(|e| LabError::io("reading the topology", file, e))?;
    let dep = edge_topology::parse(&text)
        .map_err(|e| LabError::Invalid(format!("topology {}: {e}", file.display())))?;
    let base_dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    generate(
        &dep,
        &Source {
            text: &text,
            base_dir,
        },
        out_dir,
    )
}

/// Writes the files of [`render`] into `out_dir` and returns their paths
/// (`out_dir` joined with each relative path), the `.clab.yml` first. Files
/// already there are overwritten; nothing else is removed.
pub fn generate(dep: &Deployment, src: &Source<'_>, out_dir: &Path) -> Result<Vec<PathBuf>> {
    let files = render(dep, src)?;
    let mut written = Vec::with_capacity(files.len());
    for f in files {
        let path = out_dir.join(&f.path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| LabError::io("creating output directory", dir, e))?;
        }
        std::fs::write(&path, &f.contents)
            .map_err(|e| LabError::io("writing containerlab file", &path, e))?;
        written.push(path);
    }
    Ok(written)
}

/// Everything the lab consists of, in memory: the `.clab.yml` first, a
/// `README.md`, then `configs/deployment.toml`, the GeoIP database if the
/// deployment names one, and each router's configs in the order of the
/// lab's namespaces.
pub fn render(dep: &Deployment, src: &Source<'_>) -> Result<Vec<GeneratedFile>> {
    let mut spec = plan::plan(dep)?;
    plan::add_programs(
        &mut spec,
        dep,
        &plan::Programs {
            edge_bin: EDGE_BIN.into(),
            config: CONFIG_IN_CONTAINER.into(),
        },
    );
    spec.validate()?;

    let mut files = vec![GeneratedFile {
        path: PathBuf::from("configs/deployment.toml"),
        contents: src.text.as_bytes().to_vec(),
    }];
    // Binds every node that runs `edge run` needs: the topology, and the
    // GeoIP database where the topology's relative path expects it.
    let mut edge_binds = vec![format!("configs/deployment.toml:{CONFIG_IN_CONTAINER}:ro")];
    if let Some(geoip) = dep.dns.as_ref().and_then(|d| d.geoip.as_deref()) {
        let host = src.base_dir.join(geoip);
        let bytes = std::fs::read(&host).map_err(|e| LabError::io("reading the GeoIP database", &host, e))?;
        let name = Path::new(geoip)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| LabError::Invalid(format!("[dns] geoip {geoip:?} names no file")))?;
        let rel = format!("configs/geoip/{name}");
        let inside = container_path(CONFIG_IN_CONTAINER, geoip)?;
        // `:` separates the fields of a bind.
        if inside.contains(':') || name.contains(':') {
            return Err(LabError::Invalid(format!(
                "[dns] geoip {geoip:?}: a path with `:` cannot be bound into a container"
            )));
        }
        edge_binds.push(format!("{rel}:{inside}:ro"));
        files.push(GeneratedFile {
            path: rel.into(),
            contents: bytes,
        });
    }

    let mut nodes = Vec::new();
    for ns in &spec.namespaces {
        let node = build_node(&spec, &ns.name, &edge_binds, &mut files)?;
        nodes.push(node);
    }
    let (mgmt4, mgmt6) = mgmt_subnets(&spec, dep)?;
    let yaml = render_yaml(&spec, &nodes, mgmt4, mgmt6)?;
    files.insert(
        0,
        GeneratedFile {
            path: PathBuf::from(clab_file_name(dep)),
            contents: yaml.into_bytes(),
        },
    );
    files.insert(
        1,
        GeneratedFile {
            path: PathBuf::from("README.md"),
            contents: render_readme(dep, &spec, &nodes).into_bytes(),
        },
    );
    Ok(files)
}

/// What a node does, for the README's table.
fn role(spec: &LabSpec, n: &Node) -> String {
    if let Some(r) = spec.routers.iter().find(|r| r.namespace == n.name) {
        let kind = match r.kind {
            RouterKind::Frr => "FRR",
            RouterKind::Bird => "BIRD",
            RouterKind::Gobgp => "GoBGP",
        };
        return format!("{kind} router, AS{}", r.asn);
    }
    if spec.bridges.iter().any(|b| b.namespace == n.name) {
        return "LAN switch (bridge `br0`)".into();
    }
    let procs: Vec<&ProcessSpec> = spec.processes.iter().filter(|p| p.namespace == n.name).collect();
    match procs.first().map(|p| p.argv.get(1).map(String::as_str)) {
        Some(Some("run")) => "edge node (`edge run`)".into(),
        Some(Some("lab")) => "backend (`edge lab backend`)".into(),
        Some(_) => "program".into(),
        None => "client".into(),
    }
}

/// A short guide next to the `.clab.yml`: how to build and deploy, what
/// each container is, and what to try first.
fn render_readme(dep: &Deployment, spec: &LabSpec, nodes: &[Node]) -> String {
    let lab = &spec.name;
    let mut r = String::new();
    macro_rules! w {
        ($($arg:tt)*) => {{ let _ = writeln!(r, $($arg)*); }};
    }
    w!("# containerlab lab `{lab}`");
    w!("");
    w!(
        "Generated by `edge lab clab` (`edge_labs::clab`) from deployment `{}`; the",
        dep.name
    );
    w!("same plan `edge lab up` builds in network namespaces. Do not edit: regenerate.");
    w!("");
    w!("```sh");
    w!("docker build -t {EDGE_IMAGE} -f labs/docker/Dockerfile .   # from the repository root");
    w!("containerlab deploy -t {}", clab_file_name(dep));
    w!("containerlab destroy -t {} --cleanup", clab_file_name(dep));
    w!("```");
    w!("");
    w!("| container | role | image |");
    w!("|---|---|---|");
    for n in nodes {
        w!("| `clab-{lab}-{}` | {} | `{}` |", n.name, role(spec, n), n.image);
    }
    w!("");
    w!("Addresses, routes and sysctls are those of the namespace lab, applied by");
    w!("each node's `exec` commands; programs start once a node's `exec` has run");
    w!("(flag file `{READY_FLAG}`). Router configs are in `configs/<router>/`,");
    w!("the deployment in `configs/deployment.toml`. The management network uses");
    w!("unused lab space, and default routes are removed: like the namespace lab,");
    w!("the lab reaches nothing outside itself.");
    w!("");
    w!("Try:");
    w!("");
    w!("```sh");
    let client = dep.clients().next();
    let vip = dep
        .vips
        .values()
        .flat_map(|v| v.prefixes.iter())
        .find(|p| p.addr().is_ipv4());
    if let (Some(c), Some(v)) = (client, vip) {
        w!("docker exec clab-{lab}-{} curl -s http://{}/", c.name, v.addr());
    }
    for rt in &spec.routers {
        match rt.kind {
            RouterKind::Frr => w!("docker exec clab-{lab}-{} vtysh -c 'show bgp summary'", rt.name),
            RouterKind::Bird => w!("docker exec clab-{lab}-{} birdc show protocols", rt.name),
            RouterKind::Gobgp => w!("docker exec clab-{lab}-{} gobgp neighbor", rt.name),
        }
    }
    w!("```");
    r
}

/// One container, ready to print.
#[derive(Debug)]
struct Node {
    name: String,
    image: &'static str,
    binds: Vec<String>,
    sysctls: Vec<(String, String)>,
    exec: Vec<String>,
    cmd: Option<String>,
    env: BTreeMap<String, String>,
}

/// `path` (from the deployment file) as seen from inside a container whose
/// deployment file is `config`: absolute paths stay, relative ones resolve
/// against `config`'s directory. `..` may not climb above `/`.
fn container_path(config: &str, path: &str) -> Result<String> {
    let p = Path::new(path);
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        Path::new(config).parent().unwrap_or(Path::new("/")).join(p)
    };
    let mut parts: Vec<String> = Vec::new();
    for c in joined.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(LabError::Invalid(format!(
                        "{path:?} climbs above / when resolved against {config}"
                    )));
                }
            }
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::Prefix(_) => {
                return Err(LabError::Invalid(format!("{path:?} is not a Unix path")));
            }
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// `ip addr add` as `Lab::up` runs it: IPv6 without duplicate address
/// detection, so the address is usable (BGP can bind) at once.
fn addr_cmd(a: &IpNet, dev: &str) -> String {
    match a {
        IpNet::V4(_) => format!("ip addr add {a} dev {dev}"),
        IpNet::V6(_) => format!("ip addr add {a} dev {dev} nodad"),
    }
}

/// A word for `sh -c '...'`: plain when it is made of harmless characters,
/// double-quoted otherwise. The script itself sits in single quotes for
/// containerlab's shell-like splitting, so a `'` cannot be expressed, and
/// `$` is refused everywhere (see the module comment).
fn sh_word(w: &str) -> Result<String> {
    if w.contains(['\'', '$', '\n']) {
        return Err(LabError::Invalid(format!(
            "argument {w:?} contains a quote, `$` or newline, which the containerlab file cannot carry"
        )));
    }
    let plain = !w.is_empty()
        && w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./:=@%+,-".contains(&b));
    if plain {
        Ok(w.to_string())
    } else {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"").replace('`', "\\`");
        Ok(format!("\"{escaped}\""))
    }
}

fn sh_line(argv: &[String]) -> Result<String> {
    Ok(argv
        .iter()
        .map(|a| sh_word(a))
        .collect::<Result<Vec<_>>>()?
        .join(" "))
}

/// The start command of a container of our image: wait for the node's
/// `exec` commands to finish (the flag), then run its programs, the last
/// one in place of the shell so it receives the container's signals.
fn start_cmd(programs: &[Vec<String>]) -> Result<String> {
    let mut script = format!("until [ -e {READY_FLAG} ]; do sleep 0.1; done; ");
    for (i, argv) in programs.iter().enumerate() {
        let line = sh_line(argv)?;
        if i + 1 == programs.len() {
            let _ = write!(script, "exec {line}");
        } else {
            let _ = write!(script, "{line} & ");
        }
    }
    Ok(format!("sh -c '{script}'"))
}

/// `/etc/frr/daemons` for the FRR image: bgpd on (zebra and staticd always
/// run), options as Debian's FRR 8.4 package ships them. A router that does
/// not install routes runs bgpd with `-Z`, as the namespace lab does.
fn frr_daemons(r: &RouterSpec) -> String {
    let z = if r.installs_routes() { "" } else { " -Z" };
    format!(
        "# Generated by edge (labs/src/clab.rs) for {name}; the FRR image reads it\n\
         # to decide which daemons watchfrr starts.\n\
         bgpd=yes\n\
         vtysh_enable=yes\n\
         zebra_options=\"  -A 127.0.0.1 -s 90000000\"\n\
         bgpd_options=\"   -A 127.0.0.1{z}\"\n\
         staticd_options=\"-A 127.0.0.1\"\n",
        name = r.name
    )
}

fn build_node(
    spec: &LabSpec,
    ns_name: &str,
    edge_binds: &[String],
    files: &mut Vec<GeneratedFile>,
) -> Result<Node> {
    let ns = spec
        .namespaces
        .iter()
        .find(|n| n.name == ns_name)
        .ok_or_else(|| LabError::Invalid(format!("namespace {ns_name} vanished")))?;
    let router = spec.routers.iter().find(|r| r.namespace == ns_name);
    let processes: Vec<&ProcessSpec> = spec.processes.iter().filter(|p| p.namespace == ns_name).collect();

    // Same sysctls as `Lab::up`, plus IPv6 explicitly on: Docker turns it
    // off in containers unless told otherwise, and the lab is dual-stack.
    let mut sysctls: Vec<(&str, u8)> = vec![
        ("net.ipv6.conf.all.disable_ipv6", 0),
        ("net.ipv6.conf.default.disable_ipv6", 0),
        ("net.ipv6.conf.all.keep_addr_on_down", 1),
        ("net.ipv6.conf.default.keep_addr_on_down", 1),
    ];
    if ns.forwarding {
        sysctls.extend([("net.ipv4.ip_forward", 1), ("net.ipv6.conf.all.forwarding", 1)]);
    }
    if ns.multipath_hash_l4 {
        sysctls.extend([
            ("net.ipv4.fib_multipath_hash_policy", 1),
            ("net.ipv6.fib_multipath_hash_policy", 1),
        ]);
    }
    let sysctls: Vec<(String, String)> = sysctls
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain(
            spec.sysctls
                .iter()
                .filter(|s| s.namespace == ns_name)
                .map(|s| (s.key.clone(), s.value.clone())),
        )
        .collect();

    let mut exec = Vec::new();
    for a in &ns.loopback {
        exec.push(addr_cmd(a, "lo"));
    }
    for b in spec.bridges.iter().filter(|b| b.namespace == ns_name) {
        exec.push(format!("ip link add {} type bridge", b.name));
        exec.push(format!("ip link set {} up", b.name));
        for a in &b.addresses {
            exec.push(addr_cmd(a, &b.name));
        }
        for (i, p) in b.ports.iter().enumerate() {
            let side = p.bridge_side_name(&b.name, i);
            exec.push(format!("ip link set {side} master {}", b.name));
            exec.push(format!("ip link set {side} up"));
        }
    }
    let mut endpoints: Vec<(&str, &[IpNet])> = Vec::new();
    for l in &spec.links {
        for e in [&l.a, &l.b].into_iter().filter(|e| e.namespace == ns_name) {
            endpoints.push((&e.ifname, &e.addresses));
        }
    }
    for b in &spec.bridges {
        for p in b.ports.iter().filter(|p| p.namespace == ns_name) {
            endpoints.push((&p.ifname, &p.addresses));
        }
    }
    for (ifname, addrs) in endpoints {
        for a in addrs {
            exec.push(addr_cmd(a, ifname));
        }
        exec.push(format!("ip link set {ifname} up"));
    }
    // Docker gives every container a default route via the management
    // network; the namespace lab has none, so a route the lab lacks shows
    // up as unreachable instead of leaking towards the host.
    exec.push("ip -4 route flush exact 0.0.0.0/0".into());
    exec.push("ip -6 route flush exact ::/0".into());
    for r in spec.routes.iter().filter(|r| r.namespace == ns_name) {
        exec.push(format!(
            "ip route add {} via {}",
            r.destination.trunc(),
            r.gateway
        ));
    }

    let mut binds = Vec::new();
    let mut programs: Vec<Vec<String>> = Vec::new();
    let mut after_start: Vec<String> = Vec::new();
    let mut image = EDGE_IMAGE;
    let dir = format!("configs/{ns_name}");
    let mut add_file = |name: &str, text: String, inside: &str, binds: &mut Vec<String>| {
        let rel = format!("{dir}/{name}");
        binds.push(format!("{rel}:{inside}:ro"));
        files.push(GeneratedFile {
            path: rel.into(),
            contents: text.into_bytes(),
        });
    };
    if let Some(r) = router {
        match r.kind {
            RouterKind::Frr => {
                if !processes.is_empty() {
                    return Err(LabError::Invalid(format!(
                        "namespace {ns_name} runs FRR and programs; the FRR container runs FRR only"
                    )));
                }
                image = FRR_IMAGE;
                // The daemons run as user frr, which may write /tmp but not
                // the root-owned log directories of the image.
                let logs = Path::new("/tmp");
                add_file("daemons", frr_daemons(r), "/etc/frr/daemons", &mut binds);
                if r.installs_routes() {
                    add_file(
                        "zebra.conf",
                        config::frr_zebra_conf(r, logs),
                        "/etc/frr/zebra.conf",
                        &mut binds,
                    );
                }
                add_file(
                    "bgpd.conf",
                    config::frr_bgpd_conf(r, logs),
                    "/etc/frr/bgpd.conf",
                    &mut binds,
                );
            }
            RouterKind::Bird => {
                add_file(
                    "bird.conf",
                    config::bird_conf(r, Path::new("/var/log")),
                    "/etc/bird/bird.conf",
                    &mut binds,
                );
                programs.push(
                    [
                        "bird",
                        "-f",
                        "-c",
                        "/etc/bird/bird.conf",
                        "-s",
                        "/run/bird/bird.ctl",
                    ]
                    .map(String::from)
                    .to_vec(),
                );
            }
            RouterKind::Gobgp => {
                add_file(
                    "gobgpd.toml",
                    config::gobgp_toml(r),
                    "/etc/gobgp/gobgpd.toml",
                    &mut binds,
                );
                programs.push(
                    [
                        "gobgpd",
                        "-f",
                        "/etc/gobgp/gobgpd.toml",
                        "-p",
                        "--pprof-disable",
                        "--api-hosts",
                        crate::lab::GOBGP_API,
                    ]
                    .map(String::from)
                    .to_vec(),
                );
                // GoBGP's file has no static routes; originate through its
                // API once it answers (the namespace lab does the same).
                for args in config::gobgp_originate_args(r) {
                    after_start.push(format!(
                        "timeout 30 sh -c 'until gobgp {}; do sleep 0.2; done'",
                        sh_line(&args)?
                    ));
                }
            }
        }
    }
    let mut env = BTreeMap::new();
    for p in &processes {
        if p.argv.iter().any(|a| a == CONFIG_IN_CONTAINER) {
            for b in edge_binds {
                if !binds.contains(b) {
                    binds.push(b.clone());
                }
            }
        }
        for (k, v) in &p.env {
            if env.insert(k.clone(), v.clone()).is_some_and(|old| &old != v) {
                return Err(LabError::Invalid(format!(
                    "namespace {ns_name}: processes disagree on environment variable {k}"
                )));
            }
        }
        programs.push(p.argv.clone());
    }
    let cmd = if programs.is_empty() {
        // Clients and switches only need to stay up; saying so here keeps
        // the file independent of the image's default command.
        (image == EDGE_IMAGE).then(|| "sleep infinity".to_string())
    } else {
        exec.push(format!("touch {READY_FLAG}"));
        Some(start_cmd(&programs)?)
    };
    exec.extend(after_start);
    Ok(Node {
        name: ns_name.to_string(),
        image,
        binds,
        sysctls,
        exec,
        cmd,
        env,
    })
}

/// The first management subnets (v4, v6) that overlap nothing the lab uses.
fn mgmt_subnets(spec: &LabSpec, dep: &Deployment) -> Result<(IpNet, IpNet)> {
    let mut used: Vec<IpNet> = Vec::new();
    for ns in &spec.namespaces {
        used.extend(&ns.loopback);
    }
    for l in &spec.links {
        used.extend(l.a.addresses.iter().chain(&l.b.addresses));
    }
    for b in &spec.bridges {
        used.extend(&b.addresses);
        for p in &b.ports {
            used.extend(&p.addresses);
        }
    }
    for r in &spec.routers {
        used.extend(&r.originate);
        used.push(IpNet::from(IpAddr::V4(r.router_id)));
        used.extend(r.neighbors.iter().map(|n| IpNet::from(n.address)));
    }
    for v in dep.vips.values() {
        used.extend(&v.prefixes);
    }
    for s in dep.sites.values() {
        used.extend(&s.lan);
    }
    // Routes are left out on purpose: they carry the whole lab range
    // (198.18.0.0/15) and would rule out every candidate; the management
    // subnet is connected, so it wins over them by being more specific.
    let overlaps = |c: &IpNet| {
        used.iter()
            .any(|u| c.contains(&u.trunc().addr()) || u.trunc().contains(&c.addr()))
    };
    let pick = |cands: &[&str]| -> Result<IpNet> {
        cands
            .iter()
            .filter_map(|c| c.parse::<IpNet>().ok())
            .find(|c| !overlaps(c))
            .ok_or_else(|| {
                LabError::Invalid(format!(
                    "no free management subnet among {}: the lab uses all of them",
                    cands.join(", ")
                ))
            })
    };
    Ok((pick(&MGMT_V4)?, pick(&MGMT_V6)?))
}

/// A YAML double-quoted scalar. JSON string syntax is a subset of it, and
/// quoting everything means no value can be misread (`no`, `1.0`, `:`).
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn render_yaml(spec: &LabSpec, nodes: &[Node], mgmt4: IpNet, mgmt6: IpNet) -> Result<String> {
    let mut y = String::new();
    macro_rules! w {
        ($($arg:tt)*) => {{ let _ = writeln!(y, $($arg)*); }};
    }
    w!(
        "# containerlab topology of the `{}` lab, generated by edge",
        spec.name
    );
    w!("# (labs/src/clab.rs, `edge lab clab`) from the same plan `edge lab up` builds");
    w!("# in network namespaces. Do not edit: regenerate.");
    w!("#");
    w!("# 1. build the image for edge nodes, backends, clients, switches and BIRD/GoBGP");
    w!("#    routers, from the repository root:");
    w!("#      docker build -t {EDGE_IMAGE} -f labs/docker/Dockerfile .");
    w!("# 2. containerlab deploy -t {}.clab.yml", spec.name);
    w!(
        "# 3. e.g. docker exec clab-{}-<client> curl -s http://<vip>/",
        spec.name
    );
    w!("name: {}", q(&spec.name));
    w!("");
    w!("# Inside the lab address space, clear of every address the lab uses.");
    w!("mgmt:");
    w!("  network: {}", q(&format!("clab-{}", spec.name)));
    w!("  ipv4-subnet: {}", q(&mgmt4.to_string()));
    w!("  ipv6-subnet: {}", q(&mgmt6.to_string()));
    w!("");
    w!("topology:");
    w!("  nodes:");
    for n in nodes {
        w!("    {}:", q(&n.name));
        w!("      kind: \"linux\"");
        w!("      image: {}", q(n.image));
        if !n.binds.is_empty() {
            w!("      binds:");
            for b in &n.binds {
                w!("        - {}", q(b));
            }
        }
        if !n.env.is_empty() {
            w!("      env:");
            for (k, v) in &n.env {
                w!("        {}: {}", q(k), q(v));
            }
        }
        // Quoted: containerlab reads sysctl values as strings.
        w!("      sysctls:");
        for (k, v) in &n.sysctls {
            w!("        {}: {}", q(k), q(v));
        }
        if let Some(cmd) = &n.cmd {
            w!("      cmd: {}", q(cmd));
        }
        if !n.exec.is_empty() {
            w!("      exec:");
            for e in &n.exec {
                w!("        - {}", q(e));
            }
        }
    }
    w!("");
    w!("  links:");
    for l in &spec.links {
        w!(
            "    - endpoints: [{}, {}]",
            q(&format!("{}:{}", l.a.namespace, l.a.ifname)),
            q(&format!("{}:{}", l.b.namespace, l.b.ifname))
        );
        w!("      mtu: {LINK_MTU}");
    }
    for b in &spec.bridges {
        for (i, p) in b.ports.iter().enumerate() {
            w!(
                "    - endpoints: [{}, {}]",
                q(&format!("{}:{}", p.namespace, p.ifname)),
                q(&format!("{}:{}", b.namespace, p.bridge_side_name(&b.name, i)))
            );
            w!("      mtu: {LINK_MTU}");
        }
    }
    if y.contains('$') {
        return Err(LabError::Invalid(
            "the containerlab file would contain `$`, which containerlab expands as an environment \
             variable"
                .into(),
        ));
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_labs() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    fn two_pop_files() -> Vec<GeneratedFile> {
        let dep = edge_topology::parse(edge_topology::TWO_POP).expect("valid topology");
        let base = repo_labs().join("two-pop");
        render(
            &dep,
            &Source {
                text: edge_topology::TWO_POP,
                base_dir: &base,
            },
        )
        .expect("render")
    }

    fn text_of<'a>(files: &'a [GeneratedFile], path: &str) -> &'a str {
        let f = files
            .iter()
            .find(|f| f.path == Path::new(path))
            .unwrap_or_else(|| panic!("{path} not generated"));
        std::str::from_utf8(&f.contents).expect("utf-8")
    }

    /// The committed `labs/two-pop/clab/` is exactly what `render` produces
    /// now: no file differs, none is missing, none is left over. With
    /// `EDGE_REGENERATE=1` the test rewrites them instead (and still fails if
    /// a stale file has to be deleted by hand).
    #[test]
    fn clab_committed_two_pop_files_are_current() {
        let out = repo_labs().join("two-pop").join("clab");
        let files = two_pop_files();
        if std::env::var("EDGE_REGENERATE").as_deref() == Ok("1") {
            let dep = edge_topology::parse(edge_topology::TWO_POP).expect("valid topology");
            let base = repo_labs().join("two-pop");
            generate(
                &dep,
                &Source {
                    text: edge_topology::TWO_POP,
                    base_dir: &base,
                },
                &out,
            )
            .expect("regenerate");
        }
        let mut stale = Vec::new();
        for f in &files {
            let path = out.join(&f.path);
            match std::fs::read(&path) {
                Ok(bytes) if bytes == f.contents => {}
                Ok(_) => stale.push(format!("{} differs", f.path.display())),
                Err(e) => stale.push(format!("{} unreadable: {e}", f.path.display())),
            }
        }
        let mut on_disk = Vec::new();
        list_files(&out, &out, &mut on_disk);
        for p in on_disk {
            if !files.iter().any(|f| f.path == p) {
                stale.push(format!("{} is not generated any more; delete it", p.display()));
            }
        }
        assert!(
            stale.is_empty(),
            "labs/two-pop/clab is out of date; run `EDGE_REGENERATE=1 cargo test -p edge-labs clab` \
             and commit the result:\n{}",
            stale.join("\n")
        );
    }

    fn list_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                list_files(root, &p, out);
            } else if let Ok(rel) = p.strip_prefix(root) {
                out.push(rel.to_path_buf());
            }
        }
    }

    #[test]
    fn clab_output_is_deterministic_and_dollar_free() {
        let a = two_pop_files();
        assert_eq!(a, two_pop_files());
        assert_eq!(a[0].path, Path::new("twopop.clab.yml"));
        let yaml = text_of(&a, "twopop.clab.yml");
        assert!(!yaml.contains('$'));
        for forbidden in ["172.20.20", "192.0.2.", "fd00:", "10.0.", "192.168."] {
            assert!(!yaml.contains(forbidden), "{forbidden} in the clab file");
        }
        assert!(yaml.contains("  ipv4-subnet: \"198.18.250.0/24\"\n"), "{yaml}");
        assert!(yaml.contains("  ipv6-subnet: \"2001:db8:250::/64\"\n"), "{yaml}");
    }

    #[test]
    fn clab_every_veth_and_bridge_port_is_one_link() {
        let dep = edge_topology::parse(edge_topology::TWO_POP).expect("valid topology");
        let spec = plan::plan(&dep).expect("plan");
        let files = two_pop_files();
        let yaml = text_of(&files, "twopop.clab.yml");
        let links: Vec<&str> = yaml.lines().filter(|l| l.contains("- endpoints: [")).collect();
        let ports: usize = spec.bridges.iter().map(|b| b.ports.len()).sum();
        assert_eq!(links.len(), spec.links.len() + ports);
        assert!(links.contains(&"    - endpoints: [\"ams-r1:p-nyc-r1\", \"nyc-r1:p-ams-r1\"]"));
        assert!(links.contains(&"    - endpoints: [\"ams-b1:lan\", \"ams-sw:br0-p2\"]"));
    }

    #[test]
    fn clab_nodes_get_their_configs_and_start_commands() {
        let files = two_pop_files();
        let yaml = text_of(&files, "twopop.clab.yml");
        // FRR from its image with the configs of config.rs; logs where user
        // frr may write.
        let bgpd = text_of(&files, "configs/ams-r1/bgpd.conf");
        assert!(bgpd.starts_with("hostname ams-r1\nlog file /tmp/bgpd.log\nrouter bgp 65001\n"));
        assert!(text_of(&files, "configs/ams-r1/daemons").contains("\nbgpd=yes\n"));
        assert!(yaml.contains("\"configs/ams-r1/bgpd.conf:/etc/frr/bgpd.conf:ro\""));
        // BIRD and the edge node wait for their addresses.
        assert!(text_of(&files, "configs/nyc-r1/bird.conf").contains("router id 198.18.0.2;"));
        assert!(yaml.contains(
            "cmd: \"sh -c 'until [ -e /run/edge-lab.ready ]; do sleep 0.1; done; exec edge run \
             --log-format json --config /etc/edge/deployment.toml --node ams-e1'\""
        ));
        assert!(yaml.contains("\"configs/geoip/lab.mmdb:/etc/geoip/lab.mmdb:ro\""));
        assert_eq!(
            files
                .iter()
                .find(|f| f.path == Path::new("configs/deployment.toml"))
                .map(|f| &f.contents[..]),
            Some(edge_topology::TWO_POP.as_bytes())
        );
        // IPv6 without DAD, lab routes and no default route.
        assert!(yaml.contains("\"ip addr add 2001:db8:1::2/64 dev r-ams-r1 nodad\""));
        assert!(yaml.contains("\"ip route add 203.0.113.0/24 via 198.18.1.1\""));
        assert!(yaml.contains("\"ip -4 route flush exact 0.0.0.0/0\""));
    }

    #[test]
    fn clab_container_paths_resolve_like_edge_run() {
        let c = CONFIG_IN_CONTAINER;
        assert_eq!(
            container_path(c, "../geoip/lab.mmdb").expect("ok"),
            "/etc/geoip/lab.mmdb"
        );
        assert_eq!(
            container_path(c, "./db/x.mmdb").expect("ok"),
            "/etc/edge/db/x.mmdb"
        );
        assert_eq!(container_path(c, "/srv/geo.mmdb").expect("ok"), "/srv/geo.mmdb");
        assert!(container_path(c, "../../../x").is_err());
    }

    #[test]
    fn clab_management_subnet_avoids_lab_addresses() {
        // Move the ams LAN (nodes, backends, announcements) onto the first
        // candidate.
        let text = edge_topology::TWO_POP.replace("198.19.1.", "198.18.250.");
        let dep = edge_topology::parse(&text).expect("valid topology");
        let spec = plan::plan(&dep).expect("plan");
        let (v4, v6) = mgmt_subnets(&spec, &dep).expect("a free subnet");
        assert_eq!(v4.to_string(), "198.18.251.0/24");
        assert_eq!(v6.to_string(), "2001:db8:250::/64");
    }

    #[test]
    fn clab_refuses_what_containerlab_cannot_carry() {
        assert!(sh_word("a$b").is_err());
        assert!(sh_word("it's").is_err());
        assert_eq!(sh_word("x y").expect("ok"), "\"x y\"");
        assert_eq!(sh_word("198.19.1.11:8080").expect("ok"), "198.19.1.11:8080");
        let dep = edge_topology::parse(edge_topology::TWO_POP).expect("valid topology");
        let err = render(
            &dep,
            &Source {
                text: edge_topology::TWO_POP,
                base_dir: Path::new("/nonexistent"),
            },
        )
        .expect_err("GeoIP database missing");
        assert!(
            err.to_string().contains("/nonexistent/../geoip/lab.mmdb"),
            "{err}"
        );
    }

    #[test]
    fn clab_generate_file_writes_everything_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = repo_labs().join("two-pop/deployment.toml");
        assert_eq!(default_out_dir(&file), repo_labs().join("two-pop/clab"));
        assert_eq!(default_out_dir(Path::new("dep.toml")), Path::new("clab"));
        let written = generate_file(&file, dir.path()).expect("generate");
        let rel: Vec<PathBuf> = written
            .iter()
            .map(|p| p.strip_prefix(dir.path()).expect("inside out dir").to_path_buf())
            .collect();
        let want: Vec<PathBuf> = two_pop_files().into_iter().map(|f| f.path).collect();
        assert_eq!(rel, want);
        assert!(written.iter().all(|p| p.is_file()));
    }

    /// A GoBGP router runs from our image; its prefixes are originated
    /// through the API once the daemon answers, as in the namespace lab.
    #[test]
    fn clab_gobgp_router_originates_after_start() {
        let text = edge_topology::TWO_POP.replace("kind = \"bird\"", "kind = \"gobgp\"");
        let dep = edge_topology::parse(&text).expect("valid topology");
        let base = repo_labs().join("two-pop");
        let files = render(
            &dep,
            &Source {
                text: &text,
                base_dir: &base,
            },
        )
        .expect("render");
        let yaml = text_of(&files, "twopop.clab.yml");
        let toml_text = text_of(&files, "configs/nyc-r1/gobgpd.toml");
        let v: toml::Value = toml::from_str(toml_text).expect("valid toml");
        assert_eq!(v["global"]["config"]["as"].as_integer(), Some(65002));
        assert!(yaml.contains("\"configs/nyc-r1/gobgpd.toml:/etc/gobgp/gobgpd.toml:ro\""));
        assert!(yaml.contains(
            "exec gobgpd -f /etc/gobgp/gobgpd.toml -p --pprof-disable --api-hosts 127.0.0.1:50051'\""
        ));
        let rib =
            "\"timeout 30 sh -c 'until gobgp global rib add 198.18.2.0/24 -a ipv4; do sleep 0.2; done'\"";
        let touch = yaml.find("\"touch /run/edge-lab.ready\"").expect("flag");
        let add = yaml.find(rib).unwrap_or_else(|| panic!("{rib} missing:\n{yaml}"));
        assert!(touch < add, "prefixes are added after the daemon may start");
        assert!(
            !files
                .iter()
                .any(|f| f.path == Path::new("configs/nyc-r1/bird.conf"))
        );
    }

    /// The FRR image runs FRR only; a router that does not install routes
    /// gets bgpd `-Z` and no zebra.conf, as in the namespace lab.
    #[test]
    fn clab_frr_container_variants() {
        let dep = edge_topology::parse(edge_topology::TWO_POP).expect("valid topology");
        let mut spec = plan::plan(&dep).expect("plan");
        let mut files = Vec::new();
        let ams = spec
            .routers
            .iter_mut()
            .find(|r| r.name == "ams-r1")
            .expect("ams-r1");
        ams.install_routes = Some(false);
        let node = build_node(&spec, "ams-r1", &[], &mut files).expect("node");
        assert_eq!(node.image, FRR_IMAGE);
        assert!(node.cmd.is_none(), "the FRR image keeps its entrypoint");
        let daemons = files
            .iter()
            .find(|f| f.path == Path::new("configs/ams-r1/daemons"))
            .expect("daemons");
        assert!(String::from_utf8_lossy(&daemons.contents).contains("bgpd_options=\"   -A 127.0.0.1 -Z\""));
        assert!(!files.iter().any(|f| f.path.ends_with("zebra.conf")));

        plan::add_programs(
            &mut spec,
            &dep,
            &plan::Programs {
                edge_bin: "edge".into(),
                config: "/c".into(),
            },
        );
        spec.processes[0].namespace = "ams-r1".into();
        let err = build_node(&spec, "ams-r1", &[], &mut Vec::new()).expect_err("FRR plus a program");
        assert!(err.to_string().contains("FRR only"), "{err}");
    }
}
