//! The one strict XML reader every SAML message goes through before anything else sees it.
//!
//! It builds a small namespace-resolved tree and refuses what SAML never needs and attacks
//! use: a DOCTYPE (entities, XXE, billion laughs), processing instructions, entity references
//! other than the five predefined ones and character references, non-UTF-8 documents,
//! unbound prefixes, and documents over the size, depth, element or attribute limits. Comments
//! are dropped and text split by comments or CDATA is joined, so a NameID always reads as its
//! whole text (never the first text node, the comment-injection bug of several SAML stacks).

use std::borrow::Cow;

use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

pub const PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
pub const ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
pub const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
pub const XENC: &str = "http://www.w3.org/2001/04/xmlenc#";
pub const METADATA: &str = "urn:oasis:names:tc:SAML:2.0:metadata";

/// Bounds for one document. The defaults fit real IdP responses with room to spare.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_depth: usize,
    pub max_elements: usize,
    pub max_attributes: usize,
}

impl Limits {
    pub const MESSAGE: Limits =
        Limits { max_bytes: 512 * 1024, max_depth: 32, max_elements: 5_000, max_attributes: 32 };
    /// Federation metadata (ADFS's is large: many RoleDescriptors and claim types).
    pub const METADATA: Limits =
        Limits { max_bytes: 4 * 1024 * 1024, max_depth: 32, max_elements: 100_000, max_attributes: 32 };
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum XmlError {
    #[error("document is larger than {0} bytes")]
    TooLarge(usize),
    #[error("document nests deeper than {0} elements")]
    TooDeep(usize),
    #[error("document has more than {0} elements")]
    TooManyElements(usize),
    #[error("an element has more than {0} attributes")]
    TooManyAttributes(usize),
    #[error("DOCTYPE declarations are not accepted")]
    Doctype,
    #[error("processing instructions are not accepted")]
    ProcessingInstruction,
    #[error("entity reference &{0}; is not accepted")]
    Entity(String),
    #[error("only UTF-8 documents are accepted")]
    Encoding,
    #[error("unbound namespace prefix")]
    UnboundPrefix,
    #[error("malformed XML: {0}")]
    Malformed(String),
    #[error("no root element")]
    Empty,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// Namespace URI, empty for unprefixed attributes.
    pub ns: String,
    pub local: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Namespace URI, empty when the element is in no namespace.
    pub ns: String,
    pub local: String,
    /// Attributes other than namespace declarations.
    pub attrs: Vec<Attr>,
    pub children: Vec<Node>,
    /// Byte range of the whole element in the source, from `<` to the end of its end tag.
    pub span: (usize, usize),
}

impl Element {
    pub fn is(&self, ns: &str, local: &str) -> bool {
        self.ns == ns && self.local == local
    }

    /// An unqualified attribute (SAML's own attributes are all unqualified).
    pub fn attr(&self, local: &str) -> Option<&str> {
        self.attrs.iter().find(|a| a.ns.is_empty() && a.local == local).map(|a| a.value.as_str())
    }

    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    pub fn children_named<'a>(&'a self, ns: &'a str, local: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.elements().filter(move |e| e.is(ns, local))
    }

    pub fn child(&self, ns: &str, local: &str) -> Option<&Element> {
        self.elements().find(|e| e.is(ns, local))
    }

    /// Exactly one child of this name; `None` when there are none or several.
    pub fn only_child(&self, ns: &str, local: &str) -> Option<&Element> {
        let mut it = self.elements().filter(|e| e.is(ns, local));
        let first = it.next()?;
        it.next().is_none().then_some(first)
    }

