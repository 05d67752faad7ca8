//! Hook deliveries as the ledger records them: written with a file's disposal, delivered at
//! least once.

use super::FileKey;
use serde::Serialize;

/// How a hook is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HookKind {
    Command,
    Webhook,
}

impl HookKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HookKind::Command => "command",
            HookKind::Webhook => "webhook",
        }
    }

    /// The stored text back; anything but `command` is a webhook.
    pub fn parse(text: &str) -> HookKind {
        match text {
            "command" => HookKind::Command,
            _ => HookKind::Webhook,
        }
    }
}

/// A delivery to record.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub event: &'static str,
    pub kind: HookKind,
    /// JSON argv for a command, the URL for a webhook.
    pub target: String,
    pub payload: String,
}

/// A recorded delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub id: i64,
    pub file_key: FileKey,
    pub event: String,
    pub kind: HookKind,
    pub target: String,
    pub payload: String,
    pub attempts: u32,
    pub next_at: i64,
    pub last_error: Option<String>,
    pub delivered: bool,
}
