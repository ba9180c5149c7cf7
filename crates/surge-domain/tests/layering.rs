//! The domain crate stays pure: no web framework, SQL driver, OpenAPI generator or async
//! runtime may reach its dependency graph, so the compiler keeps business rules apart from the
//! server. Read from `cargo metadata`, the resolved graph a build uses.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

use serde_json::Value;

/// Crate-name prefixes the domain must never depend on, directly or through another crate.
const FORBIDDEN: &[&str] = &["actix", "sqlx", "utoipa", "tokio", "hyper", "reqwest"];

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--manifest-path",
        ])
        .arg(manifest)
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

/// The names of every package `root` needs to build and run (normal dependencies, not dev or
/// build ones), found by walking the resolved graph.
fn runtime_closure(metadata: &Value, root: &str) -> BTreeSet<String> {
    let names: HashMap<&str, &str> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            (
                p["id"].as_str().expect("id"),
                p["name"].as_str().expect("name"),
            )
        })
        .collect();
    let nodes: HashMap<&str, &Value> = metadata["resolve"]["nodes"]
        .as_array()
        .expect("a resolved graph")
        .iter()
        .map(|n| (n["id"].as_str().expect("id"), n))
        .collect();
    let start = names
        .iter()
        .find(|(_, name)| **name == root)
        .map(|(id, _)| *id)
        .unwrap_or_else(|| panic!("{root} is in the workspace"));
    let mut seen = BTreeSet::new();
    let mut stack = vec![start];
    while let Some(id) = stack.pop() {
        for dep in nodes[id]["deps"].as_array().expect("deps") {
            let normal = dep["dep_kinds"]
                .as_array()
                .expect("dep_kinds")
                .iter()
                .any(|k| k["kind"].is_null());
            let dep_id = dep["pkg"].as_str().expect("pkg");
            if normal && seen.insert(names[dep_id].to_string()) {
                stack.push(dep_id);
            }
        }
    }
    seen
}

fn forbidden_in(closure: &BTreeSet<String>) -> Vec<&String> {
    closure
        .iter()
        .filter(|name| FORBIDDEN.iter().any(|f| name.starts_with(f)))
        .collect()
}

#[test]
fn the_domain_depends_on_no_web_sql_or_async_runtime_crate() {
    let metadata = metadata();
    let domain = runtime_closure(&metadata, "surge-domain");
    assert!(
        domain.contains("serde"),
        "the walk found the domain's own dependencies"
    );
    assert_eq!(forbidden_in(&domain), Vec::<&String>::new());
    // The same walk over the server finds what it must: the check can fail.
    let server = runtime_closure(&metadata, "surge");
    let found = forbidden_in(&server);
    for family in ["actix-web", "sqlx", "utoipa", "tokio"] {
        assert!(
            found.iter().any(|name| name.as_str() == family),
            "{family} not seen in the server's graph: {found:?}"
        );
    }
}
