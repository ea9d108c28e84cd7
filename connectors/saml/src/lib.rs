//! SAML 2.0 service provider: SP-initiated login over HTTP-Redirect or HTTP-POST, the
//! Assertion Consumer Service over HTTP-POST, encrypted assertions, IdP-initiated responses
//! (when the connection opts in), SP metadata and SP-initiated Single Logout.
//!
//! Every response goes one way: strict XML reader -> shape checks -> xmlsec with the pinned
//! certificates -> claims read from the signed bytes only -> protocol checks (see `verify`
//! and `assertion`). The traps of the underlying library are closed here: a connection
//! without a signing certificate does not open, SHA-1 needs an explicit opt-in, InResponseTo
//! is bound to the browser's transaction, and assertion IDs go to the store's replay cache
//! through [`UpstreamIdentity::single_use`].
//!
//! This file is long (the connector's configuration, opening, `start`, `finish`, logout and
//! their tests); the protocol pieces already live in their own modules below. The next split
//! is the configuration and its opening into `config.rs`, and the tests into `tests.rs`.

pub mod assertion;
pub mod binding;
pub mod decrypt;
pub mod metadata;
mod quiet;
mod selftest;
mod source;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod verify;
pub mod xml;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gatehouse_connector::http::UpstreamHttp;
use gatehouse_connector::{
    CallbackInput, Connector, ConnectorConfig, ConnectorError, ConnectorState, FinishContext, Logout, LogoutContext,
    Metadata, OpenContext, SingleUse, Start, StartContext, Unsolicited, UpstreamIdentity, UpstreamLogout, Url,
    async_trait,
};
use openssl::pkey::{PKey, Private};
use serde::{Deserialize, Serialize};

use crate::assertion::{Asserted, CheckError, Expect, TRANSIENT};
use crate::metadata::IdpDescriptor;
use crate::source::Overrides;
use crate::verify::{Carried, Policy, VerifyError};

/// How the AuthnRequest travels to the IdP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RequestBinding {
    Redirect,
    Post,
}

fn default_refresh() -> u64 {
    3600
}
fn default_skew() -> u64 {
    60
}
fn default_age() -> u64 {
    300
}
fn default_strategy() -> String {
    "samlp".into()
}

/// A SAML connection's options (`[connections.options]` of a `type = "saml"` connection).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// IdP metadata, from one of: a file, inline XML, or a URL fetched at start and every
    /// `metadata_refresh_secs` (the last good copy is kept when a fetch fails).
    #[serde(default)]
    pub idp_metadata_file: Option<PathBuf>,
    #[serde(default)]
    pub idp_metadata_xml: Option<String>,
    #[serde(default)]
    pub idp_metadata_url: Option<Url>,
    #[serde(default = "default_refresh")]
    pub metadata_refresh_secs: u64,
    /// Or explicitly (these also override what metadata says).
    #[serde(default)]
    pub idp_entity_id: Option<String>,
    #[serde(default)]
    pub sso_url: Option<Url>,
    #[serde(default)]
    pub slo_url: Option<Url>,
    /// The IdP's signing certificates (PEM). Several at once during a rollover; when given,
    /// they replace the metadata's.
    #[serde(default)]
    pub idp_certificates: Vec<String>,
    #[serde(default)]
    pub idp_certificate_files: Vec<PathBuf>,
    /// `redirect` (default when the IdP offers it) or `post`.
    #[serde(default)]
    pub request_binding: Option<RequestBinding>,

    /// Our entity ID. Default: `{issuer}/saml/{connection}/metadata`.
    #[serde(default)]
    pub sp_entity_id: Option<String>,
    /// The SP key (PEM, RSA): signs AuthnRequests and LogoutRequests, decrypts assertions.
    #[serde(default)]
    pub sp_key_file: Option<PathBuf>,
    #[serde(default)]
    pub sp_certificate_file: Option<PathBuf>,
    /// Sign AuthnRequests. Default: when an SP key is configured.
    #[serde(default)]
    pub sign_requests: Option<bool>,
    /// NameIDPolicy Format to ask for.
    #[serde(default)]
    pub name_id_format: Option<String>,

    #[serde(default = "default_skew")]
    pub clock_skew_secs: u64,
    #[serde(default = "default_age")]
    pub max_assertion_age_secs: u64,
    /// Accept responses where only the Response (not the Assertion) is signed.
    #[serde(default)]
    pub allow_response_signature_only: bool,
    /// Accept RSA-SHA1 signatures (old IdPs only; every use is logged as a warning).
    #[serde(default)]
    pub allow_sha1: bool,
    /// Content encryption algorithms accepted for encrypted assertions (`aes128-gcm`,
    /// `aes256-gcm`, `aes128-cbc`, ...). Default: all GCM and CBC sizes; list only GCM when
    /// the IdP can do it (the algorithm label is not authenticated).
    #[serde(default)]
    pub encryption_algorithms: Vec<String>,

    /// Attributes whose value becomes the stable subject, first present wins; the NameID
    /// when empty (a transient NameID is never used).
    #[serde(default)]
    pub user_id_attributes: Vec<String>,
    /// Report the asserted email as verified (enterprise directories usually own their
    /// addresses; off by default because linking trusts it).
    #[serde(default)]
    pub trust_email: bool,
    /// `user_id` prefix: `samlp|{connection}|{subject}`.
    #[serde(default = "default_strategy")]
    pub strategy: String,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// Profile field <- attribute names, first present wins. Covers the common SAML names
