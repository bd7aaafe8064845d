//! The crate graph's invariants, as ARCHITECTURE.md states them: read from each crate's
//! `Cargo.toml`, so a new dependency edge that breaks one fails here rather than in review.

use std::{collections::BTreeMap, path::Path};

/// Each workspace crate's normal (non-dev) dependencies.
fn dependencies() -> BTreeMap<String, Vec<String>> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut graph = BTreeMap::new();
    for entry in std::fs::read_dir(crates).unwrap() {
        let manifest = entry.unwrap().path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else { continue };
        let parsed: toml::Table = text.parse().unwrap();
        let name = parsed["package"]["name"].as_str().unwrap().to_owned();
        let deps = parsed
            .get("dependencies")
            .and_then(toml::Value::as_table)
            .map(|deps| deps.keys().cloned().collect())
            .unwrap_or_default();
        graph.insert(name, deps);
    }
    graph
}

/// Crates in layers: a crate may depend only on crates of lower layers.
const LAYERS: &[&[&str]] = &[
    &["palisade-core"],
    &["palisade-storage", "palisade-net"],
    &["palisade-storage-sqlite", "palisade-service"],
    &["palisade-federation", "palisade-media", "palisade-push"],
    &["palisade-api"],
    &["palisade"],
    &["palisade-testkit"],
];

/// Dependencies a crate must not have, and why.
const ABSENT: &[(&str, &[&str], &str)] = &[
    ("palisade-core", &["axum", "rusqlite", "tokio", "reqwest"], "no HTTP, SQL or runtime"),
    ("palisade-storage", &["rusqlite", "axum", "reqwest"], "no engine behind the traits"),
    ("palisade-service", &["axum", "rusqlite", "reqwest"], "the domain knows no HTTP or SQL"),
    ("palisade-federation", &["axum", "rusqlite"], "federation talks to services, not SQL"),
    (
        "palisade-api",
        &["rusqlite", "palisade-storage", "palisade-storage-sqlite"],
        "handlers see services, not storage",
    ),
    ("palisade-storage-sqlite", &["axum", "reqwest"], "storage only"),
    ("palisade-net", &["axum", "rusqlite", "palisade-storage"], "a client, nothing more"),
    ("palisade-push", &["axum", "rusqlite", "palisade-storage"], "delivery, not state"),
];

#[test]
fn crates_depend_only_downwards() {
    let graph = dependencies();
    let layer = |name: &str| LAYERS.iter().position(|layer| layer.contains(&name));
    for (name, deps) in &graph {
        let Some(own) = layer(name) else { continue };
        for dep in deps {
            if let Some(theirs) = layer(dep) {
                assert!(theirs < own, "{name} depends on {dep}, which is not below it");
            }
        }
    }
    for name in LAYERS.iter().flat_map(|layer| layer.iter()) {
        assert!(graph.contains_key(*name), "{name} is not in the workspace any more");
    }
}

#[test]
fn crates_lack_what_their_invariants_exclude() {
    let graph = dependencies();
    for (name, absent, why) in ABSENT {
        let deps = &graph[*name];
        for dep in *absent {
            assert!(!deps.iter().any(|d| d == dep), "{name} depends on {dep}: {why}");
        }
    }
}

#[test]
fn only_the_sqlite_crate_speaks_sql_and_nothing_depends_on_test_or_bench_crates() {
    let graph = dependencies();
    for (name, deps) in &graph {
        if name != "palisade-storage-sqlite" {
            assert!(!deps.iter().any(|d| d == "rusqlite"), "{name} links SQLite");
        }
        for outside in ["palisade-sdk-tests", "palisade-bench"] {
            assert!(!deps.iter().any(|d| d == outside), "{name} depends on {outside}");
        }
    }
    let bench = &graph["palisade-bench"];
    assert!(!bench.iter().any(|d| d.starts_with("palisade")), "the bench measures any server");
}

#[test]
fn client_handlers_reach_other_servers_only_through_services() {
    let client = Path::new(env!("CARGO_MANIFEST_DIR")).join("../palisade-api/src/client");
    for entry in std::fs::read_dir(client).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for needle in ["palisade_federation", "state.federation"] {
            assert!(!text.contains(needle), "{} uses federation ({needle})", path.display());
        }
    }
}

