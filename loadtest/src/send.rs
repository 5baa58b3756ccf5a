//! How values reach the service: `raw` fixed requests (to measure the server alone), in JSON or
//! in the API's Arrow form, or through the client crate (what pipelines get: dedup, batching,
//! retries).

use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_ipc::writer::StreamWriter;
use bytes::Bytes;
use pseudonym_client::wire::{BodyText, Items, PseudonymizeRequest};
use pseudonym_client::{Client, Mode, RetryPolicy};

use crate::data;

/// What one send was, for the statistics.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// Values in it.
    pub values: usize,
    /// Units sent: HTTP requests (raw) or partitions (client).
    pub requests: usize,
}

/// Why a send failed, by kind (the report counts them).
pub type ErrorKind = String;

/// The way values are sent.
#[derive(Clone)]
pub enum Sender {
    /// Pre-encoded bodies of `batch_size` values, cycled; a send is one HTTP request.
    Raw(Arc<RawSender>),
    /// The client crate; a send is one partition (deduplicated, cut into batches).
    Client {
        /// The client.
        client: Client,
        /// Values in a partition.
        partition: usize,
        /// Distinct values in the data.
        cardinality: u64,
        /// Domain and mode.
        domain: String,
        /// Mode.
        mode: Mode,
    },
}

/// The raw sender's fixed requests.
pub struct RawSender {
    http: reqwest::Client,
    url: String,
    api_key: String,
    content_type: &'static str,
    bodies: Vec<Bytes>,
    batch_size: usize,
}

/// The form of the raw sender's bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `{"domain", "mode", "values"}`.
    Json,
    /// An Arrow IPC stream of one `Utf8` column, the domain and mode in the query.
    Arrow,
}

impl Form {
    fn body(self, domain: &str, mode: Mode, values: &[String]) -> anyhow::Result<Bytes> {
        match self {
            Form::Json => {
                let request: PseudonymizeRequest<'_, Items<'_>> = PseudonymizeRequest {
                    domain: BodyText::from(domain),
                    mode,
                    values: values
                        .iter()
                        .map(|v| Some(BodyText::from(v.as_str())))
                        .collect(),
                };
                Ok(serde_json::to_vec(&request).map(Bytes::from)?)
            }
            Form::Arrow => {
                let column = StringArray::from_iter_values(values);
                let batch = RecordBatch::try_from_iter([("values", Arc::new(column) as ArrayRef)])?;
                let mut writer = StreamWriter::try_new(Vec::new(), &batch.schema())?;
                writer.write(&batch)?;
                writer.finish()?;
                Ok(Bytes::from(writer.into_inner()?))
            }
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Form::Json => "application/json",
            Form::Arrow => pseudonym_client::wire::ARROW_STREAM,
        }
    }
}

/// Settings shared by both ways of sending.
pub struct SenderSettings<'a> {
    /// Service URL.
    pub url: &'a str,
    /// API key.
    pub api_key: &'a str,
    /// PEM CA certificates to trust for an https URL.
    pub root_certificates: Option<&'a [u8]>,
    /// Domain.
    pub domain: &'a str,
    /// Mode.
    pub mode: Mode,
    /// Values per request.
    pub batch_size: usize,
    /// Distinct values in the data.
    pub cardinality: u64,
    /// Requests in flight per partition (client only).
    pub client_in_flight: usize,
    /// Values per partition (client only).
    pub partition: usize,
    /// Attempts after a failed one (client only).
    pub retries: u32,
}

impl Sender {
    /// Raw fixed requests in `form`: 16 different bodies of `batch_size` values, cycled.
    pub fn raw(settings: &SenderSettings<'_>, form: Form) -> anyhow::Result<Sender> {
        let bodies = (0..16u64)
            .map(|k| {
                let values = data::vins(
                    k * settings.batch_size as u64,
                    settings.batch_size,
                    settings.cardinality,
                );
                form.body(settings.domain, settings.mode, &values)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30));
        for certificate in
            reqwest::Certificate::from_pem_bundle(settings.root_certificates.unwrap_or_default())?
        {
            http = http.add_root_certificate(certificate);
        }
        let http = http.build()?;
        let mut url = format!("{}/v1/pseudonymize", settings.url.trim_end_matches('/'));
        if form == Form::Arrow {
            let query = format!(
                "?domain={}&mode={}",
                settings.domain,
                settings.mode.as_str()
            );
            url.push_str(&query);
        }
        Ok(Sender::Raw(Arc::new(RawSender {
            http,
            url,
            api_key: settings.api_key.to_owned(),
            content_type: form.content_type(),
            bodies,
            batch_size: settings.batch_size,
        })))
    }

    /// Through the client crate, one partition of `partition` values per send.
    pub fn client(settings: &SenderSettings<'_>) -> anyhow::Result<Sender> {
        let mut client = Client::builder()
            .url(settings.url)
            .api_key(settings.api_key)
            .batch_size(settings.batch_size)
            .max_in_flight(settings.client_in_flight)
            .retry_policy(RetryPolicy {
                max_attempts: settings.retries + 1,
                ..RetryPolicy::default()
            });
        if let Some(pem) = settings.root_certificates {
            client = client.root_certificates_pem(pem);
        }
        let client = client.build()?;
        Ok(Sender::Client {
            client,
            partition: settings.partition,
            cardinality: settings.cardinality,
            domain: settings.domain.to_owned(),
            mode: settings.mode,
        })
    }

    /// Values one send carries.
    pub fn values_per_send(&self) -> usize {
        match self {
            Sender::Raw(raw) => raw.batch_size,
            Sender::Client { partition, .. } => *partition,
        }
    }

    /// Sends unit number `seq`.
    pub async fn send(&self, seq: u64) -> Result<Sent, ErrorKind> {
        match self {
            Sender::Raw(raw) => {
                let body = raw.bodies[(seq % raw.bodies.len() as u64) as usize].clone();
                let response = raw
                    .http
                    .post(&raw.url)
                    .header("content-type", raw.content_type)
                    .header("x-api-key", &raw.api_key)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| kind_of(&e))?;
                let status = response.status();
                response.bytes().await.map_err(|e| kind_of(&e))?;
                if !status.is_success() {
                    return Err(format!("http_{}", status.as_u16()));
                }
                Ok(Sent {
                    values: raw.batch_size,
                    requests: 1,
                })
            }
            Sender::Client {
                client,
                partition,
                cardinality,
                domain,
                mode,
            } => {
                let values = data::vins(seq * *partition as u64, *partition, *cardinality);
                let values: Vec<Option<&str>> = values.iter().map(|v| Some(v.as_str())).collect();
                client
                    .pseudonymize(domain, *mode, &values)
                    .await
                    .map_err(|e| match e {
                        pseudonym_client::Error::Rejected { status, .. } => {
                            format!("http_{status}")
                        }
                        pseudonym_client::Error::RetriesExhausted { last, .. } => {
                            last.to_string().replace(' ', "_")
                        }
                        _ => "client_error".to_owned(),
                    })?;
                Ok(Sent {
                    values: *partition,
                    requests: 1,
                })
            }
        }
    }
}

fn kind_of(error: &reqwest::Error) -> ErrorKind {
    if error.is_timeout() {
        "timeout".into()
    } else if error.is_connect() {
        "connect".into()
    } else {
        "connection_broken".into()
    }
}