/// (LDAP, eduPerson OIDs) and the claim URIs of ADFS and Entra ID.
pub const DEFAULT_ATTRIBUTES: &[(&str, &[&str])] = &[
    (
        "email",
        &[
            "email",
            "mail",
            "emailAddress",
            "urn:oid:0.9.2342.19200300.100.1.3",
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
        ],
    ),
    (
        "given_name",
        &[
            "given_name",
            "givenName",
            "firstName",
            "urn:oid:2.5.4.42",
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
        ],
    ),
    (
        "family_name",
        &[
            "family_name",
            "sn",
            "surname",
            "lastName",
            "urn:oid:2.5.4.4",
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
        ],
    ),
    (
        "name",
        &[
            "name",
            "displayName",
            "cn",
            "urn:oid:2.16.840.1.113730.3.1.241",
            "http://schemas.microsoft.com/identity/claims/displayname",
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
        ],
    ),
    (
        "groups",
        &[
            "groups",
            "memberOf",
            "isMemberOf",
            "urn:oid:1.3.6.1.4.1.5923.1.5.1.1",
            "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",
            "http://schemas.xmlsoap.org/claims/Group",
            "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
        ],
    ),
];

/// Where the IdP's description comes from.
enum IdpSource {
    Fixed(Arc<IdpDescriptor>),
    Url(Arc<source::MetadataSource>),
}

pub struct SamlConnector {
    connection: String,
    strategy: String,
    sp_entity_id: String,
    acs_url: String,
    slo_return_url: String,
    source: IdpSource,
    sp_key: Option<PKey<Private>>,
    sp_certificate: Option<Vec<u8>>,
    sign_requests: bool,
    request_binding: Option<RequestBinding>,
    name_id_format: Option<String>,
    policy_flags: (bool, bool),
    content_algorithms: Vec<&'static str>,
    skew: Duration,
    max_age: Duration,
    user_id_attributes: Vec<String>,
    trust_email: bool,
    warned_sha1: Mutex<bool>,
}

/// Metadata carries the keys every response is checked with: it must come over https
/// (a loopback address, for local IdPs and tests, may use http).
pub fn check_metadata_url(url: &Url) -> Result<(), ConnectorError> {
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if url.scheme() == "https" || (url.scheme() == "http" && loopback) {
        Ok(())
    } else {
        Err(misconfigured(format!("the IdP metadata URL must use https (it carries the signing keys): {url}")))
    }
}

fn misconfigured(msg: impl Into<String>) -> ConnectorError {
    ConnectorError::Misconfigured(msg.into())
}

fn read(path: &PathBuf) -> Result<String, ConnectorError> {
    std::fs::read_to_string(path).map_err(|e| misconfigured(format!("cannot read {}: {e}", path.display())))
}

impl ConnectorConfig for Config {
    type Connector = SamlConnector;

