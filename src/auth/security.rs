//! The loaded security settings of each listener: `allow_anonymous`, the password file and the
//! ACL file (shared between listeners that name the same files), and the CONNECT decision
//! made from them. Files are read in `load` (the event loop calls it before serving, so a bad
//! file stops the start with a message); the core only sees the loaded form. A reload (SIGHUP,
//! later) is a swap of the `Rc`s.

use std::fmt;
use std::path::PathBuf;
use std::rc::Rc;

use super::acl::{Acl, AclError, ClientAcl};
use super::passwd::{PasswdError, PasswordFile};
use crate::config::{AuthSettings, Config};

/// What one listener lets in.
#[derive(Debug)]
pub struct Security {
    pub allow_anonymous: bool,
    pub passwords: Option<Rc<PasswordFile>>,
    pub acl: Option<Rc<Acl>>,
    /// TLS `use_identity_as_username`: the client certificate's CN is the username and the
    /// password is not asked for.
    pub use_identity_as_username: bool,
}

/// The outcome of a CONNECT's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Let in, as this user (`None`: anonymous).
    Accepted { username: Option<Rc<str>> },
    /// A user name and password that do not match the password file: CONNACK 4.
    BadUsernameOrPassword,
    /// Anonymous where that is not allowed, or no certificate identity: CONNACK 5.
    NotAuthorized,
}

impl Security {
    /// No files: only `allow_anonymous` decides.
    pub fn open(allow_anonymous: bool, use_identity_as_username: bool) -> Security {
        Security { allow_anonymous, passwords: None, acl: None, use_identity_as_username }
    }

    /// Decide on a CONNECT. With a password file, a user name must be in it with this
    /// password; without one, a user name is taken as given (it names the ACL section) where
    /// anonymous clients are allowed, and refused where they are not, since nothing can
    /// verify it. O(PBKDF2 iterations) with a password file, else O(1).
    pub fn check(&self, username: Option<&str>, password: Option<&[u8]>, tls_identity: Option<&str>) -> Credentials {
        if self.use_identity_as_username {
            return match tls_identity {
                Some(cn) => Credentials::Accepted { username: Some(cn.into()) },
                None => Credentials::NotAuthorized,
            };
        }
        match (username, &self.passwords) {
            (None, _) if self.allow_anonymous => Credentials::Accepted { username: None },
            (None, _) => Credentials::NotAuthorized,
            (Some(user), Some(file)) => {
                if file.verify(user, password.unwrap_or(&[])) {
                    Credentials::Accepted { username: Some(user.into()) }
                } else {
                    Credentials::BadUsernameOrPassword
                }
            }
            (Some(user), None) if self.allow_anonymous => Credentials::Accepted { username: Some(user.into()) },
            (Some(_), None) => Credentials::NotAuthorized,
        }
    }

    /// The ACL handle of a client, if this listener has an ACL file. O(1): one map lookup.
    pub fn client_acl(&self, username: Option<Rc<str>>, client_id: Rc<str>) -> Option<ClientAcl> {
        self.acl.as_ref().map(|acl| acl.client(username, client_id))
    }
}

/// A password or ACL file that cannot be used.
#[derive(Debug)]
pub enum AuthError {
    Passwords { path: PathBuf, error: PasswdError },
    Acl { path: PathBuf, error: AclError },
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Passwords { path, error } => write!(f, "password_file {}: {error}", path.display()),
            AuthError::Acl { path, error } => write!(f, "acl_file {}: {error}", path.display()),
        }
    }
}

impl std::error::Error for AuthError {}

/// The files of every listener, read and checked; `Send`, so a bound broker can move to its
/// thread before `into_security` makes the single-threaded form.
#[derive(Debug)]
pub struct LoadedSecurity {
    /// Distinct settings with their files.
    sets: Vec<(AuthSettings, Option<PasswordFile>, Option<Acl>)>,
    /// Per listener: index into `sets`, and `use_identity_as_username`.
    listeners: Vec<(usize, bool)>,
}

