//! The table's DynamoDB Stream on moto, read as Lambda's event source mapping would deliver it to
//! credential-events: every record since the table was made, in order, in Lambda's JSON shape
//! (`{"Records": [{"eventID", "eventName", "dynamodb": {"NewImage", "OldImage", ...}}]}`).

use aws_sdk_dynamodbstreams::types::{AttributeValue, ShardIteratorType};
use base64::Engine;
use serde_json::{Value, json};

pub struct StreamReader {
    client: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
}

impl StreamReader {
    pub async fn of(aws: &crate::aws::TestAws) -> Self {
        let described = aws
            .dynamodb
            .describe_table()
            .table_name(&aws.table)
            .send()
            .await
            .expect("describe table");
        let stream_arn = described
            .table
            .and_then(|t| t.latest_stream_arn)
            .expect("the table has a stream");
        let config = aws_sdk_dynamodbstreams::Config::builder()
            .behavior_version(aws_sdk_dynamodbstreams::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodbstreams::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodbstreams::config::Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "credvault-tests",
            ))
            .endpoint_url(&aws.endpoint)
            .build();
        Self {
            client: aws_sdk_dynamodbstreams::Client::from_conf(config),
            stream_arn,
        }
    }

    /// Every record of the stream so far, as Lambda's `Records`.
    pub async fn records(&self) -> Vec<Value> {
        let stream = self
            .client
            .describe_stream()
            .stream_arn(&self.stream_arn)
            .send()
            .await
            .expect("describe stream")
            .stream_description
            .expect("stream description");
        let mut all = Vec::new();
        for shard in stream.shards() {
            let mut iterator = self
                .client
                .get_shard_iterator()
                .stream_arn(&self.stream_arn)
                .shard_id(shard.shard_id().unwrap_or_default())
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .expect("shard iterator")
                .shard_iterator;
            while let Some(current) = iterator {
                let out = self
                    .client
                    .get_records()
                    .shard_iterator(current)
                    .limit(1000)
                    .send()
                    .await
                    .expect("get records");
                let records = out.records();
                if records.is_empty() {
                    break;
                }
                all.extend(records.iter().map(lambda_record));
                iterator = out.next_shard_iterator;
            }
        }
        all
    }
}

fn lambda_record(record: &aws_sdk_dynamodbstreams::types::Record) -> Value {
    let change = record.dynamodb();
    let image = |image: Option<&std::collections::HashMap<String, AttributeValue>>| {
        image.map(|m| Value::Object(m.iter().map(|(k, v)| (k.clone(), attribute(v))).collect()))
    };
    let mut dynamodb = json!({
        "SequenceNumber": change.and_then(|c| c.sequence_number()),
        "ApproximateCreationDateTime": change
            .and_then(|c| c.approximate_creation_date_time())
            .map(|t| t.secs() as f64),
    });
    if let Some(new) = image(change.and_then(|c| c.new_image.as_ref())) {
        dynamodb["NewImage"] = new;
    }
    if let Some(old) = image(change.and_then(|c| c.old_image.as_ref())) {
        dynamodb["OldImage"] = old;
    }
    json!({
        "eventID": record.event_id(),
        "eventName": record.event_name().map(|n| n.as_str().to_string()),
        "eventSource": "aws:dynamodb",
        "dynamodb": dynamodb,
    })
}

/// DynamoDB's JSON for one attribute value.
fn attribute(value: &AttributeValue) -> Value {
    let b64 =
        |b: &aws_sdk_dynamodbstreams::primitives::Blob| base64::engine::general_purpose::STANDARD.encode(b.as_ref());
    match value {
        AttributeValue::S(s) => json!({"S": s}),
        AttributeValue::N(n) => json!({"N": n}),
        AttributeValue::B(b) => json!({"B": b64(b)}),
        AttributeValue::Bool(b) => json!({"BOOL": b}),
        AttributeValue::Null(n) => json!({"NULL": n}),
        AttributeValue::Ss(list) => json!({"SS": list}),
        AttributeValue::Ns(list) => json!({"NS": list}),
        AttributeValue::Bs(list) => json!({"BS": list.iter().map(b64).collect::<Vec<_>>()}),
        AttributeValue::M(map) => {
            json!({"M": map.iter().map(|(k, v)| (k.clone(), attribute(v))).collect::<serde_json::Map<_, _>>()})
        }
        AttributeValue::L(list) => json!({"L": list.iter().map(attribute).collect::<Vec<_>>()}),
        _ => Value::Null,
    }
}
