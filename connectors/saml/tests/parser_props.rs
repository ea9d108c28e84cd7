//! Property tests over the untrusted-input surface of the SAML service provider: the strict
//! XML reader, the inflater of the HTTP-Redirect binding, the decryptor and the whole
//! `verify_document` path. The central property is that no mutation of a correctly signed
//! response can make the verifier accept content other than what was signed.
//!
//! Case counts are fixed and small so the file stays fast in debug builds on CI. A failing
//! case's seed is persisted in `tests/parser_props.proptest-regressions` (commit it): every
//! later run replays it first, so a real bug stays a reproducible red, not an intermittent one.

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gatehouse_connector_saml::verify::{Policy, Verified};
use gatehouse_connector_saml::xml::{self, ASSERTION, Element, Limits};
use gatehouse_connector_saml::{binding, metadata, verify_document};
use openssl::pkey::{PKey, Private};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, FileFailurePersistence};

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::{Scratch, make_py};

const VALID: &str = include_str!("../selftest/valid.xml");
const CERT: &str = include_str!("../selftest/selftest.crt");
const NAME_ID: &str = "selftest-user";
const ASSERTION_ID: &str = "_22222222222222222222222222222222";

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..Config::default()
    }
}

fn selftest_policy() -> Policy {
    Policy {
        certificates: metadata::pem_certificates(CERT).expect("the selftest certificate parses"),
        allow_response_signature_only: false,
        allow_sha1: false,
    }
}

/// The whole text of `Subject/NameID` in the signed assertion.
fn name_id(assertion: &Element) -> Option<String> {
    assertion.child(ASSERTION, "Subject")?.child(ASSERTION, "NameID")?.text()
}

/// What the unmodified fixture verifies to; every accepted mutation must give exactly this.
static BASELINE: LazyLock<Verified> = LazyLock::new(|| {
    let v = verify_document(VALID, &selftest_policy(), None).expect("the selftest fixture verifies");
    assert_eq!(name_id(&v.assertion).as_deref(), Some(NAME_ID));
    assert_eq!(v.assertion.attr("ID"), Some(ASSERTION_ID));
    v
});

/// The checks for an accepted document: the signed assertion is the one that was signed.
/// Equality of the whole element is sound because the pre-digest bytes it is read from are
/// fixed by the digest; NameID and ID are checked first for a readable failure.
fn same_signed_content(v: &Verified, baseline: &Verified) -> Result<(), TestCaseError> {
    prop_assert_eq!(name_id(&v.assertion), name_id(&baseline.assertion));
    prop_assert_eq!(v.assertion.attr("ID"), baseline.assertion.attr("ID"));
    prop_assert_eq!(&v.assertion, &baseline.assertion);
    Ok(())
}

// ------------------------------------------------------------------ XML-ish generators

/// Pieces of SAML-shaped markup: random sequences of them get past the first parse far more
/// often than random bytes, and so reach the shape checks and xmlsec.
const TOKENS: &[&str] = &[
    r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" ID="_r" Version="2.0">"#,
    "</samlp:Response>",
    r#"<saml:Assertion ID="_a" Version="2.0">"#,
    "</saml:Assertion>",
    "<saml:Subject>",
    "</saml:Subject>",
    "<saml:NameID>root-admin</saml:NameID>",
    "<ds:Signature>",
    "</ds:Signature>",
    r##"<ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/><ds:Reference URI="#_a"><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue>AAAA</ds:DigestValue></ds:Reference></ds:SignedInfo>"##,
    "<ds:SignatureValue>AAAA</ds:SignatureValue>",
    "<saml:EncryptedAssertion>",
    "</saml:EncryptedAssertion>",
    "<x/>",
    "<!--c-->",
    "<![CDATA[d]]>",
    "<?pi x?>",
    "&amp;",
    "&#65;",
    "&e;",
    "text",
    " ",
];

fn xmlish() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..24).prop_map(|t| t.concat())
}

fn arbitrary_document() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..2048).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        any::<String>(),
        xmlish(),
    ]
}

// ------------------------------------------------------------------ 1. arbitrary input

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn arbitrary_input_never_verifies(doc in arbitrary_document()) {
        prop_assert!(verify_document(&doc, &selftest_policy(), None).is_err());
    }
}

// ------------------------------------------------------------------ 2. mutated valid.xml

