//! Lifecycle events: one event per state transition of a credential, derived from the table's
//! DynamoDB Stream (credential-events), never emitted inline. A function that dies right after the
//! write that made a transition loses no event: the stream holds the change either way.
//!
//! | Transition (old image -> new image) | Event |
//! |---|---|
//! | none -> ACTIVE (first login) | `credential.connected` |
//! | REAUTH_REQUIRED -> ACTIVE (a login again) | `credential.connected` with `recovered: true` |
//! | ACTIVE, no failures -> ACTIVE, a failure recorded | `credential.refresh_failing` (first of a streak) |
//! | not REAUTH_REQUIRED -> REAUTH_REQUIRED | `credential.reauthentication_required` with `reason` |
//! | not REVOKING -> REVOKING (disconnect begins), or an item removed that was not | `credential.disconnected` |
//!
//! Everything else (refreshes, leases, backoff steps, a re-login of an ACTIVE credential) is no
//! transition. An event carries ids, the reason and times, never a token or secret: the images hold
//! ciphertexts, and nothing here reads them.

use serde::Deserialize;
use serde_json::{Value, json};

/// EventBridge `source` of every event.
pub const SOURCE: &str = "credvault";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum EventKind {
    #[serde(rename = "credential.connected")]
    Connected,
    #[serde(rename = "credential.refresh_failing")]
    RefreshFailing,
    #[serde(rename = "credential.reauthentication_required")]
    ReauthenticationRequired,
    #[serde(rename = "credential.disconnected")]
    Disconnected,
}

impl EventKind {
    /// The EventBridge `detail-type`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Connected => "credential.connected",
            EventKind::RefreshFailing => "credential.refresh_failing",
            EventKind::ReauthenticationRequired => "credential.reauthentication_required",
            EventKind::Disconnected => "credential.disconnected",
        }
    }
}

/// One event, as its `detail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleEvent {
    pub kind: EventKind,
    /// The stream record's id: the same change delivered twice has the same id, for consumers to
    /// drop the second.
    pub event_id: String,
    pub connection_id: String,
    pub user_id: String,
    /// `invalid_grant`, `rotation_lost`, `endpoint_changed`, ... (re-authentication only).
    pub reason: Option<String>,
    /// A login again after re-authentication was required (`connected` only).
    pub recovered: Option<bool>,
    /// Epoch seconds of the change (the stream record's `ApproximateCreationDateTime`).
    pub occurred_at: i64,
}

impl LifecycleEvent {
    /// The documented `detail` (README, "Lifecycle events").
    pub fn detail(&self) -> Value {
        let mut detail = json!({
            "eventId": self.event_id,
            "type": self.kind.as_str(),
            "connectionId": self.connection_id,
            "userId": self.user_id,
            "occurredAt": crate::clock::iso8601(self.occurred_at),
        });
        if let Some(reason) = &self.reason {
            detail["reason"] = json!(reason);
        }
        if let Some(recovered) = self.recovered {
            detail["recovered"] = json!(recovered);
        }
        detail
    }
}

/// What a stream record says about a credential item: the attributes transitions are read from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialImage {
    pub connection_id: String,
    pub user_id: String,
    pub status: String,
    pub refresh_failures: u32,
    pub reauth_reason: Option<String>,
}

/// A DynamoDB Streams record as Lambda delivers it (only the members used here).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamRecord {
    #[serde(rename = "eventID")]
    pub event_id: String,
    pub event_name: String,
    pub dynamodb: StreamChange,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamChange {
    #[serde(default)]
    pub approximate_creation_date_time: Option<f64>,
    #[serde(default)]
    pub sequence_number: Option<String>,
    #[serde(default)]
    pub new_image: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    pub old_image: Option<serde_json::Map<String, Value>>,
}

/// A string attribute of an image in DynamoDB's JSON (`{"S": "..."}`).
fn string(image: &serde_json::Map<String, Value>, name: &str) -> Option<String> {
    image.get(name)?.get("S")?.as_str().map(String::from)
}

fn number(image: &serde_json::Map<String, Value>, name: &str) -> Option<i64> {
    image.get(name)?.get("N")?.as_str()?.parse().ok()
}