/// Every `.rs` file under `dir`, recursively.
fn sources(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// Services answer in types (ruma's, or their own structs), never in an untyped JSON tree:
/// the type is the contract, and a tree is parsed and serialised again on every request. JSON
/// nobody looks inside travels as text (`RawValue`, ruma's `Raw`).
#[test]
fn no_public_service_function_returns_an_untyped_json_value() {
    let services = Path::new(env!("CARGO_MANIFEST_DIR")).join("../palisade-service/src");
    let mut offenders = Vec::new();
    for path in sources(&services) {
        let text = std::fs::read_to_string(&path).unwrap();
        for (at, _) in text.match_indices("pub async fn ").chain(text.match_indices("pub fn ")) {
            let signature = &text[at..at + text[at..].find(['{', ';']).unwrap()];
            let Some((_, returns)) = signature.split_once("->") else { continue };
            let untyped = returns
                .split(|c: char| !c.is_alphanumeric() && c != '_')
                .any(|word| word == "Value");
            if untyped {
                offenders.push(format!("{}: {}", path.display(), signature.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "services returning serde_json::Value:\n{}",
        offenders.join("\n")
    );
}

/// Each store trait belongs to one service (a module of palisade-service; `rooms/` is one):
/// another service that needs its data asks that service, so the data's rules live in one
/// place. Device trust is the one exception: it decides over device rows and keys alike, and
/// the account and key services depend on it, so it cannot ask them.
#[test]
fn each_store_belongs_to_one_service() {
    const SHARED: &[(&str, &str)] = &[("AccountStore", "trust"), ("E2eeStore", "trust")];
    let services = Path::new(env!("CARGO_MANIFEST_DIR")).join("../palisade-service/src");
    let mut holders: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for path in sources(&services) {
        let module = path.strip_prefix(&services).unwrap().components().next().unwrap();
        let module = module.as_os_str().to_str().unwrap().trim_end_matches(".rs").to_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        for (at, _) in text.match_indices("Arc<dyn ") {
            let name: String = text[at + 8..].chars().take_while(|c| c.is_alphanumeric()).collect();
            if name.ends_with("Store") && !SHARED.contains(&(name.as_str(), module.as_str())) {
                holders.entry(name).or_default().insert(module.clone());
            }
        }
    }
    assert!(holders.contains_key("RoomStore"), "the scan finds the stores: {holders:?}");
    for (store, modules) in holders {
        assert_eq!(modules.len(), 1, "{store} is held by {modules:?}");
    }
}

/// A client handler parses, makes one service call and shapes the response: the use case
/// lives in the service, where tests and other callers reach it. Checking a client address's
/// rate limit (an edge concern) does not count.
#[test]
fn each_client_handler_makes_one_service_call() {
    let client = Path::new(env!("CARGO_MANIFEST_DIR")).join("../palisade-api/src/client");
    let mut offenders = Vec::new();
    for path in sources(&client) {
        let text = std::fs::read_to_string(&path).unwrap();
        for handler in text.split("\nasync fn ").skip(1) {
            let name = handler.split('(').next().unwrap();
            let body = handler.split("\n}\n").next().unwrap();
            let calls: Vec<String> = body
                .match_indices("state")
                .filter_map(|(at, _)| service_call(&body[at + 5..]))
                .filter(|call| !call.starts_with("rate_limiter."))
                .collect();
            if calls.len() > 1 {
                offenders.push(format!("{}: {name} calls {calls:?}", path.display()));
            }
        }
    }
    assert!(offenders.is_empty(), "handlers orchestrating services:\n{}", offenders.join("\n"));
}

/// `.service.method(` (whitespace allowed before the dots) at the start of `text`, as
/// `service.method`.
fn service_call(text: &str) -> Option<String> {
    /// `.ident` after optional whitespace: the identifier and what follows it.
    fn field(text: &str) -> Option<(&str, &str)> {
        let rest = text.trim_start().strip_prefix('.')?;
        let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
        (end > 0).then(|| rest.split_at(end))
    }
    let (service, rest) = field(text)?;
    let (method, rest) = field(rest)?;
    rest.starts_with('(').then(|| format!("{service}.{method}"))
}
