//! Console sign-in sessions: the session cookie and the CSRF token.
//!
//! A session is created at sign-in and identified by a 256-bit random token
//! in a cookie that is `HttpOnly` (scripts cannot read it), `SameSite=Strict`
//! (other sites cannot make the browser send it) and `Secure` when the console
//! runs over TLS. Each session also has its own random CSRF token, which the
//! pages embed and every state-changing request must send back in the
//! `X-CSRF-Token` header; a request with a missing or wrong token is refused.
//! Sessions expire after a fixed lifetime and are kept in memory only: a
//! restart signs everyone out.
//!
//! A session also remembers what its user's record looked like at sign-in
//! (the password hash and the admin flag). The console compares that with the
//! user store on every request, so `sockit user passwd`, `user set --no-admin`
//! and `user del` end the user's sessions at their next request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::users::User;

/// The cookie that carries the session token.
pub const COOKIE: &str = "sockit_session";

/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How long a session lasts after sign-in.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Sessions alive at once; beyond this the oldest are dropped.
const CAPACITY: usize = 10_000;

/// A signed-in user's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub admin: bool,
    pub csrf: String,
    expires: Instant,
    /// The user's password hash at sign-in: a new password ends the session.
    password_hash: String,
}

impl Session {
    /// True while `current` (the user's record as the store has it now) is
    /// still the record this session was started for.
    pub fn still_valid_for(&self, current: &User) -> bool {
        current.name == self.user
            && current.admin == self.admin
            && current.password == self.password_hash
    }
}

/// Every live session, by token.
#[derive(Debug, Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Session>>,
}

/// 32 random bytes as 64 hex digits.
pub fn random_token() -> String {
    crate::hex::random(32)
}

impl Sessions {
    /// Starts a session for `user` and returns its token.
    pub fn create(&self, user: &User) -> String {
        let now = Instant::now();
        let token = random_token();
        let session = Session {
            user: user.name.clone(),
            admin: user.admin,
            csrf: random_token(),
            expires: now + LIFETIME,
            password_hash: user.password.clone(),
        };
        let mut live = self.live.lock().expect("sessions lock");
        if live.len() >= CAPACITY {
            live.retain(|_, s| s.expires > now);
            if live.len() >= CAPACITY
                && let Some(oldest) = live
                    .iter()
                    .min_by_key(|(_, s)| s.expires)
                    .map(|(t, _)| t.clone())
            {
                live.remove(&oldest);
            }
        }
        live.insert(token.clone(), session);
        token
    }

    /// The live session for `token`, if any.
    pub fn find(&self, token: &str) -> Option<Session> {
        let now = Instant::now();
        let mut live = self.live.lock().expect("sessions lock");
        match live.get(token) {
            Some(session) if session.expires > now => Some(session.clone()),
            Some(_) => {
                live.remove(token);
                None
            }
            None => None,
        }
    }

    /// Ends the session for `token`.
    pub fn end(&self, token: &str) {
        self.live.lock().expect("sessions lock").remove(token);
    }
}

/// The `Set-Cookie` value that starts a session.
pub fn set_cookie(token: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        LIFETIME.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that ends a session.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The session token in a `Cookie` header value, if present.
pub fn token_from_cookie_header(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// Compares two tokens in time independent of where they differ.
pub fn tokens_match(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::Permissions;

    fn user(name: &str, password_hash: &str, admin: bool) -> User {
        User {
            name: name.to_owned(),
            password: password_hash.to_owned(),
            home: "/nonexistent".into(),
            quota: None,
            max_files: None,
            permissions: Permissions::FULL,
            admin,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_is_found_until_it_expires() {
        let sessions = Sessions::default();
        let token = sessions.create(&user("alice", "h", false));
        let session = sessions.find(&token).unwrap();
        assert_eq!(session.user, "alice");
        assert_eq!(session.csrf.len(), 64);
        assert_ne!(session.csrf, token);
        tokio::time::advance(LIFETIME + Duration::from_secs(1)).await;
        assert!(sessions.find(&token).is_none());
    }

    #[tokio::test]
    async fn ending_a_session_signs_out() {
        let sessions = Sessions::default();
        let one = sessions.create(&user("alice", "h", false));
        let other = sessions.create(&user("alice", "h", false));
        sessions.end(&one);
        assert!(sessions.find(&one).is_none());
        assert!(sessions.find(&other).is_some());
    }

    #[tokio::test]
    async fn a_session_holds_only_for_the_record_it_was_started_for() {
        let sessions = Sessions::default();
        let alice = user("alice", "h1", true);
        let session = sessions.find(&sessions.create(&alice)).unwrap();
        assert!(session.still_valid_for(&alice));
        assert!(
            !session.still_valid_for(&user("alice", "h2", true)),
            "new password"
        );
        assert!(
            !session.still_valid_for(&user("alice", "h1", false)),
            "no longer admin"
        );
        assert!(
            !session.still_valid_for(&user("bob", "h1", true)),
            "another user"
        );
    }

    #[test]
    fn tokens_are_random_and_compared_exactly() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert!(tokens_match(&a, &a.clone()));
        assert!(!tokens_match(&a, &b));
        assert!(!tokens_match(&a, &a[..63]));
    }

    #[test]
    fn the_cookie_is_strict_and_found_among_others() {
        let cookie = set_cookie("abc", true);
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        assert!(cookie.ends_with("; Secure"));
        assert!(!set_cookie("abc", false).contains("Secure"));
        assert_eq!(
            token_from_cookie_header("theme=dark; sockit_session=abc; x=y"),
            Some("abc")
        );
        assert_eq!(token_from_cookie_header("sockit_sessionx=abc"), None);
    }
}
