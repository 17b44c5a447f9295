//! Run-time control of the agent's log filter (`SetLogLevel`). The tracing
//! subscriber is global to the process, so its reload hook is too: the
//! binary registers it once with [`set_log_control`] when it installs the
//! subscriber, and the API server uses it.

use std::sync::OnceLock;

/// Replaces the log filter with the one given and returns the previous
/// filter, or why the new one is invalid.
pub type LogControl = Box<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

static CONTROL: OnceLock<LogControl> = OnceLock::new();

/// Registers the process's log control; later calls are ignored (the
/// subscriber can be installed only once).
pub fn set_log_control(control: LogControl) {
    let _ = CONTROL.set(control);
}

/// Applies `filter` through the registered control. `None` when no control
/// is registered (the subscriber was installed without a reload layer).
pub fn set_filter(filter: &str) -> Option<Result<String, String>> {
    CONTROL.get().map(|c| c(filter))
}