/// Dangerous pieces to splice into the signed document.
static SNIPPETS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let cut = |open: &str, close: &str| {
        let from = VALID.find(open).expect("fixture has the element");
        let to = VALID[from..].find(close).expect("fixture closes the element") + from + close.len();
        VALID[from..to].to_owned()
    };
    vec![
        "<!--x-->".into(),
        "<!---->".into(),
        "<![CDATA[a]]>".into(),
        "<?pi x?>".into(),
        r#"<!DOCTYPE a [<!ENTITY e "x">]>"#.into(),
        "&e;".into(),
        "&amp;".into(),
        "&#x41;".into(),
        format!(r#"<saml:Assertion ID="{ASSERTION_ID}">"#),
        "</saml:Assertion>".into(),
        "<saml:NameID>root-admin</saml:NameID>".into(),
        "<saml:Subject><saml:NameID>root-admin</saml:NameID></saml:Subject>".into(),
        "<samlp:Extensions>".into(),
        "</samlp:Extensions>".into(),
        "<ds:Object>".into(),
        "</ds:Object>".into(),
        cut("<ds:Signature", "</ds:Signature>"),
        cut("<saml:Assertion", "</saml:Assertion>"),
        r#" xmlns:saml="urn:evil""#.into(),
        r#" xmlns:ds="urn:evil""#.into(),
        r#" xmlns="urn:evil""#.into(),
        format!(r#" ID="{ASSERTION_ID}""#),
        r#" id="_x""#.into(),
        r#" xml:space="preserve""#.into(),
        "root-admin".into(),
        " ".into(),
        "\u{feff}".into(),
        "é".into(),
    ]
});

/// Where a snippet goes. Markup boundaries and the NameID text make well-formed results
/// likely; `Anywhere` covers the rest.
#[derive(Debug, Clone)]
enum At {
    Anywhere(Index),
    BeforeTag(Index),
    AfterTag(Index),
    /// Inside a start tag, before its `>` or `/>`: where an attribute would go.
    InTag(Index),
    InNameId(Index),
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: Index, bit: u8 },
    Insert { at: Index, byte: u8 },
    Delete { at: Index },
    Duplicate { from: Index, len: usize, to: Index },
    Remove { from: Index, len: usize },
    Snippet { at: At, piece: Index },
}

fn at() -> impl Strategy<Value = At> {
    prop_oneof![
        any::<Index>().prop_map(At::Anywhere),
        any::<Index>().prop_map(At::BeforeTag),
        any::<Index>().prop_map(At::AfterTag),
        any::<Index>().prop_map(At::InTag),
        any::<Index>().prop_map(At::InNameId),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => (any::<Index>(), any::<u8>()).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        1 => any::<Index>().prop_map(|at| Mutation::Delete { at }),
        1 => (any::<Index>(), 1..200usize, any::<Index>())
            .prop_map(|(from, len, to)| Mutation::Duplicate { from, len, to }),
        1 => (any::<Index>(), 1..200usize).prop_map(|(from, len)| Mutation::Remove { from, len }),
        // Snippets are the interesting case: weighted up.
        3 => (at(), any::<Index>()).prop_map(|(at, piece)| Mutation::Snippet { at, piece }),
    ]
}

/// The `n`th of `candidates`, or anywhere when there are none.
fn pick(candidates: &[usize], i: &Index, len: usize) -> usize {
    if candidates.is_empty() { i.index(len + 1) } else { candidates[i.index(candidates.len())] }
}

fn offset(doc: &[u8], at: &At) -> usize {
    let positions = |b: u8| doc.iter().enumerate().filter(|(_, c)| **c == b).map(|(i, _)| i).collect::<Vec<_>>();
    match at {
        At::Anywhere(i) => i.index(doc.len() + 1),
        At::BeforeTag(i) => pick(&positions(b'<'), i, doc.len()),
        At::AfterTag(i) => pick(&positions(b'>').iter().map(|p| p + 1).collect::<Vec<_>>(), i, doc.len()),
        At::InTag(i) => {
            let ends: Vec<usize> =
                positions(b'>').into_iter().map(|p| if p > 0 && doc[p - 1] == b'/' { p - 1 } else { p }).collect();
            pick(&ends, i, doc.len())
        }
        At::InNameId(i) => match doc.windows(NAME_ID.len()).position(|w| w == NAME_ID.as_bytes()) {
            Some(p) => p + i.index(NAME_ID.len() + 1),
            None => i.index(doc.len() + 1),
        },
    }
}