    fn open(self, ctx: &OpenContext) -> Result<SamlConnector, ConnectorError> {
        selftest::run()?;
        let mut certificates = Vec::new();
        for pem in &self.idp_certificates {
            certificates
                .extend(metadata::pem_certificates(pem).map_err(|e| misconfigured(format!("idp_certificates: {e}")))?);
        }
        for path in &self.idp_certificate_files {
            certificates.extend(
                metadata::pem_certificates(&read(path)?)
                    .map_err(|e| misconfigured(format!("{}: {e}", path.display())))?,
            );
        }
        let overrides = Overrides {
            entity_id: self.idp_entity_id.clone(),
            sso_url: self.sso_url.clone(),
            slo_url: self.slo_url.clone(),
            certificates,
        };
        let inline = match (&self.idp_metadata_file, &self.idp_metadata_xml) {
            (Some(_), Some(_)) => return Err(misconfigured("give idp_metadata_file or idp_metadata_xml, not both")),
            (Some(path), None) => Some(read(path)?),
            (None, Some(xml)) => Some(xml.clone()),
            (None, None) => None,
        };
        let source = match (inline, &self.idp_metadata_url) {
            (Some(_), Some(_)) => return Err(misconfigured("give metadata from a file, inline or a URL: one of them")),
            (Some(doc), None) => {
                let d = metadata::parse_idp(&doc, self.idp_entity_id.as_deref())
                    .map_err(|e| misconfigured(e.to_string()))?;
                IdpSource::Fixed(Arc::new(overrides.apply(d)))
            }
            (None, Some(url)) => {
                let timeout = Duration::from_millis(self.timeout_ms.unwrap_or(10_000));
                let source = Arc::new(source::MetadataSource::new(
                    ctx.connection.clone(),
                    url.clone(),
                    Duration::from_secs(self.metadata_refresh_secs.max(1)),
                    UpstreamHttp::new(timeout, xml::Limits::METADATA.max_bytes)?,
                    overrides.clone(),
                ));
                source.spawn_refresher();
                IdpSource::Url(source)
            }
            (None, None) => {
                // Everything explicit: entity ID, SSO URL and at least one certificate.
                let entity_id = overrides.entity_id.clone().ok_or_else(|| {
                    misconfigured("no IdP metadata: set idp_metadata_file, idp_metadata_xml or idp_metadata_url, or idp_entity_id + sso_url + idp_certificates")
                })?;
                if overrides.sso_url.is_none() {
                    return Err(misconfigured("sso_url is required without IdP metadata"));
                }
                if overrides.certificates.is_empty() {
                    // Without a pinned certificate nothing could be verified: refuse to open.
                    return Err(misconfigured(
                        "idp_certificates (or idp_certificate_files) is required: responses are only accepted signed by a pinned certificate",
                    ));
                }
                let d = IdpDescriptor {
                    entity_id,
                    certificates: Vec::new(),
                    sso_redirect: None,
                    sso_post: None,
                    slo_redirect: None,
                    want_authn_requests_signed: false,
                };
                IdpSource::Fixed(Arc::new(overrides.apply(d)))
            }
        };
        let sp_key = match &self.sp_key_file {
            Some(p) => Some(
                PKey::private_key_from_pem(read(p)?.as_bytes())
                    .map_err(|_| misconfigured(format!("{}: not a PEM private key", p.display())))?,
            ),
            None => None,
        };
        let sp_certificate = match &self.sp_certificate_file {
            Some(p) => {
                let certs = metadata::pem_certificates(&read(p)?).map_err(|e| misconfigured(e.to_string()))?;
                Some(certs.into_iter().next().ok_or_else(|| misconfigured("no SP certificate"))?)
            }
            None => None,
        };
        if sp_key.is_some() != sp_certificate.is_some() {
            return Err(misconfigured("sp_key_file and sp_certificate_file go together"));
        }
        if let (Some(k), Some(c)) = (&sp_key, &sp_certificate) {
            let cert_key = openssl::x509::X509::from_der(c)
                .and_then(|c| c.public_key())
                .map_err(|_| misconfigured("SP certificate"))?;
            if !k.public_eq(&cert_key) {
                return Err(misconfigured("sp_certificate_file does not match sp_key_file"));
            }
        }
        if self.clock_skew_secs > 600 {
            return Err(misconfigured("clock_skew_secs is at most 600"));
        }
        if !(1..=3600).contains(&self.max_assertion_age_secs) {
            return Err(misconfigured("max_assertion_age_secs is between 1 and 3600"));
        }
        let mut content_algorithms = Vec::new();
        for name in &self.encryption_algorithms {
            let uri = decrypt::CONTENT_ALGORITHMS.iter().find(|(n, _)| n == name).map(|(_, u)| *u);
            content_algorithms.push(uri.ok_or_else(|| {
                let known: Vec<&str> = decrypt::CONTENT_ALGORITHMS.iter().map(|(n, _)| *n).collect();
                misconfigured(format!("encryption_algorithms: {name} is not one of {}", known.join(", ")))
            })?);
        }
        if content_algorithms.is_empty() {
            content_algorithms = decrypt::CONTENT_ALGORITHMS.iter().map(|(_, u)| *u).collect();
        }
        if let Some(url) = &self.idp_metadata_url {
            check_metadata_url(url)?;
        }
        let sign_requests = self.sign_requests.unwrap_or(sp_key.is_some());
        if sign_requests && sp_key.is_none() {
            return Err(misconfigured("sign_requests needs sp_key_file"));
        }
        let base = ctx.issuer.as_str().trim_end_matches('/').to_owned();
        let sp_entity_id = self.sp_entity_id.unwrap_or_else(|| format!("{base}/saml/{}/metadata", ctx.connection));
        Ok(SamlConnector {
            connection: ctx.connection.clone(),
            strategy: self.strategy,
            sp_entity_id,
            acs_url: ctx.callback_url.to_string(),
            slo_return_url: format!("{base}/saml/{}/slo", ctx.connection),
            source,
            sp_key,
            sp_certificate,
            sign_requests,
            request_binding: self.request_binding,
            name_id_format: self.name_id_format,
            policy_flags: (self.allow_response_signature_only, self.allow_sha1),
            content_algorithms,
            skew: Duration::from_secs(self.clock_skew_secs),
            max_age: Duration::from_secs(self.max_assertion_age_secs),
            user_id_attributes: self.user_id_attributes,
            trust_email: self.trust_email,
            warned_sha1: Mutex::new(false),
        })
    }
}

/// What `start` keeps for `finish`: the AuthnRequest ID the response must answer.
#[derive(Serialize, Deserialize)]
struct LoginState {
    request_id: String,
}

/// What `start_logout` keeps: the LogoutRequest ID the IdP must answer.
#[derive(Serialize, Deserialize)]
struct LogoutState {
    request_id: String,
}

/// The upstream session facts kept with Gatehouse's session, for Single Logout.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SessionFacts {
    name_id: String,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    name_qualifier: Option<String>,
    #[serde(default)]
    sp_name_qualifier: Option<String>,
    #[serde(default)]
    session_index: Option<String>,
}

fn state_bytes<T: Serialize>(v: &T) -> ConnectorState {
    ConnectorState(serde_json::to_vec(v).unwrap_or_default())
}

/// A message about hostile input, fit for a log line: at most 200 characters, control
/// characters replaced (parser errors quote the input they choked on).
pub(crate) fn printable(s: &str) -> String {
    let mut out: String = s.chars().take(200).map(|c| if c.is_control() { '?' } else { c }).collect();
    if s.chars().nth(200).is_some() {
        out.push('…');
    }
    out
}

fn invalid(msg: impl Into<String>) -> ConnectorError {
    ConnectorError::InvalidResponse(msg.into())
}

impl SamlConnector {
    /// The IdP as currently known (see [`source::MetadataSource`] for metadata URLs).
    pub async fn idp(&self) -> Result<Arc<IdpDescriptor>, ConnectorError> {
        match &self.source {
            IdpSource::Fixed(d) => Ok(d.clone()),
            IdpSource::Url(source) => source.get().await,
        }
    }

    pub fn sp_entity_id(&self) -> &str {
        &self.sp_entity_id
    }

    fn policy(&self, idp: &IdpDescriptor) -> Policy {
        Policy {
            certificates: idp.certificates.clone(),
            allow_response_signature_only: self.policy_flags.0,
            allow_sha1: self.policy_flags.1,
        }
    }

