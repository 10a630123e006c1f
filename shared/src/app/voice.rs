//! What a caller hears next, whatever provider carries the call: the use cases say it, the edge
//! renders it (`twilio::render` writes TwiML for Twilio).

/// The next instructions of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Voice {
    /// Reads `prompt` while listening for `digits` key presses, which are posted to `action`;
    /// reads `otherwise` (if any) when no key is pressed.
    Ask {
        digits: u8,
        prompt: String,
        action: String,
        otherwise: Option<String>,
    },
    /// Reads `text`, then hangs up.
    Goodbye(String),
    /// Reads `text`, then joins the caller to a conference.
    Join { text: String, leg: ConferenceLeg },
    /// Reads `prompt` while listening for one key press, which is posted to `action`; with no
    /// key pressed, joins the caller back to the conference of `back`.
    Choose {
        prompt: String,
        action: String,
        back: ConferenceLeg,
    },
    /// Nothing to say: the answer to a status callback.
    Nothing,
}

/// One caller's place in a conference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConferenceLeg {
    /// Everyone joined to the same room meets.
    pub room: String,
    /// Whether this caller starts the conference (the others hear hold music until then).
    pub start_on_enter: bool,
    /// Whether the conference ends when this caller leaves.
    pub end_on_exit: bool,
    /// Who this caller is to the transfer: the label the conference's callbacks carry.
    pub label: crate::domain::warm_transfer::Leg,
    /// Where the conference reports joins, leaves and its end (WT-11).
    pub status_callback: String,
}

impl Voice {
    pub fn goodbye(text: impl Into<String>) -> Self {
        Voice::Goodbye(text.into())
    }

    /// Everything the caller hears, for logs and tests.
    pub fn spoken(&self) -> String {
        match self {
            Voice::Ask {
                prompt, otherwise, ..
            } => format!("{prompt} {}", otherwise.as_deref().unwrap_or("")),
            Voice::Goodbye(text) | Voice::Join { text, .. } => text.clone(),
            Voice::Choose { prompt, .. } => prompt.clone(),
            Voice::Nothing => String::new(),
        }
    }
}
