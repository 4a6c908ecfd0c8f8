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
            // A device stuck in a blocking read (a camera unplugged mid-frame) must not hang
            // the app's shutdown: give it a moment, then let the thread go.
            let t0 = std::time::Instant::now();
            while !h.is_finished() && t0.elapsed() < Duration::from_secs(2) {
                while self.frames.try_recv().is_ok() {}
                std::thread::sleep(Duration::from_millis(5));
            }
            if h.is_finished() {
                let _ = h.join();
            } else {
                tracing::warn!(source = %self.description, "the source's thread did not stop within 2 s; leaving it");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A device that delivers one frame, then hangs in its read (as an unplugged camera can).
    struct Stuck {
        sent: bool,
    }

    impl Producer for Stuck {
        fn produce(&mut self) -> Result<Option<SourceFrame>, CaptureError> {
            if !self.sent {
                self.sent = true;
                return Ok(Some(SourceFrame {
                    rgb: image::RgbImage::new(4, 4),
                    time_s: None,
                }));
            }
            std::thread::sleep(Duration::from_secs(60));
            Ok(None)
        }
        fn describe(&self) -> String {
            "stuck".into()
        }
    }

    #[test]
    fn a_stuck_device_neither_blocks_reading_nor_shutdown() {
        let mut source =
            ThreadedSource::spawn("stuck-test", || Ok(Stuck { sent: false })).expect("opens");
        let stop = AtomicBool::new(false);
        assert!(source.next_frame(&stop).expect("frame").is_some());
        // Asked to stop while the device hangs: the reader returns.
        stop.store(true, Ordering::Relaxed);
        let t0 = Instant::now();
        assert!(source.next_frame(&stop).expect("no error").is_none());
        assert!(t0.elapsed() < Duration::from_secs(1));
        // Dropping it does not wait for the device.
        let t0 = Instant::now();
        drop(source);
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    }

    #[test]
    fn an_open_error_is_returned_by_spawn() {
        let e = ThreadedSource::spawn("fail-test", || -> Result<Stuck, CaptureError> {
            Err(CaptureError::NoCamera)
        });
        assert!(matches!(e, Err(CaptureError::NoCamera)));
    }
}
