use super::*;

fn env(name: &str) -> Option<String> {
    (name == "WEB_SECRET").then(|| "s".repeat(40))
}

const GOOD: &str = r#"
issuer = "https://login.example.com/"
[[clients]]
client_id = "web"
client_secret = "${WEB_SECRET}"
redirect_uris = ["https://app.example.com/cb"]
connections = ["users"]
[[connections]]
id = "users"
type = "static"
options = { users = [] }
"#;

#[test]
fn a_good_file_parses_with_defaults() {
    let s = Settings::parse(GOOD, &env).unwrap();
    assert_eq!(s.issuer.as_str(), "https://login.example.com/", "kept verbatim, as Auth0's SDKs expect");
    assert_eq!(s.issuer.join("/token"), "https://login.example.com/token");
    assert!(s.session.cookie_secure, "https issuer: Secure cookies");
    assert_eq!(s.tokens.code_ttl, 60);
    let web = s.client("web").unwrap();
    assert_eq!(web.auth_method, AuthMethod::ClientSecretBasic);
    assert_eq!(web.grant_types, vec![GrantType::AuthorizationCode, GrantType::RefreshToken]);
    assert!(web.require_pkce);
    assert_eq!(web.secret_digest, Some(secret_digest(&Secret::new("s".repeat(40)))));
}

#[test]
fn every_error_is_reported_at_once_with_its_path() {
    let text = r#"
issuer = "ftp://nope"
colour = "blue"
[tokens]
code_ttl = 0
[keys]
algorithm = "HS256"
[[clients]]
client_id = "web"
client_secret = "${MISSING}"
redirect_uris = ["https://ok.example/cb", "https://bad.example/cb#frag"]
connections = ["nowhere"]
grant_types = ["implicit"]
[[clients]]
client_id = "spa"
require_pkce = false
redirect_uris = ["https://spa.example/"]
[[connections]]
id = "Bad Id"
type = "static"
"#;
    let errors = Settings::parse(text, &env).unwrap_err().0;
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    for expected in [
        "issuer",
        "colour",
        "tokens.code_ttl",
        "keys.algorithm",
        "clients[0].client_secret",
        "clients[0].redirect_uris[1]",
        "clients[0].grant_types[0]",
        "clients[1].require_pkce",
        "connections[0].id",
    ] {
        assert!(paths.contains(&expected), "missing error at {expected}; got {errors:#?}");
    }
}

#[test]
fn references_between_sections_are_checked() {
    let text =
        GOOD.replace("connections = [\"users\"]", "connections = [\"users\", \"ghost\"]\napis = [\"https://nope\"]");
    let errors = Settings::parse(&text, &env).unwrap_err().0;
    assert!(errors.iter().any(|e| e.path == "clients[0].connections[1]"));
    assert!(errors.iter().any(|e| e.path == "clients[0].apis[0]"));
}

#[test]
fn a_short_secret_and_a_syntax_error_are_refused() {
    let short = GOOD.replace("${WEB_SECRET}", "short");
    assert!(Settings::parse(&short, &env).unwrap_err().0.iter().any(|e| e.path == "clients[0].client_secret"));
    let broken = Settings::parse("issuer = ", &env).unwrap_err();
    assert!(broken.0[0].path.starts_with("line "), "{broken}");
}

#[test]
fn the_embedded_default_is_valid() {
    let s = Settings::embedded();
    assert!(s.demo);
    assert_eq!(s.issuer.as_str(), "http://127.0.0.1:8080");
    let moved = s.with_issuer(crate::types::Issuer::parse("http://127.0.0.1:9999").unwrap());
    assert_eq!(moved.client("gatehouse-demo").unwrap().redirect_uris[0].as_str(), "http://127.0.0.1:9999/demo");
    // A trailing slash on the new issuer moves the redirect URIs without doubling it.
    let slashed = moved.with_issuer(crate::types::Issuer::parse("http://127.0.0.1:7777/").unwrap());
    assert_eq!(slashed.issuer.as_str(), "http://127.0.0.1:7777/");
    assert_eq!(slashed.client("gatehouse-demo").unwrap().redirect_uris[0].as_str(), "http://127.0.0.1:7777/demo");
}

