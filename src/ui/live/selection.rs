//! The selected face: followed by its track id, its tiles, smoothed bars and timeline, and the
//! person's own neutral reference (which follows the same track).
use super::*;

impl LiveApp {
    pub(super) fn show_result(&mut self, r: FrameResult) {
        self.frames_shown += 1;
        self.frame_view.set(
            &self.ctx,
            ColorImage::from_rgb(
                [r.frame.rgb.width() as usize, r.frame.rgb.height() as usize],
                r.frame.rgb.as_raw(),
            ),
        );
        // Follow the selected face by its track id, else take the largest.
        let previous = self.selected;
        self.selected = self
            .selected_track
            .and_then(|t| r.faces.iter().position(|f| f.detected.track == t))
            .unwrap_or(0);
        if previous != self.selected {
            self.smoother.reset();
            self.intensity_smoother.reset();
        }
        if let Some(face) = r.faces.get(self.selected) {
            self.selected_track = Some(face.detected.track);
            let p = &face.prediction;
            self.query_view
                .set(&self.ctx, views::grey_image(&face.aligned));
            self.reference_view
                .set(&self.ctx, views::grey_image(&p.reference));
            self.generated_view
                .set(&self.ctx, views::grey_image(&p.generated));
            self.difference_view.set(
                &self.ctx,
                views::heat_map_image(&face.aligned, &p.reference),
            );
            let smoothed = self.smoother.update(r.frame.time_s, &p.probs);
            self.shown_probs = if self.show_raw { p.probs } else { smoothed };
            let [smoothed] = self
                .intensity_smoother
                .update(r.frame.time_s, &[p.intensity]);
            self.shown_intensity = if self.show_raw { p.intensity } else { smoothed };
            self.timeline
                .push(r.frame.time_s, self.shown_probs, self.shown_intensity);
        } else {
            self.selected_track = None;
        }
        self.latest = Some(r);
    }

    pub(super) fn set_own_reference(&mut self, own: Option<OwnReference>) {
        self.own_reference = own.as_ref().map(|o| o.face.clone());
        if let Some(r) = &self.running {
            if r.pipeline
                .control
                .try_send(Control::OwnReference(own))
                .is_err()
            {
                self.message = Some((
                    "the model is busy: press the button again".into(),
                    Severity::Problem,
                ));
            }
        }
    }

    /// Whether the selected face is compared with an own neutral face: one the user took, or one
    /// taken by itself (the latest result says so).
    pub(super) fn own_in_force(&self) -> bool {
        self.own_reference.is_some() || self.own_taken_by_itself()
    }

    /// Whether the selected face's own neutral face was taken by itself, not by the user.
    pub(super) fn own_taken_by_itself(&self) -> bool {
        self.own_reference.is_none()
            && self
                .latest
                .as_ref()
                .and_then(|r| r.faces.get(self.selected))
                .is_some_and(|f| f.prediction.own_reference())
    }

    /// Whether the own neutral face is taken by itself from now on (the window's checkbox).
    pub(super) fn set_auto_neutral(&mut self, on: bool) {
        self.auto_neutral = on;
        let rule = on.then(|| {
            self.setup
                .auto_neutral
                .unwrap_or_else(|| AutoNeutralRule::with_frames(self.setup.own_frames))
        });
        if let Some(r) = &self.running {
            if r.pipeline
                .control
                .try_send(Control::AutoNeutral(rule))
                .is_err()
            {
                self.message = Some(("the model is busy: click again".into(), Severity::Problem));
            }
        }
    }

    pub(super) fn toggle_own_reference(&mut self) {
        if self.own_in_force() {
            // The user chose the generated reference: the pipeline stops taking one by itself.
            self.set_own_reference(None);
            self.auto_neutral = false;
            return;
        }
        let face = self
            .latest
            .as_ref()
            .and_then(|r| r.faces.get(self.selected));
        match face {
            Some(f) => self.set_own_reference(Some(OwnReference::of(f))),
            None => {
                self.message = Some((
                    "no face in view to take as your neutral face".into(),
                    Severity::Problem,
                ))
            }
        }
    }
}
