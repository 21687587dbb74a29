//! Throttled calls are sent again until the run's deadline. The SDK's own retries give
//! up after a few attempts; in an account where other tools draw on the same request
//! tokens, that turns a busy minute into failed changes and a rerun. A throttled
//! request was refused before AWS acted on it, so sending it again is safe, for a read
//! and for a change alike; only the deadline bounds how long a run keeps trying.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The error codes AWS answers when it throttles (the SDK's list, less the ones some
/// services also use for quotas, which waiting does not lift).
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// The first wait after the SDK gave up; it doubles up to [`LONGEST_WAIT`].
const FIRST_WAIT: Duration = Duration::from_secs(1);
const LONGEST_WAIT: Duration = Duration::from_secs(20);

/// True when `error` is AWS throttling the call.
pub fn is_throttling(error: &Error) -> bool {
    matches!(error, Error::Aws(failure) if THROTTLING_CODES.contains(&failure.code.as_str()))
}

/// The waits between sends: doubling, with jitter so that many throttled chains do not
/// come back at the same moment.
fn wait(round: u32) -> Duration {
    let full = FIRST_WAIT
        .saturating_mul(2u32.saturating_pow(round))
        .min(LONGEST_WAIT);
    full.mul_f64(0.5 + fastrand::f64() / 2.0)
}

/// Runs `attempt` until it is not throttled, or until waiting again would pass
/// `deadline`; then its last answer is returned.
pub async fn persist<T, F, Fut>(deadline: Instant, attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    again_while(deadline, attempt, |result| {
        result.as_ref().err().is_some_and(is_throttling)
    })
    .await
}

/// [`persist`] for a call answering many results (one call for many resources): sent
/// again while every result is throttling.
pub async fn persist_all<T, F, Fut>(deadline: Instant, attempt: F) -> Vec<Result<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Vec<Result<T>>>,
{
    again_while(deadline, attempt, |results: &Vec<Result<T>>| {
        !results.is_empty()
            && results
                .iter()
                .all(|r| r.as_ref().err().is_some_and(is_throttling))
    })
    .await
}

/// Sends `attempt` again, with growing waits, while `throttled` says its answer was
/// and the deadline allows another wait.
async fn again_while<A, F, Fut>(
    deadline: Instant,
    mut attempt: F,
    throttled: impl Fn(&A) -> bool,
) -> A
where
    F: FnMut() -> Fut,
    Fut: Future<Output = A>,
{
    let mut round = 0;
    loop {
        let answer = attempt().await;
        let pause = wait(round);
        if !throttled(&answer) || Instant::now() + pause >= deadline {
            return answer;
        }
        tracing::debug!(?pause, "throttled after the SDK's retries; sending again");
        tokio::time::sleep(pause).await;
        round += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::AwsFailure;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn failure(code: &str) -> Error {
        Error::Aws(AwsFailure {
            operation: "RevokeSecurityGroupEgress".into(),
            code: code.into(),
            message: "m".into(),
            request_id: None,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_call_is_sent_again_until_it_is_answered() {
        let sent = AtomicUsize::new(0);
        let deadline = Instant::now() + Duration::from_secs(600);
        let result = persist(deadline, || async {
            if sent.fetch_add(1, Ordering::SeqCst) < 5 {
                Err(failure("RequestLimitExceeded"))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(result.expect("answered"), 7);
        assert_eq!(sent.load(Ordering::SeqCst), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn other_errors_are_not_sent_again() {
        let sent = AtomicUsize::new(0);
        let deadline = Instant::now() + Duration::from_secs(600);
        let result: Result<()> = persist(deadline, || async {
            sent.fetch_add(1, Ordering::SeqCst);
            Err(failure("InvalidPermission.NotFound"))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(sent.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn past_the_deadline_the_throttling_is_the_answer() {
        let sent = AtomicUsize::new(0);
        let result: Result<()> = persist(Instant::now(), || async {
            sent.fetch_add(1, Ordering::SeqCst);
            Err(failure("SlowDown"))
        })
        .await;
        assert!(result.as_ref().err().is_some_and(is_throttling));
        assert_eq!(sent.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_many_resource_call_is_sent_again_only_when_all_of_it_was_throttled() {
        let sent = AtomicUsize::new(0);
        let deadline = Instant::now() + Duration::from_secs(600);
        let results = persist_all(deadline, || async {
            match sent.fetch_add(1, Ordering::SeqCst) {
                0 => vec![Err(failure("Throttling")), Err(failure("Throttling"))],
                _ => vec![Ok(1), Err(failure("InvalidVpcID.NotFound"))],
            }
        })
        .await;
        assert_eq!(sent.load(Ordering::SeqCst), 2);
        assert!(results[0].is_ok() && results[1].is_err());
    }

    #[test]
    fn waits_double_up_to_the_longest_with_jitter() {
        for round in 0..10 {
            let w = wait(round);
            let full = FIRST_WAIT * 2u32.pow(round.min(5));
            assert!(w <= full.min(LONGEST_WAIT), "{round}: {w:?}");
            assert!(w >= full.min(LONGEST_WAIT) / 2, "{round}: {w:?}");
        }
    }
}
