//! The SQL functions `pseudonymize(value, domain [, mode])`,
//! `reidentify(token, domain [, on_error])` and `rewrap(token, domain [, on_error])`, as
//! DataFusion async scalar UDFs.
//!
//! Each invocation sends the whole record batch's column through the client (deduplicated,
//! batched, pipelined), so a query makes one set of service calls per record batch, never one
//! per row. The calls run on a separate I/O runtime, never on the engine's CPU threads.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DataFusionError, Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;
use pseudonym_client::wire::is_valid_domain;
use pseudonym_client::{Client, Mode};
use tokio::runtime::Handle;

/// What the functions share: the client, the runtime its I/O runs on, and a counter of values
/// sent (for progress displays).
#[derive(Debug, Clone)]
pub struct Service {
    client: Client,
    io: Handle,
    values: Arc<AtomicU64>,
}

impl Service {
    /// Functions that call the service through `client`, with network I/O on `io`: a runtime
    /// other than the one DataFusion runs its CPU work on.
    pub fn new(client: Client, io: Handle) -> Self {
        Service {
            client,
            io,
            values: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Registers `pseudonymize`, `reidentify` and `rewrap` in `ctx`.
    pub fn register(&self, ctx: &SessionContext) {
        for operation in [
            Operation::Pseudonymize,
            Operation::Reidentify,
            Operation::Rewrap,
        ] {
            ctx.register_udf(self.udf(operation));
        }
    }

    /// Rows the functions have handed to the client so far.
    pub fn values_sent(&self) -> u64 {
        self.values.load(Ordering::Relaxed)
    }

    fn udf(&self, operation: Operation) -> ScalarUDF {
        let function = ServiceFunction {
            operation,
            service: self.clone(),
            signature: Signature::one_of(
                vec![TypeSignature::Any(2), TypeSignature::Any(3)],
                // The answer comes from outside the engine: never fold it into a constant.
                Volatility::Volatile,
            ),
        };
        AsyncScalarUDF::new(Arc::new(function)).into_scalar_udf()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Operation {
    Pseudonymize,
    Reidentify,
    /// Tokens of older key versions (or of the replaced service) to tokens of the primary one.
    Rewrap,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::Pseudonymize => "pseudonymize",
            Operation::Reidentify => "reidentify",
            Operation::Rewrap => "rewrap",
        }
    }

    /// What happened to a token that failed, for error messages.
    fn failed(self) -> &'static str {
        match self {
            Operation::Pseudonymize => "pseudonymized",
            Operation::Reidentify => "re-identified",
            Operation::Rewrap => "rewrapped",
        }
    }
}

/// What to do with a pseudonym that cannot be re-identified or rewrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnError {
    Fail,
    Null,
}

/// The literal arguments after the first, checked.
struct Literals<'a> {
    domain: &'a str,
    mode: Mode,
    on_error: OnError,
}

#[derive(Debug)]
struct ServiceFunction {
    operation: Operation,
    service: Service,
    signature: Signature,
}

impl PartialEq for ServiceFunction {
    fn eq(&self, other: &Self) -> bool {
        self.operation == other.operation
    }
}

impl Eq for ServiceFunction {}

impl Hash for ServiceFunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.operation.hash(state);
    }
}

