use clap::Parser;
use infoaudit::config::{Cli, Command, ServeArgs};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let serve = match cli.command {
        Some(Command::Serve(args)) => args,
        None => ServeArgs::from_env(),
    };
    infoaudit::app::init_tracing(serve.log_json);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(infoaudit::app::run(serve)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
