use std::process::ExitCode;

use clap::Parser;
use infoaudit::config::{Cli, Command, ServeArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(3);
        }
    };
    let serve = match cli.command {
        Some(Command::Estimate(a)) => return infoaudit::cli::estimate(a),
        Some(Command::Gate(a)) => return rt.block_on(infoaudit::cli::gate(a)),
        Some(Command::Submit(a)) => return rt.block_on(infoaudit::cli::submit(a)),
        Some(Command::Keys {
            command: infoaudit::config::KeysCommand::Create(a),
        }) => {
            return match rt.block_on(infoaudit::app::create_key(a)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::Serve(args)) => args,
        None => ServeArgs::from_env(),
    };
    infoaudit::app::init_tracing(serve.log_json);
    match rt.block_on(infoaudit::app::run(serve)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
