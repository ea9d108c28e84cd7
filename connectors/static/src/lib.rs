//! Static users: people listed in the configuration with argon2id password hashes, like
//! Dex's static passwords. For demos, tests and small deployments; it also proves the
//! connector seam end to end with a credentials prompt.
//!
//! Password hashing is deliberately slow (argon2id, OWASP parameters: about 15 ms of one
//! core). Verification runs on the blocking pool behind a semaphore sized to the cores, so a
//! burst of logins queues here instead of starving every other request of the node. An
//! unknown username is checked against a dummy hash, so it costs the same as a wrong
//! password and both get the same answer.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use gatehouse_connector::{
    CallbackInput, Connector, ConnectorConfig, ConnectorError, ConnectorState, CredentialsPrompt, FinishContext,
    OpenContext, Secret, Start, StartContext, UpstreamIdentity, async_trait,
};
use serde::Deserialize;
use tokio::sync::Semaphore;

/// One configured person.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticUser {
    /// What the person types in the username field (an email, usually).
    pub username: String,
    /// The stable upstream subject; the Gatehouse `user_id` becomes `auth0|<id>`.
    pub id: String,
    /// A PHC string made by `gatehouse hash-password` (argon2id). Kept out of `Debug`: a
    /// leaked hash invites offline guessing.
    pub password_hash: Secret<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default = "yes")]
    pub email_verified: bool,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub given_name: Option<String>,
    #[serde(default)]
    pub family_name: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

fn yes() -> bool {
    true
}

/// The connection's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub users: Vec<StaticUser>,
    /// The label of the username field on the login form.
    #[serde(default)]
    pub username_label: Option<String>,
}

pub struct StaticConnector {
    users: Vec<(StaticUser, PasswordHash<'static>)>,
    dummy: PasswordHash<'static>,
    hashing: Arc<Semaphore>,
    username_label: String,
}

/// What an unknown username is checked against, so it costs as much as a wrong password: a
/// hash with the parameters `hash_password` uses (argon2's defaults, OWASP's) that no
/// password matches. A constant, so `open` stays cheap.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$Z2F0ZWhvdXNlLXNhbHQxNg$dGltaW5nIGVxdWFsaXplciwgbWF0Y2hlcyBub2JvZHk";

/// Hash a password with argon2id and OWASP parameters into a PHC string.
pub fn hash_password(password: &str) -> Result<String, ConnectorError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ConnectorError::Misconfigured(format!("cannot hash password: {e}")))
}

fn parse_hash(phc: &str) -> Result<PasswordHash<'static>, String> {
    // PasswordHash borrows its input; the configured hashes live as long as the connector.
    let leaked: &'static str = Box::leak(phc.to_owned().into_boxed_str());
    let hash = PasswordHash::new(leaked).map_err(|e| e.to_string())?;
    if hash.algorithm.as_str() != "argon2id" {
        return Err(format!("algorithm {} is not argon2id", hash.algorithm));
    }
    Ok(hash)
}

impl ConnectorConfig for Config {
    type Connector = StaticConnector;

    /// Validate and build. Cheap apart from parsing the PHC strings; no network.
    fn open(self, _ctx: &OpenContext) -> Result<StaticConnector, ConnectorError> {
        let mut users = Vec::with_capacity(self.users.len());
        for (i, user) in self.users.into_iter().enumerate() {
            if user.username.is_empty() || user.id.is_empty() {
                return Err(ConnectorError::Misconfigured(format!("users[{i}]: username and id must not be empty")));
            }
            if users.iter().any(|(u, _): &(StaticUser, _)| u.username.eq_ignore_ascii_case(&user.username)) {
                return Err(ConnectorError::Misconfigured(format!(
                    "users[{i}]: username {} is listed twice",
                    user.username
                )));
            }
            let hash = parse_hash(user.password_hash.expose())
                .map_err(|e| ConnectorError::Misconfigured(format!("users[{i}].password_hash: {e}")))?;
            users.push((user, hash));
        }
        let dummy = parse_hash(DUMMY_HASH).map_err(ConnectorError::Misconfigured)?;
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        Ok(StaticConnector {
            users,
            dummy,
            hashing: Arc::new(Semaphore::new(cores)),
            username_label: self.username_label.unwrap_or_else(|| "Email".into()),
        })
    }
}