fn apply(doc: &mut Vec<u8>, m: &Mutation) {
    let len = doc.len();
    match m {
        Mutation::Flip { at, bit } if len > 0 => doc[at.index(len)] ^= 1 << (bit % 8),
        Mutation::Insert { at, byte } => doc.insert(at.index(len + 1), *byte),
        Mutation::Delete { at } if len > 0 => {
            doc.remove(at.index(len));
        }
        Mutation::Duplicate { from, len: n, to } => {
            let start = from.index(len + 1);
            let chunk = doc[start..(start + n).min(len)].to_vec();
            let to = to.index(len + 1);
            doc.splice(to..to, chunk);
        }
        Mutation::Remove { from, len: n } => {
            let start = from.index(len + 1);
            doc.drain(start..(start + n).min(len));
        }
        Mutation::Snippet { at, piece } => {
            let snippet = SNIPPETS[piece.index(SNIPPETS.len())].as_bytes();
            let to = offset(doc, at);
            doc.splice(to..to, snippet.iter().copied());
        }
        Mutation::Flip { .. } | Mutation::Delete { .. } => {}
    }
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn mutations_never_change_what_verifies(mutations in prop::collection::vec(mutation(), 1..4)) {
        let mut doc = VALID.as_bytes().to_vec();
        for m in &mutations {
            apply(&mut doc, m);
        }
        let doc = String::from_utf8_lossy(&doc);
        if let Ok(v) = verify_document(&doc, &selftest_policy(), None) {
            same_signed_content(&v, &BASELINE)?;
        }
    }
}

/// The mutation property is not vacuous: some mutations do verify (c14n drops comments),
/// and a NameID split by a comment still reads whole.
#[test]
fn comment_in_name_id_verifies_whole_and_cdata_does_not() {
    let policy = selftest_policy();
    let with = |piece: &str| VALID.replacen(NAME_ID, &format!("selftest{piece}-user"), 1);
    let v = verify_document(&with("<!--x-->"), &policy, None).expect("a comment does not change the signed bytes");
    same_signed_content(&v, &BASELINE).unwrap();
    // CDATA is text to c14n: this adds an "a" to the NameID, after signing.
    assert!(verify_document(&with("<![CDATA[a]]>"), &policy, None).is_err());
}

// ------------------------------------------------------------------ 3. the XML reader

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn reader_never_panics_and_keeps_spans(doc in arbitrary_document()) {
        if let Ok(root) = xml::parse(&doc, &Limits::MESSAGE) {
            check_tree(&doc, &root, &Limits::MESSAGE)?;
        }
    }
}

/// A well-formed element tree, to compare the reader's limits against an oracle.
#[derive(Debug, Clone)]
enum Tree {
    Text(String),
    Element { attrs: usize, children: Vec<Tree> },
}

