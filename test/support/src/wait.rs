//! Waiting for state with a deadline.

use std::future::Future;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(100);

/// Polls `check` until it returns `Some`, or panics after `timeout` with `what` and the last observation.
pub async fn eventually<T, F>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Result<T, String>,
{
    eventually_async(what, timeout, move || {
        let r = check();
        async move { r }
    })
    .await
}

/// Like [`eventually`] for an async check. The check's `Err` text is the last observation shown on timeout.
pub async fn eventually_async<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(v) => return v,
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last observation: {last}");
        }
        tokio::time::sleep(POLL).await;
    }
}