impl StaticConnector {
    async fn verify(&self, hash: PasswordHash<'static>, password: String) -> Result<bool, ConnectorError> {
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|_| ConnectorError::Upstream("password hashing is shutting down".into()))?;
        tokio::task::spawn_blocking(move || verify_with_reused_memory(password.as_bytes(), &hash))
            .await
            .map_err(|e| ConnectorError::Upstream(format!("password check failed: {e}")))
    }
}

thread_local! {
    /// argon2's working memory (19 MiB with OWASP parameters), kept per hashing thread. Freeing
    /// and allocating it for every check hands it back and forth to the kernel, and the page
    /// faults then cost a third of a password login.
    static BLOCKS: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Check `password` against an argon2id PHC hash, with this thread's reusable memory. The
/// comparison of the outputs is the library's constant-time one.
fn verify_with_reused_memory(password: &[u8], hash: &PasswordHash<'_>) -> bool {
    let check = || -> Option<bool> {
        let params = argon2::Params::try_from(hash).ok()?;
        let version = hash.version.map(argon2::Version::try_from).transpose().ok()?.unwrap_or_default();
        let argon = Argon2::new(argon2::Algorithm::Argon2id, version, params.clone());
        let expected = hash.hash?;
        let mut salt = [0u8; 64];
        let salt = hash.salt?.decode_b64(&mut salt).ok()?;
        let mut out = vec![0u8; expected.len()];
        BLOCKS.with(|cell| {
            let mut blocks = cell.borrow_mut();
            if blocks.len() != params.block_count() {
                *blocks = vec![argon2::Block::default(); params.block_count()];
            }
            argon.hash_password_into_with_memory(password, salt, &mut out, blocks.as_mut_slice()).ok()
        })?;
        let computed = argon2::password_hash::Output::new(&out).ok()?;
        Some(computed == expected)
    };
    check().unwrap_or(false)
}

#[async_trait]
impl Connector for StaticConnector {
    fn strategy(&self) -> &str {
        "auth0"
    }

    async fn start(&self, _ctx: &StartContext) -> Result<(Start, ConnectorState), ConnectorError> {
        Ok((
            Start::Credentials(CredentialsPrompt { username_label: self.username_label.clone() }),
            ConnectorState::default(),
        ))
    }

    async fn finish(
        &self,
        ctx: &FinishContext,
        _state: ConnectorState,
        input: CallbackInput,
    ) -> Result<UpstreamIdentity, ConnectorError> {
        let CallbackInput::Credentials { username, password } = input else {
            return Err(ConnectorError::InvalidResponse("expected a credentials form".into()));
        };
        let found = self.users.iter().find(|(u, _)| u.username.eq_ignore_ascii_case(username.trim()));
        let hash = found.map_or_else(|| self.dummy.clone(), |(_, h)| h.clone());
        let ok = self.verify(hash, password.into_inner()).await?;
        let Some((user, _)) = found.filter(|_| ok) else {
            return Err(ConnectorError::InvalidCredentials);
        };
        let mut raw = serde_json::Map::new();
        raw.insert("username".into(), user.username.clone().into());
        Ok(UpstreamIdentity {
            subject: user.id.clone(),
            email: user.email.clone(),
            email_verified: user.email.is_some() && user.email_verified,
            name: user.name.clone(),
            given_name: user.given_name.clone(),
            family_name: user.family_name.clone(),
            nickname: user.username.split('@').next().map(str::to_owned),
            groups: user.groups.clone(),
            raw,
            // The login's own "now" (the injected clock), so tests that pin time see it here too.
            authenticated_at: Some(ctx.now),
            amr: vec!["pwd".into()],
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_connector::{Secret, Url};

    fn ctx() -> OpenContext {
        OpenContext {
            connection: "users".into(),
            callback_url: Url::parse("http://127.0.0.1/callback/users").unwrap(),
            issuer: Url::parse("http://127.0.0.1").unwrap(),
        }
    }

    fn finish_ctx() -> FinishContext {
        FinishContext {
            callback_url: Url::parse("http://127.0.0.1/callback/users").unwrap(),
            transaction_id: "t".into(),
            now: gatehouse_connector::testkit::fixed_now(),
        }
    }

    fn connector() -> StaticConnector {
        Config {
            users: vec![StaticUser {
                username: "ada@example.com".into(),
                id: "ada".into(),
                password_hash: Secret::new(hash_password("correct horse").unwrap()),
                email: Some("ada@example.com".into()),
                email_verified: true,
                name: Some("Ada".into()),
                given_name: None,
                family_name: None,
                groups: vec!["admins".into()],
            }],
            username_label: None,
        }
        .open(&ctx())
        .unwrap()
    }

    fn creds(u: &str, p: &str) -> CallbackInput {
        CallbackInput::Credentials { username: u.into(), password: Secret::new(p.into()) }
    }

    #[tokio::test]
    async fn right_password_yields_identity() {
        let c = connector();
        let id = c
            .finish(&finish_ctx(), ConnectorState::default(), creds("ADA@example.com ", "correct horse"))
            .await
            .unwrap();
        assert_eq!(id.subject, "ada");
        assert!(id.email_verified);
        assert_eq!(id.groups, vec!["admins"]);
        assert_eq!(id.amr, vec!["pwd"]);
    }

    #[tokio::test]
    async fn wrong_password_and_unknown_user_get_the_same_error() {
        let c = connector();
        let wrong = c.finish(&finish_ctx(), ConnectorState::default(), creds("ada@example.com", "nope")).await;
        let unknown = c.finish(&finish_ctx(), ConnectorState::default(), creds("bob@example.com", "nope")).await;
        assert!(matches!(wrong, Err(ConnectorError::InvalidCredentials)));
        assert!(matches!(unknown, Err(ConnectorError::InvalidCredentials)));
    }

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_costs() {
        let real = hash_password("anything").unwrap();
        let (real, dummy) = (PasswordHash::new(&real).unwrap(), parse_hash(DUMMY_HASH).unwrap());
        assert_eq!(dummy.params, real.params, "the same argon2id cost parameters");
        assert_eq!(dummy.hash.unwrap().len(), real.hash.unwrap().len());
        assert!(!verify_with_reused_memory(b"", &dummy) && !verify_with_reused_memory(b"anything", &dummy));
    }

    #[tokio::test]
    async fn query_input_is_refused() {
        let c = connector();
        let r = c.finish(&finish_ctx(), ConnectorState::default(), CallbackInput::Query(vec![])).await;
        assert!(matches!(r, Err(ConnectorError::InvalidResponse(_))));
    }

    #[test]
    fn reused_memory_verification_agrees_with_the_library() {
        use argon2::password_hash::PasswordVerifier;
        let phc = hash_password("s3cret").unwrap();
        let hash = PasswordHash::new(&phc).unwrap();
        assert!(Argon2::default().verify_password(b"s3cret", &hash).is_ok());
        for _ in 0..2 {
            assert!(verify_with_reused_memory(b"s3cret", &hash), "the right password, with memory reused");
            assert!(!verify_with_reused_memory(b"s3cres", &hash));
        }
        // Other parameters than the default: the memory is resized.
        let small = Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(1024, 1, 1, None).unwrap(),
        );
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let phc = small.hash_password(b"pw", &salt).unwrap().to_string();
        assert!(verify_with_reused_memory(b"pw", &PasswordHash::new(&phc).unwrap()));
    }

    #[test]
    fn non_argon2id_hashes_are_refused_at_open() {
        let cfg = Config {
            users: vec![StaticUser {
                username: "x".into(),
                id: "x".into(),
                password_hash: Secret::new("$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$YWJjZGVmZ2hpamtsbW5vcA".into()),
                email: None,
                email_verified: true,
                name: None,
                given_name: None,
                family_name: None,
                groups: vec![],
            }],
            username_label: None,
        };
        assert!(matches!(cfg.open(&ctx()), Err(ConnectorError::Misconfigured(_))));
    }
}