impl Tree {
    fn render(&self, out: &mut String) {
        match self {
            Tree::Text(t) => out.push_str(t),
            Tree::Element { attrs, children } => {
                out.push_str("<e");
                for i in 0..*attrs {
                    out.push_str(&format!(r#" a{i}="v&amp;{i}""#));
                }
                if children.is_empty() {
                    out.push_str("/>");
                } else {
                    out.push('>');
                    children.iter().for_each(|c| c.render(out));
                    out.push_str("</e>");
                }
            }
        }
    }

    /// (depth, elements, most attributes on one element)
    fn measure(&self) -> (usize, usize, usize) {
        match self {
            Tree::Text(_) => (0, 0, 0),
            Tree::Element { attrs, children } => children
                .iter()
                .map(Tree::measure)
                .fold((1, 1, *attrs), |(d, n, a), (cd, cn, ca)| (d.max(cd + 1), n + cn, a.max(ca))),
        }
    }
}

fn tree() -> impl Strategy<Value = Tree> {
    let leaf = prop_oneof![
        "[a-z ]{1,4}".prop_map(Tree::Text),
        Just(Tree::Text("&lt;&#x41;".into())),
        (0..4usize).prop_map(|attrs| Tree::Element { attrs, children: Vec::new() }),
    ];
    let inner = leaf.prop_recursive(8, 48, 4, |inner| {
        ((0..4usize), prop::collection::vec(inner, 0..4))
            .prop_map(|(attrs, children)| Tree::Element { attrs, children })
    });
    ((0..4usize), prop::collection::vec(inner, 0..4)).prop_map(|(attrs, children)| Tree::Element { attrs, children })
}

/// Limits small enough for generated trees to cross them.
const SMALL: Limits = Limits { max_bytes: 4096, max_depth: 4, max_elements: 12, max_attributes: 2 };

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn reader_limits_match_an_oracle(t in tree()) {
        let mut doc = String::new();
        t.render(&mut doc);
        let (depth, elements, attrs) = t.measure();
        let within = doc.len() <= SMALL.max_bytes
            && depth <= SMALL.max_depth
            && elements <= SMALL.max_elements
            && attrs <= SMALL.max_attributes;
        match xml::parse(&doc, &SMALL) {
            Ok(root) => {
                prop_assert!(within, "accepted beyond the limits: {doc}");
                check_tree(&doc, &root, &SMALL)?;
            }
            Err(e) => prop_assert!(!within, "refused within the limits ({e}): {doc}"),
        }
    }
}

/// Limits hold on an accepted tree, and every span is the element's own markup in the
/// source (the decryption path splices the document at these offsets).
fn check_tree(doc: &str, root: &Element, limits: &Limits) -> Result<(), TestCaseError> {
    fn walk(doc: &str, e: &Element, depth: usize, count: &mut usize, limits: &Limits) -> Result<(), TestCaseError> {
        *count += 1;
        prop_assert!(depth <= limits.max_depth, "depth {depth}");
        prop_assert!(e.attrs.len() <= limits.max_attributes);
        let (from, to) = e.span;
        prop_assert!(from < to && to <= doc.len(), "span {:?} of {}", e.span, doc.len());
        prop_assert!(doc.is_char_boundary(from) && doc.is_char_boundary(to));
        let markup = &doc[from..to];
        prop_assert!(markup.starts_with('<') && markup.ends_with('>'), "span {markup:?}");
        for c in e.elements() {
            prop_assert!(from < c.span.0 && c.span.1 <= to, "child span outside its parent");
            walk(doc, c, depth + 1, count, limits)?;
        }
        Ok(())
    }
    let mut count = 0;
    walk(doc, root, 1, &mut count, limits)?;
    prop_assert!(count <= limits.max_elements);
    Ok(())
}

// ------------------------------------------------------------------ 4. inflate

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn inflate_never_panics_and_stays_bounded(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        if let Ok(s) = binding::inflate(&bytes) {
            prop_assert!(s.len() <= binding::MAX_INFLATED);
        }
    }
}

proptest! {
    // Each case deflates and inflates up to 512 KiB: fewer cases.
    #![proptest_config(config(24))]

    #[test]
    fn inflate_is_exact_up_to_the_limit(
        chunk in "[a-z<>/ ]{1,16}",
        total in prop_oneof![
            0..1024usize,
            (binding::MAX_INFLATED - 16)..(binding::MAX_INFLATED + 16),
            0..2 * binding::MAX_INFLATED,
        ],
    ) {
        use std::io::Write;
        let plain: String = chunk.chars().cycle().take(total).collect();
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(plain.as_bytes()).unwrap();
        let deflated = z.finish().unwrap();
        match binding::inflate(&deflated) {
            Ok(s) => prop_assert!(total <= binding::MAX_INFLATED && s == plain),
            Err(_) => prop_assert!(total > binding::MAX_INFLATED),
        }
    }
}

// ------------------------------------------------------------------ decryption

struct Encrypted {
    doc: String,
    key: PKey<Private>,
    policy: Policy,
    baseline: Verified,
}