    /// The element's whole text for simple content; `None` when it has child elements (a
    /// value with markup inside is not a value).
    pub fn text(&self) -> Option<String> {
        let mut out = String::new();
        for n in &self.children {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Element(_) => return None,
            }
        }
        Some(out)
    }

    /// Trimmed simple text, the way SAML values (Issuer, NameID, Audience) are compared.
    pub fn trimmed_text(&self) -> Option<String> {
        self.text().map(|t| t.trim().to_owned())
    }

    /// Every element in document order, this one first.
    pub fn descendants(&self) -> Vec<&Element> {
        let mut out = vec![self];
        let mut i = 0;
        while i < out.len() {
            let e = out[i];
            // Children go right after their parent's position would be breadth-first; order is
            // not needed by callers, only completeness.
            out.extend(e.elements());
            i += 1;
        }
        out
    }
}

fn malformed(e: impl std::fmt::Display) -> XmlError {
    // quick-xml quotes the input it choked on: keep the message short and printable.
    XmlError::Malformed(crate::printable(&e.to_string()).chars().take(120).collect())
}

fn predefined(name: &str) -> Option<&'static str> {
    Some(match name {
        "lt" => "<",
        "gt" => ">",
        "amp" => "&",
        "apos" => "'",
        "quot" => "\"",
        _ => return None,
    })
}

fn start_element(
    reader: &NsReader<&[u8]>,
    e: &BytesStart<'_>,
    limits: &Limits,
    at: usize,
) -> Result<Element, XmlError> {
    let (ns, local) = reader.resolver().resolve_element(e.name());
    let ns = match ns {
        ResolveResult::Bound(ns) => String::from_utf8(ns.0.to_vec()).map_err(|_| XmlError::Encoding)?,
        ResolveResult::Unbound => String::new(),
        ResolveResult::Unknown(_) => return Err(XmlError::UnboundPrefix),
    };
    let local = String::from_utf8(local.as_ref().to_vec()).map_err(|_| XmlError::Encoding)?;
    let mut attrs = Vec::new();
    let mut count = 0;
    for a in e.attributes().with_checks(true) {
        let a = a.map_err(malformed)?;
        count += 1;
        if count > limits.max_attributes {
            return Err(XmlError::TooManyAttributes(limits.max_attributes));
        }
        let key = a.key;
        if key.as_namespace_binding().is_some() {
            continue;
        }
        let (ans, alocal) = reader.resolver().resolve_attribute(key);
        let ans = match ans {
            ResolveResult::Bound(ns) => String::from_utf8(ns.0.to_vec()).map_err(|_| XmlError::Encoding)?,
            ResolveResult::Unbound => String::new(),
            ResolveResult::Unknown(_) => return Err(XmlError::UnboundPrefix),
        };
        let value = a
            .normalized_value_with(XmlVersion::Implicit1_0, 1, predefined)
            .map_err(|e| match e {
                quick_xml::Error::Escape(quick_xml::escape::EscapeError::UnrecognizedEntity(_, name)) => {
                    XmlError::Entity(name)
                }
                other => malformed(other),
            })?
            .into_owned();
        attrs.push(Attr {
            ns: ans,
            local: String::from_utf8(alocal.as_ref().to_vec()).map_err(|_| XmlError::Encoding)?,
            value,
        });
    }
    Ok(Element { ns, local, attrs, children: Vec::new(), span: (at, at) })
}

fn push_text(stack: &mut [Element], text: Cow<'_, str>) {
    if let Some(top) = stack.last_mut() {
        match top.children.last_mut() {
            // Text split by a comment, CDATA or a character reference joins the text before it.
            Some(Node::Text(prev)) => prev.push_str(&text),
            _ => top.children.push(Node::Text(text.into_owned())),
        }
    }
}

