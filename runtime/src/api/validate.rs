//! Field validation for request bodies: collects every problem so a form can show them all.

use shared::FieldError;

use super::error::ApiError;

/// Collects field errors.
#[derive(Debug, Default)]
pub struct Errors(Vec<FieldError>);

impl Errors {
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// Text of at most `max` characters; `required` also rejects blank text.
    pub fn text(&mut self, field: &str, value: &str, required: bool, max: usize) {
        if required && value.trim().is_empty() {
            self.add(field, "is required");
        } else if value.chars().count() > max {
            self.add(field, format!("must be at most {max} characters"));
        }
    }

    /// `Ok` when nothing was added, else `validation_failed` with every field.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.0))
        }
    }
}

/// Whether `slug` is lower-case letters, digits and inner dashes, 1–63 characters.
pub fn is_slug(slug: &str) -> bool {
    let len = slug.len();
    (1..=63).contains(&len)
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !slug.starts_with('-')
        && !slug.ends_with('-')
}

/// A slug made from a name: "Acme Widgets, Inc." → "acme-widgets-inc".
pub fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.trim().to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    slug.truncate(63);
    slug.trim_end_matches('-').to_string()
}

/// A plausible email address: something@something.something, no spaces, at most 254 characters.
pub fn is_email(email: &str) -> bool {
    let email = email.trim();
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && email.len() <= 254
                && !email.chars().any(char::is_whitespace)
                && !domain.contains('@')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_and_emails() {
        assert_eq!(slugify("Acme Widgets, Inc."), "acme-widgets-inc");
        assert!(is_slug("acme-1"));
        assert!(!is_slug("-acme") && !is_slug("Acme") && !is_slug(""));
        assert!(is_email("ops@acme.example"));
        assert!(!is_email("ops@acme") && !is_email("a b@c.d") && !is_email("@c.d"));
    }
}
