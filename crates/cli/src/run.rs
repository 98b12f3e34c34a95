//! `spillway run` and `spillway config check`: the service, from one TOML file.
//!
//! The file has the gateway's sections (`[http]`, `[limits]`, `[timeouts]`, `[rest_proxy]`,
//! `[auth]`, `[tls]`; see `docs/http-api.md`) and the library's under `[library]` (see
//! `spillway::settings::SpillwayConfig`: `[library.kafka]`, `[library.spool]`,
//! `[[library.routes]]`, ...). Every key can be overridden by an environment variable:
//! `SPILLWAY_LIBRARY__KAFKA__BOOTSTRAP_SERVERS=k1:9092` sets `library.kafka.bootstrap_servers`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use spillway::{Severity, Spillway, SpillwayConfig};
use spillway_gateway::{Config, SpillwayEngine};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration file (defaults apply to everything it leaves out).
    #[arg(long, short, env = "SPILLWAY_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validates a configuration file and prints the effective configuration, secrets
    /// redacted, with the producer settings' lint. Exit 0 when usable, 1 on a critical
    /// finding or an invalid file.
    Check {
        /// The configuration file.
        file: PathBuf,
    },
}

/// The library's part of the configuration (`[library]`).
pub fn library_config(config: &Config) -> anyhow::Result<SpillwayConfig> {
    toml::Value::Table(config.library.clone())
        .try_into()
        .context("the [library] section is not a valid Spillway library configuration")
}

pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,librdkafka=warn".into()),
        )
        .try_init();
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    let config = Config::load(args.config.as_deref()).context("loading the configuration")?;
    let library = library_config(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let spillway = Spillway::start(library).context("starting Spillway")?;
        tracing::info!(instance = %spillway.instance(), spool = %spillway.spool_dir().display(), "Spillway started");
        let engine = Arc::new(SpillwayEngine::new(spillway));
        spillway_gateway::serve(config, engine).await.context("serving HTTP")?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn config(command: ConfigCommand) -> anyhow::Result<ExitCode> {
    let ConfigCommand::Check { file } = command;
    let config = match Config::load(Some(&file)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("invalid configuration: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let library = match library_config(&config) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e:#}");
            return Ok(ExitCode::from(1));
        }
    };
    println!(
        "# gateway (effective, secrets redacted)\n{}",
        config.redacted()
    );
    let mut shown = library.clone();
    shown.kafka.properties = spillway::config::redact_map(&library.kafka.properties);
    println!(
        "# [library] (effective, secrets redacted)\n{}",
        toml::to_string_pretty(&shown)?
    );
    println!("# librdkafka properties Spillway will use\n");
    for (k, v) in library.kafka.redacted() {
        println!("{k} = {v}");
    }
    let findings = library.kafka.lint();
    println!("\n# producer settings lint: {} finding(s)", findings.len());
    for f in &findings {
        println!("{f}");
    }
    let critical = findings.iter().any(|f| f.severity == Severity::Critical);
    if library.kafka.bootstrap_servers.is_empty() {
        println!("error: library.kafka.bootstrap_servers is not set");
        return Ok(ExitCode::from(1));
    }
    if critical && !library.kafka.allow_unsafe {
        println!(
            "error: critical producer settings (set library.kafka.allow_unsafe = true to accept them knowingly)"
        );
        return Ok(ExitCode::from(1));
    }
    println!("ok");
    Ok(ExitCode::SUCCESS)
}
