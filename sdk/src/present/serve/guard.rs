//! Who may use the server: a request must name this server as its host (so a page on
//! another site cannot reach it through DNS rebinding), carry the token when one is set
//! (a non-local listen address), and a request that runs code must come from the deck's
//! own page: its `Origin`, when the browser sends one, must be this server.

use hyper::header::{HeaderMap, HeaderValue, COOKIE, HOST, ORIGIN};
use subtle::ConstantTimeEq;

/// The cookie that carries the token after the first page load.
pub const TOKEN_COOKIE: &str = "sinew_token";
/// The header the page's script sends the token in.
pub const TOKEN_HEADER: &str = "x-sinew-token";

/// Why a request was refused, as the response says it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The Host header names another server.
    #[error("host {0:?} is not this server")]
    Host(String),
    /// No token, or a wrong one.
    #[error("this server needs the token that its printed URL carries (?token=...)")]
    Token,
    /// A request from a page of another origin.
    #[error("requests from origin {0:?} are refused: only the deck's own page may run code")]
    Origin(String),
}

/// The server's rules.
#[derive(Debug, Clone)]
pub struct Guard {
    /// The host names (with port) a request may address; `None` (a non-local listen
    /// address, where the token guards) takes any.
    pub hosts: Option<Vec<String>>,
    /// The token, when the server needs one.
    pub token: Option<String>,
}

impl Guard {
    /// Checks any request; `query_token` is the `token` query parameter, if any.
    pub fn admit(&self, headers: &HeaderMap, query_token: Option<&str>) -> Result<(), Refusal> {
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        let known = self
            .hosts
            .as_ref()
            .is_none_or(|hosts| hosts.iter().any(|h| h.eq_ignore_ascii_case(host)));
        if !known {
            return Err(Refusal::Host(host.to_owned()));
        }
        let Some(token) = &self.token else {
            return Ok(());
        };
        let offered = [
            query_token.map(str::to_owned),
            headers
                .get(TOKEN_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            cookie(headers, TOKEN_COOKIE),
        ];
        let matches = offered
            .iter()
            .flatten()
            .any(|offer| bool::from(offer.as_bytes().ct_eq(token.as_bytes())));
        if matches {
            Ok(())
        } else {
            Err(Refusal::Token)
        }
    }

    /// Checks a request that runs or stops code: as [`admit`](Self::admit), and an `Origin`,
    /// when there is one, that is the server the request addresses.
    pub fn admit_action(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        self.admit(headers, None)?;
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        match headers.get(ORIGIN).map(HeaderValue::to_str) {
            None => Ok(()),
            Some(Ok(origin)) => {
                let own = origin
                    .strip_prefix("http://")
                    .is_some_and(|origin| origin.eq_ignore_ascii_case(host));
                if own {
                    Ok(())
                } else {
                    Err(Refusal::Origin(origin.to_owned()))
                }
            }
            Some(Err(_)) => Err(Refusal::Origin("(not text)".into())),
        }
    }
}

/// The value of cookie `name`.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn local() -> Guard {
        Guard {
            hosts: Some(vec!["127.0.0.1:3999".into(), "localhost:3999".into()]),
            token: None,
        }
    }

    #[test]
    fn another_host_name_is_refused() {
        let guard = local();
        assert_eq!(
            guard.admit(&headers(&[("host", "127.0.0.1:3999")]), None),
            Ok(())
        );
        assert_eq!(
            guard.admit(&headers(&[("host", "evil.example:3999")]), None),
            Err(Refusal::Host("evil.example:3999".into()))
        );
    }

    #[test]
    fn a_foreign_origin_may_not_run_code() {
        let guard = local();
        let own = headers(&[
            ("host", "localhost:3999"),
            ("origin", "http://localhost:3999"),
        ]);
        assert_eq!(guard.admit_action(&own), Ok(()));
        let foreign = headers(&[
            ("host", "localhost:3999"),
            ("origin", "http://127.0.0.1:8000"),
        ]);
        assert_eq!(
            guard.admit_action(&foreign),
            Err(Refusal::Origin("http://127.0.0.1:8000".into()))
        );
    }

    #[test]
    fn the_token_comes_in_the_query_a_header_or_the_cookie() {
        let guard = Guard {
            hosts: None,
            token: Some("s3cret".into()),
        };
        let host = ("host", "10.0.0.1:3999");
        assert_eq!(guard.admit(&headers(&[host]), None), Err(Refusal::Token));
        assert_eq!(guard.admit(&headers(&[host]), Some("s3cret")), Ok(()));
        assert_eq!(
            guard.admit(&headers(&[host]), Some("wrong")),
            Err(Refusal::Token)
        );
        assert_eq!(
            guard.admit(&headers(&[host, ("x-sinew-token", "s3cret")]), None),
            Ok(())
        );
        assert_eq!(
            guard.admit(
                &headers(&[host, ("cookie", "a=b; sinew_token=s3cret")]),
                None
            ),
            Ok(())
        );
    }
}
