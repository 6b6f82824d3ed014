//! The `midge` command: parse arguments, set up logging, run the broker; or, as `midge passwd`,
//! edit a password file.

use std::process::ExitCode;

use midge::config::{parse_args, Command, USAGE};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("passwd") {
        // `midge passwd ...`: mosquitto_passwd's job, so one binary is all a setup needs.
        return match midge::auth::passwd_cli::run(args.get(2..).unwrap_or(&[])) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("midge passwd: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let command = match parse_args(args.into_iter().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("midge: {e}");
            return ExitCode::from(2);
        }
    };
    let (config, verbose) = match command {
        Command::Help => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("midge {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Command::Run { config, verbose } => (config, verbose),
    };
    let default_level = if verbose { "debug" } else { "info" };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level))
        .format_target(false)
        .init();
    log::info!("midge {} starting", env!("CARGO_PKG_VERSION"));
    for warning in &config.warnings {
        log::warn!("{warning}");
    }
    let pid_file = config.pid_file.clone();
    let mut broker = match midge::Broker::new(*config) {
        Ok(b) => b,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // Written once the listeners are bound, so a supervisor that sees it can connect.
    if let Some(path) = &pid_file {
        if let Err(e) = std::fs::write(path, std::process::id().to_string()) {
            log::error!("Error: Unable to write pid file {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if let Err(e) = broker.handle_signals() {
        log::warn!("signals will not stop the broker cleanly: {e}");
    }
    let result = broker.run();
    if let Some(path) = &pid_file {
        let _ = std::fs::remove_file(path);
    }
    if let Err(e) = result {
        log::error!("{e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