/// The credential in an image, or `None` for items of other kinds (connections, audit, ...).
fn credential_image(image: &serde_json::Map<String, Value>) -> Option<CredentialImage> {
    if !string(image, "pk")?.starts_with("CREDENTIAL#") {
        return None;
    }
    Some(CredentialImage {
        connection_id: string(image, "connectionId")?,
        user_id: string(image, "userId")?,
        status: string(image, "status")?,
        refresh_failures: number(image, "refreshFailures").unwrap_or(0).max(0) as u32,
        reauth_reason: string(image, "reauthReason"),
    })
}

const ACTIVE: &str = "ACTIVE";
const REAUTH_REQUIRED: &str = "REAUTH_REQUIRED";
const REVOKING: &str = "REVOKING";

/// The transition one change of a credential item makes, if any.
pub fn transition(old: Option<&CredentialImage>, new: Option<&CredentialImage>) -> Option<(EventKind, &'static str)> {
    match (old, new) {
        (None, Some(new)) if new.status == ACTIVE => Some((EventKind::Connected, "first")),
        (Some(old), Some(new)) => {
            if old.status == REAUTH_REQUIRED && new.status == ACTIVE {
                Some((EventKind::Connected, "recovered"))
            } else if old.status == ACTIVE
                && new.status == ACTIVE
                && old.refresh_failures == 0
                && new.refresh_failures > 0
            {
                Some((EventKind::RefreshFailing, ""))
            } else if old.status != REAUTH_REQUIRED && new.status == REAUTH_REQUIRED {
                Some((EventKind::ReauthenticationRequired, ""))
            } else if old.status != REVOKING && new.status == REVOKING {
                Some((EventKind::Disconnected, ""))
            } else {
                None
            }
        }
        (Some(old), None) if old.status != REVOKING => Some((EventKind::Disconnected, "")),
        _ => None,
    }
}

/// The event of one stream record, if it records a transition of a credential.
pub fn event_of(record: &StreamRecord) -> Option<LifecycleEvent> {
    let old = record.dynamodb.old_image.as_ref().and_then(credential_image);
    let new = record.dynamodb.new_image.as_ref().and_then(credential_image);
    let (kind, how) = transition(old.as_ref(), new.as_ref())?;
    let about = new.as_ref().or(old.as_ref())?;
    Some(LifecycleEvent {
        kind,
        event_id: record.event_id.clone(),
        connection_id: about.connection_id.clone(),
        user_id: about.user_id.clone(),
        reason: (kind == EventKind::ReauthenticationRequired)
            .then(|| about.reauth_reason.clone().unwrap_or_else(|| "unknown".into())),
        recovered: (kind == EventKind::Connected).then_some(how == "recovered"),
        occurred_at: record
            .dynamodb
            .approximate_creation_date_time
            .map(|t| t as i64)
            .unwrap_or_default(),
    })
}

/// Where events go: EventBridge in a deployment.
pub struct EventPublisher {
    pub client: aws_sdk_eventbridge::Client,
    /// `default`, or the bus the template names.
    pub bus: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("EventBridge PutEvents failed")]
    EventBridge(#[source] crate::aws_failure::Source),
    /// Entries EventBridge refused (by position in the batch).
    #[error("EventBridge refused {} of the events", .0.len())]
    Refused(Vec<usize>),
}

/// EventBridge takes at most ten entries per PutEvents.
pub const BATCH: usize = 10;

impl EventPublisher {
    /// The client from the Lambda environment, on `CREDVAULT_EVENT_BUS` (default `default`), at
    /// `CREDVAULT_AWS_ENDPOINT_URL` when set (the local emulator).
    pub async fn from_env() -> Self {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
        let mut config = aws_sdk_eventbridge::config::Builder::from(&sdk);
        if let Ok(endpoint) = std::env::var("CREDVAULT_AWS_ENDPOINT_URL")
            && !endpoint.is_empty()
        {
            config = config.endpoint_url(endpoint);
        }
        Self {
            client: aws_sdk_eventbridge::Client::from_conf(config.build()),
            bus: std::env::var("CREDVAULT_EVENT_BUS")
                .ok()
                .filter(|b| !b.is_empty())
                .unwrap_or_else(|| "default".into()),
        }
    }

