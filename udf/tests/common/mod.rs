//! Helpers shared by the SQL tests: a DataFusion session whose functions call a replica, over
//! generated `cars`.
#![allow(dead_code)]

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use datafusion::prelude::{SessionConfig, SessionContext};
use pseudonym_client::Client;
use pseudonym_udf::{Service, generate, tables};

/// A session with the pseudonym functions registered against one service, and a table `cars`
/// of generated rows. Its client's runtime is shut down, without waiting, when it is dropped.
pub struct CarsSession {
    pub ctx: SessionContext,
    io: Option<tokio::runtime::Runtime>,
    _dir: tempfile::TempDir,
}

impl CarsSession {
    /// `rows` generated rows of `distinct` VINs, the functions calling `url` with `api_key`.
    pub async fn start(url: &str, api_key: &str, rows: u64, distinct: u64) -> CarsSession {
        let io = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_batch_size(4096));
        let client = Client::builder()
            .url(url)
            .api_key(api_key)
            .build()
            .expect("client");
        Service::new(client, io.handle().clone()).register(&ctx);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cars.parquet");
        generate::parquet(&ctx, &path, rows, distinct)
            .await
            .expect("generated");
        tables::register(&ctx, "cars", &path)
            .await
            .expect("registered");
        CarsSession {
            ctx,
            io: Some(io),
            _dir: dir,
        }
    }

    /// Runs `sql` (a statement, or a query whose result is not needed).
    pub async fn run(&self, sql: &str) {
        self.ctx
            .sql(sql)
            .await
            .expect("plans")
            .collect()
            .await
            .expect("runs");
    }

    /// The one count `sql` answers.
    pub async fn count(&self, sql: &str) -> i64 {
        let batches = self
            .ctx
            .sql(sql)
            .await
            .expect("plans")
            .collect()
            .await
            .expect("runs");
        batches[0].column(0).as_primitive::<Int64Type>().value(0)
    }
}

impl Drop for CarsSession {
    fn drop(&mut self) {
        if let Some(io) = self.io.take() {
            io.shutdown_background();
        }
    }
}