#[test]
fn env_references_take_defaults() {
    let text = "issuer = \"${NOPE:-http://127.0.0.1:9000}\"\nlisten = \"${LISTEN:-127.0.0.1:1}\"";
    let s = Settings::parse(text, &|n| (n == "LISTEN").then(|| "127.0.0.1:7000".to_owned())).unwrap();
    assert_eq!(s.issuer.as_str(), "http://127.0.0.1:9000");
    assert_eq!(s.listen.port(), 7000);
}

#[test]
fn home_realm_domains_are_checked_and_unique() {
    let text = format!(
        "{GOOD}domains = [\"@Acme.Example\", \"not a domain\"]\n[[connections]]\nid = \"other\"\ntype = \"static\"\noptions = {{ users = [] }}\ndomains = [\"acme.example\"]\n"
    );
    let errors = Settings::parse(&text, &env).unwrap_err().0;
    assert!(errors.iter().any(|e| e.path == "connections[0].domains[1]"), "{errors:#?}");
    let dup = errors.iter().find(|e| e.path == "connections[1].domains").expect("a domain claimed twice");
    assert!(dup.message.contains("acme.example is already a domain of connection users"), "{}", dup.message);
    let ok = Settings::parse(&format!("{GOOD}domains = [\"@Acme.Example\"]\n"), &env).unwrap();
    assert_eq!(
        ok.connection(&ConnectionId::parse("users").unwrap()).unwrap().domains,
        ["acme.example"],
        "lowercased, without the @"
    );
}

#[test]
fn idp_initiated_logins_need_a_confidential_client_of_the_connection() {
    let with = |lines: &str| format!("{GOOD}[connections.idp_initiated]\n{lines}\n");
    let s = Settings::parse(&with("client_id = \"web\""), &env).unwrap();
    let c = s.connection(&ConnectionId::parse("users").unwrap()).unwrap();
    let target = s.idp_initiated_target(c, c.idp_initiated.as_ref().unwrap()).unwrap();
    assert_eq!(target.redirect_uri.as_str(), "https://app.example.com/cb", "the client's first redirect URI");
    assert!(target.scopes.contains("openid") && target.scopes.contains("email"));

    let public = GOOD.replace("client_secret = \"${WEB_SECRET}\"\n", "");
    let text = format!("{public}[connections.idp_initiated]\nclient_id = \"web\"\n");
    let errors = Settings::parse(&text, &env).unwrap_err().0;
    assert!(
        errors.iter().any(|e| e.path == "connections[0].idp_initiated" && e.message.contains("public")),
        "{errors:#?}"
    );
    for (lines, says) in [
        ("client_id = \"ghost\"", "not a client"),
        ("client_id = \"web\"\nredirect_uri = \"https://evil.example/cb\"", "not a redirect URI"),
        ("client_id = \"web\"\nscope = \"email\"", "openid"),
    ] {
        let errors = Settings::parse(&with(lines), &env).unwrap_err().0;
        assert!(
            errors.iter().any(|e| e.path == "connections[0].idp_initiated" && e.message.contains(says)),
            "{lines}: {errors:#?}"
        );
    }
}

#[test]
fn the_client_credentials_subject_is_the_client_id_unless_auth0s_shape_is_asked_for() {
    let s = Settings::parse(GOOD, &env).unwrap();
    assert_eq!(s.tokens.client_credentials_subject, ClientCredentialsSubject::ClientId);
    let web = ClientId::parse("web").unwrap();
    assert_eq!(s.tokens.client_credentials_subject.subject(&web), "web");
    let auth0 = format!("{GOOD}[tokens]\nclient_credentials_subject = \"client_id@clients\"\n");
    let s = Settings::parse(&auth0, &env).unwrap();
    assert_eq!(s.tokens.client_credentials_subject.subject(&web), "web@clients");
    let bad = format!("{GOOD}[tokens]\nclient_credentials_subject = \"sub\"\n");
    let errors = Settings::parse(&bad, &env).unwrap_err().0;
    assert!(errors.iter().any(|e| e.path == "tokens.client_credentials_subject"), "{errors:?}");
}