    /// Puts `events` (at most `BATCH`) on the bus.
    pub async fn publish(&self, events: &[LifecycleEvent]) -> Result<(), PublishError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut request = self.client.put_events();
        for event in events {
            request = request.entries(
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .source(SOURCE)
                    .detail_type(event.kind.as_str())
                    .detail(event.detail().to_string())
                    .event_bus_name(&self.bus)
                    .resources(crate::access::credentials_resource(
                        &event.connection_id,
                        &event.user_id,
                    ))
                    .build(),
            );
        }
        let out = request
            .send()
            .await
            .map_err(|e| PublishError::EventBridge(Box::new(e)))?;
        let refused: Vec<usize> = out
            .entries()
            .iter()
            .enumerate()
            .filter(|(_, entry)| entry.error_code().is_some())
            .map(|(i, _)| i)
            .collect();
        if refused.is_empty() {
            Ok(())
        } else {
            Err(PublishError::Refused(refused))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(status: &str, failures: u32) -> CredentialImage {
        CredentialImage {
            connection_id: "con_a".into(),
            user_id: "con_a|u".into(),
            status: status.into(),
            refresh_failures: failures,
            reauth_reason: (status == REAUTH_REQUIRED).then(|| "invalid_grant".into()),
        }
    }

    #[test]
    fn each_transition_is_one_event_and_nothing_else_is() {
        let active = image(ACTIVE, 0);
        let failing = image(ACTIVE, 1);
        let more_failing = image(ACTIVE, 2);
        let dead = image(REAUTH_REQUIRED, 0);
        let revoking = image(REVOKING, 0);
        let kind = |old: Option<&CredentialImage>, new: Option<&CredentialImage>| transition(old, new).map(|(k, _)| k);
        assert_eq!(transition(None, Some(&active)), Some((EventKind::Connected, "first")));
        assert_eq!(
            transition(Some(&dead), Some(&active)),
            Some((EventKind::Connected, "recovered"))
        );
        assert_eq!(kind(Some(&active), Some(&failing)), Some(EventKind::RefreshFailing));
        assert_eq!(
            kind(Some(&failing), Some(&more_failing)),
            None,
            "only the first of a streak"
        );
        assert_eq!(kind(Some(&failing), Some(&active)), None, "a recovery is no transition");
        assert_eq!(
            kind(Some(&failing), Some(&dead)),
            Some(EventKind::ReauthenticationRequired)
        );
        assert_eq!(
            kind(Some(&active), Some(&dead)),
            Some(EventKind::ReauthenticationRequired)
        );
        assert_eq!(kind(Some(&dead), Some(&dead)), None);
        assert_eq!(kind(Some(&active), Some(&revoking)), Some(EventKind::Disconnected));
        assert_eq!(kind(Some(&revoking), None), None, "the disconnect was told at REVOKING");
        assert_eq!(kind(Some(&active), None), Some(EventKind::Disconnected));
        assert_eq!(kind(Some(&active), Some(&active)), None, "a refresh or a re-login");
        assert_eq!(kind(None, Some(&dead)), None);
    }

    #[test]
    fn a_stream_record_of_a_credential_becomes_its_documented_detail_without_secrets() {
        let record: StreamRecord = serde_json::from_value(json!({
            "eventID": "e-1", "eventName": "MODIFY",
            "dynamodb": {
                "ApproximateCreationDateTime": 1_800_000_000.0,
                "SequenceNumber": "100",
                "OldImage": {"pk": {"S": "CREDENTIAL#con_a"}, "connectionId": {"S": "con_a"}, "userId": {"S": "con_a|u"},
                    "status": {"S": "ACTIVE"}, "refreshToken": {"B": "c2VjcmV0"}},
                "NewImage": {"pk": {"S": "CREDENTIAL#con_a"}, "connectionId": {"S": "con_a"}, "userId": {"S": "con_a|u"},
                    "status": {"S": "REAUTH_REQUIRED"}, "reauthReason": {"S": "rotation_lost"}, "refreshToken": {"B": "c2VjcmV0"}},
            }
        }))
        .unwrap();
        let event = event_of(&record).expect("a transition");
        assert_eq!(
            event.detail(),
            json!({"eventId": "e-1", "type": "credential.reauthentication_required", "connectionId": "con_a",
                "userId": "con_a|u", "occurredAt": "2027-01-15T08:00:00Z", "reason": "rotation_lost"})
        );
        // Items of other kinds make no event.
        let other: StreamRecord = serde_json::from_value(json!({
            "eventID": "e-2", "eventName": "INSERT",
            "dynamodb": {"NewImage": {"pk": {"S": "AUDIT#3"}, "status": {"S": "ACTIVE"}}}
        }))
        .unwrap();
        assert!(event_of(&other).is_none());
    }
}
