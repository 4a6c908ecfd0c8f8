//! Sources: (re)starting the pipeline on a background thread when the user picks a source,
//! retiring the old one off the UI thread, and taking the newest results without waiting.
use super::*;

impl LiveApp {
    /// Starts `spec` on a background thread; the current source keeps running until it is ready.
    pub(super) fn start(&mut self, spec: SourceSpec) {
        let (tx, rx) = bounded(1);
        let mut setup = self.setup.clone();
        if !self.auto_neutral {
            setup.auto_neutral = None;
        }
        let ctx = self.ctx.clone();
        let spec_t = spec.clone();
        let spawned = self.spawn_helper("open-source", move || {
            let notify_ctx = ctx.clone();
            let started = setup
                .start(
                    &spec_t,
                    VideoOptions {
                        realtime: true,
                        looped: false,
                    },
                    PipelineConfig {
                        max_frames: None,
                        lossless: false,
                        notify: Some(Arc::new(move || notify_ctx.request_repaint())),
                        track: setup.track,
                        own_frames: setup.own_frames,
                        auto_neutral: setup.auto_neutral,
                    },
                )
                .map_err(|e| format!("{e:#}"));
            let _ = tx.send(started);
            ctx.request_repaint();
        });
        match spawned {
            Ok(()) => self.starting = Some((spec, rx)),
            Err(e) => self.message = Some((format!("could not start: {e}"), Severity::Problem)),
        }
    }

    /// Runs `work` on a named helper thread that is joined once done (`reap_helpers`) or when
    /// the window closes. When no thread can be started, `work` is dropped unrun, here.
    pub(super) fn spawn_helper(
        &mut self,
        name: &str,
        work: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<()> {
        let handle = std::thread::Builder::new().name(name.into()).spawn(work)?;
        self.helpers.push(handle);
        Ok(())
    }

    /// Stops a pipeline off the UI thread (joining its threads may take a moment); the helper
    /// is joined later (`reap_helpers`, or when the window closes).
    pub(super) fn retire(&mut self, running: Running) {
        // When no thread can be started, the closure, and the pipeline with it, is dropped
        // (stopped) right here.
        let _ = self.spawn_helper("stop-source", move || drop(running));
    }

    /// Joins the helper threads that are done.
    pub(super) fn reap_helpers(&mut self) {
        let (done, running): (Vec<_>, Vec<_>) =
            self.helpers.drain(..).partition(|h| h.is_finished());
        self.helpers = running;
        for h in done {
            let _ = h.join();
        }
    }

    pub(super) fn poll_start(&mut self) {
        let Some((spec, rx)) = &self.starting else {
            return;
        };
        let Ok(outcome) = rx.try_recv() else {
            return;
        };
        let spec = spec.clone();
        self.starting = None;
        match outcome {
            Ok(started) => {
                if let Some(old) = self.running.take() {
                    self.retire(old);
                }
                tracing::info!(source = %started.pipeline.source_description, device = %started.device, "source started");
                self.running = Some(Running {
                    pipeline: started.pipeline,
                    spec: started.spec,
                    device: started.device,
                    format: started.format,
                    ended: false,
                });
                self.timeline.clear();
                self.smoother.reset();
                self.intensity_smoother.reset();
                // The new pipeline starts with the generated reference.
                self.own_reference = None;
                if let Some(dir) = self.record_into.take() {
                    self.start_recording(dir);
                }
                if self
                    .message
                    .as_ref()
                    .is_some_and(|(_, s)| *s == Severity::Problem)
                {
                    self.message = None;
                }
            }
            Err(e) => {
                let fallback = !matches!(spec, SourceSpec::Demo) && self.running.is_none();
                let note = if fallback {
                    format!("{spec}: {e} — showing the demo clip instead.")
                } else {
                    format!("{spec}: {e}")
                };
                tracing::warn!("{note}");
                self.message = Some((note, Severity::Problem));
                if fallback {
                    self.start(SourceSpec::Demo);
                }
            }
        }
    }

    /// Takes the newest result (older ones are stale) and checks whether the source stopped.
    pub(super) fn poll_results(&mut self) {
        let Some(running) = &mut self.running else {
            return;
        };
        if self.screenshot.is_taking() {
            return; // frozen until the screenshot is saved
        }
        let mut newest = None;
        while let Ok(r) = running.pipeline.results.try_recv() {
            self.stats.add(&r);
            if let Some(track) = &self.label_track {
                self.label = track.get(&r.frame.seq).copied().flatten();
            }
            if let Some(rec) = &self.recorder {
                let item = RecordItem {
                    result: r.clone(),
                    label: self.label,
                };
                rec.record(item, false);
            }
            newest = Some(r);
        }
        let failed = self.recorder.as_ref().and_then(|r| r.failure());
        if let Some(f) = failed {
            self.message = Some((f, Severity::Problem));
            self.stop_recording();
        }
        let Some(running) = &mut self.running else {
            return;
        };
        if let Ok(e) = running.pipeline.errors.try_recv() {
            let note = format!("{e}. The app keeps running: pick another source above.");
            tracing::warn!("{note}");
            self.message = Some((note, Severity::Problem));
            running.ended = true;
        } else if newest.is_none()
            && !running.ended
            && running.pipeline.results.is_empty()
            && running.pipeline.is_finished()
        {
            running.ended = true;
            self.message = Some((format!("{}: end of source.", running.spec), Severity::Info));
        }
        if let Some(r) = newest {
            self.show_result(r);
        }
    }
}
