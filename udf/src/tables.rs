//! Files and folders as SQL tables: the format comes from the extension (of the file, or of the
//! files in the folder): `.parquet`, `.csv`, `.json` / `.ndjson` (one JSON object per line).

use std::path::Path;

use datafusion::common::{DataFusionError, Result};
use datafusion::prelude::{CsvReadOptions, JsonReadOptions, ParquetReadOptions, SessionContext};

/// A table's file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Apache Parquet.
    Parquet,
    /// CSV with a header row.
    Csv,
    /// Newline-delimited JSON.
    Json,
}

impl Format {
    /// The format of a file name, by extension.
    pub fn of(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "parquet" => Some(Format::Parquet),
            "csv" => Some(Format::Csv),
            "json" | "ndjson" | "jsonl" => Some(Format::Json),
            _ => None,
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Format::Parquet => ".parquet",
            Format::Csv => ".csv",
            Format::Json => ".json",
        }
    }
}

/// Registers `path` (a file, or a folder of files of one format) as table `name`.
pub async fn register(ctx: &SessionContext, name: &str, path: &Path) -> Result<Format> {
    let not_found =
        || DataFusionError::Plan(format!("table {name}: {} does not exist", path.display()));
    let format = if path.is_dir() {
        std::fs::read_dir(path)
            .map_err(|_| not_found())?
            .filter_map(|entry| Format::of(&entry.ok()?.path()))
            .next()
            .ok_or_else(|| {
                DataFusionError::Plan(format!(
                    "table {name}: no .parquet, .csv or .json files in {}",
                    path.display()
                ))
            })?
    } else if path.is_file() {
        Format::of(path).ok_or_else(|| {
            DataFusionError::Plan(format!(
                "table {name}: {} is not .parquet, .csv or .json",
                path.display()
            ))
        })?
    } else {
        return Err(not_found());
    };
    let location = path.to_string_lossy();
    match format {
        Format::Parquet => {
            let options = ParquetReadOptions::default().file_extension(format.extension());
            ctx.register_parquet(name, location.as_ref(), options)
                .await?
        }
        Format::Csv => {
            let options = CsvReadOptions::new().file_extension(format.extension());
            ctx.register_csv(name, location.as_ref(), options).await?
        }
        Format::Json => {
            let extension = if path.is_file() {
                path.extension()
                    .and_then(|e| e.to_str())
                    .map(|e| format!(".{e}"))
            } else {
                None
            };
            let mut options = JsonReadOptions::default();
            if let Some(extension) = &extension {
                options = options.file_extension(extension);
            }
            ctx.register_json(name, location.as_ref(), options).await?
        }
    }
    Ok(format)
}
