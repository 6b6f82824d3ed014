//! Client authentication: mosquitto-compatible password files (`passwd`) and the `midge passwd`
//! command that writes them (`passwd_cli`).

pub mod passwd;
pub mod passwd_cli;
