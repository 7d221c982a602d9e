//! Embeds the `k8s/` manifests so that Slate can draw the desired state without a cluster,
//! and rebuilds when a migration changes (sqlx embeds them).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest_dir.join("../k8s");
    println!("cargo:rerun-if-changed={}", root.display());
    // `sqlx::migrate!` embeds the migrations: rebuild when one changes.
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("../migrations").display()
    );
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
    let mut code = String::from("&[\n");
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        let rel = file
            .strip_prefix(&root)
            .expect("under k8s/")
            .to_string_lossy()
            .replace('\\', "/");
        let abs = file.canonicalize().expect("readable manifest");
        let _ = writeln!(
            code,
            "    ({rel:?}, include_str!({:?})),",
            abs.display().to_string()
        );
    }
    code.push_str("]\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("manifests.rs");
    std::fs::write(out, code).expect("OUT_DIR is writable");
}
