//! Bearer-token authentication and per-topic authorisation.
//!
//! - Tokens are configured by their SHA-256 (hex), never in clear; a presented token is hashed
//!   and looked up by digest, so the token text is neither stored nor compared nor logged.
//! - Each token carries topic patterns (`*` matches any run of characters, including none).
//! - No tokens configured: auth is off ([`Principal::Anyone`] may write every topic).
//! - The middleware answers 401 before any handler runs; handlers ask [`Principal::authorize`]
//!   for the topic before they read the body, so a refused request writes nothing.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};

use crate::config::AuthConfig;
use crate::error::ApiError;
use crate::state::AppState;

/// Who is calling, as established by the auth middleware (a request extension).
#[derive(Debug, Clone)]
pub enum Principal {
    /// Auth is off.
    Anyone,
    /// A configured token, by name, with the topics it may write.
    Token(Arc<Grant>),
}

/// What one token may do.
#[derive(Debug)]
pub struct Grant {
    pub name: String,
    pub topics: Vec<String>,
}

impl Principal {
    /// Ok when this caller may write `topic`; 403 otherwise.
    pub fn authorize(&self, topic: &str) -> Result<(), ApiError> {
        match self {
            Principal::Anyone => Ok(()),
            Principal::Token(g) if g.topics.iter().any(|p| glob_match(p, topic)) => Ok(()),
            Principal::Token(g) => Err(ApiError::Forbidden {
                token: g.name.clone(),
                topic: topic.to_string(),
            }),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Principal::Anyone => "anyone",
            Principal::Token(g) => &g.name,
        }
    }
}

/// The configured tokens, by digest.
#[derive(Debug, Default)]
pub struct Authenticator {
    by_digest: HashMap<[u8; 32], Arc<Grant>>,
}

impl Authenticator {
    /// Builds from config; hashes were validated by [`crate::Config::validate`].
    pub fn new(config: &AuthConfig) -> Self {
        let by_digest = config
            .tokens
            .iter()
            .filter_map(|t| {
                let digest: [u8; 32] = hex::decode(&t.sha256).ok()?.try_into().ok()?;
                let grant = Grant {
                    name: t.name.clone(),
                    topics: t.topics.clone(),
                };
                Some((digest, Arc::new(grant)))
            })
            .collect();
        Self { by_digest }
    }

    pub fn enabled(&self) -> bool {
        !self.by_digest.is_empty()
    }

    /// The principal for an `Authorization` header value (or its absence).
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Principal, ApiError> {
        if !self.enabled() {
            return Ok(Principal::Anyone);
        }
        let value = authorization.ok_or(ApiError::Unauthenticated)?;
        let token = strip_bearer(value).ok_or(ApiError::Unauthenticated)?;
        let digest: [u8; 32] = Sha256::digest(token).into();
        self.by_digest
            .get(&digest)
            .map(|g| Principal::Token(g.clone()))
            .ok_or(ApiError::Unauthenticated)
    }
}

fn strip_bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    (scheme.eq_ignore_ascii_case(b"bearer ") && !rest.is_empty()).then_some(rest)
}

/// The hex SHA-256 of a token, as it goes into the config file.
pub fn token_sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Middleware: 401 unless the request carries a configured token (when auth is on); otherwise
/// puts the [`Principal`] in the request extensions.
pub async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let principal = state.auth().authenticate(header)?;
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
}

/// `*` matches any run of characters (including none); everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            backtrack = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((star, matched)) = backtrack {
            pi = star + 1;
            ti = matched + 1;
            backtrack = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TokenConfig;

    #[test]
    fn glob_stars_match_any_run_and_literals_match_themselves() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "orders"));
        assert!(glob_match("orders", "orders"));
        assert!(!glob_match("orders", "orders2"));
        assert!(glob_match("orders.*", "orders.eu"));
        assert!(!glob_match("orders.*", "orders"));
        assert!(glob_match("*.audit", "billing.audit"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("**x", "x"));
    }

    fn authenticator() -> Authenticator {
        Authenticator::new(&AuthConfig {
            tokens: vec![TokenConfig {
                name: "svc".into(),
                sha256: token_sha256_hex("s3cret"),
                topics: vec!["orders.*".into()],
            }],
        })
    }

    #[test]
    fn a_configured_token_authenticates_and_is_limited_to_its_topics() {
        let a = authenticator();
        let p = a.authenticate(Some(b"Bearer s3cret")).unwrap();
        assert!(p.authorize("orders.eu").is_ok());
        assert!(matches!(
            p.authorize("payments"),
            Err(ApiError::Forbidden { .. })
        ));
        assert!(a.authenticate(Some(b"bearer s3cret")).is_ok());
    }

    #[test]
    fn missing_wrong_or_non_bearer_credentials_are_unauthenticated() {
        let a = authenticator();
        for h in [
            None,
            Some(&b"Bearer nope"[..]),
            Some(b"Basic czNjcmV0"),
            Some(b"Bearer "),
        ] {
            assert!(matches!(a.authenticate(h), Err(ApiError::Unauthenticated)));
        }
    }

    #[test]
    fn without_tokens_auth_is_off() {
        let a = Authenticator::new(&AuthConfig::default());
        assert!(matches!(a.authenticate(None), Ok(Principal::Anyone)));
    }
}