    /// Verify and check one POSTed `SAMLResponse`; `in_response_to` is `None` for an
    /// unsolicited response.
    async fn consume(
        &self,
        ctx: &FinishContext,
        input: &CallbackInput,
        in_response_to: Option<&str>,
    ) -> Result<UpstreamIdentity, ConnectorError> {
        let CallbackInput::Form(_) = input else {
            return Err(invalid("the ACS takes SAMLResponse by HTTP-POST only"));
        };
        let encoded = input.param("SAMLResponse").ok_or_else(|| invalid("no SAMLResponse"))?;
        if encoded.len() > 4 * xml::Limits::MESSAGE.max_bytes / 3 + 4 {
            return Err(invalid("SAMLResponse is too large"));
        }
        let compact: String = encoded.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let bytes = STANDARD.decode(compact).map_err(|_| invalid("SAMLResponse is not base64"))?;
        let doc = String::from_utf8(bytes).map_err(|_| invalid("SAMLResponse is not UTF-8"))?;
        let idp = self.idp().await?;
        let policy = self.policy(&idp);
        let key = self.sp_key.clone();
        let algorithms = self.content_algorithms.clone();
        // xmlsec and decryption are CPU work: keep them off the async workers.
        let verified =
            tokio::task::spawn_blocking(move || verify_document_with(&doc, &policy, key.as_ref(), &algorithms))
                .await
                .map_err(|_| invalid("verification task failed"))?
                .map_err(|e| invalid(printable(&e.to_string())))?;
        if verified.weak_algorithm {
            let mut warned = self.warned_sha1.lock().expect("flag");
            tracing::warn!(connection = %self.connection, first = !*warned, "accepted an RSA-SHA1 signature (allow_sha1 is on for this connection)");
            *warned = true;
        }
        let expect = Expect {
            idp_entity_id: &idp.entity_id,
            sp_entity_id: &self.sp_entity_id,
            acs_url: &self.acs_url,
            in_response_to,
            now: ctx.now,
            skew: self.skew,
            max_age: self.max_age,
        };
        let asserted = assertion::check(&verified, &expect).map_err(|e| match e {
            CheckError::Status(s) => ConnectorError::Denied(printable(&s)),
            CheckError::Invalid(s) => invalid(printable(&s)),
        })?;
        self.identity(asserted)
    }

    fn identity(&self, a: Asserted) -> Result<UpstreamIdentity, ConnectorError> {
        let mut raw = serde_json::Map::new();
        for attr in &a.attributes {
            let value = match attr.values.as_slice() {
                [one] => serde_json::Value::String(one.clone()),
                many => serde_json::Value::Array(many.iter().cloned().map(Into::into).collect()),
            };
            if let Some(f) = &attr.friendly_name
                && !raw.contains_key(f)
            {
                raw.insert(f.clone(), value.clone());
            }
            raw.insert(attr.name.clone(), value);
        }
        fn text(v: Option<&serde_json::Value>) -> Option<String> {
            match v? {
                serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
                serde_json::Value::Array(a) => a.first().and_then(|x| x.as_str()).map(str::to_owned),
                _ => None,
            }
        }
        let first = |raw: &serde_json::Map<String, serde_json::Value>, name: &str| -> Option<serde_json::Value> {
            let names = DEFAULT_ATTRIBUTES.iter().find(|(f, _)| *f == name).map(|(_, a)| *a).unwrap_or(&[]);
            names.iter().find_map(|n| raw.get(*n)).cloned()
        };
        let user_attr = self.user_id_attributes.iter().find_map(|n| text(raw.get(n)));
        let stable = match user_attr {
            Some(v) => v,
            None if a.name_id_format.as_deref() == Some(TRANSIENT) => {
                return Err(invalid(
                    "the NameID is transient and none of user_id_attributes is present: no stable identifier",
                ));
            }
            None => a.name_id.clone(),
        };
        let groups = match first(&raw, "groups") {
            Some(serde_json::Value::Array(v)) => v.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        };
        let email = text(first(&raw, "email").as_ref());
        let name = text(first(&raw, "name").as_ref());
        let given_name = text(first(&raw, "given_name").as_ref());
        let family_name = text(first(&raw, "family_name").as_ref());
        raw.insert("nameid".into(), a.name_id.clone().into());
        if let Some(f) = &a.name_id_format {
            raw.insert("nameid_format".into(), f.clone().into());
        }
        if let Some(c) = &a.authn_context {
            raw.insert("authn_context".into(), c.clone().into());
        }
        let session = SessionFacts {
            name_id: a.name_id.clone(),
            format: a.name_id_format.clone(),
            name_qualifier: a.name_qualifier.clone(),
            sp_name_qualifier: a.sp_name_qualifier.clone(),
            session_index: a.session_index.clone(),
        };
        Ok(UpstreamIdentity {
            subject: format!("{}|{}", self.connection, stable),
            email_verified: self.trust_email && email.is_some(),
            email,
            name,
            given_name,
            family_name,
            nickname: None,
            picture: None,
            locale: None,
            groups,
            authenticated_at: a.authn_instant,
            amr: Vec::new(),
            single_use: Some(SingleUse {
                id: format!("saml:{}:{}", self.connection, a.assertion_id),
                until: a.valid_until,
            }),
            upstream_session: serde_json::to_value(session).ok(),
            raw,
        })
    }

