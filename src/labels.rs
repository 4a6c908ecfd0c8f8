//! The one label space of dgcn: eight expressions in a fixed order (the model's output order),
//! with each dataset's names mapped onto it. FER+ votes come in exactly this order.
use serde::{Deserialize, Serialize};

/// Number of expression classes the model predicts.
pub const NUM_CLASSES: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expression {
    Neutral = 0,
    Happy = 1,
    Surprise = 2,
    Sad = 3,
    Angry = 4,
    Disgust = 5,
    Fear = 6,
    Contempt = 7,
}

impl Expression {
    pub const ALL: [Expression; NUM_CLASSES] = [
        Expression::Neutral,
        Expression::Happy,
        Expression::Surprise,
        Expression::Sad,
        Expression::Angry,
        Expression::Disgust,
        Expression::Fear,
        Expression::Contempt,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_index(index: usize) -> Option<Expression> {
        Self::ALL.get(index).copied()
    }

    /// The expression with the highest probability (of equals the last, as `max_by` gives).
    pub fn most_likely(probs: &[f32; NUM_CLASSES]) -> Expression {
        let best = (0..NUM_CLASSES)
            .max_by(|&a, &b| probs[a].total_cmp(&probs[b]))
            .unwrap_or(0);
        Self::ALL[best]
    }

    /// Lower-case name used in JSON output and CSV files.
    pub fn name(self) -> &'static str {
        match self {
            Expression::Neutral => "neutral",
            Expression::Happy => "happy",
            Expression::Surprise => "surprise",
            Expression::Sad => "sad",
            Expression::Angry => "angry",
            Expression::Disgust => "disgust",
            Expression::Fear => "fear",
            Expression::Contempt => "contempt",
        }
    }

    /// Parses our own names and the synonyms the datasets use (`anger`, `sadness`, `happiness`,
    /// `disgusted`, `fearful`, `surprised`, …). Case-insensitive.
    pub fn parse(name: &str) -> Option<Expression> {
        let name = name.trim().to_ascii_lowercase();
        Some(match name.as_str() {
            "neutral" | "calm" => Expression::Neutral,
            "happy" | "happiness" => Expression::Happy,
            "surprise" | "surprised" => Expression::Surprise,
            "sad" | "sadness" => Expression::Sad,
            "angry" | "anger" => Expression::Angry,
            "disgust" | "disgusted" => Expression::Disgust,
            "fear" | "fearful" => Expression::Fear,
            "contempt" => Expression::Contempt,
            _ => return None,
        })
    }

    /// TFEID's expression letter (5th character of the file name).
    pub fn from_tfeid_letter(letter: char) -> Option<Expression> {
        Some(match letter.to_ascii_lowercase() {
            'a' => Expression::Neutral,
            'b' => Expression::Happy,
            'c' => Expression::Sad,
            'd' => Expression::Angry,
            'e' => Expression::Disgust,
            'f' => Expression::Fear,
            'g' => Expression::Surprise,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Class names in model order, for sidecars and reports.
pub fn class_names() -> Vec<String> {
    Expression::ALL
        .iter()
        .map(|e| e.name().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_likely_is_the_highest_probability_last_of_equals() {
        let mut p = [0.1f32; NUM_CLASSES];
        p[Expression::Happy.index()] = 0.3;
        assert_eq!(Expression::most_likely(&p), Expression::Happy);
        p[Expression::Fear.index()] = 0.4;
        p[Expression::Sad.index()] = 0.4;
        assert_eq!(Expression::most_likely(&p), Expression::Fear);
    }

    #[test]
    fn indices_round_trip_in_fixed_order() {
        let names: Vec<&str> = Expression::ALL.iter().map(|e| e.name()).collect();
        assert_eq!(
            names,
            ["neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt"]
        );
        for (i, e) in Expression::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
            assert_eq!(Expression::from_index(i), Some(*e));
        }
        assert_eq!(Expression::from_index(8), None);
    }

    #[test]
    fn dataset_names_map_to_the_label_space() {
        // CK+48 folder names
        for (n, e) in [
            ("anger", Expression::Angry),
            ("contempt", Expression::Contempt),
            ("disgust", Expression::Disgust),
            ("fear", Expression::Fear),
            ("happy", Expression::Happy),
            ("sadness", Expression::Sad),
            ("surprise", Expression::Surprise),
        ] {
            assert_eq!(Expression::parse(n), Some(e), "{n}");
        }
        // FER2013 folder names
        for (n, e) in [
            ("angry", Expression::Angry),
            ("neutral", Expression::Neutral),
            ("sad", Expression::Sad),
            ("Surprise", Expression::Surprise),
        ] {
            assert_eq!(Expression::parse(n), Some(e), "{n}");
        }
        assert_eq!(Expression::parse("unknown"), None);
        // TFEID letters: a neutral, b happy, c sad, d angry, e disgusted, f fearful, g surprised
        let letters: Vec<Expression> = "abcdefg"
            .chars()
            .filter_map(Expression::from_tfeid_letter)
            .collect();
        assert_eq!(
            letters,
            [
                Expression::Neutral,
                Expression::Happy,
                Expression::Sad,
                Expression::Angry,
                Expression::Disgust,
                Expression::Fear,
                Expression::Surprise
            ]
        );
        assert_eq!(Expression::from_tfeid_letter('h'), None);
    }
}
