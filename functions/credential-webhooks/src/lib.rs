//! credential-webhooks: every lifecycle event on the bus, POSTed to the operator's URL as a signed
//! Standard Webhooks message (only with the template's `WebhookUrl`). The webhook rule puts the
//! events on a queue (`WebhookQueue`) and Lambda hands the function batches of its messages.
//!
//! - The body is `{"type", "timestamp", "data"}`: the event's name, when it happened, and its `detail`
//!   (shared/src/lifecycle.rs) unchanged, so it carries no token or secret either.
//! - `webhook-id` is the event's `eventId`, the same on every delivery of one transition, so a receiver
//!   drops repeats; `webhook-timestamp` is the attempt's time; `webhook-signature` (signature.rs) covers
//!   both and the body's exact bytes.
//! - One attempt per message and invocation. A message not delivered (any answer but 2xx, a timeout, a
//!   refused connection) is reported as a batch item failure and comes back when its visibility timeout
//!   ends, with the same id, until the queue moves it to the dead-letter queue (about a day).
//! - Redirects are not followed (a signed message goes only where the operator pointed it) and the
//!   answer's body is never read.

pub mod signature;

use std::time::Duration;

use lambda_http::lambda_runtime::LambdaEvent;
use secrecy::SecretString;
use serde_json::{Value, json};
use url::Url;

pub use signature::WebhookSigner;

/// How long one delivery may take; the function's timeout (infra/template.yaml) outlasts it.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The Standard Webhooks headers.
pub const ID_HEADER: &str = "webhook-id";
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// Why the function cannot start: it never delivers unsigned, or to an unchecked URL.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("CREDVAULT_WEBHOOK_URL is not a URL")]
    NotAUrl,
    #[error("the webhook URL must be https (http only to a loopback address), without credentials in it")]
    UnsafeUrl,
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("the webhook signing secret could not be read from Secrets Manager")]
    SecretUnavailable(#[source] Box<aws_sdk_secretsmanager::Error>),
    #[error(transparent)]
    WeakSecret(#[from] signature::WeakSecret),
    #[error("the HTTP client could not be built")]
    Http(#[source] reqwest::Error),
}

/// Why one event was not delivered (the invocation fails, and Lambda tries again).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("not a credvault lifecycle event: {0}")]
    NotAnEvent(&'static str),
    #[error("the webhook answered {0}")]
    Refused(u16),
    /// Without the URL: reqwest's message would name it.
    #[error("the webhook could not be reached (timeout: {timeout}, connect: {connect})")]
    Unreachable { timeout: bool, connect: bool },
}

/// The webhook URL, checked: https, and no `user:password@` (a credential in a URL ends up in logs).
/// Plain http only to a loopback address and only with `allow_loopback_http` (the local stack's
/// `CREDVAULT_INSECURE_ALLOW_HTTP_LOOPBACK`): in Lambda, loopback is the runtime API.
pub fn webhook_url(raw: &str, allow_loopback_http: bool) -> Result<Url, SetupError> {
    let url = Url::parse(raw).map_err(|_| SetupError::NotAUrl)?;
    // The scheme and host rule of every URL the vault sends a secret-bearing request to.
    let acceptable = credvault::oauth::provider::is_acceptable_provider_url(raw, allow_loopback_http);
    if !acceptable || !url.username().is_empty() || url.password().is_some() {
        return Err(SetupError::UnsafeUrl);
    }
    Ok(url)
}

/// One message to send: its id, and the exact body bytes that are signed and sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: String,
    pub body: Vec<u8>,
}

impl Webhook {
    /// The message for one EventBridge event of source `credvault`, as a rule hands it to its target.
    pub fn of_event(event: &Value) -> Result<Self, DeliveryError> {
        if event["source"] != credvault::lifecycle::SOURCE {
            return Err(DeliveryError::NotAnEvent("source"));
        }
        let detail = &event["detail"];
        let id = detail["eventId"]
            .as_str()
            .filter(|id| !id.is_empty() && id.len() <= 256)
            .ok_or(DeliveryError::NotAnEvent("detail.eventId"))?;
        let kind = detail["type"]
            .as_str()
            .filter(|kind| Some(*kind) == event["detail-type"].as_str())
            .ok_or(DeliveryError::NotAnEvent("detail.type"))?;
        let body = json!({
            "type": kind,
            "timestamp": detail["occurredAt"],
            "data": detail,
        });
        Ok(Self {
            id: id.to_string(),
            body: body.to_string().into_bytes(),
        })
    }
}

/// Sends signed webhooks to the one configured URL.
#[derive(Debug)]
pub struct WebhookSender {
    http: reqwest::Client,
    url: Url,
    signer: WebhookSigner,
}

impl WebhookSender {
    pub fn new(url: Url, secret: &SecretString) -> Result<Self, SetupError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(DELIVERY_TIMEOUT)
            .connect_timeout(DELIVERY_TIMEOUT)
            .user_agent("credvault-webhooks")
            .build()
            .map_err(SetupError::Http)?;
        Ok(Self {
            http,
            url,
            signer: WebhookSigner::new(secret)?,
        })
    }

    /// From the function's environment: the URL, and the secret read once from Secrets Manager.
    pub async fn from_env() -> Result<Self, SetupError> {
        let url = std::env::var("CREDVAULT_WEBHOOK_URL").map_err(|_| SetupError::Missing("CREDVAULT_WEBHOOK_URL"))?;
        let secret_id = std::env::var("CREDVAULT_WEBHOOK_SECRET_ARN")
            .map_err(|_| SetupError::Missing("CREDVAULT_WEBHOOK_SECRET_ARN"))?;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Ok(endpoint) = std::env::var("CREDVAULT_AWS_ENDPOINT_URL")
            && !endpoint.is_empty()
        {
            loader = loader.endpoint_url(endpoint);
        }
        let sdk = loader.load().await;
        let allow_loopback_http = std::env::var("CREDVAULT_INSECURE_ALLOW_HTTP_LOOPBACK").as_deref() == Ok("true");
        let timeouts = aws_sdk_secretsmanager::config::timeout::TimeoutConfig::builder()
            .operation_timeout(Duration::from_secs(5))
            .build();
        let client = aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::config::Builder::from(&sdk)
                .timeout_config(timeouts)
                .build(),
        );
        let secret = read_secret(&client, &secret_id).await?;
        Self::new(webhook_url(&url, allow_loopback_http)?, &secret)
    }

    /// Signs and POSTs one message; `Ok` only for a 2xx answer.
    pub async fn deliver(&self, webhook: &Webhook, now_secs: i64) -> Result<(), DeliveryError> {
        let signature = self.signer.signature(&webhook.id, now_secs, &webhook.body);
        let answer = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(ID_HEADER, &webhook.id)
            .header(TIMESTAMP_HEADER, now_secs.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(webhook.body.clone())
            .send()
            .await
            .map_err(|error| DeliveryError::Unreachable {
                timeout: error.is_timeout(),
                connect: error.is_connect(),
            })?;
        let status = answer.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(DeliveryError::Refused(status.as_u16()))
        }
    }
}