    fn sso_endpoint(&self, idp: &IdpDescriptor) -> Result<(RequestBinding, String), ConnectorError> {
        let pick = match self.request_binding {
            Some(RequestBinding::Post) => idp.sso_post.clone().map(|u| (RequestBinding::Post, u)),
            Some(RequestBinding::Redirect) => idp.sso_redirect.clone().map(|u| (RequestBinding::Redirect, u)),
            None => idp
                .sso_redirect
                .clone()
                .map(|u| (RequestBinding::Redirect, u))
                .or_else(|| idp.sso_post.clone().map(|u| (RequestBinding::Post, u))),
        };
        pick.ok_or_else(|| misconfigured("the IdP offers no SingleSignOnService for the chosen binding"))
    }
}

/// Parse, decrypt when needed, verify. Synchronous: runs on a blocking thread.
pub fn verify_document(
    doc: &str,
    policy: &Policy,
    sp_key: Option<&PKey<Private>>,
) -> Result<verify::Verified, VerifyError> {
    let all: Vec<&str> = decrypt::CONTENT_ALGORITHMS.iter().map(|(_, uri)| *uri).collect();
    verify_document_with(doc, policy, sp_key, &all)
}

/// [`verify_document`] taking only the listed content encryption algorithm URIs.
pub fn verify_document_with(
    doc: &str,
    policy: &Policy,
    sp_key: Option<&PKey<Private>>,
    content_algorithms: &[&str],
) -> Result<verify::Verified, VerifyError> {
    // A byte-order mark is legal, but quick-xml's offsets do not count it: drop it, so every
    // span below indexes this very string.
    let doc = doc.strip_prefix('\u{feff}').unwrap_or(doc);
    let root = verify::parse_response(doc)?;
    match verify::carried(&root)? {
        Carried::Plain(_) => verify::verify_parsed(doc, root, policy, false),
        Carried::Encrypted(enc) => {
            let key = sp_key
                .ok_or_else(|| VerifyError::Shape("an encrypted assertion, but no sp_key_file to decrypt it".into()))?;
            // A signed Response is checked as sent, before anything is taken out of it.
            let response_sig = root.child(xml::DSIG, "Signature");
            if response_sig.is_some() {
                verify::verify_response_only(doc, &root, policy)?;
            }
            let plain = decrypt::decrypt_assertion(enc, key, content_algorithms)
                .map_err(|e| VerifyError::Shape(e.to_string()))?;
            // Put the assertion where the EncryptedAssertion was (its namespace context is the
            // Response's) and drop the Response signature that covered the ciphertext; the
            // rebuilt document goes through every check again and needs an assertion signature.
            let mut cuts = vec![(enc.span, plain.as_str())];
            if let Some(sig) = response_sig {
                cuts.push((sig.span, ""));
            }
            cuts.sort_by_key(|(span, _)| std::cmp::Reverse(span.0));
            let mut rebuilt = doc.to_owned();
            for ((from, to), with) in cuts {
                if rebuilt.get(from..to).is_none() {
                    return Err(VerifyError::Shape("the response could not be taken apart".into()));
                }
                rebuilt.replace_range(from..to, with);
            }
            // Errors about the rebuilt document would quote decrypted content: say less.
            let mut v = verify::verify(&rebuilt, policy, true).map_err(|e| match e {
                VerifyError::Xml(_) => VerifyError::Shape("the decrypted assertion is not well-formed".into()),
                other => other,
            })?;
            v.response_signed = response_sig.is_some();
            Ok(v)
        }
    }
}

#[async_trait]
impl Connector for SamlConnector {
    fn strategy(&self) -> &str {
        &self.strategy
    }

    async fn start(&self, ctx: &StartContext) -> Result<(Start, ConnectorState), ConnectorError> {
        let idp = self.idp().await?;
        let (binding, endpoint) = self.sso_endpoint(&idp)?;
        let id = binding::new_id();
        let request = binding::AuthnRequest {
            id: &id,
            issue_instant: ctx.now,
            destination: &endpoint,
            acs_url: &self.acs_url,
            sp_entity_id: &self.sp_entity_id,
            name_id_format: self.name_id_format.as_deref(),
            force_authn: ctx.force_login,
        };
        let key = if self.sign_requests { self.sp_key.as_ref() } else { None };
        if idp.want_authn_requests_signed && key.is_none() {
            // The IdP would refuse the request: say why here rather than on its error page.
            return Err(misconfigured(
                "the IdP wants signed AuthnRequests: configure sp_key_file and sp_certificate_file",
            ));
        }
        let state = state_bytes(&LoginState { request_id: id.clone() });
        // RelayState is the transaction id: it finds the transaction, which Gatehouse binds to
        // this browser; InResponseTo then binds the response to this request.
        let start = match binding {
            RequestBinding::Redirect => Start::Redirect {
                url: binding::redirect_url(
                    &endpoint,
                    "SAMLRequest",
                    &request.xml(false),
                    Some(&ctx.transaction_id),
                    key,
                )
                .map_err(|e| misconfigured(e.to_string()))?,
            },
            RequestBinding::Post => Start::PostForm {
                action: Url::parse(&endpoint).map_err(|_| misconfigured("bad SSO URL"))?,
                fields: vec![
                    (
                        "SAMLRequest".into(),
                        binding::post_value(&request.xml(key.is_some()), key)
                            .map_err(|e| misconfigured(e.to_string()))?,
                    ),
                    ("RelayState".into(), ctx.transaction_id.clone()),
                ],
            },
        };
        Ok((start, state))
    }