impl ServiceFunction {
    /// Checks the literal arguments: the domain always, then the mode (`pseudonymize`) or what
    /// to do on failure (`reidentify`, `rewrap`).
    fn literals<'a>(&self, scalars: &[Option<&'a ScalarValue>]) -> Result<Literals<'a>> {
        let name = self.operation.name();
        let text = |index: usize, what: &str| -> Result<&'a str> {
            match scalars.get(index).copied().flatten() {
                Some(ScalarValue::Utf8(Some(s)))
                | Some(ScalarValue::LargeUtf8(Some(s)))
                | Some(ScalarValue::Utf8View(Some(s))) => Ok(s.as_str()),
                _ => plan_err!(
                    "{name}: argument {} ({what}) must be a string literal",
                    index + 1
                ),
            }
        };
        let domain = text(1, "domain")?;
        if !is_valid_domain(domain) {
            return plan_err!(
                "{name}: the domain must be 1 to 64 characters of a-z, 0-9, '.', '_' or '-'"
            );
        }
        let mut literals = Literals {
            domain,
            mode: Mode::Deterministic,
            on_error: OnError::Fail,
        };
        if scalars.len() == 3 {
            match self.operation {
                Operation::Pseudonymize => {
                    literals.mode = text(2, "mode")?
                        .parse()
                        .map_err(|e| DataFusionError::Plan(format!("{name}: {e}")))?;
                }
                Operation::Reidentify | Operation::Rewrap => {
                    literals.on_error = match text(2, "on_error")? {
                        "error" => OnError::Fail,
                        "null" => OnError::Null,
                        _ => return plan_err!("{name}: on_error must be 'error' or 'null'"),
                    };
                }
            }
        }
        Ok(literals)
    }
}

impl ScalarUDFImpl for ServiceFunction {
    fn name(&self) -> &str {
        self.operation.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        datafusion::common::internal_err!("{}: return_field_from_args is used", self.name())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let literals = self.literals(args.scalar_arguments)?;
        let input = args.arg_fields[0].data_type();
        let mode = match self.operation {
            Operation::Pseudonymize => literals.mode,
            Operation::Reidentify | Operation::Rewrap => Mode::Deterministic,
        };
        let output = match input {
            DataType::Null => DataType::Utf8,
            other => pseudonym_client::arrow::output_type(other, mode)
                .map_err(|e| DataFusionError::Plan(format!("{}: {e}", self.name())))?,
        };
        Ok(Arc::new(Field::new(self.name(), output, true)))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!("{} runs asynchronously only", self.name())
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for ServiceFunction {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = self.name();
        let scalars: Vec<Option<&ScalarValue>> = args
            .args
            .iter()
            .map(|arg| match arg {
                ColumnarValue::Scalar(scalar) => Some(scalar),
                ColumnarValue::Array(_) => None,
            })
            .collect();
        let literals = self.literals(&scalars)?;
        let input: ArrayRef = match &args.args[0] {
            ColumnarValue::Array(array) => array.clone(),
            ColumnarValue::Scalar(scalar) => scalar.to_array_of_size(args.number_rows)?,
        };
        if input.data_type() == &DataType::Null {
            let nulls = datafusion::arrow::array::new_null_array(&DataType::Utf8, input.len());
            return Ok(ColumnarValue::Array(nulls));
        }
        self.service
            .values
            .fetch_add(input.len() as u64, Ordering::Relaxed);
        let client = self.service.client.clone();
        let (domain, mode, on_error, operation) = (
            literals.domain.to_owned(),
            literals.mode,
            literals.on_error,
            self.operation,
        );
        let call = self.service.io.spawn(async move {
            match operation {
                Operation::Pseudonymize => client
                    .pseudonymize_array(&domain, mode, input.as_ref())
                    .await
                    .map(|array| (array, Vec::new())),
                Operation::Reidentify => client
                    .reidentify_array(&domain, input.as_ref())
                    .await
                    .map(|answer| (answer.values, answer.errors)),
                Operation::Rewrap => client
                    .rewrap_array(&domain, input.as_ref())
                    .await
                    .map(|answer| (answer.values, answer.errors)),
            }
        });
        let (output, errors) = call
            .await
            .map_err(|e| DataFusionError::Execution(format!("{name}: the call was lost: {e}")))?
            .map_err(|e| DataFusionError::Execution(format!("{name}: {e}")))?;
        if let (Some(first), OnError::Fail) = (errors.first(), on_error) {
            return exec_err!(
                "{name}: {} value(s) could not be {} (first at row {} of the batch: {}); \
                 pass 'null' as the third argument to keep them as NULL",
                errors.len(),
                operation.failed(),
                first.index,
                first.code
            );
        }
        Ok(ColumnarValue::Array(output))
    }
}
