//! Logging for a plugin run: `tracing` to stderr and, when the config
//! names one, appended to `log_file_path`.
//!
//! Levels come from `log_level` (Calico's names: debug, info, warning,
//! error; also trace and none); the default is warn. Nothing here ever
//! formats the configuration itself, so secrets in it cannot leak; callers
//! log chosen fields only. Rotation (`log_file_max_*`) is left to the
//! host's logrotate.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Calico's level names to a filter.
pub fn level(name: Option<&str>) -> LevelFilter {
    match name.map(|n| n.trim().to_ascii_lowercase()).as_deref() {
        Some("trace") => LevelFilter::TRACE,
        Some("debug") => LevelFilter::DEBUG,
        Some("info") => LevelFilter::INFO,
        Some("error" | "fatal" | "panic") => LevelFilter::ERROR,
        Some("none" | "off") => LevelFilter::OFF,
        _ => LevelFilter::WARN,
    }
}

/// Installs the process's subscriber (once; later calls do nothing).
pub fn init(level_name: Option<&str>, file: Option<&str>) {
    let filter = level(level_name);
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let file_layer = file.filter(|f| !f.is_empty()).and_then(|path| {
        if let Some(dir) = Path::new(path).parent() {
            // A failure shows up as the open error below.
            let _ = std::fs::create_dir_all(dir);
        }
        match OpenOptions::new().create(true).append(true).open(path) {
            Ok(f) => Some(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(Mutex::new(f))
                    .with_filter(filter),
            ),
            Err(e) => {
                eprintln!("tortie-cni: cannot open log file {path}: {e}");
                None
            }
        }
    });
    // Already installed (several runs in one test process): keep the first.
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(file_layer)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calico_level_names() {
        assert_eq!(level(Some("warning")), LevelFilter::WARN);
        assert_eq!(level(Some("Info")), LevelFilter::INFO);
        assert_eq!(level(Some("debug")), LevelFilter::DEBUG);
        assert_eq!(level(Some("none")), LevelFilter::OFF);
        assert_eq!(level(None), LevelFilter::WARN);
        assert_eq!(level(Some("nonsense")), LevelFilter::WARN);
    }
}
