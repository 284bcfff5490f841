//! `1nce-mcp`: the door. Everything it does is [`onence_mcp::app::run`].

fn main() -> std::process::ExitCode {
    onence_mcp::app::run(onence_mcp::config::Cli::from_process())
}
