//! Connection URLs as they may be shown. A Redis URL carries its password
//! (`redis://:secret@host`); logs, error messages and `Debug` output show
//! [`redact_url`]'s form instead, so a secret never leaves the process.

/// What a redacted secret reads as.
const REDACTED: &str = "***";

/// `url` with the secret part of its user info replaced by `***`:
/// `redis://user:pw@host` → `redis://user:***@host`, and a lone
/// `redis://token@host` → `redis://***@host` (a bare user info may itself
/// be the secret). A URL without user info is returned unchanged.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((user_info, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let shown = match user_info.split_once(':') {
        Some((user, _password)) => format!("{user}:{REDACTED}"),
        None => REDACTED.to_owned(),
    };
    format!("{scheme}://{shown}@{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_replaced_and_everything_else_kept() {
        for (url, shown) in [
            ("redis://:s3cret@cache:6379/2", "redis://:***@cache:6379/2"),
            ("rediss://app:p@ss:w0rd@cache.example:6380", "rediss://app:***@cache.example:6380"),
            ("redis://token@cache", "redis://***@cache"),
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("redis://cache/0?protocol=resp3#frag@x", "redis://cache/0?protocol=resp3#frag@x"),
            ("unix:///run/redis.sock", "unix:///run/redis.sock"),
            ("memory:", "memory:"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
