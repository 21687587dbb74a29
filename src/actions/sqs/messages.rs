//! Receiving events from a queue and deleting them once handled. Delivery is at least
//! once: a message is deleted only after what it asked for is done, and one not
//! deleted comes back after the queue's visibility timeout (and, past the redrive
//! policy's count, goes to the dead-letter queue).

use crate::aws::Answer;
use crate::error::{Error, Result};

/// SQS's longest long-poll wait.
pub const MAX_WAIT_SECONDS: i32 = 20;
/// SQS's largest batch.
pub const MAX_BATCH: i32 = 10;

/// One message received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// SQS's message id.
    pub id: String,
    /// What deleting it needs.
    pub receipt_handle: String,
    /// The body (an EventBridge event, from the alerting runbook's rule).
    pub body: String,
    /// How many times it has been received, this time included.
    pub receive_count: u32,
    /// When it was sent, milliseconds since the epoch (orders a resource's events).
    pub sent_at_ms: u64,
}

/// Receives up to [`MAX_BATCH`] messages, waiting up to `wait_seconds` for the first.
pub async fn receive(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    wait_seconds: i32,
) -> Result<Vec<Message>> {
    use aws_sdk_sqs::types::MessageSystemAttributeName as Attribute;
    let answer = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(MAX_BATCH)
        .wait_time_seconds(wait_seconds.clamp(0, MAX_WAIT_SECONDS))
        .message_system_attribute_names(Attribute::ApproximateReceiveCount)
        .message_system_attribute_names(Attribute::SentTimestamp)
        .send()
        .await
        .or_failure("ReceiveMessage")?;
    Ok(answer
        .messages()
        .iter()
        .filter_map(|m| {
            let attribute = |name: Attribute| {
                m.attributes()
                    .and_then(|a| a.get(&name))
                    .and_then(|v| v.parse::<u64>().ok())
            };
            Some(Message {
                id: m.message_id()?.to_string(),
                receipt_handle: m.receipt_handle()?.to_string(),
                body: m.body().unwrap_or_default().to_string(),
                receive_count: attribute(Attribute::ApproximateReceiveCount).unwrap_or(1) as u32,
                sent_at_ms: attribute(Attribute::SentTimestamp).unwrap_or(0),
            })
        })
        .collect())
}

/// Deletes up to [`MAX_BATCH`] handled messages in one call; answers, per message in
/// order, whether it was deleted (SQS refuses entries one by one within a successful
/// answer, for example a receipt handle that expired).
pub async fn delete_batch(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    batch: &[Message],
) -> Result<Vec<std::result::Result<(), String>>> {
    use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry as Entry;
    let entries = batch
        .iter()
        .enumerate()
        .map(|(n, m)| {
            Entry::builder()
                .id(n.to_string())
                .receipt_handle(&m.receipt_handle)
                .build()
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Internal(format!("a delete entry: {e}")))?;
    let answer = sqs
        .delete_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await
        .or_failure("DeleteMessageBatch")?;
    Ok((0..batch.len())
        .map(|n| {
            let id = n.to_string();
            match answer.failed().iter().find(|f| f.id() == id) {
                Some(refused) => Err(format!(
                    "{}: {}",
                    refused.code(),
                    refused.message().unwrap_or_default()
                )),
                None => Ok(()),
            }
        })
        .collect())
}

/// The region of a queue URL of AWS (`https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`,
/// or the legacy `https://REGION.queue.amazonaws.com/...`); `None` for other hosts
/// (an emulator's), where the region comes from the flags.
pub fn region_of(queue_url: &str) -> Option<String> {
    let host = queue_url.split("://").nth(1)?.split('/').next()?;
    let mut labels = host.split('.');
    match (labels.next()?, labels.next()?) {
        ("sqs", region) if region.contains('-') => Some(region.to_string()),
        (region, "queue") if region.contains('-') => Some(region.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_is_read_from_aws_queue_urls_only() {
        assert_eq!(
            region_of("https://sqs.eu-west-1.amazonaws.com/111111111111/q").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            region_of("https://us-east-2.queue.amazonaws.com/111111111111/q").as_deref(),
            Some("us-east-2")
        );
        assert_eq!(region_of("http://127.0.0.1:5000/111111111111/q"), None);
        assert_eq!(region_of("not a url"), None);
    }
}
