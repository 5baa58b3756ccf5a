//! The HTTP API against a real server on 127.0.0.1.

mod common;

use std::collections::HashMap;

use common::TestServer;
use serde_json::{Value, json};

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

#[tokio::test]
async fn requests_without_a_known_key_are_unauthorized() {
    let server = TestServer::start(|_| {}).await;
    let body = json!({"domain": "vin", "values": ["a"]});
    let (status, answer) = server.post("/v1/pseudonymize", None, body.clone()).await;
    assert_eq!((status, code(&answer)), (401, "unauthorized"));
    let (status, _) = server
        .post("/v1/pseudonymize", Some("pk_unknown"), body.clone())
        .await;
    assert_eq!(status, 401);

    let response = reqwest::Client::new()
        .post(format!("{}/v1/pseudonymize", server.url))
        .bearer_auth(&server.keys.admin)
        .json(&body)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200, "Bearer credentials work too");
}

#[tokio::test]
async fn keys_are_limited_to_their_operations_and_domains() {
    let server = TestServer::start(|_| {}).await;
    let writer = Some(server.keys.writer.as_str());
    let (status, answer) = server
        .post(
            "/v1/pseudonymize",
            writer,
            json!({"domain": "vin", "values": ["a"]}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let token = answer["pseudonyms"][0].clone();

    let (status, answer) = server
        .post(
            "/v1/reidentify",
            writer,
            json!({"domain": "vin", "pseudonyms": [token]}),
        )
        .await;
    assert_eq!((status, code(&answer)), (403, "forbidden"));
    let (status, answer) = server
        .post(
            "/v1/pseudonymize",
            writer,
            json!({"domain": "email", "values": ["a"]}),
        )
        .await;
    assert_eq!((status, code(&answer)), (403, "forbidden"));
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let server = TestServer::start(|config| config.limits.max_values = 100).await;
    let admin = Some(server.keys.admin.as_str());

    let (status, answer) = server
        .post_raw(
            "/v1/pseudonymize",
            admin,
            "{\"domain\": \"vin\", \"values\": [".into(),
        )
        .await;
    assert_eq!((status, code(&answer)), (400, "bad_json"));

    let (status, answer) = server
        .post(
            "/v1/pseudonymize",
            admin,
            json!({"domain": "VIN!", "values": ["a"]}),
        )
        .await;
    assert_eq!((status, code(&answer)), (400, "invalid_argument"));

    let (status, answer) = server
        .post(
            "/v1/pseudonymize",
            admin,
            json!({"domain": "vin", "mode": "rot13", "values": []}),
        )
        .await;
    assert_eq!((status, code(&answer)), (400, "bad_json"));

    let values = vec!["v"; 101];
    let (status, answer) = server
        .post(
            "/v1/pseudonymize",
            admin,
            json!({"domain": "vin", "values": values}),
        )
        .await;
    assert_eq!((status, code(&answer)), (413, "too_many_values"));

    let long = "x".repeat(5000);
    let (status, answer) = server
        .post(
            "/v1/pseudonymize",
            admin,
            json!({"domain": "vin", "values": ["ok", long]}),
        )
        .await;
    assert_eq!((status, code(&answer)), (422, "value_too_long"));
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("item 1"))
    );

    let (status, answer) = server.post("/v2/nothing", admin, json!({})).await;
    assert_eq!((status, code(&answer)), (404, "not_found"));
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let server = TestServer::start(|config| config.limits.max_body_bytes = 1024).await;
    let values = vec!["WVWZZZ1JZXW000001"; 100];
    let (status, answer) = server
        .post(
            "/v1/pseudonymize",
            Some(&server.keys.admin),
            json!({"domain": "vin", "values": values}),
        )
        .await;
    assert_eq!((status, code(&answer)), (413, "body_too_large"));
}

