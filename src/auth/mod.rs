//! Client authentication: mosquitto-compatible password files (`passwd`).

pub mod passwd;
