//! The protocol checks, run after the cryptography on the signed assertion: who issued it,
//! for whom, for which request, when, and how the subject was confirmed.

use std::time::{Duration, SystemTime};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::verify::Verified;
use crate::xml::{ASSERTION, Element, PROTOCOL};

pub const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
pub const TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";
const ENTITY: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity";

/// What this login expects of the assertion.
#[derive(Debug, Clone)]
pub struct Expect<'a> {
    pub idp_entity_id: &'a str,
    pub sp_entity_id: &'a str,
    pub acs_url: &'a str,
    /// The AuthnRequest ID this browser's transaction sent; `None` for an unsolicited
    /// response, which then must not claim to answer any request.
    pub in_response_to: Option<&'a str>,
    pub now: SystemTime,
    pub skew: Duration,
    /// How old an assertion may be when it arrives (its IssueInstant).
    pub max_age: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub friendly_name: Option<String>,
    pub values: Vec<String>,
}

/// The facts of one accepted assertion.
#[derive(Debug, Clone)]
pub struct Asserted {
    pub assertion_id: String,
    pub name_id: String,
    pub name_id_format: Option<String>,
    pub name_qualifier: Option<String>,
    pub sp_name_qualifier: Option<String>,
    pub session_index: Option<String>,
    pub authn_instant: Option<SystemTime>,
    pub authn_context: Option<String>,
    /// After this no check here would accept the assertion (IssueInstant + max age + skew):
    /// the replay cache keeps its ID that long, whatever its other time bounds say.
    pub valid_until: SystemTime,
    pub attributes: Vec<Attribute>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckError {
    /// The IdP answered, but not with success (the person cancelled, no access).
    #[error("the identity provider answered {0}")]
    Status(String),
    #[error("{0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> CheckError {
    CheckError::Invalid(msg.into())
}

pub fn parse_time(s: &str) -> Result<SystemTime, CheckError> {
    let t = OffsetDateTime::parse(s.trim(), &Rfc3339).map_err(|_| invalid(format!("bad time {s:?}")))?;
    Ok(t.into())
}

fn time_attr(e: &Element, name: &str) -> Result<Option<SystemTime>, CheckError> {
    e.attr(name).map(parse_time).transpose()
}

fn issuer_ok(issuer: Option<&Element>, expected: &str, required: bool) -> Result<(), CheckError> {
    match issuer {
        None if required => Err(invalid("no Issuer")),
        None => Ok(()),
        Some(i) => {
            if i.attr("Format").is_some_and(|f| f != ENTITY) {
                return Err(invalid("Issuer has a Format other than entity"));
            }
            match i.trimmed_text() {
                Some(t) if t == expected => Ok(()),
                _ => Err(invalid("unexpected Issuer")),
            }
        }
    }
}

/// The Response status, read from the response as received: a failure can only make us
/// refuse, so it need not be signed.
pub fn status(response: &Element) -> Result<(), CheckError> {
    let code = response
        .child(PROTOCOL, "Status")
        .and_then(|s| s.child(PROTOCOL, "StatusCode"))
        .ok_or_else(|| invalid("no StatusCode"))?;
    let top = code.attr("Value").unwrap_or_default();
    if top == SUCCESS {
        return Ok(());
    }
    let second = code.child(PROTOCOL, "StatusCode").and_then(|c| c.attr("Value"));
    let message = response
        .child(PROTOCOL, "Status")
        .and_then(|s| s.child(PROTOCOL, "StatusMessage"))
        .and_then(Element::trimmed_text);
    let short = |u: &str| u.rsplit(':').next().unwrap_or(u).to_owned();
    let mut text = short(top);
    if let Some(s) = second {
        text.push('/');
        text.push_str(&short(s));
    }
    if let Some(m) = message {
        text.push_str(": ");
        text.extend(m.chars().take(200));
    }
    Err(CheckError::Status(text))
}

/// Every check on a verified response; the assertion fields come only from signed bytes.
pub fn check(v: &Verified, expect: &Expect<'_>) -> Result<Asserted, CheckError> {
    let (response, a) = (&v.response, &v.assertion);
    let (now, skew) = (expect.now, expect.skew);
    if response.attr("Version") != Some("2.0") || a.attr("Version") != Some("2.0") {
        return Err(invalid("not SAML 2.0"));
    }
    status(response)?;
    // Response-level fields are unsigned unless the Response is signed; they are checked so
    // a mismatch refuses, never so they could grant anything.
    if let Some(d) = response.attr("Destination")
        && d != expect.acs_url
    {
        return Err(invalid("Destination is not this connection's ACS URL"));
    }
    if v.response_signed && response.attr("Destination").is_none() {
        return Err(invalid("a signed Response must name its Destination"));
    }
    match (response.attr("InResponseTo"), expect.in_response_to) {
        (Some(got), Some(want)) if got == want => {}
        (None, _) => {}
        (Some(_), Some(_)) => return Err(invalid("InResponseTo is another request's")),
        (Some(_), None) => return Err(invalid("an unsolicited response names a request")),
    }
    issuer_ok(response.child(ASSERTION, "Issuer"), expect.idp_entity_id, false)?;
    issuer_ok(a.child(ASSERTION, "Issuer"), expect.idp_entity_id, true)?;

    let issued = time_attr(a, "IssueInstant")?.ok_or_else(|| invalid("no IssueInstant"))?;
    if issued > now + skew {
        return Err(invalid("assertion issued in the future"));
    }
    let acceptable_until = issued + expect.max_age + skew;
    if acceptable_until < now {
        return Err(invalid("assertion is too old"));
    }

    // Subject: the NameID and at least one bearer confirmation that fits this login.
    let subject = a.only_child(ASSERTION, "Subject").ok_or_else(|| invalid("assertion needs one Subject"))?;
    if subject.child(ASSERTION, "EncryptedID").is_some() || subject.child(ASSERTION, "BaseID").is_some() {
        return Err(invalid("only a plain NameID is accepted"));
    }
    let name_id = subject.only_child(ASSERTION, "NameID").ok_or_else(|| invalid("Subject needs one NameID"))?;
    let name_id_text = name_id.trimmed_text().filter(|t| !t.is_empty()).ok_or_else(|| invalid("empty NameID"))?;
    let mut confirmed_until = None;
    let mut why = "no bearer SubjectConfirmation";
    for sc in subject.children_named(ASSERTION, "SubjectConfirmation") {
        if sc.attr("Method") != Some(BEARER) {
            continue;
        }
        let Some(data) = sc.only_child(ASSERTION, "SubjectConfirmationData") else {
            why = "bearer confirmation without SubjectConfirmationData";
            continue;
        };
        if data.attr("NotBefore").is_some() {
            why = "bearer confirmation with NotBefore";
            continue;
        }
        if data.attr("Recipient") != Some(expect.acs_url) {
            why = "Recipient is not this connection's ACS URL";
            continue;
        }
        match (data.attr("InResponseTo"), expect.in_response_to) {
            (Some(got), Some(want)) if got == want => {}
            (None, None) => {}
            (_, Some(_)) => {
                why = "SubjectConfirmationData InResponseTo is not this transaction's request";
                continue;
            }
            (Some(_), None) => {
                why = "an unsolicited assertion names a request";
                continue;
            }
        }
        let Some(until) = time_attr(data, "NotOnOrAfter")? else {
            why = "bearer confirmation without NotOnOrAfter";
            continue;
        };
        if now >= until + skew {
            why = "SubjectConfirmationData has expired";
            continue;
        }
        confirmed_until = Some(until);
        break;
    }
    confirmed_until.ok_or_else(|| invalid(why))?;

    // Conditions: time window and audience; a condition we do not know makes the assertion
    // indeterminate (SAML core 2.5.1.1), which is a refusal.
    if let Some(cond) = a.child(ASSERTION, "Conditions") {
        if let Some(unknown) = cond.elements().find(|c| {
            !(c.ns == ASSERTION
                && matches!(c.local.as_str(), "AudienceRestriction" | "OneTimeUse" | "ProxyRestriction"))
        }) {
            return Err(invalid(format!("unknown condition <{}>", crate::printable(&unknown.local))));
        }
        if a.children_named(ASSERTION, "Conditions").count() > 1 {
            return Err(invalid("several Conditions"));
        }
        if let Some(nb) = time_attr(cond, "NotBefore")?
            && now + skew < nb
        {
            return Err(invalid("assertion is not yet valid"));
        }
        if let Some(na) = time_attr(cond, "NotOnOrAfter")?
            && now >= na + skew
        {
            return Err(invalid("assertion has expired"));
        }
        let restrictions: Vec<&Element> = cond.children_named(ASSERTION, "AudienceRestriction").collect();
        if restrictions.is_empty() {
            return Err(invalid("no AudienceRestriction"));
        }
        for r in restrictions {
            let ours = r
                .children_named(ASSERTION, "Audience")
                .any(|aud| aud.trimmed_text().as_deref() == Some(expect.sp_entity_id));
            if !ours {
                return Err(invalid("Audience is not this service provider"));
            }
        }
    } else {
        return Err(invalid("no Conditions (an audience is required)"));
    }

    let authn = a.child(ASSERTION, "AuthnStatement");
    if authn.is_none() {
        return Err(invalid("no AuthnStatement"));
    }
    let authn_instant = authn.map(|s| time_attr(s, "AuthnInstant")).transpose()?.flatten();
    if let Some(s) = authn
        && let Some(t) = time_attr(s, "SessionNotOnOrAfter")?
        && now >= t + skew
    {
        return Err(invalid("the IdP session has ended"));
    }
    let session_index = authn.and_then(|s| s.attr("SessionIndex")).map(str::to_owned);
    let authn_context = authn
        .and_then(|s| s.child(ASSERTION, "AuthnContext"))
        .and_then(|c| c.child(ASSERTION, "AuthnContextClassRef"))
        .and_then(Element::trimmed_text);

    let mut attributes = Vec::new();
    for st in a.children_named(ASSERTION, "AttributeStatement") {
        for at in st.children_named(ASSERTION, "Attribute") {
            let Some(name) = at.attr("Name") else { continue };
            // A value with markup inside is no simple value: skipped, never half-read.
            let values =
                at.children_named(ASSERTION, "AttributeValue").filter_map(Element::text).map(|t| t.trim().to_owned());
            attributes.push(Attribute {
                name: name.to_owned(),
                friendly_name: at.attr("FriendlyName").map(str::to_owned),
                values: values.collect(),
            });
        }
    }
    Ok(Asserted {
        assertion_id: a.attr("ID").unwrap_or_default().to_owned(),
        name_id: name_id_text,
        name_id_format: name_id.attr("Format").map(str::to_owned),
        name_qualifier: name_id.attr("NameQualifier").map(str::to_owned),
        sp_name_qualifier: name_id.attr("SPNameQualifier").map(str::to_owned),
        session_index,
        authn_instant,
        authn_context,
        valid_until: acceptable_until,
        attributes,
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::xml::{Limits, parse};

    const NOW: u64 = 1_800_000_000;

    fn at(offset: i64) -> String {
        crate::binding::instant(UNIX_EPOCH + Duration::from_secs(NOW.checked_add_signed(offset).unwrap()))
    }

    /// A response and its assertion as `check` sees them after verification.
    fn verified(conditions_extra: &str, confirmations: &str) -> Verified {
        let response = format!(
            r#"<samlp:Response xmlns:samlp="{PROTOCOL}" xmlns:saml="{ASSERTION}" ID="_r" Version="2.0" Destination="https://sp/acs" InResponseTo="_req"><samlp:Status><samlp:StatusCode Value="{SUCCESS}"/></samlp:Status></samlp:Response>"#
        );
        let assertion = format!(
            r#"<saml:Assertion xmlns:saml="{ASSERTION}" ID="_a" Version="2.0" IssueInstant="{issued}"><saml:Issuer>https://idp</saml:Issuer><saml:Subject><saml:NameID>ada</saml:NameID>{confirmations}</saml:Subject><saml:Conditions NotBefore="{nb}" NotOnOrAfter="{na}"><saml:AudienceRestriction><saml:Audience>https://sp</saml:Audience></saml:AudienceRestriction>{conditions_extra}</saml:Conditions><saml:AuthnStatement AuthnInstant="{issued}" SessionIndex="_s"/></saml:Assertion>"#,
            issued = at(0),
            nb = at(-10),
            na = at(300),
        );
        Verified {
            response: parse(&response, &Limits::MESSAGE).unwrap(),
            assertion: parse(&assertion, &Limits::MESSAGE).unwrap(),
            response_signed: false,
            assertion_signed: true,
            weak_algorithm: false,
        }
    }

    fn bearer(until: i64) -> String {
        format!(
            r#"<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData NotOnOrAfter="{}" Recipient="https://sp/acs" InResponseTo="_req"/></saml:SubjectConfirmation>"#,
            at(until)
        )
    }

    fn expect(now_offset: u64) -> Expect<'static> {
        Expect {
            idp_entity_id: "https://idp",
            sp_entity_id: "https://sp",
            acs_url: "https://sp/acs",
            in_response_to: Some("_req"),
            now: UNIX_EPOCH + Duration::from_secs(NOW + now_offset),
            skew: Duration::from_secs(60),
            max_age: Duration::from_secs(300),
        }
    }

    #[test]
    fn a_good_assertion_passes_and_its_replay_window_ends_with_its_acceptance() {
        let a = check(&verified("", &bearer(300)), &expect(0)).unwrap();
        assert_eq!(a.name_id, "ada");
        assert_eq!(a.session_index.as_deref(), Some("_s"));
        // Whatever the confirmations say, nothing accepts it after IssueInstant + age + skew.
        assert_eq!(a.valid_until, UNIX_EPOCH + Duration::from_secs(NOW + 360));
        let long = check(&verified("", &format!("{}{}", bearer(100), bearer(5000))), &expect(0)).unwrap();
        assert_eq!(long.valid_until, a.valid_until, "a later second confirmation does not outlive the cache");
        assert!(check(&verified("", &bearer(5000)), &expect(361)).is_err(), "too old by then");
    }

    #[test]
    fn unknown_conditions_make_it_indeterminate() {
        assert!(check(&verified("<saml:OneTimeUse/>", &bearer(300)), &expect(0)).is_ok());
        let e = check(&verified("<saml:Condition/>", &bearer(300)), &expect(0)).unwrap_err();
        assert_eq!(e, CheckError::Invalid("unknown condition <Condition>".into()));
        let foreign = r#"<x:Policy xmlns:x="urn:example"/>"#;
        assert!(check(&verified(foreign, &bearer(300)), &expect(0)).is_err());
    }

    #[test]
    fn confirmation_and_time_checks() {
        let e = check(&verified("", &bearer(30)), &expect(100)).unwrap_err();
        assert_eq!(e, CheckError::Invalid("SubjectConfirmationData has expired".into()));
        let hok = bearer(300).replace("cm:bearer", "cm:holder-of-key");
        assert!(check(&verified("", &hok), &expect(0)).is_err());
        let mut other = expect(0);
        other.in_response_to = Some("_other");
        assert!(check(&verified("", &bearer(300)), &other).is_err());
        let mut early = expect(0);
        early.now = UNIX_EPOCH + Duration::from_secs(NOW - 200);
        assert_eq!(
            check(&verified("", &bearer(300)), &early).unwrap_err(),
            CheckError::Invalid("assertion issued in the future".into())
        );
    }
}
