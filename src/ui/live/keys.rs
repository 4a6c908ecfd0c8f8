//! Keyboard: own reference (N), raw values (R), recording (Ctrl+R), labels (1–8, 0).
use super::*;

/// What the keys pressed this frame ask for.
#[derive(Debug, Default, PartialEq)]
pub struct KeyActions {
    /// N: take or drop the own neutral reference.
    pub own_reference: bool,
    /// R: raw or smoothed bars.
    pub raw: bool,
    /// Ctrl+R (Cmd+R): start or stop recording.
    pub record: bool,
    /// 1–8: that expression (model order); 0: no label.
    pub label: Option<Option<Expression>>,
}

pub fn key_actions(i: &egui::InputState) -> KeyActions {
    const DIGITS: [Key; 9] = [
        Key::Num0,
        Key::Num1,
        Key::Num2,
        Key::Num3,
        Key::Num4,
        Key::Num5,
        Key::Num6,
        Key::Num7,
        Key::Num8,
    ];
    KeyActions {
        own_reference: i.key_pressed(Key::N),
        raw: i.key_pressed(Key::R) && !i.modifiers.command,
        record: i.key_pressed(Key::R) && i.modifiers.command,
        label: DIGITS
            .iter()
            .position(|k| i.key_pressed(*k))
            .map(|d| d.checked_sub(1).and_then(Expression::from_index)),
    }
}

impl LiveApp {
    pub(super) fn handle_keys(&mut self, ctx: &egui::Context) {
        if ctx.memory(|m| m.focused().is_some()) {
            return; // typing a path
        }
        let keys = ctx.input(key_actions);
        if keys.own_reference {
            self.toggle_own_reference();
        }
        if keys.raw {
            self.show_raw = !self.show_raw;
        }
        if keys.record {
            self.toggle_recording();
        }
        if let Some(label) = keys.label {
            self.label = label;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actions_for(key: Key, modifiers: egui::Modifiers) -> KeyActions {
        let ctx = egui::Context::default();
        let input = egui::RawInput {
            events: vec![
                egui::Event::ModifiersChanged(modifiers),
                egui::Event::Key {
                    key,
                    physical_key: None,
                    pressed: true,
                    repeat: false,
                    modifiers,
                },
            ],
            ..Default::default()
        };
        let mut out = KeyActions::default();
        let _ = ctx.run_ui(input, |ui| out = ui.ctx().input(key_actions));
        out
    }

    #[test]
    fn keys_set_labels_and_toggle_recording() {
        let none = egui::Modifiers::NONE;
        assert_eq!(
            actions_for(Key::Num2, none).label,
            Some(Some(Expression::Happy))
        );
        assert_eq!(
            actions_for(Key::Num8, none).label,
            Some(Some(Expression::Contempt))
        );
        assert_eq!(actions_for(Key::Num0, none).label, Some(None));
        assert_eq!(actions_for(Key::Num9, none).label, None);
        let ctrl_r = actions_for(Key::R, egui::Modifiers::COMMAND);
        assert!(ctrl_r.record && !ctrl_r.raw);
        let r = actions_for(Key::R, none);
        assert!(r.raw && !r.record);
        assert!(actions_for(Key::N, none).own_reference);
    }
}