    async fn finish(
        &self,
        ctx: &FinishContext,
        state: ConnectorState,
        input: CallbackInput,
    ) -> Result<UpstreamIdentity, ConnectorError> {
        // The core found the transaction by RelayState; a connector that ignored it would
        // accept another transaction's response if the core ever matched it wrongly.
        if input.param("RelayState") != Some(ctx.transaction_id.as_str()) {
            return Err(invalid("RelayState is not this transaction's"));
        }
        let state: LoginState =
            serde_json::from_slice(&state.0).map_err(|_| invalid("no pending AuthnRequest for this login"))?;
        self.consume(ctx, &input, Some(&state.request_id)).await
    }

    fn logout(&self) -> Option<&dyn Logout> {
        Some(self)
    }

    fn unsolicited(&self) -> Option<&dyn Unsolicited> {
        Some(self)
    }

    fn metadata(&self) -> Option<Metadata> {
        let formats = [
            "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
            "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
            "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
            TRANSIENT,
        ];
        let body = metadata::sp_metadata(&metadata::SpDescriptor {
            entity_id: &self.sp_entity_id,
            acs_url: &self.acs_url,
            slo_url: &self.slo_return_url,
            signing_certificate: self.sp_certificate.as_deref(),
            encryption_certificate: self.sp_certificate.as_deref(),
            name_id_formats: &formats,
            sign_requests: self.sign_requests,
        });
        Some(Metadata { content_type: "application/samlmetadata+xml", body })
    }
}

#[async_trait]
impl Unsolicited for SamlConnector {
    async fn finish_unsolicited(
        &self,
        ctx: &FinishContext,
        input: CallbackInput,
    ) -> Result<UpstreamIdentity, ConnectorError> {
        self.consume(ctx, &input, None).await
    }
}

#[async_trait]
impl Logout for SamlConnector {
    async fn start_logout(
        &self,
        ctx: &LogoutContext,
        session: &serde_json::Value,
    ) -> Result<Option<(Start, ConnectorState)>, ConnectorError> {
        let idp = self.idp().await?;
        let Some(endpoint) = idp.slo_redirect.clone() else { return Ok(None) };
        let Ok(facts) = serde_json::from_value::<SessionFacts>(session.clone()) else { return Ok(None) };
        let id = binding::new_id();
        let request = binding::LogoutRequest {
            id: &id,
            issue_instant: ctx.now,
            destination: &endpoint,
            sp_entity_id: &self.sp_entity_id,
            name_id: &facts.name_id,
            name_id_format: facts.format.as_deref(),
            name_qualifier: facts.name_qualifier.as_deref(),
            sp_name_qualifier: facts.sp_name_qualifier.as_deref(),
            session_index: facts.session_index.as_deref(),
        };
        // IdPs refuse unsigned LogoutRequests (anyone could end a session): sign when we can.
        let url =
            binding::redirect_url(&endpoint, "SAMLRequest", &request.xml(), Some(&ctx.relay), self.sp_key.as_ref())
                .map_err(|e| misconfigured(e.to_string()))?;
        Ok(Some((Start::Redirect { url }, state_bytes(&LogoutState { request_id: id }))))
    }

    async fn finish_logout(
        &self,
        ctx: &LogoutContext,
        state: ConnectorState,
        raw_query: &str,
    ) -> Result<(), ConnectorError> {
        let state: LogoutState = serde_json::from_slice(&state.0).map_err(|_| invalid("no pending LogoutRequest"))?;
        let idp = self.idp().await?;
        let msg = binding::read_redirect(raw_query, "SAMLResponse", &idp.certificates)
            .map_err(|e| invalid(printable(&e.to_string())))?;
        // The signed RelayState must be the one Gatehouse found this pending logout by.
        if msg.relay_state.as_deref() != Some(ctx.relay.as_str()) {
            return Err(invalid("LogoutResponse RelayState is not this logout's"));
        }
        let root = xml::parse(&msg.xml, &xml::Limits::MESSAGE).map_err(|e| invalid(printable(&e.to_string())))?;
        if !root.is(xml::PROTOCOL, "LogoutResponse") {
            return Err(invalid("not a LogoutResponse"));
        }
        if root.attr("InResponseTo") != Some(state.request_id.as_str()) {
            return Err(invalid("LogoutResponse answers another request"));
        }
        if let Some(d) = root.attr("Destination")
            && d != self.slo_return_url
        {
            return Err(invalid("LogoutResponse Destination is not our SLO URL"));
        }
        let issuer = root.child(xml::ASSERTION, "Issuer").and_then(xml::Element::trimmed_text);
        if issuer.as_deref() != Some(idp.entity_id.as_str()) {
            return Err(invalid("LogoutResponse Issuer is not the IdP"));
        }
        assertion::status(&root).map_err(|e| ConnectorError::Denied(e.to_string()))
    }

