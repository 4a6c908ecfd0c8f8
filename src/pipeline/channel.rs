//! A bounded channel where the newest item wins: when the receiver is behind, the oldest queued
//! item is dropped (and counted) instead of blocking the sender, so a live picture never lags.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

pub struct NewestSender<T> {
    tx: Sender<T>,
    /// A second handle on the queue, used only to drop its oldest item.
    drain: Receiver<T>,
    dropped: Arc<AtomicU64>,
}

/// `capacity` items at most; the sender never blocks. Returns the drop counter too.
pub fn newest_wins<T>(capacity: usize) -> (NewestSender<T>, Receiver<T>, Arc<AtomicU64>) {
    let dropped = Arc::new(AtomicU64::new(0));
    let (tx, rx) = newest_wins_counted(capacity, dropped.clone());
    (tx, rx, dropped)
}

/// As [`newest_wins`], counting drops into a shared counter.
pub fn newest_wins_counted<T>(
    capacity: usize,
    dropped: Arc<AtomicU64>,
) -> (NewestSender<T>, Receiver<T>) {
    let (tx, rx) = bounded(capacity.max(1));
    (
        NewestSender {
            tx,
            drain: rx.clone(),
            dropped,
        },
        rx,
    )
}

impl<T> NewestSender<T> {
    /// Sends, dropping the oldest queued item when full. False once the receiver is gone.
    pub fn send(&self, mut item: T) -> bool {
        loop {
            match self.tx.try_send(item) {
                Ok(()) => return true,
                Err(TrySendError::Full(back)) => {
                    if self.drain.try_recv().is_ok() {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    item = back;
                }
                Err(TrySendError::Disconnected(_)) => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_channel_keeps_the_newest_and_counts_drops() {
        let (tx, rx, dropped) = newest_wins(2);
        for i in 0..5 {
            assert!(tx.send(i));
        }
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), [3, 4]);
        assert_eq!(dropped.load(Ordering::Relaxed), 3);
        drop(rx);
        // The drain handle keeps the channel open; the sender still never blocks.
        assert!(tx.send(9));
    }
}