#[test]
fn connector_options_are_checked_in_the_same_pass_as_the_rest() {
    // A settings error and two connector errors (an unknown option, a missing one): all
    // three in one report.
    let text = format!(
        "{GOOD}[[connections]]\nid = \"sso\"\ntype = \"oidc\"\noptions = {{ issuer = \"https://idp.example\", client_id = \"x\", colour = \"blue\" }}\n[tokens]\ncode_ttl = 0\n"
    );
    let errors = Settings::parse(&text, &env).unwrap_err().0;
    let at = |path: &str| errors.iter().find(|e| e.path == path).unwrap_or_else(|| panic!("{path} in {errors:#?}"));
    assert!(at("connections[1].options").message.contains("colour"), "{errors:#?}");
    at("tokens.code_ttl");
    let unknown = Settings::parse(&GOOD.replace("type = \"static\"", "type = \"nosuch\""), &env).unwrap_err().0;
    assert!(unknown.iter().any(|e| e.path == "connections[0].type" && e.message.contains("unknown connector type")));
}

#[test]
fn auth0_s_client_setting_names_are_aliases_and_never_both() {
    let auth0 = GOOD.replace(
        "redirect_uris = [\"https://app.example.com/cb\"]",
        "callbacks = [\"https://app.example.com/cb\"]\nallowed_logout_urls = [\"https://app.example.com/bye\"]\nweb_origins = [\"https://app.example.com\"]",
    );
    let s = Settings::parse(&auth0, &env).unwrap();
    let web = s.client("web").unwrap();
    assert_eq!(web.redirect_uris[0].as_str(), "https://app.example.com/cb");
    assert_eq!(web.post_logout_redirect_uris[0].as_str(), "https://app.example.com/bye");
    assert_eq!(web.web_origins[0].as_str(), "https://app.example.com");
    assert_eq!(web.grant_types, vec![GrantType::AuthorizationCode, GrantType::RefreshToken], "callbacks count");

    let both = GOOD.replace(
        "redirect_uris = [",
        "post_logout_redirect_uris = [\"https://a.example/\"]\nallowed_logout_urls = [\"https://b.example/\"]\ncallbacks = [\"https://app.example.com/other\"]\nredirect_uris = [",
    );
    let errors = Settings::parse(&both, &env).unwrap_err().0;
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["clients[0].callbacks", "clients[0].allowed_logout_urls"], "{errors:?}");
    assert!(errors[0].message.contains("redirect_uris"), "{}", errors[0].message);

    let bad = GOOD.replace(
        "redirect_uris = [",
        "web_origins = [\"https://app.example.com/\", \"https://*.example.com\"]\nredirect_uris = [",
    );
    let errors = Settings::parse(&bad, &env).unwrap_err().0;
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["clients[0].web_origins[0]", "clients[0].web_origins[1]"], "{errors:?}");
    assert!(errors[1].message.contains("wildcards"), "{}", errors[1].message);

    let bad_callback = GOOD
        .replace("redirect_uris = [\"https://app.example.com/cb\"]", "callbacks = [\"https://app.example.com/cb#x\"]");
    let errors = Settings::parse(&bad_callback, &env).unwrap_err().0;
    assert_eq!(errors[0].path, "clients[0].callbacks[0]", "errors name the key the file used");
}

#[test]
fn the_session_cookie_is_lax_unless_a_secure_deployment_chooses_none() {
    let s = Settings::parse(GOOD, &env).unwrap();
    assert_eq!(s.session.cookie_same_site, SessionSameSite::Lax, "the default stays as it was");
    let none = format!("{GOOD}[session]\ncookie_same_site = \"none\"\n");
    assert_eq!(Settings::parse(&none, &env).unwrap().session.cookie_same_site, SessionSameSite::None);
    let insecure = format!("{GOOD}[session]\ncookie_same_site = \"none\"\ncookie_secure = false\n");
    let errors = Settings::parse(&insecure, &env).unwrap_err().0;
    assert_eq!(errors[0].path, "session.cookie_same_site");
    assert!(errors[0].message.contains("Secure"), "{}", errors[0].message);
    let odd = format!("{GOOD}[session]\ncookie_same_site = \"strict\"\n");
    assert_eq!(Settings::parse(&odd, &env).unwrap_err().0[0].path, "session.cookie_same_site");
}