/// The secret's string value (the template stores `WebhookSecret` there).
pub async fn read_secret(client: &aws_sdk_secretsmanager::Client, secret_id: &str) -> Result<SecretString, SetupError> {
    let value = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|error| SetupError::SecretUnavailable(Box::new(error.into())))?;
    value
        .secret_string()
        .map(|s| SecretString::from(s.to_string()))
        .ok_or(SetupError::Missing("the secret's string value"))
}

/// One batch of queue messages, each an EventBridge event: delivered in order, one attempt each. The
/// answer names the messages to deliver again (`ReportBatchItemFailures`); a message that is not a
/// credvault event is dropped (no retry could make it one) and never signed.
pub async fn handle(sender: &WebhookSender, clock: &dyn credvault::clock::Clock, event: LambdaEvent<Value>) -> Value {
    let records = event.payload["Records"].as_array().cloned().unwrap_or_default();
    let mut failures = Vec::new();
    for record in records {
        let message_id = record["messageId"].as_str().unwrap_or_default().to_string();
        let webhook = serde_json::from_str::<Value>(record["body"].as_str().unwrap_or_default())
            .map_err(|_| DeliveryError::NotAnEvent("body"))
            .and_then(|event| Webhook::of_event(&event));
        let webhook = match webhook {
            Ok(webhook) => webhook,
            Err(error) => {
                tracing::error!(%message_id, %error, "a queue message that is not a lifecycle event; dropped");
                continue;
            }
        };
        match sender.deliver(&webhook, clock.now_secs()).await {
            Ok(()) => tracing::info!(webhook_id = %webhook.id, "webhook delivered"),
            Err(error) => {
                tracing::warn!(webhook_id = %webhook.id, %error, "webhook not delivered; it comes back from the queue");
                failures.push(json!({"itemIdentifier": message_id}));
            }
        }
    }
    json!({"batchItemFailures": failures})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_urls_without_credentials() {
        for ok in [
            "https://hooks.example.com/credvault",
            "http://127.0.0.1:8080/hook",
            "http://localhost:9/x",
            "http://[::1]:80/",
        ] {
            assert!(webhook_url(ok, true).is_ok(), "{ok}");
        }
        assert!(webhook_url("https://hooks.example.com/credvault", false).is_ok());
        assert!(
            webhook_url("http://127.0.0.1:9001/2018-06-01/runtime/invocation/next", false).is_err(),
            "loopback http only when the local stack allows it"
        );
        for bad in [
            "http://hooks.example.com/credvault",
            "http://127.0.0.1.example.com/",
            "https://user:pass@hooks.example.com/",
            "https://token@hooks.example.com/",
            "ftp://hooks.example.com/",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(webhook_url(bad, true).is_err(), "{bad}");
        }
    }

    fn event(detail: Value) -> Value {
        json!({
            "version": "0", "id": "f6c3b1a2", "source": "credvault",
            "detail-type": detail["type"], "detail": detail,
        })
    }

    #[test]
    fn the_body_is_the_detail_under_its_type_and_time() {
        let detail = json!({
            "eventId": "4b1e", "type": "credential.connected", "connectionId": "con_a",
            "userId": "google|1", "occurredAt": "2026-12-02T10:00:00Z", "recovered": false,
        });
        let webhook = Webhook::of_event(&event(detail.clone())).unwrap();
        assert_eq!(webhook.id, "4b1e");
        let body: Value = serde_json::from_slice(&webhook.body).unwrap();
        assert_eq!(
            body,
            json!({"type": "credential.connected", "timestamp": "2026-12-02T10:00:00Z", "data": detail})
        );
    }

    #[test]
    fn events_of_another_source_or_without_an_id_are_refused() {
        let detail = json!({"eventId": "4b1e", "type": "credential.connected"});
        let mut foreign = event(detail.clone());
        foreign["source"] = json!("aws.s3");
        assert!(matches!(
            Webhook::of_event(&foreign),
            Err(DeliveryError::NotAnEvent("source"))
        ));
        let mut no_id = event(detail.clone());
        no_id["detail"]["eventId"] = json!("");
        assert!(Webhook::of_event(&no_id).is_err());
        let mut mismatched = event(detail);
        mismatched["detail-type"] = json!("credential.disconnected");
        assert!(Webhook::of_event(&mismatched).is_err());
    }
}
