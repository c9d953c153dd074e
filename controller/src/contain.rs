//! Background work that cannot take its owner down with it: a panic in a sync or a data copy becomes an error the
//! mapping reports (reason [`PANICKED`]), and the mapping goes on (its state is cleared, the next sync runs).

use std::future::Future;

/// Reason reported when background work panicked.
pub const PANICKED: &str = "InternalError";

/// Runs `work` as its own task and waits for it; a panic comes back as `Err` with its message (a cancelled task
/// says so).
pub async fn contain<T: Send + 'static>(work: impl Future<Output = T> + Send + 'static) -> Result<T, String> {
    match tokio::spawn(work).await {
        Ok(value) => Ok(value),
        Err(error) if error.is_panic() => {
            let payload = error.into_panic();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_string());
            tracing::error!(%message, "background work panicked; reported on its mapping");
            Err(format!("dr-syncer hit an internal error (please report it): {message}"))
        }
        Err(_) => Err("the work was cancelled".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn contain_turns_a_panic_into_an_error_when_the_work_panics() {
        assert_eq!(contain(async { 7 }).await, Ok(7));
        #[allow(clippy::panic)]
        let err = contain(async { panic!("index out of range") }).await.unwrap_err();
        assert!(err.contains("index out of range"), "{err}");
        let owned = String::from("owned message");
        #[allow(clippy::panic)]
        let err = contain(async move { std::panic::panic_any(owned) }).await.unwrap_err();
        assert!(err.contains("owned message"), "{err}");
    }
}
