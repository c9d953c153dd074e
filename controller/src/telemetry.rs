//! Logging setup.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;
use crate::error::Error;

/// Installs the global `tracing` subscriber: `RUST_LOG` if set, else `level`, in the chosen format, to stderr.
pub fn init(format: LogFormat, level: &str) -> Result<(), Error> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(v),
        _ => EnvFilter::try_new(level),
    }
    .map_err(|e| Error::Logging { message: format!("invalid log filter: {e}") })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match format {
        LogFormat::Text => builder.with_target(true).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
    };
    result.map_err(|e| Error::Logging { message: e.to_string() })
}
