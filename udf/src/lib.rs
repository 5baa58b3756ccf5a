//! `pseudonym-udf`: pseudonymization inside Apache DataFusion, and the `pseudonym-sql` tool.
//!
//! - [`functions`]: the SQL functions `pseudonymize(value, domain [, mode])`,
//!   `reidentify(token, domain [, on_error])` and `rewrap(token, domain [, on_error])`, async UDFs that send whole record batches through
//!   the client, on an I/O runtime of their own.
//! - [`tables`]: registering Parquet, CSV and JSON files or folders as tables.
//! - [`generate`]: test data in the AWS sample's shape (`dept_id`, `vin`, `example_ts`).

pub mod functions;
pub mod generate;
pub mod tables;

pub use functions::Service;
