//! Hosted pages: templates compiled into the binary, rendered with auto-escaping.

use std::sync::LazyLock;

use minijinja::{Environment, context};
use serde::Serialize;

pub const DEMO_JS: &str = include_str!("demo.js");

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, source) in [
        ("base.html", include_str!("templates/base.html")),
        ("chooser.html", include_str!("templates/chooser.html")),
        ("credentials.html", include_str!("templates/credentials.html")),
        ("autopost.html", include_str!("templates/autopost.html")),
        ("web_message.html", include_str!("templates/web_message.html")),
        ("error.html", include_str!("templates/error.html")),
        ("signed_out.html", include_str!("templates/signed_out.html")),
        ("confirm_logout.html", include_str!("templates/confirm_logout.html")),
        ("demo.html", include_str!("templates/demo.html")),
    ] {
        env.add_template(name, source).expect("templates are valid");
    }
    env
});

/// Render a page. `nonce` authorises this response's inline style and script under the CSP.
pub fn render<S: Serialize>(template: &str, nonce: &str, ctx: S) -> String {
    let tmpl = ENV.get_template(template).expect("known template");
    tmpl.render(context! { nonce => nonce, ..minijinja::Value::from_serialize(&ctx) }).unwrap_or_else(|e| {
        tracing::error!(error = %e, template, "template failed");
        "<!doctype html><title>Error</title><p>The page could not be rendered.</p>".to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let html = render(
            "error.html",
            "n",
            context! { title => "<script>x</script>", message => "a\"b", code => "", correlation_id => "c1" },
        );
        assert!(!html.contains("<script>x</script>"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("c1"));
    }
}