/// Parse a whole document under `limits`.
pub fn parse(doc: &str, limits: &Limits) -> Result<Element, XmlError> {
    if doc.len() > limits.max_bytes {
        return Err(XmlError::TooLarge(limits.max_bytes));
    }
    // quick-xml skips a byte-order mark without counting it: parse what follows it and shift
    // every offset, so spans index `doc` itself.
    let body = doc.strip_prefix('\u{feff}').unwrap_or(doc);
    let shift = doc.len() - body.len();
    let mut reader = NsReader::from_str(body);
    let cfg = reader.config_mut();
    cfg.check_end_names = true;
    cfg.check_comments = true;
    cfg.expand_empty_elements = false;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements = 0usize;
    let mut first = true;
    loop {
        let at = reader.buffer_position() as usize + shift;
        let event = reader.read_event().map_err(malformed)?;
        let end = reader.buffer_position() as usize + shift;
        let was_first = std::mem::replace(&mut first, false);
        match event {
            // The declaration belongs at the very start; anywhere else it is a processing
            // instruction with a reserved target, which libxml2 refuses too.
            Event::Decl(_) if !was_first => return Err(XmlError::ProcessingInstruction),
            Event::Decl(d) => {
                if let Some(enc) = d.encoding() {
                    let enc = enc.map_err(malformed)?;
                    if !enc.eq_ignore_ascii_case(b"utf-8") {
                        return Err(XmlError::Encoding);
                    }
                }
            }
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::PI(_) => return Err(XmlError::ProcessingInstruction),
            Event::Comment(_) => {}
            Event::Start(e) | Event::Empty(e) if root.is_some() => {
                let _ = e;
                return Err(malformed("content after the root element"));
            }
            Event::Start(e) => {
                elements += 1;
                if elements > limits.max_elements {
                    return Err(XmlError::TooManyElements(limits.max_elements));
                }
                if stack.len() >= limits.max_depth {
                    return Err(XmlError::TooDeep(limits.max_depth));
                }
                let el = start_element(&reader, &e, limits, at)?;
                stack.push(el);
            }
            Event::Empty(e) => {
                elements += 1;
                if elements > limits.max_elements {
                    return Err(XmlError::TooManyElements(limits.max_elements));
                }
                if stack.len() >= limits.max_depth {
                    return Err(XmlError::TooDeep(limits.max_depth));
                }
                let mut el = start_element(&reader, &e, limits, at)?;
                el.span = (at, end);
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::Element(el)),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                let mut el = stack.pop().ok_or_else(|| malformed("unbalanced end tag"))?;
                el.span = (el.span.0, end);
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::Element(el)),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let s = t.xml10_content().map_err(malformed)?;
                if stack.is_empty() {
                    if !s.trim().is_empty() {
                        return Err(malformed("text outside the root element"));
                    }
                } else {
                    push_text(&mut stack, s);
                }
            }
            Event::CData(c) => {
                if stack.is_empty() {
                    return Err(malformed("CDATA outside the root element"));
                }
                let s = c.decode().map_err(malformed)?;
                push_text(&mut stack, s);
            }
            Event::GeneralRef(r) => {
                let text: String = if r.is_char_ref() {
                    match r.resolve_char_ref().map_err(malformed)? {
                        Some(c) => c.to_string(),
                        None => return Err(malformed("bad character reference")),
                    }
                } else {
                    let name = r.decode().map_err(malformed)?;
                    predefined(&name).ok_or_else(|| XmlError::Entity(name.into_owned()))?.to_owned()
                };
                if stack.is_empty() {
                    return Err(malformed("reference outside the root element"));
                }
                push_text(&mut stack, Cow::Owned(text));
            }
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(malformed("unclosed element"));
    }
    root.ok_or(XmlError::Empty)
}

