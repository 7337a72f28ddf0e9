//! A run's events on their way to the page, held within a bound: a program can print far
//! faster than a browser takes it in (`yes` does gigabytes a second), and the server must
//! neither hold it all nor slow the program down. Output beyond the bound is counted, not
//! queued, and the page is told how much it missed ([`RunEvent::Dropped`]) before the next
//! event it gets. Other events always go through.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::event::RunEvent;

/// How much output may wait for the page.
const QUEUED_LIMIT: usize = 4 << 20;

/// Output held to a limit: what would pass it is counted, and the count goes out as a
/// [`RunEvent::Dropped`] before the next event that passes. The page's queue and the
/// capture for `--export` both use one.
#[derive(Debug)]
pub struct Bound {
    limit: usize,
    dropped: usize,
}

impl Bound {
    /// A bound of `limit` bytes of output.
    pub fn new(limit: usize) -> Self {
        Self { limit, dropped: 0 }
    }

    /// What to pass on for `event`, with `used` bytes of output held already: nothing when
    /// it is output past the limit (counted), else the event, after the count of what was
    /// left out since the last event that passed.
    pub fn pass(&mut self, used: usize, event: RunEvent) -> Vec<RunEvent> {
        let size = event.output_len();
        if size > 0 && used + size > self.limit {
            self.dropped += size;
            return Vec::new();
        }
        let mut events = Vec::with_capacity(2);
        if self.dropped > 0 {
            events.push(RunEvent::Dropped {
                bytes: std::mem::take(&mut self.dropped),
            });
        }
        events.push(event);
        events
    }
}

/// The sending side, owned by the run.
#[derive(Debug)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<RunEvent>,
    queued: Arc<AtomicUsize>,
    bound: Bound,
}

/// The receiving side, read by the page's stream.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::UnboundedReceiver<RunEvent>,
    queued: Arc<AtomicUsize>,
}

/// A new outbox and its events.
pub fn channel() -> (Outbox, Events) {
    with_limit(QUEUED_LIMIT)
}

fn with_limit(limit: usize) -> (Outbox, Events) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (
        Outbox {
            tx,
            queued: Arc::clone(&queued),
            bound: Bound::new(limit),
        },
        Events { rx, queued },
    )
}

impl Outbox {
    /// Sends `event`, or counts it as dropped when it is output and too much waits already.
    pub fn send(&mut self, event: RunEvent) {
        let queued = self.queued.load(Ordering::Relaxed);
        for event in self.bound.pass(queued, event) {
            self.push(event);
        }
    }

    fn push(&self, event: RunEvent) {
        self.queued.fetch_add(event.output_len(), Ordering::Relaxed);
        // A page that went away stops the run; until then its events have nowhere to go.
        let _ = self.tx.send(event);
    }

    /// Another handle on the same queue, to watch for the page to stop listening.
    pub fn watcher(&self) -> mpsc::UnboundedSender<RunEvent> {
        self.tx.clone()
    }
}

impl Events {
    /// The next event, `None` once the run has ended and all were taken.
    pub async fn recv(&mut self) -> Option<RunEvent> {
        let event = self.rx.recv().await?;
        self.queued.fetch_sub(event.output_len(), Ordering::Relaxed);
        Some(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(text: &str) -> RunEvent {
        RunEvent::Stdout { text: text.into() }
    }

    #[tokio::test]
    async fn output_beyond_the_bound_is_counted_and_the_page_told() {
        let (mut outbox, mut events) = with_limit(8);
        outbox.send(out("12345"));
        outbox.send(out("6789")); // 9 > 8: dropped
        outbox.send(out("abc")); // 8: fits
        outbox.send(out("xyz")); // dropped
        outbox.send(RunEvent::Phase { text: "p".into() });
        drop(outbox);
        let mut got = Vec::new();
        while let Some(event) = events.recv().await {
            got.push(event);
        }
        assert_eq!(
            got,
            vec![
                out("12345"),
                RunEvent::Dropped { bytes: 4 },
                out("abc"),
                RunEvent::Dropped { bytes: 3 },
                RunEvent::Phase { text: "p".into() },
            ]
        );
    }

    #[test]
    fn a_bound_on_a_growing_total_keeps_the_start_and_counts_the_rest() {
        let mut bound = Bound::new(5);
        let mut kept = 0;
        let mut passed = Vec::new();
        for event in [
            out("abc"),
            out("def"),
            out("gh"),
            RunEvent::Phase { text: "p".into() },
        ] {
            for event in bound.pass(kept, event) {
                kept += event.output_len();
                passed.push(event);
            }
        }
        assert_eq!(
            passed,
            vec![
                out("abc"),
                RunEvent::Dropped { bytes: 3 },
                out("gh"),
                RunEvent::Phase { text: "p".into() },
            ]
        );
    }

    #[tokio::test]
    async fn taking_events_makes_room_again() {
        let (mut outbox, mut events) = with_limit(4);
        outbox.send(out("1234"));
        assert_eq!(events.recv().await, Some(out("1234")));
        outbox.send(out("5678"));
        assert_eq!(events.recv().await, Some(out("5678")));
    }
}
