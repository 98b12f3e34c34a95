//! The `spillway` binary: `demo` today; `run`, `doctor`, `spool`, `replay`, `chaos` and `bench`
//! arrive with the issues that build them.

mod demo;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "spillway",
    version,
    about = "Keeps accepting writes when Kafka cannot."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the demo on an in-process librdkafka mock cluster (no Kafka needed).
    Demo(demo::DemoArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(args) => demo::run(args),
    }
}
