//! Who may connect and what they may touch: mosquitto-compatible password files (`passwd`)
//! and the `midge passwd` command that writes them (`passwd_cli`), ACL files (`acl`), and the
//! loaded settings of each listener with the CONNECT decision (`security`).

pub mod acl;
pub mod passwd;
pub mod passwd_cli;
pub mod security;
