//! `harden watch`: long-polls the alerting runbook's queue and answers each event with
//! the [`Responder`]. A message is deleted only once what it names is verified
//! compliant (or its drift reported or held for approval); a failed remediation is left
//! for the queue to deliver again after its visibility timeout, and past the redrive
//! policy's count to the dead-letter queue; so is a message that is not an event, or
//! one no runbook matches (logged). Events for one resource are handled in order, one
//! at a time; different resources concurrently, under `--concurrency`. SIGTERM (or
//! Ctrl-C) stops polling and starting events; those being handled are finished (their
//! changes verified, their messages deleted), the rest of the batch is left to come
//! back, and it exits 0.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use super::Status;
use super::args::{EnforceArgs, GlobalArgs, WatchArgs};
use super::respond::{Responder, Response};
use crate::actions::sqs::messages::{self, MAX_WAIT_SECONDS, Message};
use crate::error::Result;
use crate::event::{self, CloudTrailEvent, Parsed};
use crate::trigger::Focus;

/// Runs `harden watch`.
pub async fn watch_command(global: &GlobalArgs, args: WatchArgs) -> Result<Status> {
    let queue_region = messages::region_of(&args.queue);
    let responder =
        Arc::new(Responder::new(global, &args.response, queue_region.as_deref()).await?);
    let region = queue_region
        .or_else(|| args.response.selection.regions.first().cloned())
        .or_else(|| responder.aws.default_region())
        .unwrap_or_else(|| "us-east-1".to_string());
    let sqs = responder.aws.region(&region).sqs.clone();
    let stopping = Arc::new(AtomicBool::new(false));
    let stopped = Arc::new(Notify::new());
    spawn_stop_handler(Arc::clone(&stopping), Arc::clone(&stopped));
    eprintln!(
        "harden watch: polling {} (region {region}) as {}",
        args.queue, responder.caller.arn
    );
    let (to_delete, handled) = mpsc::unbounded_channel();
    let deleter = tokio::spawn(delete_handled(sqs.clone(), args.queue.clone(), handled));
    let mut dispatcher = Dispatcher {
        responder: Arc::clone(&responder),
        to_delete,
        stopping: Arc::clone(&stopping),
        permits: Arc::new(Semaphore::new(args.response.concurrency.max(1))),
        last: HashMap::new(),
        tasks: JoinSet::new(),
    };
    let mut idle_since = Instant::now();
    let mut reached = false;
    let mut next_sweep = args.sweep_every.map(|every| Instant::now() + every);
    while !stopping.load(Ordering::SeqCst) {
        if let (Some(due), Some(every)) = (next_sweep, args.sweep_every)
            && Instant::now() >= due
        {
            eprintln!("harden watch: full sweep");
            let sweep = enforce_args(&args);
            if let Err(e) = super::enforce::enforce_with(global, sweep, &responder.audit).await {
                super::report(&e);
            }
            next_sweep = Some(Instant::now() + every);
        }
        let mut wait = MAX_WAIT_SECONDS as u64;
        if let Some(idle) = args.until_idle {
            let left = idle.saturating_sub(idle_since.elapsed().as_secs());
            if left == 0 {
                eprintln!("harden watch: the queue has been empty {idle} s; exiting");
                break;
            }
            wait = wait.min(left);
        }
        if let Some(due) = next_sweep {
            wait = wait.min(due.saturating_duration_since(Instant::now()).as_secs());
        }
        let received = tokio::select! {
            received = messages::receive(&sqs, &args.queue, wait as i32) => received,
            // Messages received by a poll cut short are not deleted: they come back.
            () = stopped.notified() => break,
        };
        let batch = match received {
            Ok(batch) => {
                reached = true;
                batch
            }
            // A queue never reached is a mistake in the flags (a wrong URL or region, no
            // right to read it): say so and stop, rather than poll in vain.
            Err(e) if !reached => {
                dispatcher.finish(deleter).await;
                return Err(e);
            }
            Err(e) => {
                // The queue was reached before: it may be briefly unreachable.
                super::report(&e);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if batch.is_empty() {
            continue;
        }
        idle_since = Instant::now();
        dispatcher.dispatch(batch).await;
    }
    dispatcher.finish(deleter).await;
    eprintln!("harden watch: stopped");
    Ok(Status::Success)
}

/// The full sweep's enforcement: every selected runbook, account and region.
fn enforce_args(args: &WatchArgs) -> EnforceArgs {
    EnforceArgs {
        selection: args.response.selection.clone(),
        policy: args.response.policy.clone(),
        report_dir: None,
        concurrency: args.response.concurrency,
        fail_fast: false,
        report_bucket: None,
        audit_bucket: None,
        ship_kms_key: None,
        security_hub: false,
        // A sweep covers everything selected: it may wait out throttling as long as a
        // scheduled enforce would.
        deadline: std::time::Duration::from_secs(3600),
    }
}

/// SIGTERM or Ctrl-C: stop polling, finish what is in hand.
fn spawn_stop_handler(stopping: Arc<AtomicBool>, stopped: Arc<Notify>) {
    tokio::spawn(async move {
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = terminate => {}
        }
        eprintln!("harden watch: stopping: finishing the events in hand, polling no more");
        stopping.store(true, Ordering::SeqCst);
        stopped.notify_one();
    });
}

/// Hands each event to a task as soon as it is received, so handling overlaps the
/// next poll: at most `--concurrency` at once, and each resource's events one at a
/// time, in the order received (a task waits for the one before it on the same
/// resource). Once `stopping` is set no event is started: those being handled finish,
/// the rest stay on the queue and come back.
struct Dispatcher {
    responder: Arc<Responder>,
    /// Where handled messages go to be deleted.
    to_delete: mpsc::UnboundedSender<Handled>,
    stopping: Arc<AtomicBool>,
    permits: Arc<Semaphore>,
    /// Per resource (account, region and what the event names), whether its latest
    /// task has ended.
    last: HashMap<ResourceKey, watch::Receiver<bool>>,
    tasks: JoinSet<()>,
}

impl Dispatcher {
    async fn dispatch(&mut self, batch: Vec<Message>) {
        let mut events = Vec::new();
        for message in batch {
            let origin = format!("message {}", message.id);
            let event = match event::parse(message.body.as_bytes(), &origin) {
                Ok(Parsed::CloudTrail(event)) => event,
                Ok(Parsed::Other {
                    detail_type,
                    source,
                }) => {
                    eprintln!(
                        "{origin}: an EventBridge event \"{detail_type}\" from {source}, not a CloudTrail API call: left for the dead-letter queue"
                    );
                    continue;
                }
                Err(e) => {
                    eprintln!(
                        "{origin}: not an event harden reads, left for the dead-letter queue: {e}"
                    );
                    continue;
                }
            };
            match self.responder.focus(&event) {
                Ok(focus) => {
                    let key = (event.account_id.clone(), event.region().to_string(), focus);
                    events.push((key, message, event));
                }
                Err(why) => eprintln!("{origin}: {why}: left for the dead-letter queue"),
            }
        }
        // Within a batch, a resource's events in the order they happened.
        events.sort_by_key(|(_, message, event)| (event.detail.event_time, message.sent_at_ms));
        self.last.retain(|_, done| !*done.borrow());
        for (key, message, event) in events {
            let before = self.last.remove(&key);
            let (ended, done) = watch::channel(false);
            let focus = key.2.clone();
            self.last.insert(key, done);
            // Waiting here holds back polling while every slot is busy.
            let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
                return;
            };
            let responder = Arc::clone(&self.responder);
            let to_delete = self.to_delete.clone();
            let stopping = Arc::clone(&self.stopping);
            self.tasks.spawn(async move {
                if let Some(mut before) = before {
                    let _ = before.wait_for(|done| *done).await;
                }
                if !stopping.load(Ordering::SeqCst) {
                    handle_one(&responder, &to_delete, message, &event, &focus).await;
                }
                drop(permit);
                let _ = ended.send(true);
            });
        }
        // Reap what has ended, so the set does not grow with the run.
        while self.tasks.try_join_next().is_some() {}
    }

    /// Waits for the events in hand (once stopping, those not started return at once
    /// and their messages come back), then for their messages' deletion.
    async fn finish(mut self, deleter: tokio::task::JoinHandle<()>) {
        while self.tasks.join_next().await.is_some() {}
        drop(self.to_delete);
        let _ = deleter.await;
    }
}

