//! Files rendered from templates (tera, Jinja2's syntax) before they are put on a host,
//! as Ansible's `template` does.

use serde::Serialize;
use sinew_support::error_chain as chain;

/// A template that did not parse or render.
#[derive(Debug, thiserror::Error)]
#[error("template {name}: {reason}")]
pub struct TemplateError {
    /// The template's name.
    pub name: String,
    /// tera's message with its causes.
    pub reason: String,
}

/// Renders `text`, named `name` in errors, with the fields of `context` as variables.
pub fn render(name: &str, text: &str, context: &impl Serialize) -> Result<String, TemplateError> {
    let error = |reason: String| TemplateError {
        name: name.into(),
        reason,
    };
    let context = tera::Context::from_serialize(context).map_err(|e| error(chain(&e)))?;
    let mut tera = tera::Tera::new();
    tera.add_raw_template(name, text)
        .map_err(|e| error(chain(&e)))?;
    tera.render(name, &context).map_err(|e| error(chain(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_variables_and_names_the_template_when_it_fails() {
        let context = serde_json::json!({ "name": "web1", "groups": ["web", "db"] });
        let text = render(
            "motd",
            "{{ name }}: {{ groups | join(sep=\", \") }}",
            &context,
        )
        .expect("renders");
        assert_eq!(text, "web1: web, db");
        let err = render("motd", "{{ missing }}", &context).expect_err("unknown variable");
        assert!(err.to_string().starts_with("template motd: "), "{err}");
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