/// Escape text for element content or a double-quoted attribute.
pub fn escape(s: &str) -> Cow<'_, str> {
    quick_xml::escape::escape(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Element, XmlError> {
        parse(s, &Limits::MESSAGE)
    }

    #[test]
    fn resolves_namespaces_not_prefixes() {
        let e = p(r#"<x:R xmlns:x="urn:oasis:names:tc:SAML:2.0:protocol" ID="a"><y:I xmlns:y="urn:oasis:names:tc:SAML:2.0:assertion">i</y:I></x:R>"#).unwrap();
        assert!(e.is(PROTOCOL, "R"));
        assert_eq!(e.attr("ID"), Some("a"));
        assert_eq!(e.child(ASSERTION, "I").unwrap().text().unwrap(), "i");
    }

    #[test]
    fn text_split_by_comment_or_cdata_is_whole() {
        let e = p("<a>ada@example.com<!---->.evil.test</a>").unwrap();
        assert_eq!(e.text().unwrap(), "ada@example.com.evil.test");
        let e = p("<a><![CDATA[ada@example.com]]>.evil.test</a>").unwrap();
        assert_eq!(e.text().unwrap(), "ada@example.com.evil.test");
        let e = p("<a>a&amp;b&#x41;</a>").unwrap();
        assert_eq!(e.text().unwrap(), "a&bA");
    }

    #[test]
    fn refuses_what_saml_never_needs() {
        assert_eq!(p(r#"<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>"#), Err(XmlError::Doctype));
        assert_eq!(p("<a>&x;</a>"), Err(XmlError::Entity("x".into())));
        assert_eq!(p(r#"<a b="&x;"/>"#), Err(XmlError::Entity("x".into())));
        assert_eq!(p("<a>x<?pi y?></a>"), Err(XmlError::ProcessingInstruction));
        assert_eq!(p(r#"<?xml version="1.0" encoding="ISO-8859-1"?><a/>"#), Err(XmlError::Encoding));
        assert_eq!(p("<p:a/>"), Err(XmlError::UnboundPrefix));
        assert!(matches!(p("<a><b></a>"), Err(XmlError::Malformed(_))));
        assert!(matches!(p("<a/><b/>"), Err(XmlError::Malformed(_))));
        assert!(matches!(p(r#"<a b="1" b="2"/>"#), Err(XmlError::Malformed(_))));
    }

    #[test]
    fn limits_hold() {
        let deep = format!("{}{}", "<x>".repeat(40), "</x>".repeat(40));
        assert_eq!(p(&deep), Err(XmlError::TooDeep(32)));
        let wide = format!("<a>{}</a>", "<b/>".repeat(6000));
        assert_eq!(p(&wide), Err(XmlError::TooManyElements(5000)));
        let attrs: String = (0..40).map(|i| format!(" a{i}=\"1\"")).collect();
        assert_eq!(p(&format!("<a{attrs}/>")), Err(XmlError::TooManyAttributes(32)));
        let big = format!("<a>{}</a>", "x".repeat(600 * 1024));
        assert_eq!(p(&big), Err(XmlError::TooLarge(512 * 1024)));
    }

    #[test]
    fn a_byte_order_mark_keeps_spans_true_and_a_late_declaration_is_refused() {
        let doc = "\u{feff}<a><b/></a>";
        let e = p(doc).unwrap();
        assert_eq!(&doc[e.span.0..e.span.1], "<a><b/></a>");
        let b = e.elements().next().unwrap();
        assert_eq!(&doc[b.span.0..b.span.1], "<b/>");
        assert_eq!(p(r#"<a><?xml version="1.0"?><b/></a>"#), Err(XmlError::ProcessingInstruction));
        assert_eq!(p(r#"<a/><?xml version="1.0"?>"#), Err(XmlError::ProcessingInstruction));
        assert!(p(r#"<?xml version="1.0" encoding="UTF-8"?><a/>"#).is_ok());
    }

    #[test]
    fn spans_cover_elements() {
        let doc = r#"<a><b x="1">t</b><c/></a>"#;
        let e = p(doc).unwrap();
        let b = e.elements().next().unwrap();
        assert_eq!(&doc[b.span.0..b.span.1], r#"<b x="1">t</b>"#);
        let c = e.elements().nth(1).unwrap();
        assert_eq!(&doc[c.span.0..c.span.1], "<c/>");
        assert_eq!(&doc[e.span.0..e.span.1], doc);
    }
}