    async fn upstream_logout_request(
        &self,
        ctx: &LogoutContext,
        raw_query: &str,
        session: Option<&serde_json::Value>,
    ) -> Result<UpstreamLogout, ConnectorError> {
        let idp = self.idp().await?;
        let endpoint = idp.slo_redirect.clone().ok_or_else(|| invalid("the IdP publishes no SingleLogoutService"))?;
        let msg = binding::read_redirect(raw_query, "SAMLRequest", &idp.certificates)
            .map_err(|e| invalid(printable(&e.to_string())))?;
        let root = xml::parse(&msg.xml, &xml::Limits::MESSAGE).map_err(|e| invalid(printable(&e.to_string())))?;
        if !root.is(xml::PROTOCOL, "LogoutRequest") || root.attr("Version") != Some("2.0") {
            return Err(invalid("not a SAML 2.0 LogoutRequest"));
        }
        let id = root.attr("ID").filter(|i| !i.is_empty()).ok_or_else(|| invalid("LogoutRequest has no ID"))?;
        let issuer = root.child(xml::ASSERTION, "Issuer").and_then(xml::Element::trimmed_text);
        if issuer.as_deref() != Some(idp.entity_id.as_str()) {
            return Err(invalid("LogoutRequest Issuer is not the IdP"));
        }
        if root.attr("Destination").is_some_and(|d| d != self.slo_return_url) {
            return Err(invalid("LogoutRequest Destination is not our SLO URL"));
        }
        // A signed request is still a bearer message: it is good for a few minutes only.
        let issued =
            root.attr("IssueInstant").map(assertion::parse_time).transpose().map_err(|e| invalid(e.to_string()))?;
        let issued = issued.ok_or_else(|| invalid("LogoutRequest has no IssueInstant"))?;
        if issued > ctx.now + self.skew || issued + self.max_age + self.skew < ctx.now {
            return Err(invalid("LogoutRequest is outside its time window"));
        }
        if let Some(until) =
            root.attr("NotOnOrAfter").map(assertion::parse_time).transpose().map_err(|e| invalid(e.to_string()))?
            && ctx.now >= until + self.skew
        {
            return Err(invalid("LogoutRequest has expired"));
        }
        let name_id = root
            .only_child(xml::ASSERTION, "NameID")
            .and_then(xml::Element::trimmed_text)
            .ok_or_else(|| invalid("LogoutRequest needs one plain NameID"))?;
        let indexes: Vec<String> =
            root.children_named(xml::PROTOCOL, "SessionIndex").filter_map(xml::Element::trimmed_text).collect();
        // Only the session the IdP names ends: the same person, and (when the IdP says which)
        // the same IdP session.
        let ends_session =
            session.and_then(|s| serde_json::from_value::<SessionFacts>(s.clone()).ok()).is_some_and(|f| {
                f.name_id == name_id
                    && (indexes.is_empty() || f.session_index.as_ref().is_some_and(|i| indexes.contains(i)))
            });
        let answer_id = binding::new_id();
        let answer = binding::LogoutResponse {
            id: &answer_id,
            issue_instant: ctx.now,
            destination: &endpoint,
            in_response_to: id,
            sp_entity_id: &self.sp_entity_id,
        };
        let url = binding::redirect_url(
            &endpoint,
            "SAMLResponse",
            &answer.xml(),
            msg.relay_state.as_deref(),
            self.sp_key.as_ref(),
        )
        .map_err(|e| misconfigured(e.to_string()))?;
        Ok(UpstreamLogout { ends_session, next: Start::Redirect { url } })
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    #[test]
    fn metadata_urls_must_be_https_except_on_loopback() {
        for ok in
            ["https://idp.example/metadata", "http://127.0.0.1:8000/metadata", "http://localhost/m", "http://[::1]/m"]
        {
            assert!(check_metadata_url(&Url::parse(ok).unwrap()).is_ok(), "{ok}");
        }
        for bad in ["http://idp.example/metadata", "http://10.0.0.1/m", "file:///etc/idp.xml", "ftp://idp/m"] {
            assert!(
                matches!(check_metadata_url(&Url::parse(bad).unwrap()), Err(ConnectorError::Misconfigured(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn hostile_text_is_short_and_printable_in_logs() {
        let long = format!("a\nb\u{1b}[31m{}", "x".repeat(500));
        let p = printable(&long);
        assert!(p.chars().count() <= 201 && !p.contains('\n') && !p.contains('\u{1b}'), "{p}");
        assert!(p.ends_with('…'));
    }

    #[test]
    fn a_byte_order_mark_is_dropped_before_any_offset_is_taken() {
        let cert = metadata::pem_certificates(include_str!("../selftest/selftest.crt")).unwrap();
        let policy = Policy { certificates: cert, allow_response_signature_only: false, allow_sha1: false };
        let doc = format!("\u{feff}{}", include_str!("../selftest/valid.xml"));
        assert!(verify_document(&doc, &policy, None).is_ok());
    }

    fn rsa_pair() -> (PKey<Private>, String) {
        use openssl::hash::MessageDigest;
        let key = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        let mut b = openssl::x509::X509Builder::new().unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap()).unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).unwrap()).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        let pem = String::from_utf8(b.build().to_pem().unwrap()).unwrap();
        (key, pem)
    }

    /// An IdP-initiated LogoutRequest, query-signed with `key`, issued `age` seconds ago.
    fn logout_request(key: &PKey<Private>, name_id: &str, index: &str, age: u64) -> String {
        let xml = binding::LogoutRequest {
            id: "_lr1",
            issue_instant: SystemTime::now() - Duration::from_secs(age),
            destination: "https://gh/saml/acme/slo",
            sp_entity_id: "https://idp",
            name_id,
            name_id_format: None,
            name_qualifier: None,
            sp_name_qualifier: None,
            session_index: Some(index),
        }
        .xml();
        let url =
            binding::redirect_url("https://gh/saml/acme/slo", "SAMLRequest", &xml, Some("rs-1"), Some(key)).unwrap();
        url.query().unwrap().to_owned()
    }

    #[tokio::test]
    async fn an_idp_initiated_logout_ends_only_the_session_it_names() {
        let (idp_key, idp_cert) = rsa_pair();
        let ctx = OpenContext {
            connection: "acme".into(),
            callback_url: Url::parse("https://gh/callback/acme").unwrap(),
            issuer: Url::parse("https://gh").unwrap(),
        };
        let connector = Config {
            idp_entity_id: Some("https://idp".into()),
            sso_url: Some(Url::parse("https://idp/sso").unwrap()),
            slo_url: Some(Url::parse("https://idp/slo").unwrap()),
            idp_certificates: vec![idp_cert],
            clock_skew_secs: 60,
            max_assertion_age_secs: 300,
            strategy: "samlp".into(),
            ..Default::default()
        }
        .open(&ctx)
        .unwrap();
        let lctx = LogoutContext {
            return_url: Url::parse("https://gh/saml/acme/slo").unwrap(),
            relay: String::new(),
            now: SystemTime::now(),
        };
        let facts = serde_json::json!({"name_id": "ada", "session_index": "_s1"});
        let q = logout_request(&idp_key, "ada", "_s1", 0);
        let answer = connector.upstream_logout_request(&lctx, &q, Some(&facts)).await.unwrap();
        assert!(answer.ends_session);
        let Start::Redirect { url } = answer.next else { panic!("a redirect") };
        assert!(url.as_str().starts_with("https://idp/slo?SAMLResponse="));
        let answer_xml =
            binding::inflate(&STANDARD.decode(url.query_pairs().next().unwrap().1.as_bytes()).unwrap()).unwrap();
        assert!(answer_xml.contains(r#"InResponseTo="_lr1""#) && answer_xml.contains("status:Success"), "{answer_xml}");
        assert_eq!(url.query_pairs().find(|(k, _)| k == "RelayState").unwrap().1, "rs-1");

        // Another person, another IdP session, no session at all: nothing ends here.
        for (q, facts) in [
            (logout_request(&idp_key, "grace", "_s1", 0), Some(&facts)),
            (logout_request(&idp_key, "ada", "_s2", 0), Some(&facts)),
            (logout_request(&idp_key, "ada", "_s1", 0), None),
        ] {
            assert!(!connector.upstream_logout_request(&lctx, &q, facts).await.unwrap().ends_session);
        }
        // Signed by someone else, or too old: refused.
        let (other, _) = rsa_pair();
        let forged = logout_request(&other, "ada", "_s1", 0);
        assert!(connector.upstream_logout_request(&lctx, &forged, Some(&facts)).await.is_err());
        let old = logout_request(&idp_key, "ada", "_s1", 3600);
        assert!(connector.upstream_logout_request(&lctx, &old, Some(&facts)).await.is_err());
    }

    fn asserted(format: &str, attributes: Vec<assertion::Attribute>) -> Asserted {
        Asserted {
            assertion_id: "_a".into(),
            name_id: "3f2a-transient".into(),
            name_id_format: Some(format.into()),
            name_qualifier: None,
            sp_name_qualifier: None,
            session_index: Some("_s".into()),
            authn_instant: None,
            authn_context: None,
            valid_until: SystemTime::now(),
            attributes,
        }
    }

    #[test]
    fn a_transient_name_id_is_never_a_user_id() {
        let ctx = OpenContext {
            connection: "acme".into(),
            callback_url: Url::parse("https://gh/callback/acme").unwrap(),
            issuer: Url::parse("https://gh").unwrap(),
        };
        let open = |user_id_attributes: Vec<String>| {
            Config {
                idp_entity_id: Some("https://idp".into()),
                sso_url: Some(Url::parse("https://idp/sso").unwrap()),
                idp_certificates: vec![include_str!("../selftest/selftest.crt").into()],
                clock_skew_secs: 60,
                max_assertion_age_secs: 300,
                strategy: "samlp".into(),
                user_id_attributes,
                ..Default::default()
            }
            .open(&ctx)
            .unwrap()
        };
        let upn =
            assertion::Attribute { name: "upn".into(), friendly_name: None, values: vec!["ada@corp.example".into()] };
        assert!(matches!(
            open(Vec::new()).identity(asserted(TRANSIENT, Vec::new())),
            Err(ConnectorError::InvalidResponse(_))
        ));
        let c = open(vec!["upn".into()]);
        assert!(c.identity(asserted(TRANSIENT, Vec::new())).is_err(), "the attribute is missing");
        assert_eq!(c.identity(asserted(TRANSIENT, vec![upn])).unwrap().subject, "acme|ada@corp.example");
        let persistent = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";
        assert_eq!(open(Vec::new()).identity(asserted(persistent, Vec::new())).unwrap().subject, "acme|3f2a-transient");
    }

    #[test]
    fn time_options_are_bounded() {
        let ctx = OpenContext {
            connection: "acme".into(),
            callback_url: Url::parse("https://gh/callback/acme").unwrap(),
            issuer: Url::parse("https://gh").unwrap(),
        };
        let base = || Config {
            idp_entity_id: Some("https://idp".into()),
            sso_url: Some(Url::parse("https://idp/sso").unwrap()),
            idp_certificates: vec![include_str!("../selftest/selftest.crt").into()],
            clock_skew_secs: 60,
            max_assertion_age_secs: 300,
            strategy: "samlp".into(),
            ..Default::default()
        };
        assert!(base().open(&ctx).is_ok());
        assert!(Config { clock_skew_secs: 100_000, ..base() }.open(&ctx).is_err());
        assert!(Config { max_assertion_age_secs: 0, ..base() }.open(&ctx).is_err());
        assert!(Config { encryption_algorithms: vec!["des".into()], ..base() }.open(&ctx).is_err());
        let no_cert = Config { idp_certificates: Vec::new(), ..base() };
        assert!(matches!(no_cert.open(&ctx), Err(ConnectorError::Misconfigured(m)) if m.contains("idp_certificates")));
    }
}
