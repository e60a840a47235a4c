//! The public base URL (`KONSTRUCT_PUBLIC_URL`): every link the product writes — webhook URLs
//! shown to operators, email links, OAuth redirects, citations — starts with it, never with the
//! Host header of a request, which the client chooses.

/// A validated public base URL, without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl(String);

impl PublicUrl {
    /// An absolute `http(s)` URL with a host, no query, fragment or credentials; a path (a
    /// deployment under `/konstruct`) is kept.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let url = url::Url::parse(text.trim()).map_err(|_| "must be an absolute URL")?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("must start with http:// or https://");
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("must name a host");
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("must not have a query or a fragment");
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry credentials");
        }
        Ok(Self(url.as_str().trim_end_matches('/').to_string()))
    }

    /// The base, e.g. `https://konstruct.example.com`.
    pub fn base(&self) -> &str {
        &self.0
    }

    /// The absolute URL of `path` (which starts with `/`).
    pub fn link(&self, path: &str) -> String {
        format!("{}/{}", self.0, path.trim_start_matches('/'))
    }

    /// Whether people reach us over HTTPS (then cookies are `Secure`).
    pub fn is_https(&self) -> bool {
        self.0.starts_with("https://")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls_are_absolute_and_links_join_cleanly() {
        let url = PublicUrl::parse("https://konstruct.example.com/").unwrap();
        assert_eq!(url.base(), "https://konstruct.example.com");
        assert_eq!(
            url.link("/webhooks/slack/events"),
            "https://konstruct.example.com/webhooks/slack/events"
        );
        assert!(url.is_https());
        let under = PublicUrl::parse("http://10.0.0.5:8080/konstruct").unwrap();
        assert_eq!(
            under.link("/accept?t=1"),
            "http://10.0.0.5:8080/konstruct/accept?t=1"
        );
        assert!(!under.is_https());
        for bad in [
            "konstruct.example.com",
            "ftp://example.com",
            "https://example.com/?x=1",
            "https://example.com/#top",
            "https://user:pw@example.com",
            "",
        ] {
            assert!(PublicUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