/// What one resource's events share: account, region, and what they name.
type ResourceKey = (String, String, Focus);

/// A message whose event was handled, with what became of it, awaiting deletion.
struct Handled {
    message: Message,
    said: String,
}

/// Deletes handled messages, as many per call as are waiting (up to SQS's batch of
/// 10), so a burst of events costs a tenth of the deletions and a lone one no delay.
async fn delete_handled(
    sqs: aws_sdk_sqs::Client,
    queue: String,
    mut handled: mpsc::UnboundedReceiver<Handled>,
) {
    while let Some(first) = handled.recv().await {
        let mut batch = vec![first];
        while batch.len() < messages::MAX_BATCH as usize {
            match handled.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let sent: Vec<Message> = batch.iter().map(|h| h.message.clone()).collect();
        match messages::delete_batch(&sqs, &queue, &sent).await {
            Ok(results) => {
                for (h, result) in batch.iter().zip(results) {
                    match result {
                        Ok(()) => eprintln!("{}; deleted", h.said),
                        // Not deleted: it comes back, and the re-read then finds nothing to do.
                        Err(e) => eprintln!("{}; not deleted: {e}", h.said),
                    }
                }
            }
            Err(e) => {
                for h in &batch {
                    eprintln!("{}; not deleted: {e}", h.said);
                }
            }
        }
    }
}

/// Handles one event and deletes its message when done.
async fn handle_one(
    responder: &Responder,
    to_delete: &mpsc::UnboundedSender<Handled>,
    message: Message,
    event: &CloudTrailEvent,
    focus: &Focus,
) {
    // The event's changes are finished even when a stop is asked for meanwhile.
    let finish = Some(Arc::new(AtomicBool::new(false)));
    let outcome = match responder.respond(event, focus, finish).await {
        Ok(Response::Compliant { fixed }) => format!("compliant ({fixed} change(s) made)"),
        Ok(Response::DriftLeft { reported, held }) => {
            format!("drift left by policy ({reported} reported, {held} awaiting approval)")
        }
        Ok(Response::Failed { failed }) => {
            eprintln!(
                "message {}: {}: {failed} change(s) failed: left on the queue to be retried (receive {})",
                message.id,
                event.summary(),
                message.receive_count
            );
            return;
        }
        Err(e) => {
            eprintln!(
                "message {}: {}: left on the queue to be retried: {e}",
                message.id,
                event.summary()
            );
            return;
        }
    };
    let said = format!("message {}: {}: {outcome}", message.id, event.summary());
    if let Err(unsent) = to_delete.send(Handled { message, said }) {
        eprintln!("{}; not deleted: the deleter has stopped", unsent.0.said);
    }
}
