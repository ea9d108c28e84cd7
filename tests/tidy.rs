//! Tidy checks: the architecture's invariants and the docs, checked against the source tree
//! so code and documentation cannot drift apart silently.

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap().to_string_lossy().into_owned()
}

/// Lines of code, without comments, so a doc comment may name what it must not import.
fn code(p: &Path) -> String {
    fs::read_to_string(p).unwrap().lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

#[test]
fn only_http_imports_actix() {
    let offenders: Vec<String> = rust_files(&root().join("src"))
        .into_iter()
        .filter(|p| !rel(p).starts_with("src/http/"))
        .filter(|p| without_strings(&code(p)).contains("actix_"))
        .map(|p| rel(&p))
        .collect();
    assert!(offenders.is_empty(), "actix outside src/http: {offenders:?}");
}

/// Source text with its string literals blanked: a log filter may name a crate's log target
/// (`"actix_http::h1::dispatcher=off"`) without importing it.
fn without_strings(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_str, mut escaped) = (false, false);
    // A quote as a char literal opens no string.
    for c in text.replace("'\"'", "''").chars() {
        match (in_str, c) {
            (true, _) if escaped => escaped = false,
            (true, '\\') => escaped = true,
            (_, '"') => in_str = !in_str,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

/// A `redis::` path that is not our own `store::redis` module.
fn uses_redis_crate(text: &str) -> bool {
    text.match_indices("redis::").any(|(i, _)| !text[..i].ends_with("store::"))
}

#[test]
fn only_the_redis_store_imports_redis() {
    let offenders: Vec<String> = rust_files(&root().join("src"))
        .into_iter()
        .filter(|p| !rel(p).starts_with("src/store/redis"))
        .filter(|p| uses_redis_crate(&code(p)))
        .map(|p| rel(&p))
        .collect();
    assert!(offenders.is_empty(), "redis outside src/store/redis*: {offenders:?}");
}

#[test]
fn the_store_imports_nothing_above_it() {
    let above = ["flow", "http", "oauth", "tokens", "profile", "session", "connections", "state", "settings"];
    for p in rust_files(&root().join("src/store")) {
        let text = code(&p);
        for m in above {
            assert!(!text.contains(&format!("crate::{m}")), "{} imports crate::{m}", rel(&p));
        }
    }
}

#[test]
fn flow_builds_no_http_response_and_oauth_knows_no_flow() {
    for p in rust_files(&root().join("src/flow")) {
        assert!(!code(&p).contains("crate::http"), "{} reaches into http", rel(&p));
    }
    for dir in ["src/oauth", "src/tokens", "src/profile", "src/session"] {
        for p in rust_files(&root().join(dir)) {
            let text = code(&p);
            assert!(!text.contains("crate::http") && !text.contains("crate::flow"), "{} reaches up", rel(&p));
        }
    }
}

/// Connector crates under connectors/ (the SDK excepted): directory name = connector type.
fn connector_dirs() -> Vec<String> {
    let mut dirs: Vec<String> = fs::read_dir(root().join("connectors"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|n| n != "connector")
        .collect();
    dirs.sort();
    dirs
}

/// Documented thin wrappers, the only connectors allowed to build on another
/// (connectors/README.md says so in their rows).
const THIN_WRAPPERS: &[(&str, &str)] = &[("google", "oidc"), ("facebook", "oauth2"), ("adfs", "saml")];

#[test]
fn connector_crates_depend_only_on_the_sdk_and_protocol_crates() {
    let readme = fs::read_to_string(root().join("connectors/README.md")).unwrap();
    for (wrapper, inner) in THIN_WRAPPERS {
        let row = readme.lines().find(|l| l.starts_with(&format!("| `{wrapper}` |"))).unwrap_or_default();
        assert!(
            row.contains(&format!("thin wrapper over `{inner}`")),
            "connectors/README.md documents {wrapper} -> {inner}"
        );
    }
    let forbidden = ["gatehouse =", "gatehouse = ", "actix", "redis"];
    for dir in connector_dirs() {
        let manifest = fs::read_to_string(root().join("connectors").join(&dir).join("Cargo.toml")).unwrap();
        let deps = manifest.split("[dependencies]").nth(1).unwrap_or("");
        for f in forbidden {
            assert!(!deps.contains(f), "connectors/{dir} depends on {f}");
        }
        for other in connector_dirs().iter().filter(|o| **o != dir) {
            let wrapper = THIN_WRAPPERS.contains(&(dir.as_str(), other.as_str()));
            assert!(
                wrapper || !deps.contains(&format!("gatehouse-connector-{other}")),
                "connectors/{dir} depends on connector {other}"
            );
        }
        let src = rust_files(&root().join("connectors").join(&dir).join("src"));
        assert!(src.iter().all(|p| !code(p).contains("gatehouse::")), "connectors/{dir} reaches into the core");
    }
}

#[test]
fn connectors_registry_and_docs_agree() {
    let registry = fs::read_to_string(root().join("src/connections/registry.rs")).unwrap();
    let table = registry.split("pub const CONNECTORS").nth(1).unwrap().split("];").next().unwrap();
    let mut registered: Vec<String> =
        table.split("(\"").skip(1).map(|s| s.split('"').next().unwrap().to_owned()).collect();
    registered.sort();
    assert_eq!(registered, connector_dirs(), "every connector crate has one registry row and vice versa");

    let readme = fs::read_to_string(root().join("connectors/README.md")).unwrap();
    for c in &registered {
        assert!(readme.contains(&format!("| `{c}` |")), "connectors/README.md has no table row for `{c}`");
        let manifest = fs::read_to_string(root().join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains(&format!("gatehouse-connector-{c}")),
            "root Cargo.toml does not depend on connector {c}"
        );
    }
}

#[test]
fn architecture_md_maps_every_module() {
    let arch = fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    for entry in fs::read_dir(root().join("src")).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let shown = if p.is_dir() { format!("`src/{name}/`") } else { format!("`src/{name}`") };
        assert!(arch.contains(&shown), "ARCHITECTURE.md's code map does not mention {shown}");
    }
}

#[test]
fn no_placeholders_in_the_tree() {
    let mut files = rust_files(&root().join("src"));
    files.extend(rust_files(&root().join("connectors")));
    for p in files {
        let text = code(&p);
        // Spelled in pieces so this file does not match its own search.
        for macro_name in ["todo", "unimplemented", "dbg"] {
            let bad = format!("{macro_name}!(");
            assert!(!text.contains(&bad), "{} contains {bad}", rel(&p));
        }
    }
}

#[test]
fn example_config_is_valid_and_documents_every_section() {
    let text = fs::read_to_string(root().join("fixtures/config/example.toml")).unwrap();
    let env = |name: &str| Some(format!("value-of-{name}-0123456789-0123456789"));
    let settings = gatehouse::Settings::parse(&text, &env).unwrap_or_else(|e| panic!("example.toml:\n{e}"));
    gatehouse::connections::Connections::open(&settings).unwrap_or_else(|e| panic!("example.toml connections: {e:?}"));
    for section in [
        "[log]",
        "[store]",
        "[keys]",
        "[tokens]",
        "[http]",
        "[session]",
        "[login]",
        "[[apis]]",
        "[[clients]]",
        "[[connections]]",
    ] {
        assert!(text.contains(section), "example.toml lacks {section}");
    }
}

#[test]
fn the_connector_guide_shows_the_tested_example() {
    let test = fs::read_to_string(root().join("tests/example_connector.rs")).unwrap();
    let example = test.split("// example:start\n").nth(1).unwrap().split("// example:end").next().unwrap();
    let readme = fs::read_to_string(root().join("connectors/README.md")).unwrap();
    assert!(
        readme.contains(&format!("```rust\n{example}```")),
        "connectors/README.md must show tests/example_connector.rs"
    );
}

/// The reviewed exceptions to `unsafe_code = "deny"`: the file and how many `unsafe` it holds.
const REVIEWED_UNSAFE: &[(&str, usize)] = &[
    // Loading QuickJS bytecode Gatehouse compiled itself.
    ("src/actions/sandbox.rs", 1),
    // One FFI declaration and one call that switch off libxmlsec1's own stderr printing.
    ("connectors/saml/src/quiet.rs", 2),
];

#[test]
fn unsafe_code_is_the_reviewed_exceptions_only() {
    let mut files = rust_files(&root().join("src"));
    files.extend(rust_files(&root().join("connectors")));
    let mut uses: std::collections::BTreeMap<String, usize> = Default::default();
    for p in files {
        let text = code(&p);
        let n = text.match_indices("unsafe ").count();
        if n > 0 {
            uses.insert(rel(&p), n);
        }
        if text.contains("allow(unsafe_code)") {
            assert!(REVIEWED_UNSAFE.iter().any(|(f, _)| *f == rel(&p)), "unsafe_code allowed in {}", rel(&p));
        }
    }
    let reviewed = REVIEWED_UNSAFE.iter().map(|(f, n)| ((*f).to_owned(), *n)).collect();
    assert_eq!(uses, reviewed, "unsafe only where reviewed, as often as reviewed");
}

#[test]
fn http_responses_are_built_only_in_src_http() {
    let offenders: Vec<String> = rust_files(&root().join("src"))
        .into_iter()
        .filter(|p| !rel(p).starts_with("src/http/"))
        .filter(|p| ["HttpResponse", "StatusCode", "Responder"].iter().any(|t| code(p).contains(t)))
        .map(|p| rel(&p))
        .collect();
    assert!(offenders.is_empty(), "HTTP responses built outside src/http: {offenders:?}");
}

/// The domain modules past `http` and `settings`, where ids are typed (invariant 6): `src/flow`
/// without its tests (they build requests from strings, as a client would), and `src/oauth`,
/// `src/profile`, `src/session`, `src/tokens`, `src/actions`.
fn typed_sources() -> Vec<PathBuf> {
    ["src/flow", "src/oauth", "src/profile", "src/session", "src/tokens", "src/actions"]
        .iter()
        .flat_map(|d| rust_files(&root().join(d)))
        .filter(|p| !rel(p).starts_with("src/flow/tests/"))
        .collect()
}

/// Where a raw string id is right, each with its reason: (file, struct, why).
const RAW_ID_EXCEPTIONS: &[(&str, &str, &str)] = &[
    ("src/actions/event.rs", "SessionFacts", "event.session.id: a session's id, not one of the ids typed here"),
    ("src/actions/event.rs", "RefreshFacts", "event.refresh_token.id: a grant's id, not one of the ids typed here"),
    ("src/oauth/token.rs", "TokenResponse", "the token response body: `scope` is RFC 6749 5.1's string"),
    ("src/tokens/mod.rs", "AccessClaims", "the access token's claims: RFC 9068's `client_id` and `scope`"),
];

/// Whether a line of `file` inside struct `in_struct` is one of the exceptions.
fn raw_id_exception(file: &str, in_struct: Option<&str>) -> bool {
    RAW_ID_EXCEPTIONS.iter().any(|(f, s, _)| *f == file && Some(*s) == in_struct)
}

/// Whether `line` declares one of the id names with a raw string type (`id: &str,`,
/// `id: &'a str,`), not a value (`id: String::new()`).
fn declares_raw_id(line: &str) -> bool {
    // Lifetimes do not change what a type is: `&'a str` is `&str`.
    let mut line = line.to_owned();
    while let Some(i) = line.find("&'") {
        let end = line[i + 2..].find(' ').map_or(line.len(), |j| i + 2 + j + 1);
        line.replace_range(i + 1..end, "");
    }
    let line = line.as_str();
    let names = [
        "client_id",
        "client",
        "connection",
        "connection_id",
        "conn_id",
        "conn",
        "txn_id",
        "txn",
        "transaction_id",
        "transaction",
        "id",
        "redirect_uri",
        "redirect",
        "post_logout_redirect_uri",
        "scope",
        "scopes",
    ];
    let raw = [
        ": &str",
        ": String",
        ": Option<&str>",
        ": Option<String>",
        ": &String",
        ": Vec<String>",
        ": Vec<&str>",
        ": &[String]",
        ": &[&str]",
    ];
    names.iter().any(|name| {
        raw.iter().any(|ty| {
            let pat = format!("{name}{ty}");
            line.match_indices(&pat).any(|(i, _)| {
                let before = if i == 0 { b' ' } else { line.as_bytes()[i - 1] };
                let after = line[i + pat.len()..].chars().next().unwrap_or(' ');
                !before.is_ascii_alphanumeric() && before != b'_' && after != ':'
            })
        })
    })
}

#[test]
fn raw_id_rule_sees_what_it_claims() {
    assert!(declares_raw_id("    Basic { id: String, secret: Secret<String> },"));
    assert!(declares_raw_id("pub fn f(client_id: &str) -> bool {"));
    assert!(declares_raw_id("    pub scope: String,"));
    assert!(declares_raw_id("fn g(redirect_uri: Option<&str>)"));
    assert!(declares_raw_id("    pub connection: &'a str,"), "a lifetime hides nothing");
    assert!(declares_raw_id("    Refresh { scopes: Vec<&'a str>, refresh_token: RefreshFacts<'a> },"));
    assert!(!declares_raw_id("    let id: String::new();"), "a value, not a declaration");
    assert!(!declares_raw_id("    user_id: &str,"), "another name");
    assert!(!declares_raw_id("    client_id: ClientId,"));
}

#[test]
fn domain_modules_take_no_raw_string_ids() {
    // A parameter or field naming a client, redirect URI, scope, connection or transaction
    // must be typed; the exceptions above are named, each with its reason.
    for p in typed_sources() {
        let file = rel(&p);
        let mut in_struct: Option<String> = None;
        for (n, line) in code(&p).lines().enumerate() {
            if let Some(rest) = line.split("struct ").nth(1).filter(|_| !line.trim_start().starts_with("//")) {
                in_struct = rest.split(|c: char| !c.is_alphanumeric() && c != '_').next().map(str::to_owned);
            } else if line == "}" {
                in_struct = None;
            }
            if raw_id_exception(&file, in_struct.as_deref()) {
                continue;
            }
            assert!(!declares_raw_id(line), "{file}:{}: a raw string id: {}", n + 1, line.trim());
            // Clients are looked up by `ClientId` through `Settings::known_clients`.
            assert!(!line.contains("settings.client("), "{file}:{}: a client looked up by string", n + 1);
        }
    }
    // Each exception names a struct that exists where it says and still holds a raw id, so
    // none outlives its reason.
    for (file, name, why) in RAW_ID_EXCEPTIONS {
        let text = code(&root().join(file));
        let body = text
            .match_indices(&format!("struct {name}"))
            .map(|(i, m)| &text[i + m.len()..])
            .find(|rest| rest.starts_with(|c: char| !c.is_alphanumeric() && c != '_'))
            .and_then(|rest| rest.split("\n}").next())
            .unwrap_or_else(|| panic!("{file}: no struct {name} ({why})"));
        assert!(body.lines().any(declares_raw_id), "{file}: {name} holds no raw id any more: drop its exception");
    }
}

#[test]
fn issue_code_has_one_caller_the_dispatcher() {
    let callers: Vec<String> = rust_files(&root().join("src"))
        .into_iter()
        .filter(|p| code(p).contains("issue_code("))
        .map(|p| rel(&p))
        .filter(|p| p != "src/oauth/token.rs")
        .collect();
    assert_eq!(callers, ["src/flow/resume.rs"], "issue_code is called by flow::resume alone");
    let resume = code(&root().join("src/flow/resume.rs"));
    assert_eq!(resume.matches("issue_code(").count(), 1, "one call, in one place");
}

#[test]
fn flow_files_stay_small() {
    for p in rust_files(&root().join("src/flow")) {
        let lines = fs::read_to_string(&p).unwrap().lines().count();
        assert!(lines <= 500, "{} has {lines} lines; split it by what it does", rel(&p));
    }
}

/// Where each invariant of ARCHITECTURE.md is kept: the tests (in this file where the source
/// tree shows it, elsewhere where only behaviour does). `every_invariant_is_kept_by_a_test`
/// checks that the list covers ARCHITECTURE.md and names tests that exist.
const INVARIANT_TESTS: &[(u32, &[&str])] = &[
    (1, &["tidy::only_http_imports_actix"]),
    (2, &["tidy::only_the_redis_store_imports_redis"]),
    (3, &["tidy::connector_crates_depend_only_on_the_sdk_and_protocol_crates"]),
    (
        4,
        &["tidy::connectors_keep_no_per_login_memory", "multi_node::a_login_started_on_one_node_finishes_on_the_other"],
    ),
    (5, &["tidy::the_store_imports_nothing_above_it", "tidy::flow_builds_no_http_response_and_oauth_knows_no_flow"]),
    (6, &["tidy::domain_modules_take_no_raw_string_ids", "tidy::store_records_hold_typed_values"]),
    (
        7,
        &[
            "tidy::single_use_artifacts_have_only_atomic_consumers",
            "redis_store::single_server_passes_the_conformance_suite",
        ],
    ),
    (
        8,
        &[
            "tidy::secrets_have_no_display_and_a_redacted_debug",
            "at_rest::redis_and_the_logs_hold_no_secret_after_logins",
        ],
    ),
    (9, &["tidy::time_comes_from_the_injected_clock"]),
    (10, &["tidy::errors_become_http_in_one_place", "tidy::http_responses_are_built_only_in_src_http"]),
    (11, &["tidy::issue_code_has_one_caller_the_dispatcher"]),
];

#[test]
fn every_invariant_is_kept_by_a_test() {
    let arch = fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let section = arch.split("## Invariants").nth(1).unwrap().split("\n## ").next().unwrap();
    let numbers: Vec<u32> =
        section.lines().filter_map(|l| l.split_once(". ").and_then(|(n, _)| n.trim().parse().ok())).collect();
    assert_eq!(numbers, (1..=11).collect::<Vec<_>>(), "ARCHITECTURE.md's invariants");
    let listed: Vec<u32> = INVARIANT_TESTS.iter().map(|(n, _)| *n).collect();
    assert_eq!(listed, numbers, "INVARIANT_TESTS covers every invariant, in order");
    for (n, tests) in INVARIANT_TESTS {
        for t in *tests {
            let (module, name) = t.split_once("::").unwrap();
            let text = fs::read_to_string(root().join(format!("tests/{module}.rs"))).unwrap();
            assert!(text.contains(&format!("fn {name}(")), "invariant {n}: no test {t}");
        }
    }
}

/// Invariant 4: a connector's per-login facts travel in its `ConnectorState`; a connector
/// holding a map in a lock is keeping logins in memory (its caches are single values: the
/// discovery document, the IdP metadata).
#[test]
fn connectors_keep_no_per_login_memory() {
    for p in rust_files(&root().join("connectors")) {
        // The testkits' fake upstreams are test peers, not connectors.
        if rel(&p).contains("/tests/") || rel(&p).contains("/benches/") || rel(&p).contains("testkit") {
            continue;
        }
        let text = code(&p).replace(' ', "");
        for held in ["HashMap", "BTreeMap", "HashSet", "BTreeSet", "Vec<", "VecDeque", "DashMap", "LruCache"] {
            // (A thread-local RefCell is scratch memory of one thread, not shared by requests.)
            for lock in ["Mutex<", "RwLock<", "OnceLock<", "LazyLock<"] {
                let bad = format!("{lock}{held}");
                assert!(!text.contains(&bad), "{} keeps a {bad}…> across logins", rel(&p));
            }
        }
        assert!(!text.contains("staticmut"), "{}: a static mut", rel(&p));
    }
}

/// Invariant 6, where the tree shows it: what the store keeps of a request is typed.
#[test]
fn store_records_hold_typed_values() {
    let text = code(&root().join("src/store/records.rs")).replace(' ', "");
    for (field, typed) in [
        ("client_id:", "ClientId"),
        ("redirect_uri:", "RedirectUri"),
        ("scopes:", "Scopes"),
        ("connection:", "ConnectionId"),
    ] {
        for raw in ["String", "&str", "Option<String>"] {
            assert!(!text.contains(&format!("{field}{raw},")), "records.rs: {field} {raw} instead of {typed}");
        }
        assert!(text.contains(&format!("{field}{typed}")) || text.contains(&format!("{field}Option<{typed}>")));
    }
}

/// Invariant 7: each single-use store has its one atomic consumer and no separate delete a
/// caller could pair with a read (read-then-delete lets two nodes both succeed).
#[test]
fn single_use_artifacts_have_only_atomic_consumers() {
    let text = code(&root().join("src/store/mod.rs"));
    for (store, consumer) in [
        ("CodeStore", "fn redeem("),
        ("TransactionStore", "fn take("),
        ("GrantStore", "fn rotate("),
        ("ReplayCache", "fn insert_once("),
        ("LogoutStore", "fn take("),
    ] {
        let body = text
            .split(&format!("pub trait {store}"))
            .nth(1)
            .unwrap_or_else(|| panic!("no trait {store}"))
            .split("\n}")
            .next()
            .unwrap();
        assert!(body.contains(consumer), "{store} lacks {consumer}");
        if store != "GrantStore" {
            assert!(!body.contains("fn delete(") && !body.contains("fn remove("), "{store} has a separate delete");
        }
    }
}

/// Invariant 8: no `Display` for secrets, a redacted `Debug`.
#[test]
fn secrets_have_no_display_and_a_redacted_debug() {
    let value = "hunter2-secret-value";
    assert_eq!(format!("{:?}", gatehouse_connector::Secret::new(value.to_owned())), "[redacted]");
    let hash = gatehouse::types::SecretHash::of(value);
    assert!(!format!("{hash:?}").contains(&hash.to_hex()), "a hash's Debug shows a prefix only");
    let mut files = rust_files(&root().join("src"));
    files.extend(rust_files(&root().join("connectors")));
    for p in files {
        let text = code(&p).replace(' ', "");
        for ty in ["Secret<", "SecretforSecret", "forSecret{", "forSecretHash{"] {
            assert!(!text.contains(&format!("Displayfor{ty}")), "{}: Display for a secret type", rel(&p));
        }
    }
}

/// Places that read the system time themselves, each named by file and call: the clock only.
const OWN_TIME: &[(&str, &str)] = &[("src/clock.rs", "")];

/// Invariant 9: everything else asks the injected `Clock` (unit tests included in the file
/// may pin their own instants).
#[test]
fn time_comes_from_the_injected_clock() {
    let mut files = rust_files(&root().join("src"));
    files.extend(
        rust_files(&root().join("connectors"))
            .into_iter()
            .filter(|p| !rel(p).contains("/tests/") && !rel(p).contains("/benches/")),
    );
    for p in files {
        let file = rel(&p);
        if file == "src/clock.rs" {
            continue;
        }
        let text = code(&p);
        let text = text.split("#[cfg(test)]").next().unwrap();
        for line in text.lines() {
            if OWN_TIME.iter().any(|(f, call)| *f == file && !call.is_empty() && line.contains(call)) {
                continue;
            }
            for call in ["SystemTime::now()", "Utc::now()", "OffsetDateTime::now_utc()", "Local::now()"] {
                assert!(!line.contains(call), "{file} reads the time itself ({call}): use the Clock: {line}");
            }
        }
    }
}

/// Invariant 10: the error types become statuses in `src/http/error.rs` only.
#[test]
fn errors_become_http_in_one_place() {
    for p in rust_files(&root().join("src/http")) {
        if rel(&p) == "src/http/error.rs" {
            continue;
        }
        let text = code(&p);
        for matched in ["FlowError::", "StoreError::", "ProfileError::", "ConnectorError::"] {
            // Naming a variant to refuse a malformed path is making the error, not mapping it:
            // a match arm on one (`FlowError::X =>`) is the second mapping this forbids.
            let arm = text.lines().any(|l| l.contains(matched) && l.contains("=>"));
            assert!(!arm, "{} maps {matched} itself", rel(&p));
        }
        assert!(!text.contains("fn status_of"), "{}: a second status mapping", rel(&p));
    }
    for p in rust_files(&root().join("src")).into_iter().filter(|p| !rel(p).starts_with("src/http/")) {
        assert!(!code(&p).contains("StatusCode"), "{} speaks HTTP statuses", rel(&p));
    }
}

/// Secrets compared by value go through the constant-time function: client secrets, CSRF
/// tokens, browser bindings and PKCE verifiers; and that function is `subtle`'s.
#[test]
fn secret_comparisons_are_constant_time() {
    let types = code(&root().join("src/types.rs"));
    let ct = types.split("pub fn ct_eq(").nth(1).expect("types::ct_eq").split("\n}").next().unwrap();
    assert!(ct.contains("subtle::ConstantTimeEq::ct_eq"), "ct_eq is subtle's: {ct}");
    let verify = types.split("pub fn verify(&self, verifier: &str)").nth(1).unwrap().split("\n    }").next().unwrap();
    assert!(verify.contains("ConstantTimeEq::ct_eq"), "PKCE verification is constant time");
    let clients = code(&root().join("src/oauth/clients.rs"));
    assert!(clients.contains("ct_eq(expected, &secret_digest(given))"), "client secrets compared with ct_eq");
    let flow: String = rust_files(&root().join("src/flow")).iter().map(|p| code(p)).collect();
    assert!(flow.contains("ct_eq(c.as_bytes(), txn.csrf.as_bytes())"), "CSRF tokens compared with ct_eq");
    assert!(flow.contains("ct_eq(&h.0, &txn.browser.0)"), "browser bindings compared with ct_eq");
    assert!(flow.contains("ct_eq(c.as_bytes(), logout_csrf(cookie).as_bytes())"), "the logout CSRF too");
    // And no secret is compared with `==` anywhere.
    let mut files = rust_files(&root().join("src"));
    files.extend(rust_files(&root().join("connectors")).into_iter().filter(|p| !rel(p).contains("/tests/")));
    for p in files {
        for line in code(&p).lines() {
            let l = line.replace(' ', "");
            for bad in ["csrf==", "==txn.csrf", "secret==", "==secret", "client_secret==", "expose()=="] {
                assert!(!l.contains(bad), "{}: `{bad}` compares a secret in variable time: {line}", rel(&p));
            }
        }
    }
}

/// A fresh machine runs what the README says: every cargo call of the scripts and CI is
/// `--locked` (fmt has no lock file to honour), `scripts/test` runs nextest (installing it
/// when missing) and never something else, and the toolchain is pinned with its linters.
#[test]
fn scripts_build_locked_with_the_pinned_toolchain() {
    for script in ["scripts/run", "scripts/setup", "scripts/test", ".ci/run"] {
        let text = fs::read_to_string(root().join(script)).unwrap();
        for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
            let Some(at) = line.find("cargo ") else { continue };
            let call = &line[at..];
            if call.starts_with("cargo fmt") || call.starts_with("cargo nextest --version") {
                continue;
            }
            assert!(call.contains("--locked"), "{script}: `{call}` without --locked");
        }
    }
    let test = fs::read_to_string(root().join("scripts/test")).unwrap();
    assert!(!test.contains("cargo test"), "scripts/test runs nextest, not cargo test");
    assert!(test.contains("cargo install --locked cargo-nextest"), "scripts/test installs nextest when missing");
    let toolchain = fs::read_to_string(root().join("rust-toolchain.toml")).unwrap();
    let toml: toml::Table = toolchain.parse().unwrap();
    let t = &toml["toolchain"];
    assert!(t["channel"].as_str().is_some_and(|c| c.split('.').count() == 3), "an exact release: {t}");
    let components: Vec<&str> = t["components"].as_array().unwrap().iter().filter_map(|c| c.as_str()).collect();
    assert!(components.contains(&"rustfmt") && components.contains(&"clippy"), "{components:?}");
    let nextest = fs::read_to_string(root().join(".config/nextest.toml")).unwrap();
    assert!(nextest.contains("slow-timeout") && nextest.contains("terminate-after"), "hang protection");
    assert!(nextest.contains("chromium = { max-threads = 1 }"), "one Chromium at a time");
}

#[test]
fn every_connector_runs_the_conformance_kit() {
    for dir in connector_dirs() {
        let path = root().join("connectors").join(&dir).join("tests/conformance.rs");
        let text =
            fs::read_to_string(&path).unwrap_or_else(|_| panic!("connectors/{dir}/tests/conformance.rs is missing"));
        assert!(
            text.contains("testkit::conformance::{Harness, run}") && text.contains("run(&"),
            "connectors/{dir}/tests/conformance.rs must run the SDK's conformance kit"
        );
    }
}

#[test]
fn architecture_names_every_settings_file() {
    let architecture = fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let row = architecture.lines().find(|l| l.starts_with("| `src/settings/` |")).expect("a settings row");
    for p in rust_files(&root().join("src/settings")) {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name != "mod.rs" && name != "tests.rs" {
            assert!(row.contains(&format!("`{name}`")), "ARCHITECTURE.md's settings row does not name {name}");
        }
    }
}

/// Every wait of the suite on a child process has a deadline (`harness::output_within`,
/// `first_line_within`, the readiness loops), and the npm peers run on the Node.js the
/// harness checked (`harness::node()`, >= 20), not whatever `node` is first on PATH.
#[test]
fn the_suite_waits_on_children_only_with_a_deadline() {
    let own = root().join("tests/harness/process.rs");
    let this = root().join("tests/tidy.rs");
    // The suite's own sources (tests/peers holds the peers' node_modules and venvs).
    let mut files: Vec<PathBuf> = fs::read_dir(root().join("tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.extend(rust_files(&root().join("tests/harness")));
    for p in files.into_iter().filter(|p| *p != own && *p != this) {
        for (n, line) in code(&p).lines().enumerate() {
            for unbounded in [".output()", ".wait_with_output()", "Command::new(\"node\")"] {
                assert!(
                    !line.contains(unbounded),
                    "{}:{}: {unbounded} without a deadline: {}",
                    rel(&p),
                    n + 1,
                    line.trim()
                );
            }
        }
    }
}
