//! The API's Arrow form against a real server: the same answers as JSON, index for index,
//! nulls kept, per-item failures in an `error` column, refusals in JSON.

mod common;

use std::io::Cursor;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, Int64Array, LargeStringArray, RecordBatch, StringArray};
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{Field, Schema};
use common::TestServer;
use serde_json::{Value, json};

const ARROW: &str = "application/vnd.apache.arrow.stream";

/// An Arrow IPC stream of one column per batch.
fn stream(batches: &[ArrayRef]) -> Vec<u8> {
    let field = Field::new("values", batches[0].data_type().clone(), true);
    let schema = Arc::new(Schema::new(vec![field]));
    let mut body = Vec::new();
    let mut writer = StreamWriter::try_new(&mut body, &schema).expect("writer");
    for column in batches {
        let batch = RecordBatch::try_new(schema.clone(), vec![column.clone()]).expect("batch");
        writer.write(&batch).expect("written");
    }
    writer.finish().expect("finished");
    drop(writer);
    body
}

/// POSTs an Arrow body; the status, the content type and the body.
async fn post(server: &TestServer, path: &str, key: &str, body: Vec<u8>) -> (u16, String, Vec<u8>) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", server.url))
        .header("content-type", ARROW)
        .header("x-api-key", key)
        .body(body)
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (
        status,
        content_type,
        response.bytes().await.expect("body").to_vec(),
    )
}

/// The one batch of an answer.
fn batch(body: &[u8]) -> RecordBatch {
    let mut reader = StreamReader::try_new(Cursor::new(body), None).expect("an Arrow stream");
    let batch = reader.next().expect("a batch").expect("readable");
    assert!(reader.next().is_none(), "one batch");
    batch
}

fn strings(column: &ArrayRef) -> Vec<Option<String>> {
    column
        .as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn arrow_answers_are_the_json_answers_index_for_index() {
    let server = TestServer::start(|_| {}).await;
    let admin = server.keys.admin.clone();
    let first: ArrayRef = Arc::new(StringArray::from(vec![
        Some("WVWZZZ1JZXW000001"),
        None,
        Some(""),
    ]));
    let second: ArrayRef = Arc::new(StringArray::from(vec![
        Some("ünï ✓"),
        Some("WVWZZZ1JZXW000001"),
    ]));
    let values = json!(["WVWZZZ1JZXW000001", null, "", "ünï ✓", "WVWZZZ1JZXW000001"]);

    let (status, content_type, body) = post(
        &server,
        "/v1/pseudonymize?domain=vin",
        &admin,
        stream(&[first, second]),
    )
    .await;
    assert_eq!((status, content_type.as_str()), (200, ARROW));
    let answer = batch(&body);
    assert_eq!(answer.schema().metadata()["key_version"], "1");
    let pseudonyms = strings(answer.column_by_name("pseudonyms").expect("pseudonyms"));
    let (_, json_answer) = server
        .post(
            "/v1/pseudonymize",
            Some(&admin),
            json!({"domain": "vin", "values": values}),
        )
        .await;
    let expected: Vec<Option<String>> =
        serde_json::from_value(json_answer["pseudonyms"].clone()).expect("pseudonyms");
    assert_eq!(pseudonyms, expected);

    // Back, as LargeUtf8, with a forged token and a null in between.
    let mut tokens: Vec<Option<String>> = pseudonyms.clone();
    tokens.insert(1, Some("d1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned()));
    let column: ArrayRef = Arc::new(LargeStringArray::from(tokens.clone()));
    let (status, _, body) = post(
        &server,
        "/v1/reidentify?domain=vin",
        &admin,
        stream(std::slice::from_ref(&column)),
    )
    .await;
    assert_eq!(status, 200);
    let answer = batch(&body);
    let back = strings(answer.column_by_name("values").expect("values"));
    let errors = strings(answer.column_by_name("error").expect("error"));
    let mut expected: Vec<Option<String>> = serde_json::from_value(values).expect("values");
    expected.insert(1, None);
    assert_eq!(back, expected);
    let failed: Vec<usize> = errors
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.as_ref().map(|_| i))
        .collect();
    assert_eq!(failed, [1]);
    assert_eq!(errors[1].as_deref(), Some("invalid_token"));

    let (status, _, body) = post(&server, "/v1/rewrap?domain=vin", &admin, stream(&[column])).await;
    assert_eq!(status, 200);
    let answer = batch(&body);
    let rewrapped = strings(answer.column_by_name("pseudonyms").expect("pseudonyms"));
    assert_eq!(
        rewrapped[0], tokens[0],
        "a deterministic token of the primary version stays"
    );
    assert_eq!(rewrapped[1], None);
    assert_eq!(
        answer.column_by_name("error").expect("error").null_count(),
        5
    );
}

#[tokio::test]
async fn arrow_requests_are_refused_in_json_as_json_ones_are() {
    let server = TestServer::start(|config| config.limits.max_values = 3).await;
    let admin = server.keys.admin.clone();
    let writer = server.keys.writer.clone();
    let values: ArrayRef = Arc::new(StringArray::from(vec!["a", "b"]));
    let code = |body: &[u8]| -> String {
        let body: Value = serde_json::from_slice(body).expect("a JSON refusal");
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "/v1/pseudonymize?domain=vin",
            &admin,
            b"not arrow".to_vec(),
            400,
            "invalid_argument",
        ),
        (
            "/v1/pseudonymize",
            &admin,
            stream(std::slice::from_ref(&values)),
            400,
            "invalid_argument",
        ),
        (
            "/v1/pseudonymize?domain=VIN!",
            &admin,
            stream(std::slice::from_ref(&values)),
            400,
            "invalid_argument",
        ),
        (
            "/v1/pseudonymize?domain=vin&mode=rot13",
            &admin,
            stream(std::slice::from_ref(&values)),
            400,
            "invalid_argument",
        ),
        (
            "/v1/pseudonymize?domain=vin",
            &admin,
            stream(&[Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef]),
            400,
            "invalid_argument",
        ),
        (
            "/v1/pseudonymize?domain=vin",
            &admin,
            stream(&[values.clone(), values.clone()]),
            413,
            "too_many_values",
        ),
        (
            "/v1/reidentify?domain=vin",
            &writer,
            stream(std::slice::from_ref(&values)),
            403,
            "forbidden",
        ),
        (
            "/v1/pseudonymize?domain=vin",
            "pk_unknown",
            stream(&[values]),
            401,
            "unauthorized",
        ),
    ];
    for (path, key, body, status, expected) in cases {
        let (got, content_type, answer) = post(&server, path, key, body).await;
        assert_eq!((got, code(&answer).as_str()), (status, expected), "{path}");
        assert!(
            content_type.starts_with("application/json"),
            "{path}: {content_type}"
        );
    }
}