/// One aes256-gcm / RSA-OAEP encrypted response from make.py, made once per process.
static ENCRYPTED: LazyLock<Encrypted> = LazyLock::new(|| {
    let dir = Scratch::new("saml-props");
    let keys = dir.0.join("keys");
    make_py(&["keys", keys.to_str().unwrap()]);
    let spec = serde_json::json!({
        "idp_entity_id": "https://idp.example.test/saml/metadata",
        "sp_entity_id": "https://gatehouse.example.test/saml/metadata",
        "acs_url": "https://gatehouse.example.test/callback/acme",
        "name_id": "ada-persistent-7",
        "email": "ada@example.com",
        "cases": {"encrypted_valid_aes256gcm": "_0123456789abcdef0123456789abcdef"},
    });
    let spec_path = dir.0.join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let out = make_py(&["responses", "--keys", keys.to_str().unwrap(), "--spec", spec_path.to_str().unwrap()]);
    let out: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let b64 = out["encrypted_valid_aes256gcm"]["SAMLResponse"].as_str().unwrap();
    let doc = String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap();
    let key = PKey::private_key_from_pem(&std::fs::read(keys.join("sp.key")).unwrap()).unwrap();
    let certificates = metadata::pem_certificates(&std::fs::read_to_string(keys.join("idp.crt")).unwrap()).unwrap();
    let policy = Policy { certificates, allow_response_signature_only: false, allow_sha1: false };
    let baseline = verify_document(&doc, &policy, Some(&key)).expect("the encrypted fixture verifies");
    assert_eq!(name_id(&baseline.assertion).as_deref(), Some("ada-persistent-7"));
    Encrypted { doc, key, policy, baseline }
});

const CIPHER_OPEN: &str = "<xenc:CipherValue>";
const CIPHER_CLOSE: &str = "</xenc:CipherValue>";

/// What to do to one CipherValue: the wrapped key (the first) or the content (the last).
#[derive(Debug, Clone)]
enum CipherMutation {
    Flip {
        at: Index,
        bit: u8,
    },
    Truncate {
        keep: Index,
    },
    Append(Vec<u8>),
    Replace(Vec<u8>),
    /// Text-level: a character base64 does not have, or whitespace it skips.
    Text {
        at: Index,
        ch: char,
    },
}

fn cipher_mutation() -> impl Strategy<Value = CipherMutation> {
    prop_oneof![
        3 => (any::<Index>(), any::<u8>()).prop_map(|(at, bit)| CipherMutation::Flip { at, bit }),
        1 => any::<Index>().prop_map(|keep| CipherMutation::Truncate { keep }),
        1 => prop::collection::vec(any::<u8>(), 1..32).prop_map(CipherMutation::Append),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(CipherMutation::Replace),
        1 => (any::<Index>(), prop::sample::select(&['=', '!', ' ', '\n', '&', 'A', '+'][..]))
            .prop_map(|(at, ch)| CipherMutation::Text { at, ch }),
    ]
}

fn mutate_cipher_value(doc: &str, wrapped_key: bool, m: &CipherMutation) -> String {
    let open = if wrapped_key { doc.find(CIPHER_OPEN) } else { doc.rfind(CIPHER_OPEN) }.unwrap() + CIPHER_OPEN.len();
    let close = doc[open..].find(CIPHER_CLOSE).unwrap() + open;
    let text = &doc[open..close];
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    // An earlier text mutation may have left no base64 to work on: the value stays broken.
    let Ok(mut bytes) = STANDARD.decode(&compact) else { return doc.to_owned() };
    let replaced = match m {
        CipherMutation::Flip { at, bit } if !bytes.is_empty() => {
            let i = at.index(bytes.len());
            bytes[i] ^= 1 << (bit % 8);
            STANDARD.encode(&bytes)
        }
        CipherMutation::Flip { .. } => compact,
        CipherMutation::Truncate { keep } => {
            bytes.truncate(keep.index(bytes.len() + 1));
            STANDARD.encode(&bytes)
        }
        CipherMutation::Append(more) => {
            bytes.extend_from_slice(more);
            STANDARD.encode(&bytes)
        }
        CipherMutation::Replace(with) => STANDARD.encode(with),
        CipherMutation::Text { at, ch } => {
            let mut t = compact;
            t.insert(at.index(t.len() + 1), *ch);
            t
        }
    };
    format!("{}{}{}", &doc[..open], replaced, &doc[close..])
}

proptest! {
    // Every case that gets past the OAEP unwrap costs an RSA private-key operation.
    #![proptest_config(config(256))]

    #[test]
    fn mutated_ciphertext_never_verifies_other_content(
        wrapped_key in any::<bool>(),
        mutations in prop::collection::vec(cipher_mutation(), 1..3),
    ) {
        let e = &*ENCRYPTED;
        let mut doc = e.doc.clone();
        for m in &mutations {
            doc = mutate_cipher_value(&doc, wrapped_key, m);
        }
        if let Ok(v) = verify_document(&doc, &e.policy, Some(&e.key)) {
            same_signed_content(&v, &e.baseline)?;
        }
    }
}
