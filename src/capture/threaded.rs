//! A source whose device or decoder lives on its own named thread (nokhwa's camera handle and
//! FFmpeg's scaler are not `Send`). The thread opens the source, reports success or the error
//! before `spawn` returns, then hands frames over a bounded channel.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, SendTimeoutError, Sender};

use super::{CaptureError, FrameSource, SourceFrame};

/// What runs on the source's thread.
pub trait Producer {
    /// The next frame, `Ok(None)` at the end.
    fn produce(&mut self) -> Result<Option<SourceFrame>, CaptureError>;
    fn describe(&self) -> String;
}

type Item = Result<SourceFrame, CaptureError>;

pub struct ThreadedSource {
    description: String,
    frames: Receiver<Item>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

/// Sends unless asked to stop; `false` when the frame should not be followed by more.
fn send_until_stopped(tx: &Sender<Item>, mut item: Item, stop: &AtomicBool) -> bool {
    loop {
        match tx.send_timeout(item, Duration::from_millis(50)) {
            Ok(()) => return true,
            Err(SendTimeoutError::Timeout(back)) => {
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
                item = back;
            }
            Err(SendTimeoutError::Disconnected(_)) => return false,
        }
    }
}

impl ThreadedSource {
    /// Starts `open` on a thread called `name` and waits for it to open the source.
    pub fn spawn<P, F>(name: &str, open: F) -> Result<ThreadedSource, CaptureError>
    where
        P: Producer,
        F: FnOnce() -> Result<P, CaptureError> + Send + 'static,
    {
        let (ready_tx, ready_rx) = bounded::<Result<String, CaptureError>>(1);
        let (tx, frames) = bounded::<Item>(2);
        let stop = Arc::new(AtomicBool::new(false));
        let stop_t = stop.clone();
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut producer = match open() {
                    Ok(p) => {
                        let _ = ready_tx.send(Ok(p.describe()));
                        p
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while !stop_t.load(Ordering::Relaxed) {
                    match producer.produce() {
                        Ok(Some(frame)) => {
                            if !send_until_stopped(&tx, Ok(frame), &stop_t) {
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            send_until_stopped(&tx, Err(e), &stop_t);
                            break;
                        }
                    }
                }
                // Dropping the producer here releases the camera or file on this thread.
            })
            .map_err(|e| CaptureError::Thread(e.to_string()))?;
        let description = match ready_rx.recv() {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                let _ = handle.join();
                return Err(e);
            }
            Err(_) => {
                let _ = handle.join();
                return Err(CaptureError::Thread(format!(
                    "the {name} thread ended while opening its source"
                )));
            }
        };
        Ok(ThreadedSource {
            description,
            frames,
            stop,
            handle: Some(handle),
        })
    }
}

impl FrameSource for ThreadedSource {
    fn next_frame(&mut self, stop: &AtomicBool) -> Result<Option<SourceFrame>, CaptureError> {
        loop {
            match self.frames.recv_timeout(Duration::from_millis(50)) {
                Ok(item) => return item.map(Some),
                Err(RecvTimeoutError::Disconnected) => return Ok(None),
                Err(RecvTimeoutError::Timeout) => {
                    if stop.load(Ordering::Relaxed)
                        || self.handle.as_ref().is_none_or(|h| h.is_finished())
                    {
                        return Ok(None);
                    }
                }
            }
        }
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

impl Drop for ThreadedSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        while self.frames.try_recv().is_ok() {}
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
