//! Test data in the shape of the AWS sample's dataset generator: `dept_id`, `vin` (17 characters, a
//! chosen number of distinct values), `example_ts`, written to Parquet by DataFusion itself.

use std::path::Path;

use datafusion::common::Result;
use datafusion::prelude::SessionContext;

/// Writes `rows` rows with `cardinality` distinct VINs to the Parquet file `out`.
pub async fn parquet(ctx: &SessionContext, out: &Path, rows: u64, cardinality: u64) -> Result<()> {
    let cardinality = cardinality.max(1);
    let sql = format!(
        "COPY (SELECT CAST(value % 20 AS VARCHAR) AS dept_id, \
                'WVWZZZ1J' || substr(CAST(1000000000 + (value * 7919) % {cardinality} AS VARCHAR), 2) AS vin, \
                to_timestamp(1704067200 + value) AS example_ts \
         FROM range({rows})) TO '{}' STORED AS PARQUET",
        out.to_string_lossy().replace('\'', "''")
    );
    ctx.sql(&sql).await?.collect().await?;
    Ok(())
}
