//! Links that arrive by mail, and the way back from the sign-in page: what a URL fragment
//! (`#token=…`, `#email=…&next=…`) says. The fragment never leaves the browser — it is in no
//! request line, no server log and no `Referer` — so the tokens of invitation and reset links
//! travel only in the request bodies that use them.

use leptos::prelude::*;
use leptos_router::hooks::use_location;

/// The value of `key` in a fragment such as `#token=abc&next=%2Fx`, percent-decoded.
pub fn fragment_param(hash: &str, key: &str) -> Option<String> {
    hash.trim_start_matches('#')
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(v))
        .filter(|v| !v.is_empty())
}

/// `%XX` escapes (and `+` as a space, as forms write it) turned back into text; a broken escape
/// is kept as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A place inside the portal to return to after signing in: a path of this site only (never
/// `//elsewhere` or `/\elsewhere`, which a browser reads as another host).
pub fn safe_next(next: &str) -> Option<&str> {
    let rest = next.strip_prefix('/')?;
    (!rest.starts_with(['/', '\\'])).then_some(next)
}

/// The sign-in page, with the email to fill in and where to come back to, in its fragment.
pub fn sign_in_path(email: &str, next: &str) -> String {
    format!(
        "/login#email={}&next={}",
        js_sys::encode_uri_component(email),
        js_sys::encode_uri_component(next)
    )
}

/// The token in the address bar's fragment (`#token=…`), followed as the fragment changes.
pub fn use_link_token() -> Memo<Option<String>> {
    let location = use_location();
    Memo::new(move |_| fragment_param(&location.hash.get(), "token"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fragment_names_its_values_decoded() {
        let hash = "#email=ada%40example.com&next=%2Finvitation%23token%3Dab-c_1";
        assert_eq!(
            fragment_param(hash, "email").as_deref(),
            Some("ada@example.com")
        );
        assert_eq!(
            fragment_param(hash, "next").as_deref(),
            Some("/invitation#token=ab-c_1")
        );
        assert_eq!(
            fragment_param("#token=xyz", "token").as_deref(),
            Some("xyz")
        );
        assert_eq!(fragment_param("#token=", "token"), None);
        assert_eq!(fragment_param("", "token"), None);
        assert_eq!(fragment_param("#tokens=xyz", "token"), None);
        assert_eq!(
            fragment_param("#a=100%&b=%zz", "a").as_deref(),
            Some("100%")
        );
        assert_eq!(fragment_param("#a=100%&b=%zz", "b").as_deref(), Some("%zz"));
    }

    #[test]
    fn only_paths_of_this_site_are_returned_to() {
        assert_eq!(
            safe_next("/invitation#token=x"),
            Some("/invitation#token=x")
        );
        assert_eq!(safe_next("/"), Some("/"));
        assert_eq!(safe_next("//evil.example/x"), None);
        assert_eq!(safe_next("/\\evil.example"), None);
        assert_eq!(safe_next("https://evil.example"), None);
        assert_eq!(safe_next(""), None);
    }
}
