//! Exponential backoff with jitter for transient failures.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;

/// What `on_retry` hears before each new attempt.
#[derive(Debug)]
pub struct RetryEvent<'a> {
    /// The attempt that just failed (1-based).
    pub attempt: u32,
    pub error: &'a Error,
    /// How long until the next attempt.
    pub delay: Duration,
}

type RetryHook = Arc<dyn Fn(&RetryEvent<'_>) + Send + Sync>;
type RetryPredicate = Arc<dyn Fn(&Error) -> bool + Send + Sync>;

#[derive(Clone)]
pub struct RetryConfig {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub initial_delay: Duration,
    pub max_delay: Duration,
    pub backoff_multiplier: f64,
    /// Randomise each delay between half and all of it, so clients do not retry in step.
    pub jitter: bool,
    pub on_retry: Option<RetryHook>,
    /// Replaces [`is_retryable`] when set.
    pub is_retryable: Option<RetryPredicate>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 3,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            backoff_multiplier: 2.0,
            jitter: true,
            on_retry: None,
            is_retryable: None,
        }
    }
}

impl fmt::Debug for RetryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryConfig")
            .field("max_attempts", &self.max_attempts)
            .field("initial_delay", &self.initial_delay)
            .field("max_delay", &self.max_delay)
            .field("backoff_multiplier", &self.backoff_multiplier)
            .field("jitter", &self.jitter)
            .finish_non_exhaustive()
    }
}

impl RetryConfig {
    /// The delay before attempt `attempt + 1`, after `attempt` failures (without jitter).
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = self.backoff_multiplier.max(1.0).powi(attempt.saturating_sub(1) as i32);
        self.initial_delay.mul_f64(factor).min(self.max_delay)
    }

    fn retryable(&self, error: &Error) -> bool {
        match &self.is_retryable {
            Some(predicate) => predicate(error),
            None => is_retryable(error),
        }
    }
}

/// SQLSTATEs worth another try: too many connections, starting up, admin shutdown; and
/// class 08 (connection exceptions).
const RETRYABLE_SQLSTATES: &[&str] = &["53300", "57P03", "57P01"];

/// The default rule: connection-level and transient server errors are retried; syntax,
/// permission, authentication and other errors are not.
pub fn is_retryable(error: &Error) -> bool {
    match error {
        Error::Timeout(_) => true,
        Error::Pool(crate::error::PoolError::Timeout(_)) => true,
        Error::Pool(crate::error::PoolError::Backend(e)) | Error::Db(e) => postgres_error_is_transient(e),
        #[cfg(feature = "sqlx")]
        Error::Sqlx(e) => sqlx_error_is_transient(e),
        _ => false,
    }
}

#[cfg(feature = "sqlx")]
fn sqlx_error_is_transient(error: &::sqlx::Error) -> bool {
    match error {
        ::sqlx::Error::Io(_) | ::sqlx::Error::PoolTimedOut => true,
        ::sqlx::Error::Database(_) => crate::sqlx::sqlstate(error)
            .is_some_and(|code| RETRYABLE_SQLSTATES.contains(&code) || code.starts_with("08")),
        _ => false,
    }
}

fn postgres_error_is_transient(error: &tokio_postgres::Error) -> bool {
    if let Some(code) = error.code() {
        let code = code.code();
        return RETRYABLE_SQLSTATES.contains(&code) || code.starts_with("08");
    }
    if error.is_closed() {
        return true;
    }
    // Connection refused / reset / timed out arrive as an io::Error somewhere in the chain.
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            return matches!(
                io.kind(),
                ConnectionRefused
                    | ConnectionReset
                    | ConnectionAborted
                    | TimedOut
                    | BrokenPipe
                    | UnexpectedEof
                    | NotConnected
            );
        }
        source = cause.source();
    }
    false
}

/// Runs `operation` until it succeeds, fails with an error that is not retryable, or has
/// used `max_attempts`. `operation` gets the attempt number (1-based).
pub async fn with_retry<T, F, Fut>(config: &RetryConfig, mut operation: F) -> Result<T, Error>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut attempt = 1;
    loop {
        match operation(attempt).await {
            Ok(value) => return Ok(value),
            Err(error) if attempt < config.max_attempts.max(1) && config.retryable(&error) => {
                let mut delay = config.delay_after(attempt);
                if config.jitter {
                    delay = delay.mul_f64(0.5 + rand::random::<f64>() * 0.5);
                }
                tracing::warn!(attempt, delay_ms = delay.as_millis() as u64, %error, "multitenant: retrying");
                if let Some(hook) = &config.on_retry {
                    hook(&RetryEvent { attempt, error: &error, delay });
                }
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn delays_grow_exponentially_up_to_the_cap() {
        let config = RetryConfig {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            ..Default::default()
        };
        let delays: Vec<u128> = (1..=4).map(|a| config.delay_after(a).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 350, 350]);
    }

    #[tokio::test]
    async fn retries_transient_errors_and_stops_on_others() {
        let config = RetryConfig { initial_delay: Duration::from_millis(1), jitter: false, ..Default::default() };
        let calls = AtomicU32::new(0);
        let result = with_retry(&config, |_| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(Error::Timeout("test"))
        })
        .await;
        assert!(matches!(result, Err(Error::Timeout(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 3, "max_attempts in all");

        calls.store(0, Ordering::SeqCst);
        let result = with_retry(&config, |_| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(Error::Config("bad".into()))
        })
        .await;
        assert!(matches!(result, Err(Error::Config(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "not retryable: no second attempt");
    }

    #[tokio::test]
    async fn custom_predicate_and_hook() {
        let seen = Arc::new(AtomicU32::new(0));
        let hook_seen = seen.clone();
        let config = RetryConfig {
            initial_delay: Duration::from_millis(1),
            max_attempts: 4,
            on_retry: Some(Arc::new(move |event: &RetryEvent<'_>| {
                hook_seen.fetch_add(event.attempt, Ordering::SeqCst);
            })),
            is_retryable: Some(Arc::new(|e| matches!(e, Error::Config(_)))),
            ..Default::default()
        };
        let result = with_retry(&config, |attempt| async move {
            if attempt < 3 {
                Err(Error::Config("flaky".into()))
            } else {
                Ok(attempt)
            }
        })
        .await;
        assert_eq!(result.unwrap(), 3);
        assert_eq!(seen.load(Ordering::SeqCst), 1 + 2);
    }
}
