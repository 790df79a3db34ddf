//! Compiles the XDP program (`bpf/edge_xdp.c`) with clang-14 when the `xdp`
//! feature is on. Without the feature nothing is built and clang is not
//! needed.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=bpf/edge_xdp.c");
    println!("cargo:rerun-if-env-changed=EDGE_CLANG");
    if env::var_os("CARGO_FEATURE_XDP").is_none() {
        return;
    }
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default()).join("edge_xdp.o");
    // Debian's clang-14 is what the program was written and verified with
    // (LAB-FACTS §4); EDGE_CLANG overrides it.
    let clang = env::var("EDGE_CLANG").unwrap_or_else(|_| "clang-14".to_string());
    let status = Command::new(&clang)
        .args([
            "-O2",
            "-g",
            "-target",
            "bpf",
            // asm/types.h lives in the multiarch include directory.
            "-I/usr/include/x86_64-linux-gnu",
            "-Wall",
            "-Werror",
            "-c",
            "bpf/edge_xdp.c",
            "-o",
        ])
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("edge-l4 feature `xdp`: {clang} failed ({s}) compiling bpf/edge_xdp.c"),
        Err(e) => panic!(
            "edge-l4 feature `xdp` needs {clang} to compile bpf/edge_xdp.c ({e}); \
             install clang-14 libbpf-dev linux-libc-dev (labs/install-deps.sh), \
             set EDGE_CLANG, or build without the `xdp` feature"
        ),
    }
}