impl LoadedSecurity {
    /// Read the password and ACL files `config` names (each distinct setting once), logging
    /// what they skipped or warned about.
    pub fn load(config: &Config) -> Result<LoadedSecurity, AuthError> {
        let mut sets: Vec<(AuthSettings, Option<PasswordFile>, Option<Acl>)> = Vec::new();
        let mut listeners = Vec::new();
        for (index, listener) in config.listeners.iter().enumerate() {
            let settings = config.auth_for(index);
            let set = match sets.iter().position(|(s, _, _)| *s == settings) {
                Some(i) => i,
                None => {
                    let passwords = match &settings.password_file {
                        Some(path) => {
                            let file = PasswordFile::load(path)
                                .map_err(|error| AuthError::Passwords { path: path.clone(), error })?;
                            for skipped in file.skipped() {
                                log::warn!("password_file {}: {skipped}; that entry is ignored.", path.display());
                            }
                            log::info!("Loaded {} users from password_file {}.", file.len(), path.display());
                            Some(file)
                        }
                        None => None,
                    };
                    let acl = match &settings.acl_file {
                        Some(path) => {
                            let (acl, warnings) =
                                Acl::load(path).map_err(|error| AuthError::Acl { path: path.clone(), error })?;
                            for w in warnings {
                                log::warn!("acl_file {}: {w}", path.display());
                            }
                            log::info!(
                                "Loaded acl_file {}: {} rules in {} sections.",
                                path.display(),
                                acl.rule_count(),
                                acl.section_count()
                            );
                            Some(acl)
                        }
                        None => None,
                    };
                    sets.push((settings, passwords, acl));
                    sets.len() - 1
                }
            };
            listeners.push((set, listener.tls.use_identity_as_username));
        }
        Ok(LoadedSecurity { sets, listeners })
    }

    /// The per-listener `Security`, listeners with the same settings sharing their files.
    pub fn into_security(self) -> Vec<Rc<Security>> {
        type Shared = (bool, Option<Rc<PasswordFile>>, Option<Rc<Acl>>);
        let shared: Vec<Shared> = self
            .sets
            .into_iter()
            .map(|(s, p, a)| (s.allow_anonymous.unwrap_or(false), p.map(Rc::new), a.map(Rc::new)))
            .collect();
        self.listeners
            .into_iter()
            .map(|(set, identity)| {
                let (allow_anonymous, passwords, acl) = match shared.get(set) {
                    Some((anon, p, a)) => (*anon, p.clone(), a.clone()),
                    None => (false, None, None),
                };
                Rc::new(Security { allow_anonymous, passwords, acl, use_identity_as_username: identity })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_passwords(allow_anonymous: bool) -> Security {
        // alice / secret, as `midge passwd` writes it.
        let line = super::super::passwd::new_password_line("alice", b"secret").unwrap();
        let file = PasswordFile::parse(&format!("{line}\n"));
        Security { allow_anonymous, passwords: Some(Rc::new(file)), acl: None, use_identity_as_username: false }
    }

    #[test]
    fn password_file_decides_for_users_and_allow_anonymous_for_the_rest() {
        let s = with_passwords(false);
        assert_eq!(
            s.check(Some("alice"), Some(b"secret"), None),
            Credentials::Accepted { username: Some("alice".into()) }
        );
        assert_eq!(s.check(Some("alice"), Some(b"wrong"), None), Credentials::BadUsernameOrPassword);
        assert_eq!(s.check(Some("alice"), None, None), Credentials::BadUsernameOrPassword);
        assert_eq!(s.check(Some("bob"), Some(b"secret"), None), Credentials::BadUsernameOrPassword);
        assert_eq!(s.check(None, None, None), Credentials::NotAuthorized);
        let s = with_passwords(true);
        assert_eq!(s.check(None, None, None), Credentials::Accepted { username: None });
        assert_eq!(s.check(Some("alice"), Some(b"wrong"), None), Credentials::BadUsernameOrPassword);
    }

    #[test]
    fn without_a_password_file_a_username_is_only_taken_where_anonymous_is_allowed() {
        let open = Security::open(true, false);
        assert_eq!(open.check(Some("u"), Some(b"x"), None), Credentials::Accepted { username: Some("u".into()) });
        let closed = Security::open(false, false);
        assert_eq!(closed.check(Some("u"), Some(b"x"), None), Credentials::NotAuthorized);
        assert_eq!(closed.check(None, None, None), Credentials::NotAuthorized);
    }

    #[test]
    fn use_identity_as_username_takes_the_certificate_and_ignores_the_password() {
        let s = Security::open(false, true);
        assert_eq!(
            s.check(Some("x"), Some(b"y"), Some("alice")),
            Credentials::Accepted { username: Some("alice".into()) }
        );
        assert_eq!(s.check(Some("x"), Some(b"y"), None), Credentials::NotAuthorized);
    }
}