#[tokio::test]
async fn a_mixed_batch_reports_failures_per_item() {
    let server = TestServer::start(|_| {}).await;
    let admin = Some(server.keys.admin.as_str());
    let (_, made) = server
        .post(
            "/v1/pseudonymize",
            admin,
            json!({"domain": "vin", "values": ["first", "second"]}),
        )
        .await;
    let (_, hashed) = server
        .post(
            "/v1/pseudonymize",
            admin,
            json!({"domain": "vin", "mode": "hash", "values": ["h"]}),
        )
        .await;
    let pseudonyms = json!([
        made["pseudonyms"][0],
        "d1.bm90LWEtdG9rZW4",
        null,
        "d9.AAAAAAAAAAAAAAAAAAAAAA",
        hashed["pseudonyms"][0],
        "garbage",
        made["pseudonyms"][1],
    ]);
    let (status, answer) = server
        .post(
            "/v1/reidentify",
            admin,
            json!({"domain": "vin", "pseudonyms": pseudonyms}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!({
            "values": ["first", null, null, null, null, null, "second"],
            "errors": [
                {"index": 1, "code": "invalid_token"},
                {"index": 3, "code": "unknown_key_version"},
                {"index": 4, "code": "not_reversible"},
                {"index": 5, "code": "invalid_token"},
            ]
        })
    );
}

/// Answers are written without `serde_json` where nothing needs escaping: values that do need
/// it (quotes, backslashes, control characters) come back as they went, on every route.
#[tokio::test]
async fn values_that_json_escapes_come_back_as_they_went() {
    let server = TestServer::start(|_| {}).await;
    let admin = Some(server.keys.admin.as_str());
    let values = json!([
        "say \"hi\"",
        null,
        "C:\\dir",
        "line\nbreak\t\u{1}",
        "ünï ✓",
        ""
    ]);
    let (_, made) = server
        .post(
            "/v1/pseudonymize",
            admin,
            json!({"domain": "default", "values": values}),
        )
        .await;
    let (status, back) = server
        .post(
            "/v1/reidentify",
            admin,
            json!({"domain": "default", "pseudonyms": made["pseudonyms"]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(back, json!({"values": values, "errors": []}));
    let (status, back) = server
        .post(
            "/reidentification",
            admin,
            json!({"pseudonyms": made["pseudonyms"]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(back, json!({"identifiers": values}));
}

#[tokio::test]
async fn a_10000_value_batch_keeps_order_and_nulls() {
    let server = TestServer::start(|_| {}).await;
    let admin = Some(server.keys.admin.as_str());
    let values: Vec<Option<String>> = (0..10_000)
        .map(|i| (i % 7 != 3).then(|| format!("VIN{i:014}")))
        .collect();
    let (status, made) = server
        .post(
            "/v1/pseudonymize",
            admin,
            json!({"domain": "vin", "values": values}),
        )
        .await;
    assert_eq!(status, 200);
    let pseudonyms = made["pseudonyms"].as_array().expect("list");
    assert_eq!(pseudonyms.len(), values.len());
    for (value, pseudonym) in values.iter().zip(pseudonyms) {
        assert_eq!(value.is_none(), pseudonym.is_null());
    }
    let (status, back) = server
        .post(
            "/v1/reidentify",
            admin,
            json!({"domain": "vin", "pseudonyms": pseudonyms}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(back["values"], json!(values));
    assert_eq!(back["errors"], json!([]));

    // The crypto runs a slice at a time: failures past the first slices keep their own index,
    // in re-identification and in rewrap alike.
    let mut tampered = pseudonyms.clone();
    for index in [5, 1_500, 9_999] {
        tampered[index] = json!("d1.forged");
    }
    let expected = json!([
        {"index": 5, "code": "invalid_token"},
        {"index": 1500, "code": "invalid_token"},
        {"index": 9999, "code": "invalid_token"},
    ]);
    for (route, answers) in [("/v1/reidentify", "values"), ("/v1/rewrap", "pseudonyms")] {
        let (status, answer) = server
            .post(
                route,
                admin,
                json!({"domain": "vin", "pseudonyms": tampered}),
            )
            .await;
        assert_eq!(status, 200, "{route}");
        assert_eq!(answer["errors"], expected, "{route}");
        let answers = answer[answers].as_array().expect("list");
        assert_eq!(answers.len(), values.len());
        for (index, (answer, value)) in answers.iter().zip(&values).enumerate() {
            let failed = [5, 1_500, 9_999].contains(&index);
            assert_eq!(
                answer.is_null(),
                failed || value.is_none(),
                "{route} {index}"
            );
            if route == "/v1/reidentify" && !failed {
                assert_eq!(answer, &json!(value), "slices come back in order");
            }
        }
    }
}

#[tokio::test]
async fn routes_of_the_replaced_service_still_work() {
    let server = TestServer::start(|config| config.compat_domain = "vin".into()).await;
    let admin = Some(server.keys.admin.as_str());
    let (status, det) = server
        .post(
            "/pseudonymization?deterministic=true",
            admin,
            json!({"identifiers": ["a", "a", null]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(det["pseudonyms"][0], det["pseudonyms"][1]);
    assert_eq!(det["pseudonyms"][2], Value::Null);
    let (_, v1) = server
        .post(
            "/v1/pseudonymize",
            admin,
            json!({"domain": "vin", "values": ["a"]}),
        )
        .await;
    assert_eq!(
        det["pseudonyms"][0], v1["pseudonyms"][0],
        "compat uses its configured domain"
    );

    let (_, rand) = server
        .post(
            "/pseudonymization?deterministic=false",
            admin,
            json!({"identifiers": ["a", "a"]}),
        )
        .await;
    assert_ne!(rand["pseudonyms"][0], rand["pseudonyms"][1]);

    let tokens = json!([det["pseudonyms"][0], rand["pseudonyms"][1], "bad"]);
    let (status, back) = server
        .post("/reidentification", admin, json!({"pseudonyms": tokens}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(back, json!({"identifiers": ["a", "a", null]}));
}

#[tokio::test]
async fn operations_routes_answer() {
    let server = TestServer::start(|_| {}).await;
    assert_eq!(server.get("/healthz").await.0, 200);
    let (status, ready) = server.get("/readyz").await;
    assert_eq!(status, 200);
    let mut ready: Value = serde_json::from_str(&ready).expect("JSON");
    let fingerprint = ready["key_fingerprints"]["1"]
        .as_str()
        .expect("a fingerprint");
    assert!(
        fingerprint.len() == 16 && fingerprint.bytes().all(|b| b.is_ascii_hexdigit()),
        "{fingerprint}"
    );
    ready
        .as_object_mut()
        .expect("object")
        .remove("key_fingerprints");
    assert_eq!(
        ready,
        json!({
            "status": "ready",
            "primary_key_version": 1,
            "key_versions": [1],
            "lambda_key": false,
            "seed_key": false,
            "pinned_key_versions": {},
            "tink_domains": []
        })
    );

    server
        .post(
            "/v1/pseudonymize",
            Some(&server.keys.admin),
            json!({"domain": "vin", "values": ["a", null, "b"]}),
        )
        .await;
    server.post("/v1/pseudonymize", None, json!({})).await;
    let (status, metrics) = server.get("/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "pseudonym_http_requests_total{route=\"/v1/pseudonymize\",status=\"200\"} 1",
        "pseudonym_http_requests_total{route=\"/v1/pseudonymize\",status=\"401\"} 1",
        "pseudonym_values_total{operation=\"pseudonymize\",mode=\"deterministic\"} 2",
        "pseudonym_errors_total{code=\"unauthorized\"} 1",
        "pseudonym_primary_key_version 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

#[tokio::test]
async fn beyond_the_concurrency_limit_requests_are_shed_at_once_with_retry_after() {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::start(|config| config.limits.max_concurrent_requests = 1).await;
    // A request whose body never finishes holds the only slot.
    let address = server.url.trim_start_matches("http://");
    let mut holder = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let head = format!(
        "POST /v1/pseudonymize HTTP/1.1\r\nhost: x\r\nx-api-key: {}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"domain\":",
        server.keys.admin
    );
    holder.write_all(head.as_bytes()).await.expect("write");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    // Answered while the slot is still held: shed, not queued (a queued request could only
    // end in the request timeout, code `timeout`, since the holder is released after this).
    let response = reqwest::Client::new()
        .post(format!("{}/v1/pseudonymize", server.url))
        .header("x-api-key", &server.keys.admin)
        .json(&json!({"domain": "vin", "values": ["a"]}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(code(&body), "overloaded");
    assert_eq!(
        server.get("/healthz").await.0,
        200,
        "health checks are never shed"
    );

    drop(holder);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (status, _) = server
        .post(
            "/v1/pseudonymize",
            Some(&server.keys.admin),
            json!({"domain": "vin", "values": ["a"]}),
        )
        .await;
    assert_eq!(status, 200, "the slot is free again");
}

/// Found in review: `/metrics` shows anyone how much is re-identified, by whom and when. It can
/// require an API key.
#[tokio::test]
async fn metrics_can_require_an_api_key() {
    let server = TestServer::start(|config| config.metrics_require_api_key = true).await;
    assert_eq!(server.get("/metrics").await.0, 401);
    let answer = reqwest::Client::new()
        .get(format!("{}/metrics", server.url))
        .header("x-api-key", &server.keys.writer)
        .send()
        .await
        .expect("answered");
    assert_eq!(answer.status().as_u16(), 200);
    assert_eq!(server.get("/healthz").await.0, 200, "health stays open");
}

/// The served document is the generated one; every route it lists is served (with `{stage}`
/// as `Dev`), a route it does not list is not, and what the handlers answer has the documented
/// shape: every required property, and no property the schema does not name.
#[tokio::test]
async fn the_api_document_lists_every_route_and_the_shapes_they_answer() {
    let server = TestServer::start(|_| {}).await;
    let (status, served) = server.get("/openapi.json").await;
    assert_eq!(status, 200);
    let document: Value = serde_json::from_str(&served).expect("OpenAPI is JSON");
    let generated = pseudonym_service::api::document()
        .to_json()
        .expect("serializes");
    assert_eq!(
        document,
        serde_json::from_str::<Value>(&generated).expect("JSON")
    );
    assert_eq!(document["openapi"], "3.1.0");

    let admin = server.keys.admin.clone();
    let bodies = [
        (
            "/v1/pseudonymize",
            json!({"domain": "vin", "values": ["a", null]}),
        ),
        ("/pseudonymization", json!({"identifiers": ["a", null]})),
        ("/{stage}/pseudonymization", json!({"identifiers": ["a"]})),
    ];
    let mut tokens = HashMap::new();
    for (route, body) in &bodies {
        let (status, answer) = server
            .post(&route.replace("{stage}", "Dev"), Some(&admin), body.clone())
            .await;
        assert_eq!(status, 200, "{route}");
        tokens.insert(*route, answer);
    }
    let v1_token = tokens["/v1/pseudonymize"]["pseudonyms"][0].clone();
    let compat_token = tokens["/pseudonymization"]["pseudonyms"][0].clone();
    let requests = [
        (
            "/v1/reidentify",
            json!({"domain": "vin", "pseudonyms": [v1_token, "x"]}),
        ),
        (
            "/v1/rewrap",
            json!({"domain": "vin", "pseudonyms": [v1_token]}),
        ),
        ("/reidentification", json!({"pseudonyms": [compat_token]})),
        (
            "/{stage}/reidentification",
            json!({"pseudonyms": [compat_token]}),
        ),
    ];
    let mut answered: Vec<(&str, Value)> = tokens.into_iter().collect();
    for (route, body) in requests {
        let (status, answer) = server
            .post(&route.replace("{stage}", "Dev"), Some(&admin), body)
            .await;
        assert_eq!(status, 200, "{route}");
        answered.push((route, answer));
    }
    let (_, refused) = server.post("/v1/pseudonymize", None, json!({})).await;

    let paths = document["paths"].as_object().expect("paths");
    let posted: Vec<&str> = answered.iter().map(|(route, _)| *route).collect();
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("path item") {
            let url = format!("{}{}", server.url, path.replace("{stage}", "Dev"));
            let status = match method.as_str() {
                "get" => reqwest::get(&url).await.expect("sent").status().as_u16(),
                "post" => {
                    assert!(posted.contains(&path.as_str()), "{path} is exercised above");
                    let refused = &operation["responses"]["401"];
                    assert!(
                        refused.get("$ref").is_some(),
                        "{path} documents its refusals"
                    );
                    200
                }
                other => panic!("{path}: unexpected method {other}"),
            };
            assert!(
                status != 404 && status != 405,
                "{method} {path} is served: {status}"
            );
        }
    }
    for (route, answer) in &answered {
        let schema =
            &paths[*route]["post"]["responses"]["200"]["content"]["application/json"]["schema"];
        assert_shape(&document, schema, answer, route);
    }
    let error_body = json!({"$ref": "#/components/schemas/ErrorBody"});
    assert_shape(&document, &error_body, &refused, "a refusal");
    assert_eq!(server.get("/v2/pseudonymize").await.0, 404);
}

/// `value` has every property `schema` requires and none it does not name, down through
/// objects (references followed) and arrays.
fn assert_shape(document: &Value, schema: &Value, value: &Value, at: &str) {
    let schema = match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/schemas/");
            &document["components"]["schemas"][name]
        }
        None => schema,
    };
    match value {
        Value::Object(fields) => {
            let properties = schema["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("{at}: no properties in {schema}"));
            for name in fields.keys() {
                assert!(
                    properties.contains_key(name),
                    "{at}: {name} is not documented"
                );
                assert_shape(
                    document,
                    &properties[name],
                    &fields[name],
                    &format!("{at}.{name}"),
                );
            }
            for required in schema["required"].as_array().into_iter().flatten() {
                let required = required.as_str().expect("a name");
                assert!(fields.contains_key(required), "{at}: {required} is missing");
            }
        }
        Value::Array(items) => {
            for item in items {
                assert_shape(document, &schema["items"], item, &format!("{at}[]"));
            }
        }
        _ => {}
    }
}
